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
 *   pipe-train --checkpoint run.ckpt ...  checkpoint at each epoch's end and
 *                                      on SIGINT/SIGTERM (then exit 130)
 *   pipe-train --resume run.ckpt       continue that run where it stopped
 *
 * Interruption and resume: a checkpoint holds the model and Adam state and,
 * in its run section (a text block, see run_encode), the options that
 * define the run and where it stands: epoch, batches of that epoch already
 * trained on, the pipeline's iterator position (pf_iter_pos: op epoch
 * counters, not buffer contents) and the epoch's partial loss sums.  The
 * element order is a function of the seed and those counters, so the
 * resumed run trains on exactly the batches the uninterrupted run would
 * have, whatever the thread counts.
 *
 * Exit status: 0 on success, 1 on a runtime error, 2 on a usage error,
 * 130 when interrupted (SIGINT, SIGTERM, --stop-after-steps).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
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
#include "train.h"



static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipe-train [options] SHARDS...\n"
		"  --pipeline SPEC     pipeline after the shards source (pf_spec.h syntax);\n"
		"                      replaces the flags below; may start with its own source\n"
		"  --batch N           batch size (64)\n"
		"  --shuffle N         shuffle buffer, 0 = off (10000)\n"
		"  --cache[=PATH]      cache decoded samples (in memory, or in PATH)\n"
		"  --map-threads N     decode threads (auto: AUTOTUNE, or CPUs/4 above 4)\n"
		"  --read-threads N    read + decompress threads (auto: AUTOTUNE, or CPUs/2)\n"
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
		"  --checkpoint FILE   checkpoint (model, optimizer, options, pipeline\n"
		"                      position) at each epoch's end and on SIGINT/SIGTERM,\n"
		"                      which then exit with status 130\n"
		"  --resume FILE       continue the run of that checkpoint with the options\n"
		"                      it recorded (thread counts, --device, --depth,\n"
		"                      --prefetch, --epochs (more) and the output flags may\n"
		"                      be given; others must agree); checkpoints go on\n"
		"                      to FILE unless --checkpoint says otherwise\n"
		"  --on-corrupt fail|skip  a damaged shard block stops the run (fail, the\n"
		"                      default) or is dropped and counted (skip)\n"
		"  --max-corrupt N     skip, but fail once more than N records were dropped\n"
		"  --isolate-map       drop (and count) samples whose decode fails\n"
		"  --fingerprint FILE  testing aid: one line per training batch: epoch,\n"
		"                      step, 64-bit hash of its images and labels\n"
		"  --stop-after-steps N  testing aid: act as if interrupted after step N\n"
		"  --json              one JSON object on stdout at the end\n"
		"  --quiet             no progress bar, no epoch lines\n"
		"  --stats FILE        record run statistics in FILE while training (pipe-stat FILE)\n"
		"  --sweep B1,B2,...   batch-size sweep: --steps steps at each size, one table\n"
		"  --steps N           measured steps per batch size in a sweep (50)\n"
		"  --slo-ms X          step latency objective (p99) for the sweep's knee\n"
		"  --svg FILE          draw the sweep (throughput and p99 latency by batch size)\n");
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void die(const char *what, const pf_error *e)
{
	fprintf(stderr, "pipe-train: %s: %s\n", what, e->msg[0] ? e->msg
							  : pf_strerror(e->code));
	exit(1);
}

/*
 * Threads for --read-threads / --map-threads auto.  AUTOTUNE raises a knob
 * one step per 30 ms window, too slowly for a run of a second on many
 * cores (an H100 host with 16 CPUs: shards stayed at 1 thread, the GPU
 * waited 64% of the time at batch 1024).  Above 4 CPUs start where
 * bench/pipeline_bench measured best there: half the CPUs reading (at most
 * 8) and a quarter mapping (2..8: two or more give the map its feeder
 * thread); up to 4 CPUs, AUTOTUNE.
 */
