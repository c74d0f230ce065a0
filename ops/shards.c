/*
 * shards.c - source: records of pfs shard files, interleaved exactly as
 * tf.data's interleave(cycle_length, block_length) (ops/interleave.c, shared
 * with tfrecord), read and decoded by a pool of worker threads
 * (num_parallel_reads).  This file: the op (prepare, start, the consumer's
 * next/borrow, reset, stop); shards_read.c: the plan, reads and workers;
 * pf_shards_int.h: what they share.
 *
 * Determinism: the order in which blocks are first needed is a pure
 * function of the file order (seeded shuffle per epoch) and the index's
 * record counts.  At the start of each epoch the interleave is run once
 * without data (pf_shards_make_plan) to list the blocks in that order
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
#include "pf_shards_int.h"

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
	free(c->fnrec);
	c->paths = NULL;
	c->sh = NULL;
	c->salvaged = NULL;
	c->fnrec = NULL;
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

/* What prepare learns from the shards' indexes. */
typedef struct shard_sizes {
	uint64_t nrec;        /* records of all files */
	size_t max_raw, max_nrec, max_stored, nblocks; /* per block: the most */
} shard_sizes;

/*
 * Open every shard of c->paths (a damaged index under skip_corrupt: the
 * intact blocks before the damage, c->salvaged), check that their schemas
 * agree (op->record is the first's), count each file's records (c->fnrec)
 * and measure the blocks into *z.  0 or a code naming the file.
 */
static int open_shards(pf_op *op, shard_sizes *z, pf_error *err)
{
	shards_cfg *c = op->cfg;
	if (!(c->sh = calloc(c->npaths, sizeof(*c->sh))) ||
	    !(c->salvaged = calloc(c->npaths, sizeof(*c->salvaged))) ||
	    !(c->fnrec = calloc(c->npaths, sizeof(*c->fnrec))))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	memset(z, 0, sizeof(*z));
	unsigned char s0[8192], s1[8192];
	size_t l0 = 0;
	for (size_t i = 0; i < c->npaths; i++) {
		pf_error e = { 0 };
		int rc = pf_shard_open(&c->sh[i], c->paths[i], 0, &e);
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
		z->nrec += pf_shard_nrecords(c->sh[i]);
		z->nblocks += pf_shard_nblocks(c->sh[i]);
		for (uint32_t b = 0; b < pf_shard_nblocks(c->sh[i]); b++) {
			const pf_block_info *bi = pf_shard_block(c->sh[i], b);
			c->fnrec[i] += bi->nrecords;
			if (bi->raw_len > z->max_raw)
				z->max_raw = bi->raw_len;
			if (bi->nrecords > z->max_nrec)
				z->max_nrec = bi->nrecords;
			if (bi->stored_len > z->max_stored)
				z->max_stored = bi->stored_len;
		}
	}
	return 0;
}

/*
 * Over world > 1 ranks (pf_options), unless records are asked for: whole
 * files per rank, file f to rank f % world, when there are at least as
 * many files as ranks (the rank split after the source then passes).
 * Sample ids keep the global file index.  Returns the records this rank
 * reads of the nrec of all files.
 */
