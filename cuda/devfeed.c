/*
 * devfeed.c - device prefetch with double-buffered (depth-buffered) streams;
 * the protocol is drawn in pf_devfeed.h.
 *
 * State under f->mu: the free-slot FIFO, the ready FIFO (slots filled, or
 * an END / ERROR marker), stop and the feeder's exit.
 *
 * Free slots are refilled first-in-first-out: the slot released longest
 * ago is refilled first.  Its step was enqueued earliest, so it is the
 * one most likely done, and its copy (which waits on that step's done
 * event) can run while the later steps compute.  Last-in-first-out would
 * refill the slot whose step was just enqueued: the copy waits that step
 * out, and when the consumer has run ahead (several slots free at once)
 * the copy stream, being in order, holds every later copy behind it, so
 * copies and steps alternate instead of overlapping (t3008).  The feeder thread
 * owns the copy stream and the iterator; the consumer owns the compute
 * stream.  Slots exist from the first batch on (their size is its size).
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_devfeed.h"

#define MAX_DEPTH 16
#define RQ (2 * MAX_DEPTH + 4)   /* ready FIFO: slots + END markers */

enum { ITEM_BATCH = 1, ITEM_END, ITEM_ERROR };

typedef struct item {
	int kind;
	int slot;
	uint32_t batch;
	uint64_t id, epoch;
	const pf_schema *schema;
	int64_t off[PF_MAX_FIELDS];   /* field offsets in the slot; -1 = none */
	int64_t nitems[PF_MAX_FIELDS];
	size_t nbytes;
	char *base;                   /* zero copy: the host batch; NULL: the
				       * slot's device memory */
} item;

struct pf_devfeed {
	pf_device *dev;
	pf_iter *it;
	pf_stream *compute, *copy;
	pf_devfeed_opts o;
	int depth;
	int direct;                   /* zero copy in effect (o.zero_copy on a
				       * device that reads host memory) */
	size_t cap;                   /* bytes per slot, 0 until allocated */
	void *dslot[MAX_DEPTH], *staging[MAX_DEPTH];
	pf_elem held[MAX_DEPTH];      /* pinned_batches: the batch slot k's copy
				       * reads from, released once that copy is over */
	int nheld[MAX_DEPTH];
	pf_event *copy_ev[MAX_DEPTH], *done_ev[MAX_DEPTH];
	pf_event *last_done;          /* consumer: the latest done event */
	uint64_t times[MAX_DEPTH][2]; /* push mode, opts.timeline: slot k's
				       * last copy's start and end */

	pthread_t th;
	int started;                   /* th is running */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int freeq[MAX_DEPTH];          /* free slots, a FIFO: nfree from fhead */
	unsigned fhead, nfree;
	item rq[RQ];
	unsigned rhead, rtail;
	int stop, feeder_exited;
	int failed;                   /* consumer: sticky error seen */
	pf_error ferr;                /* the feeder's error (under mu) */

