/*
 * batch.c - batch: B elements with fixed-shape fields into one
 * structure-of-arrays buffer (field i is [B, dims...]).  When a map comes
 * right before it, the optimizer fuses the two (see map.c) and this op
 * does not run.  When its input lends its elements for long enough (a
 * shuffle's slots, the in-memory cache), workers copy whole batches while
 * the consumer's thread only lists their inputs (batch_par.c).
 */
#include <string.h>

#include "pf_batch_int.h"

/*
 * Parallel assembly when the input lends its elements (fixed shape) and
 * keeps them valid through njobs * size borrow calls: par workers (auto:
 * one less than the CPU budget, at least one, for batches of at least
 * BATCH_PAR_MIN_BYTES), 2 * par + 1 batches in flight, fewer when the
 * lend window is shorter, none when it holds less than two batches.
 */
static void decide_par(pf_op *op, batch_cfg *c)
{
	pf_op *in = op->in;
	c->par = c->njobs = 0;
	op->st.parallelism = 1;
	if (!in->can_borrow || !in->canon_bytes || c->par_req == 1)
		return;
	int want = c->par_req;
	if (want == PF_AUTOTUNE) {
		int cpus = op->rt->opts.cpu_budget;
		want = c->bytes < BATCH_PAR_MIN_BYTES ? 0 : (cpus > 2 ? cpus - 1 : 1);
	}
	if (want > BATCH_PAR_MAX)
		want = BATCH_PAR_MAX;
	int64_t nj = 2 * (int64_t)want + 1;
	if (nj * c->size > in->lend_window)
		nj = in->lend_window / c->size;
	if (want < 1 || nj < 2)
		return;
	c->par = want;
	c->njobs = (int)nj;
	in->lend_want = (int)(nj * c->size);
	op->buffer_bytes = (uint64_t)nj * op->elem_bytes;
	op->st.parallelism = want;
}

static int batch_prepare(pf_op *op, pf_error *err)
{
	batch_cfg *c = op->cfg;
	pf_op *in = op->in;
	if (in->batched)
		return pf_op_error(op, err, PF_EINVAL, "%s", PF_BATCHED_TWICE);
	op->batched = 1;
	op->schema = in->schema;
	for (int i = 0; i < op->schema.nfields; i++) {
		int64_t fb = pf_field_bytes(&op->schema.fields[i]);
		if (fb < 0)
			return pf_op_error(op, err, PF_EINVAL,
					   "field \"%s\" is variable-length: use padded_batch (or map it to a fixed shape first)",
					   op->schema.fields[i].name);
		c->fbytes[i] = (size_t)fb;
	}
	c->bytes = pf_layout(&op->schema, (uint32_t)c->size, c->off);
	pf_layout(&op->schema, 1, c->eoff);
	op->elem_bytes = c->bytes ? c->bytes : 1;
	op->buffer_bytes = op->elem_bytes;
	decide_par(op, c);
	op->cardinality = in->cardinality < 0 ? in->cardinality :
		(c->drop ? in->cardinality / c->size : (in->cardinality + c->size - 1) / c->size);
	return 0;
}

static int batch_next(pf_op *op, pf_elem *out, pf_error *err)
{
	batch_cfg *c = op->cfg;
	pf_buf *b = NULL;
	pf_elem e;
	int n = 0, rc = 0;
	uint64_t first = 0;
	int nf = op->schema.nfields;
	/* an input that lends its elements: gather straight from it */
	for (; op->in->can_borrow && n < c->size; n++) {
		const unsigned char *d;
		uint64_t id;
		size_t len;
		rc = pf_op_borrow(op->in, &d, &len, &id, err);
		if (rc)
			break;
		if (!b && !(b = pf_buf_get(op->rt->batch_pool, op->elem_bytes))) {
			rc = pf_op_error(op, err, PF_ENOMEM, "out of memory");
			break;
		}
		if (!n)
			first = id;
		pf_batch_row(c, nf, b->data, n, d);
	}
	for (; !op->in->can_borrow && n < c->size; n++) {
		rc = pf_op_next(op->in, &e, err);
		if (rc)
			break;
		if (!b && !(b = pf_buf_get(op->rt->batch_pool, op->elem_bytes))) {
			pf_elem_release(&e);
			rc = pf_op_error(op, err, PF_ENOMEM, "out of memory");
			break;
		}
		if (!n)
			first = e.id;
		for (int i = 0; i < op->schema.nfields; i++)
			memcpy(b->data + c->off[i] + (size_t)n * c->fbytes[i], e.data[i], c->fbytes[i]);
		pf_elem_release(&e);
	}
	if (rc < 0 || (rc == PF_END && (!n || c->drop))) {
		pf_buf_unref(b);
		return rc;
	}
	pf_batch_output(op, b, n, first, out);
	return 0;
}

