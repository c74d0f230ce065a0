/*
 * pipe-train - train a model on shards fed by a pipefeed pipeline, with the
 * batches prefetched to the device on a copy stream (pf_devfeed), and report
 * where the time went: images/s and the stall share (the loop's wait for its
 * next batch, host and device, over the loop's wall time).
 *
 *   pipe-train --epochs 5 --eval 'test-*.pfs' 'train-*.pfs'
 *   pipe-train --pipeline 'map(decode, par=4) | shuffle(10000) | batch(64)' ...
 *   pipe-train --model none ...        the pipeline alone (throughput)
 *   pipe-train --model synthetic:2000 ...  a consumer whose step waits 2 ms
 *                                      (a GPU emulated): the never-starves
 *                                      ratio against preloaded batches
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

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_model.h"
#include "pf_paths.h"
#include "pf_spec.h"
#include "pipefeed.h"
#include "ranks.h"
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
		"  --depth N           device prefetch slots (auto: 16 on cpu, 3 on cuda;\n"
		"                      2 = double buffering)\n"
		"  --model SPEC        mlp:784-128-10 (default), none (pipeline alone) or\n"
		"                      synthetic:STEP_US (a step of STEP_US on the compute\n"
		"                      stream that waits without using the host CPU, as a\n"
		"                      GPU step does; then the same steps over preloaded\n"
		"                      batches: the never-starves ratio)\n"
		"  --epochs N          epochs (5)\n"
		"  --lr X              Adam learning rate (0.001)\n"
		"  --seed N            seed of shuffling and init (1)\n"
		"  --device KIND       auto (default), cpu or cuda\n"
		"  --graph[=on|off]    capture the training step as a CUDA graph, one per\n"
		"                      batch shape (on; cuda only)\n"
		"  --tf32              cuBLAS GEMMs in TF32 tensor-op math (cuda, sm_80+;\n"
		"                      the cpu backend accepts it and stays fp32); the\n"
		"                      summary says which math was used\n"
		"  --epilogue[=on|off] fuse bias+ReLU and their gradients into the GEMMs\n"
		"                      (cuBLASLt epilogues on cuda; on, the same bits on cpu)\n"
		"  --zero-copy[=on|off] the cpu backend reads each batch where the pipeline\n"
		"                      built it, no host-to-host copy (on; cuda copies)\n"
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
		"  --preloaded         after training, the same steps on a fresh model over\n"
		"                      batches preloaded in device memory: the never-starves\n"
		"                      ratio (always done with --model synthetic)\n"
		"  --deterministic     over several ranks (mpirun -np N pipe-train ...): sum\n"
		"                      gradients in rank order, the same model bits for the\n"
		"                      same world size and seed (else MPI_Allreduce's order)\n"
		"  --rank-timeout S    over several ranks: fail, naming the rank, when one\n"
		"                      has not answered for S seconds (60)\n"
		"  --bucket-mb N       over several ranks: sum gradients in buckets of N MiB\n"
		"                      (DDP's bucket_cap_mb), from the last layer, each as\n"
		"                      soon as backward has it (also with --deterministic,\n"
		"                      the same bits); default: a bucket a layer\n"
		"  --allreduce auto|mpi|nccl  how gradients are summed over ranks: NCCL\n"
		"                      on the GPUs (cuda device, libnccl.so.2 loaded at run\n"
		"                      time; alone: a group of one, a smoke test) or MPI on\n"
		"                      the host; auto: NCCL over several ranks on cuda when\n"
		"                      every rank has it, else MPI (said on stderr)\n"
		"  --rank-read split|all  over several ranks: each rank reads and decodes\n"
		"                      only its blocks, training on their rows of every\n"
		"                      global batch (split, the default where it can: the\n"
		"                      cpu device, no --pipeline, --on-corrupt or\n"
		"                      --isolate-map), or all the data, training on rows\n"
		"                      [r*b/N, (r+1)*b/N) (all)\n"
		"  --json              one JSON object on stdout at the end\n"
		"  --quiet             no progress bar, no epoch lines\n"
		"  --stats FILE        record run statistics in FILE while training (pipe-stat FILE)\n"
		"  --sweep B1,B2,...   batch-size sweep: --steps steps at each size, one table\n"
		"  --steps N           measured steps per batch size in a sweep (50)\n"
		"  --slo-ms X          step latency objective (p99) for the sweep's knee\n"
		"  --svg FILE          draw the sweep (throughput and p99 latency by batch size)\n");
}

/* Long options (their values index `given`). */
enum { O_PIPE = 256, O_BATCH, O_SHUF, O_CACHE, O_MAPT, O_PREF, O_DEPTH,
       O_MODEL, O_EPOCHS, O_LR, O_SEED, O_DEV, O_GRAPH, O_EVAL, O_SAVE,
       O_JSON, O_QUIET, O_STATS, O_SWEEP, O_STEPS, O_SLO, O_SVG, O_EPIPE,
       O_READT, O_CKPT, O_RESUME, O_FPRINT, O_STOPAFTER, O_ONCORR, O_MAXCORR,
       O_ISOLATE, O_PRELOAD, O_DETERM, O_RTIMEOUT, O_RREAD, O_BUCKET, O_TF32,
       O_EPI, O_ZC, O_ALLRED, O_LAST = O_ALLRED };

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
	n.tf32 = o->tf32;
	n.epilogue_off = o->epilogue_off;
	n.zero_copy_off = o->zero_copy_off;
	n.preloaded = o->preloaded;
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
	n.allreduce = o->allreduce;    /* how, not what, is summed */
	*o = n;
	return 0;
