/*
 * stats_bench - what recording stats costs (pf_stats.h).
 *
 *   bench/stats_bench [ROUNDS] [SPEC]
 *
 * 1. pf_stats_step: nanoseconds per call, alone and with the sampler thread
 *    running beside it.
 * 2. The same pipeline run to the end of an epoch with and without a stats
 *    file (sampler attached, one pf_stats_step per batch), ROUNDS rounds
 *    alternating: median samples/s of each and the difference, and the
 *    median CPU time (user + system, all threads) per million samples,
 *    which a machine shared with other work disturbs less than wall time.
 *    SPEC defaults to a source-only pipeline whose batches come as fast as
 *    the runtime can make them (the worst case for a per-step cost):
 *    "range(0, 2000000) | batch(64) | prefetch(4)".  Fashion-MNIST:
 *    "shards('DIR/fmnist-train-*.pfs') | map(decode) | batch(64) | prefetch(auto)"
 *    (add `| repeat(5)` for a longer epoch).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "pf_spec.h"
#include "pf_stats.h"
#include "pipefeed.h"
#include "bench_median.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const pf_error *e)
{
	fprintf(stderr, "stats_bench: %s: %s\n", what, e->msg);
	exit(1);
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec * 1e-6;
}

/* One epoch of spec; with_stats: a stats file at path, sampler attached.
 * Returns samples/s; *cpu_per_m: CPU seconds per million samples, the
 * whole run (stats file created and closed included). */
static double epoch(const char *spec, const char *path, int with_stats, double *cpu_per_m)
{
	double c0 = cpu_s();
	pf_error err = { 0 };
	pf_pipeline *p;
	pf_iter *it;
	pf_stats *st = NULL;
	if (pf_pipeline_new(&p, NULL, &err) < 0 || pf_spec_apply(p, spec, &err) < 0 ||
	    pf_iter_new(&it, p, &err) < 0)
		die("pipeline", &err);
	if (with_stats && (pf_stats_create(&st, path, NULL, &err) < 0 ||
			   pf_stats_attach(st, it, &err) < 0))
		die("stats", &err);
	uint64_t n = 0;
	double t0 = now_s(), tprev = t0;
	for (;;) {
		pf_elem b;
		double a = now_s();
		int rc = pf_iter_next(it, &b, &err);
		if (rc == PF_END)
			break;
		if (rc < 0)
			die("next", &err);
		uint32_t k = b.batch ? b.batch : 1;
		n += k;
		pf_elem_release(&b);
		double z = now_s();
		if (st)
			pf_stats_step(st, (uint64_t)((z - a) * 1e9), (uint64_t)((a - tprev) * 1e9), 0, k);
		tprev = z;
	}
	double sps = n / (now_s() - t0);
	if (st && pf_stats_close(st, &err) < 0)
		die("close", &err);
	pf_iter_free(it);
	pf_pipeline_free(p);
	*cpu_per_m = (cpu_s() - c0) / (n * 1e-6);
	return sps;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 9;
	const char *spec = argc > 2 ? argv[2] : "range(0, 2000000) | batch(64) | prefetch(4)";
	char path[64];
	snprintf(path, sizeof(path), "/tmp/stats_bench.%d.pfstat", (int)getpid());
	if (rounds < 1 || rounds > 1000)
		rounds = 9;
	pf_error err = { 0 };

	/* 1. per-step cost */
	pf_stats *st;
	pf_stats_opts so = { .interval_ms = 1 };
	if (pf_stats_create(&st, path, &so, &err) < 0)
		die("stats", &err);
	const int N = 2000000;
	double t0 = now_s();
	for (int i = 0; i < N; i++)
		pf_stats_step(st, (uint64_t)i * 13 % 100000, 1000000, 0, 64);
	double alone = (now_s() - t0) / N * 1e9;
	pf_pipeline *p;
	pf_iter *it;
	if (pf_pipeline_new(&p, NULL, &err) < 0 ||
	    pf_spec_apply(p, "range(0, 1000) | batch(8) | prefetch(2)", &err) < 0 ||
	    pf_iter_new(&it, p, &err) < 0 || pf_stats_attach(st, it, &err) < 0)
		die("pipeline", &err);
	t0 = now_s();
	for (int i = 0; i < N; i++)
		pf_stats_step(st, (uint64_t)i * 13 % 100000, 1000000, 0, 64);
	double busy = (now_s() - t0) / N * 1e9;
	pf_stats_close(st, &err);
	pf_iter_free(it);
	pf_pipeline_free(p);
	printf("pf_stats_step: %.1f ns per call alone, %.1f ns with a 1 ms sampler beside it\n",
	       alone, busy);

	/* 2. A/B on a whole epoch */
	double *with = calloc((size_t)rounds * 4, sizeof(double)), *without = with + rounds,
	       *cw = with + 2 * rounds, *co = with + 3 * rounds, dummy;
	epoch(spec, path, 0, &dummy); /* warm the page cache */
	for (int r = 0; r < rounds; r++) {
		if (r % 2) {
			with[r] = epoch(spec, path, 1, &cw[r]);
			without[r] = epoch(spec, path, 0, &co[r]);
		} else {
			without[r] = epoch(spec, path, 0, &co[r]);
			with[r] = epoch(spec, path, 1, &cw[r]);
		}
	}
	double mw = bench_median(with, rounds), mo = bench_median(without, rounds);
	double mcw = bench_median(cw, rounds), mco = bench_median(co, rounds);
	printf("pipeline: %s\n", spec);
	printf("  without stats: %.0f samples/s, %.4f CPU s per million samples (medians of %d)\n",
	       mo, mco, rounds);
	printf("  with stats:    %.0f samples/s, %.4f CPU s per million samples\n", mw, mcw);
	printf("  overhead:      %+.2f%% throughput, %+.2f%% CPU per sample\n", 100 * (mo - mw) / mo,
	       100 * (mcw - mco) / mco);
	remove(path);
	free(with);
	return 0;
}
