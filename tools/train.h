/*
 * train.h - what pipe-train's files share: the options, the state a
 * checkpoint records, and the helpers the training loop and the sweep both
 * use.  Internal to tools/.
 *
 * The files and who calls whom (one direction, no cycle):
 *
 *   pipe-train.c    flags, usage, --resume's agreement checks, main
 *     -> train_loop.c   the training loop
 *     -> train_none.c   --model none (the pipeline alone)
 *     -> train_sweep.c  --sweep
 *     -> train_run.c    the run section of a checkpoint (text)
 *   train_loop.c, train_sweep.c
 *     -> train_common.c building the pipeline, binding batches to the
 *                       model's input, exiting on errors, the clock
 *   train_loop.c -> train_run.c (writing checkpoints)
 *   train_loop.c -> train_none.c (the --stats file)
 *   train_none.c -> train_common.c
 *   train_loop.c -> train_synth.c --model synthetic:STEP_US and the
 *                     preloaded baseline (the never-starves ratio)
 *
 * train_common.c, train_run.c and train_synth.c call nothing above them
 * (train_synth.c: die and now_s of train_common.c).
 */
#ifndef PF_TOOLS_TRAIN_H
#define PF_TOOLS_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "pf_devfeed.h"
#include "pf_model.h"
#include "pipefeed.h"

#define SWEEP_MAX 32

typedef struct opts {
	const char *pipeline, *eval_pipeline, *model, *device, *eval, *save, *cache;
	int cache_on, batch, shuffle, map_threads, read_threads, prefetch, depth, graph;
	int epochs, json, quiet;
	int tf32;                      /* --tf32: pf_device_opts.tf32 */
	int epilogue_off;              /* --epilogue=off: pf_model_cfg's */
	int zero_copy_off;             /* --zero-copy=off: the cpu backend copies
				        * each batch (pf_devfeed_opts.zero_copy) */
	double lr;
	uint64_t seed;
	char **shards;
	int nshards;
	const char *stats, *svg;       /* --stats FILE, --svg FILE (sweep) */
	char label[256];               /* the command line, for the stats file */
	int sweep[SWEEP_MAX], nsweep, sweep_steps;
	double slo_ms;                 /* 0: no SLO */
	/* interruption and resume */
	const char *checkpoint, *resume, *fingerprint;
	uint64_t stop_after;           /* --stop-after-steps: 0 = never */
	/* damaged input */
	int skip_corrupt, isolate;
	int64_t max_corrupt;
	/* --model synthetic:STEP_US: the step's microseconds; 0: not synthetic */
	uint32_t synth_us;
	int preloaded;                 /* --preloaded: the baseline with a model too */
	/* ranks (train_ranks.c): this process among the launcher's */
	struct ranks *ranks;           /* NULL: alone */
	int deterministic;             /* --deterministic: sums in rank order */
	double rank_timeout;           /* --rank-timeout SECONDS */
	int world_saved;               /* --resume: the checkpoint's world size */
	int rank_read_all;             /* --rank-read all: every rank reads all */
	double bucket_mb;              /* --bucket-mb N: all-reduce buckets; 0: a
					* bucket a layer */
	int read_world, read_rank;     /* build(): the training source reads only
					* this rank's blocks (train_split.c) */
	int allreduce;                 /* --allreduce: AR_AUTO, AR_MPI, AR_NCCL */
	int local_ranks;               /* ranks on this host (their pipelines
					* share its CPUs: train_common.c) */
} opts;

/* Where a run stands (a checkpoint's state).  A finished run (done) keeps
 * its iterator position too (has_pos: after the last epoch's end), so a
 * resume with a larger --epochs can train on. */
typedef struct run_state {
	int done, has_pos;
	int world;                     /* ranks that wrote it (1: alone) */
	uint64_t epoch, step, steps, images;
	double acc[4];
	pf_iter_pos pos;
} run_state;

/* ---- train_common.c: what the loop and the sweep share ---- */

/* Seconds on the monotonic clock. */
double now_s(void);
/* Print "pipe-train: what: message" and exit 1. */
void die(const char *what, const pf_error *e);
/* The training (train != 0) or eval pipeline over files: the shards, then
 * --pipeline or the flags; with a device, batches in its pinned memory (the
 * pipeline must be freed before the device is closed).  Exits on error
 * (status 2 when the --pipeline / --eval-pipeline spec does not build). */
pf_pipeline *build(const opts *o, const char *const *files, int nfiles,
		   int train, pf_device *dev);
/* Image (array) and label (scalar) fields of a batch schema; exits when
 * there are none. */
void find_fields(const pf_schema *s, int *img, int *lab);

