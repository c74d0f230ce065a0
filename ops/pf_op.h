/*
 * pf_op.h - the internal interface between the pipeline runtime and the
 * dataset ops (one op per file in ops/).
 *
 * Every op file exports one descriptor (pf_op_desc.h): its kind, spec
 * parameters, builder, vtable and optimizer/AUTOTUNE hooks; the layers
 * above read descriptors and never name an op.
 *
 * Life of an op:
 *   constructor (pf_op_X_new, or the descriptor's build) allocates the
 *                         pf_op with its descriptor and config;
 *   prepare()             at iterator start, input already prepared: fills
 *                         the output schema, elem_bytes, buffer_bytes and
 *                         cardinality (no threads, no big allocations);
 *   start()               allocates runtime state, starts threads (epoch 0);
 *   next()                pull one element (0 / PF_END / <0), in the
 *                         consumer's thread;
 *   reset()               begin a new epoch: stop work in flight (even mid
 *                         epoch: take() ends early), drop buffered elements,
 *                         reset the input (pf_op_reset(op->in)), restart;
 *   stop()                stop threads and free runtime state (iterator free);
 *   destroy()             free the config (pipeline free).
 *
 * Elements move by value (pf_elem) and carry one reference to their storage.
 * An op that holds elements for long (shuffle, cache) copies them into
 * storage of its own (pf_elem_compact) so no upstream buffer is pinned.
 *
 * The fast path: an op that sets can_borrow lends its next element as
 * bytes (vt->borrow, pf_op_borrow) instead of building a pf_elem in a
 * pooled buffer: shards (records of a fixed-size schema, or the outputs of
 * a fused fixed-shape map, which its workers write into the block's slot
 * storage), and shuffle over such an input (which keeps copies in its
 * slots).  shuffle, batch and map consume it: one copy per element at
 * most, no allocation, no lock, no pf_elem per element.
 */
#ifndef PF_OP_H
#define PF_OP_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "pf_types.h"
#include "pf_maps.h"
#include "pf_id.h"
#include "pf_pool.h"
#include "pf_reader.h"
#include "pf_rng.h"
#include "pf_op_desc.h"

/* Every op's descriptor, pf_op_NAME (pf_op_list.h, made from the list in
 * ops/Makemodule.am). */
#define PF_OP(name) extern const pf_op_desc pf_op_##name;
#include "pf_op_list.h"
#undef PF_OP

/* What the ops of one iterator share. */
typedef struct pf_rt {
	pf_options opts;      /* resolved: budget, cpu_budget, seed */
	pf_pool *pool;        /* element buffers (the pipeline's) */
	pf_pool *batch_pool;  /* batch buffers: pf_options.batch_alloc's pool, else pool */
} pf_rt;

struct pf_op_vt {
	int (*prepare)(pf_op *op, pf_error *err);
	int (*start)(pf_op *op, pf_error *err);                 /* may be NULL */
	int (*next)(pf_op *op, pf_elem *out, pf_error *err);
	void (*reset)(pf_op *op);                                /* NULL: only resets input */
	void (*stop)(pf_op *op);                                 /* may be NULL */
	void (*destroy)(pf_op *op);                              /* may be NULL */
	/* optional (used only when op->can_borrow): the next element as bytes
	 * and its id, without building a pf_elem: a fixed-shape schema's
	 * canonical layout (pf_layout(schema, 1); *len = canon_bytes), or for
	 * the record schema "record: u8[?]" the record's bytes (*len <=
	 * canon_bytes).  The bytes stay valid until the next call of
	 * next/borrow/reset on the op.  0/PF_END/<0. */
	int (*borrow)(pf_op *op, const unsigned char **data, size_t *len,
		      uint64_t *id, pf_error *err);
};

