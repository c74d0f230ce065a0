/*
 * shards.c - source: records of pfs shard files, interleaved like tf.data's
 * interleave(cycle_length, block_length), read and decoded by a pool of
 * worker threads (num_parallel_reads).
 *
 * Determinism: the order in which blocks are first needed is a pure
 * function of the file order (seeded shuffle per epoch) and the index's
 * record counts.  At the start of each epoch the interleave state machine
 * (ilv_step) is run once without data to list the blocks in that order
 * (the "tasks"); workers read and decode tasks strictly in list order into
 * a bounded set of W block buffers, and the consumer runs the same state
 * machine, taking each new block from its task.  The consumer holds at most
 * cycle_length blocks, and W > cycle_length, so the next needed task always
 * finds a free buffer: no deadlock, and the output never depends on timing.
 * W is cycle_length + 2 per worker + some slack (slack_entries).
 *
 * The consumer helps: when the block it needs is not ready and this
 * epoch's next task is not taken yet (a buffer free), it reads and decodes
 * that task itself rather than sleep (may_help).  So num_parallel_reads =
 * cores - 1 keeps every core busy without a thread more than cores: the
 * consumer's core does its per-record work and the decode share it has
 * time for.  Which thread decodes a task changes nothing in the output.
 *
 * With a fused map of fixed-shape output, a worker maps the block's
 * records straight into the entry's slab (canonical layout, one slot per
 * record), and the consumer lends them (shards_borrow) without a copy; a
 * finished block's entry is released at the next call (`pending`), so the
 * last record lent stays valid.  Raw records of a fixed-size schema are
 * lent the same way.
 *
 * Reads go through one pf_reader (io_uring, many reads in flight): a file
 * becomes a stream (its blocks as extents) when its first task is taken,
 * and workers call pf_reader_next in task order (a turn counter), so every
 * stream is consumed in its own order whatever the thread timing.
 *
 * Across epochs: once every task of the epoch is taken, idle workers plan
 * the next epoch (the same function of the seed and epoch number) and read
 * its first tasks ahead into free buffers, their turns numbered after this
 * epoch's, through streams of their own.  At the reset those buffers and
 * streams carry over (the reader too), so the next epoch's first blocks
 * are ready when it begins; a reset before every task of the epoch was
 * read still starts from scratch (a fresh reader).
 *
 * Damage (skip_corrupt): a block that fails its checks is dropped when the
 * consumer reaches it (counted: corrupt_blocks, and its records from the
 * index: skipped_records; one warning per file); once more than
 * max_corrupt records were dropped in an epoch the op fails.  A file whose
 * index is damaged (truncated) is opened by scanning its blocks: the
 * intact ones before the damage are read (one warning, one corrupt block;
 * the records lost are unknown, so with max_corrupt set it fails).  Read
 * errors (EIO) always fail.  A fused map with isolate drops the samples it
 * fails on (the worker marks them; the consumer passes over them).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"
#include "pf_prefetch.h"
#include "pf_paths.h"
#include "pf_reader.h"
#include "pf_shard.h"

typedef struct ilv_slot {
	int file;             /* position in the epoch's file order; -1 = empty */
	uint32_t block, rec;
	uint32_t nrec;        /* records of the block (from the index) */
	int skipping;         /* current block is damaged and skipped */
	int entry;            /* buffer holding the current block (consumer) */
} ilv_slot;

typedef struct ilv {
	int K, BL, cur, taken, active;
	uint32_t next_file;
	const uint32_t *order; /* the epoch's file order */
	ilv_slot slot[256];
} ilv;

/* An epoch's plan: its file order and block tasks in need order, and its
 * reads' state (per file: stream, tasks not read yet). */
typedef struct shard_plan {
	uint32_t *order;
	uint32_t *task_file, *task_block;
	int *task_entry;      /* the buffer holding each taken task */
	size_t ntasks;
	int *stream;          /* per file: its stream, -1 = none yet */
	uint32_t *left;       /* per file: tasks not read yet */
	uint64_t epoch;       /* the op epoch it is for */
} shard_plan;

enum { E_FREE, E_BUSY, E_READY, E_ERR };

typedef struct shard_entry {
	int state;
	pf_block blk;
	pf_error e;
	/* with a fused map: the block's records mapped by the worker, either
	 * into slab (fixed outputs: canonical layout, `stride` bytes apart)
	 * or as elements in outs */
	unsigned char *slab;
	pf_elem *outs;
	uint32_t nmapped, next_out;
	int map_err;          /* the map failed on record nmapped */
	unsigned char *drop;  /* fused map: record j was dropped (isolate) */
	int ahead;            /* holds a task of the next epoch */
} shard_entry;

typedef struct shards_cfg {
	char **pats;
	size_t npats;
	pf_source_opts o;
	/* resolved by prepare */
	char **paths;
	size_t npaths;
	pf_shard **sh;
	int K, P, W;
	int slack;            /* of the W: beyond K + 2P (slack_entries), shed
			       * when the memory budget needs them */
	int P0;               /* workers taking work at start (autotune: fewer than P) */
	size_t max_nrec;
	size_t stride;        /* fused fixed map: slab bytes per record, else 0 */
	int pending;          /* entry whose block is done, released at the next call */
	unsigned char *warned;/* per file: a skipped damaged block was reported */
	uint64_t *salvaged;   /* per file: index damaged, opened by scanning:
			       * the first byte not recovered + 1 (0: intact) */
	/* runtime */
	shard_plan pl;        /* this epoch's */
	shard_plan nx;        /* the next one's, read ahead (valid: nx_ok) */
	int nx_ok;
	size_t npre;          /* its tasks taken ahead */
	size_t next_task, consumed;
	shard_entry *ent;
	int nfree;
	ilv cons;             /* consumer's interleave state */
	pf_decoder *cdec;     /* the consumer's, when it decodes a task itself */
	pthread_mutex_t lock;
	pthread_cond_t cv_work, cv_done;
	pthread_t *th;
	int nth, idle, pause, quit, started, active, ids;
	/* reads: one pf_reader (io_uring); workers take their turn at it in
	 * task order, so each file's stream is read in block order */
	pf_reader *rd;
	pf_reader_opts ropts;
	pthread_mutex_t rlock;
	pthread_cond_t rcv;
	size_t rturn;         /* the turn: this epoch's tasks, then the next's */
	uint64_t corrupt_blocks;
	uint64_t skipped_records; /* this epoch (max_corrupt) */
} shards_cfg;

