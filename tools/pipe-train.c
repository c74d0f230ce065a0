/*
 * pipe-train - train a model on shards fed by a pipefeed pipeline, with the
 * batches prefetched to the device on a copy stream (pf_devfeed), and report
 * where the time went: images/s and the stall share (the loop's wait for its
 * next batch, host and device, over the loop's wall time).
 *
 *   pipe-train --epochs 5 --eval 'test-*.pfs' 'train-*.pfs'
 *   pipe-train --pipeline 'map(decode, par=4) | shuffle(10000) | batch(64)' ...
 *   pipe-train --model none ...        the pipeline alone (throughput)
 *
 * Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "pf_model.h"
#include "pf_spec.h"
#include "pipefeed.h"

typedef struct opts {
	const char *pipeline, *model, *device, *eval, *save, *cache;
	int cache_on, batch, shuffle, map_threads, prefetch, depth, graph;
	int epochs, json, quiet;
	double lr;
	uint64_t seed;
	char **shards;
	int nshards;
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
		"  --prefetch N        host prefetch depth (auto)\n"
		"  --depth N           device prefetch slots (2 = double buffering)\n"
		"  --model SPEC        mlp:784-128-10 (default) or none (pipeline alone)\n"
		"  --epochs N          epochs (5)\n"
		"  --lr X              Adam learning rate (0.001)\n"
		"  --seed N            seed of shuffling and init (1)\n"
		"  --device KIND       auto (default), cpu or cuda\n"
		"  --graph             capture the training step as a CUDA graph\n"
		"  --eval SHARDS       test shards (a glob), evaluated after each epoch\n"
		"  --save FILE         checkpoint of the model and optimizer at the end\n"
		"  --json              one JSON object on stdout at the end\n"
		"  --quiet             no progress bar, no epoch lines\n");
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

/* The training or eval pipeline: shards, then --pipeline or the flags. */
static pf_pipeline *build(const opts *o, const char *const *files, int nfiles,
			  int train)
{
	pf_error err = { 0 };
	pf_options po = { .seed = o->seed };
	pf_pipeline *p;
	if (pf_pipeline_new(&p, &po, &err) < 0)
		die("pipeline", &err);
	if (nfiles && pf_shards(p, files, (size_t)nfiles, NULL, &err) < 0)
		die("shards", &err);
	if (train && o->pipeline) {
		if (pf_spec_apply(p, o->pipeline, &err) < 0)
			die("--pipeline", &err);
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

/* --model none: run the pipeline alone and report its throughput. */
static int run_pipeline_only(const opts *o, pf_pipeline *p)
{
	pf_error err = { 0 };
	pf_iter *it;
	if (pf_iter_new(&it, p, &err) < 0)
		die("iterator", &err);
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
			wait += now_s() - tw;
			if (rc != 0)
				break;
			ei += b.batch ? b.batch : 1;
			pf_elem_release(&b);
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
	pf_iter_free(it);
	return 0;
}

int main(int argc, char **argv)
{
	opts o = { .model = "mlp:784-128-10", .device = "auto", .batch = 64,
		   .shuffle = 10000, .map_threads = PF_AUTOTUNE,
		   .prefetch = PF_AUTOTUNE, .depth = 2, .epochs = 5, .lr = 1e-3,
		   .seed = 1 };
	enum { O_PIPE = 256, O_BATCH, O_SHUF, O_CACHE, O_MAPT, O_PREF, O_DEPTH,
	       O_MODEL, O_EPOCHS, O_LR, O_SEED, O_DEV, O_GRAPH, O_EVAL, O_SAVE,
	       O_JSON, O_QUIET };
	static const struct option lo[] = {
		{ "pipeline", 1, 0, O_PIPE }, { "batch", 1, 0, O_BATCH },
		{ "shuffle", 1, 0, O_SHUF }, { "cache", 2, 0, O_CACHE },
		{ "map-threads", 1, 0, O_MAPT }, { "prefetch", 1, 0, O_PREF },
		{ "depth", 1, 0, O_DEPTH }, { "model", 1, 0, O_MODEL },
		{ "epochs", 1, 0, O_EPOCHS }, { "lr", 1, 0, O_LR },
		{ "seed", 1, 0, O_SEED }, { "device", 1, 0, O_DEV },
		{ "graph", 0, 0, O_GRAPH }, { "eval", 1, 0, O_EVAL },
		{ "save", 1, 0, O_SAVE }, { "json", 0, 0, O_JSON },
		{ "quiet", 0, 0, O_QUIET }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
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
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_PIPE: o.pipeline = optarg; break;
		case O_BATCH: NUM(o.batch, 1, 1 << 16, "batch"); break;
		case O_SHUF: NUM(o.shuffle, 0, 1 << 24, "shuffle"); break;
		case O_CACHE: o.cache_on = 1; o.cache = optarg; break;
		case O_MAPT: NUM(o.map_threads, 1, 256, "map-threads"); break;
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
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (o.batch == PF_AUTOTUNE || o.shuffle == PF_AUTOTUNE || o.epochs == PF_AUTOTUNE ||
	    o.depth == PF_AUTOTUNE) {
		fprintf(stderr, "pipe-train: --batch, --shuffle, --epochs and --depth take numbers, not auto\n");
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
	FILE *out = o.json ? stderr : stdout;
	pf_pipeline *tp = build(&o, (const char *const *)o.shards, o.nshards, 1);
	if (!with_model) {
		int rc = run_pipeline_only(&o, tp);
		pf_pipeline_free(tp);
		return rc;
	}

	pf_device *dev;
	if (pf_device_open(&dev, o.device, NULL, &err) < 0)
		die("--device", &err);
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
	pf_devfeed *tf, *ef = NULL;
	pf_devfeed_opts fo = { .depth = o.depth, .epochs = o.epochs };
	if (pf_devfeed_new(&tf, dev, tit, cs, &fo, &err) < 0)
		die("prefetch_to_device", &err);
	pf_pipeline *ep = NULL;
	if (o.eval) {
		const char *ev[1] = { o.eval };
		ep = build(&o, ev, 1, 0);
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
	int img = -1, lab = -1;
	pf_model_input in = { 0 };
	for (int e = 0; e < o.epochs; e++) {
		double t0 = now_s();
		pf_devfeed_stats s0;
		pf_devfeed_get_stats(tf, &s0);
		uint64_t step = 0, eimages = 0;
		pf_devbatch b;
		int rc;
		while ((rc = pf_devfeed_next(tf, &b, &err)) == 0) {
			if (img < 0) {
				find_fields(b.schema, &img, &lab);
				if (pf_model_input_types(&in, b.schema->fields[img].dtype,
							 b.schema->fields[lab].dtype, &err) < 0)
					die("batch", &err);
				int64_t per = pf_field_count(&b.schema->fields[img]);
				if (per != mc.sizes[0]) {
					fprintf(stderr, "pipe-train: model input is %d values but '%s' has %lld per sample\n",
						mc.sizes[0], b.schema->fields[img].name,
						(long long)per);
					return 1;
				}
			}
			in.x = b.data[img];
			in.labels = b.data[lab];
			in.rows = (int)b.batch;
			if (pf_model_train_step(m, cs, &in, &err) < 0)
				die("train step", &err);
			pf_devfeed_release(tf, &b, &err);
			step++;
			eimages += b.batch;
			double el = now_s() - t0;
			pf_devfeed_stats sn;
			pf_devfeed_get_stats(tf, &sn);
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
				in.x = b.data[img];
				in.labels = b.data[lab];
				in.rows = (int)b.batch;
				if (pf_model_eval(m, cs, &in, &err) < 0)
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
		       "\"feeder_input_s\":%.3f,\"feeder_slot_s\":%.3f,"
		       "\"train_loss\":%.6f,\"train_accuracy\":%.4f,",
		       pf_device_kind(dev), o.model, o.epochs, o.batch,
		       (unsigned long long)step_total, (unsigned long long)images,
		       train_wall, images / train_wall, stall_share,
		       st.stall_host_ns * 1e-9, st.stall_device_ns * 1e-9,
		       st.feeder_input_ns * 1e-9, st.feeder_slot_ns * 1e-9, train_loss,
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
	pf_iter_free(tit);
	pf_iter_free(eit);
	pf_model_free(m);
	pf_stream_free(dev, cs);
	pf_device_close(dev);
	pf_pipeline_free(tp);
	pf_pipeline_free(ep);
	return 0;
}
