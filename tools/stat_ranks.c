/*
 * stat_ranks.c - pipe-stat over the stats files of a run's ranks
 * (pipe-train --stats FILE over mpirun writes FILE on rank 0 and
 * FILE.rankR on rank R): per rank its steps, wall time, input stall,
 * all-reduce wait (the "allreduce_wait" consumer event pipe-train records
 * at the end) and the rest (compute); the straggler, what holds it back,
 * and what waiting for it costs the others.
 *
 * The straggler is the rank that waits least in the all-reduces: every
 * other rank waits there for it.  When the waits differ by less than 5%
 * of the wall time, no rank holds the others back.  It is held back by its
 * input when its stall exceeds the others' mean by more than its compute
 * does, else by its compute.  The cost is the others' mean wait beyond the
 * straggler's own (which is the all-reduce itself).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stat.h"

typedef struct rank_row {
	const char *path;
	int rank;
	uint64_t steps, samples;
	double wall_s, stall_s, wait_s, compute_s;
	int has_wait;
} rank_row;

/* The rank a path names: FILE.rankR is R, FILE alone is 0. */
static int rank_of(const char *path, int fallback)
{
	const char *p = strrchr(path, '.');
	if (p && !strncmp(p, ".rank", 5) && p[5]) {
		char *end;
		long r = strtol(p + 5, &end, 10);
		if (!*end && r >= 0 && r < 1 << 20)
			return (int)r;
	}
	return fallback;
}

static int read_row(const char *path, int fallback, rank_row *r)
{
	pf_error err = { 0 };
	pf_stats_snap *s;
	if (pf_stats_read_file(&s, path, &err) < 0) {
		fprintf(stderr, "pipe-stat: %s\n", err.msg);
		return -1;
	}
	stat_analysis a;
	stat_analyze(s, 0, &a);
	memset(r, 0, sizeof(*r));
	r->path = path;
	r->rank = rank_of(path, fallback);
	r->steps = a.steps;
	r->samples = a.samples;
	r->wall_s = a.wall_s;
	r->stall_s = a.stall_share > 0 ? a.stall_share * a.wall_s : 0;
	for (size_t i = 0; i < s->nevents; i++) {
		const pf_stats_eventrec *e = &s->events[i];
		if (e->stage < 0 && !strcmp(e->knob, "allreduce_wait")) {
			r->wait_s = e->new_value * 1e-9;
			r->has_wait = 1;
			if (e->old_value >= 0)
				r->rank = (int)e->old_value;
		}
	}
	r->compute_s = r->wall_s - r->stall_s - r->wait_s;
	if (r->compute_s < 0)
		r->compute_s = 0;
	pf_stats_snap_free(s);
	return 0;
}

/* The analysis of rows[0..n): the straggler (-1: none) and the rest. */
typedef struct rank_verdict {
	int straggler;        /* index into rows, -1 when balanced */
	const char *by;       /* "input" or "compute" */
	double excess_s;      /* the straggler's stall or compute beyond the others' mean */
	double cost_s, cost_share, spread_s;
} rank_verdict;

static void judge(const rank_row *rows, int n, rank_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->straggler = -1;
	int lo = 0, hi = 0;
	double wall = 0;
	for (int i = 0; i < n; i++) {
		if (rows[i].wait_s < rows[lo].wait_s)
			lo = i;
		if (rows[i].wait_s > rows[hi].wait_s)
			hi = i;
		wall += rows[i].wall_s / n;
	}
	v->spread_s = rows[hi].wait_s - rows[lo].wait_s;
	if (n < 2 || wall <= 0 || v->spread_s < 0.05 * wall)
		return;
	v->straggler = lo;
	double stall = 0, comp = 0, cost = 0;
	for (int i = 0; i < n; i++) {
		if (i == lo)
			continue;
		stall += rows[i].stall_s / (n - 1);
		comp += rows[i].compute_s / (n - 1);
		cost += (rows[i].wait_s - rows[lo].wait_s) / (n - 1);
	}
	double ds = rows[lo].stall_s - stall, dc = rows[lo].compute_s - comp;
	v->by = ds > dc ? "input" : "compute";
	v->excess_s = ds > dc ? ds : dc;
	v->cost_s = cost;
	v->cost_share = wall > 0 ? cost / wall : 0;
}