static void free_paths(pf_op *op, shards_cfg *c)
{
	op->src_paths = NULL;
	op->src_npaths = 0;
	for (size_t i = 0; i < c->npaths; i++) {
		free(c->paths[i]);
		if (c->sh)
			pf_shard_close(c->sh[i]);
	}
	free(c->paths);
	free(c->sh);
	free(c->salvaged);
	c->paths = NULL;
	c->sh = NULL;
	c->salvaged = NULL;
	c->npaths = 0;
}

/* Expand the patterns (each glob sorted) into c->paths. */
static int expand(pf_op *op, pf_error *err)
{
	shards_cfg *c = op->cfg;
	pf_error e = { 0 };
	int rc = pf_paths_expand((const char *const *)c->pats, c->npats, &c->paths,
				 &c->npaths, &e);
	if (rc)
		return pf_op_error(op, err, rc, "%s", e.msg);
	return 0;
}

/*
 * Buffers beyond K + 2P, for the consumer's lockstep use of K > 1 blocks:
 * the interleave finishes its K blocks within a few records of each
 * other, so with only 2P buffers spare the workers decode the next K, then
 * all wait while the consumer drains the current ones alone (on 2 cores
 * one idles: bench/pipeline_bench went 0.42 -> 0.54 of the decode limit
 * with 32 more at K = 4).  8 turns of K, up to SHARDS_SLACK buffers, at
 * most SHARDS_SLACK_BYTES of them and 1/16 of the memory budget, and not
 * more than the blocks there are.
 */
#define SHARDS_SLACK 32
#define SHARDS_SLACK_BYTES ((uint64_t)32 << 20)

static int slack_entries(const pf_op *op, int K, uint64_t per_entry, size_t nblocks)
{
	uint64_t bytes = op->rt->opts.memory_budget / 16;
	if (bytes > SHARDS_SLACK_BYTES)
		bytes = SHARDS_SLACK_BYTES;
	uint64_t n = per_entry ? bytes / per_entry : 0;
	uint64_t want = K > 1 ? 8 * (uint64_t)K : 0;
	if (n > want)
		n = want;
	if (n > SHARDS_SLACK)
		n = SHARDS_SLACK;
	return (int)(n < nblocks ? n : nblocks);
}

