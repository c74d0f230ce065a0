/*
 * file_source.c - the engine of the sources that read their files in the
 * consumer's thread (tfrecord, webdataset): interleave, file order, the
 * counting pass, damage.  See pf_file_source.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_file_source.h"
#include "pf_interleave.h"
#include "pf_paths.h"
#include "pf_source_damage.h"

typedef struct fsrc_cfg {
	const pf_fsrc_class *cls;
	char **paths;
	size_t npaths;
	pf_source_opts o;
	/* runtime */
	int K, BL;
	pf_ilv v;             /* the interleave walk */
	uint32_t *order;      /* the epoch's file order */
	void **slot;          /* per slot of v: its file's reader (NULL: none open) */
	int *slot_file;       /* ... and that file's index */
	/* skip_corrupt: per file, units the counting pass found, whether a
	 * framing error ended it there, and whether it was reported */
	uint64_t *nrec;
	unsigned char *cut, *warned;
	uint64_t skipped;     /* units dropped this epoch (max_corrupt) */
	pf_damage_count dmg;  /* what reaches op->st, per epoch as delivered */
} fsrc_cfg;

/* Count file i's units (and collect its fields); *mx gets the largest. */
static int count_file(pf_op *op, size_t i, pf_schema *fs, uint64_t *mx, pf_error *err)
{
	fsrc_cfg *c = op->cfg;
	void *r = NULL;
	pf_error e = { 0 };
	int rc = c->cls->open(&r, c->paths[i], &e);
	uint64_t len, k = 0;
	while (!rc && (rc = c->cls->skip(r, &len, &e)) == 0) {
		k++;
		if (len > *mx)
			*mx = len;
	}
	if (r && c->cls->fields && (rc == PF_END || rc == PF_ECORRUPT || rc == PF_ETRUNC)) {
		int frc = c->cls->fields(r, fs, err);
		if (frc) {
			c->cls->close(r);
			return pf_op_error(op, err, frc, "%s", err ? err->msg : "fields");
		}
	}
	c->cls->close(r);
	c->nrec[i] = k;
	if ((rc == PF_ECORRUPT || rc == PF_ETRUNC) && c->o.skip_corrupt) {
		if (pf_source_check_countable(op, &c->o, rc, e.msg, err))
			return rc;
		c->cut[i] = 1; /* read up to the damage */
		rc = PF_END;
	}
	if (rc != PF_END)
		return pf_op_error(op, err, rc, "%s", e.msg);
	return 0;
}

