/* shard.c - rank split: keep positions index, index + num, ... of each epoch. */
#include <inttypes.h>
#include <stdio.h>

#include "pf_op.h"

typedef struct shard_cfg {
	int num, index;
	int split;            /* the rank split of pf_options: its pf_split; -1: an op of the user's */
	int64_t pos;
} shard_cfg;

static int shard_prepare(pf_op *op, pf_error *err)
{
	shard_cfg *c = op->cfg;
	pf_op *in = op->in;
	if (c->split >= 0) {
		/* the rank split: nothing left to do after a source that
		 * read this rank's files only */
		op->noop = in->split_files;
		if (!in->split_files && c->split == PF_SPLIT_FILES)
			return pf_error_set(err, PF_EINVAL,
					    "%s: split by files over %d ranks: the source "
					    "has no files to split, or fewer than ranks",
					    in->label, c->num);
	}
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = 0;
	op->cardinality = in->cardinality >= 0 ?
		(in->cardinality + c->num - 1 - c->index) / c->num : in->cardinality;
	return 0;
}

static int shard_start(pf_op *op, pf_error *err)
{
	((shard_cfg *)op->cfg)->pos = 0;
	return 0;
}

static int shard_next(pf_op *op, pf_elem *out, pf_error *err)
{
	shard_cfg *c = op->cfg;
	for (;;) {
		int rc = pf_op_next(op->in, out, err);
		if (rc)
			return rc;
		if (c->pos++ % c->num == c->index)
			return 0;
		pf_elem_release(out);
	}
}

static void shard_reset(pf_op *op)
{
	shard_start(op, NULL);
	pf_op_reset(op->in);
}

static const pf_op_vt shard_vt = {
	.prepare = shard_prepare, .start = shard_start,
	.next = shard_next, .reset = shard_reset,
};

pf_op *pf_op_shard_new(int num, int index, pf_error *err)
{
	if (num < 1 || index < 0 || index >= num) {
		pf_error_set(err, PF_EINVAL, "shard: need 0 <= index < num_shards (got %d of %d)",
			     index, num);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_shard, sizeof(shard_cfg), err);
	if (op) {
		shard_cfg *c = op->cfg;
		c->num = num;
		c->index = index;
		c->split = -1;
		op->noop = num == 1;
	}
	return op;
}

pf_op *pf_op_rank_split_new(int world, int rank, int split, pf_error *err)
{
	pf_op *op = pf_op_shard_new(world, rank, err);
	if (op) {
		((shard_cfg *)op->cfg)->split = split;
		snprintf(op->label, sizeof(op->label), "shard(rank %d of %d)", rank, world);
	}
	return op;
}

/* The spec's arguments -> a new shard op. */
static pf_op *shard_build(const pf_arg *a, pf_error *err)
{
	if (a[1].i >= a[0].i) {
		pf_error_set(err, PF_EINVAL, "index %" PRId64 " must be below num %" PRId64,
			     a[1].i, a[0].i);
		return NULL;
	}
	return pf_op_shard_new((int)a[0].i, (int)a[1].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int shard_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const shard_cfg *c = op->cfg;
	a[0] = (pf_arg){ .set = 1, .i = c->num };
	a[1] = (pf_arg){ .set = 1, .i = c->index };
	return 0;
}

const pf_op_desc pf_op_shard = {
	.kind = "shard", .traits = 0,
	.help = "keep every num-th element from index (rank split)",
	.params = {
		{ "num", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 1, 1 << 20, 0, NULL, "number of shards" },
		{ "index", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 0, (1 << 20) - 1, 0, NULL,
		  "this shard, 0 <= index < num" },
	},
	.vt = &shard_vt, .build = shard_build, .args = shard_args,
};