static int shards_prepare(pf_op *op, pf_error *err)
{
	shards_cfg *c = op->cfg;
	free_paths(op, c);
	op->src_paths = NULL;
	op->src_npaths = 0;
	int rc = expand(op, err);
	if (rc)
		return rc;
	if (!(c->sh = calloc(c->npaths, sizeof(*c->sh))) ||
	    !(c->salvaged = calloc(c->npaths, sizeof(*c->salvaged))))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	op->src_paths = c->paths;
	op->src_npaths = c->npaths;
	uint64_t nrec = 0;
	size_t max_raw = 0, max_nrec = 0, nblocks = 0;
	unsigned char s0[8192], s1[8192];
	size_t l0 = 0;
	for (size_t i = 0; i < c->npaths; i++) {
		pf_error e = { 0 };
		rc = pf_shard_open(&c->sh[i], c->paths[i], 0, &e);
		if ((rc == PF_ECORRUPT || rc == PF_ETRUNC) && c->o.skip_corrupt) {
			/* damaged index: keep the intact blocks before the damage */
			pf_error e2 = { 0 };
			uint64_t lost = 0;
			if (pf_source_check_countable(op, &c->o, rc, e.msg, err))
				return rc;
			if (!pf_shard_open(&c->sh[i], c->paths[i], PF_SHARD_OPEN_SCAN, &e2)) {
				pf_shard_recovered(c->sh[i], &lost);
				c->salvaged[i] = lost + 1;
				rc = 0;
			}
		}
		if (rc)
			return pf_op_error(op, err, rc, "%s", e.msg);
		const pf_schema *s = pf_shard_schema(c->sh[i]);
		if (i == 0) {
			op->record = *s;
			l0 = pf_schema_encode(s, s0, sizeof(s0));
		} else {
			size_t l1 = pf_schema_encode(s, s1, sizeof(s1));
			if (l1 != l0 || memcmp(s0, s1, l0)) {
				char a[256], b[256];
				pf_schema_format(&op->record, a, sizeof(a));
				pf_schema_format(s, b, sizeof(b));
				return pf_op_error(op, err, PF_EFORMAT,
						   "%s: schema \"%s\" differs from %s's \"%s\"",
						   c->paths[i], b, c->paths[0], a);
			}
		}
		nrec += pf_shard_nrecords(c->sh[i]);
		nblocks += pf_shard_nblocks(c->sh[i]);
		for (uint32_t b = 0; b < pf_shard_nblocks(c->sh[i]); b++) {
			const pf_block_info *bi = pf_shard_block(c->sh[i], b);
			if (bi->raw_len > max_raw)
				max_raw = bi->raw_len;
			if (bi->nrecords > max_nrec)
				max_nrec = bi->nrecords;
		}
	}
	op->schema = *pf_record_schema();
	int64_t rb = pf_schema_record_bytes(&op->record);
	op->elem_bytes = rb >= 0 ? (size_t)rb : max_raw;
	int K = c->o.cycle_length == PF_AUTOTUNE ? 16 : (c->o.cycle_length > 0 ? c->o.cycle_length : 4);
	if (K > 256)
		K = 256;
	if ((size_t)K > c->npaths)
		K = (int)c->npaths;
	c->K = K;
	/* workers: P threads, P0 of them working at first; an autotuned
	 * count starts low and the controller raises it (pf_shards_set_active) */
	int tune = c->o.num_parallel_reads == PF_AUTOTUNE;
	c->P0 = c->o.num_parallel_reads > 0 ? c->o.num_parallel_reads : 1;
	c->P = tune ? op->rt->opts.cpu_budget : c->P0;
	/* each buffer: decoded payload + its offsets table (+ compressed bytes
	 * read by pf_shard_read_block, at most the same again) */
	uint64_t per_entry = 2 * max_raw + 4 * (max_nrec + 1);
	c->slack = slack_entries(op, K, per_entry, nblocks);
	c->W = K + 2 * c->P + c->slack;
	op->st.parallelism = c->P0;
	op->st.max_parallelism = tune ? c->P : 0;
	op->st.depth = c->W;
	op->st.autotuned = c->o.cycle_length == PF_AUTOTUNE || tune;
	op->buffer_bytes = (uint64_t)c->W * per_entry;
	op->optional_bytes = (uint64_t)c->slack * per_entry;
	op->cardinality = (int64_t)nrec;
	c->max_nrec = max_nrec;
	size_t max_stored = 0;
	for (size_t i = 0; i < c->npaths; i++)
		for (uint32_t b = 0; b < pf_shard_nblocks(c->sh[i]); b++)
			if (pf_shard_block(c->sh[i], b)->stored_len > max_stored)
				max_stored = pf_shard_block(c->sh[i], b)->stored_len;
	pf_op *m = op->fused_map;
	if (m) {
		/* the map runs in our workers: its output is ours */
		op->schema = m->schema;
		op->elem_bytes = m->elem_bytes;
		if (m->st.autotuned) {
			tune = 1;
			if (op->rt->opts.cpu_budget > c->P)
				c->P = op->rt->opts.cpu_budget;
		} else if (m->st.parallelism > c->P0) {
			c->P0 = m->st.parallelism;
		}
		if (c->P0 > c->P)
			c->P = c->P0;
		c->stride = m->canon_bytes ? pf_align_up(m->canon_bytes, 64) : 0;
		per_entry += c->stride ? max_nrec * c->stride :
			     max_nrec * (m->elem_bytes + sizeof(pf_elem));
		c->slack = slack_entries(op, K, per_entry, nblocks);
		c->W = K + 2 * c->P + c->slack;
		op->st.parallelism = c->P0;
		op->st.max_parallelism = tune ? c->P : 0;
		op->st.depth = c->W;
		op->st.autotuned |= m->st.autotuned;
		op->can_borrow = c->stride > 0;
		op->canon_bytes = m->canon_bytes;
		op->buffer_bytes = (uint64_t)c->W * per_entry;
		op->optional_bytes = (uint64_t)c->slack * per_entry;
	} else {
		/* raw records of a fixed-size record schema can be lent */
		c->stride = 0;
		op->can_borrow = rb > 0;
		op->canon_bytes = rb > 0 ? (size_t)rb : 0;
	}
	memset(&c->ropts, 0, sizeof(c->ropts));
	/* reads in flight: two per buffer the workers fill, not per slack one */
	int W0 = K + 2 * c->P;
	c->ropts.queue_depth = (unsigned)(2 * W0);
	c->ropts.readahead = 4;
	c->ropts.max_bytes = (size_t)(2 * W0 + 4) * (max_stored + PF_SHARD_BLOCK_HEADER_SIZE);
	op->buffer_bytes += c->ropts.max_bytes + max_stored + PF_SHARD_BLOCK_HEADER_SIZE;
	return 0;
}

/* ---- the interleave state machine --------------------------------------- */

static uint32_t first_block(shards_cfg *c, const uint32_t *order, int file, uint32_t from)
{
	const pf_shard *s = c->sh[order[file]];
	uint32_t nb = pf_shard_nblocks(s);
	while (from < nb && pf_shard_block(s, from)->nrecords == 0)
		from++;
	return from;
}

/* Put the next file with records into slot k (or leave it empty). */
static void ilv_fill(shards_cfg *c, ilv *v, int k)
{
	ilv_slot *s = &v->slot[k];
	s->file = -1;
	while (v->next_file < c->npaths) {
		int f = (int)v->next_file++;
		uint32_t b = first_block(c, v->order, f, 0);
		if (b < pf_shard_nblocks(c->sh[v->order[f]])) {
			s->file = f;
			s->block = b;
			s->nrec = pf_shard_block(c->sh[v->order[f]], b)->nrecords;
			s->rec = 0;
			s->skipping = 0;
			v->active++;
			return;
		}
	}
}

static void ilv_init(shards_cfg *c, ilv *v, const uint32_t *order)
{
	memset(v, 0, sizeof(*v));
	v->order = order;
	v->K = c->K;
	v->BL = c->o.block_length > 0 ? c->o.block_length : 1;
	for (int k = 0; k < v->K; k++)
		ilv_fill(c, v, k);
}

/* Next record position: slot *k, file, block, record; *fresh when it is the
 * first record taken from that block.  Returns 0 or PF_END. */
static int ilv_step(shards_cfg *c, ilv *v, int *k, int *fresh)
{
	if (!v->active)
		return PF_END;
	while (v->slot[v->cur].file < 0) {
		v->cur = (v->cur + 1) % v->K;
		v->taken = 0;
	}
	*k = v->cur;
	*fresh = v->slot[v->cur].rec == 0;
	return 0;
}

/* Move past the record ilv_step returned.  Returns nonzero when the slot's
 * block is finished (its buffer can be released). */
static int ilv_advance(shards_cfg *c, ilv *v, int k)
{
	ilv_slot *s = &v->slot[k];
	int block_done = 0, file_done = 0;
	if (++s->rec >= s->nrec) {
		const pf_shard *sh = c->sh[v->order[s->file]];
		block_done = 1;
		s->block = first_block(c, v->order, s->file, s->block + 1);
		s->rec = 0;
		if (s->block >= pf_shard_nblocks(sh)) {
			file_done = 1;
			v->active--;
			ilv_fill(c, v, k);
		} else {
			s->nrec = pf_shard_block(sh, s->block)->nrecords;
		}
	}
	if (file_done || ++v->taken >= v->BL) {
		v->cur = (v->cur + 1) % v->K;
		v->taken = 0;
	}
	return block_done;
}

