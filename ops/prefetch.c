/*
 * prefetch.c - a thread runs the input ahead into a bounded queue of
 * `depth` elements.  A new epoch (reset) closes the queue, waits for the
 * thread to go idle, drops what was queued, resets the input and reopens.
 *
 * Wake-ups are batched (pf_queue_set_batch): a consumer that drains the
 * queue sleeps until half the depth is in again (or PREFETCH_WAKE_US
 * passed), a producer that fills it until half is free.  A starved
 * consumer woken for every batch cost a context switch per batch, and on
 * a 2-core machine the woken thread preempted the producers: 0.47 CPU-us
 * per image in a decode_f32 pipeline, a quarter of all its CPU.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"
#include "pf_queue.h"

#define PREFETCH_AUTOTUNE_DEPTH 4  /* autotune: the starting depth */
#define PREFETCH_AUTOTUNE_MAX 64   /* autotune: the most, budget allowing */
#define PREFETCH_WAKE_US 1000      /* the longest a batch waits for the wake-up batch */

typedef struct prefetch_item {
	int rc;
	pf_elem e;
	pf_error err;
} prefetch_item;

typedef struct prefetch_cfg {
	int depth_req, depth;
	int max;              /* queue capacity (autotune: >= depth) */
} prefetch_cfg;

typedef struct prefetch_run {
	pf_queue *q;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int quit, running;   /* running: the thread is producing this epoch */
	uint64_t gen;        /* bumped to start an epoch */
} prefetch_run;

static int prefetch_prepare(pf_op *op, pf_error *err)
{
	prefetch_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	c->depth = c->depth_req == PF_AUTOTUNE ? PREFETCH_AUTOTUNE_DEPTH : c->depth_req;
	c->max = c->depth_req == PF_AUTOTUNE ? PREFETCH_AUTOTUNE_MAX : c->depth;
	op->st.depth = c->depth;
	op->st.max_depth = c->depth_req == PF_AUTOTUNE ? c->max : 0;
	op->st.autotuned = c->depth_req == PF_AUTOTUNE;
	/* max queued + one being produced */
	op->buffer_bytes = (uint64_t)(c->max + 1) * in->elem_bytes;
	op->cardinality = in->cardinality;
	return 0;
}

static void prefetch_fit(pf_op *op, uint64_t avail)
{
	prefetch_cfg *c = op->cfg;
	uint64_t eb = op->in->elem_bytes ? op->in->elem_bytes : 1;
	uint64_t n = avail / eb;
	n = n > 1 ? n - 1 : 0;
	if (n > PREFETCH_AUTOTUNE_MAX)
		n = PREFETCH_AUTOTUNE_MAX;
	if (n < (uint64_t)c->depth)
		n = (uint64_t)c->depth; /* the budget check then reports it */
	c->max = (int)n;
	op->st.max_depth = c->max;
	op->buffer_bytes = (uint64_t)(c->max + 1) * eb;
}

static int prefetch_set_depth(pf_op *op, int n)
{
	prefetch_cfg *c = op->cfg;
	prefetch_run *r = op->run;
	if (n < 1)
		n = 1;
	if (n > c->max)
		n = c->max;
	if (r)
		pf_queue_set_limit(r->q, (size_t)n);
	op->st.depth = n;
	return n;
}

