/*
 * pipefeed.h - the public API of the pipefeed data pipeline.
 *
 * A pipeline is a chain of dataset ops with tf.data's meaning: a source
 * (shards, tfrecord, range, records) followed by map, filter, cache, shuffle,
 * batch, prefetch, ...  An iterator runs it and hands out elements or
 * batches; the caller releases each one.
 *
 * Simple use (error handling shortened):
 *
 *	pf_pipeline *p;
 *	pf_error err = {0};
 *	pf_pipeline_new(&p, NULL, &err);                  // default options
 *	const char *files[] = { "data/fmnist-train-*.pfs" };
 *	pf_shards(p, files, 1, NULL, &err);               // records "record: u8[?]"
 *	pf_map(p, "decode", "", NULL, &err);              // registered map function
 *	pf_shuffle(p, 10000, NULL, &err);
 *	pf_batch(p, 64, 0, &err);
 *	pf_prefetch(p, PF_AUTOTUNE, &err);
 *	pf_iter *it;
 *	pf_iter_new(&it, p, &err);                        // optimize, check budget, start
 *	pf_elem b;
 *	while (pf_iter_next(it, &b, &err) == 0) {         // PF_END ends the epoch
 *		const float *img = b.data[0];             // [b.batch, 28, 28]
 *		...
 *		pf_elem_release(&b);
 *	}
 *	pf_iter_free(it);
 *	pf_pipeline_free(p);
 *
 * Ownership and threads:
 *  - pf_pipeline and pf_iter are handles: created by *_new, freed by *_free;
 *    *_free(NULL) is a no-op.  A pipeline has at most one live iterator; the
 *    iterator must be freed before its pipeline.
 *  - Op builder calls copy their arguments (paths, names, args), except the
 *    memory given to pf_records, which must outlive the pipeline.
 *  - An element/batch from pf_iter_next belongs to the caller until
 *    pf_elem_release; it may be released from any thread, in any order, and
 *    stays valid after the iterator is freed (not after the pipeline is
 *    freed: elem->schema points into the pipeline).
 *  - One thread at a time calls pf_iter_next on a given iterator.
 *
 * Errors: every call returns 0 (or a count) or a negative PF_E* code from
 * pf_error.h and fills the pf_error (NULL allowed) with a message that names
 * the op ("map#2(decode): ...") and, where there is one, the file and offset.
 * An iterator that failed keeps returning the same error.
 */
#ifndef PIPEFEED_H
#define PIPEFEED_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_schema.h"
#include "pf_types.h"
#include "pf_maps.h"

