/*
 * stat_serve.c - pipe-stat on a serving run (pipe-serve --stats): a run
 * whose writer logged the consumer event "serving" (doc/STATS.md).  Its
 * steps are batches: stall = the batch's oldest request's queue wait,
 * compute = the batch's compute, samples = its rows from requests; its
 * knob changes are the adaptive batch size limit's.  The report speaks of
 * queue wait, compute and batch fill instead of pipeline stages.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "stat.h"

const pf_stats_eventrec *stat_serving(const pf_stats_snap *s)
{
	for (size_t k = s->nevents; k-- > 0;)
		if (s->events[k].stage < 0 && !strcmp(s->events[k].knob, "serving"))
			return &s->events[k];
	return NULL;
}

/* The figures both forms print. */
typedef struct serve_fig {
	double mean_batch, fill, queue_share;
	int timed, overlapped;       /* recent batches with a placed copy, and
				      * those copied before the one before ended */
	double copy_us;              /* their mean copy */
	double q50, q99, c50, c99;   /* ms */
	long long cap, timeout_us;
} serve_fig;

static serve_fig figures(const pf_stats_snap *s, const pf_stats_eventrec *mk)
{
	serve_fig g = { 0 };
	g.cap = mk->old_value;
	g.timeout_us = mk->new_value;
	g.mean_batch = s->steps ? (double)s->samples / (double)s->steps : 0.0;
	g.fill = g.cap > 0 ? g.mean_batch / (double)g.cap : 0.0;
	double tot = (double)s->stall_ns + (double)s->compute_ns;
	g.queue_share = tot > 0 ? (double)s->stall_ns / tot : 0.0;
	g.q50 = pf_stats_quantile(s, PF_STATS_H_STALL, 0.5) * 1e-6;
	g.q99 = pf_stats_quantile(s, PF_STATS_H_STALL, 0.99) * 1e-6;
	g.c50 = pf_stats_quantile(s, PF_STATS_H_COMPUTE, 0.5) * 1e-6;
	g.c99 = pf_stats_quantile(s, PF_STATS_H_COMPUTE, 0.99) * 1e-6;
	double copy = 0;
	for (size_t k = 0; k < s->nsteps; k++) {
		const pf_stats_steprec *r = &s->steprecs[k];
		if (!r->copy_lead_us)
			continue;
		g.timed++;
		copy += r->h2d_ns * 1e-3;
		if (k && r->t_ns > (uint64_t)r->copy_lead_us * 1000 &&
		    r->t_ns - (uint64_t)r->copy_lead_us * 1000 < s->steprecs[k - 1].t_ns)
			g.overlapped++;
	}
	g.copy_us = g.timed ? copy / g.timed : 0;
	return g;
}

/* What the figures say, in one line. */
static const char *advice(const serve_fig *g)
{
	if (!g->mean_batch)
		return "no batch ran";
	if (g->fill >= 0.9 && g->c50 >= 0.5 * g->q50)
		return "batches are full and requests wait behind the compute: the model is the "
		       "limit (more --num-batch-threads, a faster device, or a larger "
		       "--max-batch-size if the latency allows)";
	if (g->fill >= 0.9)
		return "batches fill, and the compute is short beside the queue wait: the "
		       "arrival of requests (HTTP, the clients) sets the pace, not the model";
	if (g->fill < 0.5 && g->timeout_us > 0 && g->q50 * 1e3 >= 0.8 * (double)g->timeout_us)
		return "batches run part-full on their timeout: requests arrive slower than a "
		       "batch fills; a shorter --batch-timeout-us cuts latency at little cost";
	return "queue wait and compute are balanced for this load";
}

int stat_serve_report(FILE *f, const pf_stats_snap *s, const stat_analysis *a,
		      const pf_stats_eventrec *mk)
{
	serve_fig g = figures(s, mk);
	fprintf(f, "serving:     %llu batches, %llu rows, %.0f rows/s over %.2f s\n",
		(unsigned long long)s->steps, (unsigned long long)s->samples, a->samples_per_s,
		a->wall_s);
	fprintf(f, "batcher:     max_batch_size %lld, batch_timeout_us %lld%s\n", g.cap,
		g.timeout_us, g.timeout_us < 0 ? " (adaptive: --slo-p99-ms)" : "");
	fprintf(f, "batch fill:  %.2f rows a batch, %.1f%% of max_batch_size\n", g.mean_batch,
		100 * g.fill);
	fprintf(f, "queue wait:  p50 %.3f ms p99 %.3f ms (each batch's oldest request, submit to compute)\n",
		g.q50, g.q99);
	fprintf(f, "compute:     p50 %.3f ms p99 %.3f ms a batch\n", g.c50, g.c99);
	if (g.timed)
		fprintf(f, "device feed: copy %.1f us a batch; %d of %d recent batches were copied while the batch before computed (copy/compute overlap)\n",
			g.copy_us, g.overlapped, g.timed);
	fprintf(f, "split:       queue wait %.1f%%, compute %.1f%% of the batches' time\n",
		100 * g.queue_share, 100 * (1 - g.queue_share));
	fprintf(f, "suggestion:  %s\n", advice(&g));
	size_t nlim = 0;
	for (size_t k = 0; k < s->nevents; k++)
		nlim += !strcmp(s->events[k].knob, "batch_limit");
	if (nlim) {
		fprintf(f, "batch limit changes: %zu%s\n", nlim,
			s->events_total > s->nevents ? " (latest shown)" : "");
		size_t shown = 0;
		for (size_t k = s->nevents; k-- > 0 && shown < 10;) {
			const pf_stats_eventrec *e = &s->events[k];
			if (strcmp(e->knob, "batch_limit"))
				continue;
			fprintf(f, "  %8.3f s  %lld -> %lld  (%s)\n", e->t_ns * 1e-9,
				(long long)e->old_value, (long long)e->new_value, e->reason);
			shown++;
		}
	}
	return ferror(f) ? -1 : 0;
}

void stat_serve_json(FILE *f, const pf_stats_snap *s)
{
	const pf_stats_eventrec *mk = stat_serving(s);
	if (!mk) {
		fputs("\"serving\":null,", f);
		return;
	}
	serve_fig g = figures(s, mk);
	fprintf(f, "\"serving\":{\"batches\":%llu,\"rows\":%llu,\"max_batch_size\":%lld,"
		"\"batch_timeout_us\":%lld,\"mean_batch\":%.6g,\"fill\":%.6g,"
		"\"queue_p50_ms\":%.6g,\"queue_p99_ms\":%.6g,\"compute_p50_ms\":%.6g,"
		"\"compute_p99_ms\":%.6g,\"queue_share\":%.6g,\"copy_us\":%.6g,"
		"\"copies_timed\":%d,\"copies_overlapped\":%d,\"suggestion\":",
		(unsigned long long)s->steps, (unsigned long long)s->samples, g.cap, g.timeout_us,
		g.mean_batch, g.fill, g.q50, g.q99, g.c50, g.c99, g.queue_share, g.copy_us,
		g.timed, g.overlapped);
	stat_json_str(f, advice(&g), 512);
	fputs("},", f);
}
