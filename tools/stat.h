/*
 * stat.h - pipe-stat's pieces: the analysis of a stats snapshot (verdict,
 * bottleneck, per-op table, suggestion) and its outputs (text report,
 * JSON, Chrome trace, SVG).  Internal to tools/; the file format and its
 * reader are pipeline/pf_stats.h.
 */
#ifndef PF_TOOLS_STAT_H
#define PF_TOOLS_STAT_H

#include <stdio.h>

#include "pf_stats.h"

/* TF Profiler's scale for the stall share. */
#define STAT_MODERATE 0.05
#define STAT_HIGH 0.20

enum stat_verdict { V_UNKNOWN = 0, V_NOT = 1, V_MODERATE = 2, V_HIGH = 3 };

/* Where the time goes when it is not one stage (stat_analysis.bottleneck). */
enum stat_where {
	B_UNKNOWN = -1,             /* no consumer steps recorded */
	B_CONSUMER = -2,            /* not input-bound: the model sets the pace */
	B_STARTUP = -3,             /* input-bound only by the wait for the first batch */
	B_BURSTS = -4,              /* input-bound, no stage saturated: jitter */
	B_FEED = -5,                /* input-bound though the pipeline's last stage is
				     * mostly blocked (it is ahead): the wait is
				     * after it, in the device feed / copy */
};

/* Threads at least this busy are saturated. */
#define STAT_SATURATED 0.5


typedef struct stat_op {
	const char *name;           /* points into the snapshot */
	double rate;                /* elements (or batches) per second */
	double self_s;              /* busy (self) seconds */
	double util;                /* busy / (wall * parallelism): 1 = saturated */
	double input_share;         /* share of all stages' self time */
	double wait_share;          /* waiting on input / (wall * parallelism) */
	double blocked_share;       /* blocked on output / (wall * parallelism) */
	int parallelism, depth, autotuned;
	double occupancy;           /* mean elements buffered (sampled) */
	double fill;                /* occupancy / depth, -1 when no buffer */
} stat_op;

typedef struct stat_analysis {
	double wall_s;              /* the consumer loop's time (or the file's span) */
	double file_s;              /* since the file was created */
	uint64_t steps, samples;
	double stall_share;         /* -1 when no step was recorded */
	double stall_p50_ms, stall_p99_ms, step_p50_ms, step_p99_ms, compute_p50_ms;
	double samples_per_s;
	double usd_per_hour, usd_per_msample;
	int verdict;
	int nops;
	stat_op ops[PF_STATS_MAX_STAGES];
	double startup_ms;          /* the first step's stall */
	double steady_stall_share;  /* the stall share without the first step */
	int busiest;                /* stage with the highest util, -1 if none */
	int bottleneck;             /* a stage, or one of enum stat_where */
	char suggestion[512];
} stat_analysis;

/* Analyse s (never fails: odd figures give odd but finite numbers). */
void stat_analyze(const pf_stats_snap *s, double usd_per_hour, stat_analysis *a);

const char *stat_verdict_name(int v);

/* "consumer", "start-up", "bursts", "unknown" or the stage's name. */
const char *stat_bottleneck_name(const stat_analysis *a);

/* Outputs; each returns 0 or -1 when writing failed. */
int stat_report(FILE *f, const pf_stats_snap *s, const stat_analysis *a);
/* A serving run (stat_serve.c): its "serving" event, else NULL; the report
 * that stat_report prints for it instead of the stage table; its JSON
 * member ("serving": {...} or null, with the comma after it). */
const pf_stats_eventrec *stat_serving(const pf_stats_snap *s);
int stat_serve_report(FILE *f, const pf_stats_snap *s, const stat_analysis *a,
		      const pf_stats_eventrec *mk);
void stat_serve_json(FILE *f, const pf_stats_snap *s);
int stat_json(FILE *f, const pf_stats_snap *s, const stat_analysis *a);
int stat_trace(FILE *f, const pf_stats_snap *s);
int stat_svg(FILE *f, const pf_stats_snap *s);

/* pipe-stat FILE FILE.rank1 ...: the ranks' table, the straggler, what
 * holds it back and what waiting for it costs (stat_ranks.c); text or
 * JSON on stdout.  Returns the exit status. */
int stat_ranks(int n, char **paths, int json);

/* A JSON string literal of at most max bytes of str (bytes >= 0x80 and
 * control characters escaped as \u00XX, so the output is always valid). */
void stat_json_str(FILE *f, const char *str, size_t max);

#endif /* PF_TOOLS_STAT_H */
