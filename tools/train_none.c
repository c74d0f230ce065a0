/*
 * train_none.c - pipe-train --model none (the pipeline alone: its
 * throughput and wait, no model), and the --stats file both runs write.
 * See train.h for how the files of pipe-train depend on each other.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "pf_stats.h"
#include "pipefeed.h"
#include "train.h"

/* ==== --stats ============================================================= */

/* --stats FILE: the stats file, its sampler on it; NULL without --stats. */
pf_stats *train_stats_open(const opts *o, pf_iter *it)
{
	if (!o->stats)
		return NULL;
	pf_error err = { 0 };
	pf_stats *st;
	pf_stats_opts so = { .label = o->label };
	if (pf_stats_create(&st, o->stats, &so, &err) < 0 || pf_stats_attach(st, it, &err) < 0)
		die("--stats", &err);
	return st;
}

/* Finish the stats file (before its iterator is freed).  NULL is a no-op. */
void train_stats_close(pf_stats *st)
{
	pf_error err = { 0 };
	if (st && pf_stats_close(st, &err) < 0)
		die("--stats", &err);
}

/* ==== --model none ======================================================== */

/* One epoch of the pipeline alone: its element count (samples); the wait
 * for each batch goes to *wait and to the stats file. */
static uint64_t pipeline_epoch(pf_iter *it, pf_stats *st, double *wait)
{
	pf_error err = { 0 };
	uint64_t ei = 0;
	pf_elem b;
	int rc;
	for (;;) {
		double tw = now_s();
		rc = pf_iter_next(it, &b, &err);
		double tn = now_s();
		*wait += tn - tw;
		if (rc != 0)
			break;
		uint32_t n = b.batch ? b.batch : 1;
		ei += n;
		pf_elem_release(&b);
		if (st)
			pf_stats_step(st, (uint64_t)((tn - tw) * 1e9),
				      (uint64_t)((now_s() - tn) * 1e9), 0, n);
	}
	if (rc < 0)
		die("pipeline", &err);
	return ei;
}

int run_pipeline_only(const opts *o)
{
	pf_pipeline *p = build(o, (const char *const *)o->shards, o->nshards, 1, NULL);
	pf_error err = { 0 };
	pf_iter *it;
	if (pf_iter_new(&it, p, &err) < 0)
		die("iterator", &err);
	pf_stats *st = train_stats_open(o, it);
	uint64_t images = 0;
	double t0 = now_s(), wait = 0;
	FILE *out = o->json ? stderr : stdout;
	for (int e = 0; e < o->epochs; e++) {
		double te = now_s();
		uint64_t ei = pipeline_epoch(it, st, &wait);
		images += ei;
		if (!o->quiet)
			fprintf(out, "epoch %d/%d: %llu images, %.0f images/s (pipeline only)\n",
				e + 1, o->epochs, (unsigned long long)ei,
				ei / (now_s() - te));
	}
	double wall = now_s() - t0;
	damage dm = damage_sum(it);
	if (o->json)
		printf("{\"device\":\"none\",\"model\":\"none\",\"epochs\":%d,\"images\":%llu,"
		       "\"wall_s\":%.3f,\"images_per_sec\":%.1f,\"stall_share\":%.4f,"
		       "\"skipped_records\":%llu,\"corrupt_blocks\":%llu,\"dropped_samples\":%llu,"
		       "\"train_loss\":null,\"test_accuracy\":null}\n",
		       o->epochs, (unsigned long long)images, wall, images / wall,
		       wall > 0 ? wait / wall : 0, (unsigned long long)dm.skipped_records,
		       (unsigned long long)dm.corrupt_blocks,
		       (unsigned long long)dm.dropped_samples);
	else if (!o->quiet)
		fprintf(out, "done: %llu images, skipped_records %llu, corrupt_blocks %llu, dropped_samples %llu\n",
			(unsigned long long)images, (unsigned long long)dm.skipped_records,
			(unsigned long long)dm.corrupt_blocks,
			(unsigned long long)dm.dropped_samples);
	train_stats_close(st);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return 0;
}
