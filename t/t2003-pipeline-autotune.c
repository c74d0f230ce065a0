/* t2003-pipeline-autotune: the AUTOTUNE controller raises a slow map's
 * worker count until the consumer no longer waits (stall < 5% after a few
 * logged decisions), stays within the CPU and memory budgets, and leaves
 * the element order as it was (ordered map: same seed, same order). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pipefeed.h"
#include "tap.h"

static pf_error err;

static void sleep_us(long us)
{
	struct timespec ts = { 0, us * 1000 };
	nanosleep(&ts, NULL);
}

static int slow_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "value: i64", e);
}

/* value -> value, after user-pointer microseconds */
static int slow_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	sleep_us((long)(intptr_t)st);
	*(int64_t *)out->data[0] = *(const int64_t *)in->data[0];
	return 0;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* range(n) [-> shuffle(shuf)] -> map(slow us, AUTOTUNE or par) [-> prefetch]:
 * the values in order into seq. */
static int run(int n, int shuf, int us, int par, int prefetch, int64_t *seq)
{
	pf_options o = { .cpu_budget = 4, .seed = 5, .memory_budget = 64 << 20 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	pf_map_opts mo = { .num_parallel_calls = par };
	int rc = pf_range(p, 0, n, 1, &err);
	if (!rc && shuf)
		rc = pf_shuffle(p, shuf, NULL, &err);
	if (!rc)
		rc = pf_map_func(p, "slow", slow_prepare, slow_fn, (void *)(intptr_t)us, "", &mo, &err);
	if (!rc && prefetch)
		rc = pf_prefetch(p, PF_AUTOTUNE, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	pf_elem e;
	int k = 0;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		if (k < n)
			seq[k] = *(const int64_t *)e.data[0];
		k++;
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END && k == n ? 0 : -1;
}

int main(void)
{
	alarm(120);
	plan(9);
	if (pf_map_register("t2003-slow", slow_prepare, slow_fn, (void *)200, &err))
		return 1;

	/* map 200 us per element, consumer 150 us: 1 worker is too few, 2 do */
	long rss0 = rss_kib();
	pf_options o = { .cpu_budget = 4, .seed = 1, .memory_budget = 64 << 20 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	pf_map_opts mo = { .num_parallel_calls = PF_AUTOTUNE };
	pf_range(p, 0, 4000, 1, &err);
	pf_map(p, "t2003-slow", NULL, &mo, &err);
	pf_iter *it;
	int rc = pf_iter_new(&it, p, &err);
	pf_op_stats st;
	pf_iter_stats(it, 1, &st);
	ok(!rc && st.parallelism == 1 && st.autotuned, "autotuned map starts with 1 worker (%d)",
	   st.parallelism);
	int n = 0, in_order = 1, over = 0;
	uint64_t w_last = 0, t_last = 0;
	long rss_max = 0;
	pf_elem e;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		in_order &= *(const int64_t *)e.data[0] == n;
		pf_elem_release(&e);
		sleep_us(150);
		if (++n == 3000)
			pf_iter_stall(it, &w_last, &t_last);
		if (n % 500 == 0) {
			uint64_t sum = 0;
			for (int i = 0; i < pf_iter_nstages(it); i++) {
				pf_iter_stats(it, i, &st);
				sum += st.buffer_bytes;
			}
			over |= sum > o.memory_budget;
			long r = rss_kib() - rss0;
			if (r > rss_max)
				rss_max = r;
		}
	}
	uint64_t w, t;
	pf_iter_stall(it, &w, &t);
	double stall = (double)(w - w_last) / (double)(t - t_last);
	pf_iter_stats(it, 1, &st);
	ok(rc == PF_END && n == 4000 && in_order, "all 4000 elements, in order");
#if defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer slows every pipeline thread several times over,
	 * not the sleeps: the bound is looser there */
	const double stall_max = 0.10;
#else
	const double stall_max = 0.05;
#endif
	ok(stall < stall_max, "consumer stall over the last 1000 elements: %.1f%% (< %.0f%%), %d workers",
	   100 * stall, 100 * stall_max, st.parallelism);
	pf_autotune_event ev;
	size_t nev = 0;
	int first_ok = pf_iter_autotune_log(it, 0, &ev) == 0 && ev.stage == 1 &&
		!strcmp(ev.knob, "parallelism") && ev.old_value == 1 && ev.new_value == 2 &&
		ev.reason[0];
	if (first_ok)
		diag("first decision at %.1f ms: %s %d -> %d (%s)", ev.t_ns / 1e6, ev.knob,
		     ev.old_value, ev.new_value, ev.reason);
	while (pf_iter_autotune_log(it, nev, &ev) == 0)
		nev++;
	ok(first_ok, "the log shows the decision: map parallelism 1 -> 2, with a reason");
	ok(nev >= 1 && nev <= 3 && st.parallelism <= 4,
	   "bounded: %zu decisions, %d workers (cpu budget 4)", nev, st.parallelism);
	ok(!over && rss_max < (long)(o.memory_budget >> 10),
	   "declared buffers within the budget; RSS growth %ld KiB < budget", rss_max);
	ok(pf_iter_autotune_log(it, nev, &ev) == PF_END, "past the last decision: PF_END");
	pf_iter_free(it);
	pf_pipeline_free(p);

	/* determinism: autotuned parallelism does not change the order */
	int64_t *a = calloc(1500, sizeof(int64_t)), *b = calloc(1500, sizeof(int64_t)),
		*c = calloc(1500, sizeof(int64_t));
	int r1 = run(1500, 100, 100, PF_AUTOTUNE, 1, a);
	int r2 = run(1500, 100, 100, PF_AUTOTUNE, 1, b);
	int r3 = run(1500, 100, 0, 1, 0, c);
	ok(!r1 && !r2 && !memcmp(a, b, 1500 * sizeof(int64_t)),
	   "autotuned map + prefetch: same seed, same order");
	ok(!r3 && !memcmp(a, c, 1500 * sizeof(int64_t)), "and the same order as one fixed worker");
	free(a);
	free(b);
	free(c);
	return done_testing();
}
