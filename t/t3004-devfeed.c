/*
 * t3004-devfeed: device prefetch on the device named by PF_TEST_DEVICE (cpu
 * by default, with random delays in copies and compute; `make check-gpu`:
 * cuda; t/devtest.h).  Each batch is checked on the compute stream by the
 * slot canary (pf_k_seq_canary, a kernel on either backend): it reads the
 * slot's sequence numbers, waits a random time, reads them again (a copy
 * landing in a slot still in use shows as a changed value) and poisons the
 * slot (a batch handed out before its copy finished shows as poison); its
 * counters live in device memory and are read back at the end.  Depths 1-4,
 * batches built in pageable and in pinned memory, small batches and large
 * (512 KiB) copies: batches arrive in order (FIFO), every epoch is
 * complete, the epoch limit and an early stop end cleanly, a pipeline error
 * reaches the consumer, and the stall counters add up.  Every case runs
 * under alarm().
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "tap.h"
#include "devtest.h"

static pf_device *dev;

/* Pinned batches: count the blocks the pipeline takes and gives back. */
static atomic_long pinned_out, pinned_allocs;
/* the first blocks given out, to tell a batch read in place (zero copy) */
#define NBLK 256
static pthread_mutex_t blk_mu = PTHREAD_MUTEX_INITIALIZER;
static char *blk[NBLK];          /* under blk_mu */
static size_t blk_bytes[NBLK];
static long nblk;
static void *count_alloc(void *user, size_t bytes)
{
	void *p = pf_devfeed_pinned_alloc(user, bytes);
	if (p) {
		atomic_fetch_add(&pinned_out, 1);
		atomic_fetch_add(&pinned_allocs, 1);
		pthread_mutex_lock(&blk_mu);
		if (nblk < NBLK) {
			blk[nblk] = p;
			blk_bytes[nblk++] = bytes;
		}
		pthread_mutex_unlock(&blk_mu);
	}
	return p;
}

