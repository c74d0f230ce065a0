/*
 * t3004-devfeed: device prefetch on the cpu backend with random delays in
 * copies and compute.  A compute-stream check reads each slot, sleeps, reads
 * it again (a copy landing in a slot still in use shows as a changed value)
 * and poisons it (a batch handed out before its copy finished shows as
 * poison).  Batches arrive in order, every epoch is complete, the epoch
 * limit and an early stop end cleanly, a pipeline error reaches the
 * consumer, and the stall counters add up.  Every case runs under alarm().
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "tap.h"

#define POISON 0xDB

static pf_device *dev;

typedef struct check {
	const int64_t *slot;
	size_t nbytes;
	int64_t first;
	uint32_t rows;
	unsigned seed;
} check;

static atomic_int torn, poisoned, checks_run;
static _Atomic int64_t value_sum;

static void sleep_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

/* Runs on the compute stream: the batch must be there, and stay there. */
static void check_fn(void *arg)
{
	check *c = arg;
	int64_t s = 0;
	for (uint32_t i = 0; i < c->rows; i++) {
		if (c->slot[i] == (int64_t)0xDBDBDBDBDBDBDBDBull)
			atomic_fetch_add(&poisoned, 1);
		else if (c->slot[i] != c->first + i)
			atomic_fetch_add(&torn, 1);
		s += c->slot[i];
	}
	sleep_us(c->seed % 1500);
	for (uint32_t i = 0; i < c->rows; i++)
		if (c->slot[i] != c->first + i)
			atomic_fetch_add(&torn, 1);
	atomic_fetch_add(&value_sum, s);
	memset((void *)c->slot, POISON, c->nbytes);
	atomic_fetch_add(&checks_run, 1);
}

/* Pinned batches: count the blocks the pipeline takes and gives back. */
static atomic_long pinned_out, pinned_allocs;
static void *count_alloc(void *user, size_t bytes)
{
	void *p = pf_devfeed_pinned_alloc(user, bytes);
	if (p) {
		atomic_fetch_add(&pinned_out, 1);
		atomic_fetch_add(&pinned_allocs, 1);
	}
	return p;
}
static void count_free(void *user, void *p, size_t bytes)
{
	atomic_fetch_sub(&pinned_out, 1);
	pf_devfeed_pinned_free(user, p, bytes);
}

static pf_pipeline *range_pipeline_opts(int64_t n, int batch, int64_t sleep_us_,
					int pinned, pf_error *err)
{
	pf_pipeline *p;
	pf_options po = { 0 };
	if (pinned) {
		po.batch_alloc = count_alloc;
		po.batch_free = count_free;
		po.alloc_user = dev;
	}
	pf_pipeline_new(&p, &po, err);
	pf_range(p, 0, n, 1, err);
	if (sleep_us_)
		pf_sleep(p, sleep_us_, err);
	pf_batch(p, batch, 0, err);
	return p;
}

static pf_pipeline *range_pipeline(int64_t n, int batch, int64_t sleep_us_,
				   pf_error *err)
{
	return range_pipeline_opts(n, batch, sleep_us_, 0, err);
}

/*
 * depth slots, random copy/compute delays; pinned: the batches are built in
 * pinned memory and copied from directly, so a batch given back to the
 * pipeline before its copy is over would be refilled under the copy and
 * show up as torn values.
 */
static void run_depth(int depth, int pinned)
{
	enum { N = 203, B = 8, EPOCHS = 2, NB = (N + B - 1) / B };
	pf_error err = { 0 };
	atomic_store(&pinned_allocs, 0);
	pf_pipeline *p = range_pipeline_opts(N, B, 0, pinned, &err);
	pf_iter *it;
	pf_stream *cs;
	pf_iter_new(&it, p, &err);
	pf_stream_new(dev, &cs, &err);
	pf_devfeed *f;
	pf_devfeed_opts o = { .depth = depth, .epochs = EPOCHS, .pinned_batches = pinned };
	ok(pf_devfeed_new(&f, dev, it, cs, &o, &err) == 0, "depth %d%s: feed started (%s)",
	   depth, pinned ? " pinned" : "", err.msg);
	static check checks[EPOCHS * NB];
	int nchk = 0, inorder = 1, ends = 0, batches[EPOCHS] = { 0 };
	atomic_store(&torn, 0);
	atomic_store(&poisoned, 0);
	atomic_store(&checks_run, 0);
	atomic_store(&value_sum, 0);
	int64_t expect = 0;
	pf_devbatch b;
	int rc;
	while (ends < EPOCHS && (rc = pf_devfeed_next(f, &b, &err)) >= 0) {
		if (rc == PF_END) {
			inorder &= expect == N;
			expect = 0;
			ends++;
			continue;
		}
		uint32_t rows = (uint32_t)b.nitems[0];
		inorder &= rows == b.batch && b.epoch == (uint64_t)ends;
		check *c = &checks[nchk];
		c->slot = b.data[0];
		c->nbytes = rows * sizeof(int64_t);
		c->first = expect;
		c->rows = rows;
		c->seed = (unsigned)(nchk * 2654435761u >> 7);
		nchk++;
		batches[ends]++;
		expect += rows;
		pf_host_func(dev, cs, check_fn, c, &err);
		pf_devfeed_release(f, &b, &err);
	}
	is_int(ends, EPOCHS, "depth %d: both epochs ended with PF_END", depth);
	is_int(pf_devfeed_next(f, &b, &err), PF_END, "depth %d: after the last epoch, PF_END again (no hang)",
	       depth);
	pf_stream_sync(dev, cs, &err);
	ok(inorder && batches[0] == NB && batches[1] == NB,
	   "depth %d: %d + %d batches, each epoch in order and complete", depth,
	   batches[0], batches[1]);
	is_int(atomic_load(&checks_run), EPOCHS * NB, "depth %d: every batch checked on the compute stream",
	       depth);
	is_int(atomic_load(&value_sum), (int64_t)EPOCHS * N * (N - 1) / 2,
	       "depth %d: the device saw every value once per epoch", depth);
	ok(atomic_load(&torn) == 0 && atomic_load(&poisoned) == 0,
	   "depth %d: no slot overwritten in use (%d), none read before its copy (%d)",
	   depth, atomic_load(&torn), atomic_load(&poisoned));
	pf_devfeed_stats st;
	pf_devfeed_get_stats(f, &st);
	ok(st.batches == 2 * NB && st.stall_host_ns <= st.host_wait_ns && st.copy_ns > 0,
	   "depth %d: stats: %llu batches, stall %llu <= host wait %llu ns, copies %llu ns", depth,
	   (unsigned long long)st.batches, (unsigned long long)st.stall_host_ns,
	   (unsigned long long)st.host_wait_ns, (unsigned long long)st.copy_ns);
	ok(err.code == 0, "depth %d: no error (%s)", depth, err.msg);
	pf_devfeed_free(f);
	pf_iter_free(it);
	pf_stream_free(dev, cs);
	pf_pipeline_free(p);
	if (pinned)
		ok(atomic_load(&pinned_allocs) > 0 && atomic_load(&pinned_out) == 0,
		   "depth %d pinned: batches built in pinned memory (%ld blocks), all given back",
		   depth, atomic_load(&pinned_allocs));
}