fail:
	free(r.shards == o->shards ? NULL : r.shards);
	free(*text);
	*text = NULL;
	return status;
}

static const struct option long_opts[] = {
	{ "pipeline", 1, 0, O_PIPE }, { "batch", 1, 0, O_BATCH },
	{ "shuffle", 1, 0, O_SHUF }, { "cache", 2, 0, O_CACHE },
	{ "map-threads", 1, 0, O_MAPT }, { "read-threads", 1, 0, O_READT },
	{ "prefetch", 1, 0, O_PREF },
	{ "depth", 1, 0, O_DEPTH }, { "model", 1, 0, O_MODEL },
	{ "epochs", 1, 0, O_EPOCHS }, { "lr", 1, 0, O_LR },
	{ "seed", 1, 0, O_SEED }, { "device", 1, 0, O_DEV },
	{ "graph", 2, 0, O_GRAPH }, { "eval", 1, 0, O_EVAL },
	{ "save", 1, 0, O_SAVE }, { "json", 0, 0, O_JSON },
	{ "quiet", 0, 0, O_QUIET }, { "stats", 1, 0, O_STATS },
	{ "sweep", 1, 0, O_SWEEP }, { "steps", 1, 0, O_STEPS },
	{ "slo-ms", 1, 0, O_SLO }, { "svg", 1, 0, O_SVG },
	{ "eval-pipeline", 1, 0, O_EPIPE },
	{ "checkpoint", 1, 0, O_CKPT }, { "resume", 1, 0, O_RESUME },
	{ "fingerprint", 1, 0, O_FPRINT }, { "stop-after-steps", 1, 0, O_STOPAFTER },
	{ "on-corrupt", 1, 0, O_ONCORR }, { "max-corrupt", 1, 0, O_MAXCORR },
	{ "isolate-map", 0, 0, O_ISOLATE }, { "preloaded", 0, 0, O_PRELOAD },
	{ "deterministic", 0, 0, O_DETERM }, { "rank-timeout", 1, 0, O_RTIMEOUT },
	{ "rank-read", 1, 0, O_RREAD }, { "bucket-mb", 1, 0, O_BUCKET },
	{ "tf32", 0, 0, O_TF32 }, { "epilogue", 2, 0, O_EPI }, { "zero-copy", 2, 0, O_ZC },
	{ "allreduce", 1, 0, O_ALLRED },
	{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
};

/* --NAME[=on|off]'s value arg (NULL: on) into *off (1 for off).  Returns
 * 0, or 2 (a usage error, said on stderr). */
static int off_arg(const char *name, const char *arg, int *off)
{
	if (arg && strcmp(arg, "on") && strcmp(arg, "off")) {
		fprintf(stderr, "pipe-train: --%s: expected on or off, got '%s'\n", name, arg);
		return 2;
	}
	*off = arg && !strcmp(arg, "off");
	return 0;
}

/* --NAME's integer value arg, lo..hi or "auto" (PF_AUTOTUNE), into *dst.
 * Returns 0, or 2 (a usage error, said on stderr). */
static int num_arg(const char *name, const char *arg, long lo, long hi, int *dst)
{
	if (!strcmp(arg, "auto")) {
		*dst = PF_AUTOTUNE;
		return 0;
	}
	char *end;
	long v = strtol(arg, &end, 10);
	if (*end || v < lo || v > hi) {
		fprintf(stderr, "pipe-train: --%s: expected %ld..%ld, got '%s'\n",
			name, lo, hi, arg);
		return 2;
	}
	*dst = (int)v;
	return 0;
}

/* A positive floating-point value of --NAME into *dst: 0, or 2. */
static int pos_arg(const char *name, const char *arg, double *dst)
{
	char *end;
	*dst = strtod(arg, &end);
	if (*end || !(*dst > 0)) {
		fprintf(stderr, "pipe-train: --%s: expected a positive number, got '%s'\n",
			name, arg);
		return 2;
	}
	return 0;
}

/* --on-corrupt and --max-corrupt (which implies skip).  0, or 2. */
static int corrupt_arg(opts *o, int c, const char *arg, const unsigned char *given)
{
	if (c == O_ONCORR) {
		if (!strcmp(arg, "fail") && !given[O_MAXCORR - O_PIPE]) {
			o->skip_corrupt = 0;
		} else if (!strcmp(arg, "skip")) {
			o->skip_corrupt = 1;
		} else {
			fprintf(stderr, "pipe-train: --on-corrupt: expected fail or skip%s, got '%s'\n",
				given[O_MAXCORR - O_PIPE] ? " (--max-corrupt implies skip)" : "",
				arg);
			return 2;
		}
		return 0;
	}
	char *end;
	long long v = strtoll(arg, &end, 10);
	if (*end || !*arg || v < 0) {
		fprintf(stderr, "pipe-train: --max-corrupt: expected a count >= 0, got '%s'\n",
			arg);
		return 2;
	}
	if (given[O_ONCORR - O_PIPE] && !o->skip_corrupt) {
		fprintf(stderr, "pipe-train: --max-corrupt implies --on-corrupt skip, not fail\n");
		return 2;
	}
	/* pf_source_opts.max_corrupt 0 means "no limit": N = 0 (no record
	 * may be lost) is the fail policy */
	o->max_corrupt = v;
	o->skip_corrupt = v > 0;
	return 0;
}

/* Option c (a long option's O_* value) with argument arg into o.  Returns
 * 0, or 2 on a bad value (said on stderr). */
static int set_option(opts *o, int c, const char *arg, const unsigned char *given)
{
	char *end;
	switch (c) {
	case O_PIPE: o->pipeline = arg; return 0;
	case O_EPIPE: o->eval_pipeline = arg; return 0;
	case O_BATCH: return num_arg("batch", arg, 1, 1 << 16, &o->batch);
	case O_SHUF: return num_arg("shuffle", arg, 0, 1 << 24, &o->shuffle);
	case O_CACHE: o->cache_on = 1; o->cache = arg; return 0;
	case O_MAPT: return num_arg("map-threads", arg, 1, 256, &o->map_threads);
	case O_READT: return num_arg("read-threads", arg, 1, 256, &o->read_threads);
	case O_PREF: return num_arg("prefetch", arg, 1, 1024, &o->prefetch);
	case O_DEPTH: return num_arg("depth", arg, 1, 16, &o->depth);
	case O_MODEL: o->model = arg; return 0;
	case O_EPOCHS: return num_arg("epochs", arg, 1, 100000, &o->epochs);
	case O_LR: return pos_arg("lr", arg, &o->lr);
	case O_SEED:
		o->seed = strtoull(arg, &end, 0);
		if (*end) {
			fprintf(stderr, "pipe-train: --seed: expected an integer, got '%s'\n", arg);
			return 2;
		}
		return 0;
	case O_DEV:
		if (strcmp(arg, "auto") && strcmp(arg, "cpu") && strcmp(arg, "cuda")) {
			fprintf(stderr, "pipe-train: --device: expected auto, cpu or cuda, got '%s'\n",
				arg);
			return 2;
		}
		o->device = arg;
		return 0;
	case O_GRAPH: {
		int off = 0, rc = off_arg("graph", arg, &off);
		o->graph = !off;
		return rc;
	}
	case O_EVAL: o->eval = arg; return 0;
	case O_SAVE: o->save = arg; return 0;
	case O_JSON: o->json = 1; return 0;
	case O_TF32: o->tf32 = 1; return 0;
	case O_EPI: return off_arg("epilogue", arg, &o->epilogue_off);
	case O_ZC: return off_arg("zero-copy", arg, &o->zero_copy_off);
	case O_QUIET: o->quiet = 1; return 0;
	case O_STATS: o->stats = arg; return 0;
	case O_SWEEP:
		if (parse_sweep(o, arg) < 0) {
			fprintf(stderr, "pipe-train: --sweep: expected up to %d batch sizes 1..65536 separated by commas, got '%s'\n",
				SWEEP_MAX, arg);
			return 2;
		}
		return 0;
	case O_STEPS: return num_arg("steps", arg, 1, 1000000, &o->sweep_steps);
	case O_SLO: return pos_arg("slo-ms", arg, &o->slo_ms);
	case O_SVG: o->svg = arg; return 0;
	case O_CKPT: o->checkpoint = arg; return 0;
	case O_RESUME: o->resume = arg; return 0;
	case O_FPRINT: o->fingerprint = arg; return 0;
	case O_STOPAFTER:
		o->stop_after = strtoull(arg, &end, 10);
		if (*end || !*arg || *arg == '-' || o->stop_after == 0) {
			fprintf(stderr, "pipe-train: --stop-after-steps: expected a positive integer, got '%s'\n",
				arg);
			return 2;
		}
		return 0;
	case O_ONCORR:
	case O_MAXCORR: return corrupt_arg(o, c, arg, given);
	case O_ISOLATE: o->isolate = 1; return 0;
	case O_PRELOAD: o->preloaded = 1; return 0;
	case O_DETERM: o->deterministic = 1; return 0;
	case O_BUCKET: {
		char *tail;
		o->bucket_mb = strtod(arg, &tail);
		if (*tail || !(o->bucket_mb >= 1e-6 && o->bucket_mb <= 4096)) {
			fprintf(stderr, "pipe-train: --bucket-mb: expected MiB (1e-6-4096), got '%s'\n",
				arg);
			return 2;
		}
		return 0;
	}
	case O_ALLRED:
		if ((o->allreduce = allreduce_parse(arg)) < 0) {
			fprintf(stderr, "pipe-train: --allreduce: expected auto, mpi or nccl, got '%s'\n",
				arg);
			return 2;
		}
		return 0;
	case O_RREAD:
		if (strcmp(arg, "split") && strcmp(arg, "all")) {
			fprintf(stderr, "pipe-train: --rank-read: expected split or all, got '%s'\n",
				arg);
			return 2;
		}
		o->rank_read_all = !strcmp(arg, "all");
		return 0;
	case O_RTIMEOUT: {
		char *tail;
		o->rank_timeout = strtod(arg, &tail);
		if (*tail || !(o->rank_timeout >= 0.1 && o->rank_timeout <= 86400)) {
			fprintf(stderr, "pipe-train: --rank-timeout: expected seconds (0.1-86400), got '%s'\n",
				arg);
			return 2;
		}
		return 0;
	}
	}
	return 2;
}

/* The name of the long option whose value is val. */
static const char *long_name(int val)
{
	for (const struct option *l = long_opts; l->name; l++)
		if (l->val == val)
			return l->name;
	return "?";
}

/*
 * What getopt_long refused (c is '?' or ':'), in one line naming the
 * option (argv[optind - 1] for a long one), then "try --help": the whole
 * help would bury the one word that is wrong.
 */
static void bad_option(int c, char **argv)
{
	if (c == ':') {
		fprintf(stderr, "pipe-train: --%s needs a value; try --help\n", long_name(optopt));
		return;
	}
	if (optopt >= O_PIPE) {
		fprintf(stderr, "pipe-train: --%s takes no value; try --help\n", long_name(optopt));
		return;
	}
	if (optopt) {
		fprintf(stderr, "pipe-train: unknown option '-%c'; try --help\n", optopt);
		return;
	}
	const char *arg = argv[optind - 1];
	int len = (int)strcspn(arg, "="), matches = 0;
	for (const struct option *l = long_opts; l->name && len > 2; l++)
		matches += !strncmp(l->name, arg + 2, (size_t)len - 2);
	fprintf(stderr, "pipe-train: %s option '%.*s'; try --help\n",
		matches > 1 ? "ambiguous" : "unknown", len, arg);
}

/* The flags of argv into o (given[c - O_PIPE]: option c was given).
 * Returns -1 to go on, or the exit status (0 after --help). */
static int parse_flags(int argc, char **argv, opts *o, unsigned char *given)
{
	/* the command line, for the stats file's label */
	for (int i = 0; i < argc; i++) {
		size_t l = strlen(o->label);
		if (l + 2 >= sizeof(o->label))
			break;
		snprintf(o->label + l, sizeof(o->label) - l, "%s%s", i ? " " : "", argv[i]);
	}
	int c;
	opterr = 0;     /* bad_option says it, in one line */
	while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 0;
		}
		if (c < O_PIPE || c > O_LAST) {
			bad_option(c, argv);
			return 2;
		}
		given[c - O_PIPE] = 1;
		if (set_option(o, c, optarg, given))
			return 2;
	}
	return -1;
}

