/* t1000-ops-basic: each op's meaning on the in-memory sources (range,
 * records): take, skip, repeat, rank shard, filter, batch, padded_batch,
 * cache, prefetch, map errors, the memory budget. */
#include <signal.h>
#include <unistd.h>

#include "pipefeed.h"
#include "tap.h"

static pf_error err;

/* Run pipeline p for one epoch; collect values (field 0 as i64; batches
 * flattened) into v (cap n); returns count, or a negative code. */
static long run_epoch(pf_iter *it, int64_t *v, long cap)
{
	pf_elem e;
	long n = 0;
	int rc;
	while ((rc = pf_iter_next(it, &e, &err)) == 0) {
		const int64_t *d = e.data[0];
		for (int64_t k = 0; k < e.nitems[0] && n < cap; k++)
			v[n++] = d[k];
		pf_elem_release(&e);
	}
	return rc == PF_END ? n : rc;
}

static long run_once(pf_pipeline *p, int64_t *v, long cap)
{
	pf_iter *it;
	if (pf_iter_new(&it, p, &err))
		return err.code;
	long n = run_epoch(it, v, cap);
	pf_iter_free(it);
	return n;
}

static int is_range(const int64_t *v, long n, int64_t a, int64_t step)
{
	for (long i = 0; i < n; i++)
		if (v[i] != a + i * step)
			return 0;
	return 1;
}

static pf_pipeline *range(int64_t n)
{
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, n, 1, &err);
	return p;
}

static int keep_even(void *u, const pf_elem *e, pf_error *er)
{
	return (*(const int64_t *)e->data[0] % 2) == 0;
}

static int fail_at_prepare(pf_map_ctx *ctx, pf_error *er)
{
	ctx->out = *ctx->in;
	return 0;
}

static int fail_on_7(void *s, const pf_elem *in, pf_elem *out, pf_error *er)
{
	int64_t x = *(const int64_t *)in->data[0];
	if (x == 7)
		return pf_error_set(er, PF_EMAP, "seven is bad");
	*(int64_t *)out->data[0] = x * 10;
	return 0;
}