/*
 * With block_length 1, m turns around the slots take one record from each
 * file open: when no block ends within them the state is the same but m
 * records further in each.  The most such turns from here (0: step).
 */
static uint32_t ilv_rounds(shards_cfg *c, const ilv *v)
{
	if (v->BL != 1 || v->taken)
		return 0;
	uint32_t m = UINT32_MAX;
	for (int k = 0; k < v->K; k++) {
		const ilv_slot *s = &v->slot[k];
		if (s->file < 0)
			continue;
		uint32_t n = s->nrec;
		if (s->rec == 0 || n - s->rec < 2)
			return 0; /* a block's first or last record: step */
		if (n - s->rec - 1 < m)
			m = n - s->rec - 1;
	}
	return m == UINT32_MAX ? 0 : m;
}

/* The plan of op epoch `epoch` into *pl: file order and the block tasks in
 * need order (the interleave run without data, whole turns at a time where
 * no block ends), no reads yet.  Pure: the same for the same epoch. */
static void make_plan(pf_op *op, uint64_t epoch, shard_plan *pl)
{
	shards_cfg *c = op->cfg;
	for (uint32_t i = 0; i < c->npaths; i++)
		pl->order[i] = i;
	if (c->o.shuffle_files) {
		pf_rng r;
		pf_rng_seed(&r, op->rt->opts.seed, ((uint64_t)op->index << 40) ^ epoch ^ 0x5eed);
		pf_rng_shuffle_u32(&r, pl->order, (uint32_t)c->npaths);
	}
	ilv v;
	ilv_init(c, &v, pl->order);
	pl->ntasks = 0;
	int k, fresh;
	while (ilv_step(c, &v, &k, &fresh) == 0) {
		uint32_t m = ilv_rounds(c, &v);
		if (m) {
			for (int j = 0; j < v.K; j++)
				if (v.slot[j].file >= 0)
					v.slot[j].rec += m;
			continue;
		}
		if (fresh) {
			pl->task_file[pl->ntasks] = (uint32_t)v.slot[k].file;
			pl->task_block[pl->ntasks] = v.slot[k].block;
			pl->ntasks++;
		}
		ilv_advance(c, &v, k);
	}
	for (size_t f = 0; f < c->npaths; f++) {
		pl->stream[f] = -1;
		pl->left[f] = 0;
	}
	for (size_t t = 0; t < pl->ntasks; t++)
		pl->left[pl->order[pl->task_file[t]]]++;
	pl->epoch = epoch;
}

/* Begin the epoch of c->pl (its tasks from c->npre on not taken yet): the
 * consumer's state and the epoch's counts. */
static void begin_epoch(pf_op *op)
{
	shards_cfg *c = op->cfg;
	c->next_task = c->npre;
	c->consumed = 0;
	c->npre = 0;
	ilv_init(c, &c->cons, c->pl.order);
	c->skipped_records = 0;
	for (size_t f = 0; f < c->npaths; f++)
		if (c->salvaged[f]) { /* its lost tail: one damaged block */
			c->corrupt_blocks++;
			pf_stat_add(&op->st.corrupt_blocks, 1);
		}
}

/* Register file f's nonempty blocks as a reader stream. */
static int open_stream(shards_cfg *c, uint32_t f, pf_error *err)
{
	const pf_shard *sh = c->sh[f];
	uint32_t nb = pf_shard_nblocks(sh), n = 0;
	pf_extent *ext = malloc((nb ? nb : 1) * sizeof(*ext));
	if (!ext)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	for (uint32_t b = 0; b < nb; b++) {
		const pf_block_info *bi = pf_shard_block(sh, b);
		if (!bi->nrecords)
			continue;
		ext[n].offset = bi->offset;
		ext[n].len = PF_SHARD_BLOCK_HEADER_SIZE + bi->stored_len;
		ext[n].tag = b;
		n++;
	}
	int id = pf_reader_add_stream(c->rd, pf_shard_path(sh), ext, n, err);
	free(ext);
	return id;
}

/* Read and decode a task of plan pl (block b of file f) into en->blk,
 * through the reader, at turn `turn`. */
static int read_task(shards_cfg *c, shard_plan *pl, size_t turn, uint32_t f, uint32_t b,
		     pf_decoder *d, shard_entry *en)
{
	pthread_mutex_lock(&c->rlock);
	while (c->rturn != turn)
		pthread_cond_wait(&c->rcv, &c->rlock);
	int rc = c->rd ? 0 : pf_error_set(&en->e, PF_ENOMEM, "%s: no reader (out of memory)",
					   pf_shard_path(c->sh[f]));
	if (!rc && pl->stream[f] < 0) {
		int id = open_stream(c, f, &en->e);
		if (id < 0)
			rc = id;
		else
			pl->stream[f] = id;
	}
	pf_read rd;
	memset(&rd, 0, sizeof(rd));
	if (!rc) {
		rc = pf_reader_next(c->rd, pl->stream[f], &rd, &en->e);
		if (rc == PF_END)
			rc = pf_error_set(&en->e, PF_ESTATE, "%s: block %u: stream ended early",
					  pf_shard_path(c->sh[f]), b);
	}
	int last = --pl->left[f] == 0;
	c->rturn++;
	pthread_cond_broadcast(&c->rcv);
	pthread_mutex_unlock(&c->rlock);
	if (!rc && rd.tag != b)
		rc = pf_error_set(&en->e, PF_ESTATE, "%s: read block %u, expected %u",
				  pf_shard_path(c->sh[f]), rd.tag, b);
	if (!rc)
		rc = pf_shard_decode(c->sh[f], b, rd.data, rd.len, d, &en->blk, &en->e);
	pthread_mutex_lock(&c->rlock);
	if (rd.data)
		pf_reader_release(c->rd, &rd);
	if (last && pl->stream[f] >= 0) {
		pf_reader_close_stream(c->rd, pl->stream[f]);
		pl->stream[f] = -1;
	}
	pthread_mutex_unlock(&c->rlock);
	return rc;
}

