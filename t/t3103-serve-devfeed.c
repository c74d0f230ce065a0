/*
 * t3103-serve-devfeed: batches through the training device feed
 * (pf_servable feed_depth >= 1: pf_devfeed in push mode, a copy stream and
 * the compute stream with events) on the cpu backend, whose copies and
 * kernels are delayed at random (pf_device_opts test hooks, so a copy that
 * raced its compute would show as a wrong answer):
 *  - every request's answer equals the direct path's (feed_depth 0,
 *    pf_servable_predict) bit for bit, at feed depths 1, 2 and 4, with
 *    2 batch threads and 8 producers;
 *  - at depth 2 and more the copy of a batch ran while the batch before
 *    it on the same thread computed (overlap seen in the timeline); at
 *    depth 1 never (the copy waits for the slot's one done event);
 *  - the timeline is ordered: copy start <= copy end <= compute start <=
 *    compute end for every batch;
 *  - a feed depth outside 0..16 is refused naming it.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_batcher.h"
#include "pf_device.h"
#include "pf_model.h"
#include "pf_servable.h"
#include "tap.h"
#include "model_file.h"

#define NREQ 300
#define IN 64
#define OUT 10
#define NPROD 8

static float ins[NREQ][4 * IN], ref[NREQ][4 * OUT], got[NREQ][4 * OUT];
static int rows_of[NREQ];

typedef struct prod {
	pf_batcher *b;
	int id, fails;
	char msg[256];
} prod;

static void *producer(void *arg)
{
	prod *p = arg;
	for (int k = p->id; k < NREQ; k += NPROD) {
		pf_batch_req r = { .in = ins[k], .out = got[k], .rows = rows_of[k] };
		pf_error err = { 0 };
		if (pf_batcher_run(p->b, &r, &err) < 0) {
			p->fails++;
			snprintf(p->msg, sizeof(p->msg), "%s", err.msg);
		}
	}
	return NULL;
}

/* The timeline of the batches, per batch thread, in completion order. */
typedef struct tl {
	pthread_mutex_t mu;
	int (*complete)(void *, pf_batch *, pf_error *);
	void *ctx;
	uint64_t prev_end[2];   /* per thread: the last batch's compute end */
	int overlaps, ordered_bad, timed, batches;
} tl;

static tl T = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int timed_complete(void *ctx, pf_batch *b, pf_error *err)
{
	int rc = T.complete(ctx, b, err);
	pthread_mutex_lock(&T.mu);
	T.batches++;
	if (b->copy_start_ns && b->compute_end_ns) {
		T.timed++;
		if (!(b->copy_start_ns <= b->copy_end_ns &&
		      b->copy_end_ns <= b->compute_start_ns &&
		      b->compute_start_ns <= b->compute_end_ns))
			T.ordered_bad++;
		uint64_t *pe = &T.prev_end[b->thread & 1];
		if (*pe && b->copy_start_ns < *pe)
			T.overlaps++;   /* copied while the one before computed */
		*pe = b->compute_end_ns;
	}
	pthread_mutex_unlock(&T.mu);
	return rc;
}

/* Serve every request through the feed at depth; two checks (answers,
 * overlap) and, at depth 2, the timeline order. */
