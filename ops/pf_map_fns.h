/*
 * pf_map_fns.h - the built-in map functions that live in their own files
 * (parse_example.c and parse_seq_example.c, decode_image.c); maps.c registers them with the others.
 * Internal to ops/.  Their contracts are pf_maps.h's (prepare, fn).
 */
#ifndef PF_MAP_FNS_H
#define PF_MAP_FNS_H

#include "pf_maps.h"

#define MAPS_MAX_KV 8
#define MAPS_MAX_CHANNELS 64

/*
 * One "name=value" of the argument text.  Values are numbers, words,
 * quoted strings or [lists of numbers], as the spec formatter writes them
 * (and as a C caller of pf_map may write them by hand).
 */
struct kv {
	char key[32];
	int is_num;             /* num[0..n) holds numbers */
	int n;
	double num[MAPS_MAX_CHANNELS];
	char word[128];         /* a word or string value */
};

/* Parse argument text "k=v, k=[a, b], k=word" into kv[] (*n gets the
 * count); errors name fn and the offset. */
int pf_map_kv_parse(const char *fn, const char *text, struct kv *kv, int *n, pf_error *err);

int pf_parse_example_prepare(pf_map_ctx *ctx, pf_error *err);
int pf_parse_example_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err);
int pf_parse_seq_example_prepare(pf_map_ctx *ctx, pf_error *err);
int pf_parse_seq_example_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err);
int pf_decode_image_prepare(pf_map_ctx *ctx, pf_error *err);
int pf_decode_image_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err);
/* NULL when decode_image can decode something, else the libraries this
 * build lacks (for the error at spec parse time). */
const char *pf_decode_image_missing(void);

#endif /* PF_MAP_FNS_H */