static int auto_threads(int knob, int share, int lo)
{
	if (knob != PF_AUTOTUNE)
		return knob;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 4)
		return PF_AUTOTUNE;
	long v = n / share;
	return (int)(v < lo ? lo : v > 8 ? 8 : v);
}

/* The training or eval pipeline: shards, then --pipeline or the flags.
 * With a device, batches are built straight in its pinned memory (the
 * pipeline must then be freed before the device is closed). */
pf_pipeline *build(const opts *o, const char *const *files, int nfiles,
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
	pf_source_opts so = { .num_parallel_reads = auto_threads(o->read_threads, 2, 1),
			      .skip_corrupt = o->skip_corrupt,
			      .max_corrupt = o->max_corrupt };
	if (nfiles && pf_shards(p, files, (size_t)nfiles, &so, &err) < 0)
		die("shards", &err);
	const char *spec = train ? o->pipeline : o->eval_pipeline;
	if (spec) {
		if (pf_spec_apply(p, spec, &err) < 0)
			die(train ? "--pipeline" : "--eval-pipeline", &err);
		return p;
	}
	pf_map_opts mo = { .num_parallel_calls = auto_threads(o->map_threads, 4, 2),
			   .isolate = o->isolate };
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
int feed_depth(const opts *o, pf_device *dev)
{
	if (o->depth != PF_AUTOTUNE)
		return o->depth;
	return strcmp(pf_device_kind(dev), "cpu") == 0 ? 8 : 3;
}

/* Image and label fields of a batch schema, or exit with a message. */
void find_fields(const pf_schema *s, int *img, int *lab)
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

void bind_input(feed_input *fi, const pf_devbatch *b, int nin)
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

/* ==== damaged input: the counters over the train iterator's stages ====== */

typedef struct damage {
	uint64_t skipped_records, corrupt_blocks, dropped_samples;
} damage;

static damage damage_sum(const pf_iter *it)
{
	damage d = { 0 };
	for (int i = 0; it && i < pf_iter_nstages(it); i++) {
		pf_op_stats s;
		if (pf_iter_stats(it, i, &s) < 0)
			continue;
		d.skipped_records += s.skipped_records;
		d.corrupt_blocks += s.corrupt_blocks;
		d.dropped_samples += s.dropped_samples;
	}
	return d;
}

/* ==== interruption ======================================================== */

/* The signal that asked us to stop (SIGINT / SIGTERM), 0 while none.  The
 * handler only sets it; the training loop looks at it after each step. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void catch_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* ==== --fingerprint ======================================================= */

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* One line "epoch step hash" (epoch and step from 1) for batch b: FNV-1a
 * 64 of its image bytes then its label bytes, copied back from the device
 * (a testing aid: it syncs the stream). */
static void fingerprint(FILE *f, pf_device *dev, pf_stream *cs, const feed_input *fi,
			const pf_devbatch *b, uint64_t epoch, uint64_t step)
{
	static unsigned char *host;
	static size_t cap;
	pf_error err = { 0 };
	uint64_t h = 1469598103934665603ull;
	int fields[2] = { fi->img, fi->lab };
	for (int k = 0; k < 2; k++) {
		int i = fields[k];
		size_t n = (size_t)b->nitems[i] * pf_dtype_size(b->schema->fields[i].dtype);
		if (n > cap) {
			unsigned char *q = realloc(host, n);
			if (!q) {
				fprintf(stderr, "pipe-train: --fingerprint: out of memory\n");
				exit(1);
			}
			host = q;
			cap = n;
		}
		if (pf_memcpy_async(dev, cs, host, b->data[i], n, PF_D2H, &err) < 0 ||
		    pf_stream_sync(dev, cs, &err) < 0)
			die("--fingerprint", &err);
		h = fnv1a(h, host, n);
	}
	fprintf(f, "%" PRIu64 " %" PRIu64 " %016" PRIx64 "\n", epoch + 1, step + 1, h);
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
	stats_close(st);
	pf_iter_free(it);
	return 0;
}

/* ==== training ============================================================ */

/* Long options (their values index main's `given`). */
enum { O_PIPE = 256, O_BATCH, O_SHUF, O_CACHE, O_MAPT, O_PREF, O_DEPTH,
       O_MODEL, O_EPOCHS, O_LR, O_SEED, O_DEV, O_GRAPH, O_EVAL, O_SAVE,
       O_JSON, O_QUIET, O_STATS, O_SWEEP, O_STEPS, O_SLO, O_SVG, O_EPIPE,
       O_READT, O_CKPT, O_RESUME, O_FPRINT, O_STOPAFTER, O_ONCORR, O_MAXCORR,
       O_ISOLATE, O_LAST = O_ISOLATE };

/* What the training loop needs to write checkpoints. */
typedef struct trainer {
	const opts *o;
	pf_model *m;
	pf_stream *cs;
	const char *ckpt;     /* --checkpoint (or --resume's file); NULL: none */
} trainer;

/* Write the checkpoint: model, optimizer, o and st (atomically: a signal
 * or a crash meanwhile leaves the previous file whole). */
static void save_checkpoint(const trainer *t, const run_state *st)
{
	size_t len;
	char *text = run_encode(t->o, st, &len);
	if (!text) {
		fprintf(stderr, "pipe-train: --checkpoint: out of memory\n");
		exit(1);
	}
	pf_error err = { 0 };
	if (pf_model_save_run(t->m, t->cs, t->ckpt, text, len, &err) < 0)
		die("--checkpoint", &err);
	free(text);
}

/* The message of an interrupted run (stderr). */
static void say_interrupted(const trainer *t, uint64_t epoch, uint64_t step)
{
	if (t->ckpt)
		fprintf(stderr, "pipe-train: interrupted at epoch %" PRIu64 " step %" PRIu64
			"; checkpoint written to %s; resume with: pipe-train --resume %s\n",
			epoch + 1, step, t->ckpt, t->ckpt);
	else
		fprintf(stderr, "pipe-train: interrupted at epoch %" PRIu64 " step %" PRIu64
			"; no checkpoint written (no --checkpoint was given)\n", epoch + 1, step);
}

/*
 * Train (the model, the eval, the reports).  rs: where a resumed run
 * starts (epoch, step, iterator position, partial sums), NULL for a new
 * run.  Returns the exit status (0, or 130 when interrupted).
 */
static int train(const opts *o0, pf_model_cfg mc, const run_state *rs)
{
	const opts *o = o0;
	pf_error err = { 0 };
	FILE *out = o->json ? stderr : stdout;
	pf_device *dev;
	if (pf_device_open(&dev, o->device, NULL, &err) < 0)
		die("--device", &err);
	pf_pipeline *tp = build(o, (const char *const *)o->shards, o->nshards, 1, dev);
	if (pf_device_note(dev)[0] && !o->quiet)
		fprintf(stderr, "pipe-train: %s\n", pf_device_note(dev));
	pf_stream *cs;
	pf_model *m;
	if (pf_stream_new(dev, &cs, &err) < 0)
		die("stream", &err);
	/* with --pipeline the batch size is the spec's: size the model for
	 * the largest batch it can see */
	if (o->pipeline && mc.max_batch < 4096)
		mc.max_batch = 4096;
	if (pf_model_new(&m, dev, &mc, &err) < 0)
		die("model", &err);
	uint64_t e0 = 0, k0 = 0, step_total = 0, images_total = 0;
	if (rs) {
		if (pf_model_load(m, cs, o->resume, &err) < 0 ||
		    pf_model_set_acc(m, cs, PF_ACC_TRAIN, rs->acc, &err) < 0)
			die("--resume", &err);
		e0 = rs->epoch;
		k0 = rs->step;
		step_total = rs->steps;
		images_total = rs->images;
	}
	trainer tr = { .o = o, .m = m, .cs = cs,
		       .ckpt = o->checkpoint ? o->checkpoint : o->resume };
	FILE *fpf = NULL;
	if (o->fingerprint && !(fpf = fopen(o->fingerprint, "w"))) {
		fprintf(stderr, "pipe-train: --fingerprint: %s: %s\n", o->fingerprint,
			strerror(errno));
		exit(1);
	}

	pf_iter *tit, *eit = NULL;
	if ((rs ? pf_iter_new_at(&tit, tp, &rs->pos, &err) : pf_iter_new(&tit, tp, &err)) < 0)
		die(rs ? "--resume: iterator" : "iterator", &err);
	pf_stats *stats = stats_open(o, tit);
	pf_devfeed *tf, *ef = NULL;
	pf_devfeed_opts fo = { .depth = feed_depth(o, dev), .epochs = o->epochs - (int64_t)e0,
			       .pinned_batches = 1 };
	if (pf_devfeed_new(&tf, dev, tit, cs, &fo, &err) < 0)
		die("prefetch_to_device", &err);
	pf_pipeline *ep = NULL;
	if (o->eval) {
		const char *ev[1] = { o->eval };
		ep = build(o, ev, 1, 0, dev);
		if (pf_iter_new(&eit, ep, &err) < 0)
			die("eval iterator", &err);
		if (pf_devfeed_new(&ef, dev, eit, cs, &fo, &err) < 0)
			die("eval prefetch_to_device", &err);
	}
	if (!o->quiet) {
		fprintf(stderr, "pipe-train: %s, model %s (%zu parameters)\n",
			pf_device_info(dev), o->model, pf_model_nparams(m));
		if (rs)
			fprintf(stderr, "pipe-train: resuming %s at epoch %" PRIu64 " step %" PRIu64 "\n",
				o->resume, e0 + 1, k0);
	}

	progress pg = { .tty = isatty(2), .quiet = o->quiet };
	uint64_t images = 0, steps_prev_epoch = 0;
	double train_wall = 0, train_loss = NAN, train_acc = NAN, test_acc = NAN,
	       test_loss = NAN;
	feed_input tin = { .img = -1, .lab = -1 }, ein = { .img = -1, .lab = -1 };
	/* the first batch of the next epoch, taken early to record the
	 * position of the epoch's start (see below) */
	pf_devbatch pending;
	int have_pending = 0, pending_rc = 0, status = 0;
	for (uint64_t e = e0; e < (uint64_t)o->epochs; e++) {
		int ei = (int)e;
		double t0 = now_s();
		pf_devfeed_stats s0;
		pf_devfeed_get_stats(tf, &s0);
		uint64_t step = e == e0 ? k0 : 0, step0 = step, eimages = 0;
		uint64_t stall_prev = s0.stall_host_ns + s0.stall_device_ns;
		uint64_t copy_prev = s0.copy_ns;
		double tstep = t0;
		pf_devbatch b;
		int rc;
		for (;;) {
			if (have_pending) {
				b = pending;
				rc = pending_rc;
				have_pending = 0;
			} else {
				rc = pf_devfeed_next(tf, &b, &err);
			}
			if (rc != 0)
				break;
			bind_input(&tin, &b, mc.sizes[0]);
			if (fpf)
				fingerprint(fpf, dev, cs, &tin, &b, e, step);
			if (pf_model_train_step(m, cs, &tin.in, &err) < 0)
				die("train step", &err);
			pf_devfeed_release(tf, &b, &err);
			step++;
			step_total++;
			eimages += b.batch;
			images_total += b.batch;
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
			double eta = steps_prev_epoch && step ? el / (double)(step - step0) *
				(double)((o->epochs - ei) * steps_prev_epoch - step) : 0;
			show(&pg, ei, o->epochs, step, steps_prev_epoch, eimages / el,
			     stall, eta);
			if (o->stop_after && step_total >= o->stop_after && !stop_signal)
				stop_signal = SIGINT; /* --stop-after-steps: the same path */
			if (stop_signal) {
				/* stop here.  Was that the epoch's last batch?  Then
				 * finish the epoch (eval, epoch line) and write the
				 * epoch's checkpoint below: a resume then re-reads
				 * nothing.  Else the position is "epoch e, `step`
				 * batches trained on" (the feeder may be further
				 * ahead; the batch looked at is not trained on) */
				pf_devbatch nb;
				int nrc = pf_devfeed_next(tf, &nb, &err);
				if (nrc == PF_END) {
					rc = PF_END;
					break;
				}
				if (nrc < 0)
					die("training input", &err);
				pf_devfeed_release(tf, &nb, &err);
				clear_progress(&pg);
				run_state st = { .epoch = e, .step = step, .steps = step_total,
						 .images = images_total };
				if (tr.ckpt) {
					if (pf_model_read_acc(m, cs, PF_ACC_TRAIN, st.acc, 0, &err) < 0)
						die("device", &err);
					if (pf_iter_epoch_start(tit, e, step, &st.pos, &err) < 0)
						die("--checkpoint: position", &err);
					save_checkpoint(&tr, &st);
				}
				say_interrupted(&tr, e, step);
				status = 130;
				goto finish;
			}
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
		if (!o->quiet) {
			fprintf(out, "epoch %d/%d: loss %.4f acc %.4f", ei + 1, o->epochs,
				train_loss, train_acc);
			if (ef)
				fprintf(out, " test_loss %.4f test_acc %.4f", test_loss,
					test_acc);
			fprintf(out, " images/s %.0f stall %.2f%%\n", eimages / el,
				100 * stall);
			fflush(out);
		}
		if (!tr.ckpt && !stop_signal)
			continue;
		/* the epoch's checkpoint: the position is the next epoch's
		 * start, which the iterator records when it begins that epoch;
		 * taking the next batch now guarantees it has */
		run_state st = { .epoch = e + 1, .steps = step_total, .images = images_total };
		if (e + 1 >= (uint64_t)o->epochs) {
			st.done = 1;
			/* the position after the last epoch's end, for a resume
			 * with more epochs: the feed has taken the iterator's
			 * PF_END (it handed it over under its lock) and calls
			 * it no more, so reading the position here is safe */
			if (tr.ckpt && pf_iter_position(tit, &st.pos, &err) == 0 &&
			    st.pos.at_end && st.pos.epoch == e)
				st.has_pos = 1;
		} else if (tr.ckpt) {
			pending_rc = pf_devfeed_next(tf, &pending, &err);
			if (pending_rc < 0)
				die("training input", &err);
			have_pending = 1;
			if (pf_iter_epoch_start(tit, e + 1, 0, &st.pos, &err) < 0)
				die("--checkpoint: position", &err);
		}
		if (tr.ckpt)
			save_checkpoint(&tr, &st);
		if (stop_signal && !st.done) {
			say_interrupted(&tr, e, step);
			status = 130;
			goto finish;
		}
	}
	{
		pf_devfeed_stats st;
		pf_devfeed_get_stats(tf, &st);
		double stall_share = train_wall > 0
			? (st.stall_host_ns + st.stall_device_ns) * 1e-9 / train_wall : 0;
		damage dm = damage_sum(tit);
		if (o->save && pf_model_save(m, cs, o->save, &err) < 0)
			die("--save", &err);
		if (o->json) {
			printf("{\"device\":\"%s\",\"model\":\"%s\",\"epochs\":%d,\"batch\":%d,"
			       "\"steps\":%" PRIu64 ",\"images\":%" PRIu64 ",\"wall_s\":%.3f,"
			       "\"images_per_sec\":%.1f,\"stall_share\":%.4f,"
			       "\"stall_host_s\":%.3f,\"stall_device_s\":%.3f,"
			       "\"feeder_input_s\":%.3f,\"feeder_slot_s\":%.3f,\"h2d_copy_s\":%.3f,"
			       "\"skipped_records\":%" PRIu64 ",\"corrupt_blocks\":%" PRIu64
			       ",\"dropped_samples\":%" PRIu64 ",\"resumed\":%s,"
			       "\"train_loss\":%.6f,\"train_accuracy\":%.4f,",
			       pf_device_kind(dev), o->model, o->epochs, o->batch,
			       step_total, images_total,
			       train_wall, train_wall > 0 ? images / train_wall : 0, stall_share,
			       st.stall_host_ns * 1e-9, st.stall_device_ns * 1e-9,
			       st.feeder_input_ns * 1e-9, st.feeder_slot_ns * 1e-9, st.copy_ns * 1e-9,
			       dm.skipped_records, dm.corrupt_blocks, dm.dropped_samples,
			       rs ? "true" : "false", train_loss, train_acc);
			if (ef)
				printf("\"test_loss\":%.6f,\"test_accuracy\":%.4f}\n", test_loss,
				       test_acc);
			else
				printf("\"test_loss\":null,\"test_accuracy\":null}\n");
		} else if (!o->quiet) {
			printf("done: %" PRIu64 " images in %.2fs, %.0f images/s, stall %.2f%%, "
			       "skipped_records %" PRIu64 ", corrupt_blocks %" PRIu64
			       ", dropped_samples %" PRIu64 "\n",
			       images, train_wall, train_wall > 0 ? images / train_wall : 0,
			       100 * stall_share, dm.skipped_records, dm.corrupt_blocks,
			       dm.dropped_samples);
		}
	}
finish:
	if (have_pending)
		pf_devfeed_release(tf, &pending, &err);
	if (fpf && fclose(fpf) != 0) {
		fprintf(stderr, "pipe-train: --fingerprint: %s: write failed\n", o->fingerprint);
		status = 1;
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
	return status;
}

/*
 * --resume FILE: read its run section; the options that define the run
 * come from it (flags on the command line that say otherwise are usage
 * errors), those that do not change the batches (thread counts, depths,
 * device, output flags) may be given anew.  Fills *o, *rs and *text (the
 * section: o's strings point into it).  Returns 0, 1 (unreadable or
 * corrupt file) or 2 (contradicting flags).
 */
static int load_resume(opts *o, const unsigned char *given, char **positional,
		       int npositional, run_state *rs, char **text)
{
	pf_error err = { 0 };
	size_t len;
	if (pf_ckpt_read_run(o->resume, text, &len, &err) < 0) {
		fprintf(stderr, "pipe-train: --resume: %s\n", err.msg);
		return 1;
	}
	opts r = *o;
	char msg[256];
	int status = 0;
	if (strlen(*text) != len || run_decode(*text, &r, rs, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "pipe-train: --resume: %s: run section: %s\n", o->resume,
			strlen(*text) != len ? "embedded NUL" : msg);
		status = 1;
		goto fail;
	}
#define AGREE(flag, cond, name)                                                 \
	do {                                                                   \
		if (given[(flag)] && !(cond)) {                                  \
			fprintf(stderr, "pipe-train: --resume: --%s differs from the value recorded in %s\n", \
				name, o->resume);                              \
			status = 2;                                            \
			goto fail;                                             \
		}                                                              \
	} while (0)
	AGREE(-O_PIPE + O_PIPE, same_str(o->pipeline, r.pipeline), "pipeline");
	AGREE(-O_PIPE + O_EPIPE, same_str(o->eval_pipeline, r.eval_pipeline), "eval-pipeline");
	AGREE(-O_PIPE + O_MODEL, same_str(o->model, r.model), "model");
	AGREE(-O_PIPE + O_EVAL, same_str(o->eval, r.eval), "eval");
	AGREE(-O_PIPE + O_CACHE, o->cache_on == r.cache_on && same_str(o->cache, r.cache), "cache");
	AGREE(-O_PIPE + O_BATCH, o->batch == r.batch, "batch");
	AGREE(-O_PIPE + O_SHUF, o->shuffle == r.shuffle, "shuffle");
	AGREE(-O_PIPE + O_LR, o->lr == r.lr, "lr");
	AGREE(-O_PIPE + O_SEED, o->seed == r.seed, "seed");
	AGREE(-O_PIPE + O_ONCORR, o->skip_corrupt == r.skip_corrupt, "on-corrupt");
	AGREE(-O_PIPE + O_MAXCORR, o->max_corrupt == r.max_corrupt && o->skip_corrupt == r.skip_corrupt,
	      "max-corrupt");
	AGREE(-O_PIPE + O_ISOLATE, o->isolate == r.isolate, "isolate-map");
#undef AGREE
	if (npositional) {
		int same = npositional == r.nshards;
		for (int i = 0; same && i < npositional; i++)
			same = !strcmp(positional[i], r.shards[i]);
		if (!same) {
			fprintf(stderr, "pipe-train: --resume: the SHARDS differ from those recorded in %s\n",
				o->resume);
			status = 2;
			goto fail;
		}
	}
	uint64_t at = rs->epoch + (rs->step > 0);
	if (given[O_EPOCHS - O_PIPE] && !rs->done && (uint64_t)o->epochs < at) {
		fprintf(stderr, "pipe-train: --resume: --epochs %d: %s is already in epoch %" PRIu64 "\n",
			o->epochs, o->resume, rs->epoch + 1);
		status = 2;
		goto fail;
	}
	/* the recorded run, with what may change */
	opts n = r;
	n.resume = o->resume;
	n.checkpoint = o->checkpoint;
	n.fingerprint = o->fingerprint;
	n.stop_after = o->stop_after;
	n.save = o->save;
	n.json = o->json;
	n.quiet = o->quiet;
	n.stats = o->stats;
	memcpy(n.label, o->label, sizeof(n.label));
	if (given[O_EPOCHS - O_PIPE] && !rs->done)
		n.epochs = o->epochs;
	/* a finished run trains on when --epochs asks for more and its
	 * checkpoint kept the position after its last epoch */
	if (given[O_EPOCHS - O_PIPE] && rs->done && rs->has_pos &&
	    o->epochs > r.epochs && rs->epoch == (uint64_t)r.epochs) {
		n.epochs = o->epochs;
		rs->done = 0;
	}
	if (given[O_MAPT - O_PIPE])
		n.map_threads = o->map_threads;
	if (given[O_READT - O_PIPE])
		n.read_threads = o->read_threads;
	if (given[O_PREF - O_PIPE])
		n.prefetch = o->prefetch;
	if (given[O_DEPTH - O_PIPE])
		n.depth = o->depth;
	if (given[O_DEV - O_PIPE])
		n.device = o->device;
	if (given[O_GRAPH - O_PIPE])
		n.graph = o->graph;
	*o = n;
	return 0;
fail:
	free(r.shards == o->shards ? NULL : r.shards);
	free(*text);
	*text = NULL;
	return status;
}

int main(int argc, char **argv)
{
	opts o = { .model = "mlp:784-128-10", .device = "auto", .batch = 64,
		   .shuffle = 10000, .map_threads = PF_AUTOTUNE, .read_threads = PF_AUTOTUNE,
		   .prefetch = PF_AUTOTUNE, .depth = PF_AUTOTUNE, .epochs = 5, .lr = 1e-3,
		   .seed = 1, .sweep_steps = 50 };
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
		{ "checkpoint", 1, 0, O_CKPT }, { "resume", 1, 0, O_RESUME },
		{ "fingerprint", 1, 0, O_FPRINT }, { "stop-after-steps", 1, 0, O_STOPAFTER },
		{ "on-corrupt", 1, 0, O_ONCORR }, { "max-corrupt", 1, 0, O_MAXCORR },
		{ "isolate-map", 0, 0, O_ISOLATE },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
	};
	unsigned char given[O_LAST - O_PIPE + 1] = { 0 };
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
		if (c >= O_PIPE && c <= O_LAST)
			given[c - O_PIPE] = 1;
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
		case O_CKPT: o.checkpoint = optarg; break;
		case O_RESUME: o.resume = optarg; break;
		case O_FPRINT: o.fingerprint = optarg; break;
		case O_STOPAFTER:
			o.stop_after = strtoull(optarg, &end, 10);
			if (*end || !*optarg || *optarg == '-' || o.stop_after == 0) {
				fprintf(stderr, "pipe-train: --stop-after-steps: expected a positive integer, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case O_ONCORR:
			if (!strcmp(optarg, "fail") && !given[O_MAXCORR - O_PIPE]) {
				o.skip_corrupt = 0;
			} else if (!strcmp(optarg, "skip")) {
				o.skip_corrupt = 1;
			} else {
				fprintf(stderr, "pipe-train: --on-corrupt: expected fail or skip%s, got '%s'\n",
					given[O_MAXCORR - O_PIPE] ? " (--max-corrupt implies skip)" : "",
					optarg);
				return 2;
			}
			break;
		case O_MAXCORR: {
			long long v = strtoll(optarg, &end, 10);
			if (*end || !*optarg || v < 0) {
				fprintf(stderr, "pipe-train: --max-corrupt: expected a count >= 0, got '%s'\n",
					optarg);
				return 2;
			}
			if (given[O_ONCORR - O_PIPE] && !o.skip_corrupt) {
				fprintf(stderr, "pipe-train: --max-corrupt implies --on-corrupt skip, not fail\n");
				return 2;
			}
			/* pf_source_opts.max_corrupt 0 means "no limit": N = 0
			 * (no record may be lost) is the fail policy */
			o.max_corrupt = v;
			o.skip_corrupt = v > 0;
			break;
		}
		case O_ISOLATE: o.isolate = 1; break;
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
	if (o.nsweep && (o.checkpoint || o.resume || o.fingerprint || o.stop_after)) {
		fprintf(stderr, "pipe-train: --sweep does not combine with --checkpoint, --resume, --fingerprint or --stop-after-steps\n");
		return 2;
	}
	if (!o.nsweep && (o.slo_ms > 0 || o.svg)) {
		fprintf(stderr, "pipe-train: --slo-ms and --svg belong to --sweep\n");
		return 2;
	}
	if (o.isolate && o.pipeline) {
		fprintf(stderr, "pipe-train: --isolate-map applies to the decode map the flags build; not with --pipeline\n");
		return 2;
	}
	char **positional = argv + optind;
	int npositional = argc - optind;
	o.shards = positional;
	o.nshards = npositional;
	char *run_text = NULL;
	run_state rs;
	if (o.resume) {
		int rc = load_resume(&o, given, positional, npositional, &rs, &run_text);
		if (rc)
			return rc;
		if (rs.done) {
			fprintf(stderr, "pipe-train: %s: the run is complete (%d epochs); nothing to resume%s\n",
				o.resume, o.epochs, rs.has_pos ?
				" (--epochs N with N larger trains on)" : "");
			free(run_text);
			free(o.shards);
			return 0;
		}
	}
	if (o.eval_pipeline && !o.eval) {
		fprintf(stderr, "pipe-train: --eval-pipeline needs --eval\n");
		return 2;
	}
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
	if (!with_model) {
		if (o.checkpoint || o.resume || o.fingerprint || o.stop_after) {
			fprintf(stderr, "pipe-train: --checkpoint, --resume, --fingerprint and --stop-after-steps need a model\n");
			return 2;
		}
		pf_pipeline *np = build(&o, (const char *const *)o.shards, o.nshards, 1, NULL);
		int rc = run_pipeline_only(&o, np);
		pf_pipeline_free(np);
		return rc;
	}
	catch_stop_signals();
	int status = train(&o, mc, o.resume ? &rs : NULL);
	if (o.resume)
		free(o.shards);
	free(run_text);
	return status;
}
