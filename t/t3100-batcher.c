/*
 * t3100-batcher: the dynamic batcher's semantics on a toy compute (out =
 * 2 * in[0] + in[1] per row): a full batch runs at once, a partial one at
 * batch_timeout_us, preferred sizes, padding to allowed sizes, splitting,
 * fail fast at max_enqueued, priorities, per-request timeouts (rejected,
 * never computed), the DELAY policy, preserve_ordering across threads,
 * exact answers under concurrent producers, and free() draining the queue.
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

/* ---- the toy compute, with a gate and a log ------------------------------ */

#define LOGN 4096
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int gate_closed, in_compute;
static int nlog, log_rows[LOGN], log_padded[LOGN];
static float log_first[LOGN];     /* first input value of each batch */
static float seen[LOGN];          /* every row's in[0] computed */
static int nseen;
static int sleep_us_by_thread[4];

static void reset(void)
{
	pthread_mutex_lock(&mu);
	nlog = nseen = 0;
	gate_closed = in_compute = 0;
	memset(sleep_us_by_thread, 0, sizeof(sleep_us_by_thread));
	pthread_mutex_unlock(&mu);
}

static void gate(int closed)
{
	pthread_mutex_lock(&mu);
	gate_closed = closed;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void wait_in_compute(void)
{
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&mu);
		int c = in_compute;
		pthread_mutex_unlock(&mu);
		if (c)
			return;
		usleep(1000);
	}
}

static int toy(void *ctx, pf_batch *b, pf_error *err)
{
	const float *in = b->in;
	float *out = b->out;
	pthread_mutex_lock(&mu);
	in_compute++;
	while (gate_closed)
		pthread_cond_wait(&cv, &mu);
	if (nlog < LOGN) {
		log_rows[nlog] = b->rows;
		log_padded[nlog] = b->padded_rows;
		log_first[nlog] = in[0];
		nlog++;
	}
	for (int i = 0; i < b->rows && nseen < LOGN; i++)
		seen[nseen++] = in[2 * i];
	int us = b->thread < 4 ? sleep_us_by_thread[b->thread] : 0;
	pthread_mutex_unlock(&mu);
	if (us)
		usleep((useconds_t)us);
	for (int i = 0; i < b->padded_rows; i++)
		out[i] = 2 * in[2 * i] + in[2 * i + 1];
	pthread_mutex_lock(&mu);
	in_compute--;
	pthread_mutex_unlock(&mu);
	return 0;
}

static pf_batcher_opts base(int max_batch, uint64_t timeout_us)
{
	pf_batcher_opts o = { 0 };
	o.in_bytes = 2 * sizeof(float);
	o.out_bytes = sizeof(float);
	o.compute = toy;
	o.max_batch_size = max_batch;
	o.batch_timeout_us = timeout_us;
	return o;
}

/* A request with its own buffers and a completion flag. */
typedef struct treq {
	pf_batch_req r;
	float in[64 * 2], out[64];
	volatile int done;
	int order;
} treq;

static int done_count, done_order[LOGN];

static void on_done(pf_batch_req *r)
{
	treq *t = (treq *)r;
	pthread_mutex_lock(&mu);
	t->order = done_count;
	if (done_count < LOGN)
		done_order[done_count] = (int)t->in[0];
	done_count++;
	t->done = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void init_req(treq *t, int rows, float base_v)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < rows; i++) {
		t->in[2 * i] = base_v + (float)i;
		t->in[2 * i + 1] = 0.5f;
	}
	t->r.in = t->in;
	t->r.out = t->out;
	t->r.rows = rows;
	t->r.done = on_done;
}

static int answers_ok(const treq *t)
{
	for (int i = 0; i < t->r.rows; i++)
		if (t->out[i] != 2 * t->in[2 * i] + t->in[2 * i + 1])
			return 0;
	return 1;
}

static void wait_done(treq *t, int n)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < n; i++)
		while (!t[i].done)
			pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static pf_batcher *mk(pf_batcher_opts *o)
{
	pf_batcher *b = NULL;
	pf_error err = { 0 };
	if (pf_batcher_new(&b, o, &err) < 0) {
		diag("pf_batcher_new: %s", err.msg);
		exit(1);
	}
	return b;
}

