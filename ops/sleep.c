/* sleep.c - delay every element by a fixed time (tests, benchmarks). */
#include <time.h>

#include "pf_op.h"

typedef struct sleep_cfg {
	int64_t us;
} sleep_cfg;

static int sleep_prepare(pf_op *op, pf_error *err)
{
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = 0;
	op->cardinality = in->cardinality;
	return 0;
}

static int sleep_next(pf_op *op, pf_elem *out, pf_error *err)
{
	int rc = pf_op_next(op->in, out, err);
	if (rc == 0) {
		int64_t us = ((sleep_cfg *)op->cfg)->us;
		struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	return rc;
}

static const pf_op_vt sleep_vt = {
	.prepare = sleep_prepare, .next = sleep_next,
};

pf_op *pf_op_sleep_new(int64_t us, pf_error *err)
{
	if (us < 0) {
		pf_error_set(err, PF_EINVAL, "sleep: microseconds must be >= 0");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_sleep, sizeof(sleep_cfg), err);
	if (op) {
		((sleep_cfg *)op->cfg)->us = us;
		op->noop = us == 0;
	}
	return op;
}

/* The spec's arguments -> a new sleep op. */
static pf_op *sleep_build(const pf_arg *a, pf_error *err)
{
	return pf_op_sleep_new(a[0].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int sleep_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	a[0] = (pf_arg){ .set = 1, .i = ((const sleep_cfg *)op->cfg)->us };
	return 0;
}

const pf_op_desc pf_op_sleep = {
	.kind = "sleep", .traits = 0,
	.help = "delay each element (tests, benchmarks)",
	.params = {
		{ "us", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 0, 60000000, 0, NULL, "microseconds" },
	},
	.vt = &sleep_vt, .build = sleep_build, .args = sleep_args,
};