static void run_depth(const char *path, int depth)
{
	pf_device_opts dev = { .test_copy_delay_us = 300, .test_compute_delay_us = 300,
			       .test_seed = (uint64_t)depth };
	pf_servable_opts so = { .device = "cpu", .nthreads = 2, .max_rows = 8,
				.feed_depth = depth, .timeline = 1, .dev = &dev };
	pf_servable *sv = NULL;
	pf_error err = { 0 };
	pf_batcher_opts o = { 0 };
	pf_batcher *b = NULL;
	if (pf_servable_open_opts(&sv, path, &so, &err) < 0) {
		ok(0, "depth %d: %s", depth, err.msg);
		ok(0, "depth %d: overlap", depth);
		return;
	}
	pf_servable_hook(sv, &o);
	T.complete = o.complete;
	o.complete = timed_complete;
	memset(T.prev_end, 0, sizeof(T.prev_end));
	T.overlaps = T.ordered_bad = T.timed = T.batches = 0;
	o.max_batch_size = 8;
	o.max_execution_batch_size = 8;
	o.batch_timeout_us = 500;
	o.allowed_batch_sizes[0] = 8;
	o.n_allowed = 1;
	o.num_batch_threads = 2;
	if (pf_batcher_new(&b, &o, &err) < 0) {
		ok(0, "depth %d: batcher: %s", depth, err.msg);
		ok(0, "depth %d: overlap", depth);
		pf_servable_free(sv);
		return;
	}
	memset(got, 0, sizeof(got));
	pthread_t th[NPROD];
	prod p[NPROD];
	for (int i = 0; i < NPROD; i++) {
		p[i] = (prod){ b, i, 0, "" };
		pthread_create(&th[i], NULL, producer, &p[i]);
	}
	int fails = 0;
	for (int i = 0; i < NPROD; i++) {
		pthread_join(th[i], NULL);
		fails += p[i].fails;
		if (p[i].fails)
			diag("producer %d: %s", i, p[i].msg);
	}
	pf_batcher_free(b);
	pf_servable_free(sv);
	int diff = 0;
	for (int k = 0; k < NREQ; k++)
		diff += memcmp(got[k], ref[k], sizeof(float) * rows_of[k] * OUT) != 0;
	ok(fails == 0 && diff == 0,
	   "feed depth %d: %d requests in %d batches, every answer equals the direct path's bit for bit (%d differ, %d failed)",
	   depth, NREQ, T.batches, diff, fails);
	if (depth == 1)
		ok(T.timed == T.batches && T.overlaps == 0,
		   "feed depth 1: no copy overlapped the batch before it (%d of %d timed)",
		   T.timed, T.batches);
	else
		ok(T.timed == T.batches && T.overlaps > 0,
		   "feed depth %d: %d of %d batches were copied while the one before computed",
		   depth, T.overlaps, T.batches);
	if (depth == 2)
		ok(T.ordered_bad == 0,
		   "every batch's copy ended before its compute began (%d out of order)",
		   T.ordered_bad);
}

int main(void)
{
	plan(9);
	const char *dir = tap_tmpdir("t3103");
	char path[600];
	snprintf(path, sizeof(path), "%s/model.ckpt", dir ? dir : ".");
	if (save_model(path, "mlp:64-32-10", 8) < 0)
		return 1;
	unsigned seed = 11;
	for (int k = 0; k < NREQ; k++) {
		rows_of[k] = 1 + (int)(rand_r(&seed) % 4);
		for (int i = 0; i < rows_of[k] * IN; i++)
			ins[k][i] = (float)(rand_r(&seed) % 256) / 255.0f;
	}
	/* the direct path, each request alone padded to 8 (one GEMM shape) */
	pf_servable *sv = NULL;
	pf_error err = { 0 };
	int bad = pf_servable_open(&sv, path, "cpu", 1, 8, &err) < 0;
	for (int k = 0; !bad && k < NREQ; k++) {
		static float pin[8 * IN], pout[8 * OUT];
		memset(pin, 0, sizeof(pin));
		memcpy(pin, ins[k], sizeof(float) * rows_of[k] * IN);
		bad |= pf_servable_predict(sv, pin, 8, pout, &err) < 0;
		memcpy(ref[k], pout, sizeof(float) * rows_of[k] * OUT);
	}
	pf_servable_free(sv);
	ok(!bad, "direct-path answers computed %s", err.msg);
	run_depth(path, 1);
	run_depth(path, 2);
	run_depth(path, 4);
	pf_servable_opts so = { .nthreads = 1, .max_rows = 8, .feed_depth = 17 };
	pf_error e2 = { 0 };
	int rc = pf_servable_open_opts(&sv, path, &so, &e2);
	ok(rc == PF_EINVAL && !sv && strstr(e2.msg, "feed depth 17"),
	   "feed depth 17 is refused: %s", e2.msg);
	return done_testing();
}
