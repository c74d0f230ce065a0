/* t2075-faults-quota: padded_batch's length quota through a full pipeline
 * (shards of variable-length records -> map(decode) -> shuffle ->
 * padded_batch -> prefetch).  truncate: every sample once, cut to max_len,
 * zero padded, true lengths kept; reject: the first sample over the quota
 * stops the run with PF_ELIMIT naming it (file and record).  A quota whose
 * buffers cannot fit the memory budget fails at pf_iter_new naming the op. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#define NF 3
#define NR 200
#define B 8
#define QUOTA 16

static pf_error err;
static char files[NF][600];

/* record i of file f: len(f, i) u16 tokens, the first one the sample's
 * number f * 1000 + i, then 1, 2, 3, ... */
static uint32_t len_of(int f, uint32_t i)
{
	return 1 + (i * 7 + (uint32_t)f * 3) % 30; /* 1..30: some over the quota */
}

static int run(int policy, long *n, int *bad, long *over)
{
	pf_error_clear(&err);
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	const char *paths[NF] = { files[0], files[1], files[2] };
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = 2 };
	pf_map_opts mo = { .num_parallel_calls = 2 };
	pf_padded_opts po = { .max_len = QUOTA, .policy = policy };
	int rc = pf_shards(p, paths, NF, &so, &err);
	if (!rc)
		rc = pf_map(p, "decode", "", &mo, &err);
	if (!rc)
		rc = pf_shuffle(p, 64, NULL, &err);
	if (!rc)
		rc = pf_padded_batch(p, B, &po, &err);
	if (!rc)
		rc = pf_prefetch(p, 2, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	static unsigned char seen[NF * 1000];
	memset(seen, 0, sizeof(seen));
	*n = 0;
	*bad = 0;
	*over = 0;
	pf_elem e;
	int short_batches = 0, prev_short = 0;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		if (prev_short)
			short_batches++;
		prev_short = e.batch < B;
		const uint16_t *t = e.data[0];
		int64_t L = e.var_len[0];
		if (L > QUOTA)
			(*bad)++;
		for (uint32_t k = 0; k < e.batch; k++) {
			const uint16_t *row = t + (size_t)k * (size_t)L;
			uint32_t id = row[0], f = id / 1000, i = id % 1000;
			int32_t got = e.lengths[0][k];
			uint32_t want = len_of((int)f, i);
			if (f >= NF || i >= NR || seen[id]) {
				(*bad)++;
				continue;
			}
			seen[id] = 1;
			if (want > QUOTA)
				(*over)++;
			if (got != (int32_t)(want < QUOTA ? want : QUOTA))
				(*bad)++;
			for (int64_t j = 1; j < L; j++)
				if (row[j] != (j < got ? (uint16_t)j : 0))
					(*bad)++;
			(*n)++;
		}
		pf_elem_release(&e);
	}
	if (short_batches)
		(*bad)++;
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? 0 : rc;
}

