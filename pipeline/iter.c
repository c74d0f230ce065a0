/* iter.c - the iterator: plan (prepare + optimize), memory budget check,
 * start, pull, epochs, stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_pipeline_int.h"

static int map_fusable(const pf_op *m)
{
	if (!m || !m->is_map || m->fused_batch)
		return 0;
	for (int i = 0; i < m->schema.nfields; i++)
		if (pf_field_bytes(&m->schema.fields[i]) < 0)
			return 0;
	return m->schema.nfields > 0;
}

/* Is the next op that is not a no-op after ops[i] a plain batch that map
 * op m could fuse into? */
static int next_is_batch(pf_op **ops, int n, int i, const pf_op *m)
{
	for (int k = i + 1; k < n; k++) {
		if (ops[k]->noop)
			continue;
		return ops[k]->is_batch && map_fusable(m);
	}
	return 0;
}

/* The next op after ops[i] that is not a no-op, or -1. */
static int next_real(pf_op **ops, int n, int i)
{
	for (int k = i + 1; k < n; k++)
		if (!ops[k]->noop)
			return k;
	return -1;
}

/*
 * shards -> map -> shuffle -> batch, where shards lends fixed-size raw
 * records and the map has fixed-shape outputs: run it as shards ->
 * shuffle -> map+batch.  Map functions are pure functions of their input
 * (they already run concurrently in any order), so mapping after the
 * shuffle gives the same elements in the same order; but the shuffle
 * buffer then holds the (usually much smaller) records instead of decoded
 * samples, and the map writes straight into the batch.  Only a map error
 * surfaces at another point of the epoch.
 */
static int should_swap(pf_op **ops, int n, int i, const pf_op *last)
{
	pf_op *m = ops[i];
	if (!m->is_map || !last || !last->is_shards || last->fused_map || !last->can_borrow)
		return 0;
	int j = next_real(ops, n, i);
	if (j < 0 || strcmp(ops[j]->vt->kind, "shuffle"))
		return 0;
	int k = next_real(ops, n, j);
	if (k < 0 || !ops[k]->is_batch || !map_fusable(m))
		return 0;
	return j;
}

static void stop_stages(pf_iter *it, int n)
{
	/* consumer end first: a thread must stop before the input it pulls from */
	for (int i = n - 1; i >= 0; i--)
		if (it->stages[i]->vt->stop)
			it->stages[i]->vt->stop(it->stages[i]);
}

static const char *human(uint64_t b, char *buf, size_t cap)
{
	if (b >= 10ull << 20)
		snprintf(buf, cap, "%llu MiB", (unsigned long long)(b >> 20));
	else if (b >= 10ull << 10)
		snprintf(buf, cap, "%llu KiB", (unsigned long long)(b >> 10));
	else
		snprintf(buf, cap, "%llu B", (unsigned long long)b);
	return buf;
}

/* Free an iterator that never started (or whose stages are stopped). */
static void iter_dealloc(pf_iter *it)
{
	pthread_mutex_destroy(&it->pos_lock);
	free(it);
}

/* Remember the ops' epoch counters as the start of it->epoch. */
static void snap_epoch(pf_iter *it)
{
	if (!it->pos_ok)
		return;
	pthread_mutex_lock(&it->pos_lock);
	int k = (int)(it->epoch % PF_POS_RING);
	it->ring[k].valid = 1;
	it->ring[k].epoch = it->epoch;
	for (int i = 0; i < it->p->nops; i++)
		it->ring[k].op_epoch[i] = it->p->ops[i]->epoch_mark;
	it->pos_epoch = it->epoch;
	pthread_mutex_unlock(&it->pos_lock);
}