static void early_stop(void)
{
	pf_error err = { 0 };
	pf_pipeline *p = range_pipeline(100000, 4, 0, &err);
	pf_iter *it;
	pf_stream *cs;
	pf_iter_new(&it, p, &err);
	pf_stream_new(dev, &cs, &err);
	pf_devfeed *f;
	pf_devfeed_new(&f, dev, it, cs, NULL, &err);
	pf_devbatch b;
	int got = 0;
	for (int i = 0; i < 3; i++)
		if (pf_devfeed_next(f, &b, &err) == 0) {
			got++;
			pf_devfeed_release(f, &b, &err);
		}
	pf_devfeed_free(f);     /* mid-epoch, feeder busy: must return */
	is_int(got, 3, "early stop: three batches taken, then the feed freed mid-epoch");
	pf_iter_free(it);
	pf_stream_free(dev, cs);
	pf_pipeline_free(p);
}

static int fail_at_50(void *user, const pf_elem *e, pf_error *err)
{
	if (*(const int64_t *)e->data[0] == 50)
		return pf_error_set(err, PF_EMAP, "element 50 is bad");
	return 1;
}

static void error_path(void)
{
	pf_error err = { 0 };
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, 1000, 1, &err);
	pf_filter(p, "fail50", fail_at_50, NULL, &err);
	pf_batch(p, 10, 0, &err);
	pf_iter *it;
	pf_stream *cs;
	pf_iter_new(&it, p, &err);
	pf_stream_new(dev, &cs, &err);
	pf_devfeed *f;
	pf_devfeed_new(&f, dev, it, cs, NULL, &err);
	pf_devbatch b;
	int rc, n = 0;
	while ((rc = pf_devfeed_next(f, &b, &err)) == 0) {
		n++;
		pf_devfeed_release(f, &b, &err);
	}
	ok(rc < 0 && n == 5, "a pipeline error reaches the consumer after the 5 good batches (rc %d, %d batches)",
	   rc, n);
	like(err.msg, "element 50 is bad", "with the pipeline's message");
	pf_error e2 = { 0 };
	ok(pf_devfeed_next(f, &b, &e2) == rc, "the error is sticky");
	pf_devfeed_free(f);
	pf_iter_free(it);
	pf_stream_free(dev, cs);
	pf_pipeline_free(p);
}

/* A slow pipeline and instant compute: the consumer's waits are stall. */
static void stall_counts(void)
{
	pf_error err = { 0 };
	pf_pipeline *p = range_pipeline(40, 4, 2000, &err);
	pf_iter *it;
	pf_stream *cs;
	pf_iter_new(&it, p, &err);
	pf_stream_new(dev, &cs, &err);
	pf_devfeed *f;
	pf_devfeed_opts o = { .epochs = 1 };
	pf_devfeed_new(&f, dev, it, cs, &o, &err);
	pf_devbatch b;
	while (pf_devfeed_next(f, &b, &err) == 0)
		pf_devfeed_release(f, &b, &err);
	pf_devfeed_stats st;
	pf_devfeed_get_stats(f, &st);
	ok(st.stall_host_ns > 40ull * 2000 * 1000 / 2,
	   "slow input: the consumer's wait counts as stall (%llu ns)",
	   (unsigned long long)st.stall_host_ns);
	pf_devfeed_free(f);
	pf_iter_free(it);
	pf_stream_free(dev, cs);
	pf_pipeline_free(p);
}

int main(void)
{
	alarm(120);
	plan(3 * 9 + 2 * 10 + 5);
	pf_device_opts o = { .test_copy_delay_us = 2000,
			     .test_compute_delay_us = 500, .test_seed = 11 };
	pf_error err = { 0 };
	if (pf_device_open(&dev, "cpu", &o, &err) < 0) {
		diag("%s", err.msg);
		return 1;
	}
	run_depth(1, 0);
	run_depth(2, 0);
	run_depth(3, 0);
	run_depth(1, 1);
	run_depth(2, 1);
	early_stop();
	error_path();
	stall_counts();
	pf_device_close(dev);
	return done_testing();
}