/* A --pipeline or --eval-pipeline spec that does not parse is a usage
 * error (one that parses but does not build is one too: see build()).
 * Returns 0, or 2 (said on stderr). */
static int check_spec(const char *flag, const char *spec)
{
	pf_error err = { 0 };
	pf_spec *s;
	if (!spec)
		return 0;
	if (pf_spec_parse(&s, spec, &err) < 0) {
		fprintf(stderr, "pipe-train: %s: %s\n", flag, err.msg);
		return err.code == PF_ENOMEM ? 1 : 2;
	}
	pf_spec_free(s);
	return 0;
}

/* --eval: with a model, a glob must match (checked now, before the run
 * starts: 1 and a message naming it when not); --model none has no model
 * to evaluate (2).  Returns 0 or the exit status. */
static int check_eval(const opts *o, int with_model)
{
	if (!o->eval)
		return 0;
	if (!with_model) {
		fprintf(stderr, "pipe-train: --eval '%s': --model none trains no model to evaluate\n",
			o->eval);
		return 2;
	}
	pf_error err = { 0 };
	char **paths;
	size_t n;
	if (pf_paths_expand(&o->eval, 1, &paths, &n, &err) < 0) {
		fprintf(stderr, "pipe-train: --eval: %s\n", err.msg);
		return 1;
	}
	pf_paths_free(paths, n);
	return 0;
}

