/*
 * pipe-train - train a model on shards fed by a pipefeed pipeline, with the
 * batches prefetched to the device on a copy stream (pf_devfeed), and report
 * where the time went: images/s and the stall share (the loop's wait for its
 * next batch, host and device, over the loop's wall time).
 *
 *   pipe-train --epochs 5 --eval 'test-*.pfs' 'train-*.pfs'
 *   pipe-train --pipeline 'map(decode, par=4) | shuffle(10000) | batch(64)' ...
 *   pipe-train --model none ...        the pipeline alone (throughput)
 *   pipe-train --stats run.pfstat ...  record stats for pipe-stat while training
 *   pipe-train --sweep 1,8,32,64,128,256 --slo-ms 20 ...
 *                                      batch-size sweep: throughput, latency,
 *                                      device busy share, stall, peak memory;
 *                                      marks the knee
 *
 * Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "pf_model.h"
#include "pf_spec.h"
#include "pf_stats.h"
#include "pipefeed.h"
#include "svg_chart.h"

#define SWEEP_MAX 32

typedef struct opts {
	const char *pipeline, *eval_pipeline, *model, *device, *eval, *save, *cache;
	int cache_on, batch, shuffle, map_threads, read_threads, prefetch, depth, graph;
	int epochs, json, quiet;
	double lr;
	uint64_t seed;
	char **shards;
	int nshards;
	const char *stats, *svg;       /* --stats FILE, --svg FILE (sweep) */
	char label[256];               /* the command line, for the stats file */
	int sweep[SWEEP_MAX], nsweep, sweep_steps;
	double slo_ms;                 /* 0: no SLO */
} opts;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipe-train [options] SHARDS...\n"
		"  --pipeline SPEC     pipeline after the shards source (pf_spec.h syntax);\n"
		"                      replaces the flags below; may start with its own source\n"
		"  --batch N           batch size (64)\n"
		"  --shuffle N         shuffle buffer, 0 = off (10000)\n"
		"  --cache[=PATH]      cache decoded samples (in memory, or in PATH)\n"
		"  --map-threads N     decode threads (auto)\n"
		"  --read-threads N    shard read + decompress threads (auto: the CPUs)\n"
		"  --prefetch N        host prefetch depth (auto)\n"
		"  --depth N           device prefetch slots (auto: 8 on cpu, 3 on cuda;\n"
		"                      2 = double buffering)\n"
		"  --model SPEC        mlp:784-128-10 (default) or none (pipeline alone)\n"
		"  --epochs N          epochs (5)\n"
		"  --lr X              Adam learning rate (0.001)\n"
		"  --seed N            seed of shuffling and init (1)\n"
		"  --device KIND       auto (default), cpu or cuda\n"
		"  --graph             capture the training step as a CUDA graph\n"
		"  --eval SHARDS       test shards (a glob), evaluated after each epoch\n"
		"  --eval-pipeline SPEC  pipeline of the test shards (default: decode, batch,\n"
		"                      prefetch); give it when --pipeline preprocesses\n"
		"  --save FILE         checkpoint of the model and optimizer at the end\n"
		"  --json              one JSON object on stdout at the end\n"
		"  --quiet             no progress bar, no epoch lines\n"
		"  --stats FILE        record run statistics in FILE while training (pipe-stat FILE)\n"
		"  --sweep B1,B2,...   batch-size sweep: --steps steps at each size, one table\n"
		"  --steps N           measured steps per batch size in a sweep (50)\n"
		"  --slo-ms X          step latency objective (p99) for the sweep's knee\n"
		"  --svg FILE          draw the sweep (throughput and p99 latency by batch size)\n");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const pf_error *e)
{
	fprintf(stderr, "pipe-train: %s: %s\n", what, e->msg[0] ? e->msg
							  : pf_strerror(e->code));
	exit(1);
}

/* The training or eval pipeline: shards, then --pipeline or the flags.
 * With a device, batches are built straight in its pinned memory (the
 * pipeline must then be freed before the device is closed). */