#ifdef __cplusplus
extern "C" {
#endif


typedef struct pf_pipeline pf_pipeline;
typedef struct pf_iter pf_iter;

/* ==== pipeline options =================================================== */


/*
 * Create an empty pipeline.  opts may be NULL (defaults); it is copied.
 * Returns 0 or PF_ENOMEM / PF_EINVAL.  *p is NULL on failure.
 */
int pf_pipeline_new(pf_pipeline **p, const pf_options *opts, pf_error *err);

/* Free the pipeline and its ops, and its live iterator if there is one (free
 * the iterator first to keep the order of pf_iter_free clear).  NULL is a
 * no-op. */
void pf_pipeline_free(pf_pipeline *p);

/* Number of ops added so far. */
int pf_pipeline_nops(const pf_pipeline *p);

/* ==== elements and batches ============================================== */



/* ==== sources ============================================================ */


/*
 * Damaged data (both file sources).  By default a damaged block (shards:
 * checksum, structure, a read cut short) or record (tfrecord: a CRC) fails
 * the iterator with PF_ECORRUPT / PF_ETRUNC and a message naming the file,
 * the block or record and its byte offset.  With skip_corrupt it is dropped
 * instead: one warning per file on stderr, every intact record is delivered
 * once, and the stage's pf_op_stats count corrupt_blocks and
 * skipped_records (the records of the dropped blocks, from the shard's
 * index).  A file whose index is damaged (e.g. truncated) is read by
 * scanning its blocks up to the damage (one corrupt block; its lost
 * records are unknown, so with max_corrupt set that fails at
 * pf_iter_new).  TFRecord: a bad data CRC drops that record; a bad length
 * CRC or a cut frame ends the file there.  Read errors (EIO, a missing or
 * unreadable file) are not damage: they always fail, naming the file (and
 * the offset, for reads).
 */

/*
 * Source: records of pfs shard files, interleaved in exactly the order of
 * tf.data's interleave(cycle_length, block_length): cycle_length files at a
 * time, block_length records from each in turn; a file found at its end
 * passes its turn, and the next file of the list takes its place at that
 * place's next turn (an empty file costs one turn).  Each entry of paths may be a glob
 * pattern (expanded and sorted when the iterator starts; no match is an
 * error).  Elements: "record: u8[?]"; the shards' schema (all shards must
 * agree) is passed to map functions as pf_map_ctx.record.  id = file index
 * << 40 | record index in the file (pf_id.h: pf_id_file, pf_id_rec).
 */
int pf_shards(pf_pipeline *p, const char *const *paths, size_t npaths,
	      const pf_source_opts *opts, pf_error *err);

/* Source: records of TFRecord files (CRC32C-checked framing), with the same
 * interleave options as pf_shards.  The record schema is unknown (nfields 0).
 * (Named pf_tfrecords: pf_tfrecord is the reader type of pf_tfrecord.h.) */
int pf_tfrecords(pf_pipeline *p, const char *const *paths, size_t npaths,
		 const pf_source_opts *opts, pf_error *err);

/* Source: the integers start, start+step, ... < stop (step > 0) as elements
 * "value: i64" (id = position).  For tests and examples. */
int pf_range(pf_pipeline *p, int64_t start, int64_t stop, int64_t step,
	     pf_error *err);

/* Source: n records in caller memory (recs[i], lens[i] bytes) as "record: u8[?]"
 * elements (id = i).  The memory is not copied and must outlive the pipeline.
 * record_schema (may be NULL) is what map functions see as ctx->record. */
int pf_records(pf_pipeline *p, const void *const *recs, const size_t *lens,
	       size_t n, const pf_schema *record_schema, pf_error *err);

/* ==== map functions: see pf_maps.h (registry, pf_map_ctx, pf_elem_alloc) == */


/* ==== ops ================================================================ */


/* map with the registered function `name` (PF_EINVAL when unknown); args
 * (NULL = "") is handed to its prepare().  opts may be NULL. */
int pf_map(pf_pipeline *p, const char *name, const char *args,
	   const pf_map_opts *opts, pf_error *err);

/* map with a function given directly (not registered); `name` is used in
 * messages and stats. */
int pf_map_func(pf_pipeline *p, const char *name, pf_map_prepare_fn prepare,
		pf_map_fn fn, void *user, const char *args,
		const pf_map_opts *opts, pf_error *err);

/* filter: keep the elements for which fn (pf_filter_fn, pf_types.h) returns 1. */
int pf_filter(pf_pipeline *p, const char *name, pf_filter_fn fn, void *user,
	      pf_error *err);

/* take the first n elements (n >= 0) of each epoch; skip the first n. */
int pf_take(pf_pipeline *p, int64_t n, pf_error *err);
int pf_skip(pf_pipeline *p, int64_t n, pf_error *err);

/* repeat the input count times (count >= 1), or forever (count = -1); each
 * repetition is a new epoch of the input (reshuffled). */
int pf_repeat(pf_pipeline *p, int64_t count, pf_error *err);

/* shard (tf.data's Dataset.shard): keep the elements at positions index,
 * index + num_shards, ... (0 <= index < num_shards): together the ranks see
 * each element once.  (Named pf_rank_shard: pf_shard is the shard-file
 * type of pf_shard.h.) */
int pf_rank_shard(pf_pipeline *p, int num_shards, int index, pf_error *err);

/* sleep: delay each element by us microseconds (tests, benchmarks). */
int pf_sleep(pf_pipeline *p, int64_t us, pf_error *err);

/* cache: path NULL = in memory; otherwise a file.  The first epoch fills it;
 * later epochs read from it and the input is not run again.  An existing
 * complete cache file is used from the first epoch.  The in-memory cache
 * counts against the memory budget (bound: max_bytes; 0 = the whole
 * budget; passing it fails with PF_EBUDGET).
 *
 * A file cache is written to "path.tmp.PID.N" (unique to the writer) and
 * renamed into place only when the epoch completes, with a trailer (record
 * count and size); a file at path is replayed only when its trailer
 * matches its size and its header the schema.  So:
 *  - a partial cache (a writer killed midway, a cut or foreign file at
 *    path) is never used: the input runs and the file is rebuilt;
 *  - two writers (iterators or processes) filling the same path at once
 *    each rename a complete file; the last one stays; never a torn file;
 *  - a write that fails while filling (ENOSPC, EFBIG, EIO) falls back:
 *    the temp file is removed, one warning names the file and the reason,
 *    the epoch is delivered whole from the input, and the iterator reads
 *    its input every epoch from then on (no cache, no retry);
 *  - a temp file that cannot be created (no such directory, permission)
 *    is an error (PF_ENOENT / PF_EIO) naming it, at pf_iter_new;
 *  - a cache file found damaged while replaying (records that do not add
 *    up to its trailer) fails with PF_ECORRUPT naming the file and offset. */
int pf_cache(pf_pipeline *p, const char *path, uint64_t max_bytes,
	     pf_error *err);

int pf_shuffle(pf_pipeline *p, int64_t buffer_size,
	       const pf_shuffle_opts *opts, pf_error *err);

/* batch `size` elements (all fields fixed-shape) into one structure-of-arrays
 * buffer; the last, smaller batch is dropped when drop_remainder. */
int pf_batch(pf_pipeline *p, int size, int drop_remainder, pf_error *err);

/* The same with the batch's workers: when its input lends its elements for
 * long enough (a shuffle of fixed-size records, the in-memory cache),
 * num_parallel_calls workers copy whole batches while the consumer's thread
 * lists their inputs (same batches, same order, any count).  PF_AUTOTUNE
 * (what pf_batch does): one less than the CPU budget, at least one, for
 * batches of 16 KiB or more; 1: the consumer's thread; else 2..16. */
int pf_batch_par(pf_pipeline *p, int size, int drop_remainder, int num_parallel_calls,
		 pf_error *err);

int pf_padded_batch(pf_pipeline *p, int size, const pf_padded_opts *opts,
		    pf_error *err);

/* prefetch: a thread runs the input ahead, up to depth elements (>= 1, or
 * PF_AUTOTUNE). */
int pf_prefetch(pf_pipeline *p, int depth, pf_error *err);

/* ==== iterators ========================================================== */

/*
 * Start an iterator: resolve globs and AUTOTUNE values, prepare map
 * functions, optimize the graph (fuse map into batch where nothing between
 * needs the element; run a fixed-shape map right after shards in the
 * source's workers; turn shards -> map -> shuffle -> batch over fixed-size
 * records into shards -> shuffle -> map+batch, which gives the same
 * elements in the same order but shuffles the smaller records; drop no-op
 * stages), check that the ops' worst-case
 * buffers fit the memory budget (PF_EBUDGET naming the op that does not
 * fit), and start the ops' threads.
 */
int pf_iter_new(pf_iter **it, pf_pipeline *p, pf_error *err);

/*
 * The next element or batch into *out (the caller releases it with
 * pf_elem_release).  Returns 0, PF_END at the end of the epoch, or a
 * negative code.  Epochs: after PF_END, the next call starts the next epoch
 * (files and shuffle buffers reshuffled by the seed and the epoch number).
 * On error or PF_END *out is zeroed.
 */
int pf_iter_next(pf_iter *it, pf_elem *out, pf_error *err);

/* The current epoch number (0 for the first). */
uint64_t pf_iter_epoch(const pf_iter *it);

/* Stop the threads and free the iterator.  Elements not released yet stay
 * valid.  NULL is a no-op. */
void pf_iter_free(pf_iter *it);

/* The optimized plan as text, e.g. "shards -> map+batch(64) -> prefetch(4)";
 * returns the length needed (snprintf-like). */
size_t pf_iter_describe(const pf_iter *it, char *buf, size_t cap);

/* ==== iterator positions (checkpoint / resume) ========================== */

/*
 * Where an iterator stands, small enough for a checkpoint: no buffer
 * contents, only counters.  Because the element order is a function of the
 * seed and of each op's epoch counter (file order, shuffle seeds), an
 * iterator started at a position with the same pipeline (same ops, same
 * options and seed; thread counts may differ) delivers exactly the elements
 * the first one would have delivered from there on, across later epochs
 * too.  op_epoch[] is needed besides epoch: an op's counter can differ from
 * the iterator's (a complete cache no longer resets its input; a repeat
 * resets its input several times per epoch).
 *
 * A plain struct of integers: the caller may store it field by field.
 *
 * `order` versions the element order the position counts in: a position
 * counted in another order (0: stored before the field existed, 1: before
 * the file sources interleaved exactly as tf.data does) still means the same
 * at an epoch's start or end, and is refused in the middle of an epoch
 * (PF_EVERSION), where the same count would resume at other records.
 */
#define PF_POS_MAX_OPS 64
#define PF_POS_ORDER 2            /* the order this build counts in */
typedef struct pf_iter_pos {
	uint64_t epoch;           /* the iterator's epoch (pf_iter_epoch) */
	uint64_t delivered;       /* elements pf_iter_next returned in it */
	uint32_t at_end;          /* 1: its PF_END was returned too */
	uint32_t nops;            /* ops of the pipeline (pf_pipeline_nops) */
	uint64_t op_epoch[PF_POS_MAX_OPS]; /* op i's epoch counter when that
				   * epoch began (ops in the order added) */
	uint32_t order;           /* PF_POS_ORDER when made by this build */
} pf_iter_pos;

/*
 * The position of `it` now: the epoch in progress and the elements
 * pf_iter_next has returned in it.  Call it from the thread that calls
 * pf_iter_next (or while no call runs).  PF_ELIMIT when the pipeline has
 * more than PF_POS_MAX_OPS ops.
 */
int pf_iter_position(const pf_iter *it, pf_iter_pos *pos, pf_error *err);

/*
 * The position "epoch `epoch` began, n of its elements delivered" (at_end
 * 0), for a consumer that runs behind the iterator (a device prefetch
 * thread pulls ahead of the training loop: the loop knows how many batches
 * it used, the iterator has gone further).  `epoch` must be the epoch in
 * progress or one of the 15 before it; PF_ESTATE when the iterator has not
 * begun that epoch yet (it begins an epoch in the pf_iter_next call after
 * the previous PF_END), PF_ELIMIT when it is too old or the pipeline has
 * too many ops.  Safe to call from any thread while another runs
 * pf_iter_next.  n is not checked here (pf_iter_new_at checks it).
 */
int pf_iter_epoch_start(const pf_iter *it, uint64_t epoch, uint64_t n,
			pf_iter_pos *pos, pf_error *err);

/*
 * Like pf_iter_new, then bring the iterator to *pos: every op begins at
 * its recorded epoch counter (so the seeds match), then the first
 * pos->delivered elements of that epoch are pulled and released (and its
 * PF_END too when pos->at_end), before this returns.  Cost: up to one
 * epoch of the pipeline is run again (cheap for the position at an epoch's
 * start, the usual checkpoint).  pf_iter_epoch() is then pos->epoch.
 * Errors: PF_EINVAL (pos is of a pipeline with another number of ops, or
 * past the end of its epoch: the message names the epoch, its element
 * count and the position), PF_EVERSION (a mid-epoch position counted in
 * another element order, see pf_iter_pos.order), or the pipeline's own
 * errors; *it is NULL on failure.
 */
int pf_iter_new_at(pf_iter **it, pf_pipeline *p, const pf_iter_pos *pos,
		   pf_error *err);

/* ==== stats ============================================================== */

/* Counters of one stage of the running (optimized) plan; stage 0 is the
 * source, the last stage is what pf_iter_next pulls from.  Inline stages'
 * times are sampled (one call in 8); threaded stages time every unit. */
typedef struct pf_op_stats {
	const char *name;         /* "shards", "map+batch", ... (valid while the
				   * pipeline lives) */
	uint64_t elements;        /* elements (or batches) produced */
	uint64_t bytes;           /* bytes of what it produced */
	uint64_t busy_ns;         /* time spent doing its own work */
	uint64_t wait_input_ns;   /* time waiting on its input */
	uint64_t blocked_output_ns; /* time its threads waited for room downstream */
	uint64_t buffer_bytes;    /* declared worst-case buffer bytes */
	int parallelism;          /* threads in use (1 for inline ops) */
	int depth;                /* buffer depth (elements), 0 when none */
	int autotuned;            /* nonzero: a knob was PF_AUTOTUNE */
	uint64_t corrupt_blocks;  /* shards with skip_corrupt: damaged blocks skipped */
	uint64_t skipped_records; /* records lost in those blocks */
	uint64_t dropped_samples; /* map with isolate: samples dropped */
	int64_t occupancy;        /* elements in its buffer now (prefetch queue,
				   * shuffle buffer; compare with depth); -1 when
				   * the stage does not measure it */
	uint64_t cpu_ns;          /* CPU time its work took (its threads' CPU
				   * clocks; busy_ns less this is time its work
				   * waited: I/O, sleeps): a map on workers or
				   * autotuned; 0 where not measured */
	uint64_t serial_cpu_ns;   /* a map on workers: CPU time of its feeder,
				   * the one thread that pulls every input and
				   * runs the stages before it that work inline
				   * (the shuffle, the source's hand-out): the
				   * serial path's cost; 0 otherwise */
	uint64_t decoded_records; /* shards: records of the blocks it read and
				   * decoded, blocks read ahead for the next epoch
				   * included (with pf_source_opts.read_world only
				   * this rank's: the others' come as zeros) */
} pf_op_stats;

/* Number of stages of the running plan. */
int pf_iter_nstages(const pf_iter *it);

/* Snapshot of stage i's counters (0 <= i < nstages); PF_EINVAL otherwise.
 * Safe to call while another thread runs pf_iter_next. */
int pf_iter_stats(const pf_iter *it, int i, pf_op_stats *out);


/* Dropped sample i (0 = the first) into *out: 0, or PF_END when there is
 * no entry i (yet).  Safe to call while another thread runs pf_iter_next. */
int pf_iter_dropped(const pf_iter *it, size_t i, pf_dropped_sample *out);

/* Samples dropped so far by all maps with isolate (kept in the log or not). */
uint64_t pf_iter_ndropped(const pf_iter *it);

/* ==== autotune =========================================================== */

/*
 * When some knob is PF_AUTOTUNE, a controller thread of the iterator looks
 * every 10 ms at the consumer's stall (the share of time pf_iter_next
 * waits) and at the stages' busy/wait/blocked shares, and raises the knob
 * of the bottleneck stage: workers of a map (or of shards+map), within the
 * CPU budget, or a prefetch's depth (when its queue does fill up at
 * times), within what was reserved for it in the memory budget
 * at start.  The CPU budget is counted in cores used (the workers' thread
 * CPU clocks, and their run-queue wait, where a stage measures them; else
 * the time its threads kept busy): a stage that computes never gets more
 * workers than cpu_budget; a map that waits (its busy time mostly off the
 * CPU: I/O, a remote fetch, a sleep) has its workers doubled past that,
 * up to 64, while the CPU they add fits cpu_budget and their buffers the
 * memory budget (reserved at start).  A step whose
 * next window delivers no more elements per second than before is taken
 * back, and that knob is left alone from then on.  Each decision (steps
 * and take-backs) is logged.
 */
typedef struct pf_autotune_event {
	uint64_t t_ns;            /* since the iterator started */
	int stage;                /* index in the running plan (pf_iter_stats) */
	const char *knob;         /* "parallelism" or "depth" (static) */
	int old_value, new_value;
	char reason[112];         /* e.g. "stall 31.0%, map busy 97% per worker, ..." */
} pf_autotune_event;

/* Decision i (0 = the first) of the autotuner into *out: 0, or PF_END when
 * there is no decision i (yet).  The log keeps the first 256 decisions.
 * Safe to call while another thread runs pf_iter_next. */
int pf_iter_autotune_log(const pf_iter *it, size_t i, pf_autotune_event *out);

/* The consumer's stall so far: nanoseconds pf_iter_next spent waiting for
 * its input, and since the iterator started. */
void pf_iter_stall(const pf_iter *it, uint64_t *wait_ns, uint64_t *total_ns);

#ifdef __cplusplus
}
#endif
#endif /* PIPEFEED_H */
