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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The step: sleep *arg microseconds on the stream's host thread. */
static void synth_sleep(void *arg)
{
	uint32_t us = *(const uint32_t *)arg;
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
	while (nanosleep(&ts, &ts) != 0)
		;       /* EINTR: sleep the rest */
}

void synth_step(pf_device *dev, pf_stream *s, const uint32_t *us)
{
	pf_error err = { 0 };
	if (pf_host_func(dev, s, synth_sleep, (void *)us, &err) < 0)
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

double preload_run(const preload *p, pf_device *dev, pf_stream *s, uint64_t steps,
		   const uint32_t *us)
{
	pf_error err = { 0 };
	if (!steps || !p->n)
		return 0;
	if (pf_stream_sync(dev, s, &err) < 0)
		die("preloaded baseline", &err);
	double t0 = now_s();
	for (uint64_t k = 0; k < steps; k++) {
		const pf_devbatch *b = &p->b[k % (uint64_t)p->n];
		(void)b;        /* the synthetic step does not read it */
		synth_step(dev, s, us);
	}
	if (pf_stream_sync(dev, s, &err) < 0)
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