static treq rq[256];

static void t_full_and_timeout(void)
{
	reset();
	pf_batcher_opts o = base(4, 5000000);   /* 5 s: never reached */
	pf_batcher *b = mk(&o);
	uint64_t t0 = now_ns();
	for (int i = 0; i < 4; i++) {
		init_req(&rq[i], 1, (float)(10 * i));
		pf_batcher_submit(b, &rq[i].r, NULL);
	}
	wait_done(rq, 4);
	uint64_t dt = now_ns() - t0;
	ok(nlog == 1 && log_rows[0] == 4 && dt < 1000000000u,
	   "four 1-row requests at max_batch_size 4 run as one batch at once (%d batches, %.1f ms)",
	   nlog, dt / 1e6);
	ok(answers_ok(&rq[0]) && answers_ok(&rq[3]) && rq[2].r.batch_rows == 4,
	   "each request gets its own row of the answer");
	pf_batcher_free(b);

	reset();
	o = base(8, 30000);   /* 30 ms */
	b = mk(&o);
	init_req(&rq[0], 1, 1);
	t0 = now_ns();
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_done(rq, 1);
	dt = now_ns() - t0;
	ok(dt >= 30000000u && dt < 1000000000u && log_rows[0] == 1,
	   "a lone request runs as a partial batch once batch_timeout_us passed (%.1f ms, timeout 30 ms)",
	   dt / 1e6);
	ok(rq[0].r.queue_ns >= 30000000u, "its queue time counts the wait (%.1f ms)",
	   rq[0].r.queue_ns / 1e6);
	pf_batcher_free(b);
}

static void t_preferred_allowed(void)
{
	reset();
	pf_batcher_opts o = base(8, 5000000);
	o.preferred_batch_sizes[0] = 2;
	o.n_preferred = 1;
	pf_batcher *b = mk(&o);
	uint64_t t0 = now_ns();
	init_req(&rq[0], 2, 5);
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_done(rq, 1);
	ok(now_ns() - t0 < 1000000000u && log_rows[0] == 2,
	   "a preferred batch size that can be filled runs at once");
	pf_batcher_free(b);

	reset();
	o = base(8, 1000);
	o.allowed_batch_sizes[0] = 2;
	o.allowed_batch_sizes[1] = 4;
	o.allowed_batch_sizes[2] = 8;
	o.n_allowed = 3;
	b = mk(&o);
	init_req(&rq[0], 3, 7);
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_done(rq, 1);
	ok(log_rows[0] == 3 && log_padded[0] == 4 && rq[0].r.batch_rows == 4 &&
	   answers_ok(&rq[0]),
	   "3 rows are padded to the allowed size 4 (rows %d, padded %d), answers exact",
	   log_rows[0], log_padded[0]);
	pf_batcher_free(b);

	pf_error err = { 0 };
	o.allowed_batch_sizes[2] = 6;
	pf_batcher *bad = NULL;
	int rc = pf_batcher_new(&bad, &o, &err);
	ok(rc == PF_EINVAL && strstr(err.msg, "allowed_batch_sizes"),
	   "allowed sizes that do not end at the batch cap are refused: %s", err.msg);
}

static void t_split(void)
{
	reset();
	pf_batcher_opts o = base(16, 1000);
	o.max_execution_batch_size = 4;
	pf_batcher *b = mk(&o);
	init_req(&rq[0], 10, 100);
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_done(rq, 1);
	ok(nlog == 3 && log_rows[0] == 4 && log_rows[1] == 4 && log_rows[2] == 2 &&
	   rq[0].r.batches == 3 && answers_ok(&rq[0]),
	   "a 10-row request splits into batches of 4, 4, 2 and is answered whole");
	pf_batcher_free(b);

	o = base(8, 1000);
	b = mk(&o);
	init_req(&rq[0], 10, 100);
	pf_error err = { 0 };
	int rc = pf_batcher_submit(b, &rq[0].r, &err);
	ok(rc == PF_ELIMIT && strstr(err.msg, "rows 10"),
	   "without splitting, a request over max_batch_size is refused: %s", err.msg);
	pf_batcher_free(b);
}

