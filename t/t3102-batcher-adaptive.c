/*
 * t3102-batcher-adaptive: the batcher's adaptive mode (slo_p99_ms) on a
 * compute that takes 200 us + 30 us a row: 24 closed-loop producers; a
 * fixed setting that waits 20 ms for company misses a 10 ms SLO, the
 * adaptive mode holds it (p99 of the second half of the run; the best of
 * 3 runs, the host is shared) while batching (mean batch > 4 rows, over 2x
 * the requests/s of batch size 1), and logs its decisions.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pf_batcher.h"
#include "tap.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int slow(void *ctx, pf_batch *b, pf_error *err)
{
	usleep((useconds_t)(200 + 30 * b->padded_rows));
	memcpy(b->out, b->in, (size_t)b->padded_rows * sizeof(float));
	return 0;
}

static int nlog;
static void on_log(void *ctx, const char *line)
{
	if (nlog++ < 3)
		diag("%s", line);
}

#define MAXLAT 200000
static uint64_t lat_end[MAXLAT], lat_ns[MAXLAT];
static int nlat;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t t_stop;

static void *producer(void *arg)
{
	pf_batcher *b = arg;
	float in = 1, out;
	while (now_ns() < t_stop) {
		pf_batch_req r = { .in = &in, .out = &out, .rows = 1 };
		uint64_t t0 = now_ns();
		if (pf_batcher_run(b, &r, NULL) < 0)
			continue;
		uint64_t t1 = now_ns();
		pthread_mutex_lock(&mu);
		if (nlat < MAXLAT) {
			lat_end[nlat] = t1;
			lat_ns[nlat++] = t1 - t0;
		}
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Run 24 producers for secs against opts; p99 (ms) of the second half,
 * requests/s, mean batch. */
static void run(pf_batcher_opts *o, double secs, double *p99, double *rps,
		double *mean_batch)
{
	pf_batcher *b = NULL;
	pf_error err = { 0 };
	if (pf_batcher_new(&b, o, &err) < 0) {
		diag("%s", err.msg);
		exit(1);
	}
	nlat = 0;
	uint64_t t0 = now_ns();
	t_stop = t0 + (uint64_t)(secs * 1e9);
	pthread_t th[24];
	for (int i = 0; i < 24; i++)
		pthread_create(&th[i], NULL, producer, b);
	for (int i = 0; i < 24; i++)
		pthread_join(th[i], NULL);
	pf_batcher_stats st;
	pf_batcher_get_stats(b, &st);
	pf_batcher_free(b);
	uint64_t half = t0 + (uint64_t)(secs * 0.5e9);
	static uint64_t l[MAXLAT];
	int n = 0;
	for (int i = 0; i < nlat; i++)
		if (lat_end[i] >= half)
			l[n++] = lat_ns[i];
	qsort(l, (size_t)n, sizeof(uint64_t), cmp);
	*p99 = n ? l[(size_t)(0.99 * (n - 1))] / 1e6 : 0;
	*rps = nlat / secs;
	*mean_batch = st.batches ? (double)st.rows / st.batches : 0;
}

int main(void)
{
	plan(4);
	pf_batcher_opts o = { 0 };
	o.in_bytes = o.out_bytes = sizeof(float);
	o.compute = slow;
	o.max_batch_size = 64;
	double p99, rps, mb, p99_1, rps_1, mb_1, p99_f, rps_f, mb_f;

	o.max_batch_size = 1;
	run(&o, 1.0, &p99_1, &rps_1, &mb_1);
	diag("batch size 1: %.0f req/s, p99 %.2f ms", rps_1, p99_1);

	o.max_batch_size = 64;
	o.batch_timeout_us = 20000;
	run(&o, 1.0, &p99_f, &rps_f, &mb_f);
	ok(p99_f > 10.0, "a fixed 20 ms wait at max 64 misses a 10 ms SLO (p99 %.2f ms, %.0f req/s, batch %.1f)",
	   p99_f, rps_f, mb_f);

	o.batch_timeout_us = 0;
	o.slo_p99_ms = 10.0;
	o.log = on_log;
	/* timing on a shared 2-core host: the best of 3 runs */
	for (int tries = 0; tries < 3; tries++) {
		run(&o, 2.0, &p99, &rps, &mb);
		diag("adaptive run %d: p99 %.2f ms, %.0f req/s, batch %.1f", tries + 1, p99, rps, mb);
		if (p99 <= 10.0 && mb > 4 && rps > 2 * rps_1)
			break;
	}
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
	/* a sanitizer build's 24 producers and batch threads run several
	 * times slower: the latency bound is judged in plain builds only */
	diag("adaptive mode, slo 10 ms: p99 %.2f ms over the second half", p99);
	skip(1, "a sanitizer build: the 10 ms p99 is judged in plain builds");
#else
	ok(p99 <= 10.0, "adaptive mode, slo 10 ms: p99 %.2f ms over the second half", p99);
#endif
	ok(mb > 4 && rps > 2 * rps_1,
	   "... while batching: %.0f req/s (%.1fx batch size 1), mean batch %.1f rows",
	   rps, rps / rps_1, mb);
	ok(nlog > 0, "its decisions are logged (%d lines)", nlog);
	return done_testing();
}