static int fsrc_prepare(pf_op *op, pf_error *err)
{
	fsrc_cfg *c = op->cfg;
	uint64_t n = 0, mx = 0;
	pf_schema fs;
	memset(&fs, 0, sizeof(fs));
	free(c->nrec);
	free(c->cut);
	c->nrec = calloc(c->npaths ? c->npaths : 1, sizeof(*c->nrec));
	c->cut = calloc(c->npaths ? c->npaths : 1, 1);
	if (!c->nrec || !c->cut)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	op->src_paths = c->paths;
	op->src_npaths = c->npaths;
	for (size_t i = 0; i < c->npaths; i++) {
		int rc = count_file(op, i, &fs, &mx, err);
		if (rc)
			return rc;
		n += c->nrec[i];
	}
	if (c->cls->fields) {
		if (!fs.nfields)
			return pf_op_error(op, err, PF_EFORMAT, "no %s with a field in %zu file%s",
					   c->cls->unit, c->npaths, c->npaths == 1 ? "" : "s");
		op->schema = fs;
	} else {
		op->schema = *pf_record_schema();
	}
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

static void close_slots(fsrc_cfg *c)
{
	for (int k = 0; c->slot && k < c->K; k++) {
		c->cls->close(c->slot[k]);
		c->slot[k] = NULL;
	}
}

/* Open the reader of the file the interleave put in slot k. */
static int open_slot(pf_op *op, int k, pf_error *err)
{
	fsrc_cfg *c = op->cfg;
	int f = (int)c->order[c->v.slot[k].file];
	int rc = c->cls->open(&c->slot[k], c->paths[f], err);
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
static void end_slot(fsrc_cfg *c, int k)
{
	c->cls->close(c->slot[k]);
	c->slot[k] = NULL;
	pf_ilv_end(&c->v, k);
}

static void begin_epoch(pf_op *op)
{
	fsrc_cfg *c = op->cfg;
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

static int fsrc_start(pf_op *op, pf_error *err)
{
	fsrc_cfg *c = op->cfg;
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
			fprintf(stderr, "pipefeed: %s: %s: damaged: reading its first %llu %ss, the rest is lost\n",
				op->label, c->paths[f], (unsigned long long)c->nrec[f], c->cls->unit);
		}
	pf_damage_init(&c->dmg);
	begin_epoch(op);
	return 0;
}

/* skip_corrupt: unit `idx` of slot k's file failed (code rc, message e):
 * drop it and go on after it, or end the file when its framing is lost.
 * Returns 0 (go on) or the error (max_corrupt passed). */
static int skip_damage(pf_op *op, int k, uint64_t idx, int rc, const pf_error *e,
		       pf_error *err)
{
	fsrc_cfg *c = op->cfg;
	int f = c->slot_file[k];
	if (c->cut[f] && idx >= c->nrec[f]) { /* the known damaged tail */
		end_slot(c, k);
		return 0;
	}
	c->cls->close(c->slot[k]);
	c->slot[k] = NULL;
	/* step over the units up to and including the bad one */
	void *r = NULL;
	pf_error e2 = { 0 };
	int orc = rc == PF_ECORRUPT && c->cls->recoverable ? c->cls->open(&r, c->paths[f], &e2) : -1;
	uint64_t len;
	for (uint64_t i = 0; !orc && i <= idx; i++)
		orc = c->cls->skip(r, &len, &e2);
	uint64_t lost = 1;
	if (orc) { /* framing lost: the rest of the file goes */
		c->cls->close(r);
		r = NULL;
		lost = c->nrec[f] > idx ? c->nrec[f] - idx : 1;
	}
	c->skipped += lost;
	pf_damage_count_add(op, &c->dmg, op->epoch, 1, lost);
	pf_source_warn_damage(op, &c->warned[f], c->paths[f], c->cls->unit, e->msg);
	int over = pf_source_check_max_corrupt(op, &c->o, c->skipped, e->msg, err);
	if (r)
		c->slot[k] = r; /* go on after the bad unit */
	else
		pf_ilv_end(&c->v, k); /* the rest of the file is lost */
	return over;
}

static int fsrc_next(pf_op *op, pf_elem *out, pf_error *err)
{
	fsrc_cfg *c = op->cfg;
	for (;;) {
		int k = pf_ilv_next(&c->v);
		if (k < 0)
			return PF_END;
		int rc;
		if (!c->slot[k] && (rc = open_slot(op, k, err)))
			return rc;
		int f = c->slot_file[k];
		if (c->cut[f] && c->cls->count(c->slot[k]) >= c->nrec[f]) {
			end_slot(c, k); /* the known damaged tail, counted at begin_epoch: not read (a
					 * cut inside the first unit left no element size for it) */
			continue;
		}
		pf_error e = { 0 };
		rc = c->cls->next(c->slot[k], op, f, out, &e);
		if (rc == PF_END) {
			end_slot(c, k);
			continue;
		}
		if ((rc == PF_ECORRUPT || rc == PF_ETRUNC) && c->o.skip_corrupt) {
			if ((rc = skip_damage(op, k, c->cls->count(c->slot[k]), rc, &e, err)))
				return rc;
			continue;
		}
		if (rc)
			return pf_op_error(op, err, rc, "%s", e.msg);
		pf_ilv_took(&c->v, k);
		return 0;
	}
}

static void fsrc_reset(pf_op *op)
{
	op->epoch++;
	begin_epoch(op); /* pf_op_reset counts the epoch after this */
	op->epoch--;
}

static void fsrc_stop(pf_op *op)
{
	fsrc_cfg *c = op->cfg;
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

static void fsrc_destroy(pf_op *op)
{
	fsrc_cfg *c = op->cfg;
	pf_paths_free(c->paths, c->npaths);
	free(c->nrec);
	free(c->cut);
	c->nrec = NULL;
	c->cut = NULL;
	c->paths = NULL;
	c->npaths = 0;
}

const pf_op_vt pf_fsrc_vt = {
	.prepare = fsrc_prepare, .start = fsrc_start,
	.next = fsrc_next, .reset = fsrc_reset, .stop = fsrc_stop, .destroy = fsrc_destroy,
};

pf_op *pf_fsrc_new(const pf_op_desc *d, const pf_fsrc_class *cls, const char *const *paths,
		   size_t n, const pf_source_opts *o, pf_error *err)
{
	if (!paths || !n) {
		pf_error_set(err, PF_EINVAL, "%s: no paths given", cls->kind);
		return NULL;
	}
	pf_op *op = pf_op_alloc(d, sizeof(fsrc_cfg), err);
	if (!op)
		return NULL;
	fsrc_cfg *c = op->cfg;
	c->cls = cls;
	if (o)
		c->o = *o;
	/* expanded here, at build time: a missing file is a build error */
	pf_error e = { 0 };
	int rc = pf_paths_expand(paths, n, &c->paths, &c->npaths, &e);
	if (rc) {
		pf_error_set(err, rc, "%s: %s", cls->kind, e.msg);
		fsrc_destroy(op);
		free(op->cfg);
		free(op);
		return NULL;
	}
	return op;
}

int pf_fsrc_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const fsrc_cfg *c = op->cfg;
	pf_source_args(c->paths, c->npaths, &c->o, a);
	return 0;
}
