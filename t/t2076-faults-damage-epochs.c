/* t2076-faults-damage-epochs: the damage counters of a file source
 * (corrupt_blocks, skipped_records in its pf_op_stats) count each epoch as
 * it is delivered, whatever reads ahead.  A shuffle whose input ended
 * begins the input's next epoch while it drains (and a whole-epoch buffer
 * reads all of it then): that epoch's damaged block must not be counted
 * before the iterator begins that epoch, nor twice.  Checked after each
 * epoch's end, for shards (with and without a fused map, buffers of the
 * whole epoch and of part of it) and tfrecord, against the same pipeline
 * without a shuffle. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pf_tfrecord.h"
#include "pipefeed.h"
#include "tap.h"

#define NF 3
#define NR 600
#define EPOCHS 3

static pf_error err;
static char dir[512], files[NF][600], tfr[2][600];
static uint32_t lost_nr; /* records of the damaged block */

static void flip(const char *path, uint64_t off, int bit)
{
	FILE *fp = fopen(path, "r+b");
	if (!fp)
		return;
	fseek(fp, (long)off, SEEK_SET);
	int ch = fgetc(fp);
	fseek(fp, (long)off, SEEK_SET);
	fputc(ch ^ (1 << bit), fp);
	fclose(fp);
}

/* NF shards of NR "v: u32" records (~100 a block); one bit flipped in the
 * payload of block 2 of file 1.  0 or -1. */
static int make_shards(void)
{
	pf_schema s;
	if (pf_schema_parse(&s, "v: u32", &err))
		return -1;
	for (int f = 0; f < NF; f++) {
		snprintf(files[f], sizeof(files[f]), "%.500s/d-%d.pfs", dir, f);
		pf_shard_writer *w;
		pf_shard_write_opts o = { .block_size = 400 };
		if (pf_shard_writer_open(&w, files[f], &s, &o, &err))
			return -1;
		for (uint32_t i = 0; i < NR; i++) {
			uint32_t v = (uint32_t)f * 10000 + i;
			pf_shard_writer_add(w, &v, 4, &err);
		}
		if (pf_shard_writer_close(w, &err))
			return -1;
	}
	pf_shard *sh;
	if (pf_shard_open(&sh, files[1], 0, &err))
		return -1;
	pf_block_info b = *pf_shard_block(sh, 2);
	pf_shard_close(sh);
	lost_nr = b.nrecords;
	flip(files[1], b.offset + PF_SHARD_BLOCK_HEADER_SIZE + b.stored_len / 2, 3);
	return 0;
}

/* Two TFRecord files of 100 records; a data byte of record 10 of the
 * first flipped (that record is dropped, the file read on). */
static int make_tfrecords(void)
{
	for (int i = 0; i < 2; i++) {
		snprintf(tfr[i], sizeof(tfr[i]), "%.500s/d-%d.tfrecord", dir, i);
		FILE *f = fopen(tfr[i], "wb");
		if (!f)
			return -1;
		for (int r = 0; r < 100; r++) {
			char rec[16];
			int len = snprintf(rec, sizeof(rec), "rec-%03d", i * 100 + r);
			unsigned char h[PF_TFRECORD_HEADER], t[PF_TFRECORD_FOOTER];
			pf_tfrecord_frame(rec, (uint64_t)len, h, t);
			fwrite(h, 1, sizeof(h), f);
			fwrite(rec, 1, (size_t)len, f);
			fwrite(t, 1, sizeof(t), f);
		}
		fclose(f);
	}
	flip(tfr[0], 23 * 10 + 12, 2); /* 23-byte frames: 12 of header, then data */
	return 0;
}

typedef struct run_cfg {
	const char *name;
	int tfrecord;         /* else shards */
	int map;              /* shards: map(decode) after it (fused into it) */
	int64_t shuffle;      /* buffer size; 0: no shuffle */
	int reads;            /* shards: num_parallel_reads */
} run_cfg;