static pf_pipeline *build(const opts *o, const char *const *files, int nfiles,
			  int train, pf_device *dev)
{
	pf_error err = { 0 };
	pf_options po = { .seed = o->seed };
	if (dev) {
		po.batch_alloc = pf_devfeed_pinned_alloc;
		po.batch_free = pf_devfeed_pinned_free;
		po.alloc_user = dev;
	}
	pf_pipeline *p;
	if (pf_pipeline_new(&p, &po, &err) < 0)
		die("pipeline", &err);
	pf_source_opts so = { .num_parallel_reads = o->read_threads };
	if (nfiles && pf_shards(p, files, (size_t)nfiles, &so, &err) < 0)
		die("shards", &err);
	const char *spec = train ? o->pipeline : o->eval_pipeline;
	if (spec) {
		if (pf_spec_apply(p, spec, &err) < 0)
			die(train ? "--pipeline" : "--eval-pipeline", &err);
		return p;
	}
	pf_map_opts mo = { .num_parallel_calls = o->map_threads };
	if (pf_map(p, "decode", "", &mo, &err) < 0 ||
	    (train && o->cache_on && pf_cache(p, o->cache, 0, &err) < 0) ||
	    (train && o->shuffle > 0 && pf_shuffle(p, o->shuffle, NULL, &err) < 0) ||
	    pf_batch(p, o->batch, 0, &err) < 0 ||
	    pf_prefetch(p, o->prefetch, &err) < 0)
		die("pipeline", &err);
	return p;
}

/*
 * Device slots for --depth auto.  On the cpu backend the copy stream is a
 * thread that must be scheduled between compute steps, and its wake-up
 * jitter shows as stall unless copies run well ahead: 8 slots (measured on
 * Fashion-MNIST at batch 64: 7-8% stall at 2, 5% at 4, 3.5% at 8).  A GPU's
 * copy engine has no such jitter: 3 (double buffering plus one).
 */
static int feed_depth(const opts *o, pf_device *dev)
{
	if (o->depth != PF_AUTOTUNE)
		return o->depth;
	return strcmp(pf_device_kind(dev), "cpu") == 0 ? 8 : 3;
}

/* Image and label fields of a batch schema, or exit with a message. */
static void find_fields(const pf_schema *s, int *img, int *lab)
{
	*img = pf_schema_find(s, "image");
	*lab = pf_schema_find(s, "label");
	for (int i = 0; i < s->nfields; i++) {
		if (*img < 0 && s->fields[i].ndim > 0)
			*img = i;
		if (*lab < 0 && s->fields[i].ndim == 0)
			*lab = i;
	}
	if (*img < 0 || *lab < 0) {
		char txt[512];
		pf_schema_format(s, txt, sizeof(txt));
		fprintf(stderr, "pipe-train: batches (%s) need an array field (image) and a scalar field (label)\n",
			txt);
		exit(1);
	}
}

/*
 * Point the model input at a device batch.  The first batch of a feed fixes
 * its field indices and dtypes (train and eval feeds each have their own:
 * their pipelines may differ, u8 images in one and f32 in the other).
 */
typedef struct feed_input {
	int img, lab;
	pf_model_input in;
} feed_input;

static void bind_input(feed_input *fi, const pf_devbatch *b, int nin)
{
	pf_error err = { 0 };
	if (fi->img < 0) {
		find_fields(b->schema, &fi->img, &fi->lab);
		if (pf_model_input_types(&fi->in, b->schema->fields[fi->img].dtype,
					 b->schema->fields[fi->lab].dtype, &err) < 0)
			die("batch", &err);
		int64_t per = pf_field_count(&b->schema->fields[fi->img]);
		if (per != nin) {
			fprintf(stderr, "pipe-train: model input is %d values but '%s' has %lld per sample\n",
				nin, b->schema->fields[fi->img].name, (long long)per);
			exit(1);
		}
	}
	fi->in.x = b->data[fi->img];
	fi->in.labels = b->data[fi->lab];
	fi->in.rows = (int)b->batch;
}

