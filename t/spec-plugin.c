/*
 * spec-plugin.c - a pipefeed plugin for t2013 (built by the test script
 * with `$CC -shared -fPIC`): map functions times3 and add(k=N) on
 * "value: i64" elements, and the filter is_even.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipefeed.h"
#include "pf_maps.h"

int pf_plugin_init(pf_error *err);

static int i64_prepare(pf_map_ctx *ctx, pf_error *err)
{
	if (ctx->in->nfields != 1 || ctx->in->fields[0].dtype != PF_I64 ||
	    ctx->in->fields[0].ndim != 0)
		return pf_error_set(err, PF_EINVAL, "plugin: expects value: i64");
	ctx->out = *ctx->in;
	return 0;
}

static int times3(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	*(int64_t *)out->data[0] = *(const int64_t *)in->data[0] * 3;
	return 0;
}

static int add_prepare(pf_map_ctx *ctx, pf_error *err)
{
	static int64_t ks[16];
	static int nk;
	int rc = i64_prepare(ctx, err);
	if (rc)
		return rc;
	if (strncmp(ctx->args, "k=", 2) || nk == 16)
		return pf_error_set(err, PF_EINVAL, "add: expected k=N, got '%s'", ctx->args);
	ks[nk] = strtoll(ctx->args + 2, NULL, 10);
	ctx->state = &ks[nk++];
	return 0;
}

static int add(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	*(int64_t *)out->data[0] = *(const int64_t *)in->data[0] + *(const int64_t *)state;
	return 0;
}

static int is_even(void *user, const pf_elem *e, pf_error *err)
{
	return *(const int64_t *)e->data[0] % 2 == 0;
}

int pf_plugin_init(pf_error *err)
{
	int rc = pf_map_register("times3", i64_prepare, times3, NULL, err);
	rc = rc ? rc : pf_map_register("add", add_prepare, add, NULL, err);
	return rc ? rc : pf_filter_register("is_even", is_even, NULL, err);
}
