/* range.c - source: the integers start, start+step, ... < stop as "value: i64". */
#include <stdint.h>
#include <string.h>

#include "pf_op.h"

typedef struct range_cfg {
	int64_t start, stop, step;
	int64_t cur, pos;     /* runtime */
} range_cfg;

static int range_prepare(pf_op *op, pf_error *err)
{
	range_cfg *c = op->cfg;
	op->schema = *pf_value_schema();
	op->record.nfields = 0;
	op->elem_bytes = 8;
	op->buffer_bytes = 0;
	op->cardinality = c->stop > c->start ? (c->stop - c->start + c->step - 1) / c->step : 0;
	return 0;
}

static int range_start(pf_op *op, pf_error *err)
{
	range_cfg *c = op->cfg;
	c->cur = c->start;
	c->pos = 0;
	return 0;
}

static int range_next(pf_op *op, pf_elem *out, pf_error *err)
{
	range_cfg *c = op->cfg;
	if (c->cur >= c->stop)
		return PF_END;
	int rc = pf_elem_make(op->rt, &op->schema, 8, out, err);
	if (rc)
		return rc;
	memcpy(out->data[0], &c->cur, 8);
	out->id = (uint64_t)c->pos++;
	c->cur = c->cur > c->stop - c->step ? c->stop : c->cur + c->step;
	return 0;
}

static void range_reset(pf_op *op)
{
	range_start(op, NULL);
}

static const pf_op_vt range_vt = {
	.prepare = range_prepare, .start = range_start,
	.next = range_next, .reset = range_reset,
};

pf_op *pf_op_range_new(int64_t start, int64_t stop, int64_t step, pf_error *err)
{
	if (step <= 0) {
		pf_error_set(err, PF_EINVAL, "range: step must be > 0 (got %lld)", (long long)step);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_range, sizeof(range_cfg), err);
	if (op) {
		range_cfg *c = op->cfg;
		c->start = start;
		c->stop = stop;
		c->step = step;
	}
	return op;
}

/* The spec's arguments -> a new range op. */
static pf_op *range_build(const pf_arg *a, pf_error *err)
{
	return pf_op_range_new(a[0].i, a[1].i, a[2].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int range_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const range_cfg *c = op->cfg;
	a[0] = (pf_arg){ .set = 1, .i = c->start };
	a[1] = (pf_arg){ .set = 1, .i = c->stop };
	a[2] = (pf_arg){ .set = c->step != 1, .i = c->step };
	return 0;
}

const pf_op_desc pf_op_range = {
	.kind = "range", .traits = PF_OP_SOURCE,
	.help = "the integers start, start+step, ... < stop",
	.params = {
		{ "start", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, INT64_MIN, INT64_MAX, 0, NULL, "first value" },
		{ "stop", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, INT64_MIN, INT64_MAX, 0, NULL, "end (excluded)" },
		{ "step", PF_PARAM_INT, PF_PARAM_POS, 1, INT64_MAX, 1, NULL, "increment (default 1)" },
	},
	.vt = &range_vt, .build = range_build, .args = range_args,
};
