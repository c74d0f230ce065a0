/*
 * enumerate.c - tf.data's Dataset.enumerate: each element with its position.
 *
 * The output is the input element with one more field, "index: i64", the
 * element's position in the epoch counted from `start` (tf.data's start
 * argument).  It comes last, so the input's fields keep their numbers.  A
 * new epoch counts from start again, as a tf.data iterator made afresh
 * for each epoch does.  Elements only: a batched input is refused at
 * prepare, naming the op (put enumerate before batch).
 */
#include <stdint.h>
#include <string.h>

#include "pf_op.h"

typedef struct enumerate_cfg {
	int64_t start;
	int64_t next;         /* runtime: the next element's index */
	int index;            /* the "index" field's number in the schema */
} enumerate_cfg;

static int enumerate_prepare(pf_op *op, pf_error *err)
{
	enumerate_cfg *c = op->cfg;
	pf_op *in = op->in;
	if (in->batched)
		return pf_op_error(op, err, PF_EINVAL, "its input is batched: put enumerate before the batch");
	if (in->schema.nfields >= PF_MAX_FIELDS)
		return pf_op_error(op, err, PF_ELIMIT, "its input has %d fields, no room for \"index\" (at most %d)",
				   in->schema.nfields, PF_MAX_FIELDS);
	if (pf_schema_find(&in->schema, "index") >= 0)
		return pf_op_error(op, err, PF_EINVAL, "its input has a field \"index\" already");
	op->schema = in->schema;
	c->index = op->schema.nfields++;
	pf_field *f = &op->schema.fields[c->index];
	memset(f, 0, sizeof(*f));
	strcpy(f->name, "index");
	f->dtype = PF_I64;
	f->ndim = 0;
	/* the input's bytes, re-aligned field by field, and the index */
	op->elem_bytes = in->elem_bytes + 8 * ((size_t)op->schema.nfields + 1);
	op->buffer_bytes = 0;
	op->cardinality = in->cardinality;
	return 0;
}

static int enumerate_start(pf_op *op, pf_error *err)
{
	enumerate_cfg *c = op->cfg;
	c->next = c->start;
	return 0;
}

/* *out = in's fields (copied into an element of the op's schema) and the
 * index.  in is released. */
static int enumerate_copy(pf_op *op, pf_elem *in, pf_elem *out, pf_error *err)
{
	enumerate_cfg *c = op->cfg;
	int rc = pf_elem_make(op->rt, &op->schema, op->elem_bytes, out, err);
	for (int i = 0; !rc && i < in->schema->nfields; i++) {
		size_t n = pf_elem_field_bytes(in, i);
		void *d = out->data[i];
		if (!d && !(d = pf_elem_alloc(out, i, in->var_len[i], err)))
			rc = err && err->code ? err->code : PF_ELIMIT;
		else
			memcpy(d, in->data[i], n);
	}
	if (!rc)
		*(int64_t *)out->data[c->index] = c->next;
	out->id = in->id;
	pf_elem_release(in);
	if (rc)
		pf_elem_release(out);
	return rc;
}

static int enumerate_next(pf_op *op, pf_elem *out, pf_error *err)
{
	enumerate_cfg *c = op->cfg;
	pf_elem in;
	int rc = pf_op_next(op->in, &in, err);
	if (rc)
		return rc;
	pf_error e = { 0 };
	if ((rc = enumerate_copy(op, &in, out, &e)))
		return pf_op_error(op, err, rc, "%s", e.msg);
	c->next++;
	return 0;
}

static void enumerate_reset(pf_op *op)
{
	enumerate_cfg *c = op->cfg;
	c->next = c->start;
	pf_op_reset(op->in);
}

static const pf_op_vt enumerate_vt = {
	.prepare = enumerate_prepare, .start = enumerate_start,
	.next = enumerate_next, .reset = enumerate_reset,
};

/* The spec's arguments -> a new enumerate op. */
static pf_op *enumerate_build(const pf_arg *a, pf_error *err)
{
	pf_op *op = pf_op_alloc(&pf_op_enumerate, sizeof(enumerate_cfg), err);
	if (op)
		((enumerate_cfg *)op->cfg)->start = a[0].i;
	return op;
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int enumerate_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	int64_t start = ((const enumerate_cfg *)op->cfg)->start;
	a[0] = (pf_arg){ .set = start != 0, .i = start };
	return 0;
}

const pf_op_desc pf_op_enumerate = {
	.kind = "enumerate", .traits = 0,
	.help = "each element with its position in the epoch, as a field \"index: i64\"",
	.params = {
		{ "start", PF_PARAM_INT, PF_PARAM_POS, INT64_MIN, INT64_MAX, 0, NULL,
		  "the first element's index (default 0)" },
	},
	.vt = &enumerate_vt, .build = enumerate_build, .args = enumerate_args,
};
