/*
 * pf_queue.h - a bounded multi-producer multi-consumer queue of fixed-size
 * items (copied in and out), with close for shutdown and epoch resets.
 *
 * push blocks while the queue is full, pop while it is empty.  pf_queue_close
 * wakes every waiter: push then fails at once, pop drains what is left and
 * then fails.  pf_queue_reopen makes an empty closed queue usable again.
 * Threads: every call is thread-safe.
 *
 * Batched wake-ups (pf_queue_set_batch): when one side keeps waiting on the
 * other (a consumer faster than its producer, or the reverse), waking the
 * sleeper for every item costs a context switch per item, and on a machine
 * with few cores the woken thread preempts a producer.  With a batch of n
 * a consumer that finds the queue empty sleeps until n items are in, the
 * queue is closed or flushed, or max_us passed with at least one item in;
 * a producer that finds it full sleeps until n slots are free.  The rate
 * through the queue is the slower side's either way; an item may wait up
 * to max_us longer.  A consumer that found nothing in max_us is then woken
 * by the first item (a slow producer costs no timer wake-ups).
 */
#ifndef PF_QUEUE_H
#define PF_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pf_queue pf_queue;

/* A queue of at most `cap` items of item_size bytes; NULL when out of memory. */
pf_queue *pf_queue_new(size_t cap, size_t item_size);
void pf_queue_free(pf_queue *q); /* NULL is a no-op; items left are dropped */

/* Copy *item in; blocks while full.  Returns 0, or -1 when closed.
 * *waited_ns (may be NULL) gets the time spent blocked. */
int pf_queue_push(pf_queue *q, const void *item, uint64_t *waited_ns);
/* Copy the oldest item out; blocks while empty and open.  Returns 0, or -1
 * when closed and empty. */
int pf_queue_pop(pf_queue *q, void *item, uint64_t *waited_ns);
/* Non-blocking pop: 0, or -1 when empty. */
int pf_queue_trypop(pf_queue *q, void *item);

/* Let push block at n items (1 <= n <= cap; clamped) instead of cap. */
void pf_queue_set_limit(pf_queue *q, size_t n);

/* Wake a waiting side only every n items (clamped to the limit then in
 * force: with limit L, at most L/2, at least 1), or after max_us with at
 * least one item in (see above).  n = 1 (the default): every item. */
void pf_queue_set_batch(pf_queue *q, size_t n, unsigned max_us);

/* The items in now are all that come for a while (the end of a stream):
 * a consumer waiting for a batch takes them now. */
void pf_queue_flush(pf_queue *q);

void pf_queue_close(pf_queue *q);
void pf_queue_reopen(pf_queue *q);
size_t pf_queue_len(pf_queue *q);

#endif /* PF_QUEUE_H */