/* Is p inside a pinned block the pipeline built a batch in? */
static int in_pinned_block(const void *p)
{
	int in = 0;
	pthread_mutex_lock(&blk_mu);
	for (long k = 0; k < nblk && !in; k++)
		in = (const char *)p >= blk[k] && (const char *)p < blk[k] + blk_bytes[k];
	pthread_mutex_unlock(&blk_mu);
	return in;
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
 * depth slots, random copy/compute delays (cpu); pinned: the batches are
 * built in pinned memory and copied from directly, so a batch given back to
 * the pipeline before its copy is over would be refilled under the copy and
 * show up as torn values; pinned 2: zero copy as well, where the device
 * reads host memory (the cpu backend): the compute stream reads the batch
 * in place, so one given back before its step is over shows as torn rows.
 * n values in batches of b, two epochs.
 */
static void run_depth(int depth, int pinned, int64_t n, int b)
{
	int zc = pinned == 2 && pf_device_reads_host(dev), inplace = 1;
	enum { EPOCHS = 2 };
	int64_t nb = (n + b - 1) / b;
	pf_error err = { 0 };
	atomic_store(&pinned_allocs, 0);
	pthread_mutex_lock(&blk_mu);
	nblk = 0;
	pthread_mutex_unlock(&blk_mu);
	pf_pipeline *p = range_pipeline_opts(n, b, 0, pinned, &err);
	pf_iter *it;
	pf_stream *cs;
	int64_t *cnt, c[4] = { 0 };
	pf_iter_new(&it, p, &err);
	pf_stream_new(dev, &cs, &err);
	pf_dev_alloc(dev, (void **)&cnt, sizeof(c), &err);
	dt_put(cnt, c, sizeof(c));
	pf_devfeed *f;
	pf_devfeed_opts o = { .depth = depth, .epochs = EPOCHS, .pinned_batches = pinned != 0,
			      .zero_copy = pinned == 2 };
	char what[64];
	snprintf(what, sizeof(what), "depth %d%s, batch %d", depth,
		 pinned == 2 ? " zero copy" : pinned ? " pinned" : "", b);
	ok(pf_devfeed_new(&f, dev, it, cs, &o, &err) == 0, "%s: feed started (%s)", what,
	   err.msg);
	int nchk = 0, inorder = 1, ends = 0, batches[EPOCHS] = { 0 };
	int64_t expect = 0;
	pf_devbatch db;
	int rc;
	while (ends < EPOCHS && (rc = pf_devfeed_next(f, &db, &err)) >= 0) {
		if (rc == PF_END) {
			inorder &= expect == n;
			expect = 0;
			ends++;
			continue;
		}
		uint32_t rows = (uint32_t)db.nitems[0];
		inorder &= rows == db.batch && db.epoch == (uint64_t)ends;
		inplace &= in_pinned_block(db.data[0]) == zc;
		unsigned wait = (unsigned)(nchk * 2654435761u >> 7) % 1500;
		pf_k_seq_canary(dev, cs, db.data[0], rows, expect, wait, cnt, &err);
		nchk++;
		batches[ends]++;
		expect += rows;
		pf_devfeed_release(f, &db, &err);
	}
	is_int(ends, EPOCHS, "%s: both epochs ended with PF_END", what);
	is_int(pf_devfeed_next(f, &db, &err), PF_END,
	       "%s: after the last epoch, PF_END again (no hang)", what);
	pf_stream_sync(dev, cs, &err);
	dt_get(c, cnt, sizeof(c));
	ok(inorder && batches[0] == nb && batches[1] == nb,
	   "%s: %d + %d batches, each epoch in order and complete", what, batches[0],
	   batches[1]);
	is_int(c[2], EPOCHS * nb, "%s: every batch checked on the compute stream", what);
	is_int(c[3], (int64_t)EPOCHS * n * (n - 1) / 2,
	       "%s: the device saw every value once per epoch", what);
	ok(c[0] == 0 && c[1] == 0,
	   "%s: no slot overwritten in use (%lld torn rows), none read before its copy (%lld poisoned)",
	   what, (long long)c[0], (long long)c[1]);
	pf_devfeed_stats st;
	pf_devfeed_get_stats(f, &st);
	ok(st.batches == (uint64_t)(2 * nb) && st.stall_host_ns <= st.host_wait_ns &&
	   (zc ? st.copy_ns == 0 : st.copy_ns > 0) && st.zero_copy == zc,
	   "%s: stats: %llu batches, stall %llu <= host wait %llu ns, copies %llu ns, zero copy %d",
	   what, (unsigned long long)st.batches, (unsigned long long)st.stall_host_ns,
	   (unsigned long long)st.host_wait_ns, (unsigned long long)st.copy_ns, st.zero_copy);
	ok(inplace, "%s: %s", what, zc ? "every batch read in place, in the block the pipeline built it in"
				       : "every batch read from a device slot (a copy)");
	ok(err.code == 0, "%s: no error (%s)", what, err.msg);
	pf_devfeed_free(f);
	pf_iter_free(it);
	pf_dev_free(dev, cnt);
	pf_stream_free(dev, cs);
	pf_pipeline_free(p);
	if (pinned)
		ok(atomic_load(&pinned_allocs) > 0 && atomic_load(&pinned_out) == 0,
		   "%s: batches built in pinned memory (%ld blocks), all given back", what,
		   atomic_load(&pinned_allocs));
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
	alarm(240);
	pf_device_opts o = { .test_copy_delay_us = 2000,
			     .test_compute_delay_us = 500, .test_seed = 11 };
	dev = dt_open(&o);
	plan(4 * 10 + 4 * 11 + 4 * 11 + 3 * 11 + 5);
	diag("device: %s", pf_device_info(dev));
	for (int d = 1; d <= 4; d++)
		run_depth(d, 0, 203, 8);
	for (int d = 1; d <= 4; d++)
		run_depth(d, 1, 203, 8);
	for (int d = 1; d <= 4; d++)
		run_depth(d, 2, 203, 8);
	/* large copies: 64Ki rows of 8 bytes (512 KiB) per batch */
	run_depth(2, 1, 5 * 65536 + 77, 65536);
	run_depth(4, 1, 5 * 65536 + 77, 65536);
	run_depth(2, 2, 5 * 65536 + 77, 65536);
	early_stop();
	error_path();
	stall_counts();
	dt_close();
	pf_device_close(dev);
	return done_testing();
}
