/* t0300-queue-wakeups: the bounded queue behind prefetch (lib/pf_queue.h):
 * order and close/reopen, the batched wake-ups (a consumer that found it
 * empty sleeps until a batch is in, the timeout or a flush; a producer
 * that found it full until a batch is free), and many producers and
 * consumers at batch 1 delivering every item once.  Times are generous:
 * a check of "still asleep" waits 30 ms against a 5 s timeout, a check of
 * "woken" allows 2 s. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "pf_queue.h"
#include "tap.h"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Wait up to 2 s for *v to reach want; returns 1 if it did. */
static int wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (atomic_load(v) >= want)
			return 1;
		sleep_ms(1);
	}
	return atomic_load(v) >= want;
}

struct side {
	pf_queue *q;
	int n;                /* items to pop / push */
	atomic_int done;      /* popped / pushed so far */
	atomic_int failed;    /* pops / pushes that returned -1 */
	long sum;
};

static void *popper(void *arg)
{
	struct side *s = arg;
	for (int i = 0; i < s->n; i++) {
		int v;
		if (pf_queue_pop(s->q, &v, NULL)) {
			atomic_fetch_add(&s->failed, 1);
			break;
		}
		s->sum += v;
		atomic_fetch_add(&s->done, 1);
	}
	return NULL;
}

static void *pusher(void *arg)
{
	struct side *s = arg;
	for (int i = 0; i < s->n; i++) {
		int v = i + 1;
		if (pf_queue_push(s->q, &v, NULL)) {
			atomic_fetch_add(&s->failed, 1);
			break;
		}
		atomic_fetch_add(&s->done, 1);
	}
	return NULL;
}