/* The model input bound to a feed's batches (fields fixed by the first). */
typedef struct feed_input {
	int img, lab;
	pf_model_input in;
} feed_input;
/* Point fi's model input at device batch b (nin values per sample). */
void bind_input(feed_input *fi, const pf_devbatch *b, int nin);

/* The hash of row k of a batch: its x bytes, then its label bytes. */
uint64_t row_hash(uint64_t k, const unsigned char *x, size_t xn, const unsigned char *lab,
		  size_t ln);
/* --fingerprint's hash of device batch b: the sum of its rows' row_hash
 * (mod 2^64; syncs cs).  Exits on errors. */
uint64_t batch_hash(pf_device *dev, pf_stream *cs, const feed_input *fi,
		    const pf_devbatch *b);

/* Damage counters summed over an iterator's stages (NULL: zeros). */
typedef struct damage {
	uint64_t skipped_records, corrupt_blocks, dropped_samples;
} damage;
damage damage_sum(const pf_iter *it);

/* ---- train_loop.c: the runs ---- */

/* Train (the model, the eval, the reports) with model config mc.  rs: where
 * a resumed run starts (epoch, step, iterator position, partial sums), NULL
 * for a new run.  Catches SIGINT / SIGTERM first.  Returns the exit status
 * (0, 1 when --fingerprint could not be written, 130 when interrupted);
 * exits 1 on runtime errors. */
int run_training(const opts *o, pf_model_cfg mc, const run_state *rs);

/* ---- train_none.c: --model none, and the stats file ---- */

/* --model none: build the training pipeline, run it alone for o->epochs and
 * report its throughput.  Returns the exit status; exits on errors. */
int run_pipeline_only(const opts *o);
/* --stats FILE: the stats file, its sampler on iterator it; NULL without
 * --stats.  Exits on errors. */
struct pf_stats *train_stats_open(const opts *o, pf_iter *it);
/* Finish the stats file (before its iterator is freed).  NULL is a no-op;
 * exits on errors. */
void train_stats_close(struct pf_stats *st);

/* ---- train_run.c: the run section of a checkpoint ---- */

/* The run section for options o and state st: malloc'd text (*len bytes),
 * or NULL when out of memory. */
char *run_encode(const opts *o, const run_state *st, size_t *len);
/* Parse run section text (modified in place; r's strings point into it)
 * into options r (defaults already in it) and state st.  Returns 0, or -1
 * with a message in msg naming the line. */
int run_decode(char *text, opts *r, run_state *st, char *msg, size_t cap);
/* Both NULL or equal strings. */
int same_str(const char *a, const char *b);

/* ---- train_sweep.c: --sweep ---- */

/* Parse "B1,B2,..." into o->sweep; -1 when malformed. */
int parse_sweep(opts *o, const char *s);
/* Run the sweep o describes and print its table; the exit status. */
int run_sweep(const opts *o);

/* ---- train_synth.c: the synthetic consumer, the preloaded baseline ---- */

#define SYNTH_MAX_US 10000000            /* a synthetic step of 10 s at most */
#define PRELOAD_MAX 16                   /* batches kept for the baseline */
#define PRELOAD_MAX_BYTES (256u << 20)   /* ... in this many bytes at most */

/* --model SPEC: 1 and *us when SPEC is synthetic:STEP_US (1..SYNTH_MAX_US),
 * 0 when SPEC is not synthetic, -1 (said on stderr) when malformed. */
int synth_parse(const char *spec, uint32_t *us);
#define SYNTH_RING 1024                  /* synthetic steps in flight at most */

/* The synthetic consumer on one stream: its emulated device clock
 * (train_synth.c).  The host side (synth_step) and the stream's thread
 * (the step) share it; one host thread enqueues. */
typedef struct synth {
	pf_device *dev;
	pf_stream *s;
	uint32_t us;                  /* STEP_US */
	int cpu;                      /* the cpu backend: copy waits are seen */
	uint64_t enq[SYNTH_RING];     /* host: when step k was enqueued (ns) */
	uint64_t head;                /* host: steps enqueued */
	_Atomic uint64_t tail;        /* stream: steps run */
	uint64_t dev_end, wait_seen;  /* stream: the clock; the wait counter */
} synth;
/* Ready sy for STEP_US steps on stream s of dev. */
void synth_init(synth *sy, pf_device *dev, pf_stream *s, uint32_t us);
/* Enqueue one synthetic step on sy's stream: a host function that sleeps
 * to the step's end on the emulated device clock.  Exits on errors. */
void synth_step(synth *sy);

/* Batches copied into device memory of their own for the baseline. */
typedef struct preload {
	int n;
	size_t bytes;
	pf_devbatch b[PRELOAD_MAX];   /* data[] point into buf[k] */
	void *buf[PRELOAD_MAX];
} preload;
/* Keep a copy of device batch b (enqueued on s, after whatever s waits
 * for: call it between pf_devfeed_next and the release) while fewer than
 * PRELOAD_MAX batches and PRELOAD_MAX_BYTES are kept; else nothing.
 * Exits on errors. */