	uint64_t seq, epoch;          /* consumer */
	uint64_t wait_base;           /* compute stream wait_ns at start */
	pf_devfeed_stats st;          /* under mu */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Feeder: append an item to the ready FIFO (never full: at most depth
 * batches and one END per epoch the consumer has not taken... bounded by
 * waiting for room). */
static void push(pf_devfeed *f, const item *x)
{
	pthread_mutex_lock(&f->mu);
	while (f->rhead - f->rtail >= RQ && !f->stop)
		pthread_cond_wait(&f->cv, &f->mu);
	if (!f->stop) {
		f->rq[f->rhead % RQ] = *x;
		f->rhead++;
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void push_error(pf_devfeed *f, const pf_error *e)
{
	pthread_mutex_lock(&f->mu);
	f->ferr = *e;
	pthread_mutex_unlock(&f->mu);
	item x = { .kind = ITEM_ERROR };
	push(f, &x);
}

/* Feeder: allocate the slots, `bytes` each. */
static int alloc_slots(pf_devfeed *f, size_t bytes, pf_error *err)
{
	for (int k = 0; k < f->depth; k++) {
		int rc;
		if ((rc = pf_dev_alloc(f->dev, &f->dslot[k], bytes, err)) < 0 ||
		    (!f->o.pinned_batches &&
		     (rc = pf_host_alloc(f->dev, &f->staging[k], bytes, err)) < 0))
			return rc;
	}
	f->cap = bytes;
	return 0;
}

/* Feeder, zero copy: slot k is batch e itself.  The batch slot k held
 * last goes back to the pipeline once the step that read it is done (its
 * done event, recorded at that step's release: slots are refilled oldest
 * release first, so that step is normally long over).  Takes e over. */
static int hold_direct(pf_devfeed *f, int k, pf_elem *e, item *x, pf_error *err)
{
	if (f->nheld[k]) {
		int rc = pf_event_sync(f->dev, f->done_ev[k], err);
		if (rc < 0) {
			pf_elem_release(e);
			return rc;
		}
		pf_elem_release(&f->held[k]);
	}
	f->held[k] = *e;
	f->nheld[k] = 1;
	x->base = e->buf;
	return 0;
}

/* Feeder: move host batch e into slot k (staging copy, then the async copy
 * to the device; or, with pinned batches, the async copy straight from e)
 * and describe it in x.  Takes e over on every path: releases it, or keeps
 * it as held[k]. */
static int fill_slot(pf_devfeed *f, int k, pf_elem *e, item *x, pf_error *err)
{
	int rc;
	if (!f->direct && !f->cap && (rc = alloc_slots(f, f->o.slot_bytes > e->nbytes
					     ? f->o.slot_bytes : e->nbytes,
					 err)) < 0)
		goto fail;
	if (!f->direct && e->nbytes > f->cap) {
		rc = pf_error_set(err, PF_ELIMIT,
				    "prefetch_to_device: batch of %zu bytes does not fit a %zu-byte slot",
				    e->nbytes, f->cap);
		goto fail;
	}
	x->kind = ITEM_BATCH;
	x->slot = k;
	x->batch = e->batch;
	x->id = e->id;
	x->schema = e->schema;
	x->nbytes = e->nbytes;
	int nf = e->schema ? e->schema->nfields : 0;
	for (int i = 0; i < PF_MAX_FIELDS; i++) {
		x->off[i] = -1;
		x->nitems[i] = 0;
		if (i >= nf || !e->data[i])
			continue;
		const char *p = e->data[i], *b = e->buf;
		if (p < b || p > b + e->nbytes) {
			rc = pf_error_set(err, PF_EINVAL,
					  "prefetch_to_device: field %d is outside the batch buffer",
					  i);
			goto fail;
		}
		x->off[i] = p - b;
		x->nitems[i] = e->nitems[i];
	}
	if (f->direct)
		return hold_direct(f, k, e, x, err);
	/* The previous copy out of slot k's host side (staging[k], or the
	 * batch kept from last time) must be over before that memory is
	 * reused (a host wait on this thread only; normally long complete). */
	if ((rc = pf_event_sync(f->dev, f->copy_ev[k], err)) < 0)
		goto fail;
	const void *src;
	if (f->o.pinned_batches) {
		/* The batch is already in pinned memory: copy from it directly
		 * and keep it until that copy is over. */
		if (f->nheld[k]) {
			pf_elem_release(&f->held[k]);
			f->nheld[k] = 0;
		}
		f->held[k] = *e;
		f->nheld[k] = 1;
		src = e->buf;
	} else {
		memcpy(f->staging[k], e->buf, e->nbytes);
		pf_elem_release(e);
		src = f->staging[k];
	}
	if ((rc = pf_stream_wait_event(f->dev, f->copy, f->done_ev[k], err)) < 0 ||
	    (rc = pf_memcpy_async(f->dev, f->copy, f->dslot[k], src,
				  x->nbytes, PF_H2D, err)) < 0 ||
	    (rc = pf_event_record(f->dev, f->copy_ev[k], f->copy, err)) < 0)
		return rc;      /* e is held[k] or released already */
	return 0;
fail:
	pf_elem_release(e);
	return rc;
}

/* A host function on the copy stream: the time it ran there. */
static void stamp(void *p)
{
	*(uint64_t *)p = now_ns();
}

/* Push mode: the producer's batch, already in pinned memory, into the
 * next free slot; the copy reads src directly (no staging), as with
 * pinned_batches.  Never blocks when the consumer releases every batch
 * before the next put (a serving batch thread: put, next, enqueue,
 * release). */
int pf_devfeed_put(pf_devfeed *f, const void *src, size_t nbytes, uint32_t batch,
		   pf_error *err)
{
	if (f->it || !src || nbytes > f->cap)
		return pf_error_set(err, f->it ? PF_ESTATE : PF_EINVAL,
				    "prefetch_to_device: put of %zu bytes (%s; slots of %zu bytes)",
				    nbytes, f->it ? "the feed has a pipeline" : "push mode",
				    f->cap);
	pthread_mutex_lock(&f->mu);
	while (f->nfree == 0 && !f->stop)
		pthread_cond_wait(&f->cv, &f->mu);
	int k = f->stop ? -1 : f->freeq[f->fhead % MAX_DEPTH];
	if (k >= 0) {
		f->fhead++;
		f->nfree--;
	}
	pthread_mutex_unlock(&f->mu);
	if (k < 0)
		return pf_error_set(err, PF_ESTATE, "prefetch_to_device: put after stop");
	item x = { .kind = ITEM_BATCH, .slot = k, .batch = batch, .nbytes = nbytes };
	for (int i = 0; i < PF_MAX_FIELDS; i++)
		x.off[i] = -1;
	x.off[0] = 0;
	x.nitems[0] = (int64_t)nbytes;
	void (*tf)(void *) = f->o.timeline ? stamp : NULL;
	int rc;
	if ((rc = pf_stream_wait_event(f->dev, f->copy, f->done_ev[k], err)) < 0 ||
	    (tf && (rc = pf_host_func(f->dev, f->copy, tf, &f->times[k][0], err)) < 0) ||
	    (rc = pf_memcpy_async(f->dev, f->copy, f->dslot[k], src, nbytes, PF_H2D,
				  err)) < 0 ||
	    (tf && (rc = pf_host_func(f->dev, f->copy, tf, &f->times[k][1], err)) < 0) ||
	    (rc = pf_event_record(f->dev, f->copy_ev[k], f->copy, err)) < 0)
		return rc;
	push(f, &x);
	return 0;
}

void pf_devfeed_copy_times(pf_devfeed *f, int slot, uint64_t *start, uint64_t *end)
{
	int ok = slot >= 0 && slot < f->depth;
	*start = ok ? f->times[slot][0] : 0;
	*end = ok ? f->times[slot][1] : 0;
}

/* The batch_alloc hook can only return NULL: the reason goes to stderr
 * (once per process; the pipeline then reports the failed batch).  The
 * cuda backend already falls back to pageable memory when pinned memory is
 * refused, so this is a host out of memory. */
void *pf_devfeed_pinned_alloc(void *dev, size_t bytes)
{
	static atomic_int warned;
	void *p = NULL;
	pf_error err = { 0 };
	if (pf_host_alloc(dev, &p, bytes, &err) < 0) {
		if (!atomic_exchange(&warned, 1))
			fprintf(stderr, "pipefeed: devfeed: batch of %zu bytes in pinned memory: %s\n",
				bytes, err.msg);
		return NULL;
	}
	return p;
}

void pf_devfeed_pinned_free(void *dev, void *p, size_t bytes)
{
	(void)bytes;
	pf_host_free(dev, p);
}

static void *feeder(void *arg)
{
	pf_devfeed *f = arg;
	uint64_t epoch = 0;
	for (;;) {
		if (f->o.epochs > 0 && (int64_t)epoch >= f->o.epochs)
			break;
		pf_elem e;
		pf_error err = { 0 };
		uint64_t t0 = now_ns();
		int rc = pf_iter_next(f->it, &e, &err);
		uint64_t t1 = now_ns();
		pthread_mutex_lock(&f->mu);
		f->st.feeder_input_ns += t1 - t0;
		int stop = f->stop;
		pthread_mutex_unlock(&f->mu);
		if (rc == 0 && stop)
			pf_elem_release(&e);
		if (stop)
			break;
		if (rc == PF_END) {
			item x = { .kind = ITEM_END, .epoch = epoch++ };
			push(f, &x);
			continue;
		}
		if (rc < 0) {
			push_error(f, &err);
			break;
		}
		pthread_mutex_lock(&f->mu);
		while (f->nfree == 0 && !f->stop)
			pthread_cond_wait(&f->cv, &f->mu);
		int k = -1;
		if (!f->stop) {
			k = f->freeq[f->fhead % MAX_DEPTH];
			f->fhead++;
			f->nfree--;
		}
		f->st.feeder_slot_ns += now_ns() - t1;
		pthread_mutex_unlock(&f->mu);
		if (k < 0) {
			pf_elem_release(&e);
			break;
		}
		item x = { 0 };
		x.epoch = epoch;
		if (fill_slot(f, k, &e, &x, &err) < 0) {
			push_error(f, &err);
			break;
		}
		push(f, &x);
	}
	pthread_mutex_lock(&f->mu);
	f->feeder_exited = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

int pf_devfeed_new(pf_devfeed **fp, pf_device *d, pf_iter *it,
		   pf_stream *compute, const pf_devfeed_opts *opts, pf_error *err)
{
	*fp = NULL;
	pf_devfeed_opts o = { 0 };
	if (opts)
		o = *opts;
	if (o.depth == 0)
		o.depth = 2;
	else if (o.depth == PF_AUTOTUNE && d)
		o.depth = pf_devfeed_default_depth(d);
	if (o.depth < 1 || o.depth > MAX_DEPTH || !d || !compute ||
	    (!it && !o.slot_bytes))
		return pf_error_set(err, PF_EINVAL,
				    "prefetch_to_device: depth %d (1..%d)%s", o.depth,
				    MAX_DEPTH, it ? "" : ", push mode needs slot_bytes");
	pf_devfeed *f = calloc(1, sizeof(*f));
	if (!f)
		return pf_error_set(err, PF_ENOMEM, "prefetch_to_device: out of memory");
	f->dev = d;
	f->it = it;
	f->compute = compute;
	f->o = o;
	f->depth = o.depth;
	/* zero copy: a pipeline's batches (push mode's puts always copy) */
	f->direct = it && o.zero_copy && o.pinned_batches && pf_device_reads_host(d);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	int rc = pf_stream_new(d, &f->copy, err);
	for (int k = 0; rc == 0 && k < f->depth; k++) {
		if ((rc = pf_event_new(d, &f->copy_ev[k], err)) == 0)
			rc = pf_event_new(d, &f->done_ev[k], err);
		f->freeq[f->nfree++] = k;  /* slot 0 first */
	}
	f->wait_base = pf_stream_wait_ns(d, compute);
	if (!it) {              /* push mode: slots now, no feeder thread */
		f->o.pinned_batches = 1;
		f->feeder_exited = 1;
		if (rc == 0)
			rc = alloc_slots(f, o.slot_bytes, err);
	} else if (rc == 0 && pthread_create(&f->th, NULL, feeder, f) != 0)
		rc = pf_error_set(err, PF_ENOMEM,
				  "prefetch_to_device: cannot start the feeder thread");
	else if (rc == 0)
		f->started = 1;
	if (rc < 0) {
		f->feeder_exited = 1;
		pf_devfeed_free(f);
		return rc;
	}
	*fp = f;
	return 0;
}

int pf_devfeed_next(pf_devfeed *f, pf_devbatch *b, pf_error *err)
{
	memset(b, 0, sizeof(*b));
	b->slot = -1;
	pthread_mutex_lock(&f->mu);
	if (f->failed) {
		if (err && err->code == 0)
			*err = f->ferr;
		pthread_mutex_unlock(&f->mu);
		return f->ferr.code;
	}
	if (f->rhead == f->rtail) {
		/* No batch ready: the wait is stall only from the moment the
		 * compute stream has run out of work (polled while it has some). */
		uint64_t t0 = now_ns(), idle = 0;
		while (f->rhead == f->rtail && !f->feeder_exited) {
			if (!idle && (!f->last_done ||
				      pf_event_query(f->dev, f->last_done) != 0))
				idle = now_ns();
			if (idle) {
				pthread_cond_wait(&f->cv, &f->mu);
			} else {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += 200000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&f->cv, &f->mu, &ts);
			}
		}
		uint64_t t1 = now_ns();
		f->st.host_wait_ns += t1 - t0;
		if (idle)
			f->st.stall_host_ns += t1 - idle;
	}
	if (f->rhead == f->rtail) {             /* the feeder is done */
		pthread_mutex_unlock(&f->mu);
		return PF_END;
	}
	item x = f->rq[f->rtail % RQ];
	f->rtail++;
	if (x.kind == ITEM_ERROR) {
		f->failed = 1;
		if (err && err->code == 0)
			*err = f->ferr;
	}
	if (x.kind == ITEM_BATCH) {
		f->st.batches++;
		f->st.bytes += x.nbytes;
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	if (x.kind == ITEM_ERROR)
		return f->ferr.code ? f->ferr.code : PF_EIO;
	if (x.kind == ITEM_END) {
		f->epoch = x.epoch + 1;
		return PF_END;
	}
	int rc = x.base ? 0 : pf_stream_wait_event(f->dev, f->compute, f->copy_ev[x.slot], err);
	if (rc < 0)
		return rc;
	b->slot = x.slot;
	b->batch = x.batch;
	b->id = x.id;
	b->seq = f->seq++;
	b->epoch = x.epoch;
	b->schema = x.schema;
	b->nbytes = x.nbytes;
	for (int i = 0; i < PF_MAX_FIELDS; i++) {
		b->data[i] = x.off[i] < 0 ? NULL
			   : (x.base ? x.base : (char *)f->dslot[x.slot]) + x.off[i];
		b->nitems[i] = x.nitems[i];
	}
	return 0;
}

int pf_devfeed_release(pf_devfeed *f, pf_devbatch *b, pf_error *err)
{
	if (b->slot < 0 || b->slot >= f->depth)
		return 0;
	int k = b->slot;
	b->slot = -1;
	int rc = pf_event_record(f->dev, f->done_ev[k], f->compute, err);
	pthread_mutex_lock(&f->mu);
	f->last_done = f->done_ev[k];
	f->freeq[(f->fhead + f->nfree) % MAX_DEPTH] = k;
	f->nfree++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

void pf_devfeed_get_stats(pf_devfeed *f, pf_devfeed_stats *out)
{
	pthread_mutex_lock(&f->mu);
	*out = f->st;
	pthread_mutex_unlock(&f->mu);
	out->stall_device_ns = pf_stream_wait_ns(f->dev, f->compute) - f->wait_base;
	out->copy_ns = f->copy ? pf_stream_copy_ns(f->dev, f->copy) : 0;
	out->zero_copy = f->direct;
}

void pf_devfeed_free(pf_devfeed *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->stop = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	if (f->started)
		pthread_join(f->th, NULL);
	/* Nothing may still read or write a slot when it is freed. */
	if (f->copy)
		pf_stream_sync(f->dev, f->copy, NULL);
	for (int k = 0; k < f->depth; k++) {
		if (f->done_ev[k])
			pf_event_sync(f->dev, f->done_ev[k], NULL);
		pf_event_free(f->dev, f->copy_ev[k]);
		pf_event_free(f->dev, f->done_ev[k]);
		/* the copy stream is synced: the kept batch's copy is over */
		if (f->nheld[k])
			pf_elem_release(&f->held[k]);
		pf_dev_free(f->dev, f->dslot[k]);
		pf_host_free(f->dev, f->staging[k]);
	}
	pf_stream_free(f->dev, f->copy);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f);
}
