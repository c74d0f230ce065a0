/*
 * pf_map_fns.h - the built-in map functions that live in their own files
 * (parse_example.c, decode_image.c); maps.c registers them with the others.
 * Internal to ops/.  Their contracts are pf_maps.h's (prepare, fn).
 */
#ifndef PF_MAP_FNS_H
#define PF_MAP_FNS_H

#include "pf_maps.h"

int pf_parse_example_prepare(pf_map_ctx *ctx, pf_error *err);
int pf_parse_example_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err);

#endif /* PF_MAP_FNS_H */
