/*
 * t2050-stats-file: the stats file written while a pipeline runs reads back
 * with the same figures: stages and their counters, consumer totals, p50 /
 * p99 of the step histograms, the ring of recent steps (oldest first, after
 * wrapping), the knob-event ring, the time series (thinned when full, in
 * time order); a reader running beside the writer always gets a consistent
 * copy; damaged files get the right error code.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pf_checksum.h"
#include "pf_stats.h"
#include "tap.h"

static char path[600];
static atomic_int done;
static atomic_int reads_ok, reads_bad;

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&done)) {
		pf_stats_snap *s;
		pf_error err = { 0 };
		if (pf_stats_read_file(&s, path, &err) == 0) {
			atomic_fetch_add(&reads_ok, 1);
			pf_stats_snap_free(s);
		} else {
			atomic_fetch_add(&reads_bad, 1);
			fprintf(stderr, "reader: %s\n", err.msg);
		}
	}
	return NULL;
}

static size_t slurp(const char *p, unsigned char **buf)
{
	FILE *f = fopen(p, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0)
		return 0;
	*buf = malloc((size_t)st.st_size);
	size_t n = fread(*buf, 1, (size_t)st.st_size, f);
	fclose(f);
	return n;
}

static int parse_code(const unsigned char *b, size_t n, pf_error *err)
{
	pf_stats_snap *s = NULL;
	pf_error_clear(err);
	int rc = pf_stats_parse(&s, b, n, "x.pfstat", err);
	pf_stats_snap_free(s);
	return rc;
}

int main(void)
{
	plan(39);
	const char *dir = tap_tmpdir("t2050");
	snprintf(path, sizeof(path), "%s/run.pfstat", dir);
	pf_error err = { 0 };

	/* buckets: a value lies in its bucket, buckets are within 1/8 */
	int good = 1;
	for (uint64_t v = 1; v < (1ull << 62); v = v * 3 + 1) {
		uint64_t lo, hi;
		pf_stats_bucket_range(pf_stats_bucket(v), &lo, &hi);
		if (!(lo <= v && v < hi) || (v >= 8 && (hi - lo) * 8 > lo))
			good = 0;
	}
	ok(good, "every value lies in its histogram bucket, buckets within 12.5%%");

	pf_pipeline *p;
	pf_iter *it;
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, 1000, 1, &err);
	pf_batch(p, 10, 0, &err);
	pf_prefetch(p, 3, &err);
	ok(pf_iter_new(&it, p, &err) == 0, "pipeline starts: %s", err.msg);
	pf_stats *st;
	/* a 1 ms sampler keeps the reader racing the writer; under TSan every
	 * access is ~10x slower and a whole-file read cannot fit between two
	 * samples, so the reader would only ever see torn copies (a liveness
	 * limit of the seqlock, not a consistency bug): sample every 10 ms there */
#if defined(__SANITIZE_THREAD__)
	pf_stats_opts so = { .interval_ms = 10, .label = "t2050 run" };
#else
	pf_stats_opts so = { .interval_ms = 1, .label = "t2050 run" };
