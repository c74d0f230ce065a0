/*
 * train_sweep.c - pipe-train --sweep: each batch size in its own child
 * process, a table of throughput, latency, device busy share, stall and peak
 * memory, the knee marked, and an optional SVG chart.
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "pf_model.h"
#include "svg_chart.h"
#include "train.h"

typedef struct sweep_row {
	int batch, ok;
	double busy, p50_ms, p99_ms, sps, stall, peak_mib;
} sweep_row;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile of v[0..n) (sorts v): the smallest value with at least
 * q * n values at or below it. */
static double quantile(double *v, int n, double q)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	int i = (int)ceil(q * n) - 1;
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/*
 * One point of the sweep, in a child process (so that the peak RSS is this
 * batch size's own): build the pipeline and the model for batch B, take a
 * few warm-up steps, then o->sweep_steps measured steps.  Each measured step
 * is synchronised (the step's latency is the wait for the batch plus the
 * device's time on it, not just the time to enqueue it), so the compute
 * busy share is device time over wall time.
 */
static void sweep_point(const opts *o0, int B, sweep_row *r)
{
	opts o = *o0;
	o.batch = B;
	pf_error err = { 0 };
	int with_model = strcmp(o.model, "none") != 0, warm = 3, n = o.sweep_steps;
	pf_model_cfg mc = { .max_batch = B, .seed = o.seed, .lr = (float)o.lr,
			    .use_graph = o.graph, .epilogue_off = o.epilogue_off };
	if (with_model && pf_model_parse(&mc, o.model, &err) < 0)
		die("--model", &err);
	double *step = calloc((size_t)n, sizeof(double));
	if (!step) {
		fprintf(stderr, "pipe-train: out of memory\n");
		exit(1);
	}
	pf_iter *it;
	pf_device *dev = NULL;
	pf_stream *cs = NULL;
	pf_model *m = NULL;
	pf_devfeed *f = NULL;
	pf_device_opts dopt = { .tf32 = o.tf32 };
	if (with_model && (pf_device_open(&dev, o.device, &dopt, &err) < 0 ||
			   pf_stream_new(dev, &cs, &err) < 0 ||
			   pf_model_new(&m, dev, &mc, &err) < 0))
		die("device", &err);
	pf_pipeline *p = build(&o, (const char *const *)o.shards, o.nshards, 1, dev);
	if (pf_iter_new(&it, p, &err) < 0)
		die("iterator", &err);
	if (with_model) {
		pf_devfeed_opts fo = { .depth = o.depth, .pinned_batches = 1,
				       .zero_copy = !o.zero_copy_off };
		if (pf_devfeed_new(&f, dev, it, cs, &fo, &err) < 0)
			die("device", &err);
	}
	feed_input tin = { .img = -1, .lab = -1 };
	double sum_stall = 0, sum_comp = 0, sum_step = 0;
	uint64_t samples = 0;
	for (int k = 0; k < warm + n;) {
		double t0 = now_s(), t1;
		uint32_t rows;
		int rc;
		if (with_model) {
			pf_devbatch b;
			rc = pf_devfeed_next(f, &b, &err);
			t1 = now_s();
			if (rc == PF_END)
				continue;
			if (rc < 0)
				die("training input", &err);
			bind_input(&tin, &b, mc.sizes[0]);
			if (pf_model_train_step(m, cs, &tin.in, &err) < 0)
				die("train step", &err);
			rows = b.batch;
			if (pf_devfeed_release(f, &b, &err) < 0 ||
			    pf_stream_sync(dev, cs, &err) < 0)
				die("device", &err);
		} else {
			pf_elem e;
			rc = pf_iter_next(it, &e, &err);
			t1 = now_s();
			if (rc == PF_END)
				continue;
			if (rc < 0)
				die("pipeline", &err);
			rows = e.batch ? e.batch : 1;
			pf_elem_release(&e);
		}
		double t2 = now_s();
		if (k >= warm) {
			int i = k - warm;
			step[i] = t2 - t0;
			sum_stall += t1 - t0;
			sum_comp += t2 - t1;
			sum_step += t2 - t0;
			samples += rows;
		}
		k++;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	r->batch = B;
	r->ok = 1;
	r->busy = sum_step > 0 ? sum_comp / sum_step : 0;
	r->stall = sum_step > 0 ? sum_stall / sum_step : 0;
	r->sps = sum_step > 0 ? samples / sum_step : 0;
	r->p50_ms = quantile(step, n, 0.50) * 1e3;
	r->p99_ms = quantile(step, n, 0.99) * 1e3;
	r->peak_mib = ru.ru_maxrss / 1024.0;
	pf_devfeed_free(f);
	pf_iter_free(it);
	pf_pipeline_free(p);
	pf_model_free(m);
	if (cs)
		pf_stream_free(dev, cs);
	pf_device_close(dev);
	free(step);
}

/* The knee: the smallest batch within 10% of the best throughput whose p99
 * meets the SLO (any p99 without one); -1 when none qualifies. */
static int sweep_knee(const opts *o, const sweep_row *r, int n)
{
	double best = 0;
	int knee = -1;
	for (int i = 0; i < n; i++)
		if (r[i].ok && r[i].sps > best)
			best = r[i].sps;
	for (int i = 0; i < n; i++) {
		if (!r[i].ok || r[i].sps < 0.9 * best)
			continue;
		if (o->slo_ms > 0 && r[i].p99_ms > o->slo_ms)
			continue;
		if (knee < 0 || r[i].batch < r[knee].batch)
			knee = i;
	}
	return knee;
}

static int sweep_svg(const opts *o, const sweep_row *r, int n, int knee)
{
	double x[SWEEP_MAX], sps[SWEEP_MAX], p50[SWEEP_MAX], p99[SWEEP_MAX];
	for (int i = 0; i < n; i++) {
		x[i] = r[i].batch;
		sps[i] = r[i].ok ? r[i].sps : NAN;
		p50[i] = r[i].ok ? r[i].p50_ms : NAN;
		p99[i] = r[i].ok ? r[i].p99_ms : NAN;
	}
	svg_series s_sps = { "samples/s", (size_t)n, x, sps };
	svg_series s_lat[2] = { { "p50 ms", (size_t)n, x, p50 },
				{ "p99 ms", (size_t)n, x, p99 } };
	double mark = knee >= 0 ? r[knee].batch : NAN;
	svg_panel pn[2] = {
		{ "throughput", "batch size", "samples/s", 1, &s_sps, 1, mark, "knee" },
		{ "step latency", "batch size", "ms", 2, s_lat, 1, mark, "knee" },
	};
	FILE *f = fopen(o->svg, "w");
	if (!f) {
		perror(o->svg);
		return -1;
	}
	int rc = svg_write(f, "pipe-train batch-size sweep", 2, pn);
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/*
 * --sweep: each batch size in a child process (its own peak memory), the
 * row sent back through a pipe; then the table (or JSON) with the knee.
 */
int run_sweep(const opts *o)
{
	sweep_row rows[SWEEP_MAX];
	int failed = 0;
	for (int i = 0; i < o->nsweep; i++) {
		int fd[2];
		sweep_row r = { .batch = o->sweep[i] };
		if (pipe(fd) < 0) {
			perror("pipe-train: pipe");
			return 1;
		}
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0) {
			perror("pipe-train: fork");
			return 1;
		}
		if (pid == 0) {
			sweep_row cr = { 0 };
			close(fd[0]);
			sweep_point(o, o->sweep[i], &cr);
			_exit(write(fd[1], &cr, sizeof(cr)) == (ssize_t)sizeof(cr) ? 0 : 1);
		}
		close(fd[1]);
		ssize_t k = read(fd[0], &r, sizeof(r));
		close(fd[0]);
		int st = 0;
		waitpid(pid, &st, 0);
		if (k != (ssize_t)sizeof(r) || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "pipe-train: sweep: batch %d failed\n", o->sweep[i]);
			r = (sweep_row){ .batch = o->sweep[i] };
			failed = 1;
		}
		rows[i] = r;
	}
	int knee = sweep_knee(o, rows, o->nsweep);
	if (o->json) {
		printf("{\"model\":\"%s\",\"device\":\"%s\",\"steps\":%d,\"slo_ms\":%g,\"sweep\":[",
		       o->model, o->device, o->sweep_steps, o->slo_ms);
		for (int i = 0; i < o->nsweep; i++) {
			const sweep_row *r = &rows[i];
			printf("%s{\"batch\":%d,\"ok\":%s,\"busy\":%.4f,\"p50_ms\":%.3f,"
			       "\"p99_ms\":%.3f,\"samples_per_sec\":%.1f,\"stall_share\":%.4f,"
			       "\"peak_mib\":%.1f}",
			       i ? "," : "", r->batch, r->ok ? "true" : "false", r->busy,
			       r->p50_ms, r->p99_ms, r->sps, r->stall, r->peak_mib);
		}
		if (knee >= 0)
			printf("],\"knee\":%d}\n", rows[knee].batch);
		else
			printf("],\"knee\":null}\n");
	} else {
		printf("%7s %6s %9s %9s %12s %7s %9s\n", "batch", "busy", "p50 ms",
		       "p99 ms", "samples/s", "stall", "peak MiB");
		for (int i = 0; i < o->nsweep; i++) {
			const sweep_row *r = &rows[i];
			if (!r->ok) {
				printf("%7d  (failed)\n", r->batch);
				continue;
			}
			printf("%7d %5.1f%% %9.3f %9.3f %12.0f %6.2f%% %9.1f%s\n",
			       r->batch, 100 * r->busy, r->p50_ms, r->p99_ms, r->sps,
			       100 * r->stall, r->peak_mib, i == knee ? "  <- knee" : "");
		}
		if (knee >= 0)
			printf("knee: batch %d (within 10%% of the best throughput%s)\n",
			       rows[knee].batch, o->slo_ms > 0 ? ", p99 within the SLO" : "");
		else
			printf("knee: none (no batch size within 10%% of the best throughput meets p99 <= %g ms)\n",
			       o->slo_ms);
	}
	if (o->svg && sweep_svg(o, rows, o->nsweep, knee) < 0)
		failed = 1;
	return failed;
}

/* "1,8,32": the sweep's batch sizes; -1 on a malformed list. */
int parse_sweep(opts *o, const char *s)
{
	char *end;
	o->nsweep = 0;
	for (;;) {
		long v = strtol(s, &end, 10);
		if (end == s || v < 1 || v > (1 << 16) || o->nsweep == SWEEP_MAX)
			return -1;
		o->sweep[o->nsweep++] = (int)v;
		if (*end == '\0')
			return 0;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}