typedef struct progress {
	int tty, quiet;
	double last;
} progress;

static void show(progress *pg, int epoch, int epochs, uint64_t step,
		 uint64_t steps_per_epoch, double ips, double stall, double eta)
{
	if (!pg->tty || pg->quiet)
		return;
	double t = now_s();
	if (t - pg->last < 0.1)
		return;
	pg->last = t;
	char bar[24] = "";
	if (steps_per_epoch) {
		int filled = (int)(20.0 * step / steps_per_epoch);
		for (int i = 0; i < 20; i++)
			bar[i] = i < filled ? '#' : '.';
		bar[20] = 0;
		fprintf(stderr, "\r epoch %d/%d [%s] %llu/%llu  %.0f img/s  stall %.1f%%  ETA %.0fs   ",
			epoch + 1, epochs, bar, (unsigned long long)step,
			(unsigned long long)steps_per_epoch, ips, 100 * stall, eta);
	} else {
		fprintf(stderr, "\r epoch %d/%d  %llu steps  %.0f img/s  stall %.1f%%   ",
			epoch + 1, epochs, (unsigned long long)step, ips, 100 * stall);
	}
	fflush(stderr);
}

static void clear_progress(progress *pg)
{
	if (pg->tty && !pg->quiet) {
		fprintf(stderr, "\r%80s\r", "");
		fflush(stderr);
	}
}

/* --stats FILE: the stats file, its sampler on it; NULL without --stats. */
static pf_stats *stats_open(const opts *o, pf_iter *it)
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
static void stats_close(pf_stats *st)
{
	pf_error err = { 0 };
	if (st && pf_stats_close(st, &err) < 0)
		die("--stats", &err);
}