/* Flags that do not go together: 0, or 2 (said on stderr). */
static int check_flags(const opts *o)
{
	if (o->batch == PF_AUTOTUNE || o->shuffle == PF_AUTOTUNE || o->epochs == PF_AUTOTUNE ||
	    o->sweep_steps == PF_AUTOTUNE) {
		fprintf(stderr, "pipe-train: --batch, --shuffle, --epochs and --steps take numbers, not auto\n");
		return 2;
	}
	if (o->nsweep && (o->pipeline || o->stats || o->eval || o->save)) {
		fprintf(stderr, "pipe-train: --sweep sets the batch size itself: it does not combine with --pipeline, --stats, --eval or --save\n");
		return 2;
	}
	if (o->preloaded && o->nsweep) {
		fprintf(stderr, "pipe-train: --preloaded does not combine with --sweep\n");
		return 2;
	}
	if (o->nsweep && (o->checkpoint || o->resume || o->fingerprint || o->stop_after)) {
		fprintf(stderr, "pipe-train: --sweep does not combine with --checkpoint, --resume, --fingerprint or --stop-after-steps\n");
		return 2;
	}
	if (!o->nsweep && (o->slo_ms > 0 || o->svg)) {
		fprintf(stderr, "pipe-train: --slo-ms and --svg belong to --sweep\n");
		return 2;
	}
	if (o->isolate && o->pipeline) {
		fprintf(stderr, "pipe-train: --isolate-map applies to the decode map the flags build; not with --pipeline\n");
		return 2;
	}
	return 0;
}

