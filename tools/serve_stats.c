/*
 * serve_stats.c - pipe-serve's stats file (--stats), apart because
 * pf_stats.h brings pipefeed.h, whose pf_batch() (the batching op) is not
 * serve/'s pf_batch (a batch of requests): no file may include both.
 * A serving run's steps are its batches (see doc/STATS.md).
 */
#include "config.h"

#include <stdio.h>

#include "pf_stats.h"
#include "serve_stats.h"

struct pf_stats *serve_stats_open(const char *path, int argc, char **argv,
				  int max_batch_size, long long timeout_us)
{
	char label[256];
	size_t n = 0;
	label[0] = 0;
	for (int i = 0; i < argc && n < sizeof(label); i++)
		n += (size_t)snprintf(label + n, sizeof(label) - n, "%s%s", i ? " " : "", argv[i]);
	pf_stats_opts so = { .label = label };
	pf_error err = { 0 };
	pf_stats *st;
	if (pf_stats_create(&st, path, &so, &err) < 0) {
		fprintf(stderr, "pipe-serve: --stats: %s\n", err.msg);
		return NULL;
	}
	pf_stats_event(st, 0, -1, "serving", max_batch_size, timeout_us,
		       "pipe-serve: a step is a batch (stall = its oldest request's queue wait)");
	return st;
}

void serve_stats_batch(struct pf_stats *st, uint64_t wait_ns, uint64_t compute_ns,
		       uint64_t h2d_ns, uint64_t copy_lead_ns, uint32_t rows)
{
	pf_stats_step_copy(st, wait_ns, compute_ns, h2d_ns, rows, copy_lead_ns);
}

void serve_stats_limit(struct pf_stats *st, int from, int to, const char *why)
{
	pf_stats_event(st, 0, -1, "batch_limit", from, to, why);
}

int serve_stats_close(struct pf_stats *st)
{
	pf_error err = { 0 };
	if (pf_stats_close(st, &err) < 0) {
		fprintf(stderr, "pipe-serve: --stats: %s\n", err.msg);
		return -1;
	}
	return 0;
}
