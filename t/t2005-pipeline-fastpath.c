/* t2005-pipeline-fastpath: the copy-free paths for fixed-size records
 * (shards lend records or mapped samples, shuffle keeps them in slots,
 * map/batch read them in place, map moved after shuffle): every record
 * exactly once per epoch, intact, in the same order for any thread count,
 * for each plan shape that uses them. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#define NSH 3
#define PER 700
#define N (NSH * PER)
static pf_error err;
static char paths[NSH][600];
static const char *pathv[NSH];

/* record: value i64 + 16 bytes derived from it */
static int write_shards(const char *dir)
{
	pf_schema s;
	if (pf_schema_parse(&s, "value: i64, img: u8[16]", &err))
		return -1;
	int64_t v = 0;
	for (int i = 0; i < NSH; i++) {
		pf_shard_name(paths[i], sizeof(paths[i]), dir, (unsigned)i, NSH);
		pathv[i] = paths[i];
		pf_shard_writer *w;
		pf_shard_write_opts o = { .block_size = 1000 };
		if (pf_shard_writer_open(&w, paths[i], &s, &o, &err))
			return -1;
		for (int r = 0; r < PER; r++, v++) {
			unsigned char rec[24];
			memcpy(rec, &v, 8);
			for (int k = 0; k < 16; k++)
				rec[8 + k] = (unsigned char)(v * 7 + k);
			if (pf_shard_writer_add(w, rec, 24, &err))
				return -1;
		}
		if (pf_shard_writer_close(w, &err))
			return -1;
	}
	return 0;
}

static int dec_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "value: i64, x: f32[16]", e);
}

static int dec_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	const unsigned char *r = in->data[0];
	if (in->nitems[0] != 24)
		return pf_error_set(e, PF_ECORRUPT, "record of %lld bytes", (long long)in->nitems[0]);
	int64_t v;
	memcpy(&v, r, 8);
	float *x = out->data[1];
	for (int k = 0; k < 16; k++) {
		if (r[8 + k] != (unsigned char)(v * 7 + k))
			return pf_error_set(e, PF_ECORRUPT, "record %lld garbled", (long long)v);
		x[k] = r[8 + k];
	}
	*(int64_t *)out->data[0] = v;
	return 0;
}

/* Check a decoded sample (value, x[16]); returns the value or -1. */
static int64_t check(int64_t v, const float *x)
{
	for (int k = 0; k < 16; k++)
		if (x[k] != (float)(unsigned char)(v * 7 + k))
			return -1;
	return v;
}

enum { A_MAP_SHUF_BATCH, B_MAP_BATCH, C_SHUF_MAP_BATCH, D_MAP_SHUF_PREF_BATCH,
       E_SHUF_PREF, NSHAPES };
static const char *shape_name[] = {
	"map|shuffle|batch", "map|batch", "shuffle|map|batch",
	"map|shuffle|prefetch|batch", "shuffle|prefetch (records)",
};

/* Two epochs of shape sh with map parallelism par into seq[2][N]; the plan
 * into plan.  Returns 0 when each epoch had N values, -1 otherwise. */
static int run(int sh, int par, uint64_t seed, int64_t (*seq)[N], char *plan, size_t cap)
{
	pf_options o = { .seed = seed, .cpu_budget = 3 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = 2, .shuffle_files = 1 };
	pf_map_opts mo = { .num_parallel_calls = par };
	int rc = pf_shards(p, pathv, NSH, &so, &err);
	int has_map = sh != E_SHUF_PREF;
	if (!rc && (sh == C_SHUF_MAP_BATCH || sh == E_SHUF_PREF))
		rc = pf_shuffle(p, 300, NULL, &err);
	if (!rc && has_map)
		rc = pf_map_func(p, "dec", dec_prepare, dec_fn, NULL, "", &mo, &err);
	if (!rc && (sh == A_MAP_SHUF_BATCH || sh == D_MAP_SHUF_PREF_BATCH))
		rc = pf_shuffle(p, 300, NULL, &err);
	if (!rc && (sh == D_MAP_SHUF_PREF_BATCH || sh == E_SHUF_PREF))
		rc = pf_prefetch(p, 3, &err);
	if (!rc && has_map)
		rc = pf_batch(p, 32, 0, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	if (!rc)
		pf_iter_describe(it, plan, cap);
	int bad = 0;
	for (int ep = 0; ep < 2 && !rc; ep++) {
		int n = 0;
		pf_elem e;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			if (!has_map) {
				int64_t v;
				memcpy(&v, e.data[0], 8);
				int okrec = e.nitems[0] == 24;
				for (int k = 0; okrec && k < 16; k++)
					okrec = ((unsigned char *)e.data[0])[8 + k] ==
						(unsigned char)(v * 7 + k);
				if (n < N)
					seq[ep][n] = okrec ? v : -1;
				n++;
			} else {
				const int64_t *vals = e.data[0];
				const float *x = e.data[1];
				for (uint32_t b = 0; b < e.batch; b++, n++)
					if (n < N)
						seq[ep][n] = check(vals[b], x + 16 * b);
			}
			pf_elem_release(&e);
		}
		bad |= rc != PF_END || n != N;
		rc = rc == PF_END ? 0 : rc;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc || bad ? -1 : 0;
}

static int exactly_once(const int64_t *s)
{
	static unsigned char seen[N];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < N; i++) {
		if (s[i] < 0 || s[i] >= N || seen[s[i]])
			return 0;
		seen[s[i]] = 1;
	}
	return 1;
}