/*
 * Started by mpirun as one of several ranks: o->ranks, and what each rank
 * says (rank 0 alone prints; --stats FILE is FILE.rankR on the others).
 * Alone: o->ranks stays NULL.  0 or an exit status.
 */
static int open_ranks(opts *o, int with_model, const run_state *rs)
{
	static char stats_name[4096];
	char msg[512];
	ranks *r;
	if (ranks_open(&r, o->rank_timeout, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "pipe-train: ranks: %s\n", msg);
		return 1;
	}
	if (ranks_world(r) == 1) {
		ranks_close(r);
		return 0;
	}
	o->ranks = r;
	o->local_ranks = ranks_local(r);
	int rank = ranks_rank(r);
	if ((!with_model && !o->synth_us) || o->nsweep || o->preloaded) {
		if (rank == 0)
			fprintf(stderr, "pipe-train: over %d ranks: only a model trains (not --model %s, --sweep or --preloaded)\n",
				ranks_world(r), o->model);
		ranks_close(r);
		return 2;
	}
	if (rank > 0) {
		o->quiet = 1;
		o->json = 0;
		if (o->stats) {
			snprintf(stats_name, sizeof(stats_name), "%s.rank%d", o->stats, rank);
			o->stats = stats_name;
		}
	} else if (rs && rs->world != ranks_world(r) && !o->quiet) {
		fprintf(stderr, "pipe-train: %s was written by %d rank(s), this run has %d: "
			"the same global batches go on, shared out anew\n",
			o->resume, rs->world > 0 ? rs->world : 1, ranks_world(r));
	}
	return 0;
}

