/* t1002-ops-shuffle-slots: the shuffle's slot mode (an input that lends
 * fixed-size records: shards) draws ahead of its output to fetch slots
 * early; its order must still be the element mode's (one draw per call),
 * for buffers smaller than, equal to and larger than the input, in the
 * steady state and while the buffer drains, epoch after epoch.  Both must
 * also be tf.data's algorithm with the input reset at the epoch boundary
 * (a model below), although the shuffle fills the next epoch's buffer
 * while the last one drains; an epoch cut short (take) and a failure of
 * the next epoch's input met during that fill must not change that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_rng.h"
#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#define N 1003
#define EPOCHS 3
static pf_error err;
static char path[600];
static int64_t vals[N];
static const void *recs[N];
static size_t lens[N];

static int write_shard(const char *dir)
{
	pf_schema s;
	if (pf_schema_parse(&s, "value: i64", &err))
		return -1;
	pf_shard_name(path, sizeof(path), dir, 0, 1);
	pf_shard_writer *w;
	pf_shard_write_opts o = { .block_size = 800 };
	if (pf_shard_writer_open(&w, path, &s, &o, &err))
		return -1;
	for (int i = 0; i < N; i++) {
		vals[i] = 1000 + 3 * i;
		recs[i] = &vals[i];
		lens[i] = 8;
		if (pf_shard_writer_add(w, &vals[i], 8, &err))
			return -1;
	}
	return pf_shard_writer_close(w, &err);
}

/* The values out of source -> shuffle(size) [-> take(tk) when tk > 0],
 * EPOCHS epochs, into out; the plan's text into plan.  0 or -1. */
static int run_tk(int from_shards, int64_t size, int tk, int64_t *out, char *plan, size_t cap)
{
	pf_options o = { .seed = 11, .cpu_budget = 2 };
	pf_pipeline *p;
	if (pf_pipeline_new(&p, &o, &err))
		return -1;
	const char *pv[1] = { path };
	pf_source_opts so = { .cycle_length = 1, .num_parallel_reads = 2 };
	int rc = from_shards ? pf_shards(p, pv, 1, &so, &err) :
		pf_records(p, recs, lens, N, NULL, &err);
	if (!rc)
		rc = pf_shuffle(p, size, NULL, &err);
	if (!rc && tk > 0)
		rc = pf_take(p, tk, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	if (!rc && plan)
		pf_iter_describe(it, plan, cap);
	int n = 0;
	for (int ep = 0; ep < EPOCHS && !rc; ep++) {
		pf_elem e;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			int64_t v = -1;
			if (e.nitems[0] == 8)
				memcpy(&v, e.data[0], 8);
			if (n < EPOCHS * N)
				out[n] = v;
			n++;
			pf_elem_release(&e);
		}
		rc = rc == PF_END ? 0 : rc;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc || n != EPOCHS * (tk > 0 ? tk : N) ? -1 : 0;
}

static int run(int from_shards, int64_t size, int64_t *out, char *plan, size_t cap)
{
	return run_tk(from_shards, size, 0, out, plan, cap);
}

/* map "twice": value i64 -> v i64 (the value), x f32[4] (derived) */
static int tw_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "v: i64, x: f32[4]", e);
}

static int tw_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	int64_t v;
	if (in->nitems[0] != 8)
		return pf_error_set(e, PF_ECORRUPT, "record of %lld bytes", (long long)in->nitems[0]);
	memcpy(&v, in->data[0], 8);
	*(int64_t *)out->data[0] = v;
	for (int k = 0; k < 4; k++)
		((float *)out->data[1])[k] = (float)(v * 2 + k);
	return 0;
}

/* source -> shuffle(size) -> map(twice, par)+batch(8), EPOCHS epochs: the
 * values into out (-1 where x does not match v).  0 or -1. */
