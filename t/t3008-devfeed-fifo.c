/*
 * t3008-devfeed-fifo: the device feed refills its free slots
 * first-in-first-out, on the device named by PF_TEST_DEVICE (cpu by
 * default; t/devtest.h; the copy delays are the cpu backend's, a GPU's
 * copies are simply fast).
 *
 *  - rotation: whatever the number of batches the consumer holds before it
 *    releases them (in the order taken), batch k arrives in slot
 *    k mod depth; a slow pipeline makes several slots free at once, where
 *    last-in-first-out would refill the most recently released first;
 *  - overlap: a consumer that enqueues its steps (a host function sleeping
 *    STEP_US on the compute stream) and never blocks on them, copies that
 *    take up to 3/4 of a step: at depth 2, 3 and 4 each copy runs during
 *    an earlier step, so the compute stream hardly ever waits for a copy
 *    (stall_device_ns), and the run takes about steps x STEP_US.  Refilling
 *    the slot of the step just enqueued first makes each copy wait for
 *    that step, and the compute stream then waits for the copy.
 *
 * Every case runs under alarm().
 */
#include "config.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "tap.h"
#include "devtest.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static pf_pipeline *range_pipeline(pf_device *dev, int64_t n, int batch, int64_t sleep_us,
				   pf_error *err)
{
	pf_pipeline *p;
	pf_options po = { .batch_alloc = pf_devfeed_pinned_alloc,
			  .batch_free = pf_devfeed_pinned_free, .alloc_user = dev };
	pf_pipeline_new(&p, &po, err);
	pf_range(p, 0, n, 1, err);
	if (sleep_us)
		pf_sleep(p, sleep_us, err);
	pf_batch(p, batch, 0, err);
	return p;
}

/* What one check runs: the pipeline, its iterator, a compute stream and a
 * feed of depth `depth` over them, one epoch. */
struct feed {
	pf_device *dev;
	pf_pipeline *p;
	pf_iter *it;
	pf_stream *cs;
	pf_devfeed *f;
};

static void feed_open(struct feed *x, pf_device *dev, pf_pipeline *p, int depth, pf_error *err)
{
	pf_devfeed_opts o = { .depth = depth, .epochs = 1, .pinned_batches = 1 };
	x->dev = dev;
	x->p = p;
	pf_iter_new(&x->it, p, err);
	pf_stream_new(dev, &x->cs, err);
	pf_devfeed_new(&x->f, dev, x->it, x->cs, &o, err);
}

static void feed_close(struct feed *x)
{
	pf_devfeed_free(x->f);
	pf_iter_free(x->it);
	pf_stream_free(x->dev, x->cs);
	pf_pipeline_free(x->p);
}

/* The consumer holds 1, 2, ..., depth batches in turn, then releases them
 * in the order taken; every batch's slot must be its sequence number mod
 * depth.  The pipeline is slow (a sleep per element), so the feeder is in
 * pf_iter_next while the releases happen and finds them all free. */
static void rotation(pf_device *dev, int depth)
{
	enum { N = 240, B = 2 };
	pf_error err = { 0 };
	struct feed x;
	feed_open(&x, dev, range_pipeline(dev, N, B, 300, &err), depth, &err);
	pf_devfeed *f = x.f;
	pf_stream *cs = x.cs;
	pf_devbatch held[16];
	int nheld = 0, want = 1, n = 0, rotated = 1, first_bad = -1, slot_bad = -1;
	for (;;) {
		int rc = pf_devfeed_next(f, &held[nheld], &err);
		if (rc == 0) {
			if (held[nheld].slot != (int)(held[nheld].seq % (uint64_t)depth) &&
			    rotated) {
				rotated = 0;
				first_bad = n;
				slot_bad = held[nheld].slot;
			}
			nheld++;
			n++;
		}
		if (rc != 0 || nheld == want) {
			for (int i = 0; i < nheld; i++)
				pf_devfeed_release(f, &held[i], &err);
			nheld = 0;
			want = want % depth + 1;
		}
		if (rc != 0)
			break;
	}
	ok(rotated && n == N / B, "depth %d: %d batches, batch k in slot k mod %d%s", depth, n,
	   depth, rotated ? "" : " (not so)");
	if (!rotated)
		diag("batch %d came in slot %d, not %d", first_bad, slot_bad, first_bad % depth);
	pf_stream_sync(dev, cs, &err);
	feed_close(&x);
}