/* Fast-forward a new iterator to pos (see pf_iter_new_at). */
static int seek(pf_iter *it, const pf_iter_pos *pos, pf_error *err)
{
	pf_elem e;
	for (uint64_t k = 0; k < pos->delivered; k++) {
		int rc = pf_iter_next(it, &e, err);
		if (rc == PF_END)
			return pf_error_set(err, PF_EINVAL,
					    "position: epoch %llu has %llu elements, the position is after %llu",
					    (unsigned long long)pos->epoch, (unsigned long long)k,
					    (unsigned long long)pos->delivered);
		if (rc < 0)
			return rc;
		pf_elem_release(&e);
	}
	if (pos->at_end) {
		int rc = pf_iter_next(it, &e, err);
		if (rc == 0) {
			pf_elem_release(&e);
			return pf_error_set(err, PF_EINVAL,
					    "position: epoch %llu has more than the %llu elements the position says it ended after",
					    (unsigned long long)pos->epoch,
					    (unsigned long long)pos->delivered);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int iter_start(pf_iter **itp, pf_pipeline *p, const pf_iter_pos *pos,
		      pf_error *err);

int pf_iter_new(pf_iter **itp, pf_pipeline *p, pf_error *err)
{
	return iter_start(itp, p, NULL, err);
}

int pf_iter_new_at(pf_iter **itp, pf_pipeline *p, const pf_iter_pos *pos,
		   pf_error *err)
{
	if (!pos) {
		*itp = NULL;
		return pf_error_set(err, PF_EINVAL, "position: NULL");
	}
	/* another element order: an epoch's start or end means the same */
	if (pos->order != PF_POS_ORDER && pos->delivered && !pos->at_end) {
		*itp = NULL;
		return pf_error_set(err, PF_EVERSION,
				    "position from %s interleave order (version %u, this build's is %d): %llu elements into epoch %llu would resume at other records; resume from an epoch's start or end, or start again",
				    pos->order < PF_POS_ORDER ? "an older" : "a newer", pos->order < 2 ? 1 : pos->order,
				    PF_POS_ORDER, (unsigned long long)pos->delivered,
				    (unsigned long long)pos->epoch);
	}
	int rc = iter_start(itp, p, pos, err);
	if (rc)
		return rc;
	if ((rc = seek(*itp, pos, err)) < 0) {
		pf_iter_free(*itp);
		*itp = NULL;
	}
	return rc;
}

/* Plan, check and start an iterator; with pos, every op begins at its
 * recorded epoch counter (the caller then fast-forwards). */
static int iter_start(pf_iter **itp, pf_pipeline *p, const pf_iter_pos *pos,
		      pf_error *err)
{
	*itp = NULL;
	if (!p || !p->nops)
		return pf_error_set(err, PF_EINVAL, "pipeline: no ops (add a source first)");
	if (p->iter)
		return pf_error_set(err, PF_ESTATE, "pipeline: an iterator is already live");
	if (pos && ((int64_t)pos->nops != p->nops || pos->nops > PF_POS_MAX_OPS))
		return pf_error_set(err, PF_EINVAL,
				    "position: recorded for a pipeline of %u ops, this one has %d",
				    pos->nops, p->nops);
	pf_iter *it = calloc(1, sizeof(*it));
	if (!it)
		return pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
	it->p = p;
	it->pos_ok = p->nops <= PF_POS_MAX_OPS;
	pthread_mutex_init(&it->pos_lock, NULL);

	/* prepare in order, dropping no-op stages and fusing map into batch */
	pf_op **ops = malloc((size_t)p->nops * sizeof(*ops));
	if (!ops) {
		iter_dealloc(it);
		return pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
	}
	memcpy(ops, p->ops, (size_t)p->nops * sizeof(*ops));
	pf_op *last = NULL;
	int rc = 0;
	for (int i = 0; i < p->nops && !rc; i++) {
		pf_op *op = ops[i];
		op->removed = 0;
		op->fused_batch = 0;
		op->fused_map = NULL;
		op->epoch = 0;
		op->epoch_mark = 0;
		op->at_end = 0;
		op->run = NULL;
		op->can_borrow = 0;
		op->canon_bytes = 0;
		op->optional_bytes = 0;
		op->shed_optional = 0;
		memset(&op->st, 0, sizeof(op->st));
		atomic_init(&op->st.occupancy, -1);   /* ops with a buffer publish theirs */
		op->st.parallelism = 1;
		if (op->noop && last) {
			op->removed = 1;
			continue;
		}
		op->in = last;
		if (last) {
			op->record = last->record;
		}
		rc = op->vt->prepare(op, err);
		if (rc)
			break;
		int j = should_swap(ops, p->nops, i, last);
		if (j > 0) {
			ops[i] = ops[j];
			ops[j] = op;
			i--; /* prepare the shuffle here, the map after it */
			continue;
		}
		/* map right after the shards source: the source's decode
		 * workers run it (one thread handoff less per element).  With
		 * a batch after it, only a fixed-shape map (whose outputs the
		 * source then lends to shuffle/batch without copies per
		 * element); else map+batch is better */
		if (op->is_map && last && last->is_shards && !last->fused_map &&
		    !op->fused_batch && (!next_is_batch(ops, p->nops, i, op) || op->canon_bytes)) {
			op->removed = 1;
			last->fused_map = op;
			rc = last->vt->prepare(last, err);
			continue;
		}
		if (op->is_batch && map_fusable(last)) {
			last->fused_batch = op->batch_size;
			last->fused_drop = op->batch_drop;
			op->removed = 1;
			rc = last->vt->prepare(last, err);
			continue;
		}
		if (it->nstages == 64) {
			rc = pf_error_set(err, PF_ELIMIT, "pipeline: more than 64 stages");
			break;
		}
		it->stages[it->nstages++] = op;
		last = op;
	}
	free(ops);
	if (rc) {
		iter_dealloc(it);
		return rc;
	}

	/* buffers an op can do without (a source's slack) give way first to
	 * a budget that would not fit them */
	uint64_t sum = 0, opt = 0, budget = p->opts.memory_budget;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		/* an autotuned prefetch: at its starting depth, the least it is
		 * fitted to below */
		sum += op->st.max_depth ? (uint64_t)(op->st.depth + 1) * op->elem_bytes :
					  op->buffer_bytes;
		opt += op->optional_bytes;
	}
	if (opt && sum > budget)
		for (int i = 0; i < it->nstages; i++) {
			pf_op *op = it->stages[i];
			op->buffer_bytes -= op->optional_bytes;
			op->optional_bytes = 0;
			op->shed_optional = 1;
		}
	sum = 0;

	/* autotuned prefetch: its most depth is what the budget leaves (split
	 * between them) */
	int ntuned = 0;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->st.max_depth)
			ntuned++;
		else
			sum += op->buffer_bytes;
	}
	for (int i = 0; ntuned && i < it->nstages; i++)
		if (it->stages[i]->st.max_depth)
			pf_prefetch_fit(it->stages[i], sum < budget ? (budget - sum) / (uint64_t)ntuned : 0);
	sum = 0;

	/* memory budget: every buffer at its worst case must fit */
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->buffer_bytes > budget || sum + op->buffer_bytes > budget) {
			char a[32], b[32], c[32];
			rc = pf_error_set(err, PF_EBUDGET,
					  "%s: its buffers need %s at worst; with the %s of the ops before it that does not fit the memory budget of %s",
					  op->label, human(op->buffer_bytes, a, sizeof(a)),
					  human(sum, b, sizeof(b)), human(budget, c, sizeof(c)));
			iter_dealloc(it);
			return rc;
		}
		sum += op->buffer_bytes;
	}

	/* resume: the ops begin at their recorded epochs (seeds, file order) */
	if (pos) {
		for (int i = 0; i < p->nops; i++)
			p->ops[i]->epoch = p->ops[i]->epoch_mark = pos->op_epoch[i];
		it->epoch = pos->epoch;
	}
	snap_epoch(it);

	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->vt->start && (rc = op->vt->start(op, err))) {
			stop_stages(it, i + 1); /* stops clean up a partial start too */
			iter_dealloc(it);
			return rc;
		}
	}
	it->t_start = pf_now_ns();
	if ((rc = pf_autotune_start(it, err))) {
		stop_stages(it, it->nstages);
		iter_dealloc(it);
		return rc;
	}
	p->iter = it;
	*itp = it;
	return 0;
}