#endif
	ok(pf_stats_create(&st, path, &so, &err) == 0, "stats file created: %s", err.msg);
	ok(pf_stats_attach(st, it, &err) == 0, "attached to the iterator");
	ok(pf_stats_attach(st, it, &err) == PF_ESTATE, "a second attach is PF_ESTATE");
	pf_error_clear(&err);

	pthread_t rt;
	pthread_create(&rt, NULL, reader, NULL);
	/* 100 batches; step k: stall k us, compute 1000 us */
	uint64_t elems = 0;
	for (int k = 0; k < 100; k++) {
		pf_elem b;
		if (pf_iter_next(it, &b, &err) != 0)
			break;
		uint32_t nb = b.batch;
		elems += nb;
		pf_elem_release(&b);
		pf_stats_step(st, (uint64_t)k * 1000, 1000000, 7, nb);
	}
	/* more steps than the ring keeps: 600 in all */
	for (int k = 100; k < 600; k++)
		pf_stats_step(st, (uint64_t)k * 1000, 1000000, 7, 10);
	for (int k = 0; k < 300; k++)
		pf_stats_event(st, 0, k % 3 - 1, "parallelism", k, k + 1, "test event");
	/* until the 1 ms series has filled and thinned itself at least once
	 * (about 1 s; up to 20 s on a loaded machine) and the reader has had
	 * more than 10 whole reads (a loaded ASan build managed exactly 10 in
	 * the second it took to thin: a liveness limit, not a torn read) */
	pf_stats_snap *s = NULL;
	for (int tries = 0; tries < 200; tries++) {
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
		if (pf_stats_read_file(&s, path, &err) == 0 && s->interval_ns > so.interval_ms * 1000000ull &&
		    atomic_load(&reads_ok) > 10) {
			pf_stats_snap_free(s);
			break;
		}
		pf_stats_snap_free(s);
	}
	atomic_store(&done, 1);
	pthread_join(rt, NULL);
	ok(atomic_load(&reads_ok) > 10 && atomic_load(&reads_bad) == 0,
	   "a reader beside the writer always gets a consistent copy (%d reads, %d failed)",
	   atomic_load(&reads_ok), atomic_load(&reads_bad));

	ok(pf_stats_read_file(&s, path, &err) == 0, "running file reads back: %s", err.msg);
	ok(s && !s->finished, "not finished while running");
	pf_stats_snap_free(s);
	pf_stats_detach(st);
	ok(pf_stats_close(st, &err) == 0, "closed");
	pf_iter_free(it);
	pf_pipeline_free(p);

	ok(pf_stats_read_file(&s, path, &err) == 0, "finished file reads back: %s", err.msg);
	if (!s)
		return done_testing();
	ok(s->finished, "marked finished");
	is_str(s->label, "t2050 run", "label kept");
	is_int(s->nstages, 3, "three stages (range, batch, prefetch)");
	is_str(s->stages[2].name, "prefetch", "last stage is prefetch");
	is_int(s->stages[2].now.elements, 100, "prefetch produced the 100 batches taken");
	ok(s->stages[0].now.elements >= elems, "range produced at least the %llu elements consumed",
	   (unsigned long long)elems);
	is_int(s->stages[2].now.depth, 3, "prefetch depth recorded");
	is_int(s->steps, 600, "600 steps");
	is_int(s->samples, 6000, "samples summed (600 steps of 10)");
	is_int(s->stall_ns, 1000ull * (599 * 600 / 2), "stall total");
	is_int(s->h2d_ns, 7 * 600, "h2d total");
	uint64_t p50 = pf_stats_quantile(s, PF_STATS_H_STALL, 0.5);
	ok(p50 > 299000 * 0.93 && p50 < 300000 * 1.07, "stall p50 ~ 0.3 ms (%llu ns)",
	   (unsigned long long)p50);
	uint64_t p99 = pf_stats_quantile(s, PF_STATS_H_STALL, 0.99);
	ok(p99 > 593000 * 0.93 && p99 < 594000 * 1.07, "stall p99 ~ 0.594 ms (%llu ns)",
	   (unsigned long long)p99);
	is_int(s->nsteps, PF_STATS_STEP_CAP, "step ring holds the last 512 steps");
	is_int(s->steprecs[0].stall_ns, (600 - PF_STATS_STEP_CAP) * 1000ull,
	       "oldest kept step first");
	is_int(s->steprecs[s->nsteps - 1].stall_ns, 599000, "newest step last");
	is_int(s->events_total, 300, "300 events logged");
	ok(s->nevents == PF_STATS_EVENT_CAP && s->events[0].old_value == 300 - PF_STATS_EVENT_CAP &&
	   s->events[s->nevents - 1].new_value == 300 && s->events[0].stage >= -1,
	   "event ring keeps the last 256, oldest first");
	int mono = 1;
	for (size_t k = 1; k < s->nsamples; k++)
		if (s->samples_ts[k].t_ns < s->samples_ts[k - 1].t_ns)
			mono = 0;
	ok(s->interval_ns >= 2000000 && s->nsamples <= PF_STATS_SAMPLE_CAP && mono &&
	   s->nsamples > 100,
	   "the time series thinned itself (spacing %llu ns, %zu points, in time order)",
	   (unsigned long long)s->interval_ns, s->nsamples);
	is_int(s->samples_ts[s->nsamples - 1].st[2].elements, 100,
	       "the last point has the final counters");
	pf_stats_snap_free(s);

	/* damaged files */
	unsigned char *b = NULL;
	size_t n = slurp(path, &b);
	ok(n > 4096, "file read (%zu bytes)", n);
	is_int(parse_code(b, n / 2, &err), PF_ETRUNC, "truncated: PF_ETRUNC");
	like(err.msg, "x.pfstat", "the message names the file");
	is_int(parse_code(b, 100, &err), PF_ETRUNC, "cut inside the header: PF_ETRUNC");
	b[n - 100] ^= 0x40;
	is_int(parse_code(b, n, &err), PF_ECORRUPT, "a flipped bit in a finished file: PF_ECORRUPT");
	like(err.msg, "offset 208", "the message names the checksum's offset");
	b[n - 100] ^= 0x40;
	b[8] = PF_STATS_VERSION + 1;
	is_int(parse_code(b, n, &err), PF_EVERSION, "a newer version: PF_EVERSION");
	b[8] = PF_STATS_VERSION;
	b[112] |= 1;
	is_int(parse_code(b, n, &err), PF_ESTATE, "an odd sequence (torn copy): PF_ESTATE");
	memcpy(b, "PK\3\4xxxx", 8);
	is_int(parse_code(b, n, &err), PF_EFORMAT, "a foreign file: PF_EFORMAT");
	free(b);
	return done_testing();
}