static void sleep_fn(void *arg)
{
	unsigned us = *(const unsigned *)arg;
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

/* Steps of STEP_US on the compute stream, never waited for by the host;
 * copies up to 3/4 of a step (a device whose copies sleep).  Returns the
 * compute stream's wait for copies as a share of the steps' time. */
static void overlap(int depth)
{
	enum { NB = 40, STEP_US = 8000, COPY_US = 6000 };
	static const unsigned step_us = STEP_US;
	pf_device *dev;
	pf_error err = { 0 };
	pf_device_opts dopt = { .test_copy_delay_us = COPY_US, .test_seed = 5 };
	if (pf_device_open(&dev, dt_kind(), &dopt, &err) < 0) {
		printf("Bail out! %s: %s\n", dt_kind(), err.msg);
		exit(1);
	}
	struct feed x;
	feed_open(&x, dev, range_pipeline(dev, NB * 4, 4, 0, &err), depth, &err);
	pf_devfeed *f = x.f;
	pf_stream *cs = x.cs;
	pf_devbatch b;
	/* the first batch (its copy is start-up, not overlap) */
	pf_devfeed_next(f, &b, &err);
	pf_stream_sync(dev, cs, &err);
	pf_devfeed_stats s0;
	pf_devfeed_get_stats(f, &s0);
	double t0 = now_s();
	int n = 1;
	do {
		pf_host_func(dev, cs, sleep_fn, (void *)&step_us, &err);
		pf_devfeed_release(f, &b, &err);
	} while (pf_devfeed_next(f, &b, &err) == 0 && ++n);
	pf_stream_sync(dev, cs, &err);
	double wall = now_s() - t0;
	pf_devfeed_stats s1;
	pf_devfeed_get_stats(f, &s1);
	double waited = (s1.stall_device_ns - s0.stall_device_ns) * 1e-9;
	double steps = NB * STEP_US * 1e-6;
	/* serialized, each step would wait a copy: NB x COPY_US / 2 on
	 * average, 0.375 of the steps' time; overlapped, almost nothing */
	ok(n == NB && waited < 0.08 * steps,
	   "depth %d: copies overlap the steps: the compute stream waited %.1f ms for copies in %.0f ms of steps (%d batches)",
	   depth, waited * 1e3, steps * 1e3, n);
	/* loose: the host's scheduling shows here (the wait above is the
	 * measure of overlap), so not judged on a host whose run queue is
	 * far longer than its CPUs: there the sleeping steps wake late */
	double load = 0;
	FILE *lf = fopen("/proc/loadavg", "r");
	if (lf) {
		if (fscanf(lf, "%lf", &load) != 1)
			load = 0;
		fclose(lf);
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (load > 2.0 * (double)(cpus > 0 ? cpus : 1)) {
		char why[96];
		snprintf(why, sizeof(why), "host overloaded (load %.1f on %ld CPUs): wall %.0f ms not judged",
			 load, cpus, wall * 1e3);
		skip(1, why);
	} else {
		ok(wall >= steps && wall < 1.2 * steps + 0.01,
		   "depth %d: %d steps of %d us took %.0f ms (steps alone: %.0f ms)", depth, n,
		   STEP_US, wall * 1e3, steps * 1e3);
	}
	feed_close(&x);
	pf_device_close(dev);
}

int main(void)
{
	alarm(120);
	pf_device *dev = dt_open(NULL);
	plan(3 + 3 * 2);
	diag("device: %s", pf_device_info(dev));
	for (int d = 2; d <= 4; d++)
		rotation(dev, d);
	dt_close();
	pf_device_close(dev);
	for (int d = 2; d <= 4; d++)
		overlap(d);
	return done_testing();
}
