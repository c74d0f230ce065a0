/*
 * plan.c - the optimizer: prepare the ops in order and rewrite the plan the
 * way tf.data's static optimizations do, reading only the ops' traits and
 * hooks (ops/pf_op_desc.h), never their names:
 *   - no-op stages are dropped (skip(0), repeat(1), ...);
 *   - a map right after a source that takes maps runs in the source's
 *     workers (one thread hand-off less per element);
 *   - a fusable map followed by a plain batch fills the batch itself;
 *   - source -> map -> (reorder) -> batch runs as source -> reorder ->
 *     map+batch when the source lends fixed-size records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_pipeline_int.h"

static int map_fusable(const pf_op *m)
{
	if (!m || !(pf_op_traits(m) & PF_OP_MAP) || m->fused_batch)
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
		return (pf_op_traits(ops[k]) & PF_OP_BATCH) && map_fusable(m);
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
	if (!(pf_op_traits(m) & PF_OP_MAP) || !(pf_op_traits(last) & PF_OP_TAKES_MAP) ||
	    last->fused_map || !last->can_borrow)
		return 0;
	int j = next_real(ops, n, i);
	if (j < 0 || !(pf_op_traits(ops[j]) & PF_OP_REORDERS))
		return 0;
	int k = next_real(ops, n, j);
	if (k < 0 || !(pf_op_traits(ops[k]) & PF_OP_BATCH) || !map_fusable(m))
		return 0;
	return j;
}

/* Clear what a previous iterator left in op (the pipeline is reused). */
static void op_clear(pf_op *op)
{
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
	op->batched = 0;
	memset(&op->st, 0, sizeof(op->st));
	atomic_init(&op->st.occupancy, -1);   /* ops with a buffer publish theirs */
	op->st.parallelism = 1;
}

/* What pf_op_stats and pf_iter_describe call a stage: its kind, or the
 * kinds fused into it ("shards+map", "map+batch"). */
static void name_stage(pf_op *op)
{
	if (op->fused_batch)
		snprintf(op->stage, sizeof(op->stage), "%s+batch", op->desc->kind);
	else if (op->fused_map)
		snprintf(op->stage, sizeof(op->stage), "%s+%s", op->desc->kind,
			 op->fused_map->desc->kind);
	else
		snprintf(op->stage, sizeof(op->stage), "%s", op->desc->kind);
}

/*
 * The ops to plan: p's, and with world > 1 ranks the rank split right
 * after the source (made once, kept by p).  A malloc'd array of *n.
 */
static pf_op **plan_ops(pf_pipeline *p, int *n, int *rc, pf_error *err)
{
	*rc = PF_ENOMEM;
	const pf_options *o = &p->opts;
	int split = o->world > 1;
	if (split && !p->split_op) {
		pf_error e = { 0 };
		p->split_op = pf_op_rank_split_new(o->world, o->rank, o->split, &e);
		if (!p->split_op) {
			*rc = pf_error_set(err, e.code, "%s", e.msg);
			return NULL;
		}
		p->split_op->rt = &p->rt;
		p->split_op->index = p->nops;
	}
	if (split) /* its prepare decides again (the source's files may differ) */
		p->split_op->noop = 0;
	pf_op **ops = malloc((size_t)(p->nops + split) * sizeof(*ops));
	if (!ops) {
		pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
		return NULL;
	}
	ops[0] = p->ops[0];
	if (split)
		ops[1] = p->split_op;
	memcpy(ops + 1 + split, p->ops + 1, (size_t)(p->nops - 1) * sizeof(*ops));
	*n = p->nops + split;
	*rc = 0;
	return ops;
}

int pf_plan(pf_iter *it, pf_error *err)
{
	pf_pipeline *p = it->p;
	int nops = 0, rc = 0;
	pf_op **ops = plan_ops(p, &nops, &rc, err);
	if (!ops)
		return rc;
	pf_op *last = NULL;
	for (int i = 0; i < nops && !rc; i++) {
		pf_op *op = ops[i];
		op_clear(op);
		if (op->noop && last) {
			op->removed = 1;
			continue;
		}
		op->in = last;
		if (last) {
			op->record = last->record;
			op->batched = last->batched;
		}
		rc = op->vt->prepare(op, err);
		if (rc)
			break;
		if (op->noop && last) { /* found a no-op by preparing */
			op->removed = 1;
			continue;
		}
		int j = should_swap(ops, nops, i, last);
		if (j > 0) {
			ops[i] = ops[j];
			ops[j] = op;
			i--; /* prepare the reordering op here, the map after it */
			continue;
		}
		/* a map right after a source that takes maps: the source's
		 * workers run it.  With a batch after it, only a fixed-shape
		 * map (whose outputs the source then lends to shuffle/batch
		 * without copies per element); else map+batch is better */
		if ((pf_op_traits(op) & PF_OP_MAP) && (pf_op_traits(last) & PF_OP_TAKES_MAP) &&
		    !last->fused_map &&
		    !op->fused_batch && (!next_is_batch(ops, nops, i, op) || op->canon_bytes)) {
			op->removed = 1;
			last->fused_map = op;
			rc = last->vt->prepare(last, err);
			name_stage(last);
			continue;
		}
		if ((pf_op_traits(op) & PF_OP_BATCH) && map_fusable(last)) {
			last->fused_batch = op->desc->batch_of(op, &last->fused_drop);
			op->removed = 1;
			rc = last->vt->prepare(last, err);
			name_stage(last);
			continue;
		}
		if (it->nstages == 64) {
			rc = pf_error_set(err, PF_ELIMIT, "pipeline: more than 64 stages");
			break;
		}
		name_stage(op);
		it->stages[it->nstages++] = op;
		last = op;
	}
	free(ops);
	return rc;
}