static void *prefetch_thread(void *arg)
{
	pf_op *op = arg;
	prefetch_run *r = op->run;
	uint64_t seen = 0;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->quit && r->gen == seen)
			pthread_cond_wait(&r->cv, &r->lock);
		if (r->quit)
			break;
		seen = r->gen;
		r->running = 1;
		pthread_mutex_unlock(&r->lock);
		for (;;) {
			prefetch_item it;
			memset(&it, 0, sizeof(it));
			uint64_t t0 = pf_now_ns();
			it.rc = pf_op_next(op->in, &it.e, &it.err);
			uint64_t t1 = pf_now_ns();
			pf_stat_add(&op->st.wait_ns, t1 - t0);
			uint64_t blocked = 0;
			if (pf_queue_push(r->q, &it, &blocked) != 0) {
				pf_elem_release(&it.e); /* closed: the epoch was cut short */
				break;
			}
			atomic_store(&op->st.occupancy, (int64_t)pf_queue_len(r->q));
			pf_stat_add(&op->st.blocked_ns, blocked);
			pf_stat_add(&op->st.busy_ns, pf_now_ns() - t1 - blocked);
			if (it.rc) {
				pf_queue_flush(r->q); /* no more: wake the consumer now */
				break; /* end of epoch or error: wait for the next epoch */
			}
		}
		pthread_mutex_lock(&r->lock);
		r->running = 0;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static int prefetch_start(pf_op *op, pf_error *err)
{
	prefetch_cfg *c = op->cfg;
	prefetch_run *r = calloc(1, sizeof(*r));
	if (!r || !(r->q = pf_queue_new((size_t)c->max, sizeof(prefetch_item)))) {
		free(r);
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->gen = 1;
	pf_queue_set_limit(r->q, (size_t)c->depth);
	pf_queue_set_batch(r->q, (size_t)c->max, PREFETCH_WAKE_US); /* half the depth */
	op->run = r;
	op->st.self_timed = 1;
	if (pthread_create(&r->th, NULL, prefetch_thread, op) != 0) {
		pf_queue_free(r->q);
		free(r);
		op->run = NULL;
		return pf_op_error(op, err, PF_ENOMEM, "cannot start its thread");
	}
	return 0;
}

static int prefetch_next(pf_op *op, pf_elem *out, pf_error *err)
{
	prefetch_run *r = op->run;
	prefetch_item it;
	if (pf_queue_pop(r->q, &it, NULL) != 0)
		return pf_op_error(op, err, PF_ESTATE, "queue closed");
	atomic_store(&op->st.occupancy, (int64_t)pf_queue_len(r->q));
	if (it.rc < 0)
		pf_error_set(err, it.rc, "%s", it.err.msg);
	else if (it.rc == 0)
		*out = it.e;
	return it.rc;
}

/* Stop the thread's current epoch and drop what it queued. */
static void prefetch_halt(prefetch_run *r)
{
	pf_queue_close(r->q);
	pthread_mutex_lock(&r->lock);
	while (r->running)
		pthread_cond_wait(&r->cv, &r->lock);
	pthread_mutex_unlock(&r->lock);
	prefetch_item it;
	while (pf_queue_trypop(r->q, &it) == 0)
		pf_elem_release(&it.e);
}

static void prefetch_reset(pf_op *op)
{
	prefetch_run *r = op->run;
	prefetch_halt(r);
	pf_op_reset(op->in);
	pf_queue_reopen(r->q);
	pthread_mutex_lock(&r->lock);
	r->gen++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->lock);
}

static void prefetch_stop(pf_op *op)
{
	prefetch_run *r = op->run;
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->quit = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->lock);
	prefetch_halt(r);
	pthread_join(r->th, NULL);
	pf_queue_free(r->q);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cv);
	free(r);
	op->run = NULL;
}

static const pf_op_vt prefetch_vt = {
	.prepare = prefetch_prepare, .start = prefetch_start,
	.next = prefetch_next, .reset = prefetch_reset, .stop = prefetch_stop,
};

pf_op *pf_op_prefetch_new(int depth, pf_error *err)
{
	if (depth < 1 && depth != PF_AUTOTUNE) {
		pf_error_set(err, PF_EINVAL, "prefetch: depth must be >= 1 or PF_AUTOTUNE (got %d)",
			     depth);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_prefetch, sizeof(prefetch_cfg), err);
	if (op)
		((prefetch_cfg *)op->cfg)->depth_req = depth;
	return op;
}

/* The spec's arguments -> a new prefetch op. */
static pf_op *prefetch_build(const pf_arg *a, pf_error *err)
{
	return pf_op_prefetch_new((int)a[0].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int prefetch_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	int d = ((const prefetch_cfg *)op->cfg)->depth_req;
	a[0] = (pf_arg){ .set = d != PF_AUTOTUNE, .i = d };
	return 0;
}

const pf_op_desc pf_op_prefetch = {
	.kind = "prefetch", .traits = 0,
	.help = "run the input ahead on a thread",
	.params = {
		{ "depth", PF_PARAM_INT_AUTO, PF_PARAM_POS, 1, 1 << 16, PF_AUTOTUNE, NULL,
		  "elements buffered (default auto)" },
	},
	.vt = &prefetch_vt, .build = prefetch_build, .args = prefetch_args,
	.set_depth = prefetch_set_depth, .fit_depth = prefetch_fit,
};
