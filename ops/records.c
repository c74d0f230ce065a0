/* records.c - source: records in caller memory, as "record: u8[?]" (no copy). */
#include <string.h>

#include "pf_op.h"

typedef struct records_cfg {
	const void *const *recs;
	const size_t *lens;
	size_t n, pos;
	pf_schema rs;
} records_cfg;

static int records_prepare(pf_op *op, pf_error *err)
{
	records_cfg *c = op->cfg;
	op->schema = *pf_record_schema();
	op->record = c->rs;
	size_t mx = 0;
	for (size_t i = 0; i < c->n; i++)
		if (c->lens[i] > mx)
			mx = c->lens[i];
	op->elem_bytes = mx;
	op->buffer_bytes = 0;
	op->cardinality = (int64_t)c->n;
	return 0;
}

static int records_start(pf_op *op, pf_error *err)
{
	((records_cfg *)op->cfg)->pos = 0;
	return 0;
}

static int records_next(pf_op *op, pf_elem *out, pf_error *err)
{
	records_cfg *c = op->cfg;
	if (c->pos >= c->n)
		return PF_END;
	size_t i = c->pos++;
	memset(out, 0, sizeof(*out));
	out->schema = &op->schema;
	out->id = i;
	out->data[0] = (void *)c->recs[i];
	out->nitems[0] = (int64_t)c->lens[i];
	out->var_len[0] = (int64_t)c->lens[i];
	out->nbytes = c->lens[i];
	return 0;
}

static void records_reset(pf_op *op)
{
	records_start(op, NULL);
}

static const pf_op_vt records_vt = {
	.prepare = records_prepare, .start = records_start,
	.next = records_next, .reset = records_reset,
};

pf_op *pf_op_records_new(const void *const *recs, const size_t *lens, size_t n,
			 const pf_schema *rs, pf_error *err)
{
	if (n && (!recs || !lens)) {
		pf_error_set(err, PF_EINVAL, "records: NULL records or lengths");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_records, sizeof(records_cfg), err);
	if (op) {
		records_cfg *c = op->cfg;
		c->recs = recs;
		c->lens = lens;
		c->n = n;
		if (rs)
			c->rs = *rs;
	}
	return op;
}

/* Records in caller memory have no spec form: no build, and no way back. */
static int records_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)a;
	return pf_op_error((pf_op *)op, err, PF_EINVAL,
			   "records in caller memory have no spec form");
}

const pf_op_desc pf_op_records = {
	.kind = "records", .traits = PF_OP_SOURCE,
	.help = "records in caller memory (C only: pf_records)",
	.vt = &records_vt, .args = records_args,
};
