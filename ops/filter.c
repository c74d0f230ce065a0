/* filter.c - keep the elements a predicate accepts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"

typedef struct filter_cfg {
	pf_filter_fn fn;
	void *user;
	char *name;           /* as given (NULL: none) */
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

static void filter_destroy(pf_op *op)
{
	free(((filter_cfg *)op->cfg)->name);
}

static const pf_op_vt filter_vt = {
	.prepare = filter_prepare, .next = filter_next, .destroy = filter_destroy,
};

pf_op *pf_op_filter_new(const char *name, pf_filter_fn fn, void *user, pf_error *err)
{
	if (!fn) {
		pf_error_set(err, PF_EINVAL, "filter: NULL predicate");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_filter, sizeof(filter_cfg), err);
	if (op) {
		filter_cfg *c = op->cfg;
		c->fn = fn;
		c->user = user;
		if (name)
			snprintf(op->label, sizeof(op->label), "filter(%.60s)", name);
		if (name && !(c->name = strdup(name))) {
			pf_op_free(op);
			pf_error_set(err, PF_ENOMEM, "filter: out of memory");
			return NULL;
		}
	}
	return op;
}

/* The spec's arguments -> a new filter op: fn is a registered filter's
 * name, or "lib.so:name" of a plugin (loaded first). */
static pf_op *filter_build(const pf_arg *a, pf_error *err)
{
	const char *name;
	pf_filter_fn fn;
	void *user;

	if (pf_fn_resolve(a[0].s, &name, err))
		return NULL;
	if (a[0].fargs[0]) {
		pf_error_set(err, PF_EINVAL, "filter functions take no arguments (got %s(%s))",
			     name, a[0].fargs);
		return NULL;
	}
	if (pf_filter_lookup(name, &fn, &user) != 0) {
		pf_error_set(err, PF_EINVAL, "no filter function registered as '%s'", name);
		return NULL;
	}
	pf_op *op = pf_op_filter_new(a[0].s, fn, user, err);
	if (op && name != a[0].s)
		snprintf(op->label, sizeof(op->label), "filter(%.60s)", name);
	return op;
}

/* The way back: only a registered filter has a spec form. */
static int filter_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	const filter_cfg *c = op->cfg;
	const char *colon = c->name ? strrchr(c->name, ':') : NULL;
	pf_filter_fn fn;
	void *user;
	if (!c->name || pf_filter_lookup(colon ? colon + 1 : c->name, &fn, &user) ||
	    fn != c->fn || user != c->user)
		return pf_op_error((pf_op *)op, err, PF_EINVAL,
				   "a predicate given by pointer has no spec form (register it with pf_filter_register)");
	a[0] = (pf_arg){ .set = 1, .s = c->name, .fargs = "" };
	return 0;
}

const pf_op_desc pf_op_filter = {
	.kind = "filter", .traits = 0,
	.help = "keep the elements a predicate accepts",
	.params = {
		{ "fn", PF_PARAM_FN, PF_PARAM_REQ | PF_PARAM_POS, 0, 0, 0, NULL,
		  "registered filter name, or lib.so:name" },
	},
	.vt = &filter_vt, .build = filter_build, .args = filter_args,
};
