/*
 * train_synth.c - pipe-train --model synthetic:STEP_US and the preloaded
 * baseline of the never-starves ratio.
 *
 * A synthetic step is a host function enqueued on the compute stream that
 * sleeps STEP_US: the stream is busy for that long and the host CPU is not
 * (a GPU step waits, it does not spin).  It goes through the device
 * interface like a model step: after pf_devfeed_next the compute stream
 * waits for the batch's copy, runs the step, and the feed's done event
 * follows it, so the feed's slots and streams work as with a real model.
 * The sleep ends on an emulated device clock (see synth_run), so the
 * host thread's own wake-up lateness is not counted as the pipeline's.
 * (cuda: cudaLaunchHostFunc; the sleep holds that stream's callback thread,
 * which is what a step of STEP_US on the GPU would hold.)
 *
 * The preloaded baseline: copies of the first batches the feed delivered,
 * kept in device memory (D2D on the compute stream, once each), and the
 * same number of steps run over them with no pipeline and no feed.  The
 * never-starves ratio is the step time through the pipeline over the step
 * time preloaded: 1 when the pipeline never holds the step back.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "train.h"

int synth_parse(const char *spec, uint32_t *us)
{
	if (strncmp(spec, "synthetic:", 10) != 0)
		return 0;
	const char *a = spec + 10;
	char *end;
	long v = strtol(a, &end, 10);
	if (end == a || *end || *a == '-' || *a == '+' || v < 1 || v > SYNTH_MAX_US) {
		fprintf(stderr, "pipe-train: --model '%s': expected synthetic:STEP_US with STEP_US 1..%d (microseconds)\n",
			spec, SYNTH_MAX_US);
		return -1;
	}
	*us = (uint32_t)v;
	return 1;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void synth_init(synth *sy, pf_device *dev, pf_stream *s, uint32_t us)
{
	memset(sy, 0, sizeof(*sy));
	sy->dev = dev;
	sy->s = s;
	sy->us = us;
	sy->cpu = !strcmp(pf_device_kind(dev), "cpu");
	atomic_init(&sy->tail, 0);
}

/*
 * The step, on the stream's host thread.  The emulated device's clock: the
 * step starts at max(the previous step's end on that clock, the time the
 * host enqueued it, the time its input copy completed) and ends STEP_US
 * later; the thread sleeps to that end (an absolute deadline).  Why a
 * clock and not "sleep STEP_US from now": the thread has to be woken for
 * every step, and on a busy host (the pipeline using the cores) it wakes
 * tens of microseconds late; a GPU's next kernel does not wait for a host
 * thread to be scheduled, so that lateness must not push the later steps
 * back (it is made up on the next sleep).  What does push them back is
 * the pipeline: a step enqueued late (the loop waited for its batch) or a
 * copy not done (on the cpu backend the stream's wait counter grew: the
 * copy completed just now; on cuda the callback cannot ask, and the
 * time it runs is taken as the start).  The timer slack of the thread
 * (50 us by default on Linux) is set to 1 ns, once per thread.
 */
static void synth_run(void *arg)
{
	synth *sy = arg;
#ifdef PR_SET_TIMERSLACK
	static _Thread_local int slack_set;
	if (!slack_set) {
		prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
		slack_set = 1;
	}
#endif
	uint64_t k = atomic_load_explicit(&sy->tail, memory_order_relaxed);
	uint64_t now = mono_ns(), start = sy->enq[k % SYNTH_RING];
	if (sy->cpu) {
		uint64_t w = pf_stream_wait_ns(sy->dev, sy->s);
		if (w != sy->wait_seen)
			start = now;            /* it waited for the copy */
		sy->wait_seen = w;
	} else {
		start = now;
	}
	if (start < sy->dev_end)
		start = sy->dev_end;
	sy->dev_end = start + (uint64_t)sy->us * 1000;
	struct timespec ts = { (time_t)(sy->dev_end / 1000000000u),
			       (long)(sy->dev_end % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
		;       /* EINTR: on to the same deadline */
	atomic_store_explicit(&sy->tail, k + 1, memory_order_release);
}

void synth_step(synth *sy)
{
	pf_error err = { 0 };
	/* at most SYNTH_RING steps in flight (the cpu backend's queue holds
	 * fewer; a cuda launch queue may hold more) */
	while (sy->head - atomic_load_explicit(&sy->tail, memory_order_acquire) >= SYNTH_RING) {
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	sy->enq[sy->head % SYNTH_RING] = mono_ns();
	sy->head++;
	if (pf_host_func(sy->dev, sy->s, synth_run, sy, &err) < 0)
		die("synthetic step", &err);
}

/* Bytes of field i of b. */
static size_t field_bytes(const pf_devbatch *b, int i)
{
	return (size_t)b->nitems[i] * pf_dtype_size(b->schema->fields[i].dtype);
}

void preload_keep(preload *p, pf_device *dev, pf_stream *s, const pf_devbatch *b)
{
	if (p->n >= PRELOAD_MAX || !b->schema)
		return;
	size_t total = 0;
	for (int i = 0; i < b->schema->nfields; i++)
		if (b->data[i])
			total += (field_bytes(b, i) + 255) & ~(size_t)255;
	if (p->bytes + total > PRELOAD_MAX_BYTES)
		return;
	pf_error err = { 0 };
	void *buf;
	if (pf_dev_alloc(dev, &buf, total ? total : 1, &err) < 0)
		die("preloaded baseline", &err);
	pf_devbatch *c = &p->b[p->n];
	*c = *b;
	c->slot = -1;
	size_t off = 0;
	for (int i = 0; i < b->schema->nfields; i++) {
		if (!b->data[i])
			continue;
		c->data[i] = (char *)buf + off;
		if (pf_memcpy_async(dev, s, c->data[i], b->data[i], field_bytes(b, i), PF_D2D,
				    &err) < 0)
			die("preloaded baseline", &err);
		off += (field_bytes(b, i) + 255) & ~(size_t)255;
	}
	p->buf[p->n++] = buf;
	p->bytes += total;
}

double preload_run(const preload *p, synth *sy, uint64_t steps)
{
	pf_error err = { 0 };
	if (!steps || !p->n)
		return 0;
	if (pf_stream_sync(sy->dev, sy->s, &err) < 0)
		die("preloaded baseline", &err);
	/* a fresh device clock (the stream is idle: synced) */
	sy->dev_end = 0;
	sy->wait_seen = sy->cpu ? pf_stream_wait_ns(sy->dev, sy->s) : 0;
	double t0 = now_s();
	for (uint64_t k = 0; k < steps; k++) {
		const pf_devbatch *b = &p->b[k % (uint64_t)p->n];
		(void)b;        /* the synthetic step does not read it */
		synth_step(sy);
	}
	if (pf_stream_sync(sy->dev, sy->s, &err) < 0)
		die("preloaded baseline", &err);
	return (now_s() - t0) / (double)steps;
}

void preload_free(preload *p, pf_device *dev)
{
	for (int k = 0; k < p->n; k++)
		pf_dev_free(dev, p->buf[k]);
	p->n = 0;
	p->bytes = 0;
}