/* ---- workers ------------------------------------------------------------ */

/* Claim task t of plan pl into a free entry (c->lock held; a free entry
 * must be there): the entry. */
static int claim_task(shards_cfg *c, shard_plan *pl, size_t t)
{
	int e = 0;
	while (c->ent[e].state != E_FREE)
		e++;
	c->nfree--;
	c->ent[e].state = E_BUSY;
	c->ent[e].ahead = pl == &c->nx;
	pl->task_entry[t] = e;
	return e;
}

/* Read and decode task t of plan pl (read turn `turn`) into entry e, and
 * map its records when a map is fused (stop at a failure), outside the
 * lock; then publish it (E_READY or E_ERR) under c->lock, which is held
 * on return. */
static void run_task(pf_op *op, shard_plan *pl, size_t t, size_t turn, int e, pf_decoder *d)
{
	shards_cfg *c = op->cfg;
	uint32_t f = pl->order[pl->task_file[t]], b = pl->task_block[t];
	pthread_mutex_unlock(&c->lock);

	uint64_t t0 = pf_now_ns();
	shard_entry *en = &c->ent[e];
	pf_error_clear(&en->e);
	en->nmapped = en->next_out = 0;
	en->map_err = 0;
	int rc = read_task(c, pl, turn, f, b, d, en);
	if (!rc && op->fused_map) {
		/* map every record of the block, in order; stop at a failure */
		pf_elem ie;
		memset(&ie, 0, sizeof(ie));
		ie.schema = pf_record_schema();
		for (uint32_t j = 0; c->stride && j < en->blk.nrecords; j++) {
			size_t len;
			ie.data[0] = (void *)pf_block_record(&en->blk, j, &len);
			ie.buf = ie.data[0];
			ie.nitems[0] = ie.var_len[0] = (int64_t)len;
			ie.nbytes = len;
			ie.id = pf_id_make(f, en->blk.first_record + j);
			en->drop[j] = 0;
			en->map_err = pf_map_into(op->fused_map, &ie,
						  en->slab + (size_t)j * c->stride, &en->e);
			if (en->map_err == PF_MAP_DROPPED) {
				en->map_err = 0;
				en->drop[j] = 1;
				pf_stat_add(&op->st.dropped_samples, 1);
			}
			if (en->map_err)
				break;
			en->nmapped++;
		}
		for (uint32_t j = 0; !c->stride && j < en->blk.nrecords; j++) {
			size_t len;
			memset(&ie, 0, sizeof(ie));
			ie.schema = pf_record_schema();
			ie.data[0] = (void *)pf_block_record(&en->blk, j, &len);
			ie.nitems[0] = ie.var_len[0] = (int64_t)len;
			ie.nbytes = len;
			ie.id = pf_id_make(f, en->blk.first_record + j);
			en->drop[j] = 0;
			en->map_err = pf_map_one(op->fused_map, &ie, &en->outs[j], &en->e);
			if (en->map_err == PF_MAP_DROPPED) {
				en->map_err = 0;
				en->drop[j] = 1;
				memset(&en->outs[j], 0, sizeof(en->outs[j]));
				pf_stat_add(&op->st.dropped_samples, 1);
			}
			if (en->map_err)
				break;
			en->nmapped++;
		}
	}
	pf_stat_add(&op->st.busy_ns, pf_now_ns() - t0);

	pthread_mutex_lock(&c->lock);
	c->ent[e].state = rc ? E_ERR : E_READY;
	pthread_cond_broadcast(&c->cv_done);
}

/*
 * Every task of the epoch is taken (c->lock held): may a worker read one of
 * the next epoch's ahead?  Plans that epoch at the first call.  A free
 * entry now is one this epoch no longer needs (each of its tasks has one).
 */
static int may_read_ahead(pf_op *op)
{
	shards_cfg *c = op->cfg;
	/* a fused map that isolates logs and counts the samples it drops when
	 * it maps them: not for the next epoch's before it begins */
	if (op->fused_map && op->fused_map->drops)
		return 0;
	if (!c->nx_ok) {
		make_plan(op, c->pl.epoch + 1, &c->nx);
		c->npre = 0;
		c->nx_ok = 1;
	}
	return c->npre < c->nx.ntasks;
}

static void *shards_worker(void *arg)
{
	pf_op *op = arg;
	shards_cfg *c = op->cfg;
	pf_decoder *d = pf_decoder_new();
	pthread_mutex_lock(&c->lock);
	int me = c->ids++;
	for (;;) {
		if (c->quit)
			break;
		/* this epoch's next task, else (all taken) one of the next epoch's */
		int ahead = !c->pause && c->next_task >= c->pl.ntasks && c->nfree && d &&
			me < c->active && may_read_ahead(op);
		if (!ahead &&
		    (c->pause || c->next_task >= c->pl.ntasks || !c->nfree || !d || me >= c->active)) {
			c->idle++;
			pthread_cond_broadcast(&c->cv_done);
			uint64_t t0 = pf_now_ns();
			pthread_cond_wait(&c->cv_work, &c->lock);
			pf_stat_add(&op->st.blocked_ns, pf_now_ns() - t0);
			c->idle--;
			continue;
		}
		if (ahead) {
			size_t t = c->npre++;
			int e = claim_task(c, &c->nx, t);
			run_task(op, &c->nx, t, c->pl.ntasks + t, e, d);
			continue;
		}
		size_t t = c->next_task++;
		int e = claim_task(c, &c->pl, t);
		run_task(op, &c->pl, t, t, e, d);
	}
	pthread_mutex_unlock(&c->lock);
	pf_decoder_free(d);
	return NULL;
}

