/*
 * tfrecord.c - source: records of TFRecord files (CRC-checked by
 * lib/tfrecord.c), interleaved cycle_length files at a time, block_length
 * records from each in turn (tf.data's interleave: ops/interleave.c, which
 * learns of a file's end from its reader here), in the consumer's thread.  A counting pass at
 * iterator start gives the record count and the largest record (the
 * element bound used by the memory budget).
 *
 * Damage (skip_corrupt): a record whose data CRC fails is dropped and the
 * file read on from the next frame (the file is reopened and the frames
 * before it stepped over); a frame whose length cannot be trusted (bad
 * length CRC, truncated) ends the file there.  Each counts as one corrupt
 * block; skipped_records counts the records known lost (the counting pass
 * stops at a framing error, so what lies beyond one is unknown: with
 * max_corrupt set such a file fails at start).  One warning per file; more
 * than max_corrupt dropped records in an epoch fail the op.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_interleave.h"
#include "pf_op.h"
#include "pf_source_damage.h"
#include "pf_paths.h"
#include "pf_tfrecord.h"

typedef struct tfr_cfg {
	char **paths;
	size_t npaths;
	pf_source_opts o;
	/* runtime */
	int K, BL;
	pf_ilv v;             /* the interleave walk */
	uint32_t *order;      /* the epoch's file order */
	pf_tfrecord **slot;   /* per slot of v: its file's reader (NULL: none open) */
	int *slot_file;       /* ... and that file's index */
	/* skip_corrupt: per file, records the counting pass found, whether a
	 * framing error ended it there, and whether it was reported */
	uint64_t *nrec;
	unsigned char *cut, *warned;
	uint64_t skipped;     /* records dropped this epoch (max_corrupt) */
	pf_damage_count dmg;  /* what reaches op->st, per epoch as delivered */
} tfr_cfg;