static uint64_t split_by_files(pf_op *op, uint64_t nrec)
{
	shards_cfg *c = op->cfg;
	const pf_options *o = &op->rt->opts;
	c->world = 1;
	c->rank = 0;
	c->nmine = c->npaths;
	op->split_files = 0;
	if (o->world <= 1 || o->split == PF_SPLIT_RECORDS || c->npaths < (size_t)o->world)
		return nrec;
	c->world = o->world;
	c->rank = o->rank;
	c->nmine = 0;
	nrec = 0;
	for (size_t f = (size_t)c->rank; f < c->npaths; f += (size_t)c->world) {
		c->nmine++;
		nrec += c->fnrec[f];
	}
	op->split_files = 1;
	return nrec;
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
	op->src_paths = c->paths;
	op->src_npaths = c->npaths;
	shard_sizes z;
	if ((rc = open_shards(op, &z, err)))
		return rc;
	uint64_t nrec = split_by_files(op, z.nrec);
	size_t max_raw = z.max_raw, max_nrec = z.max_nrec, nblocks = z.nblocks;
	op->schema = *pf_record_schema();
	int64_t rb = pf_schema_record_bytes(&op->record);
	op->elem_bytes = rb >= 0 ? (size_t)rb : max_raw;
	int K = c->o.cycle_length == PF_AUTOTUNE ? 16 : (c->o.cycle_length > 0 ? c->o.cycle_length : 4);
	if (K > PF_SHARDS_MAX_CYCLE)
		K = PF_SHARDS_MAX_CYCLE;
	if ((size_t)K > c->nmine)
		K = (int)c->nmine;
	c->K = K;
	/* workers: P threads, P0 of them working at first; an autotuned
	 * count starts low and the controller raises it (shards_set_active, the descriptor's set_parallelism) */
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
	size_t max_stored = z.max_stored;
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

/* Begin the epoch of c->pl (its tasks from c->npre on not taken yet): the
 * consumer's state and the epoch's counts. */
static void begin_epoch(pf_op *op)
{
	shards_cfg *c = op->cfg;
	c->next_task = c->npre;
	c->consumed = 0;
	c->npre = 0;
	pf_ilv_begin(&c->cons, c->pl.order, c->fnrec);
	c->skipped_records = 0;
	for (size_t f = 0; f < c->npaths; f++)
		if (c->salvaged[f] && f % (size_t)c->world == (size_t)c->rank)
			/* its lost tail (a file this rank reads): one damaged block */
			pf_damage_count_add(op, &c->dmg, c->pl.epoch, 1, 0);
	pf_damage_settle(op, &c->dmg);
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
	int prc = pf_shards_plan_alloc(c, &c->pl, nb) | pf_shards_plan_alloc(c, &c->nx, nb);
	int block = c->o.block_length > 0 ? c->o.block_length : 1;
	if (pf_ilv_init(&c->cons, c->K, block, c->nmine, err) ||
	    pf_ilv_init(&c->pw, c->K, block, c->nmine, err))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	c->nx_ok = 0;
	c->npre = 0;
	c->ent = calloc((size_t)c->W, sizeof(*c->ent));
	c->th = calloc((size_t)c->P, sizeof(*c->th));
	pthread_mutex_init(&c->rlock, NULL);
	pthread_cond_init(&c->rcv, NULL);
	int rrc = pf_reader_new(&c->rd, &c->ropts, err);
	if (rrc)
		return rrc;
	pf_shards_arm_test_fault(c->rd);
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
	pf_shards_free_entries(c, 0);
	c->pending = -1;
	c->active = c->P0;
	pf_damage_init(&c->dmg);
	c->cdec = c->o.consumer_waits ? NULL : pf_decoder_new(); /* none: it only waits */
	op->st.self_timed = 1;
	op->st.cpu_timed = 1; /* workers' CPU clocks, and the consumer's when it helps */
	pf_shards_make_plan(op, op->epoch, &c->pl);
	c->rturn = 0;
	begin_epoch(op);
	for (int i = 0; i < c->P; i++) {
		if (pthread_create(&c->th[i], NULL, pf_shards_worker, op) != 0)
			return pf_op_error(op, err, PF_ENOMEM, "cannot start reader thread %d", i);
		c->nth++;
	}
	return 0;
}

static void release_entry(shards_cfg *c, int e)
{
	pf_shards_drop_outs(&c->ent[e]);
	pthread_mutex_lock(&c->lock);
	c->ent[e].state = E_FREE;
	c->nfree++;
	pthread_cond_broadcast(&c->cv_work);
	pthread_mutex_unlock(&c->lock);
}

static int shards_set_active(pf_op *op, int n)
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
	uint64_t t0 = pf_now_ns(), c0 = pf_thread_cpu_ns();
	size_t u = c->next_task++;
	int e = pf_shards_claim_task(c, &c->pl, u);
	pf_shards_run_task(op, &c->pl, u, u, e, c->cdec);
	/* its CPU too (AUTOTUNE tells reads that wait from decoding by it):
	 * two clock reads a block */
	pf_stat_add(&op->st.cpu_ns, pf_thread_cpu_ns() - c0);
	return pf_now_ns() - t0;
}

/*
 * The consumer reached the first record of a block (slot k, cursor cu):
 * wait for its task (helping with the reads meanwhile) and take its
 * buffer; a damaged block is skipped under skip_corrupt (counted, and its
 * records passed over in their places), else it fails.  0 or a code.
 */
