/*
 * pipe-stat - where the time of a pipefeed run went, from its stats file
 * (pipe-train --stats FILE, or pf_stats_create in any program).
 *
 *   pipe-stat run.pfstat                     report: stall, verdict, per-op table,
 *                                            bottleneck, suggestion, knobs, cost
 *   pipe-stat --watch run.pfstat             refresh while the run goes on
 *   pipe-stat --json run.pfstat              the report as one JSON object
 *   pipe-stat --trace t.json --svg s.svg run.pfstat
 *
 * Exit status: 0 on success, 1 when the file cannot be read (missing,
 * truncated, corrupt, foreign, newer version) or an output cannot be
 * written, 2 on a usage error.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stat.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipe-stat [options] STATSFILE\n"
		"       pipe-stat [--json] FILE FILE.rank1 ...   the ranks of one run:\n"
		"                      per-rank stall, all-reduce wait and compute, the straggler\n"
		"  --json              the report as one JSON object (with --watch: one per refresh)\n"
		"  --trace OUT.json    Chrome trace events (chrome://tracing, Perfetto)\n"
		"  --svg OUT.svg       stall share and per-stage throughput over time\n"
		"  --watch             refresh until the run finishes (Ctrl-C stops)\n"
		"  --interval S        seconds between refreshes (1)\n"
		"  --usd-per-hour X    machine price for the cost per million samples (3.0)\n"
		"  --help\n");
}

static volatile sig_atomic_t stop;
static void on_int(int sig)
{
	(void)sig;
	stop = 1;
}

static int write_file(const char *path, const pf_stats_snap *s,
		      int (*fn)(FILE *, const pf_stats_snap *))
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "pipe-stat: %s: cannot create: ", path);
		perror(NULL);
		return 1;
	}
	int rc = fn(f, s);
	if (fclose(f) != 0 || rc != 0) {
		fprintf(stderr, "pipe-stat: %s: write error\n", path);
		return 1;
	}
	return 0;
}

static int outputs(const pf_stats_snap *s, int json, double usd, const char *trace,
		   const char *svg)
{
	stat_analysis a;
	stat_analyze(s, usd, &a);
	if (json)
		stat_json(stdout, s, &a);
	else
		stat_report(stdout, s, &a);
	fflush(stdout);
	int rc = 0;
	if (trace)
		rc |= write_file(trace, s, stat_trace);
	if (svg)
		rc |= write_file(svg, s, stat_svg);
	return rc;
}

int main(int argc, char **argv)
{
	enum { O_JSON = 256, O_TRACE, O_SVG, O_WATCH, O_INTERVAL, O_USD };
	static const struct option lo[] = {
		{ "json", 0, 0, O_JSON }, { "trace", 1, 0, O_TRACE }, { "svg", 1, 0, O_SVG },
		{ "watch", 0, 0, O_WATCH }, { "interval", 1, 0, O_INTERVAL },
		{ "usd-per-hour", 1, 0, O_USD }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
	};
	int json = 0, watch = 0, c;
	double usd = 3.0, interval = 1.0;
	const char *trace = NULL, *svg = NULL;
	char *end;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_JSON: json = 1; break;
		case O_TRACE: trace = optarg; break;
		case O_SVG: svg = optarg; break;
		case O_WATCH: watch = 1; break;
		case O_INTERVAL:
			interval = strtod(optarg, &end);
			if (*end || !(interval >= 0.05 && interval <= 3600)) {
				fprintf(stderr, "pipe-stat: --interval: expected 0.05..3600 seconds, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_USD:
			usd = strtod(optarg, &end);
			if (*end || !(usd >= 0 && usd < 1e6)) {
				fprintf(stderr, "pipe-stat: --usd-per-hour: expected a price >= 0, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind > 1 && !watch && !trace && !svg)
		return stat_ranks(argc - optind, argv + optind, json);
	if (optind != argc - 1) {
		fprintf(stderr, "pipe-stat: expected one stats file (several: the ranks of one run, "
			"without --watch, --trace or --svg)\n");
		usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	pf_error err = { 0 };
	pf_stats_snap *s;
	if (!watch) {
		if (pf_stats_read_file(&s, path, &err) < 0) {
			fprintf(stderr, "pipe-stat: %s\n", err.msg);
			return 1;
		}
		int rc = outputs(s, json, usd, trace, svg);
		pf_stats_snap_free(s);
		return rc;
	}

	/* --watch: refresh until the writer marks the file finished.  A file
	 * that does not exist yet, or is being created, is waited for. */
	signal(SIGINT, on_int);
	int tty = isatty(1), rc = 0;
	uint64_t last_update = 0;
	double stale_since = 0, stale_limit = 30;
	while (!stop) {
		pf_error_clear(&err);
		int r = pf_stats_read_file(&s, path, &err);
		if (r == PF_ENOENT || r == PF_ETRUNC || r == PF_ESTATE) {
			fprintf(stderr, "pipe-stat: waiting: %s\n", err.msg);
		} else if (r < 0) {
			fprintf(stderr, "pipe-stat: %s\n", err.msg);
			return 1;
		} else {
			if (tty && !json)
				fputs("\033[H\033[2J", stdout);
			else if (!json)
				fputs("----\n", stdout);
			int fin = s->finished;
			/* a writer that died leaves a running file that never
			 * changes again: give up after stale_limit seconds */
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			double t = now.tv_sec + now.tv_nsec * 1e-9;
			if (s->updated_ns != last_update || !stale_since) {
				last_update = s->updated_ns;
				stale_since = t;
			} else if (!fin && t - stale_since > stale_limit) {
				fprintf(stderr, "pipe-stat: %s: no update for %.0f s: the run seems to have stopped without closing its stats file\n",
					path, t - stale_since);
				pf_stats_snap_free(s);
				return 1;
			}
			/* the trace and SVG are written once, at the end */
			rc = outputs(s, json, usd, fin ? trace : NULL, fin ? svg : NULL);
			pf_stats_snap_free(s);
			if (fin)
				return rc;
		}
		struct timespec ts = { (time_t)interval,
				       (long)((interval - (time_t)interval) * 1e9) };
		nanosleep(&ts, NULL);
	}
	return rc;
}
