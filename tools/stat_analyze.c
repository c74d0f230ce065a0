/*
 * stat_analyze.c - what a stats snapshot says: the stall share and its
 * verdict on TF Profiler's scale, per-step percentiles, the per-op table,
 * the bottleneck and what to do about it, and the cost of the run.
 *
 * The bottleneck: when the consumer does not stall (under 5%), the
 * consumer (the model) and the input has headroom.  When it does, the stage
 * whose threads are busiest (self time over wall time times its
 * parallelism), if that is saturated (half busy or more): it cannot go
 * faster, so everything after it waits on it.  With no stage saturated the
 * stall is either the start-up (the wait for the first batch: a shuffle
 * buffer filling, files opening; the rest of the run would not be
 * input-bound) or bursts that the buffers do not absorb.  And when the
 * pipeline's last stage is mostly blocked on a full output, the pipeline is
 * ahead: the wait is after it (the device feed).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stat.h"

const char *stat_bottleneck_name(const stat_analysis *a)
{
	if (a->bottleneck >= 0 && a->bottleneck < a->nops)
		return a->ops[a->bottleneck].name;
	switch (a->bottleneck) {
	case B_CONSUMER: return "consumer";
	case B_STARTUP: return "start-up";
	case B_BURSTS: return "bursts";
	case B_FEED: return "device feed";
	default: return "unknown";
	}
}

const char *stat_verdict_name(int v)
{
	switch (v) {
	case V_NOT: return "not input-bound";
	case V_MODERATE: return "moderately input-bound";
	case V_HIGH: return "highly input-bound";
	default: return "unknown (no consumer steps recorded)";
	}
}

static int has(const char *name, const char *what)
{
	return strstr(name, what) != NULL;
}

/* What to do about the bottleneck (a->bottleneck >= 0) or about the run. */
static void suggest(const pf_stats_snap *s, stat_analysis *a)
{
	char *b = a->suggestion;
	size_t n = sizeof(a->suggestion);
	if (a->verdict == V_UNKNOWN) {
		snprintf(b, n, "record consumer steps (pf_stats_step, or pipe-train --stats) to get a verdict");
		return;
	}
	if (a->bottleneck == B_CONSUMER) {
		if (a->stall_p99_ms > 4 * a->stall_p50_ms && a->stall_p99_ms > 1 &&
		    a->stall_share >= 0.02)
			snprintf(b, n, "the input keeps up on average but stalls in bursts (p99 %.2f ms): deepen prefetch to absorb them",
				 a->stall_p99_ms);
		else
			snprintf(b, n, "the input keeps up: the consumer (compute) sets the pace; speed up the model or raise the batch size, the pipeline has headroom");
		return;
	}
	if (a->bottleneck == B_STARTUP) {
		snprintf(b, n, "the stall is the start-up: the first batch took %.1f ms (a shuffle buffer filling, files opening); after it the stall is %.1f%%. Shrink the shuffle buffer, or run longer",
			 a->startup_ms, 100 * a->steady_stall_share);
		return;
	}
	if (a->bottleneck == B_FEED) {
		snprintf(b, n, "the pipeline is ahead (%s is blocked on a full output %.0f%% of the time) yet the consumer waits: the time goes between them, in the device feed (host-to-device copy, staging, CPU contention): raise the device prefetch depth (--depth) or free CPU for the copy",
			 a->ops[a->nops - 1].name, 100 * a->ops[a->nops - 1].blocked_share);
		return;
	}
	if (a->bottleneck == B_BURSTS) {
		snprintf(b, n, "no stage is saturated (the busiest, %s, is %.0f%% busy) but the consumer waits in bursts (stall p50 %.2f ms, p99 %.2f ms): deepen prefetch (prefetch(auto)) so the pipeline runs further ahead",
			 a->busiest >= 0 ? a->ops[a->busiest].name : "none",
			 a->busiest >= 0 ? 100 * a->ops[a->busiest].util : 0.0, a->stall_p50_ms,
			 a->stall_p99_ms);
		return;
	}
	const stat_op *o = &a->ops[a->bottleneck];
	const char *nm = o->name;
	int par = o->parallelism > 0 ? o->parallelism : 1;
	if (has(nm, "map")) {
		if (o->autotuned)
			snprintf(b, n, "%s is saturated at parallelism %d (AUTOTUNE): give it a larger cpu_budget, or cache after decode so later epochs skip it",
				 nm, par);
		else
			snprintf(b, n, "%s is saturated at parallelism %d: raise map parallelism (par=%d or par=auto), or cache after decode so later epochs skip it",
				 nm, par, 2 * par);
	} else if (has(nm, "shards") || has(nm, "tfrecord")) {
		if (o->wait_share > o->util)
			snprintf(b, n, "%s waits on reads: raise cycle_length (files read at once) and num_parallel_reads",
				 nm);
		else
			snprintf(b, n, "%s is saturated decoding blocks at parallelism %d: raise num_parallel_reads, or cache after decode",
				 nm, par);
	} else if (has(nm, "prefetch")) {
		snprintf(b, n, "%s is busy handing over elements: deepen prefetch or batch earlier so each hand-over carries more",
			 nm);
	} else if (has(nm, "cache")) {
		snprintf(b, n, "%s: reading the cache is the limit: cache in memory instead of a file, or after batch", nm);
	} else {
		snprintf(b, n, "%s runs on one thread (inline) and is saturated: move its work into a parallel map, or put prefetch after it so it overlaps with the consumer",
			 nm);
	}
	(void)s;
}