static void shards_quiesce(shards_cfg *c, int quit)
{
	pthread_mutex_lock(&c->lock);
	c->pause = 1;
	if (quit)
		c->quit = 1;
	pthread_cond_broadcast(&c->cv_work);
	while (!quit && c->idle < c->nth)
		pthread_cond_wait(&c->cv_done, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

static void drop_outs(shard_entry *en)
{
	for (uint32_t j = en->next_out; en->outs && j < en->nmapped; j++)
		pf_elem_release(&en->outs[j]);
	en->nmapped = en->next_out = 0;
}

/* Free every entry; with keep_ahead, not those holding tasks read ahead
 * (the first npre of the next plan), which become this epoch's. */
static void free_entries(shards_cfg *c, int keep_ahead)
{
	c->nfree = 0;
	for (int i = 0; i < c->W; i++) {
		if (keep_ahead && c->ent[i].ahead) {
			c->ent[i].ahead = 0;
			continue;
		}
		drop_outs(&c->ent[i]);
		c->ent[i].state = E_FREE;
		c->ent[i].ahead = 0;
		c->nfree++;
	}
}

/* Reader faults for tests (pf_shards_set_test_fault), process-wide. */
static pf_reader_fault_fn test_fault;
static void *test_fault_user;

void pf_shards_set_test_fault(pf_reader_fault_fn fn, void *user)
{
	test_fault_user = user;
	test_fault = fn;
}

static void arm_test_fault(pf_reader *rd)
{
	if (rd && test_fault)
		pf_reader_set_fault(rd, test_fault, test_fault_user);
}


static int plan_alloc(shards_cfg *c, shard_plan *pl, size_t nb)
{
	pl->order = calloc(c->npaths, sizeof(*pl->order));
	pl->task_file = calloc(nb + 1, sizeof(uint32_t));
	pl->task_block = calloc(nb + 1, sizeof(uint32_t));
	pl->task_entry = calloc(nb + 1, sizeof(int));
	pl->stream = calloc(c->npaths, sizeof(int));
	pl->left = calloc(c->npaths, sizeof(uint32_t));
	return pl->order && pl->task_file && pl->task_block && pl->task_entry && pl->stream &&
	       pl->left ? 0 : -1;
}

static void plan_free(shard_plan *pl)
{
	free(pl->order);
	free(pl->task_file);
	free(pl->task_block);
	free(pl->task_entry);
	free(pl->stream);
	free(pl->left);
	memset(pl, 0, sizeof(*pl));
}

static int shards_start(pf_op *op, pf_error *err)
{
	shards_cfg *c = op->cfg;
	size_t nb = 0;
	for (size_t i = 0; i < c->npaths; i++)
		nb += pf_shard_nblocks(c->sh[i]);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cv_work, NULL);
	pthread_cond_init(&c->cv_done, NULL);
	c->pause = c->quit = c->idle = c->nth = c->ids = 0;
	c->started = 1; /* shards_stop cleans up from here on */
	if (op->shed_optional && c->slack) {
		c->W -= c->slack;
		c->slack = 0;
		op->st.depth = c->W;
	}
	int prc = plan_alloc(c, &c->pl, nb) | plan_alloc(c, &c->nx, nb);
	c->nx_ok = 0;
	c->npre = 0;
	c->ent = calloc((size_t)c->W, sizeof(*c->ent));
	c->th = calloc((size_t)c->P, sizeof(*c->th));
	pthread_mutex_init(&c->rlock, NULL);
	pthread_cond_init(&c->rcv, NULL);
	int rrc = pf_reader_new(&c->rd, &c->ropts, err);
	if (rrc)
		return rrc;
	arm_test_fault(c->rd);
	if (prc || !c->ent || !c->th)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	if (!(c->warned = calloc(c->npaths, 1)))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	for (size_t f = 0; f < c->npaths; f++)
		if (c->salvaged[f]) {
			c->warned[f] = 1;
			fprintf(stderr, "pipefeed: %s: %s: index damaged: reading the %u intact blocks before offset %llu, the rest is lost\n",
				op->label, c->paths[f], pf_shard_nblocks(c->sh[f]),
				(unsigned long long)(c->salvaged[f] - 1));
		}
	for (int i = 0; i < c->W; i++) {
		pf_block_init(&c->ent[i].blk);
		size_t nr = c->max_nrec ? c->max_nrec : 1;
		if (op->fused_map && c->stride &&
		    !(c->ent[i].slab = aligned_alloc(64, nr * c->stride)))
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
		if (op->fused_map && !c->stride &&
		    !(c->ent[i].outs = calloc(nr, sizeof(pf_elem))))
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
		if (op->fused_map && !(c->ent[i].drop = calloc(nr, 1)))
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	}
	free_entries(c, 0);
	c->pending = -1;
	c->active = c->P0;
	c->corrupt_blocks = 0;
	c->cdec = c->o.consumer_waits ? NULL : pf_decoder_new(); /* none: it only waits */
	op->st.self_timed = 1;
	make_plan(op, op->epoch, &c->pl);
	c->rturn = 0;
	begin_epoch(op);
	for (int i = 0; i < c->P; i++) {
		if (pthread_create(&c->th[i], NULL, shards_worker, op) != 0)
			return pf_op_error(op, err, PF_ENOMEM, "cannot start reader thread %d", i);
		c->nth++;
	}
	return 0;
}

static void release_entry(shards_cfg *c, int e)
{
	drop_outs(&c->ent[e]);
	pthread_mutex_lock(&c->lock);
	c->ent[e].state = E_FREE;
	c->nfree++;
	pthread_cond_broadcast(&c->cv_work);
	pthread_mutex_unlock(&c->lock);
}

int pf_shards_set_active(pf_op *op, int n)
{
	shards_cfg *c = op->cfg;
	if (!c->started)
		return op->st.parallelism;
	pthread_mutex_lock(&c->lock);
	if (n < 1)
		n = 1;
	if (n > c->nth)
		n = c->nth;
	c->active = n;
	op->st.parallelism = n;
	pthread_cond_broadcast(&c->cv_work);
	pthread_mutex_unlock(&c->lock);
	return n;
}

static void release_pending(shards_cfg *c)
{
	if (c->pending >= 0) {
		release_entry(c, c->pending);
		c->pending = -1;
	}
}

/* Would the consumer, about to wait for a block, rather read and decode
 * the next task itself (c->lock held)?  When this epoch's next task is
 * not taken and a buffer is free: the thread would sleep otherwise, and
 * with fewer workers than cores (a core for the consumer's own work) it
 * does the decode share that its spare time allows. */
static int may_help(shards_cfg *c)
{
	return !c->o.consumer_waits && !c->pause && c->next_task < c->pl.ntasks &&
	       c->nfree && c->cdec;
}

/* Take this epoch's next task and run it in the consumer's thread (c->lock
 * held, and held again on return): the nanoseconds it took. */
static uint64_t help(pf_op *op)
{
	shards_cfg *c = op->cfg;
	uint64_t t0 = pf_now_ns();
	size_t u = c->next_task++;
	int e = claim_task(c, &c->pl, u);
	run_task(op, &c->pl, u, u, e, c->cdec);
	return pf_now_ns() - t0;
}

/* Find the next record to hand out (skipping damaged blocks when asked):
 * entry *ep, record *recp of its block, file *filep (index into paths).
 * The record stays valid until the next call (a finished block's entry is
 * released then).  Returns 0, PF_END or a code. */
static int shards_pos(pf_op *op, int *ep, uint32_t *recp, int *filep, pf_error *err)
{
	shards_cfg *c = op->cfg;
	ilv *v = &c->cons;
	release_pending(c);
	for (;;) {
		int k, fresh;
		if (ilv_step(c, v, &k, &fresh))
			return PF_END;
		ilv_slot *s = &v->slot[k];
		if (fresh) {
			size_t t = c->consumed++;
			/* the plan (whole turns at a time) and this walk (record
			 * by record) must agree: a slip would hand out the wrong
			 * records silently */
			if (t >= c->pl.ntasks || c->pl.task_file[t] != (uint32_t)s->file ||
			    c->pl.task_block[t] != s->block)
				return pf_op_error(op, err, PF_ESTATE,
						   "internal: block %u of file %d is not task %zu of the plan",
						   s->block, s->file, t);
			pthread_mutex_lock(&c->lock);
			uint64_t t0 = pf_now_ns(), helped = 0;
			while (t >= c->next_task ||
			       (c->ent[c->pl.task_entry[t]].state != E_READY &&
				c->ent[c->pl.task_entry[t]].state != E_ERR)) {
				if (may_help(c)) {
					helped += help(op);
					continue;
				}
				pthread_cond_wait(&c->cv_done, &c->lock);
			}
			pf_stat_add(&op->st.wait_ns, pf_now_ns() - t0 - helped);
			int e = c->pl.task_entry[t];
			int bad = c->ent[e].state == E_ERR;
			pthread_mutex_unlock(&c->lock);
			s->entry = e;
			s->skipping = 0;
			if (bad) {
				int rc = c->ent[e].e.code ? c->ent[e].e.code : PF_EIO;
				/* only damage is skipped: a read error fails */
				if (!c->o.skip_corrupt || (rc != PF_ECORRUPT && rc != PF_ETRUNC)) {
					pf_op_error(op, err, rc, "%s", c->ent[e].e.msg);
					release_entry(c, e);
					return rc;
				}
				uint32_t f = c->pl.order[s->file];
				uint32_t nr = pf_shard_block(c->sh[f], s->block)->nrecords;
				c->corrupt_blocks++;
				c->skipped_records += nr;
				pf_stat_add(&op->st.corrupt_blocks, 1);
				pf_stat_add(&op->st.skipped_records, nr);
				if (pf_source_check_max_corrupt(op, &c->o, c->skipped_records,
								c->ent[e].e.msg, err)) {
					release_entry(c, e);
					return PF_ECORRUPT;
				}
				pf_source_warn_damage(op, &c->warned[f], c->paths[f], "block",
						      c->ent[e].e.msg);
				s->skipping = 1;
			}
		}
		uint32_t rec = s->rec;
		int e = s->entry;
		int file = (int)c->pl.order[s->file];
		int skipping = s->skipping;
		if (!skipping && op->fused_map && rec >= c->ent[e].nmapped) {
			/* the map failed here: report it at its place in the order */
			shard_entry *en = &c->ent[e];
			int code = en->map_err ? en->map_err : PF_EMAP;
			pf_error_set(err, code, "%s", en->e.msg);
			return code;
		}
		if (!skipping && op->fused_map && c->ent[e].drop[rec]) {
			skipping = 1; /* dropped by the map (isolate) */
			if (!c->stride)
				c->ent[e].next_out = rec + 1;
		}
		if (ilv_advance(c, v, k))
			c->pending = e;
		if (!skipping) {
			*ep = e;
			*recp = rec;
			*filep = file;
			return 0;
		}
		release_pending(c);
	}
}

static int shards_borrow(pf_op *op, const unsigned char **data, size_t *len,
			 uint64_t *id, pf_error *err)
{
	shards_cfg *c = op->cfg;
	int e, file;
	uint32_t rec;
	int rc = shards_pos(op, &e, &rec, &file, err);
	if (rc)
		return rc;
	shard_entry *en = &c->ent[e];
	*id = pf_id_make((uint64_t)file, en->blk.first_record + rec);
	/* the block's next record is wanted a turn of the interleave from now:
	 * start fetching it (a worker on another core wrote it) */
	if (c->stride) {
		*data = en->slab + (size_t)rec * c->stride;
		*len = op->canon_bytes;
		if (rec + 1 < en->blk.nrecords)
			pf_fetch_lines(*data + c->stride, op->canon_bytes);
		return 0;
	}
	*data = pf_block_record(&en->blk, rec, len);
	if (*len > op->canon_bytes)
		return pf_op_error(op, err, PF_ECORRUPT,
				   "%s: record %llu: %zu bytes, the schema says %zu",
				   c->paths[file], (unsigned long long)(en->blk.first_record + rec),
				   *len, op->canon_bytes);
	if (rec + 1 < en->blk.nrecords)
		pf_fetch_lines(*data + *len, *len);
	return 0;
}

static int shards_next(pf_op *op, pf_elem *out, pf_error *err)
{
	shards_cfg *c = op->cfg;
	int e, file;
	uint32_t rec;
	int rc = shards_pos(op, &e, &rec, &file, err);
	if (rc)
		return rc;
	shard_entry *en = &c->ent[e];
	uint64_t id = pf_id_make((uint64_t)file, en->blk.first_record + rec);
	if (op->fused_map && c->stride) {
		if ((rc = pf_elem_make(op->rt, &op->schema, op->canon_bytes, out, err)))
			return pf_op_error(op, err, rc, "out of memory");
		memcpy(out->buf, en->slab + (size_t)rec * c->stride, op->canon_bytes);
		out->id = id;
		return 0;
	}
	if (op->fused_map) {
		*out = en->outs[rec];
		memset(&en->outs[rec], 0, sizeof(en->outs[rec]));
		en->next_out = rec + 1;
		return 0;
	}
	size_t len;
	const void *p = pf_block_record(&en->blk, rec, &len);
	pf_buf *buf = pf_buf_get(op->rt->pool, len ? len : 1);
	if (!buf)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	memcpy(buf->data, p, len);
	memset(out, 0, sizeof(*out));
	out->schema = &op->schema;
	out->id = id;
	out->data[0] = buf->data;
	out->nitems[0] = out->var_len[0] = (int64_t)len;
	out->buf = buf->data;
	out->nbytes = len;
	out->ref_ = buf;
	return 0;
}

static void shards_reset(pf_op *op)
{
	shards_cfg *c = op->cfg;
	shards_quiesce(c, 0);
	c->pending = -1;
	/* the next epoch's tasks read ahead carry over when every read of
	 * this one was done (its streams closed: the reader holds only the
	 * next epoch's); else a fresh reader and a fresh start */
	int carry = c->nx_ok && c->nx.epoch == c->pl.epoch + 1 && c->rturn >= c->pl.ntasks;
	if (carry) {
		free_entries(c, 1);
		c->rturn -= c->pl.ntasks;
		shard_plan t = c->pl;
		c->pl = c->nx;
		c->nx = t;
	} else {
		c->npre = 0;
		free_entries(c, 0);
		pf_reader_free(c->rd);
		c->rd = NULL;
		pf_error e = { 0 };
		if (pf_reader_new(&c->rd, &c->ropts, &e))
			c->rd = NULL; /* reads then fail with a clear error, below */
		arm_test_fault(c->rd);
		make_plan(op, c->pl.epoch + 1, &c->pl);
		c->rturn = 0;
	}
	c->nx_ok = 0;
	begin_epoch(op);
	pthread_mutex_lock(&c->lock);
	c->pause = 0;
	pthread_cond_broadcast(&c->cv_work);
	pthread_mutex_unlock(&c->lock);
}

static void shards_stop(pf_op *op)
{
	shards_cfg *c = op->cfg;
	if (c->started) {
		c->started = 0;
		shards_quiesce(c, 1);
		for (int i = 0; i < c->nth; i++)
			pthread_join(c->th[i], NULL);
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->cv_work);
		pthread_cond_destroy(&c->cv_done);
		pthread_mutex_destroy(&c->rlock);
		pthread_cond_destroy(&c->rcv);
	}
	pf_reader_free(c->rd);
	c->rd = NULL;
	pf_decoder_free(c->cdec);
	c->cdec = NULL;
	for (int i = 0; c->ent && i < c->W; i++) {
		drop_outs(&c->ent[i]);
		free(c->ent[i].outs);
		free(c->ent[i].slab);
		free(c->ent[i].drop);
		pf_block_free(&c->ent[i].blk);
	}
	free(c->ent);
	free(c->warned);
	c->warned = NULL;
	free(c->th);
	plan_free(&c->pl);
	plan_free(&c->nx);
	c->nx_ok = 0;
	c->npre = 0;
	c->ent = NULL;
	c->th = NULL;
	c->nth = 0;
	free_paths(op, c);
}