int main(int argc, char **argv)
{
	opts o = { .model = "mlp:784-128-10", .device = "auto", .batch = 64,
		   .shuffle = 10000, .map_threads = PF_AUTOTUNE, .read_threads = PF_AUTOTUNE,
		   .prefetch = PF_AUTOTUNE, .depth = PF_AUTOTUNE, .epochs = 5, .lr = 1e-3,
		   .seed = 1, .sweep_steps = 50, .graph = 1 };
	unsigned char given[O_LAST - O_PIPE + 1] = { 0 };
	int rc = parse_flags(argc, argv, &o, given);
	if (rc >= 0)
		return rc;
	if ((rc = check_flags(&o)) != 0)
		return rc;
	char **positional = argv + optind;
	int npositional = argc - optind;
	o.shards = positional;
	o.nshards = npositional;
	char *run_text = NULL;
	run_state rs;
	if (o.resume) {
		if ((rc = load_resume(&o, given, positional, npositional, &rs, &run_text)) != 0)
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
		fprintf(stderr, "pipe-train: no shards given; try --help\n");
		return 2;
	}
	if ((rc = check_spec("--pipeline", o.pipeline)) != 0 ||
	    (rc = check_spec("--eval-pipeline", o.eval_pipeline)) != 0)
		return rc;
	pf_error err = { 0 };
	pf_model_cfg mc = { .max_batch = o.batch, .seed = o.seed, .lr = (float)o.lr,
			    .use_graph = o.graph, .epilogue_off = o.epilogue_off };
	int is_synth = synth_parse(o.model, &o.synth_us);
	if (is_synth < 0)
		return 2;
	if (is_synth && (o.nsweep || o.checkpoint || o.resume || o.save || o.eval || o.fingerprint)) {
		fprintf(stderr, "pipe-train: --model %s trains no model: not with --sweep, --checkpoint, --resume, --save, --eval or --fingerprint\n",
			o.model);
		return 2;
	}
	int with_model = strcmp(o.model, "none") != 0 && !is_synth;
	if (with_model && pf_model_parse(&mc, o.model, &err) < 0) {
		fprintf(stderr, "pipe-train: --model: %s\n", err.msg);
		return 2;
	}
	if ((rc = open_ranks(&o, with_model, o.resume ? &rs : NULL)) != 0)
		return rc;
	if (o.nsweep)
		return run_sweep(&o);
	if ((rc = check_eval(&o, with_model)) != 0)
		return rc;
	if (!with_model && !is_synth) {
		if (o.checkpoint || o.resume || o.fingerprint || o.stop_after || o.preloaded) {
			fprintf(stderr, "pipe-train: --checkpoint, --resume, --fingerprint, --stop-after-steps and --preloaded need a model\n");
			return 2;
		}
		return run_pipeline_only(&o);
	}
	int status = run_training(&o, mc, o.resume ? &rs : NULL);
	if (o.resume)
		free(o.shards);
	free(run_text);
	ranks_close(o.ranks);
	return status;
}
