/*
 * shards_read.c - the shards source's readers (see shards.c for the whole
 * design): the plan of an epoch (its block tasks in the order the consumer
 * will need them, from the shared interleave), the reads through one
 * pf_reader in task order, and the worker threads that decode (and map)
 * the tasks into the op's block buffers, this epoch's first, then, once
 * all are taken, the next epoch's first tasks ahead.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pf_shards_int.h"

/*
 * The tasks of an epoch: the interleave run without data, whole rounds at
 * a time where no slot crosses a block or file boundary (pf_ilv_rounds
 * with each slot's room left in its block), else record by record; each
 * record that is its block's first is a task.
 */
void pf_shards_make_plan(pf_op *op, uint64_t epoch, shard_plan *pl)
{
	shards_cfg *c = op->cfg;
	pf_ilv_order(pl->order, c->npaths, c->o.shuffle_files, op->rt->opts.seed, op->index,
		     epoch);
	if (c->world > 1) {
		/* this rank's files, in the order of all (pf_options.world) */
		size_t n = 0;
		for (size_t i = 0; i < c->npaths; i++)
			if (pl->order[i] % (uint32_t)c->world == (uint32_t)c->rank)
				pl->order[n++] = pl->order[i];
	}
	pf_ilv *v = &c->pw;
	pf_ilv_begin(v, pl->order, c->fnrec);
	pl->ntasks = 0;
	uint64_t room[PF_SHARDS_MAX_CYCLE];
	for (;;) {
		if (!v->taken) {
			for (int j = 0; j < v->cycle; j++) {
				const shard_cur *cu = &c->pcur[j];
				room[j] = v->slot[j].file >= 0 && v->slot[j].rec && cu->rec ?
					  cu->nrec - cu->rec : 0;
			}
			uint64_t m = pf_ilv_rounds(v, room);
			if (m) {
				pf_ilv_skip_rounds(v, m);
				for (int j = 0; j < v->cycle; j++)
					if (v->slot[j].file >= 0)
						c->pcur[j].rec += (uint32_t)(m * (uint64_t)v->block);
				continue;
			}
		}
		int k = pf_ilv_next(v);
		if (k < 0)
			break;
		shard_cur *cu = &c->pcur[k];
		if (shards_cursor_at(c, v, k, cu)) {
			pl->task_file[pl->ntasks] = (uint32_t)v->slot[k].file;
			pl->task_block[pl->ntasks] = cu->block;
			pl->ntasks++;
		}
		cu->rec++;
		pf_ilv_took(v, k);
	}
	for (size_t f = 0; f < c->npaths; f++) {
		pl->stream[f] = -1;
		pl->left[f] = 0;
	}
	for (size_t t = 0; t < pl->ntasks; t++)
		pl->left[pl->order[pl->task_file[t]]]++;
	pl->epoch = epoch;
}

/* Is block b of file f another rank's, given as zeros, not read
 * (pf_source_opts.read_world)?  (f + b): the blocks read at the same time
 * from the files of a cycle, and the successive blocks of a file, belong
 * to successive ranks. */
static int hollow(const shards_cfg *c, uint32_t f, uint32_t b)
{
	return c->o.read_world > 1 &&
	       (f + b) % (uint32_t)c->o.read_world != (uint32_t)c->o.read_rank;
}

/* Block b of file f as it would decode, its records all zero bytes,
 * nothing read (fixed-size records only: their size is the schema's). */
static int hollow_block(const shards_cfg *c, uint32_t f, uint32_t b, pf_block *out,
			pf_error *err)
{
	const pf_shard *sh = c->sh[f];
	const pf_block_info *bi = pf_shard_block(sh, b);
	int64_t rb = pf_schema_record_bytes(pf_shard_schema(sh));
	if (rb < 0)
		return pf_error_set(err, PF_EINVAL,
				    "%s: read_world needs fixed-size records (the schema has a variable field)",
				    pf_shard_path(sh));
	size_t need = (size_t)rb * bi->nrecords;
	if (need > out->raw_cap) {
		unsigned char *q = realloc(out->raw, need);
		if (!q)
			return pf_error_set(err, PF_ENOMEM, "%s: block %u: out of memory",
					    pf_shard_path(sh), b);
		out->raw = q;
		out->raw_cap = need;
	}
	if ((size_t)bi->nrecords + 1 > out->offs_cap) {
		uint32_t *q = realloc(out->offs, ((size_t)bi->nrecords + 1) * sizeof(*q));
		if (!q)
			return pf_error_set(err, PF_ENOMEM, "%s: block %u: out of memory",
					    pf_shard_path(sh), b);
		out->offs = q;
		out->offs_cap = (size_t)bi->nrecords + 1;
	}
	memset(out->raw, 0, need);
	for (uint32_t j = 0; j <= bi->nrecords; j++)
		out->offs[j] = (uint32_t)((size_t)j * (size_t)rb);
	out->index = b;
	out->nrecords = bi->nrecords;
	out->first_record = bi->first_record;
	out->raw_len = need;
	return 0;
}

