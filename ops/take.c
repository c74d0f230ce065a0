/* take.c - the first n elements of each epoch. */
#include "pf_op.h"

typedef struct take_cfg {
	int64_t n, done;
} take_cfg;

static int take_prepare(pf_op *op, pf_error *err)
{
	take_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = 0;
	op->cardinality = in->cardinality >= 0 && in->cardinality < c->n ? in->cardinality : c->n;
	return 0;
}

static int take_start(pf_op *op, pf_error *err)
{
	((take_cfg *)op->cfg)->done = 0;
	return 0;
}

static int take_next(pf_op *op, pf_elem *out, pf_error *err)
{
	take_cfg *c = op->cfg;
	if (c->done >= c->n)
		return PF_END; /* the input is not pulled any further */
	int rc = pf_op_next(op->in, out, err);
	if (rc == 0)
		c->done++;
	return rc;
}

static void take_reset(pf_op *op)
{
	((take_cfg *)op->cfg)->done = 0;
	pf_op_reset(op->in);
}

static const pf_op_vt take_vt = {
	.prepare = take_prepare, .start = take_start,
	.next = take_next, .reset = take_reset,
};

pf_op *pf_op_take_new(int64_t n, pf_error *err)
{
	if (n < 0) {
		pf_error_set(err, PF_EINVAL, "take: count must be >= 0 (got %lld)", (long long)n);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_take, sizeof(take_cfg), err);
	if (op)
		((take_cfg *)op->cfg)->n = n;
	return op;
}

/* The spec's arguments -> a new take op. */
static pf_op *take_build(const pf_arg *a, pf_error *err)
{
	return pf_op_take_new(a[0].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int take_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	a[0] = (pf_arg){ .set = 1, .i = ((const take_cfg *)op->cfg)->n };
	return 0;
}

const pf_op_desc pf_op_take = {
	.kind = "take", .traits = 0,
	.help = "the first n elements of each epoch",
	.params = {
		{ "n", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 0, INT64_MAX, 0, NULL, "count" },
	},
	.vt = &take_vt, .build = take_build, .args = take_args,
};