int main(void)
{
	alarm(120);
	plan(19);
	int v;

	/* order, close, reopen (batch 1: every item wakes) */
	pf_queue *q = pf_queue_new(8, sizeof(int));
	int fifo = 1;
	for (v = 1; v <= 5; v++)
		pf_queue_push(q, &v, NULL);
	for (int i = 1; i <= 5; i++)
		fifo &= pf_queue_pop(q, &v, NULL) == 0 && v == i;
	ok(fifo, "items come out in the order they went in");
	v = 7;
	pf_queue_push(q, &v, NULL);
	pf_queue_close(q);
	ok(pf_queue_push(q, &v, NULL) == -1, "push on a closed queue fails");
	ok(pf_queue_pop(q, &v, NULL) == 0 && v == 7 && pf_queue_pop(q, &v, NULL) == -1,
	   "pop on a closed queue drains it, then fails");
	pf_queue_reopen(q);
	v = 9;
	ok(pf_queue_push(q, &v, NULL) == 0 && pf_queue_pop(q, &v, NULL) == 0 && v == 9,
	   "a reopened queue works again");

	/* a consumer on an empty queue sleeps until a batch (4 of 8) is in */
	pf_queue_set_batch(q, 8, 5000000); /* clamped to 8 / 2; timeout 5 s */
	struct side c = { .q = q, .n = 4 };
	pthread_t th;
	pthread_create(&th, NULL, popper, &c);
	sleep_ms(30);
	for (v = 1; v <= 3; v++)
		pf_queue_push(q, &v, NULL);
	sleep_ms(30);
	ok(atomic_load(&c.done) == 0, "3 items in, batch of 4: the consumer still sleeps (%d taken)",
	   atomic_load(&c.done));
	v = 4;
	pf_queue_push(q, &v, NULL);
	ok(wait_for(&c.done, 4), "the 4th item wakes it: it takes all 4");
	pthread_join(th, NULL);
	ok(c.sum == 10, "... in order, each once (sum %ld)", c.sum);

	/* flush: the items in are all that come: take them now */
	c = (struct side){ .q = q, .n = 1 };
	pthread_create(&th, NULL, popper, &c);
	sleep_ms(30);
	v = 5;
	pf_queue_push(q, &v, NULL);
	sleep_ms(30);
	ok(atomic_load(&c.done) == 0, "1 item in: still asleep");
	pf_queue_flush(q);
	ok(wait_for(&c.done, 1), "pf_queue_flush wakes it for the one item");
	pthread_join(th, NULL);

	/* the timeout: one item waits at most max_us for the batch */
	pf_queue_set_batch(q, 4, 1000000); /* 1 s */
	v = 6;
	c = (struct side){ .q = q, .n = 1 };
	pthread_create(&th, NULL, popper, &c);
	sleep_ms(100);
	pf_queue_push(q, &v, NULL);
	sleep_ms(100);
	int early = atomic_load(&c.done);
	ok(!early && wait_for(&c.done, 1),
	   "one item in, timeout 1 s: not taken 100 ms later, taken at the timeout");
	pthread_join(th, NULL);

	/* nothing for longer than the timeout: the first item wakes it */
	pf_queue_set_batch(q, 4, 1000); /* 1 ms */
	c = (struct side){ .q = q, .n = 1 };
	pthread_create(&th, NULL, popper, &c);
	sleep_ms(50); /* 50 timeouts' worth: it waits for the first item now */
	v = 7;
	pf_queue_push(q, &v, NULL);
	ok(wait_for(&c.done, 1), "after a quiet spell the first item wakes the consumer");
	pthread_join(th, NULL);

	/* close wakes a consumer waiting for a batch */
	pf_queue_set_batch(q, 4, 5000000);
	c = (struct side){ .q = q, .n = 1 };
	pthread_create(&th, NULL, popper, &c);
	sleep_ms(30);
	pf_queue_close(q);
	ok(wait_for(&c.failed, 1), "closing the queue wakes a consumer waiting for a batch");
	pthread_join(th, NULL);
	pf_queue_free(q);

	/* a producer on a full queue (limit 4, batch 2) sleeps until 2 are free */
	q = pf_queue_new(8, sizeof(int));
	pf_queue_set_limit(q, 4);
	pf_queue_set_batch(q, 2, 5000000);
	for (v = 1; v <= 4; v++)
		pf_queue_push(q, &v, NULL);
	struct side p = { .q = q, .n = 1 };
	pthread_create(&th, NULL, pusher, &p);
	sleep_ms(30);
	ok(atomic_load(&p.done) == 0, "full (4 of limit 4): the producer sleeps");
	pf_queue_pop(q, &v, NULL);
	sleep_ms(30);
	ok(atomic_load(&p.done) == 0, "one slot free, batch of 2: it still sleeps");
	pf_queue_pop(q, &v, NULL);
	ok(wait_for(&p.done, 1), "two free: it pushes");
	pthread_join(th, NULL);
	ok(pf_queue_len(q) == 3, "3 items in (%zu)", pf_queue_len(q));
	p = (struct side){ .q = q, .n = 2 };
	pthread_create(&th, NULL, pusher, &p);
	ok(wait_for(&p.done, 1) && (sleep_ms(30), atomic_load(&p.done) == 1),
	   "it fills the queue again, then sleeps on the next item");
	pf_queue_close(q);
	ok(wait_for(&p.failed, 1), "closing the queue wakes a producer waiting for room");
	pthread_join(th, NULL);
	pf_queue_free(q);

	/* batch 1, 4 producers and 4 consumers: every item once */
	q = pf_queue_new(16, sizeof(int));
	struct side pr[4], co[4];
	pthread_t pt[4], ct[4];
	for (int i = 0; i < 4; i++) {
		pr[i] = (struct side){ .q = q, .n = 20000 };
		co[i] = (struct side){ .q = q, .n = 20000 };
		pthread_create(&ct[i], NULL, popper, &co[i]);
		pthread_create(&pt[i], NULL, pusher, &pr[i]);
	}
	long sum = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(pt[i], NULL);
		pthread_join(ct[i], NULL);
		sum += co[i].sum;
	}
	ok(sum == 4L * 20000 * 20001 / 2 && pf_queue_len(q) == 0,
	   "4 producers, 4 consumers, 80000 items: each taken once (sum %ld)", sum);
	pf_queue_free(q);
	return done_testing();
}