/* --model none: run the pipeline alone and report its throughput. */
static int run_pipeline_only(const opts *o, pf_pipeline *p)
{
	pf_error err = { 0 };
	pf_iter *it;
	if (pf_iter_new(&it, p, &err) < 0)
		die("iterator", &err);
	pf_stats *st = stats_open(o, it);
	uint64_t images = 0;
	double t0 = now_s(), wait = 0;
	FILE *out = o->json ? stderr : stdout;
	for (int e = 0; e < o->epochs; e++) {
		double te = now_s();
		uint64_t ei = 0;
		pf_elem b;
		int rc;
		for (;;) {
			double tw = now_s();
			rc = pf_iter_next(it, &b, &err);
			double tn = now_s();
			wait += tn - tw;
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
		images += ei;
		if (!o->quiet)
			fprintf(out, "epoch %d/%d: %llu images, %.0f images/s (pipeline only)\n",
				e + 1, o->epochs, (unsigned long long)ei,
				ei / (now_s() - te));
	}
	double wall = now_s() - t0;
	if (o->json)
		printf("{\"device\":\"none\",\"model\":\"none\",\"epochs\":%d,\"images\":%llu,"
		       "\"wall_s\":%.3f,\"images_per_sec\":%.1f,\"stall_share\":%.4f,"
		       "\"train_loss\":null,\"test_accuracy\":null}\n",
		       o->epochs, (unsigned long long)images, wall, images / wall,
		       wall > 0 ? wait / wall : 0);
	stats_close(st);
	pf_iter_free(it);
	return 0;
}

/* ==== batch-size sweep ==================================================== */

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
			    .use_graph = o.graph };
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
	if (with_model && (pf_device_open(&dev, o.device, NULL, &err) < 0 ||
			   pf_stream_new(dev, &cs, &err) < 0 ||
			   pf_model_new(&m, dev, &mc, &err) < 0))
		die("device", &err);
	pf_pipeline *p = build(&o, (const char *const *)o.shards, o.nshards, 1, dev);
	if (pf_iter_new(&it, p, &err) < 0)
		die("iterator", &err);
	if (with_model) {
		pf_devfeed_opts fo = { .depth = feed_depth(&o, dev), .pinned_batches = 1 };
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
static int run_sweep(const opts *o)
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
static int parse_sweep(opts *o, const char *s)
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

int main(int argc, char **argv)
{
	opts o = { .model = "mlp:784-128-10", .device = "auto", .batch = 64,
		   .shuffle = 10000, .map_threads = PF_AUTOTUNE, .read_threads = PF_AUTOTUNE,
		   .prefetch = PF_AUTOTUNE, .depth = PF_AUTOTUNE, .epochs = 5, .lr = 1e-3,
		   .seed = 1, .sweep_steps = 50 };
	enum { O_PIPE = 256, O_BATCH, O_SHUF, O_CACHE, O_MAPT, O_PREF, O_DEPTH,
	       O_MODEL, O_EPOCHS, O_LR, O_SEED, O_DEV, O_GRAPH, O_EVAL, O_SAVE,
	       O_JSON, O_QUIET, O_STATS, O_SWEEP, O_STEPS, O_SLO, O_SVG, O_EPIPE,
	       O_READT };
	static const struct option lo[] = {
		{ "pipeline", 1, 0, O_PIPE }, { "batch", 1, 0, O_BATCH },
		{ "shuffle", 1, 0, O_SHUF }, { "cache", 2, 0, O_CACHE },
		{ "map-threads", 1, 0, O_MAPT }, { "read-threads", 1, 0, O_READT },
		{ "prefetch", 1, 0, O_PREF },
		{ "depth", 1, 0, O_DEPTH }, { "model", 1, 0, O_MODEL },
		{ "epochs", 1, 0, O_EPOCHS }, { "lr", 1, 0, O_LR },
		{ "seed", 1, 0, O_SEED }, { "device", 1, 0, O_DEV },
		{ "graph", 0, 0, O_GRAPH }, { "eval", 1, 0, O_EVAL },
		{ "save", 1, 0, O_SAVE }, { "json", 0, 0, O_JSON },
		{ "quiet", 0, 0, O_QUIET }, { "stats", 1, 0, O_STATS },
		{ "sweep", 1, 0, O_SWEEP }, { "steps", 1, 0, O_STEPS },
		{ "slo-ms", 1, 0, O_SLO }, { "svg", 1, 0, O_SVG },
		{ "eval-pipeline", 1, 0, O_EPIPE },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
	};
	int c;
	char *end;
#define NUM(dst, lo_, hi_, name)                                                \
	do {                                                                   \
		if (!strcmp(optarg, "auto")) {                                 \
			dst = PF_AUTOTUNE;                                     \
			break;                                                 \
		}                                                              \
		long v_ = strtol(optarg, &end, 10);                            \
		if (*end || v_ < (lo_) || v_ > (hi_)) {                        \
			fprintf(stderr, "pipe-train: --%s: expected %ld..%ld, got '%s'\n", \
				name, (long)(lo_), (long)(hi_), optarg);       \
			return 2;                                              \
		}                                                              \
		dst = (int)v_;                                                 \
	} while (0)
	/* the command line, for the stats file's label */
	for (int i = 0; i < argc; i++) {
		size_t l = strlen(o.label);
		if (l + 2 >= sizeof(o.label))
			break;
		snprintf(o.label + l, sizeof(o.label) - l, "%s%s", i ? " " : "", argv[i]);
	}
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_PIPE: o.pipeline = optarg; break;
		case O_EPIPE: o.eval_pipeline = optarg; break;
		case O_BATCH: NUM(o.batch, 1, 1 << 16, "batch"); break;
		case O_SHUF: NUM(o.shuffle, 0, 1 << 24, "shuffle"); break;
		case O_CACHE: o.cache_on = 1; o.cache = optarg; break;
		case O_MAPT: NUM(o.map_threads, 1, 256, "map-threads"); break;
		case O_READT: NUM(o.read_threads, 1, 256, "read-threads"); break;
		case O_PREF: NUM(o.prefetch, 1, 1024, "prefetch"); break;
		case O_DEPTH: NUM(o.depth, 1, 16, "depth"); break;
		case O_MODEL: o.model = optarg; break;
		case O_EPOCHS: NUM(o.epochs, 1, 100000, "epochs"); break;
		case O_LR:
			o.lr = strtod(optarg, &end);
			if (*end || !(o.lr > 0)) {
				fprintf(stderr, "pipe-train: --lr: expected a positive number, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_SEED: o.seed = strtoull(optarg, &end, 0);
			if (*end) {
				fprintf(stderr, "pipe-train: --seed: expected an integer, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_DEV: o.device = optarg; break;
		case O_GRAPH: o.graph = 1; break;
		case O_EVAL: o.eval = optarg; break;
		case O_SAVE: o.save = optarg; break;
		case O_JSON: o.json = 1; break;
		case O_QUIET: o.quiet = 1; break;
		case O_STATS: o.stats = optarg; break;
		case O_SWEEP:
			if (parse_sweep(&o, optarg) < 0) {
				fprintf(stderr, "pipe-train: --sweep: expected up to %d batch sizes 1..65536 separated by commas, got '%s'\n",
					SWEEP_MAX, optarg);
				return 2;
			}
			break;
		case O_STEPS: NUM(o.sweep_steps, 1, 1000000, "steps"); break;
		case O_SLO:
			o.slo_ms = strtod(optarg, &end);
			if (*end || !(o.slo_ms > 0)) {
				fprintf(stderr, "pipe-train: --slo-ms: expected a positive number, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_SVG: o.svg = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (o.batch == PF_AUTOTUNE || o.shuffle == PF_AUTOTUNE || o.epochs == PF_AUTOTUNE ||
	    o.sweep_steps == PF_AUTOTUNE) {
		fprintf(stderr, "pipe-train: --batch, --shuffle, --epochs and --steps take numbers, not auto\n");
		return 2;
	}
	if (o.nsweep && (o.pipeline || o.stats || o.eval || o.save)) {
		fprintf(stderr, "pipe-train: --sweep sets the batch size itself: it does not combine with --pipeline, --stats, --eval or --save\n");
		return 2;
	}
	if (!o.nsweep && (o.slo_ms > 0 || o.svg)) {
		fprintf(stderr, "pipe-train: --slo-ms and --svg belong to --sweep\n");
		return 2;
	}
	if (o.eval_pipeline && !o.eval) {
		fprintf(stderr, "pipe-train: --eval-pipeline needs --eval\n");
		return 2;
	}
	o.shards = argv + optind;
	o.nshards = argc - optind;
	if (o.nshards == 0 && !o.pipeline) {
		fprintf(stderr, "pipe-train: no shards given\n");
		usage(stderr);
		return 2;
	}
	pf_error err = { 0 };
	pf_model_cfg mc = { .max_batch = o.batch, .seed = o.seed, .lr = (float)o.lr,
			    .use_graph = o.graph };
	int with_model = strcmp(o.model, "none") != 0;
	if (with_model && pf_model_parse(&mc, o.model, &err) < 0) {
		fprintf(stderr, "pipe-train: --model: %s\n", err.msg);
		return 2;
	}
	if (o.nsweep)
		return run_sweep(&o);
	FILE *out = o.json ? stderr : stdout;
	if (!with_model) {
		pf_pipeline *np = build(&o, (const char *const *)o.shards, o.nshards, 1, NULL);
		int rc = run_pipeline_only(&o, np);
		pf_pipeline_free(np);
		return rc;
	}

	pf_device *dev;
	if (pf_device_open(&dev, o.device, NULL, &err) < 0)
		die("--device", &err);
	pf_pipeline *tp = build(&o, (const char *const *)o.shards, o.nshards, 1, dev);
	if (pf_device_note(dev)[0] && !o.quiet)
		fprintf(stderr, "pipe-train: %s\n", pf_device_note(dev));
	pf_stream *cs;
	pf_model *m;
	if (pf_stream_new(dev, &cs, &err) < 0)
		die("stream", &err);
	/* with --pipeline the batch size is the spec's: size the model for
	 * the largest batch it can see */
	if (o.pipeline && mc.max_batch < 4096)
		mc.max_batch = 4096;
	if (pf_model_new(&m, dev, &mc, &err) < 0)
		die("model", &err);

	pf_iter *tit, *eit = NULL;
	if (pf_iter_new(&tit, tp, &err) < 0)
		die("iterator", &err);
	pf_stats *stats = stats_open(&o, tit);
	pf_devfeed *tf, *ef = NULL;
	pf_devfeed_opts fo = { .depth = feed_depth(&o, dev), .epochs = o.epochs,
			       .pinned_batches = 1 };
	if (pf_devfeed_new(&tf, dev, tit, cs, &fo, &err) < 0)
		die("prefetch_to_device", &err);
	pf_pipeline *ep = NULL;
	if (o.eval) {
		const char *ev[1] = { o.eval };
		ep = build(&o, ev, 1, 0, dev);
		if (pf_iter_new(&eit, ep, &err) < 0)
			die("eval iterator", &err);
		if (pf_devfeed_new(&ef, dev, eit, cs, &fo, &err) < 0)
			die("eval prefetch_to_device", &err);
	}
	if (!o.quiet)
		fprintf(stderr, "pipe-train: %s, model %s (%zu parameters)\n",
			pf_device_info(dev), o.model, pf_model_nparams(m));

	progress pg = { .tty = isatty(2), .quiet = o.quiet };
	uint64_t images = 0, steps_prev_epoch = 0, step_total = 0;
	double train_wall = 0, train_loss = NAN, train_acc = NAN, test_acc = NAN,
	       test_loss = NAN;
	feed_input tin = { .img = -1, .lab = -1 }, ein = { .img = -1, .lab = -1 };
	for (int e = 0; e < o.epochs; e++) {
		double t0 = now_s();
		pf_devfeed_stats s0;
		pf_devfeed_get_stats(tf, &s0);
		uint64_t step = 0, eimages = 0;
		uint64_t stall_prev = s0.stall_host_ns + s0.stall_device_ns;
		uint64_t copy_prev = s0.copy_ns;
		double tstep = t0;
		pf_devbatch b;
		int rc;
		while ((rc = pf_devfeed_next(tf, &b, &err)) == 0) {
			bind_input(&tin, &b, mc.sizes[0]);
			if (pf_model_train_step(m, cs, &tin.in, &err) < 0)
				die("train step", &err);
			pf_devfeed_release(tf, &b, &err);
			step++;
			eimages += b.batch;
			double tn = now_s(), el = tn - t0;
			pf_devfeed_stats sn;
			pf_devfeed_get_stats(tf, &sn);
			if (stats) {
				/* the step: its share of the feed's stall, the rest of
				 * the loop's time since the last step is compute */
				uint64_t sc = sn.stall_host_ns + sn.stall_device_ns;
				uint64_t ds = sc - stall_prev, tot = (uint64_t)((tn - tstep) * 1e9);
				pf_stats_step(stats, ds, tot > ds ? tot - ds : 0,
					      sn.copy_ns - copy_prev, b.batch);
				stall_prev = sc;
				copy_prev = sn.copy_ns;
				tstep = tn;
			}
			double stall = el > 0 ? ((sn.stall_host_ns - s0.stall_host_ns) +
						 (sn.stall_device_ns - s0.stall_device_ns)) * 1e-9 / el : 0;
			double eta = steps_prev_epoch && step ? el / step *
				(double)((o.epochs - e) * steps_prev_epoch - step) : 0;
			show(&pg, e, o.epochs, step, steps_prev_epoch, eimages / el,
			     stall, eta);
		}
		if (rc < 0)
			die("training input", &err);
		double acc[4];
		if (pf_model_read_acc(m, cs, PF_ACC_TRAIN, acc, 1, &err) < 0)
			die("device", &err);
		double el = now_s() - t0;
		train_wall += el;
		pf_devfeed_stats s1;
		pf_devfeed_get_stats(tf, &s1);
		double stall = ((s1.stall_host_ns - s0.stall_host_ns) +
				(s1.stall_device_ns - s0.stall_device_ns)) * 1e-9 / el;
		train_loss = acc[3] ? acc[0] / acc[3] : NAN;
		train_acc = acc[3] ? acc[1] / acc[3] : NAN;
		images += eimages;
		step_total += step;
		steps_prev_epoch = step;
		if (ef) {
			while ((rc = pf_devfeed_next(ef, &b, &err)) == 0) {
				bind_input(&ein, &b, mc.sizes[0]);
				if (pf_model_eval(m, cs, &ein.in, &err) < 0)
					die("eval", &err);
				pf_devfeed_release(ef, &b, &err);
			}
			if (rc < 0)
				die("eval input", &err);
			if (pf_model_read_acc(m, cs, PF_ACC_EVAL, acc, 1, &err) < 0)
				die("device", &err);
			test_loss = acc[3] ? acc[0] / acc[3] : NAN;
			test_acc = acc[3] ? acc[1] / acc[3] : NAN;
		}
		clear_progress(&pg);
		if (!o.quiet) {
			fprintf(out, "epoch %d/%d: loss %.4f acc %.4f", e + 1, o.epochs,
				train_loss, train_acc);
			if (ef)
				fprintf(out, " test_loss %.4f test_acc %.4f", test_loss,
					test_acc);
			fprintf(out, " images/s %.0f stall %.2f%%\n", eimages / el,
				100 * stall);
			fflush(out);
		}
	}
	pf_devfeed_stats st;
	pf_devfeed_get_stats(tf, &st);
	double stall_share = train_wall > 0
		? (st.stall_host_ns + st.stall_device_ns) * 1e-9 / train_wall : 0;
	if (o.save && pf_model_save(m, cs, o.save, &err) < 0)
		die("--save", &err);
	if (o.json) {
		printf("{\"device\":\"%s\",\"model\":\"%s\",\"epochs\":%d,\"batch\":%d,"
		       "\"steps\":%llu,\"images\":%llu,\"wall_s\":%.3f,"
		       "\"images_per_sec\":%.1f,\"stall_share\":%.4f,"
		       "\"stall_host_s\":%.3f,\"stall_device_s\":%.3f,"
		       "\"feeder_input_s\":%.3f,\"feeder_slot_s\":%.3f,\"h2d_copy_s\":%.3f,"
		       "\"train_loss\":%.6f,\"train_accuracy\":%.4f,",
		       pf_device_kind(dev), o.model, o.epochs, o.batch,
		       (unsigned long long)step_total, (unsigned long long)images,
		       train_wall, images / train_wall, stall_share,
		       st.stall_host_ns * 1e-9, st.stall_device_ns * 1e-9,
		       st.feeder_input_ns * 1e-9, st.feeder_slot_ns * 1e-9, st.copy_ns * 1e-9,
		       train_loss,
		       train_acc);
		if (ef)
			printf("\"test_loss\":%.6f,\"test_accuracy\":%.4f}\n", test_loss,
			       test_acc);
		else
			printf("\"test_loss\":null,\"test_accuracy\":null}\n");
	} else if (!o.quiet) {
		printf("done: %llu images in %.2fs, %.0f images/s, stall %.2f%%\n",
		       (unsigned long long)images, train_wall, images / train_wall,
		       100 * stall_share);
	}
	pf_devfeed_free(tf);
	pf_devfeed_free(ef);
	stats_close(stats);
	pf_iter_free(tit);
	pf_iter_free(eit);
	pf_pipeline_free(tp);          /* its batches are the device's pinned memory */
	pf_pipeline_free(ep);
	pf_model_free(m);
	pf_stream_free(dev, cs);
	pf_device_close(dev);
	return 0;
}
