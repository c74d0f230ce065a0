/*
 * tfrecord.c - source: records of TFRecord files (CRC-checked by
 * lib/tfrecord.c), interleaved cycle_length files at a time, block_length
 * records from each in turn, in the consumer's thread.  A counting pass at
 * iterator start gives the record count and the largest record (the
 * element bound used by the memory budget).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"
#include "pf_paths.h"
#include "pf_tfrecord.h"

typedef struct tfr_cfg {
	char **paths;
	size_t npaths;
	pf_source_opts o;
	/* runtime */
	int K, BL, cur, taken, active;
	size_t next_file;
	uint32_t *order;
	pf_tfrecord **slot;   /* K open readers (NULL = empty) */
	int *slot_file;
} tfr_cfg;

static int tfr_prepare(pf_op *op, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	uint64_t n = 0, mx = 0;
	for (size_t i = 0; i < c->npaths; i++) {
		pf_tfrecord *r;
		pf_error e = { 0 };
		int rc = pf_tfrecord_open(&r, c->paths[i], &e);
		uint64_t len;
		while (!rc && (rc = pf_tfrecord_skip(r, &len, &e)) == 0) {
			n++;
			if (len > mx)
				mx = len;
		}
		pf_tfrecord_close(r);
		if (rc != PF_END)
			return pf_op_error(op, err, rc, "%s", e.msg);
	}
	op->schema = *pf_record_schema();
	op->record.nfields = 0;
	op->elem_bytes = mx;
	op->buffer_bytes = 0;
	op->cardinality = (int64_t)n;
	c->K = c->o.cycle_length > 0 ? c->o.cycle_length : (c->o.cycle_length == PF_AUTOTUNE ? 16 : 4);
	if ((size_t)c->K > c->npaths)
		c->K = (int)c->npaths;
	c->BL = c->o.block_length > 0 ? c->o.block_length : 1;
	return 0;
}

static void close_slots(tfr_cfg *c)
{
	for (int k = 0; c->slot && k < c->K; k++) {
		pf_tfrecord_close(c->slot[k]);
		c->slot[k] = NULL;
	}
}

static int fill(pf_op *op, int k, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	c->slot[k] = NULL;
	if (c->next_file >= c->npaths)
		return 0;
	int f = (int)c->order[c->next_file++];
	int rc = pf_tfrecord_open(&c->slot[k], c->paths[f], err);
	if (rc)
		return pf_op_error(op, err, rc, "%s", err ? err->msg : "open failed");
	c->slot_file[k] = f;
	c->active++;
	return 0;
}

static int begin_epoch(pf_op *op, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	close_slots(c);
	for (uint32_t i = 0; i < c->npaths; i++)
		c->order[i] = i;
	if (c->o.shuffle_files) {
		pf_rng r;
		pf_rng_seed(&r, op->rt->opts.seed, ((uint64_t)op->index << 40) ^ op->epoch ^ 0x5eed);
		pf_rng_shuffle_u32(&r, c->order, (uint32_t)c->npaths);
	}
	c->next_file = 0;
	c->cur = c->taken = c->active = 0;
	for (int k = 0; k < c->K; k++) {
		int rc = fill(op, k, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int tfr_start(pf_op *op, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	c->order = calloc(c->npaths, sizeof(*c->order));
	c->slot = calloc((size_t)c->K, sizeof(*c->slot));
	c->slot_file = calloc((size_t)c->K, sizeof(int));
	if (!c->order || !c->slot || !c->slot_file)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	return begin_epoch(op, err);
}

static int tfr_next(pf_op *op, pf_elem *out, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	while (c->active) {
		int k = c->cur;
		if (!c->slot[k]) {
			c->cur = (c->cur + 1) % c->K;
			c->taken = 0;
			continue;
		}
		const void *data;
		size_t len;
		pf_error e = { 0 };
		int rc = pf_tfrecord_next(c->slot[k], &data, &len, &e);
		if (rc == PF_END) {
			pf_tfrecord_close(c->slot[k]);
			c->active--;
			if ((rc = fill(op, k, err)))
				return rc;
			c->cur = (c->cur + 1) % c->K;
			c->taken = 0;
			continue;
		}
		if (rc)
			return pf_op_error(op, err, rc, "%s", e.msg);
		uint64_t idx = pf_tfrecord_count(c->slot[k]) - 1;
		pf_buf *b = pf_buf_get(op->rt->pool, len ? len : 1);
		if (!b)
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
		memcpy(b->data, data, len);
		memset(out, 0, sizeof(*out));
		out->schema = &op->schema;
		out->id = ((uint64_t)c->slot_file[k] << 40) | idx;
		out->data[0] = out->buf = b->data;
		out->nitems[0] = out->var_len[0] = (int64_t)len;
		out->nbytes = len;
		out->ref_ = b;
		if (++c->taken >= c->BL) {
			c->cur = (c->cur + 1) % c->K;
			c->taken = 0;
		}
		return 0;
	}
	return PF_END;
}

static void tfr_reset(pf_op *op)
{
	op->epoch++;
	begin_epoch(op, NULL); /* an open error shows again at the next read */
	op->epoch--;
}

static void tfr_stop(pf_op *op)
{
	tfr_cfg *c = op->cfg;
	close_slots(c);
	free(c->slot);
	free(c->slot_file);
	free(c->order);
	c->slot = NULL;
	c->slot_file = NULL;
	c->order = NULL;
}

static void tfr_destroy(pf_op *op)
{
	tfr_cfg *c = op->cfg;
	pf_paths_free(c->paths, c->npaths);
	c->paths = NULL;
	c->npaths = 0;
}

static const pf_op_vt tfr_vt = {
	.kind = "tfrecord", .prepare = tfr_prepare, .start = tfr_start,
	.next = tfr_next, .reset = tfr_reset, .stop = tfr_stop, .destroy = tfr_destroy,
};

pf_op *pf_op_tfrecord_new(const char *const *paths, size_t n,
			  const pf_source_opts *o, pf_error *err)
{
	if (!paths || !n) {
		pf_error_set(err, PF_EINVAL, "tfrecord: no paths given");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&tfr_vt, sizeof(tfr_cfg), err);
	if (!op)
		return NULL;
	tfr_cfg *c = op->cfg;
	if (o)
		c->o = *o;
	/* expanded here, at build time: a missing file is a build error */
	pf_error e = { 0 };
	int rc = pf_paths_expand(paths, n, &c->paths, &c->npaths, &e);
	if (rc) {
		pf_error_set(err, rc, "tfrecord: %s", e.msg);
		tfr_destroy(op);
		free(op->cfg);
		free(op);
		return NULL;
	}
	return op;
}