static void report_text(const rank_row *rows, int n, const rank_verdict *v)
{
	printf("ranks:       %d stats files\n", n);
	printf(" rank    steps   samples   wall s  stall s  all-reduce wait s  compute s  file\n");
	for (int i = 0; i < n; i++)
		printf(" %4d %8llu %9llu %8.3f %8.3f %18.3f %10.3f  %s%s\n", rows[i].rank,
		       (unsigned long long)rows[i].steps, (unsigned long long)rows[i].samples,
		       rows[i].wall_s, rows[i].stall_s, rows[i].wait_s, rows[i].compute_s,
		       rows[i].path, rows[i].has_wait ? "" : " (no all-reduce recorded)");
	if (v->straggler < 0) {
		printf("straggler:   none: the ranks' all-reduce waits differ by %.3f s, under 5%% of the wall time\n",
		       v->spread_s);
		return;
	}
	const rank_row *s = &rows[v->straggler];
	printf("straggler:   rank %d: the others wait for it in the all-reduces\n", s->rank);
	if (!strcmp(v->by, "input"))
		printf("held back:   by its input: it stalls %.3f s more than the others' mean "
		       "(pipe-stat %s names the stage)\n", v->excess_s, s->path);
	else
		printf("held back:   by its compute: %.3f s more than the others' mean "
		       "(a slower core or device, or other work on its host)\n", v->excess_s);
	printf("cost:        the others wait %.3f s each for it, %.1f%% of the run\n", v->cost_s,
	       100 * v->cost_share);
}

static void report_json(const rank_row *rows, int n, const rank_verdict *v)
{
	printf("{\"ranks\":[");
	for (int i = 0; i < n; i++) {
		printf("%s{\"rank\":%d,\"file\":", i ? "," : "", rows[i].rank);
		stat_json_str(stdout, rows[i].path, 4096);
		printf(",\"steps\":%llu,\"samples\":%llu,\"wall_s\":%.6f,\"stall_s\":%.6f,"
		       "\"allreduce_wait_s\":%.6f,\"compute_s\":%.6f}",
		       (unsigned long long)rows[i].steps, (unsigned long long)rows[i].samples,
		       rows[i].wall_s, rows[i].stall_s, rows[i].wait_s, rows[i].compute_s);
	}
	if (v->straggler < 0)
		printf("],\"straggler\":null,\"held_back_by\":null,\"wait_cost_s\":0,"
		       "\"wait_cost_share\":0,\"wait_spread_s\":%.6f}\n", v->spread_s);
	else
		printf("],\"straggler\":%d,\"held_back_by\":\"%s\",\"excess_s\":%.6f,"
		       "\"wait_cost_s\":%.6f,\"wait_cost_share\":%.6f,\"wait_spread_s\":%.6f}\n",
		       rows[v->straggler].rank, v->by, v->excess_s, v->cost_s, v->cost_share,
		       v->spread_s);
}

int stat_ranks(int n, char **paths, int json)
{
	rank_row *rows = calloc((size_t)n, sizeof(*rows));
	if (!rows) {
		fprintf(stderr, "pipe-stat: out of memory\n");
		return 1;
	}
	for (int i = 0; i < n; i++)
		if (read_row(paths[i], i, &rows[i]) < 0) {
			free(rows);
			return 1;
		}
	rank_verdict v;
	judge(rows, n, &v);
	if (json)
		report_json(rows, n, &v);
	else
		report_text(rows, n, &v);
	free(rows);
	return fflush(stdout) ? 1 : 0;
}