void preload_keep(preload *p, pf_device *dev, pf_stream *s, const pf_devbatch *b);
/* The baseline: `steps` synthetic steps of sy over p's batches, no
 * pipeline, on a fresh device clock; the stream is synced before and
 * after.  Returns seconds per step (0 when steps or p's batches are none). */
double preload_run(const preload *p, synth *sy, uint64_t steps);
/* Free p's device memory (s synced first by the caller). */
void preload_free(preload *p, pf_device *dev);

/* ---- train_ranks.c: the data-parallel step over ranks ---- */

struct ranks;
#define DIST_MAX_BUCKETS 63            /* and the rows: 64 sums a step */
typedef struct dist {
	struct ranks *r;
	int world, rank, deterministic;
	size_t n;                      /* model parameters */
	float *buf;                    /* n + 2: gradients x rows, rows, stop */
	/* buckets: gradients summed while backward still runs
	 * (dist_buckets); nbuckets 0: one sum after backward */
	pf_device *dev;
	pf_stream *copy;               /* gradients to the host, beside backward */
	pf_event *ev[64];              /* one a layer, the last layer's first */
	int inplace;                   /* the cpu device: buckets summed in the
					* model's gradient buffer (host memory),
					* scaled by 1/batch at the loss */
	int nlayers;
	double bucket_mb;              /* --bucket-mb; 0: a bucket a layer, none
					* with --deterministic */
	int nbuckets;
	size_t boff[DIST_MAX_BUCKETS], blen[DIST_MAX_BUCKETS]; /* bucket b: the
					* gradients' floats [boff, boff + blen) */
	int bready[DIST_MAX_BUCKETS];  /* ... ready once layer event bready is */
	double reduce_s, overlap_s;    /* the buckets' sums: their time, and the
					* part of it while backward still ran */
	uint64_t steps;                /* dist_step calls */
	double wait_first;             /* ranks_wait_s after the first (start-up) */
	/* NCCL (train_nccl.c): the sums on the device; nccl NULL: the host's */
	struct pf_nccl *nccl;
	pf_stream *comm;               /* the sums' stream */
	pf_event *comm_done;           /* ... recorded after a step's last sum */
	int nccl_pending;              /* a step's sums not yet seen done */
	uint64_t nccl_step;            /* ... that step */
	double timeout_s;              /* --rank-timeout: the wait for them */
	const char *allreduce;         /* "nccl", "mpi" or "none" (--json) */
} dist;
/* Reduce m's gradients in buckets overlapping backward, over ranks: with
 * d->bucket_mb > 0 (--bucket-mb) buckets of that many MiB (the last
 * smaller; consecutive layers from the last, as backward finishes them,
 * a large layer cut in pieces; in rank order with --deterministic: the
 * same bits as one sum after backward); else one bucket a layer, not
 * with --deterministic.  Exits on errors (more than DIST_MAX_BUCKETS
 * buckets: a larger --bucket-mb is needed). */
void dist_buckets(dist *d, pf_device *dev, pf_model *m);
/* Set up d for ranks r (NULL: alone) and a model of nparams. */
void dist_init(dist *d, struct ranks *r, int deterministic, size_t nparams);
void dist_free(dist *d);
/* This rank's rows [lo, hi) of a global batch of `rows`. */
void dist_share(const dist *d, uint32_t rows, uint32_t *lo, uint32_t *hi);
/* Point in at rows [lo, hi) of the batch it describes (nin values a row). */
void dist_slice(pf_model_input *in, uint32_t lo, uint32_t hi, int nin);
/* One step: gradients of in (NULL or 0 rows: none), their sum over the
 * ranks weighted by rows (in a global batch of `batch` rows), Adam.  Returns the rows of all ranks (0: no
 * rank had any: nothing was applied); *stop: some rank asked to stop.
 * Exits (ending the job) when the sum fails, naming the rank. */
uint64_t dist_step(dist *d, pf_model *m, pf_stream *s, const pf_model_input *in,
		   uint32_t batch, int want_stop, int *stop, uint64_t step);
/* The step of a model over ranks on this rank's rows of a global batch of
 * `rows` that `full` describes (nin values a row): dist_step on the slice;
 * with fpr (--fingerprint's rank file) its line "epoch step hash lo hi".
 * Returns the stop the ranks agreed on. */
int dist_train(dist *d, pf_model *m, pf_stream *s, const pf_model_input *full, int nin,
	       uint32_t rows, int want_stop, uint64_t step_total, FILE *fpr, uint64_t epoch,
	       uint64_t step, uint64_t hash);