static void shards_destroy(pf_op *op)
{
	shards_cfg *c = op->cfg;
	free_paths(op, c);
	for (size_t i = 0; i < c->npats; i++)
		free(c->pats[i]);
	free(c->pats);
}

static const pf_op_vt shards_vt = {
	.kind = "shards", .prepare = shards_prepare, .start = shards_start,
	.next = shards_next, .reset = shards_reset, .stop = shards_stop,
	.destroy = shards_destroy, .borrow = shards_borrow,
};

pf_op *pf_op_shards_new(const char *const *paths, size_t n,
			const pf_source_opts *o, pf_error *err)
{
	if (!paths || !n) {
		pf_error_set(err, PF_EINVAL, "shards: no paths given");
		return NULL;
	}
	if (o && ((o->cycle_length < 0 && o->cycle_length != PF_AUTOTUNE) ||
		  o->block_length < 0 ||
		  (o->num_parallel_reads < 0 && o->num_parallel_reads != PF_AUTOTUNE))) {
		pf_error_set(err, PF_EINVAL, "shards: bad cycle_length, block_length or num_parallel_reads");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&shards_vt, sizeof(shards_cfg), err);
	if (!op)
		return NULL;
	shards_cfg *c = op->cfg;
	if (o)
		c->o = *o;
	c->pats = calloc(n, sizeof(char *));
	for (size_t i = 0; c->pats && i < n; i++) {
		if (!paths[i] || !(c->pats[i] = strdup(paths[i]))) {
			c->npats = i;
			shards_destroy(op);
			free(op->cfg);
			free(op);
			pf_error_set(err, PF_EINVAL, "shards: NULL path or out of memory");
			return NULL;
		}
	}
	c->npats = n;
	op->is_shards = 1;
	if (!c->pats) {
		free(op->cfg);
		free(op);
		pf_error_set(err, PF_ENOMEM, "shards: out of memory");
		return NULL;
	}
	return op;
}