static int run_map(int from_shards, int64_t size, int par, int64_t *out, char *plan, size_t cap)
{
	pf_options o = { .seed = 11, .cpu_budget = 4 };
	pf_pipeline *p;
	if (pf_pipeline_new(&p, &o, &err))
		return -1;
	const char *pv[1] = { path };
	pf_source_opts so = { .cycle_length = 1, .num_parallel_reads = 2 };
	pf_map_opts mo = { .num_parallel_calls = par };
	int rc = from_shards ? pf_shards(p, pv, 1, &so, &err) :
		pf_records(p, recs, lens, N, NULL, &err);
	if (!rc)
		rc = pf_shuffle(p, size, NULL, &err);
	if (!rc)
		rc = pf_map_func(p, "twice", tw_prepare, tw_fn, NULL, "", &mo, &err);
	if (!rc)
		rc = pf_batch(p, 8, 0, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	if (!rc)
		pf_iter_describe(it, plan, cap);
	int n = 0;
	for (int ep = 0; ep < EPOCHS && !rc; ep++) {
		pf_elem e;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			const int64_t *v = e.data[0];
			const float *x = e.data[1];
			for (uint32_t b = 0; b < e.batch; b++, n++) {
				int good = 1;
				for (int k = 0; k < 4; k++)
					good &= x[4 * b + k] == (float)(v[b] * 2 + k);
				if (n < EPOCHS * N)
					out[n] = good ? v[b] : -1;
			}
			pf_elem_release(&e);
		}
		rc = rc == PF_END ? 0 : rc;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc || n != EPOCHS * N ? -1 : 0;
}

/* The model: tf.data's shuffle of the values in input order, EPOCHS
 * epochs of `take` elements each (N: all), the generator seeded as the
 * op (seed 11, op index 1, the epoch). */
static void model(int64_t size, int take, int64_t *out)
{
	static int64_t buf[N];
	int n = 0;
	for (int ep = 0; ep < EPOCHS; ep++) {
		pf_rng r;
		pf_rng_seed(&r, 11, (1ull << 40) ^ (uint64_t)ep);
		int64_t count = 0, next = 0;
		while (count < size && next < N)
			buf[count++] = vals[next++];
		for (int k = 0; k < take && count; k++) {
			int64_t i = (int64_t)pf_rng_below(&r, (uint64_t)count);
			out[n++] = buf[i];
			if (next < N)
				buf[i] = vals[next++];
			else
				buf[i] = buf[--count];
		}
	}
}

/* records -> shuffle(size) -> take(tk), EPOCHS epochs, into out. */
static int run_take(int64_t size, int tk, int64_t *out)
{
	return run_tk(0, size, tk, out, NULL, 0);
}

/* map "late": fails on its call number `fail_at` (counted over epochs) */
static int late_calls, fail_at;
static int late_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "value: i64", e);
}

static int late_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	(void)st;
	if (++late_calls == fail_at)
		return pf_error_set(e, PF_EMAP, "call %d fails", late_calls);
	if (in->nitems[0] != 8)
		return pf_error_set(e, PF_ECORRUPT, "record of %lld bytes", (long long)in->nitems[0]);
	memcpy(out->data[0], in->data[0], 8);
	return 0;
}

static int exactly_once(const int64_t *s)
{
	static unsigned char seen[N];
	for (int ep = 0; ep < EPOCHS; ep++) {
		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < N; i++) {
			int64_t v = s[ep * N + i], k = (v - 1000) / 3;
			if (v < 1000 || (v - 1000) % 3 || k >= N || seen[k])
				return 0;
			seen[k] = 1;
		}
	}
	return 1;
}