typedef struct pf_stage_stats {
	_Atomic uint64_t elements, bytes, busy_ns, wait_ns, blocked_ns, total_ns;
	_Atomic uint64_t corrupt_blocks;  /* shards: damaged blocks skipped */
	_Atomic uint64_t skipped_records; /* shards: records lost in them */
	_Atomic uint64_t dropped_samples; /* map (isolate): samples dropped */
	_Atomic uint64_t decoded_records; /* shards: records of the blocks it read
					   * and decoded (read_world: its own) */
	_Atomic uint64_t cpu_ns;          /* CPU time its work took (thread CPU
					   * clocks; cpu_timed stages only) */
	_Atomic uint64_t runq_ns;         /* time its working threads were
					   * runnable but waited for a core (the
					   * machine is short of CPUs; 0 where the
					   * kernel does not say) */
	_Atomic uint64_t serial_cpu_ns;   /* a map on workers: the CPU time of its
					   * feeder, the one thread that pulls every
					   * input (and runs the inline stages before
					   * it: the serial path); read about once a
					   * millisecond */
	_Atomic int64_t occupancy;        /* elements buffered now (prefetch queue,
					   * shuffle buffer); -1: not measured */
	_Atomic int parallelism, depth;   /* in use (the autotuner changes them) */
	int autotuned;
	int max_parallelism, max_depth;   /* autotune: the most it may use (0: fixed) */
	int self_timed;       /* the op fills busy/wait/blocked itself (threads) */
	int cpu_timed;        /* the op fills cpu_ns/runq_ns: busy time less
			       * those is time its work waited (I/O, sleep) */
	uint32_t sample;      /* consumer-thread counter for sampled timing */
} pf_stage_stats;

/* op->lend_window of a lender whose lent bytes stay where they are until
 * it is stopped, or reset before its epoch ended (the in-memory cache's
 * chunks): a consumer may keep pointers to them instead of copies */
#define PF_LEND_STABLE 0x7fffffff

#define PF_CARD_UNKNOWN (-1)
#define PF_CARD_INFINITE (-2)

struct pf_op {
	const pf_op_desc *desc; /* its row of the op table */
	const pf_op_vt *vt;     /* desc->vt */
	pf_op *in;            /* input (NULL for a source) */
	pf_rt *rt;
	int index;            /* position as added (for messages) */
	char label[96];       /* "map#2(decode)": names the op in errors */
	char stage[48];       /* as a stage of the plan: its kind, or what is
			       * fused into it ("shards+map", "map+batch");
			       * set by the optimizer */
	pf_schema schema;     /* output schema, per sample */
	pf_schema record;     /* the source's record schema, passed along */
	size_t elem_bytes;    /* bound on the bytes of one output element */
	uint64_t buffer_bytes;/* worst case held in its own buffers */
	uint64_t optional_bytes; /* of those, what it can run without (prepare
			       * sets it); when the budget is short the iterator
			       * sets shed_optional, takes them off buffer_bytes,
			       * and start does without them */
	int shed_optional;
	int64_t cardinality;  /* per epoch; PF_CARD_* when not known */
	_Atomic uint64_t epoch; /* epochs begun (resets); an input reset ahead
			       * by its shuffle (pf_op_reset_ahead) counts
			       * its next epoch already */
	_Atomic uint64_t epoch_mark; /* epoch as of the start of the iterator's
			       * epoch: what a position records (set by
			       * pf_op_reset, not by one ahead, and then by
			       * pf_op_mark_epochs) */
	int removed;          /* dropped or fused away by the optimizer */
	int at_end;           /* returned PF_END this epoch: keeps returning it */
	int noop;             /* set by the builder: the stage changes nothing
			       * (or by prepare: the optimizer then drops it) */
	int split_files;      /* a source over world > 1 ranks (pf_options):
			       * prepare set it when it reads only this rank's
			       * files (the rank split after it then passes) */
	int batched;          /* its elements are batches (pf_elem.batch > 0):
			       * the optimizer sets the input's before prepare,
			       * which a batching op sets to 1 (and an op that
			       * takes samples only refuses a batched input) */
	pf_op *fused_map;     /* PF_OP_TAKES_MAP: the map fused into it (its
			       * workers map) */
	int fused_batch;      /* map: batch size fused into it (0 = none) */
	int fused_drop;       /* map: the fused batch's drop_remainder */
	int can_borrow;       /* vt->borrow works (set by prepare) */
	size_t canon_bytes;   /* can_borrow: bytes of the canonical layout, or
			       * the most bytes of a borrowed record */
	int lend_window;      /* can_borrow: lent bytes can stay valid through
			       * this many further borrow calls (0: only until
			       * the next call); set by prepare (shuffle's slots) */
	int lend_want;        /* set by the consumer's prepare: the window it
			       * relies on (<= lend_window; 0, the default:
			       * none); the lender keeps that much from start */
	pf_stage_stats st;
	/* sources with files (shards): their paths, indexed by a sample id's
	 * file part (pf_id_file(id)), valid from prepare to stop; NULL otherwise */
	char **src_paths;
	size_t src_npaths;
	struct pf_drop_log *drops; /* map with isolate: dropped samples (drop_log.c) */
	void *cfg;            /* builder arguments (owned; freed by destroy) */
	void *run;            /* runtime state (owned; freed by stop) */
};

