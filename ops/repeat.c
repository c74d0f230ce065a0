/* repeat.c - run the input count times (or forever); each pass is a new
 * epoch of the input, so shuffles upstream reshuffle. */
#include "pf_op.h"

typedef struct repeat_cfg {
	int64_t count, done;   /* count -1 = forever */
	int got_any;           /* the current pass produced something */
} repeat_cfg;

static int repeat_prepare(pf_op *op, pf_error *err)
{
	repeat_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = 0;
	if (c->count < 0)
		op->cardinality = in->cardinality == 0 ? 0 : PF_CARD_INFINITE;
	else
		op->cardinality = in->cardinality >= 0 ? in->cardinality * c->count : in->cardinality;
	return 0;
}

static int repeat_start(pf_op *op, pf_error *err)
{
	repeat_cfg *c = op->cfg;
	c->done = 0;
	c->got_any = 0;
	return 0;
}

static int repeat_next(pf_op *op, pf_elem *out, pf_error *err)
{
	repeat_cfg *c = op->cfg;
	for (;;) {
		int rc = pf_op_next(op->in, out, err);
		if (rc != PF_END) {
			if (rc == 0)
				c->got_any = 1;
			return rc;
		}
		c->done++;
		/* an empty pass would make "forever" spin: stop there */
		if ((c->count >= 0 && c->done >= c->count) || !c->got_any)
			return PF_END;
		c->got_any = 0;
		pf_op_reset(op->in);
	}
}

static void repeat_reset(pf_op *op)
{
	repeat_start(op, NULL);
	pf_op_reset(op->in);
}

static const pf_op_vt repeat_vt = {
	.prepare = repeat_prepare, .start = repeat_start,
	.next = repeat_next, .reset = repeat_reset,
};

pf_op *pf_op_repeat_new(int64_t count, pf_error *err)
{
	if (count < -1 || count == 0) {
		pf_error_set(err, PF_EINVAL, "repeat: count must be >= 1 or -1 (forever), got %lld",
			     (long long)count);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_repeat, sizeof(repeat_cfg), err);
	if (op) {
		((repeat_cfg *)op->cfg)->count = count;
		op->noop = count == 1;
	}
	return op;
}

/* The spec's arguments -> a new repeat op. */
static pf_op *repeat_build(const pf_arg *a, pf_error *err)
{
	return pf_op_repeat_new(a[0].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int repeat_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	int64_t n = ((const repeat_cfg *)op->cfg)->count;
	a[0] = (pf_arg){ .set = n != -1, .i = n };
	return 0;
}

const pf_op_desc pf_op_repeat = {
	.kind = "repeat", .traits = 0,
	.help = "repeat the input count times (default forever)",
	.params = {
		{ "count", PF_PARAM_INT, PF_PARAM_POS, 1, INT64_MAX, -1, NULL, "repetitions" },
	},
	.vt = &repeat_vt, .build = repeat_build, .args = repeat_args,
};
