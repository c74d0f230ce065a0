/*
 * pf_types.h - the public types every layer shares: elements, the pipeline's
 * options, the ops' option structs and the map function signatures.
 *
 * It sits at the bottom of the tree (lib/) so that the ops, which implement
 * these types, need no header from the pipeline above them; pipefeed.h
 * includes it, and users read the types there as part of the API.
 */
#ifndef PF_TYPES_H
#define PF_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A knob value (parallelism, prefetch depth, cycle length): "choose for me".
 * Map parallelism, the shards' worker count and prefetch depth are tuned
 * while the iterator runs (see pf_iter_autotune_log); cycle_length is
 * resolved at start (16, at most the file count), because the element
 * order depends on it and must not depend on timing. */
#define PF_AUTOTUNE (-1)

/* Options of a pipeline.  A zeroed struct means the defaults. */
typedef struct pf_options {
	uint64_t memory_budget;   /* bytes all op buffers may hold at worst; 0 = 1 GiB */
	int cpu_budget;           /* worker threads in all (map, decode); 0 = online CPUs */
	uint64_t seed;            /* seed of every random choice (shuffle, shard order) */
	int nondeterministic;     /* 0 (default): same seed, same sequence, whatever
				   * the thread count; 1: allow unordered delivery */
	/* Optional allocator of batch buffers (batch, padded_batch, map+batch),
	 * e.g. pinned host memory for fast device copies.  Both or neither.
	 * batch_alloc(alloc_user, bytes) returns 64-byte aligned memory or NULL;
	 * each block holds a small header and then the batch (pf_elem.buf
	 * points inside it).  Blocks are pooled and reused; every block is
	 * given back through batch_free(alloc_user, p, bytes) (same bytes) at
	 * the latest when the pipeline is freed.  Called from pipeline threads. */
	void *(*batch_alloc)(void *user, size_t bytes);
	void (*batch_free)(void *user, void *p, size_t bytes);
	void *alloc_user;
	/* Data-parallel ranks (several processes training one model, e.g.
	 * under MPI; the library itself needs no MPI).  world 0 or 1: this
	 * pipeline reads everything.  world > 1: this pipeline (rank `rank`,
	 * 0 <= rank < world) reads its part of every epoch, and the parts of
	 * all ranks together hold every record of the epoch exactly once
	 * (uneven parts: no record is repeated to even them out).  How the
	 * source is split is `split` (enum pf_split).  Every rank must use
	 * the same pipeline, seed and world. */
	int world, rank;
	int split;
} pf_options;

/* pf_options.split: how a pipeline over world > 1 ranks splits its source. */
enum pf_split {
	PF_SPLIT_AUTO = 0,    /* whole files per rank (file i to rank i % world)
			       * when the source is `shards` over at least
			       * `world` files, else PF_SPLIT_RECORDS */
	PF_SPLIT_FILES = 1,   /* whole files; fewer files than ranks (or a
			       * source without files) fails at start */
	PF_SPLIT_RECORDS = 2, /* every rank reads the whole source and keeps
			       * records rank, rank + world, ... of each epoch
			       * (the `shard` op right after the source) */
};

/*
 * An element (batch == 0) or a batch (batch == B > 0).
 *
 * `schema` lists the per-sample fields (name, dtype, shape).  data[i] points
 * at field i; nitems[i] is its number of dtype items (for a batch: of the
 * whole batch, i.e. B * per-sample items).  A batch is structure-of-arrays:
 * field i is [B, dims...] and every field lives in the ONE contiguous buffer
 * [buf, buf + nbytes).
 *
 * Variable-length fields (a "?" dimension): in an element, var_len[i] is the
 * length of the "?" dimension.  In a padded batch, field i is
 * [B, var_len[i], other dims...] padded with zeros, and lengths[i] points at
 * 2 x B int32 (in the same buffer): lengths[i][k] (k < B) is the number of
 * items row k holds, never more than var_len[i] (so code that indexes a row
 * by it stays inside the row); lengths[i][B + k] is sample k's length
 * before padded_batch cut it to max_len (PF_PAD_TRUNCATE): the two differ
 * exactly for the samples that were cut.  For fixed fields var_len[i] is
 * 0 and lengths[i] is NULL.
 *
 * Source records (from shards, tfrecord, records) are elements of one field
 * "record: u8[?]"; pf_range gives "value: i64".
 */
typedef struct pf_elem {
	const pf_schema *schema;      /* owned by the pipeline */
	uint32_t batch;               /* 0: element; B: batch of B samples */
	uint64_t id;                  /* sample id (source order); batch: first sample's */
	void *data[PF_MAX_FIELDS];
	int64_t nitems[PF_MAX_FIELDS];
	int64_t var_len[PF_MAX_FIELDS];
	int32_t *lengths[PF_MAX_FIELDS];
	void *buf;                    /* the element's storage (may be shared, read-only) */
	size_t nbytes;
	void *ref_;                   /* runtime's: reference to the storage */
} pf_elem;

