/* mkcorpus_stats - writes the seed corpus of fuzz_stats into the directory
 * given: small stats files (short tables) of a real pipeline run, one
 * captured while running (no checksum: mutants reach every later check),
 * one finished, one with no steps. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_stats.h"
#include "pipefeed.h"

static int copy(const char *from, const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *in = fopen(from, "rb"), *out = fopen(path, "wb");
	char buf[65536];
	size_t n;
	if (!in || !out)
		return -1;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	return fclose(out);
}

static int run(const char *dir, const char *name, int steps, int keep_running)
{
	char tmp[1024];
	pf_error err = { 0 };
	pf_pipeline *p;
	pf_iter *it;
	pf_stats *st;
	pf_stats_opts so = { .interval_ms = 1, .label = "mkcorpus \"run\"\n",
			     .sample_cap = 4, .step_cap = 3, .event_cap = 2 };
	snprintf(tmp, sizeof(tmp), "%s/.tmp.pfstat", dir);
	if (pf_pipeline_new(&p, NULL, &err) || pf_range(p, 0, 100, 1, &err) ||
	    pf_batch(p, 8, 0, &err) || pf_prefetch(p, 2, &err) || pf_iter_new(&it, p, &err) ||
	    pf_stats_create(&st, tmp, &so, &err) || pf_stats_attach(st, it, &err)) {
		fprintf(stderr, "mkcorpus_stats: %s\n", err.msg);
		return 1;
	}
	for (int k = 0; k < steps; k++) {
		pf_elem b;
		if (pf_iter_next(it, &b, &err) != 0)
			break;
		pf_stats_step(st, 1000u * k, 50000, 100, b.batch);
		pf_elem_release(&b);
	}
	pf_stats_event(st, 0, 1, "depth", 2, 4, "corpus");
	pf_stats_event(st, 0, -1, "batch", 8, 16, "corpus");
	pf_stats_event(st, 0, 0, "cycle_length", 1, 2, "corpus");
	pf_stats_detach(st);
	if (keep_running && copy(tmp, dir, name))
		return 1;
	pf_stats_close(st, &err);
	if (!keep_running && copy(tmp, dir, name))
		return 1;
	remove(tmp);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkcorpus_stats DIR\n");
		return 2;
	}
	return run(argv[1], "running.pfstat", 10, 1) || run(argv[1], "finished.pfstat", 10, 0) ||
	       run(argv[1], "nosteps.pfstat", 0, 1);
}
