/* identity_map.h - a map function for tests: "value: i64" in, the same out
 * (register it with pf_map_register(NAME, id_prepare, id_fn, NULL, &err)). */
#ifndef PF_T_IDENTITY_MAP_H
#define PF_T_IDENTITY_MAP_H

#include <stdint.h>

#include "pipefeed.h"

static inline int id_prepare(pf_map_ctx *ctx, pf_error *er)
{
	(void)er;
	ctx->out = *ctx->in;
	return 0;
}

static inline int id_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *er)
{
	(void)state, (void)er;
	*(int64_t *)out->data[0] = *(const int64_t *)in->data[0];
	return 0;
}

#endif