static int tfr_prepare(pf_op *op, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	uint64_t n = 0, mx = 0;
	free(c->nrec);
	free(c->cut);
	c->nrec = calloc(c->npaths ? c->npaths : 1, sizeof(*c->nrec));
	c->cut = calloc(c->npaths ? c->npaths : 1, 1);
	if (!c->nrec || !c->cut)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	op->src_paths = c->paths;
	op->src_npaths = c->npaths;
	for (size_t i = 0; i < c->npaths; i++) {
		pf_tfrecord *r;
		pf_error e = { 0 };
		int rc = pf_tfrecord_open(&r, c->paths[i], &e);
		uint64_t len, k = 0;
		while (!rc && (rc = pf_tfrecord_skip(r, &len, &e)) == 0) {
			k++;
			if (len > mx)
				mx = len;
		}
		pf_tfrecord_close(r);
		n += k;
		c->nrec[i] = k;
		if ((rc == PF_ECORRUPT || rc == PF_ETRUNC) && c->o.skip_corrupt) {
			if (pf_source_check_countable(op, &c->o, rc, e.msg, err))
				return rc;
			c->cut[i] = 1; /* read up to the damage */
			rc = PF_END;
		}
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

/* Open the reader of the file the interleave put in slot k. */
static int open_slot(pf_op *op, int k, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	int f = (int)c->order[c->v.slot[k].file];
	int rc = pf_tfrecord_open(&c->slot[k], c->paths[f], err);
	if (rc) {
		c->slot[k] = NULL;
		return pf_op_error(op, err, rc, "%s", err ? err->msg : "open failed");
	}
	c->slot_file[k] = f;
	pf_damage_settle(op, &c->dmg); /* an epoch read ahead may be begun now */
	return 0;
}

/* Slot k's file is done (read to its end, or the rest of it lost): its
 * reader closed; the interleave passes the turn. */
static void end_slot(tfr_cfg *c, int k)
{
	pf_tfrecord_close(c->slot[k]);
	c->slot[k] = NULL;
	pf_ilv_end(&c->v, k);
}

static void begin_epoch(pf_op *op)
{
	tfr_cfg *c = op->cfg;
	close_slots(c);
	pf_ilv_order(c->order, c->npaths, c->o.shuffle_files, op->rt->opts.seed, op->index,
		     op->epoch);
	pf_ilv_begin(&c->v, c->order, NULL);
	c->skipped = 0;
	for (size_t f = 0; f < c->npaths; f++)
		if (c->cut[f]) /* its damaged tail: one corrupt block */
			pf_damage_count_add(op, &c->dmg, op->epoch, 1, 0);
	pf_damage_settle(op, &c->dmg);
}

static int tfr_start(pf_op *op, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	c->order = calloc(c->npaths, sizeof(*c->order));
	c->slot = calloc((size_t)c->K, sizeof(*c->slot));
	c->slot_file = calloc((size_t)c->K, sizeof(int));
	c->warned = calloc(c->npaths ? c->npaths : 1, 1);
	if (!c->order || !c->slot || !c->slot_file || !c->warned ||
	    pf_ilv_init(&c->v, c->K, c->BL, c->npaths, err))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	for (size_t f = 0; f < c->npaths; f++)
		if (c->cut[f]) {
			c->warned[f] = 1;
			fprintf(stderr, "pipefeed: %s: %s: damaged: reading its first %llu records, the rest is lost\n",
				op->label, c->paths[f], (unsigned long long)c->nrec[f]);
		}
	pf_damage_init(&c->dmg);
	begin_epoch(op);
	return 0;
}

/* skip_corrupt: record `idx` of slot k's file failed (code rc, message
 * e): drop it and go on after it, or end the file when its framing is
 * lost.  Returns 0 (go on) or the error (max_corrupt passed, reopen failed). */
static int skip_damage(pf_op *op, int k, uint64_t idx, int rc, const pf_error *e,
		       pf_error *err)
{
	tfr_cfg *c = op->cfg;
	int f = c->slot_file[k];
	if (c->cut[f] && idx >= c->nrec[f]) { /* the known damaged tail */
		end_slot(c, k);
		return 0;
	}
	pf_tfrecord_close(c->slot[k]);
	c->slot[k] = NULL;
	/* step over the frames up to and including the bad one */
	pf_tfrecord *r = NULL;
	pf_error e2 = { 0 };
	int orc = rc == PF_ECORRUPT ? pf_tfrecord_open(&r, c->paths[f], &e2) : -1;
	uint64_t len;
	for (uint64_t i = 0; !orc && i <= idx; i++)
		orc = pf_tfrecord_skip(r, &len, &e2);
	uint64_t lost = 1;
	if (orc) { /* framing lost: the rest of the file goes */
		pf_tfrecord_close(r);
		r = NULL;
		lost = c->nrec[f] > idx ? c->nrec[f] - idx : 1;
	}
	c->skipped += lost;
	pf_damage_count_add(op, &c->dmg, op->epoch, 1, lost);
	pf_source_warn_damage(op, &c->warned[f], c->paths[f], "record", e->msg);
	int over = pf_source_check_max_corrupt(op, &c->o, c->skipped, e->msg, err);
	if (r)
		c->slot[k] = r; /* go on after the bad record */
	else
		pf_ilv_end(&c->v, k); /* the rest of the file is lost */
	return over;
}

static int tfr_next(pf_op *op, pf_elem *out, pf_error *err)
{
	tfr_cfg *c = op->cfg;
	for (;;) {
		int k = pf_ilv_next(&c->v);
		if (k < 0)
			return PF_END;
		int rc;
		if (!c->slot[k] && (rc = open_slot(op, k, err)))
			return rc;
		const void *data;
		size_t len;
		pf_error e = { 0 };
		rc = pf_tfrecord_next(c->slot[k], &data, &len, &e);
		if (rc == PF_END) {
			end_slot(c, k);
			continue;
		}
		if ((rc == PF_ECORRUPT || rc == PF_ETRUNC) && c->o.skip_corrupt) {
			if ((rc = skip_damage(op, k, pf_tfrecord_count(c->slot[k]), rc, &e, err)))
				return rc;
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
		out->id = pf_id_make((uint64_t)c->slot_file[k], idx);
		out->data[0] = out->buf = b->data;
		out->nitems[0] = out->var_len[0] = (int64_t)len;
		out->nbytes = len;
		out->ref_ = b;
		pf_ilv_took(&c->v, k);
		return 0;
	}
}

static void tfr_reset(pf_op *op)
{
	op->epoch++;
	begin_epoch(op); /* pf_op_reset counts the epoch after this */
	op->epoch--;
}
static void tfr_stop(pf_op *op)
{
	tfr_cfg *c = op->cfg;
	close_slots(c);
	free(c->slot);
	free(c->slot_file);
	free(c->order);
	free(c->warned);
	pf_ilv_free(&c->v);
	c->warned = NULL;
	c->slot = NULL;
	c->slot_file = NULL;
	c->order = NULL;
}

static void tfr_destroy(pf_op *op)
{
	tfr_cfg *c = op->cfg;
	pf_paths_free(c->paths, c->npaths);
	free(c->nrec);
	free(c->cut);
	c->nrec = NULL;
	c->cut = NULL;
	c->paths = NULL;
	c->npaths = 0;
}

static const pf_op_vt tfr_vt = {
	.prepare = tfr_prepare, .start = tfr_start,
	.next = tfr_next, .reset = tfr_reset, .stop = tfr_stop, .destroy = tfr_destroy,
};

pf_op *pf_op_tfrecord_new(const char *const *paths, size_t n,
			  const pf_source_opts *o, pf_error *err)
{
	if (!paths || !n) {
		pf_error_set(err, PF_EINVAL, "tfrecord: no paths given");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_tfrecord, sizeof(tfr_cfg), err);
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

/* The spec's arguments -> a new tfrecord op. */
static pf_op *tfrecord_build(const pf_arg *a, pf_error *err)
{
	pf_source_opts o;
	pf_source_opts_from_args(a, &o);
	return pf_op_tfrecord_new(a[0].sv, (size_t)a[0].n, &o, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int tfrecord_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const tfr_cfg *c = op->cfg;
	pf_source_args(c->paths, c->npaths, &c->o, a);
	return 0;
}

const pf_op_desc pf_op_tfrecord = {
	.kind = "tfrecord", .traits = PF_OP_SOURCE,
	.help = "records of TFRecord files",
	.params = { PF_SOURCE_PARAMS },
	.vt = &tfr_vt, .build = tfrecord_build, .args = tfrecord_args,
};