static void t_fail_fast(void)
{
	reset();
	pf_batcher_opts o = base(1, 0);
	o.max_enqueued = 3;
	pf_batcher *b = mk(&o);
	gate(1);
	init_req(&rq[0], 1, 0);
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_in_compute();
	int rcs = 0;
	for (int i = 1; i <= 3; i++) {
		init_req(&rq[i], 1, (float)i);
		rcs |= pf_batcher_submit(b, &rq[i].r, NULL);
	}
	init_req(&rq[4], 1, 4);
	pf_error err = { 0 };
	uint64_t t0 = now_ns();
	int rc = pf_batcher_submit(b, &rq[4].r, &err);
	uint64_t dt = now_ns() - t0;
	ok(rcs == 0 && rc == PF_ELIMIT && dt < 1000000u,
	   "beyond max_enqueued a submit fails at once (%.3f ms): %s", dt / 1e6, err.msg);
	pf_batcher_stats st;
	pf_batcher_get_stats(b, &st);
	is_int(st.rejected_full, 1, "the refusal is counted");
	gate(0);
	wait_done(rq, 4);
	ok(!rq[4].done, "the refused request's done never runs");
	pf_batcher_free(b);
}

static void t_priority(void)
{
	reset();
	pf_batcher_opts o = base(1, 0);
	o.npriorities = 2;
	pf_batcher *b = mk(&o);
	gate(1);
	init_req(&rq[0], 1, 0);
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_in_compute();
	for (int i = 1; i <= 6; i++) {  /* low, high, low, high, ... */
		init_req(&rq[i], 1, (float)i);
		rq[i].r.priority = i % 2;
		pf_batcher_submit(b, &rq[i].r, NULL);
	}
	done_count = 0;
	gate(0);
	wait_done(rq, 7);
	/* after the first batch: 2, 4, 6 (priority 0) then 1, 3, 5 */
	int want[7] = { 0, 2, 4, 6, 1, 3, 5 }, good = nseen == 7;
	for (int i = 0; good && i < 7; i++)
		good = (int)seen[i] == want[i];
	ok(good, "priority 0 requests run before priority 1, FIFO within each");
	pf_batcher_free(b);
}

static void t_timeouts(void)
{
	reset();
	pf_batcher_opts o = base(1, 0);
	o.npriorities = 2;
	o.prio[1].default_timeout_us = 1000;
	o.prio[1].timeout_action = PF_BATCH_DELAY;
	pf_batcher *b = mk(&o);
	gate(1);
	init_req(&rq[0], 1, 0);
	pf_batcher_submit(b, &rq[0].r, NULL);
	wait_in_compute();
	init_req(&rq[1], 1, 1);        /* its own timeout: rejected */
	rq[1].r.timeout_us = 5000;
	pf_batcher_submit(b, &rq[1].r, NULL);
	init_req(&rq[2], 1, 2);        /* level 1 default timeout: delayed */
	rq[2].r.priority = 1;
	pf_batcher_submit(b, &rq[2].r, NULL);
	init_req(&rq[3], 1, 3);        /* level 0, no timeout, after 2 */
	usleep(20000);
	pf_batcher_submit(b, &rq[3].r, NULL);
	pf_error err = { 0 };
	init_req(&rq[4], 1, 4);
	rq[4].r.priority = 7;
	ok(pf_batcher_submit(b, &rq[4].r, &err) == PF_EINVAL && strstr(err.msg, "priority 7"),
	   "a priority out of range is refused: %s", err.msg);
	usleep(10000);
	gate(0);
	wait_done(rq, 4);
	ok(rq[1].r.status == PF_ETIMEDOUT && strstr(rq[1].r.err.msg, "timeout"),
	   "a request past its own timeout is rejected: %s", rq[1].r.err.msg);
	int computed1 = 0;
	for (int i = 0; i < nseen; i++)
		computed1 |= seen[i] == 1.0f;
	ok(!computed1, "the rejected request was never computed");
	ok(rq[2].r.status == 0 && answers_ok(&rq[2]) && rq[3].r.status == 0,
	   "a DELAY-policy request past its default timeout is still answered");
	ok(nseen == 3 && seen[1] == 3.0f && seen[2] == 2.0f,
	   "... after the requests that had not timed out (order %g %g %g)",
	   nseen > 0 ? seen[0] : -1, nseen > 1 ? seen[1] : -1, nseen > 2 ? seen[2] : -1);
	pf_batcher_stats st;
	pf_batcher_get_stats(b, &st);
	ok(st.rejected_timeout == 1 && st.delayed == 1,
	   "rejected and delayed requests are counted (%llu, %llu)",
	   (unsigned long long)st.rejected_timeout, (unsigned long long)st.delayed);
	pf_batcher_free(b);
}