int main(void)
{
	alarm(60);
	plan(37);
	static int64_t v[100000];
	pf_pipeline *p;
	long n;

	p = range(10);
	pf_take(p, 0, &err);
	is_int(run_once(p, v, 100), 0, "take(0) gives nothing");
	pf_pipeline_free(p);

	p = range(10);
	pf_take(p, 4, &err);
	n = run_once(p, v, 100);
	ok(n == 4 && is_range(v, n, 0, 1), "take(4) gives 0..3");
	pf_pipeline_free(p);

	p = range(10);
	pf_skip(p, 20, &err);
	is_int(run_once(p, v, 100), 0, "skip past the end gives nothing");
	pf_pipeline_free(p);

	p = range(10);
	pf_skip(p, 7, &err);
	n = run_once(p, v, 100);
	ok(n == 3 && is_range(v, n, 7, 1), "skip(7) gives 7..9");
	pf_pipeline_free(p);

	p = range(5);
	pf_repeat(p, 3, &err);
	n = run_once(p, v, 100);
	ok(n == 15 && is_range(v, 5, 0, 1) && is_range(v + 10, 5, 0, 1), "repeat(3)");
	pf_pipeline_free(p);

	p = range(5);
	pf_repeat(p, -1, &err);
	pf_take(p, 23, &err);
	n = run_once(p, v, 100);
	ok(n == 23 && v[22] == 2, "repeat forever + take(23)");
	pf_pipeline_free(p);

	/* rank split: together the ranks see each element once */
	for (int ranks = 1; ranks <= 4; ranks++) {
		int seen[101] = { 0 }, good = 1;
		for (int r = 0; r < ranks; r++) {
			p = range(101);
			pf_rank_shard(p, ranks, r, &err);
			n = run_once(p, v, 200);
			for (long i = 0; i < n; i++)
				seen[v[i]]++;
			pf_pipeline_free(p);
		}
		for (int i = 0; i < 101; i++)
			good &= seen[i] == 1;
		ok(good, "shard over %d ranks: every element exactly once", ranks);
	}

	p = range(10);
	pf_filter(p, "even", keep_even, NULL, &err);
	n = run_once(p, v, 100);
	ok(n == 5 && is_range(v, n, 0, 2), "filter keeps the even ones");
	pf_pipeline_free(p);

	/* batch remainder */
	for (int drop = 0; drop <= 1; drop++) {
		p = range(10);
		pf_batch(p, 4, drop, &err);
		pf_iter *it;
		pf_iter_new(&it, p, &err);
		pf_elem e;
		int sizes[4] = { 0 }, nb = 0, contiguous = 1;
		while (pf_iter_next(it, &e, &err) == 0) {
			if (nb < 4)
				sizes[nb] = (int)e.batch;
			contiguous &= e.data[0] == e.buf && e.nitems[0] == e.batch;
			nb++;
			pf_elem_release(&e);
		}
		if (drop)
			ok(nb == 2 && sizes[0] == 4 && sizes[1] == 4, "batch(4, drop) of 10: 2 batches");
		else
			ok(nb == 3 && sizes[2] == 2, "batch(4) of 10: 4, 4, 2");
		ok(contiguous, "batch fields live in the one buffer (drop=%d)", drop);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}

	/* padded_batch over variable-length records */
	static unsigned char bytes[64];
	for (int i = 0; i < 64; i++)
		bytes[i] = (unsigned char)(i + 1);
	const void *recs[5] = { bytes, bytes, bytes, bytes, bytes };
	size_t lens[5] = { 3, 10, 1, 0, 7 };
	for (int policy = 0; policy <= 1; policy++) {
		pf_pipeline_new(&p, NULL, &err);
		pf_records(p, recs, lens, 5, NULL, &err);
		pf_padded_opts po = { .max_len = 8, .policy = policy };
		pf_padded_batch(p, 3, &po, &err);
		pf_iter *it;
		pf_iter_new(&it, p, &err);
		pf_elem e;
		pf_error_clear(&err);
		int rc = pf_iter_next(it, &e, &err);
		if (policy == PF_PAD_TRUNCATE) {
			const unsigned char *d = e.data[0];
			ok(rc == 0 && e.batch == 3 && e.var_len[0] == 8, "padded to the quota 8");
			ok(e.lengths[0] && e.lengths[0][0] == 3 && e.lengths[0][1] == 8 &&
			   e.lengths[0][2] == 1, "stored lengths 3, 8 (truncated), 1");
			ok(e.lengths[0] && e.lengths[0][3] == 3 && e.lengths[0][4] == 10 &&
			   e.lengths[0][5] == 1, "lengths before the cut 3, 10, 1 (after the B stored ones)");
			int within = 1;
			for (uint32_t k = 0; e.lengths[0] && k < e.batch; k++)
				within &= e.lengths[0][k] <= e.var_len[0];
			ok(within, "no stored length passes the padded row (%lld)", (long long)e.var_len[0]);
			ok(d && d[2] == 3 && d[3] == 0 && d[8 + 7] == 8 && d[16] == 1 && d[17] == 0,
			   "rows zero padded, truncated row keeps its first 8");
			pf_elem_release(&e);
			rc = pf_iter_next(it, &e, &err);
			ok(rc == 0 && e.batch == 2 && e.var_len[0] == 7 && e.lengths[0][0] == 0,
			   "last batch padded to its own longest (7)");
			ok(rc == 0 && e.lengths[0][2] == 0 && e.lengths[0][3] == 7,
			   "short batch: lengths before the cut follow its B (2) stored ones");
			pf_elem_release(&e);
		} else {
			is_int(rc, PF_ELIMIT, "reject policy: over the quota fails");
			like(err.msg, "sample 1", "error names the sample");
		}
		pf_iter_free(it);
		pf_pipeline_free(p);
	}

	/* shuffle of variable-length records (kept whole, not rebuilt) */
	{
		static unsigned char recbytes[200][8];
		static const void *rp[200];
		static size_t rl[200];
		for (int i = 0; i < 200; i++) {
			memset(recbytes[i], i, 8);
			rp[i] = recbytes[i];
			rl[i] = (size_t)(i % 8) + 1;
		}
		pf_pipeline_new(&p, NULL, &err);
		pf_records(p, rp, rl, 200, NULL, &err);
		pf_shuffle(p, 16, NULL, &err);
		pf_iter *it;
		pf_iter_new(&it, p, &err);
		pf_elem e;
		int seen[200] = { 0 }, good = 1, moved = 0, k = 0;
		while (pf_iter_next(it, &e, &err) == 0) {
			const unsigned char *d = e.data[0];
			int val = d[0];
			good &= e.nitems[0] == (val % 8) + 1 && d[e.nitems[0] - 1] == val && e.id == (uint64_t)val;
			seen[val]++;
			moved += val != k++;
			pf_elem_release(&e);
		}
		for (int i = 0; i < 200; i++)
			good &= seen[i] == 1;
		ok(good, "shuffle of variable-length records: each once, intact");
		ok(moved > 100, "shuffle(16) moved %d of 200", moved);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}

	/* cache in memory with repeat: the input runs once */
	p = range(50);
	pf_cache(p, NULL, 0, &err);
	pf_repeat(p, 3, &err);
	n = run_once(p, v, 1000);
	ok(n == 150 && is_range(v + 100, 50, 0, 1), "memory cache + repeat(3)");
	pf_pipeline_free(p);

	/* cache cut short by take: the partial cache is not used */
	{
		p = range(50);
		pf_cache(p, NULL, 0, &err);
		pf_take(p, 10, &err);
		pf_iter *it;
		pf_iter_new(&it, p, &err);
		long a = run_epoch(it, v, 1000);
		long b = run_epoch(it, v, 1000);
		ok(a == 10 && b == 10 && is_range(v, 10, 0, 1), "cache + take: each epoch 0..9");
		pf_iter_free(it);
		pf_pipeline_free(p);
	}

	/* file cache: second epoch from the file, the file exists only when complete */
	{
		const char *dir = tap_tmpdir("t1000");
		char path[600];
		snprintf(path, sizeof(path), "%s/c.cache", dir);
		p = range(100);
		pf_cache(p, path, 0, &err);
		pf_iter *it;
		pf_iter_new(&it, p, &err);
		pf_elem e;
		pf_iter_next(it, &e, &err);
		pf_elem_release(&e);
		ok(access(path, F_OK) != 0, "cache file not there while filling");
		long a = run_epoch(it, v, 1000);
		ok(a == 99 && access(path, F_OK) == 0, "cache file renamed into place at the end");
		long b = run_epoch(it, v, 1000);
		ok(b == 100 && is_range(v, 100, 0, 1), "second epoch from the cache file");
		pf_iter_free(it);
		pf_pipeline_free(p);
	}

	/* map error names the op and the sample */
	p = range(20);
	pf_map_func(p, "f7", fail_at_prepare, fail_on_7, NULL, "", &(pf_map_opts){ .num_parallel_calls = 3 }, &err);
	pf_error_clear(&err);
	n = run_once(p, v, 100);
	is_int(n, PF_EMAP, "map error is returned");
	ok(strstr(err.msg, "map#1(f7)") && strstr(err.msg, "sample 7") && strstr(err.msg, "seven"),
	   "map error names op, sample, reason: %s", err.msg);
	pf_pipeline_free(p);

	/* memory budget: fails at build naming the op */
	{
		pf_options o = { .memory_budget = 1 << 20 };
		pf_pipeline_new(&p, &o, &err);
		pf_range(p, 0, 1000, 1, &err);
		pf_prefetch(p, 2, &err);
		pf_shuffle(p, 1000000, NULL, &err);
		pf_iter *it;
		pf_error_clear(&err);
		int rc = pf_iter_new(&it, p, &err);
		is_int(rc, PF_EBUDGET, "over budget fails at iterator start");
		like(err.msg, "shuffle#2", "the error names the op");
		pf_pipeline_free(p);
	}

	/* prefetch and stats */
	{
		p = range(1000);
		pf_prefetch(p, PF_AUTOTUNE, &err);
		pf_iter *it;
		pf_iter_new(&it, p, &err);
		n = run_epoch(it, v, 2000);
		long n2 = run_epoch(it, v + 1000, 2000);
		ok(n == 1000 && n2 == 1000 && is_range(v, 1000, 0, 1) && is_range(v + 1000, 1000, 0, 1),
		   "prefetch passes everything, two epochs");
		pf_op_stats st;
		pf_iter_stats(it, 1, &st);
		ok(st.elements == 2000 && st.depth >= 4 && st.depth <= 64 && st.autotuned,
		   "prefetch stats: 2000 out, depth %d (autotuned: starts at 4, at most 64)", st.depth);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	return done_testing();
}
