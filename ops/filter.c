/* filter.c - keep the elements a predicate accepts. */
#include <stdio.h>

#include "pf_op.h"

typedef struct filter_cfg {
	pf_filter_fn fn;
	void *user;
} filter_cfg;

static int filter_prepare(pf_op *op, pf_error *err)
{
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = 0;
	op->cardinality = in->cardinality == PF_CARD_INFINITE ? PF_CARD_INFINITE : PF_CARD_UNKNOWN;
	return 0;
}

static int filter_next(pf_op *op, pf_elem *out, pf_error *err)
{
	filter_cfg *c = op->cfg;
	for (;;) {
		int rc = pf_op_next(op->in, out, err);
		if (rc)
			return rc;
		pf_error e = { 0 };
		int keep = c->fn(c->user, out, &e);
		if (keep == 1)
			return 0;
		uint64_t id = out->id;
		pf_elem_release(out);
		if (keep < 0)
			return pf_op_error(op, err, keep, "sample %llu: %s", (unsigned long long)id,
					   e.code ? e.msg : pf_strerror(keep));
	}
}

static const pf_op_vt filter_vt = {
	.kind = "filter", .prepare = filter_prepare, .next = filter_next,
};

pf_op *pf_op_filter_new(const char *name, pf_filter_fn fn, void *user, pf_error *err)
{
	if (!fn) {
		pf_error_set(err, PF_EINVAL, "filter: NULL predicate");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&filter_vt, sizeof(filter_cfg), err);
	if (op) {
		filter_cfg *c = op->cfg;
		c->fn = fn;
		c->user = user;
		if (name)
			snprintf(op->label, sizeof(op->label), "filter(%.60s)", name);
	}
	return op;
}