static void t_ordering(void)
{
	reset();
	pf_batcher_opts o = base(1, 0);
	o.num_batch_threads = 2;
	o.preserve_ordering = 1;
	pf_batcher *b = mk(&o);
	sleep_us_by_thread[0] = 20000;    /* thread 0 slow, thread 1 fast */
	done_count = 0;
	for (int i = 0; i < 12; i++) {
		init_req(&rq[i], 1, (float)i);
		pf_batcher_submit(b, &rq[i].r, NULL);
	}
	wait_done(rq, 12);
	int good = 1;
	for (int i = 0; i < 12; i++)
		good &= done_order[i] == i;
	ok(good, "preserve_ordering: done callbacks in submit order across 2 threads");
	pf_batcher_free(b);
}

typedef struct prod {
	pf_batcher *b;
	int id, bad, fails;
} prod;

static void *producer(void *arg)
{
	prod *p = arg;
	unsigned seed = (unsigned)p->id * 7919u + 1;
	for (int k = 0; k < 300; k++) {
		pf_batch_req r = { 0 };
		float in[2 * 8], out[8];
		int rows = 1 + (int)(rand_r(&seed) % 8);
		for (int i = 0; i < 2 * rows; i++)
			in[i] = (float)(rand_r(&seed) % 1000);
		r.in = in;
		r.out = out;
		r.rows = rows;
		if (pf_batcher_run(p->b, &r, NULL) < 0) {
			p->fails++;
			continue;
		}
		for (int i = 0; i < rows; i++)
			if (out[i] != 2 * in[2 * i] + in[2 * i + 1])
				p->bad++;
	}
	return NULL;
}

static void t_concurrent_exact(void)
{
	reset();
	pf_batcher_opts o = base(16, 500);
	o.num_batch_threads = 3;
	o.max_execution_batch_size = 8;
	o.allowed_batch_sizes[0] = 4;
	o.allowed_batch_sizes[1] = 8;
	o.n_allowed = 2;
	pf_batcher *b = mk(&o);
	pthread_t th[8];
	prod p[8];
	for (int i = 0; i < 8; i++) {
		p[i] = (prod){ b, i, 0, 0 };
		pthread_create(&th[i], NULL, producer, &p[i]);
	}
	int bad = 0, fails = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		bad += p[i].bad;
		fails += p[i].fails;
	}
	pf_batcher_stats st;
	pf_batcher_get_stats(b, &st);
	ok(bad == 0 && fails == 0 && st.completed == 2400,
	   "8 producers x 300 requests, 3 batch threads, splitting and padding: every answer exact (%d wrong, %d failed, %llu batches of %.1f rows)",
	   bad, fails, (unsigned long long)st.batches,
	   st.batches ? (double)st.rows / st.batches : 0.0);
	pf_batcher_free(b);
}

static void t_drain(void)
{
	reset();
	pf_batcher_opts o = base(64, 10000000);   /* 10 s */
	pf_batcher *b = mk(&o);
	for (int i = 0; i < 20; i++) {
		init_req(&rq[i], 1, (float)i);
		pf_batcher_submit(b, &rq[i].r, NULL);
	}
	uint64_t t0 = now_ns();
	pf_batcher_free(b);
	int all = 1;
	for (int i = 0; i < 20; i++)
		all &= rq[i].done && rq[i].r.status == 0 && answers_ok(&rq[i]);
	ok(all && now_ns() - t0 < 1000000000u,
	   "free() runs every queued request at once and answers it (no drop)");
}

int main(void)
{
	plan(22);
	t_full_and_timeout();
	t_preferred_allowed();
	t_split();
	t_fail_fast();
	t_priority();
	t_timeouts();
	t_ordering();
	t_concurrent_exact();
	t_drain();
	return done_testing();
}