void stat_analyze(const pf_stats_snap *s, double usd_per_hour, stat_analysis *a)
{
	memset(a, 0, sizeof(*a));
	a->usd_per_hour = usd_per_hour;
	a->file_s = s->updated_ns * 1e-9;
	a->steps = s->steps;
	a->samples = s->samples;
	double loop = (double)s->stall_ns + (double)s->compute_ns;
	a->wall_s = loop > 0 ? loop * 1e-9 : a->file_s;
	a->stall_share = s->steps && loop > 0 ? s->stall_ns / loop : -1;
	a->stall_p50_ms = pf_stats_quantile(s, PF_STATS_H_STALL, 0.50) * 1e-6;
	a->stall_p99_ms = pf_stats_quantile(s, PF_STATS_H_STALL, 0.99) * 1e-6;
	a->step_p50_ms = pf_stats_quantile(s, PF_STATS_H_STEP, 0.50) * 1e-6;
	a->step_p99_ms = pf_stats_quantile(s, PF_STATS_H_STEP, 0.99) * 1e-6;
	a->compute_p50_ms = pf_stats_quantile(s, PF_STATS_H_COMPUTE, 0.50) * 1e-6;
	a->samples_per_s = a->wall_s > 0 ? s->samples / a->wall_s : 0;
	a->usd_per_msample = a->samples_per_s > 0
		? usd_per_hour / 3600.0 / a->samples_per_s * 1e6 : NAN;
	if (a->stall_share < 0)
		a->verdict = V_UNKNOWN;
	else if (a->stall_share < STAT_MODERATE)
		a->verdict = V_NOT;
	else if (a->stall_share < STAT_HIGH)
		a->verdict = V_MODERATE;
	else
		a->verdict = V_HIGH;

	/* stage rates over the span the stages were sampled */
	double span = a->file_s;
	if (s->nsamples >= 2) {
		double t = (s->samples_ts[s->nsamples - 1].t_ns - s->samples_ts[0].t_ns) * 1e-9;
		double t_end = s->samples_ts[s->nsamples - 1].t_ns * 1e-9;
		span = t_end > 0 ? t_end : t;
	}
	if (!(span > 0))
		span = 1e-9;
	double total_busy = 0;
	a->nops = s->nstages;
	for (int i = 0; i < s->nstages; i++)
		total_busy += (double)s->stages[i].now.busy_ns;
	a->busiest = -1;
	for (int i = 0; i < s->nstages; i++) {
		const pf_stats_stage *st = &s->stages[i];
		stat_op *o = &a->ops[i];
		int par = st->now.parallelism > 0 ? st->now.parallelism : 1;
		double cap = span * par * 1e9;
		o->name = st->name;
		o->parallelism = st->now.parallelism;
		o->depth = st->now.depth;
		o->autotuned = st->autotuned;
		o->rate = st->now.elements / span;
		o->self_s = st->now.busy_ns * 1e-9;
		/* shares of the stage's thread time; the counters start with
		 * the iterator, a little before the file: clamp to 1 */
		o->util = fmin(1.0, st->now.busy_ns / cap);
		o->wait_share = fmin(1.0, st->now.wait_ns / cap);
		o->blocked_share = fmin(1.0, st->now.blocked_ns / cap);
		/* a hostile file may hold any number here: keep it finite */
		o->occupancy = isfinite(st->occupancy) && st->occupancy >= 0 ? st->occupancy : -1;
		o->fill = st->now.depth > 0 && o->occupancy >= 0
			? fmin(1.0, o->occupancy / st->now.depth) : -1;
		o->input_share = total_busy > 0 ? st->now.busy_ns / total_busy : 0;
		if (a->busiest < 0 || o->util > a->ops[a->busiest].util)
			a->busiest = i;
	}
	a->startup_ms = s->first_stall_ns * 1e-6;
	double first = s->first_stall_ns < s->stall_ns ? (double)s->first_stall_ns : (double)s->stall_ns;
	a->steady_stall_share = loop - first > 0 ? (s->stall_ns - first) / (loop - first) : 0;
	if (a->verdict == V_UNKNOWN)
		a->bottleneck = B_UNKNOWN;
	else if (a->verdict == V_NOT)
		a->bottleneck = B_CONSUMER;
	else if (a->steady_stall_share < STAT_MODERATE)
		a->bottleneck = B_STARTUP;
	else if (a->nops && a->ops[a->nops - 1].blocked_share >= 0.5)
		a->bottleneck = B_FEED;
	else if (a->busiest >= 0 && a->ops[a->busiest].util >= STAT_SATURATED)
		a->bottleneck = a->busiest;
	else
		a->bottleneck = B_BURSTS;
	suggest(s, a);
}
