/*
 * value_shards.h - the test data set of the pipeline tests: shards of
 * records "value: i64, pad: u8[?]" numbered from a base, each padded with
 * value % pad_mod bytes equal to value & 0xff, so that a garbled, cut or
 * foreign record is caught by the decode map below, and a record's value
 * says which one it is.
 */
#ifndef PF_T_VALUE_SHARDS_H
#define PF_T_VALUE_SHARDS_H
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"

#define VS_MAX_SHARDS 16

typedef struct vs_set {
	int nshards, total;
	int64_t base;                  /* value of the first record */
	int pad_mod;                   /* pad length = value % pad_mod (<= 64) */
	char paths[VS_MAX_SHARDS][600];
	const char *pathv[VS_MAX_SHARDS];
} vs_set;

/*
 * Write sizes[0..n-1] records into n shards under dir (created by the
 * writer's caller), blocks of block_size bytes.  Returns 0 or a pf code.
 */
static inline int vs_write(vs_set *s, const char *dir, const int *sizes, int n,
			   int64_t base, int pad_mod, uint32_t block_size,
			   pf_error *err)
{
	pf_schema sc;
	if (n > VS_MAX_SHARDS || pad_mod < 1 || pad_mod > 64)
		return pf_error_set(err, PF_EINVAL, "vs_write: bad arguments");
	int rc = pf_schema_parse(&sc, "value: i64, pad: u8[?]", err);
	memset(s, 0, sizeof(*s));
	s->nshards = n;
	s->base = base;
	s->pad_mod = pad_mod;
	int64_t v = base;
	for (int i = 0; i < n && !rc; i++) {
		pf_shard_name(s->paths[i], sizeof(s->paths[i]), dir, i, n);
		s->pathv[i] = s->paths[i];
		pf_shard_writer *w;
		pf_shard_write_opts o = { .block_size = block_size };
		if ((rc = pf_shard_writer_open(&w, s->paths[i], &sc, &o, err)))
			break;
		for (int r = 0; r < sizes[i] && !rc; r++, v++) {
			unsigned char rec[8 + 4 + 64];
			uint32_t pad = (uint32_t)(v % pad_mod);
			memcpy(rec, &v, 8);
			memcpy(rec + 8, &pad, 4);
			memset(rec + 12, (int)(v & 0xff), pad);
			rc = pf_shard_writer_add(w, rec, 12 + pad, err);
		}
		int rc2 = pf_shard_writer_close(w, err);
		rc = rc ? rc : rc2;
		s->total += sizes[i];
	}
	return rc;
}

/* The decode map: record -> "value: i64".  map user: the vs_set. */
static inline int vs_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "value: i64", e);
}

/* Hook the tests set to add delays to the decode map (NULL = none). */
static void (*vs_delay)(int64_t value);

/* Checks the record (PF_ECORRUPT naming the value when it is garbled). */
static inline int vs_decode(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	const vs_set *s = st;
	const unsigned char *r = in->data[0];
	int64_t v;
	uint32_t pad;
	if (in->nitems[0] < 12)
		return pf_error_set(e, PF_ECORRUPT, "short record");
	memcpy(&v, r, 8);
	memcpy(&pad, r + 8, 4);
	if (pad != (uint32_t)(v % s->pad_mod) || in->nitems[0] != 12 + pad ||
	    (pad && r[12 + pad - 1] != (unsigned char)(v & 0xff)))
		return pf_error_set(e, PF_ECORRUPT, "record %lld garbled", (long long)v);
	if (vs_delay)
		vs_delay(v);
	*(int64_t *)out->data[0] = v;
	return 0;
}
#endif