int pf_iter_next(pf_iter *it, pf_elem *out, pf_error *err)
{
	memset(out, 0, sizeof(*out));
	if (it->failed) {
		pf_error_set(err, it->error.code, "%s", it->error.msg);
		return it->error.code;
	}
	pf_op *top = it->stages[it->nstages - 1];
	if (it->ended) {
		pf_op_reset(top);
		it->ended = 0;
		it->epoch++;
		it->delivered = 0;
		snap_epoch(it);
	}
	pf_error e = { 0 };
	uint64_t t0 = pf_now_ns();
	int rc = pf_op_next(top, out, &e);
	pf_stat_add(&it->wait_ns, pf_now_ns() - t0);
	if (rc == 0) {
		it->delivered++;
	} else if (rc == PF_END) {
		it->ended = 1;
		memset(out, 0, sizeof(*out));
	} else if (rc < 0) {
		it->failed = 1;
		if (!e.code)
			pf_error_set(&e, rc, "%s: %s", top->label, pf_strerror(rc));
		it->error = e;
		pf_error_set(err, rc, "%s", e.msg);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

uint64_t pf_iter_epoch(const pf_iter *it)
{
	return it ? it->epoch : 0;
}

void pf_iter_free(pf_iter *it)
{
	if (!it)
		return;
	pf_autotune_stop(it->tune);
	stop_stages(it, it->nstages);
	it->p->iter = NULL;
	iter_dealloc(it);
}

int pf_iter_position(const pf_iter *it, pf_iter_pos *pos, pf_error *err)
{
	memset(pos, 0, sizeof(*pos));
	if (!it)
		return pf_error_set(err, PF_EINVAL, "position: no iterator");
	int rc = pf_iter_epoch_start(it, it->epoch, it->delivered, pos, err);
	if (rc == 0)
		pos->at_end = it->ended ? 1 : 0;
	return rc;
}

int pf_iter_epoch_start(const pf_iter *it, uint64_t epoch, uint64_t n,
			pf_iter_pos *pos, pf_error *err)
{
	memset(pos, 0, sizeof(*pos));
	if (!it)
		return pf_error_set(err, PF_EINVAL, "position: no iterator");
	if (!it->pos_ok)
		return pf_error_set(err, PF_ELIMIT, "position: the pipeline has %d ops, positions keep at most %d",
				    it->p->nops, PF_POS_MAX_OPS);
	pf_iter *w = (pf_iter *)it; /* for the lock only */
	int rc = 0;
	pthread_mutex_lock(&w->pos_lock);
	int k = (int)(epoch % PF_POS_RING);
	if (epoch > it->pos_epoch) {
		rc = pf_error_set(err, PF_ESTATE, "position: epoch %llu has not begun (the iterator is in epoch %llu)",
				  (unsigned long long)epoch, (unsigned long long)it->pos_epoch);
	} else if (!it->ring[k].valid || it->ring[k].epoch != epoch) {
		rc = pf_error_set(err, PF_ELIMIT, "position: epoch %llu is too far behind (the iterator is in epoch %llu and keeps the last %d)",
				  (unsigned long long)epoch, (unsigned long long)it->pos_epoch,
				  PF_POS_RING);
	} else {
		pos->epoch = epoch;
		pos->delivered = n;
		pos->nops = (uint32_t)it->p->nops;
		pos->order = PF_POS_ORDER;
		memcpy(pos->op_epoch, it->ring[k].op_epoch, sizeof(pos->op_epoch));
	}
	pthread_mutex_unlock(&w->pos_lock);
	return rc;
}

static const char *stage_name(const pf_op *op)
{
	return op->fused_batch ? "map+batch" : op->fused_map ? "shards+map" : op->vt->kind;
}

size_t pf_iter_describe(const pf_iter *it, char *buf, size_t cap)
{
	size_t n = 0;
	char tmp[160];
	if (cap)
		buf[0] = 0;
	for (int i = 0; it && i < it->nstages; i++) {
		const pf_op *op = it->stages[i];
		int k;
		if (op->fused_batch)
			k = snprintf(tmp, sizeof(tmp), "%smap+batch(%d)", i ? " -> " : "",
				     op->fused_batch);
		else
			k = snprintf(tmp, sizeof(tmp), "%s%s", i ? " -> " : "", stage_name(op));
		if (n + (size_t)k < cap)
			memcpy(buf + n, tmp, (size_t)k + 1);
		else if (n < cap)
			buf[n] = 0;
		n += (size_t)k;
	}
	return n;
}

int pf_iter_nstages(const pf_iter *it)
{
	return it ? it->nstages : 0;
}

int pf_iter_stats(const pf_iter *it, int i, pf_op_stats *o)
{
	if (!it || i < 0 || i >= it->nstages)
		return PF_EINVAL;
	const pf_op *op = it->stages[i];
	const pf_stage_stats *s = &op->st;
	memset(o, 0, sizeof(*o));
	o->name = stage_name(op);
	o->elements = atomic_load(&s->elements);
	o->bytes = atomic_load(&s->bytes);
	o->buffer_bytes = op->buffer_bytes;
	o->parallelism = s->parallelism;
	o->depth = s->depth;
	o->autotuned = s->autotuned;
	o->corrupt_blocks = atomic_load(&s->corrupt_blocks);
	o->skipped_records = atomic_load(&s->skipped_records);
	o->dropped_samples = atomic_load(&s->dropped_samples);
	o->occupancy = atomic_load(&s->occupancy);
	if (s->self_timed) {
		o->busy_ns = atomic_load(&s->busy_ns);
		o->wait_input_ns = atomic_load(&s->wait_ns);
		o->blocked_output_ns = atomic_load(&s->blocked_ns);
	} else {
		/* an inline stage: its calls' time (sampled) less its input's */
		uint64_t total = atomic_load(&s->total_ns);
		uint64_t in = i > 0 ? atomic_load(&it->stages[i - 1]->st.total_ns) : 0;
		o->wait_input_ns = in;
		o->busy_ns = total > in ? total - in : 0;
	}
	return 0;
}

void pf_iter_stall(const pf_iter *it, uint64_t *wait_ns, uint64_t *total_ns)
{
	uint64_t w = it ? atomic_load(&((pf_iter *)it)->wait_ns) : 0;
	uint64_t t = it ? pf_now_ns() - it->t_start : 0;
	if (wait_ns)
		*wait_ns = w;
	if (total_ns)
		*total_ns = t;
}