int main(void)
{
	alarm(120);
	plan(NSHAPES * 3 + NSHAPES + 7);
	const char *dir = tap_tmpdir("t2005");
	if (write_shards(dir)) {
		diag("%s", err.msg);
		return 1;
	}
	static int64_t seq[2][N], ref[NSHAPES][N];
	static const int pars[3] = { 1, 2, PF_AUTOTUNE };
	char plan[256];
	for (int sh = 0; sh < NSHAPES; sh++) {
		int same = 1;
		for (int pi = 0; pi < 3; pi++) {
			plan[0] = 0;
			int rc = run(sh, pars[pi], 7, seq, plan, sizeof(plan));
			ok(!rc && exactly_once(seq[0]) && exactly_once(seq[1]),
			   "%s, par %d: each record once, intact, both epochs [%s]%s%s", shape_name[sh],
			   pars[pi], plan, rc ? ": " : "", rc ? err.msg : "");
			if (pi == 0)
				memcpy(ref[sh], seq[0], sizeof(ref[sh]));
			else
				same &= !memcmp(ref[sh], seq[0], sizeof(ref[sh]));
		}
		ok(same, "%s: the same order for par 1, 2 and AUTOTUNE", shape_name[sh]);
	}
	run(A_MAP_SHUF_BATCH, 2, 7, seq, plan, sizeof(plan));
	like(plan, "shards -> shuffle -> map+batch(32)", "map moved after the shuffle: %s", plan);
	run(B_MAP_BATCH, 2, 7, seq, plan, sizeof(plan));
	like(plan, "shards+map -> batch", "map fused into the source: %s", plan);
	ok(!memcmp(ref[A_MAP_SHUF_BATCH], ref[D_MAP_SHUF_PREF_BATCH], sizeof(ref[0])),
	   "map moved after the shuffle gives the order of the map kept before it");
	run(A_MAP_SHUF_BATCH, 2, 8, seq, plan, sizeof(plan));
	ok(exactly_once(seq[0]) && memcmp(seq[0], ref[A_MAP_SHUF_BATCH], sizeof(ref[0])),
	   "another seed: another order");

	/* epochs cut short (take) reset the lent blocks and slots cleanly */
	for (int par = 1; par <= 2; par++) {
		pf_options o = { .seed = 3, .cpu_budget = 4 };
		pf_pipeline *p;
		pf_pipeline_new(&p, &o, &err);
		pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = 2 };
		pf_map_opts mo = { .num_parallel_calls = par };
		pf_iter *it = NULL;
		int rc = pf_shards(p, pathv, NSH, &so, &err) ||
			pf_map_func(p, "dec", dec_prepare, dec_fn, NULL, "", &mo, &err) ||
			pf_shuffle(p, 300, NULL, &err) || pf_batch(p, 32, 0, &err) ||
			pf_take(p, 5, &err) || pf_iter_new(&it, p, &err);
		int good = !rc;
		for (int ep = 0; ep < 3 && good; ep++) {
			int nb = 0;
			pf_elem e;
			while ((rc = pf_iter_next(it, &e, &err)) == 0) {
				for (uint32_t b = 0; b < e.batch; b++)
					good &= check(((int64_t *)e.data[0])[b],
						      (float *)e.data[1] + 16 * b) >= 0;
				nb++;
				pf_elem_release(&e);
			}
			good &= rc == PF_END && nb == 5;
		}
		pf_iter_free(it);
		pf_pipeline_free(p);
		ok(good, "par %d: take(5) batches, 3 epochs cut short: intact every time", par);
	}

	/* the serial path's cost is measured where it runs: the map's feeder
	 * thread pulls every record through the shards' hand-out and the
	 * shuffle; its CPU is there, and no more than the process used */
	{
		pf_options o = { .seed = 3, .cpu_budget = 2 };
		pf_pipeline *p;
		pf_pipeline_new(&p, &o, &err);
		pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = 1 };
		pf_map_opts mo = { .num_parallel_calls = 2 };
		pf_iter *it = NULL;
		struct timespec c0, c1;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
		int rc = pf_shards(p, pathv, NSH, &so, &err) ||
			pf_map_func(p, "dec", dec_prepare, dec_fn, NULL, "", &mo, &err) ||
			pf_shuffle(p, 300, NULL, &err) || pf_batch(p, 32, 0, &err) ||
			pf_iter_new(&it, p, &err);
		pf_elem e;
		for (int ep = 0; ep < 20 && !rc; ep++) {
			while ((rc = pf_iter_next(it, &e, &err)) == 0)
				pf_elem_release(&e);
			rc = rc == PF_END ? 0 : rc;
		}
		uint64_t serial = 0;
		for (int i = 0; !rc && i < pf_iter_nstages(it); i++) {
			pf_op_stats st;
			pf_iter_stats(it, i, &st);
			serial += st.serial_cpu_ns;
		}
		pf_iter_free(it);
		pf_pipeline_free(p);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
		double proc = (c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec);
		ok(!rc && serial > 0 && serial <= proc,
		   "the map's feeder thread: %.1f ms of CPU (serial_cpu_ns), of %.1f ms in all",
		   serial / 1e6, proc / 1e6);
	}
	return done_testing();
}