/* EPOCHS epochs of the pipeline; after epoch k's end the source's counts
 * into blocks[k], recs[k], and the elements of the epoch into n[k].
 * 0 or a code (err set). */
static int run(const run_cfg *rc_, uint64_t *blocks, uint64_t *recs, long *n)
{
	pf_error_clear(&err);
	pf_pipeline *p;
	int rc = pf_pipeline_new(&p, NULL, &err);
	if (rc)
		return rc;
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = rc_->reads,
			      .skip_corrupt = 1 };
	if (rc_->tfrecord) {
		const char *paths[2] = { tfr[0], tfr[1] };
		rc = pf_tfrecords(p, paths, 2, &so, &err);
	} else {
		const char *paths[NF] = { files[0], files[1], files[2] };
		rc = pf_shards(p, paths, NF, &so, &err);
		pf_map_opts mo = { .num_parallel_calls = 1 };
		if (!rc && rc_->map)
			rc = pf_map(p, "decode", "", &mo, &err);
	}
	if (!rc && rc_->shuffle)
		rc = pf_shuffle(p, rc_->shuffle, NULL, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	for (int ep = 0; ep < EPOCHS && !rc; ep++) {
		pf_elem e;
		n[ep] = 0;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			n[ep]++;
			pf_elem_release(&e);
		}
		if (rc != PF_END)
			break;
		rc = 0;
		pf_op_stats st;
		if ((rc = pf_iter_stats(it, 0, &st)))
			break;
		blocks[ep] = st.corrupt_blocks;
		recs[ep] = st.skipped_records;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}

static void check(const run_cfg *c)
{
	uint64_t blocks[EPOCHS] = { 0 }, recs[EPOCHS] = { 0 };
	long n[EPOCHS] = { 0 };
	int rc = run(c, blocks, recs, n);
	uint64_t per = c->tfrecord ? 1 : lost_nr;
	long want_n = c->tfrecord ? 199 : NF * NR - (long)lost_nr;
	int good = rc == 0, at = -1;
	for (int ep = 0; good && ep < EPOCHS; ep++)
		if (blocks[ep] != (uint64_t)ep + 1 || recs[ep] != per * (ep + 1) || n[ep] != want_n) {
			good = 0;
			at = ep;
		}
	char got[256] = "";
	for (int ep = 0; ep < EPOCHS; ep++) {
		size_t l = strlen(got);
		snprintf(got + l, sizeof(got) - l, "%s%llu/%llu", ep ? ", " : "",
			 (unsigned long long)blocks[ep], (unsigned long long)recs[ep]);
	}
	ok(good, "%s: after epoch 1..%d, corrupt_blocks/skipped_records are k/%llu*k and %ld records a epoch (got %s%s%s%s)",
	   c->name, EPOCHS, (unsigned long long)per, want_n, got, rc ? "; error: " : "",
	   rc ? err.msg : "", at >= 0 ? "; first wrong after an epoch" : "");
}

int main(void)
{
	alarm(60);
	plan(9);
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir("t2076"));
	if (make_shards() || make_tfrecords()) {
		printf("Bail out! cannot write the test data: %s\n", err.msg);
		return 1;
	}
	static const run_cfg runs[] = {
		{ "shards, no shuffle (the reference)", 0, 0, 0, 2 },
		{ "shards | shuffle(whole epoch)", 0, 0, 10000, 2 },
		{ "shards | shuffle(whole epoch), 1 reader", 0, 0, 10000, 1 },
		{ "shards | shuffle(100): part of the next epoch ahead", 0, 0, 100, 2 },
		{ "shards | map(decode) | shuffle(whole epoch): the map fused", 0, 1, 10000, 2 },
		{ "shards | map(decode) | shuffle(700)", 0, 1, 700, 3 },
		{ "tfrecord, no shuffle (the reference)", 1, 0, 0, 0 },
		{ "tfrecord | shuffle(whole epoch)", 1, 0, 1000, 0 },
		{ "tfrecord | shuffle(50)", 1, 0, 50, 0 },
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		check(&runs[i]);
	return done_testing();
}