/* Register file f's nonempty blocks as a reader stream (not the hollow
 * ones: they are never read). */
static int open_stream(shards_cfg *c, uint32_t f, pf_error *err)
{
	const pf_shard *sh = c->sh[f];
	uint32_t nb = pf_shard_nblocks(sh), n = 0;
	pf_extent *ext = malloc((nb ? nb : 1) * sizeof(*ext));
	if (!ext)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	for (uint32_t b = 0; b < nb; b++) {
		const pf_block_info *bi = pf_shard_block(sh, b);
		if (!bi->nrecords || hollow(c, f, b))
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
	int hol = hollow(c, f, b);
	int rc = c->rd ? 0 : pf_error_set(&en->e, PF_ENOMEM, "%s: no reader (out of memory)",
					   pf_shard_path(c->sh[f]));
	if (!rc && !hol && pl->stream[f] < 0) {
		int id = open_stream(c, f, &en->e);
		if (id < 0)
			rc = id;
		else
			pl->stream[f] = id;
	}
	pf_read rd;
	memset(&rd, 0, sizeof(rd));
	if (!rc && !hol) {
		rc = pf_reader_next(c->rd, pl->stream[f], &rd, &en->e);
		if (rc == PF_END)
			rc = pf_error_set(&en->e, PF_ESTATE, "%s: block %u: stream ended early",
					  pf_shard_path(c->sh[f]), b);
	}
	int last = --pl->left[f] == 0;
	c->rturn++;
	pthread_cond_broadcast(&c->rcv);
	pthread_mutex_unlock(&c->rlock);
	if (!rc && hol)
		rc = hollow_block(c, f, b, &en->blk, &en->e);
	else if (!rc && rd.tag != b)
		rc = pf_error_set(&en->e, PF_ESTATE, "%s: read block %u, expected %u",
				  pf_shard_path(c->sh[f]), rd.tag, b);
	if (!rc && !hol)
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
int pf_shards_claim_task(shards_cfg *c, shard_plan *pl, size_t t)
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
void pf_shards_run_task(pf_op *op, shard_plan *pl, size_t t, size_t turn, int e,
			pf_decoder *d)
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
	if (!rc && !hollow(c, f, b)) /* (a hollow block is mapped all the same:
				     * its records' ids must come) */
		pf_stat_add(&op->st.decoded_records, en->blk.nrecords);
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
		pf_shards_make_plan(op, c->pl.epoch + 1, &c->nx);
		c->npre = 0;
		c->nx_ok = 1;
	}
	return c->npre < c->nx.ntasks;
}

void *pf_shards_worker(void *arg)
{
	pf_op *op = arg;
	shards_cfg *c = op->cfg;
	pf_decoder *d = pf_decoder_new();
	pf_cpu_probe cpu;
	pf_cpu_probe_open(&cpu, pf_now_ns());
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
			int e = pf_shards_claim_task(c, &c->nx, t);
			pf_shards_run_task(op, &c->nx, t, c->pl.ntasks + t, e, d);
			pf_cpu_probe_tick(&cpu, &op->st, pf_now_ns());
			continue;
		}
		size_t t = c->next_task++;
		int e = pf_shards_claim_task(c, &c->pl, t);
		pf_shards_run_task(op, &c->pl, t, t, e, d);
		pf_cpu_probe_tick(&cpu, &op->st, pf_now_ns());
	}
	pthread_mutex_unlock(&c->lock);
	pf_cpu_probe_close(&cpu, &op->st);
	pf_decoder_free(d);
	return NULL;
}

void pf_shards_quiesce(shards_cfg *c, int quit)
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

void pf_shards_drop_outs(shard_entry *en)
{
	for (uint32_t j = en->next_out; en->outs && j < en->nmapped; j++)
		pf_elem_release(&en->outs[j]);
	en->nmapped = en->next_out = 0;
}

/* Free every entry; with keep_ahead, not those holding tasks read ahead
 * (the first npre of the next plan), which become this epoch's. */
void pf_shards_free_entries(shards_cfg *c, int keep_ahead)
{
	c->nfree = 0;
	for (int i = 0; i < c->W; i++) {
		if (keep_ahead && c->ent[i].ahead) {
			c->ent[i].ahead = 0;
			continue;
		}
		pf_shards_drop_outs(&c->ent[i]);
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

void pf_shards_arm_test_fault(pf_reader *rd)
{
	if (rd && test_fault)
		pf_reader_set_fault(rd, test_fault, test_fault_user);
}


int pf_shards_plan_alloc(shards_cfg *c, shard_plan *pl, size_t nb)
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

void pf_shards_plan_free(shard_plan *pl)
{
	free(pl->order);
	free(pl->task_file);
	free(pl->task_block);
	free(pl->task_entry);
	free(pl->stream);
	free(pl->left);
	memset(pl, 0, sizeof(*pl));
}
