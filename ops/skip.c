/* skip.c - drop the first n elements of each epoch. */
#include "pf_op.h"

typedef struct skip_cfg {
	int64_t n, done;
} skip_cfg;

static int skip_prepare(pf_op *op, pf_error *err)
{
	skip_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = 0;
	op->cardinality = in->cardinality >= 0 ?
		(in->cardinality > c->n ? in->cardinality - c->n : 0) : in->cardinality;
	return 0;
}

static int skip_start(pf_op *op, pf_error *err)
{
	((skip_cfg *)op->cfg)->done = 0;
	return 0;
}

static int skip_next(pf_op *op, pf_elem *out, pf_error *err)
{
	skip_cfg *c = op->cfg;
	while (c->done < c->n) {
		int rc = pf_op_next(op->in, out, err);
		if (rc)
			return rc; /* PF_END: skipped past the end */
		pf_elem_release(out);
		c->done++;
	}
	return pf_op_next(op->in, out, err);
}

static void skip_reset(pf_op *op)
{
	((skip_cfg *)op->cfg)->done = 0;
	pf_op_reset(op->in);
}

static const pf_op_vt skip_vt = {
	.prepare = skip_prepare, .start = skip_start,
	.next = skip_next, .reset = skip_reset,
};

pf_op *pf_op_skip_new(int64_t n, pf_error *err)
{
	if (n < 0) {
		pf_error_set(err, PF_EINVAL, "skip: count must be >= 0 (got %lld)", (long long)n);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_skip, sizeof(skip_cfg), err);
	if (op) {
		((skip_cfg *)op->cfg)->n = n;
		op->noop = n == 0;
	}
	return op;
}

/* The spec's arguments -> a new skip op. */
static pf_op *skip_build(const pf_arg *a, pf_error *err)
{
	return pf_op_skip_new(a[0].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int skip_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	a[0] = (pf_arg){ .set = 1, .i = ((const skip_cfg *)op->cfg)->n };
	return 0;
}

const pf_op_desc pf_op_skip = {
	.kind = "skip", .traits = 0,
	.help = "drop the first n elements of each epoch",
	.params = {
		{ "n", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 0, INT64_MAX, 0, NULL, "count" },
	},
	.vt = &skip_vt, .build = skip_build, .args = skip_args,
};