static inline uint64_t pf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The same for a counter one thread at a time writes (what a stage
 * delivered, counted by its consumer): a load and a store, no locked
 * read-modify-write (four of those per record were 2% of a record
 * pipeline's serial thread); readers still see whole values. */
static inline void pf_stat_add_own(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static inline void pf_stat_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/*
 * Sampled timing: call k of an epoch is timed when pf_sample_scale(k) is
 * nonzero, its time counted that many times: one call in 8.  The first
 * call of an epoch, which may fill a buffer (a shuffle's), is timed and
 * counted once: scaled, it would count that fill eight times.  (One in 64
 * saved 1% of a record pipeline's CPU in clock reads, but a stage's rare
 * long calls, a wait for a block, then landed on a sampled call or not:
 * pipe-stat's self times swung several-fold between runs.)
 */
static inline uint32_t pf_sample_scale(uint32_t k)
{
	return (k & 7) ? 0 : (k ? 8 : 1);
}

/* Pull from op, counting elements/bytes; the time spent in the call is
 * sampled (pf_sample_scale) to keep per-element cost low. */
static inline int pf_op_next(pf_op *op, pf_elem *out, pf_error *err)
{
	if (op->at_end)
		return PF_END;
	uint32_t scale = pf_sample_scale(op->st.sample++);
	uint64_t t0 = scale ? pf_now_ns() : 0;
	int rc = op->vt->next(op, out, err);
	if (scale)
		pf_stat_add_own(&op->st.total_ns, scale * (pf_now_ns() - t0));
	if (rc == 0) {
		pf_stat_add_own(&op->st.elements, 1);
		pf_stat_add_own(&op->st.bytes, out->nbytes);
	} else if (rc == PF_END) {
		op->at_end = 1;
	}
	return rc;
}

/* Like pf_op_next through op->vt->borrow (op->can_borrow must be set). */
static inline int pf_op_borrow(pf_op *op, const unsigned char **data,
			       size_t *len, uint64_t *id, pf_error *err)
{
	if (op->at_end)
		return PF_END;
	uint32_t scale = pf_sample_scale(op->st.sample++);
	uint64_t t0 = scale ? pf_now_ns() : 0;
	int rc = op->vt->borrow(op, data, len, id, err);
	if (scale)
		pf_stat_add_own(&op->st.total_ns, scale * (pf_now_ns() - t0));
	if (rc == 0) {
		pf_stat_add_own(&op->st.elements, 1);
		pf_stat_add_own(&op->st.bytes, *len);
	} else if (rc == PF_END) {
		op->at_end = 1;
	}
	return rc;
}

/*
 * A working thread's CPU clock, read rarely: AUTOTUNE tells a stage that
 * waits (I/O, a remote fetch, a device) from one that computes by the
 * CPU time its threads used while busy.  Each thread owns one probe
 * (open it in the thread); pf_cpu_probe_tick adds the thread's CPU time
 * and run-queue wait since the last read to st->cpu_ns / st->runq_ns, at
 * most once per PF_CPU_PROBE_NS of wall time (two syscalls then, nothing
 * otherwise), so a fast map pays nothing per element.
 */
#define PF_CPU_PROBE_NS 1000000u
typedef struct pf_cpu_probe {
	int fd;           /* /proc/thread-self/schedstat, or -1 */
	uint64_t t;       /* wall time of the last read */
	uint64_t cpu, runq; /* the thread's clocks at the last read */
} pf_cpu_probe;

/* This thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID). */
uint64_t pf_thread_cpu_ns(void);

/* Open a probe for the calling thread and read its clocks (now: wall). */
void pf_cpu_probe_open(pf_cpu_probe *p, uint64_t now);

/* Add what the thread used since the last read when PF_CPU_PROBE_NS has
 * passed (now: wall time, which the caller has at hand). */
void pf_cpu_probe_tick(pf_cpu_probe *p, pf_stage_stats *st, uint64_t now);

/* Add what is left and close (may be called on a probe never opened
 * only if zeroed with fd = -1). */
void pf_cpu_probe_close(pf_cpu_probe *p, pf_stage_stats *st);

/* Begin a new epoch of op (and, through its reset, of its inputs). */
void pf_op_reset(pf_op *op);

/* The same, ahead of the iterator's epoch (a shuffle whose input ended
 * begins the input's next epoch while it drains): the epoch marks of op
 * and its inputs stay, so a position taken before the iterator's next
 * epoch begins does not see it.  In the caller's thread. */
void pf_op_reset_ahead(pf_op *op);

/* op and its inputs begin the iterator's epoch at their current epochs
 * (the shuffle, when it takes over what it read ahead). */
void pf_op_mark_epochs(pf_op *op);

/* Error helper: prefixes the op's label.  Keeps an earlier message. */
int pf_op_error(pf_op *op, pf_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- element helpers (pipeline/elem.c) ---------------------------------- */

/* Fixed fields of schema s laid out for a batch of B samples (B = 1 for an
 * element): off[i] is field i's offset in the buffer (64-byte aligned for
 * a batch, 8 for an element; -1 for a variable field); returns the bytes
 * of the fixed part. */
size_t pf_layout(const pf_schema *s, uint32_t B, int64_t off[PF_MAX_FIELDS]);

/* A new element of schema s in a pooled buffer of `bytes` (>= the fixed
 * layout): fixed fields point at their storage, variable fields are NULL
 * until pf_elem_alloc.  Returns 0 or PF_ENOMEM. */
int pf_elem_make(pf_rt *rt, const pf_schema *s, size_t bytes, pf_elem *e,
		 pf_error *err);

/* Copy `in` into a new compact pooled buffer *out (in is released).  Used by
 * ops that hold elements for long. */
int pf_elem_compact(pf_rt *rt, pf_elem *in, pf_elem *out, pf_error *err);

/* A read-only view *e of borrowed bytes (see pf_op_vt.borrow) of schema s
 * (fixed: canonical layout; else the record schema): no storage of its own
 * (ref_ NULL). */
void pf_elem_view(const pf_schema *s, const unsigned char *d, size_t len,
		  uint64_t id, pf_elem *e);

/* Repoint *e, a view pf_elem_view made of schema s (the same schema each
 * time), at the bytes d instead: only what differs is written (the hot
 * paths make one view per sample; zeroing a whole pf_elem each time was a
 * tenth of a pipeline's serial thread). */
void pf_elem_view_again(pf_elem *e, const unsigned char *d, size_t len, uint64_t id);

/* Drop the storage reference of e, a runtime temporary (an input the
 * runtime made and hands to no one): the rest of it is left as is. */
static inline void pf_elem_unref(pf_elem *e)
{
	pf_buf_unref(e->ref_);
	e->ref_ = NULL;
}

/* A new pooled element *out holding a copy of borrowed bytes (as above).
 * Returns 0 or PF_ENOMEM. */
int pf_elem_from_bytes(pf_rt *rt, const pf_schema *s, const unsigned char *d,
		       size_t len, uint64_t id, pf_elem *out, pf_error *err);

/* Bytes of field i of element e. */
size_t pf_elem_field_bytes(const pf_elem *e, int i);

/* The schema "record: u8[?]" of raw records, and "value: i64". */
const pf_schema *pf_record_schema(void);
const pf_schema *pf_value_schema(void);

/* ---- op constructors (one per file in ops/) ----------------------------- */

/* Each returns a new op (vt + cfg), or NULL with err set. */
pf_op *pf_op_range_new(int64_t start, int64_t stop, int64_t step, pf_error *err);
pf_op *pf_op_records_new(const void *const *recs, const size_t *lens, size_t n,
			 const pf_schema *rs, pf_error *err);
pf_op *pf_op_shards_new(const char *const *paths, size_t n,
			const pf_source_opts *o, pf_error *err);
pf_op *pf_op_tfrecord_new(const char *const *paths, size_t n,
			  const pf_source_opts *o, pf_error *err);
/* webdataset: paths take WebDataset's brace expansion ({000..099}, {a,b})
 * before globs; without libarchive it fails saying so. */
pf_op *pf_op_webdataset_new(const char *const *paths, size_t n,
			    const pf_source_opts *o, pf_error *err);
pf_op *pf_op_map_new(const char *name, pf_map_prepare_fn prepare, pf_map_fn fn,
		     void *user, const char *args, const pf_map_opts *o,
		     pf_error *err);
pf_op *pf_op_filter_new(const char *name, pf_filter_fn fn, void *user,
			pf_error *err);
pf_op *pf_op_take_new(int64_t n, pf_error *err);
pf_op *pf_op_skip_new(int64_t n, pf_error *err);
pf_op *pf_op_repeat_new(int64_t count, pf_error *err);
pf_op *pf_op_shard_new(int num, int index, pf_error *err);
/* The rank split of pf_options (world > 1) that the optimizer puts right
 * after the source: a shard(world, rank) that passes everything when the
 * source split by files (its split_files), and with PF_SPLIT_FILES fails
 * at prepare when it did not. */
pf_op *pf_op_rank_split_new(int world, int rank, int split, pf_error *err);
pf_op *pf_op_sleep_new(int64_t us, pf_error *err);
pf_op *pf_op_cache_new(const char *path, uint64_t max_bytes, pf_error *err);
pf_op *pf_op_shuffle_new(int64_t size, const pf_shuffle_opts *o, pf_error *err);
pf_op *pf_op_batch_new(int size, int drop, int par, pf_error *err);
pf_op *pf_op_padded_batch_new(int size, const pf_padded_opts *o, pf_error *err);
pf_op *pf_op_prefetch_new(int depth, pf_error *err);

/* Map-into-source fusion: run map op `map` (prepared) on ie (released)
 * into a new pooled element *out.  Thread-safe.  Returns 0 or a code with
 * the message naming the map op and the sample. */
int pf_map_one(pf_op *map, pf_elem *ie, pf_elem *out, pf_error *err);

/* Map-into-source fusion, fixed outputs: run map op `map` on `ie` (not
 * released: it owns nothing) into the canonical layout at dst
 * (map->canon_bytes bytes).  Thread-safe.  0 or a code with the message. */
int pf_map_into(pf_op *map, const pf_elem *ie, unsigned char *dst, pf_error *err);

/* Tests: call fn (pf_reader.h's fault hook) on every extent the shards
 * ops of this process read from now on; NULL turns it off.  Not
 * thread-safe against running iterators: set it between them. */
void pf_shards_set_test_fault(pf_reader_fault_fn fn, void *user);

/* ---- what the file sources share (ops/source_args.c) --------------------- */

/* Their spec parameters (shards, tfrecord), in this order. */
#define PF_SOURCE_PARAMS                                                        \
	{ "paths", PF_PARAM_PATHS, PF_PARAM_REQ | PF_PARAM_POS, 0, 0, 0, NULL,  \
	  "file names or glob patterns, quoted (\"data/x-*.pfs\")" },           \
	{ "cycle", PF_PARAM_INT_AUTO, 0, 1, 4096, 0, NULL,                      \
	  "files read at once, interleaved (default 4)" },                      \
	{ "block", PF_PARAM_INT, 0, 1, 1 << 20, 0, NULL,                        \
	  "consecutive records from one file per turn (default 1)" },           \
	{ "reads", PF_PARAM_INT_AUTO, 0, 1, 1024, 0, NULL,                      \
	  "read/decode threads (default 1)" },                                  \
	{ "shuffle_files", PF_PARAM_BOOL, 0, 0, 1, 0, NULL,                     \
	  "shuffle the file order by the seed, every epoch" },                  \
	{ "skip_corrupt", PF_PARAM_BOOL, 0, 0, 1, 0, NULL,                      \
	  "drop damaged blocks (counted) instead of failing" },                 \
	{ "max_corrupt", PF_PARAM_INT, 0, 0, INT64_MAX, 0, NULL,                \
	  "with skip_corrupt: fail past this many dropped records an epoch (default 0: no limit)" }, \
	{ "consumer_waits", PF_PARAM_BOOL, 0, 0, 1, 0, NULL,                    \
	  "shards: the thread pulling records never decodes a block itself" }

/* PF_SOURCE_PARAMS' resolved arguments a[1..] -> *o (a[0] are the paths). */
void pf_source_opts_from_args(const pf_arg *a, pf_source_opts *o);

/* The way back: paths and *o -> a[0..] (strings borrowed from paths). */
void pf_source_args(char *const *paths, size_t n, const pf_source_opts *o,
		    pf_arg *a);

/* ---- damage in the file sources (ops/source_damage.c) -------------------- */

/* Under skip_corrupt: warn once per file (*warned set on the first call)
 * that its damaged `unit`s ("block", "record") are skipped, and why. */
void pf_source_warn_damage(pf_op *op, unsigned char *warned, const char *path,
			   const char *unit, const char *why);
/* PF_ECORRUPT naming the damage `why` once more than o->max_corrupt records
 * were skipped this epoch (skipped), else 0 (also when there is no limit). */
int pf_source_check_max_corrupt(pf_op *op, const pf_source_opts *o,
				uint64_t skipped, const char *why, pf_error *err);
/* A damaged file whose lost records cannot be counted (its index, its
 * framing): error rc when a max_corrupt limit is set, else 0 (salvage). */
int pf_source_check_countable(pf_op *op, const pf_source_opts *o, int rc,
			      const char *why, pf_error *err);

/* ---- map isolation (pf_map_opts.isolate) -------------------------------- */

/* pf_map_one / pf_map_into: the map function failed on the sample, which
 * was dropped and logged (the op has isolate set).  Not an error. */
#define PF_MAP_DROPPED 2 /* > 0, and not PF_END */

/* The file of sample `id` as the source of op's chain names it (the source
 * is reached through op->in), or NULL when the source has no files. */
static inline const char *pf_op_sample_path(const pf_op *op, uint64_t id)
{
	while (op->in)
		op = op->in;
	uint64_t f = pf_id_file(id);
	return op->src_paths && f < op->src_npaths ? op->src_paths[f] : NULL;
}

/* The dropped-sample log of a map with isolate (ops/drop_log.c): keeps
 * the first PF_DROPPED_LOG_MAX entries and counts all; thread-safe.
 * new returns NULL when out of memory; free(NULL) is a no-op; clear
 * empties it (iterator start); add copies its strings (path may be NULL). */
struct pf_drop_log *pf_drop_log_new(void);
void pf_drop_log_free(struct pf_drop_log *l);
void pf_drop_log_clear(struct pf_drop_log *l);
void pf_drop_log_add(struct pf_drop_log *l, uint64_t id, const char *path,
		     const char *op, const char *msg);

/* The refusal of a batching op whose input is batched already. */
#define PF_BATCHED_TWICE "its input is batched already: batching batches is not supported " \
	"(tf.data would nest them); batch once, after the ops that work on samples"

/* Round x up to a multiple of a (a power of two). */
static inline size_t pf_align_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Allocate an op of descriptor d (its vtable d->vt) with a zeroed config
 * of cfg_size bytes; NULL with err set when out of memory. */
pf_op *pf_op_alloc(const pf_op_desc *d, size_t cfg_size, pf_error *err);

/* Free op: its vtable's destroy (config contents), its config, the op.
 * NULL is a no-op. */
void pf_op_free(pf_op *op);

/* Traits of op's descriptor (enum pf_op_trait); 0 for NULL. */
static inline unsigned pf_op_traits(const pf_op *op)
{
	return op ? op->desc->traits : 0;
}


#endif /* PF_OP_H */