/* Options of the file sources (pf_shards, pf_tfrecord).  Zeroed = defaults. */
typedef struct pf_source_opts {
	int cycle_length;         /* files read at once, interleaved; 0 = 4; PF_AUTOTUNE */
	int block_length;         /* consecutive records from one file per turn; 0 = 1 */
	int num_parallel_reads;   /* decode/read threads; 0 = 1; PF_AUTOTUNE: starts
				   * at 1, raised while running up to the cpu budget */
	int shuffle_files;        /* nonzero: file order shuffled by the seed, per epoch */
	int skip_corrupt;         /* nonzero: drop damaged blocks (counted), go on */
	int64_t max_corrupt;      /* with skip_corrupt: fail (PF_ECORRUPT, naming
				   * the file and offset) once more than this many
				   * records were dropped in one epoch; 0 = no limit */
	int consumer_waits;       /* shards: nonzero: the thread pulling records
				   * only waits for the blocks being decoded.  By
				   * default (0) it decodes the epoch's next block
				   * itself rather than sleep, so reads = cores - 1
				   * keeps every core busy without a thread more;
				   * the records and their order are the same */
	int read_world, read_rank;/* shards, fixed-size records: read and decode
				   * only this rank's blocks.  With read_world W > 1,
				   * block b of file f (f: the file's index in the
				   * expanded, sorted list, as in a sample id) is
				   * read only when (f + b) % W == read_rank; the
				   * records of the others still come, in their
				   * places and with their ids, as zero bytes
				   * ("hollow"; pf_op_stats.decoded_records counts
				   * the records of the blocks really decoded).
				   * So the elements, their order and ids are the
				   * same at any W and every rank decodes about 1/W
				   * of the blocks (pipe-train over ranks: each
				   * trains on the rows of its blocks).  0 or 1:
				   * every block is read */
} pf_source_opts;

typedef struct pf_map_opts {
	int num_parallel_calls;   /* 0 = 1 (in the consumer's thread); PF_AUTOTUNE */
	int unordered;            /* nonzero: deliver in completion order (also
				   * needs pf_options.nondeterministic) */
	int isolate;              /* nonzero: a sample whose fn fails is dropped,
				   * counted (pf_op_stats.dropped_samples) and its
				   * id logged (pf_iter_dropped); the others keep
				   * their order and a batch after the map is filled
				   * with the next samples (no hole, whatever the
				   * thread count); 0 (default): the error stops the
				   * iterator, naming the sample: "map#1(decode):
				   * sample ID (FILE, record R): <fn's message>" */
} pf_map_opts;

/* filter: keep the elements for which fn returns 1, drop those for which it
 * returns 0; a negative return is an error.  Runs in the consumer's thread. */
typedef int (*pf_filter_fn)(void *user, const pf_elem *e, pf_error *err);

/* shuffle with a buffer of buffer_size elements (>= 1). */
typedef struct pf_shuffle_opts {
	int seed_set;             /* nonzero: use `seed`, else derive from pf_options.seed */
	uint64_t seed;
	int no_reshuffle;         /* nonzero: the same order every epoch */
} pf_shuffle_opts;

/* padded_batch: like batch, and variable fields are padded (with zeros) to
 * the longest in the batch, at most max_len; the per-batch quota
 * (max_len * size items) is the buffer's bound.  Longer samples are
 * truncated (PF_PAD_TRUNCATE) or fail with PF_ELIMIT (PF_PAD_REJECT). */
enum pf_pad_policy { PF_PAD_TRUNCATE = 0, PF_PAD_REJECT = 1 };
typedef struct pf_padded_opts {
	int64_t max_len;          /* >= 1: bound on the "?" dimension */
	int policy;               /* enum pf_pad_policy */
	int drop_remainder;
} pf_padded_opts;

/*
 * Samples dropped by maps with isolate (pf_map_opts.isolate): each one's
 * id, where it came from and why.  The log keeps the first
 * PF_DROPPED_LOG_MAX of the iterator's life (all epochs) and counts all
 * (pf_iter_ndropped).  With parallel map workers, entries are in the order
 * the failures happened, which need not be the input order.
 */
#define PF_DROPPED_LOG_MAX 256
typedef struct pf_dropped_sample {
	uint64_t id;              /* sample id */
	uint32_t file;            /* pf_id_file(id): index of its file in the source's
				   * expanded, sorted file list */
	uint64_t record;          /* pf_id_rec(id): its record index in that file */
	char path[256];           /* the file; "" when the source has none
				   * (range, records) */
	char op[96];              /* the op that dropped it: "map#1(decode)" */
	char msg[256];            /* the map function's message */
} pf_dropped_sample;

#ifdef __cplusplus
}
#endif
#endif /* PF_TYPES_H */
