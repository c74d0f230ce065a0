/* queue.c - bounded MPMC queue (one mutex, two condition variables), with
 * batched wake-ups (pf_queue.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_queue.h"

struct pf_queue {
	pthread_mutex_t lock;
	pthread_cond_t not_full, not_empty;
	size_t cap, item_size, head, len;
	size_t limit;         /* push blocks at this many items (<= cap) */
	size_t batch;         /* wake-up batch asked for (pf_queue_set_batch) */
	uint64_t max_ns;      /* ... and the longest an item waits for it */
	int cwait, pwait;     /* consumers / producers asleep */
	size_t cwant;         /* ... until this many items are in (batch mode:
			       * one consumer) */
	size_t pwant;         /* ... until at most this many are in */
	int closed, flushed;
	unsigned char *items;
};

static uint64_t q_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

pf_queue *pf_queue_new(size_t cap, size_t item_size)
{
	if (!cap || !item_size)
		return NULL;
	pf_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->items = calloc(cap, item_size);
	if (!q->items) {
		free(q);
		return NULL;
	}
	q->cap = cap;
	q->limit = cap;
	q->item_size = item_size;
	q->batch = 1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* for the timed wait */
	pthread_cond_init(&q->not_full, NULL);
	pthread_cond_init(&q->not_empty, &ca);
	pthread_condattr_destroy(&ca);
	return q;
}

void pf_queue_free(pf_queue *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	free(q->items);
	free(q);
}

/* A setting changed (q->lock held): every waiter looks again. */
static void wake_all(pf_queue *q)
{
	pthread_cond_broadcast(&q->not_full);
	pthread_cond_broadcast(&q->not_empty);
}

/* The batch in force: at most half the limit, at least 1. */
static size_t batch_now(const pf_queue *q)
{
	size_t n = q->batch, half = q->limit / 2;
	if (n > half)
		n = half;
	return n ? n : 1;
}

int pf_queue_push(pf_queue *q, const void *item, uint64_t *waited_ns)
{
	uint64_t t0 = 0;
	pthread_mutex_lock(&q->lock);
	if (q->len >= q->limit && !q->closed) {
		if (waited_ns)
			t0 = q_now();
		/* full: sleep until a batch of slots is free */
		size_t b = batch_now(q);
		q->pwait++;
		while (q->len + b > q->limit && !q->closed) {
			q->pwant = q->limit - b;
			pthread_cond_wait(&q->not_full, &q->lock);
			b = batch_now(q); /* the limit may have moved */
		}
		q->pwait--;
	}
	if (t0)
		*waited_ns += q_now() - t0;
	if (q->closed) {
		pthread_mutex_unlock(&q->lock);
		return -1;
	}
	memcpy(q->items + ((q->head + q->len) % q->cap) * q->item_size, item,
	       q->item_size);
	q->len++;
	if (q->cwait && q->len >= q->cwant)
		pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

void pf_queue_set_limit(pf_queue *q, size_t n)
{
	pthread_mutex_lock(&q->lock);
	q->limit = n < 1 ? 1 : n > q->cap ? q->cap : n;
	wake_all(q);
	pthread_mutex_unlock(&q->lock);
}

void pf_queue_set_batch(pf_queue *q, size_t n, unsigned max_us)
{
	pthread_mutex_lock(&q->lock);
	q->batch = n ? n : 1;
	q->max_ns = (uint64_t)max_us * 1000u;
	wake_all(q);
	pthread_mutex_unlock(&q->lock);
}

void pf_queue_flush(pf_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->flushed = 1;
	pthread_cond_broadcast(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
}

static void take_locked(pf_queue *q, void *item)
{
	memcpy(item, q->items + q->head * q->item_size, q->item_size);
	q->head = (q->head + 1) % q->cap;
	q->len--;
	if (!q->len)
		q->flushed = 0;
	if (q->pwait && q->len <= q->pwant)
		pthread_cond_signal(&q->not_full);
}

/* Empty and open: sleep until a batch is in (see pf_queue.h). */
static void wait_items(pf_queue *q)
{
	size_t want = batch_now(q);
	q->cwait++;
	if (want == 1) {
		q->cwant = 1;
		while (!q->len && !q->closed)
			pthread_cond_wait(&q->not_empty, &q->lock);
		q->cwait--;
		return;
	}
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	uint64_t ns = (uint64_t)dl.tv_nsec + q->max_ns;
	dl.tv_sec += (time_t)(ns / 1000000000u);
	dl.tv_nsec = (long)(ns % 1000000000u);
	int eager = 0; /* nothing came in max_us: the first item wakes us */
	while (!q->closed && q->len < want && !(q->len && (q->flushed || eager))) {
		q->cwant = eager ? 1 : want;
		if (eager) {
			pthread_cond_wait(&q->not_empty, &q->lock);
		} else if (pthread_cond_timedwait(&q->not_empty, &q->lock, &dl) == ETIMEDOUT) {
			if (q->len)
				break;
			eager = 1;
		}
		want = batch_now(q);
	}
	q->cwait--;
}

int pf_queue_pop(pf_queue *q, void *item, uint64_t *waited_ns)
{
	uint64_t t0 = 0;
	pthread_mutex_lock(&q->lock);
	if (!q->len && !q->closed) {
		if (waited_ns)
			t0 = q_now();
		wait_items(q);
	}
	if (t0)
		*waited_ns += q_now() - t0;
	if (!q->len) {
		pthread_mutex_unlock(&q->lock);
		return -1;
	}
	take_locked(q, item);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

int pf_queue_trypop(pf_queue *q, void *item)
{
	int rc = -1;
	pthread_mutex_lock(&q->lock);
	if (q->len) {
		take_locked(q, item);
		rc = 0;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void pf_queue_close(pf_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = 1;
	wake_all(q);
	pthread_mutex_unlock(&q->lock);
}

void pf_queue_reopen(pf_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = 0;
	q->flushed = 0;
	pthread_mutex_unlock(&q->lock);
}

size_t pf_queue_len(pf_queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}