static int take_block(pf_op *op, int k, shard_cur *cu, pf_error *err)
{
	shards_cfg *c = op->cfg;
	const pf_ilv_slot *s = &c->cons.slot[k];
	size_t t = c->consumed++;
	/* the plan (whole rounds at a time) and this walk (record by record)
	 * must agree: a slip would hand out the wrong records silently */
	if (t >= c->pl.ntasks || c->pl.task_file[t] != (uint32_t)s->file ||
	    c->pl.task_block[t] != cu->block)
		return pf_op_error(op, err, PF_ESTATE,
				   "internal: block %u of file %d is not task %zu of the plan",
				   cu->block, (int)s->file, t);
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
	cu->entry = e;
	cu->skipping = 0;
	pf_damage_settle(op, &c->dmg); /* an epoch read ahead may be begun now */
	if (!bad)
		return 0;
	int rc = c->ent[e].e.code ? c->ent[e].e.code : PF_EIO;
	/* only damage is skipped: a read error fails */
	if (!c->o.skip_corrupt || (rc != PF_ECORRUPT && rc != PF_ETRUNC)) {
		pf_op_error(op, err, rc, "%s", c->ent[e].e.msg);
		release_entry(c, e);
		return rc;
	}
	uint32_t f = c->pl.order[s->file];
	uint32_t nr = pf_shard_block(c->sh[f], cu->block)->nrecords;
	c->skipped_records += nr;
	pf_damage_count_add(op, &c->dmg, c->pl.epoch, 1, nr);
	if (pf_source_check_max_corrupt(op, &c->o, c->skipped_records, c->ent[e].e.msg, err)) {
		release_entry(c, e);
		return PF_ECORRUPT;
	}
	pf_source_warn_damage(op, &c->warned[f], c->paths[f], "block", c->ent[e].e.msg);
	cu->skipping = 1;
	return 0;
}

/* Find the next record to hand out (skipping damaged blocks when asked):
 * entry *ep, record *recp of its block, file *filep (index into paths).
 * The record stays valid until the next call (a finished block's entry is
 * released then).  Returns 0, PF_END or a code. */
static int shards_pos(pf_op *op, int *ep, uint32_t *recp, int *filep, pf_error *err)
{
	shards_cfg *c = op->cfg;
	pf_ilv *v = &c->cons;
	release_pending(c);
	for (;;) {
		int k = pf_ilv_next(v);
		if (k < 0)
			return PF_END;
		shard_cur *cu = &c->ccur[k];
		if (shards_cursor_at(c, v, k, cu)) {
			int rc = take_block(op, k, cu, err);
			if (rc)
				return rc;
		}
		uint32_t rec = cu->rec;
		int e = cu->entry;
		int file = (int)c->pl.order[v->slot[k].file];
		int skipping = cu->skipping;
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
		if (++cu->rec >= cu->nrec)
			c->pending = e; /* the block is done */
		pf_ilv_took(v, k);
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
	pf_shards_quiesce(c, 0);
	c->pending = -1;
	/* the next epoch's tasks read ahead carry over when every read of
	 * this one was done (its streams closed: the reader holds only the
	 * next epoch's); else a fresh reader and a fresh start */
	int carry = c->nx_ok && c->nx.epoch == c->pl.epoch + 1 && c->rturn >= c->pl.ntasks;
	if (carry) {
		pf_shards_free_entries(c, 1);
		c->rturn -= c->pl.ntasks;
		shard_plan t = c->pl;
		c->pl = c->nx;
		c->nx = t;
	} else {
		c->npre = 0;
		pf_shards_free_entries(c, 0);
		pf_reader_free(c->rd);
		c->rd = NULL;
		pf_error e = { 0 };
		if (pf_reader_new(&c->rd, &c->ropts, &e))
			c->rd = NULL; /* reads then fail with a clear error, below */
		pf_shards_arm_test_fault(c->rd);
		pf_shards_make_plan(op, c->pl.epoch + 1, &c->pl);
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
		pf_shards_quiesce(c, 1);
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
		pf_shards_drop_outs(&c->ent[i]);
		free(c->ent[i].outs);
		free(c->ent[i].slab);
		free(c->ent[i].drop);
		pf_block_free(&c->ent[i].blk);
	}
	free(c->ent);
	free(c->warned);
	c->warned = NULL;
	free(c->th);
	pf_shards_plan_free(&c->pl);
	pf_shards_plan_free(&c->nx);
	pf_ilv_free(&c->cons);
	pf_ilv_free(&c->pw);
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
	.prepare = shards_prepare, .start = shards_start,
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
	pf_op *op = pf_op_alloc(&pf_op_shards, sizeof(shards_cfg), err);
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
	if (!c->pats) {
		free(op->cfg);
		free(op);
		pf_error_set(err, PF_ENOMEM, "shards: out of memory");
		return NULL;
	}
	return op;
}

/* The spec's arguments -> a new shards op. */
static pf_op *shards_build(const pf_arg *a, pf_error *err)
{
	pf_source_opts o;
	pf_source_opts_from_args(a, &o);
	return pf_op_shards_new(a[0].sv, (size_t)a[0].n, &o, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int shards_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const shards_cfg *c = op->cfg;
	pf_source_args(c->pats, c->npats, &c->o, a);
	return 0;
}

const pf_op_desc pf_op_shards = {
	.kind = "shards", .traits = PF_OP_SOURCE | PF_OP_TAKES_MAP,
	.help = "records of pfs shard files",
	.params = { PF_SOURCE_PARAMS },
	.vt = &shards_vt, .build = shards_build, .args = shards_args,
	.set_parallelism = shards_set_active,
};
