/* queue.c - bounded MPMC queue (one mutex, two condition variables). */
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
	int closed;
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
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->not_full, NULL);
	pthread_cond_init(&q->not_empty, NULL);
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

int pf_queue_push(pf_queue *q, const void *item, uint64_t *waited_ns)
{
	uint64_t t0 = 0;
	pthread_mutex_lock(&q->lock);
	if (q->len >= q->limit && !q->closed && waited_ns)
		t0 = q_now();
	while (q->len >= q->limit && !q->closed)
		pthread_cond_wait(&q->not_full, &q->lock);
	if (t0)
		*waited_ns += q_now() - t0;
	if (q->closed) {
		pthread_mutex_unlock(&q->lock);
		return -1;
	}
	memcpy(q->items + ((q->head + q->len) % q->cap) * q->item_size, item,
	       q->item_size);
	q->len++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

void pf_queue_set_limit(pf_queue *q, size_t n)
{
	pthread_mutex_lock(&q->lock);
	q->limit = n < 1 ? 1 : n > q->cap ? q->cap : n;
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
}

static void take_locked(pf_queue *q, void *item)
{
	memcpy(item, q->items + q->head * q->item_size, q->item_size);
	q->head = (q->head + 1) % q->cap;
	q->len--;
	pthread_cond_signal(&q->not_full);
}

int pf_queue_pop(pf_queue *q, void *item, uint64_t *waited_ns)
{
	uint64_t t0 = 0;
	pthread_mutex_lock(&q->lock);
	if (!q->len && !q->closed && waited_ns)
		t0 = q_now();
	while (!q->len && !q->closed)
		pthread_cond_wait(&q->not_empty, &q->lock);
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
	pthread_cond_broadcast(&q->not_full);
	pthread_cond_broadcast(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
}

void pf_queue_reopen(pf_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = 0;
	pthread_mutex_unlock(&q->lock);
}

size_t pf_queue_len(pf_queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}