void pf_batch_output(pf_op *op, pf_buf *b, int n, uint64_t first, pf_elem *out)
{
	batch_cfg *c = op->cfg;
	memset(out, 0, sizeof(*out));
	out->schema = &op->schema;
	out->batch = (uint32_t)n;
	out->id = first;
	out->buf = b->data;
	out->ref_ = b;
	out->nbytes = c->bytes;
	for (int i = 0; i < op->schema.nfields; i++) {
		out->data[i] = b->data + c->off[i];
		out->nitems[i] = (int64_t)n * pf_field_count(&op->schema.fields[i]);
	}
}

static int batch_start(pf_op *op, pf_error *err)
{
	return ((batch_cfg *)op->cfg)->par ? pf_batch_par_start(op, err) : 0;
}

static int batch_next_any(pf_op *op, pf_elem *out, pf_error *err)
{
	return op->run ? pf_batch_par_next(op, out, err) : batch_next(op, out, err);
}

/* A new epoch: the workers' batches are dropped before the input's lent
 * bytes go. */
static void batch_reset(pf_op *op)
{
	pf_batch_par_drop(op);
	pf_op_reset(op->in);
}

static const pf_op_vt batch_vt = {
	.prepare = batch_prepare, .start = batch_start, .next = batch_next_any,
	.reset = batch_reset, .stop = pf_batch_par_stop,
};

/* par: PF_AUTOTUNE, or 1..BATCH_PAR_MAX workers (1: the consumer's thread) */
pf_op *pf_op_batch_new(int size, int drop, int par, pf_error *err)
{
	if (size < 1) {
		pf_error_set(err, PF_EINVAL, "batch: size must be >= 1 (got %d)", size);
		return NULL;
	}
	if (par != PF_AUTOTUNE && (par < 1 || par > BATCH_PAR_MAX)) {
		pf_error_set(err, PF_EINVAL, "batch: num_parallel_calls must be auto or 1..%d (got %d)",
			     BATCH_PAR_MAX, par);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_batch, sizeof(batch_cfg), err);
	if (op) {
		batch_cfg *c = op->cfg;
		c->size = size;
		c->drop = drop;
		c->par_req = par;
	}
	return op;
}

static int batch_of(const pf_op *op, int *drop)
{
	const batch_cfg *c = op->cfg;
	*drop = c->drop;
	return c->size;
}

/* The spec's arguments -> a new batch op. */
static pf_op *batch_build(const pf_arg *a, pf_error *err)
{
	return pf_op_batch_new((int)a[0].i, (int)a[1].i, (int)a[2].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int batch_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const batch_cfg *c = op->cfg;
	a[0] = (pf_arg){ .set = 1, .i = c->size };
	a[1] = (pf_arg){ .set = c->drop != 0, .i = c->drop != 0 };
	a[2] = (pf_arg){ .set = c->par_req != PF_AUTOTUNE, .i = c->par_req };
	return 0;
}

const pf_op_desc pf_op_batch = {
	.kind = "batch", .traits = PF_OP_BATCH,
	.help = "group size elements into one batch",
	.params = {
		{ "size", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 1, 1 << 24, 0, NULL, "batch size" },
		{ "drop", PF_PARAM_BOOL, 0, 0, 1, 0, NULL, "drop the last, smaller batch" },
		{ "par", PF_PARAM_INT_AUTO, 0, 1, BATCH_PAR_MAX, PF_AUTOTUNE, NULL,
		  "workers copying batches (default auto; 1: the consumer's thread)" },
	},
	.vt = &batch_vt, .build = batch_build, .args = batch_args,
	.batch_of = batch_of,
};