int main(void)
{
	alarm(60);
	static const int64_t sizes[] = { 1, 2, 7, 64, 500, N - 1, N, N + 5, 5000 };
	int ns = (int)(sizeof(sizes) / sizeof(sizes[0]));
	plan(3 * ns + 1 + 3 + 5);
	if (write_shard(tap_tmpdir("t1002"))) {
		diag("%s", err.msg);
		return 1;
	}
	static int64_t a[EPOCHS * N], b[EPOCHS * N];
	char pa[128] = "", pb[128] = "";
	for (int i = 0; i < ns; i++) {
		int ra = run(1, sizes[i], a, pa, sizeof(pa));
		int rb = run(0, sizes[i], b, pb, sizeof(pb));
		ok(!ra && !rb && exactly_once(a) && exactly_once(b),
		   "shuffle(%lld): each record once per epoch, slots [%s] and elements [%s]%s%s",
		   (long long)sizes[i], pa, pb, ra || rb ? ": " : "", ra || rb ? err.msg : "");
		ok(!ra && !rb && !memcmp(a, b, sizeof(a)),
		   "shuffle(%lld): slot mode gives the element mode's order, %d epochs",
		   (long long)sizes[i], EPOCHS);
		static int64_t m[EPOCHS * N];
		model(sizes[i], N, m);
		ok(!ra && !memcmp(a, m, sizeof(a)),
		   "shuffle(%lld): the order of tf.data's algorithm, reset at each epoch's end",
		   (long long)sizes[i]);
	}

	/* an epoch cut short while the buffer drains (the next epoch's fill
	 * begun) and one cut before it drains: the model's orders */
	{
		static int64_t m[EPOCHS * N];
		int r = run_take(500, N - 100, a);
		model(500, N - 100, m);
		ok(!r && !memcmp(a, m, (size_t)EPOCHS * (N - 100) * sizeof(int64_t)),
		   "shuffle(500) -> take(%d): cut in the drain, the next epochs as the model's%s%s",
		   N - 100, r ? ": " : "", r ? err.msg : "");
		r = run_take(500, 300, a);
		model(500, 300, m);
		ok(!r && !memcmp(a, m, (size_t)EPOCHS * 300 * sizeof(int64_t)),
		   "shuffle(500) -> take(300): cut before the drain, the model's order");
	}

	/* the next epoch's input fails during this epoch's drain: this epoch
	 * is delivered whole, the failure comes with the next one */
	{
		pf_options o = { .seed = 11, .cpu_budget = 2 };
		pf_pipeline *p = NULL;
		pf_iter *it = NULL;
		late_calls = 0;
		fail_at = N + 3;
		int rc = pf_pipeline_new(&p, &o, &err);
		if (!rc)
			rc = pf_records(p, recs, lens, N, NULL, &err);
		if (!rc)
			rc = pf_map_func(p, "late", late_prepare, late_fn, NULL, "", NULL, &err);
		if (!rc)
			rc = pf_shuffle(p, 64, NULL, &err);
		if (!rc)
			rc = pf_iter_new(&it, p, &err);
		int n0 = 0, rc0 = rc, rc1 = rc;
		pf_elem e;
		while (!rc && (rc0 = pf_iter_next(it, &e, &err)) == 0) {
			n0++;
			pf_elem_release(&e);
		}
		int filled = late_calls;
		pf_error e1 = { 0 };
		if (!rc)
			rc1 = pf_iter_next(it, &e, &e1);
		ok(rc0 == PF_END && n0 == N, "the epoch before the failure is whole (%d of %d)%s%s", n0, N,
		   rc0 != PF_END ? ": " : "", rc0 != PF_END ? err.msg : "");
		ok(filled == fail_at, "... and its drain pulled the next epoch's records up to the failure (call %d)", filled);
		ok(rc1 == PF_EMAP && strstr(e1.msg, "call 1006 fails"),
		   "the next epoch begins with the failure: %s", e1.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	run(1, 64, a, pa, sizeof(pa));
	run(1, 64, b, pb, sizeof(pb));
	ok(!memcmp(a, b, sizeof(a)) && memcmp(a, a + N, N * sizeof(int64_t)),
	   "same seed, same order; the next epoch is reshuffled");

	/* a parallel map after the slots reads them in place (the slots stay
	 * valid while the map's units are out): same samples, same order as
	 * one worker and as the element mode */
	static int64_t c[EPOCHS * N];
	int r1 = run_map(1, 1000, 1, a, pa, sizeof(pa));
	int r2 = run_map(1, 1000, 3, b, pb, sizeof(pb));
	int r3 = run_map(0, 1000, 3, c, pa, sizeof(pa));
	ok(!r1 && !r2 && exactly_once(b), "shuffle -> map(par 3)+batch: each sample once, intact [%s]%s%s",
	   pb, r2 ? ": " : "", r2 ? err.msg : "");
	ok(!r1 && !r2 && !memcmp(a, b, sizeof(a)), "... the order of one worker");
	ok(!r2 && !r3 && !memcmp(b, c, sizeof(b)), "... and of the element mode (records source)");
	return done_testing();
}
