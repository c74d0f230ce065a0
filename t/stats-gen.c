/*
 * stats-gen - a run with a stats file, for the pipe-stat tests:
 *
 *   stats-gen OUT.pfstat SPEC CONSUMER_US STEPS [INTERVAL_MS]
 *
 * builds the pipeline SPEC (pf_spec.h syntax, e.g. "range(0, 1000000) |
 * map(slowmap, '1000', par=1) | batch(4) | prefetch(2)"), records stats into
 * OUT while a consumer takes STEPS batches and "computes" CONSUMER_US
 * microseconds (a sleep) on each.  Registers the map function slowmap(US):
 * copies its (fixed-shape) input and sleeps US microseconds.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_spec.h"
#include "pf_stats.h"
#include "pipefeed.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	while (us > 0 && nanosleep(&ts, &ts) != 0)
		;
}

static void free_state(void *p)
{
	free(p);
}

static int slow_prepare(pf_map_ctx *ctx, pf_error *err)
{
	for (int i = 0; i < ctx->in->nfields; i++)
		if (pf_field_bytes(&ctx->in->fields[i]) < 0)
			return pf_error_set(err, PF_EINVAL, "slowmap: fixed-shape fields only");
	ctx->out = *ctx->in;
	long *us = malloc(sizeof(*us));
	if (!us)
		return pf_error_set(err, PF_ENOMEM, "slowmap: out of memory");
	*us = atol(ctx->args);
	ctx->state = us;
	ctx->free_state = free_state;
	return 0;
}

static int slow_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	(void)err;
	for (int i = 0; i < in->schema->nfields; i++)
		memcpy(out->data[i], in->data[i], (size_t)pf_field_bytes(&in->schema->fields[i]));
	sleep_us(*(long *)state);
	return 0;
}

static void die(const char *what, const pf_error *e)
{
	fprintf(stderr, "stats-gen: %s: %s\n", what, e->msg);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: stats-gen OUT SPEC CONSUMER_US STEPS [INTERVAL_MS]\n");
		return 2;
	}
	long consumer_us = atol(argv[3]), steps = atol(argv[4]);
	pf_stats_opts so = { .interval_ms = argc > 5 ? (uint32_t)atoi(argv[5]) : 0,
			     .label = argv[2] };
	pf_error err = { 0 };
	pf_pipeline *p;
	pf_iter *it;
	pf_stats *st;
	if (pf_map_register("slowmap", slow_prepare, slow_fn, NULL, &err) < 0)
		die("register", &err);
	if (pf_pipeline_new(&p, NULL, &err) < 0 || pf_spec_apply(p, argv[2], &err) < 0)
		die("pipeline", &err);
	if (pf_iter_new(&it, p, &err) < 0)
		die("iterator", &err);
	if (pf_stats_create(&st, argv[1], &so, &err) < 0 || pf_stats_attach(st, it, &err) < 0)
		die("stats", &err);
	for (long k = 0; k < steps;) {
		pf_elem b;
		uint64_t t0 = now_ns();
		int rc = pf_iter_next(it, &b, &err);
		uint64_t t1 = now_ns();
		if (rc == PF_END)
			continue;
		if (rc < 0)
			die("next", &err);
		sleep_us(consumer_us);
		uint32_t n = b.batch ? b.batch : 1;
		pf_elem_release(&b);
		pf_stats_step(st, t1 - t0, now_ns() - t1, 0, n);
		k++;
	}
	pf_stats_detach(st);
	if (pf_stats_close(st, &err) < 0)
		die("close", &err);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return 0;
}