/* --model synthetic over ranks: a step of step_us x this rank's share
 * of `rows` (waited for, as a real step waits for its gradients), then the
 * sum that agrees on a stop (returned). */
int dist_synth(dist *d, pf_device *dev, pf_stream *s, synth *sy, uint32_t step_us,
	       uint32_t rows, int want_stop, uint64_t step_total);
/* Sum v[0..n) over the ranks in rank order; exits on failure. */
void dist_sum(dist *d, double *v, size_t n, const char *what);
/* Print msg, end the job. */
void dist_fail(dist *d, const char *msg);

/* ---- train_nccl.c: the sums on the GPU (NCCL) ---- */

enum { AR_AUTO = 0, AR_MPI, AR_NCCL };
/* --allreduce's value: AR_*, or -1 when not auto, mpi or nccl. */
int allreduce_parse(const char *s);
/* Whether this rank can sum with NCCL: `want` (AR_*) on a device of kind
 * `kind` among `world` ranks.  0 with why not in note (or "" when there
 * is nothing to say: --allreduce mpi, auto on cpu or alone), or 1. */
int allreduce_choose(int want, const char *kind, int world, char *note, size_t cap);
/* After dist_init, before dist_buckets: the ranks agree on NCCL or the
 * host path for o->allreduce (rank 0 says why not NCCL on stderr when it
 * was asked for, or, unless quiet, when auto would have used it); with
 * NCCL, the group joined (rank 0's id broadcast over MPI) and its stream,
 * waits bounded by o->rank_timeout.  Exits on errors. */
void dist_nccl_open(dist *d, pf_device *dev, pf_model *m, const opts *o, int quiet);
/* Wait for the sums in flight, leave the group (dist_free calls it). */
void dist_nccl_close(dist *d);
/* dist_step on the device (d->nccl): the rows and the stop over MPI,
 * gradients scaled by 1/(all rows) and summed by NCCL in buckets while
 * backward runs, Adam after the last.  Waits (bounded) for the previous
 * step's sums first. */
uint64_t dist_step_nccl(dist *d, pf_model *m, pf_stream *s, const pf_model_input *in,
			int want_stop, int *stop, uint64_t step);

/* ---- train_split.c: each rank reads only its blocks ---- */

struct pf_shard;
typedef struct split {
	int on;                        /* rows by the owner of their block */
	int world, rank;
	struct pf_shard **sh;          /* the training files (their indexes) */
	size_t nsh;
	int64_t rec_bytes;             /* a record's bytes (-1: variable) */
	int idf;                       /* the batches' "id" field; -1: not yet */
	unsigned char *x, *lab;        /* this rank's rows of a batch */
	size_t xcap, lcap;
	double *decoded;               /* per rank: records decoded (split_sums) */
	uint64_t delivered;            /* records the source gave (each rank) */
} split;
/* Whether the ranks of a run with options o on a device of kind `kind`
 * can each read only their blocks: over ranks, the flags' pipeline (not
 * --pipeline), no damage skipped or samples isolated (the ranks must
 * agree on every record), the cpu device (rows are gathered from host
 * batches), and not --rank-read all.  (--model synthetic uses no rows:
 * its ranks just read less.) */
int split_wanted(const opts *o, int world, const char *kind);
/* Open o's training files' indexes (for the owner of a sample id) and,
 * with on, ready sp to train on this rank's rows.  Exits on errors. */
void split_open(split *sp, const opts *o, int world, int rank, int on);
void split_close(split *sp);
/* The owner of sample id `id` (pf_id.h): (file + block) % world, the rule
 * of pf_source_opts.read_world. */
int split_owner(const split *sp, uint64_t id);
/* The step on the rows of global batch b (fields of fi, nin values a row)
 * whose blocks this rank read: gathered, dist_step; with fpf (rank 0) and
 * fpr, the batch's hash summed over the ranks and the lines of
 * --fingerprint ("epoch step hash", and per run of this rank's rows
 * "epoch step hash lo hi").  Returns the stop the ranks agreed on. */
int split_train(split *sp, dist *d, pf_device *dev, pf_model *m, pf_stream *s,
		const feed_input *fi, const pf_devbatch *b, int nin, int want_stop,
		uint64_t step_total, FILE *fpf, FILE *fpr, uint64_t epoch, uint64_t step);
/* Records decoded by each rank (sums over the ranks: every rank calls). */
void split_sums(split *sp, dist *d, const pf_iter *it);
/* Its JSON members: "rank_read", "records_delivered", "decoded_records"
 * and "decoded_bytes" (per rank), each followed by a comma. */
void split_json(const split *sp, const opts *o);

#endif
