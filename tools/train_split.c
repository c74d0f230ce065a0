/*
 * train_split.c - over ranks, each rank reads and decodes only its share
 * of the data, and the global batches stay those of a run alone.
 *
 * Every rank runs the same pipeline with the same seed (so the global
 * batches and their order do not depend on the world size), but its
 * source reads only the blocks it owns (pf_source_opts.read_world: block b
 * of file f is rank (f + b) % W's); the records of the other blocks come
 * in their places as zeros, with their sample ids, which the decode map
 * adds as a field (decode(id=1)).  Of each global batch a rank trains on
 * the rows whose block it owns: every row belongs to exactly one rank, so
 * every sample is used once per epoch, and dist_step's sum weighted by
 * rows makes the step the mean over the global batch as before.  The
 * rows a rank gets vary from batch to batch (blocks of few records, or a
 * shuffle buffer of many blocks, even them out).  Nothing about the split
 * is in a checkpoint: resumed over another number of ranks the same
 * global batches go on, shared out by the new owners.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_id.h"
#include "pf_paths.h"
#include "pf_shard.h"
#include "train.h"

int split_wanted(const opts *o, int world, const char *kind)
{
	return world > 1 && !o->rank_read_all && !o->pipeline &&
	       !o->skip_corrupt && !o->isolate && !strcmp(kind, "cpu");
}

void split_open(split *sp, const opts *o, int world, int rank, int on)
{
	pf_error err = { 0 };
	char **paths;
	size_t n;
	memset(sp, 0, sizeof(*sp));
	sp->world = world;
	sp->rank = rank;
	sp->idf = -1;
	sp->rec_bytes = -1;
	if (!(sp->decoded = calloc((size_t)world, sizeof(*sp->decoded)))) {
		fprintf(stderr, "pipe-train: out of memory\n");
		exit(1);
	}
	if (!o->nshards)
		return;
	if (pf_paths_expand((const char *const *)o->shards, (size_t)o->nshards, &paths, &n,
			    &err) < 0)
		die("shards", &err);
	if (!(sp->sh = calloc(n, sizeof(*sp->sh)))) {
		fprintf(stderr, "pipe-train: out of memory\n");
		exit(1);
	}
	sp->nsh = n;
	for (size_t i = 0; i < n; i++)
		if (pf_shard_open(&sp->sh[i], paths[i], 0, &err) < 0)
			die("shards", &err);
	pf_paths_free(paths, n);
	if (n)
		sp->rec_bytes = pf_schema_record_bytes(pf_shard_schema(sp->sh[0]));
	sp->on = on;
}

void split_close(split *sp)
{
	for (size_t i = 0; i < sp->nsh; i++)
		pf_shard_close(sp->sh[i]);
	free(sp->sh);
	free(sp->x);
	free(sp->lab);
	free(sp->decoded);
	memset(sp, 0, sizeof(*sp));
}

int split_owner(const split *sp, uint64_t id)
{
	uint64_t f = pf_id_file(id);
	if (f >= sp->nsh)
		return -1;
	int64_t b = pf_shard_find_record(sp->sh[f], pf_id_rec(id));
	if (b < 0)
		return -1;
	return (int)((f + (uint64_t)b) % (uint64_t)sp->world);
}

/* Grow *buf to n bytes; exits when out of memory. */
static void room(unsigned char **buf, size_t *cap, size_t n)
{
	if (n <= *cap)
		return;
	unsigned char *q = realloc(*buf, n);
	if (!q) {
		fprintf(stderr, "pipe-train: out of memory\n");
		exit(1);
	}
	*buf = q;
	*cap = n;
}

/* The batch's "id" field (once: all batches of a feed share it). */
static const int64_t *batch_ids(split *sp, const pf_devbatch *b)
{
	if (sp->idf < 0) {
		sp->idf = pf_schema_find(b->schema, "id");
		if (sp->idf < 0 || b->schema->fields[sp->idf].dtype != PF_I64) {
			fprintf(stderr, "pipe-train: rank %d: the batches have no \"id: i64\" field (decode(id=1))\n",
				sp->rank);
			exit(1);
		}
	}
	return b->data[sp->idf];
}

/* The batch's hash: this rank's part (a sum of row hashes) summed over the
 * ranks, exactly, as four 16-bit columns in doubles. */
static uint64_t sum_hash(dist *d, uint64_t part)
{
	double v[4];
	for (int i = 0; i < 4; i++)
		v[i] = (double)((part >> (16 * i)) & 0xffff);
	dist_sum(d, v, 4, "the fingerprint");
	uint64_t h = 0;
	for (int i = 0; i < 4; i++)
		h += (uint64_t)v[i] << (16 * i);
	return h;
}