int main(void)
{
	alarm(60);
	const char *d = tap_tmpdir("t2075");
	pf_schema s;
	pf_schema_parse(&s, "tok: u16[?]", &err);
	long want_over = 0;
	uint32_t first_over[NF];
	for (int f = 0; f < NF; f++) {
		snprintf(files[f], sizeof(files[f]), "%s/q-%d.pfs", d, f);
		pf_shard_writer *w;
		pf_shard_write_opts o = { .block_size = 1024 };
		pf_shard_writer_open(&w, files[f], &s, &o, &err);
		first_over[f] = ~0u;
		for (uint32_t i = 0; i < NR; i++) {
			uint32_t L = len_of(f, i);
			unsigned char rec[4 + 2 * 64];
			memcpy(rec, &L, 4);
			uint16_t tok[64];
			tok[0] = (uint16_t)(f * 1000 + i);
			for (uint32_t j = 1; j < L; j++)
				tok[j] = (uint16_t)j;
			memcpy(rec + 4, tok, 2 * L);
			pf_shard_writer_add(w, rec, 4 + 2 * L, &err);
			if (L > QUOTA) {
				want_over++;
				if (first_over[f] == ~0u)
					first_over[f] = i;
			}
		}
		pf_shard_writer_close(w, &err);
	}
	long n, over;
	int bad;
	int rc = run(PF_PAD_TRUNCATE, &n, &bad, &over);
	ok(rc == 0 && n == NF * NR, "truncate: every sample once through shards, map, shuffle, padded_batch, prefetch (%ld; %s)",
	   n, rc ? err.msg : "");
	ok(bad == 0, "truncate: rows cut to %d, zero padded, true lengths kept, batches full but the last (%d bad)",
	   QUOTA, bad);
	ok(over == want_over && over > 0, "truncate: the %ld samples over the quota were delivered, cut", want_over);

	rc = run(PF_PAD_REJECT, &n, &bad, &over);
	int named = 0; /* some sample over the quota (the shuffle picks which) */
	for (int f = 0; f < NF; f++)
		for (uint32_t i = first_over[f]; i < NR; i++) {
			char where[2048];
			snprintf(where, sizeof(where), "(%s, record %u)", files[f], i);
			if (len_of(f, i) > QUOTA && strstr(err.msg, where))
				named = 1;
		}
	ok(rc == PF_ELIMIT && named && strstr(err.msg, "padded_batch") && strstr(err.msg, "quota of 16"),
	   "reject: PF_ELIMIT naming the op, the sample's file and record, the quota (%s)", err.msg);
	ok(n < NF * NR && bad == 0, "reject: what came before it was intact (%ld samples)", n);

	/* a quota the memory budget cannot hold */
	{
		pf_error_clear(&err);
		pf_options opts = { .memory_budget = 256ull << 20 };
		pf_pipeline *p;
		pf_pipeline_new(&p, &opts, &err);
		const char *paths[1] = { files[0] };
		pf_shards(p, paths, 1, NULL, &err);
		pf_map(p, "decode", "", NULL, &err);
		pf_padded_opts po = { .max_len = 1 << 24 };
		pf_padded_batch(p, 64, &po, &err);
		pf_iter *it = NULL;
		rc = pf_iter_new(&it, p, &err);
		ok(rc == PF_EBUDGET && !it && strstr(err.msg, "padded_batch") && strstr(err.msg, "memory budget"),
		   "padded_batch(64, max_len=2^24) in 256 MiB: PF_EBUDGET naming the op (%s)", err.msg);
		pf_pipeline_free(p);
	}
	/* shards | map(decode) of variable records in 16 MiB: the refusal says
	 * the cost is decode's bound on one output fused into the source */
	{
		pf_error_clear(&err);
		pf_options opts = { .memory_budget = 16ull << 20 };
		pf_pipeline *p;
		pf_pipeline_new(&p, &opts, &err);
		const char *paths[1] = { files[0] };
		pf_shards(p, paths, 1, NULL, &err);
		pf_map(p, "decode", "", NULL, &err);
		pf_iter *it = NULL;
		rc = pf_iter_new(&it, p, &err);
		ok(rc == PF_EBUDGET && !it && strstr(err.msg, "shards#0: its buffers need"),
		   "shards | map(decode) in 16 MiB: PF_EBUDGET naming the source (%s)", err.msg);
		ok(strstr(err.msg, "map#1(decode)'s outputs (fused into it), bounded at 1024 KiB each") &&
		   strstr(err.msg, "max_bytes=N"),
		   "  and its cause: decode's bound on one output, fused into it, and how to lower it");
		pf_pipeline_free(p);
		/* lowering it as the message says makes it fit */
		pf_error_clear(&err);
		pf_pipeline_new(&p, &opts, &err);
		pf_shards(p, paths, 1, NULL, &err);
		pf_map(p, "decode", "max_bytes=4096", NULL, &err);
		rc = pf_iter_new(&it, p, &err);
		ok(rc == 0, "  with decode(max_bytes=4096) it fits (%s)", rc ? err.msg : "ok");
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	/* a quota past what a size_t can count: the same, no overflow */
	{
		pf_error_clear(&err);
		pf_pipeline *p;
		pf_pipeline_new(&p, NULL, &err);
		const char *paths[1] = { files[0] };
		pf_shards(p, paths, 1, NULL, &err);
		pf_map(p, "decode", "", NULL, &err);
		pf_padded_opts po = { .max_len = 1ll << 31 };
		pf_padded_batch(p, 1 << 24, &po, &err);
		pf_iter *it = NULL;
		rc = pf_iter_new(&it, p, &err);
		ok(rc == PF_EBUDGET && !it && strstr(err.msg, "padded_batch"),
		   "padded_batch(2^24, max_len=2^31): PF_EBUDGET, not an overflow (%s)", err.msg);
		pf_pipeline_free(p);
	}
	return done_testing();
}