/* This rank's rows of the batch: the runs [lo, hi) of them, to fpr. */
static void write_runs(const split *sp, const int64_t *ids, uint32_t rows, FILE *fpr,
		       uint64_t epoch, uint64_t step, uint64_t h)
{
	for (uint32_t k = 0; k < rows;) {
		if (split_owner(sp, (uint64_t)ids[k]) != sp->rank) {
			k++;
			continue;
		}
		uint32_t lo = k;
		while (k < rows && split_owner(sp, (uint64_t)ids[k]) == sp->rank)
			k++;
		fprintf(fpr, "%" PRIu64 " %" PRIu64 " %016" PRIx64 " %u %u\n", epoch + 1, step + 1,
			h, lo, k);
	}
}

int split_train(split *sp, dist *d, pf_device *dev, pf_model *m, pf_stream *s,
		const feed_input *fi, const pf_devbatch *b, int nin, int want_stop,
		uint64_t step_total, FILE *fpf, FILE *fpr, uint64_t epoch, uint64_t step)
{
	pf_error err = { 0 };
	/* the batch's copy into the device's memory (host memory on the cpu
	 * device) is done once the compute stream, which waits for it, is */
	if (pf_stream_sync(dev, s, &err) < 0)
		die("train step", &err);
	const int64_t *ids = batch_ids(sp, b);
	uint32_t rows = b->batch;
	size_t xr = (size_t)nin * (fi->in.x_type == PF_U8 ? 1 : 4);
	size_t lr = fi->in.label_type == PF_LABEL_U8 ? 1 : fi->in.label_type == PF_LABEL_I32 ? 4 : 8;
	const unsigned char *x = fi->in.x, *lab = fi->in.labels;
	room(&sp->x, &sp->xcap, (size_t)rows * xr);
	room(&sp->lab, &sp->lcap, (size_t)rows * lr);
	uint64_t part = 0;
	int n = 0;
	for (uint32_t k = 0; k < rows; k++) {
		int owner = split_owner(sp, (uint64_t)ids[k]);
		if (owner < 0) {
			fprintf(stderr, "pipe-train: rank %d: batch %" PRIu64 " row %u: sample id %" PRId64
				" names no record of the training files\n", sp->rank, step + 1, k, ids[k]);
			exit(1);
		}
		if (owner != sp->rank)
			continue;
		memcpy(sp->x + (size_t)n * xr, x + (size_t)k * xr, xr);
		memcpy(sp->lab + (size_t)n * lr, lab + (size_t)k * lr, lr);
		if (fpf || fpr)
			part += row_hash(k, x + (size_t)k * xr, xr, lab + (size_t)k * lr, lr);
		n++;
	}
	if (fpf || fpr) {
		uint64_t h = sum_hash(d, part);
		if (fpf)
			fprintf(fpf, "%" PRIu64 " %" PRIu64 " %016" PRIx64 "\n", epoch + 1, step + 1, h);
		if (fpr)
			write_runs(sp, ids, rows, fpr, epoch, step, h);
	}
	pf_model_input in = fi->in;
	in.x = sp->x;
	in.labels = sp->lab;
	in.rows = n;
	int stop = 0;
	dist_step(d, m, s, n ? &in : NULL, b->batch, want_stop, &stop, step_total);
	return stop;
}

void split_sums(split *sp, dist *d, const pf_iter *it)
{
	pf_op_stats st;
	uint64_t decoded = 0;
	sp->delivered = 0;
	for (int i = 0; it && i < pf_iter_nstages(it); i++) {
		if (pf_iter_stats(it, i, &st) < 0)
			continue;
		if (i == 0)
			sp->delivered = st.elements;
		decoded += st.decoded_records;
	}
	memset(sp->decoded, 0, (size_t)sp->world * sizeof(*sp->decoded));
	sp->decoded[sp->rank] = (double)decoded;
	if (sp->world > 1)
		dist_sum(d, sp->decoded, (size_t)sp->world, "the decoded records");
}

void split_json(const split *sp, const opts *o)
{
	(void)o;
	printf("\"rank_read\":\"%s\",\"records_delivered\":%" PRIu64 ",\"decoded_records\":[",
	       sp->on ? "split" : "all", sp->delivered);
	for (int r = 0; r < sp->world; r++)
		printf("%s%.0f", r ? "," : "", sp->decoded[r]);
	printf("],\"decoded_bytes\":[");
	for (int r = 0; sp->rec_bytes >= 0 && r < sp->world; r++)
		printf("%s%.0f", r ? "," : "", sp->decoded[r] * (double)sp->rec_bytes);
	printf("],");
}
