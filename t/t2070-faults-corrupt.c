/* t2070-faults-corrupt: damaged shards (bit flips in a block's payload, in
 * the footer index, a truncated file) through shards + map(decode) + batch.
 * fail policy: the error names the file, the block and its byte offset.
 * skip policy: every intact record is delivered exactly once, the damaged
 * blocks and their records are counted; max_corrupt below the damage fails
 * (naming the limit), at or above it does not.  alarm() catches a hang. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pf_spec.h"
#include "pf_tfrecord.h"
#include "pipefeed.h"
#include "tap.h"

#define NF 3
#define NR 600

static pf_error err;
static char dir[512], files[NF][600];

static void make_shards(void)
{
	pf_schema s;
	pf_schema_parse(&s, "v: u32", &err);
	for (int f = 0; f < NF; f++) {
		snprintf(files[f], sizeof(files[f]), "%s/c-%d.pfs", dir, f);
		pf_shard_writer *w;
		/* ~50 records a block; file 1 compressed */
		pf_shard_write_opts o = { .block_size = 400, .codec = f == 1 ? PF_CODEC_ZSTD : PF_CODEC_NONE,
					  .codec_set = 1 };
		pf_shard_writer_open(&w, files[f], &s, &o, &err);
		for (uint32_t i = 0; i < NR; i++) {
			uint32_t v = (uint32_t)f * 10000 + i * 7; /* not compressible to nothing */
			pf_shard_writer_add(w, &v, 4, &err);
		}
		pf_shard_writer_close(w, &err);
	}
}

static pf_block_info block_of(int f, uint32_t b)
{
	pf_shard *sh;
	pf_block_info bi;
	memset(&bi, 0, sizeof(bi));
	if (pf_shard_open(&sh, files[f], 0, &err) == 0) {
		bi = *pf_shard_block(sh, b);
		pf_shard_close(sh);
	}
	return bi;
}

static uint32_t nblocks(int f)
{
	pf_shard *sh;
	uint32_t n = 0;
	if (pf_shard_open(&sh, files[f], 0, &err) == 0) {
		n = pf_shard_nblocks(sh);
		pf_shard_close(sh);
	}
	return n;
}

static void flip(const char *path, uint64_t off, int bit)
{
	FILE *fp = fopen(path, "r+b");
	fseek(fp, (long)off, SEEK_SET);
	int ch = fgetc(fp);
	fseek(fp, (long)off, SEEK_SET);
	fputc(ch ^ (1 << bit), fp);
	fclose(fp);
}

/* what a run saw */
typedef struct res {
	int rc;
	char msg[PF_ERROR_MSG_MAX];
	long n;
	unsigned char *seen;      /* per value: times delivered */
	uint64_t corrupt, skipped;
} res;

#define MAXV (NF * 10000)

static void run(int skip, int64_t max_corrupt, int par, res *r)
{
	memset(r, 0, sizeof(*r));
	r->seen = calloc(MAXV, 1);
	pf_error_clear(&err);
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = par,
			      .skip_corrupt = skip, .max_corrupt = max_corrupt };
	const char *paths[NF] = { files[0], files[1], files[2] };
	pf_map_opts mo = { .num_parallel_calls = par };
	int rc = pf_shards(p, paths, NF, &so, &err);
	if (!rc)
		rc = pf_map(p, "decode", "", &mo, &err);
	if (!rc)
		rc = pf_batch(p, 16, 0, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	pf_elem e;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		const uint32_t *v = e.data[0];
		for (uint32_t j = 0; j < e.batch; j++) {
			if (v[j] < MAXV && r->seen[v[j]] < 255)
				r->seen[v[j]]++;
			r->n++;
		}
		pf_elem_release(&e);
	}
	r->rc = rc == PF_END ? 0 : rc;
	snprintf(r->msg, sizeof(r->msg), "%s", rc == PF_END ? "" : err.msg);
	pf_op_stats st;
	if (it && pf_iter_stats(it, 0, &st) == 0) {
		r->corrupt = st.corrupt_blocks;
		r->skipped = st.skipped_records;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
}

/* every value of the files, less those of the lost (file, record range)s,
 * seen exactly once, and nothing else */
typedef struct lost { int f; uint64_t first, n; } lost;

static int exactly_intact(const res *r, const lost *l, int nl)
{
	for (int f = 0; f < NF; f++)
		for (uint32_t i = 0; i < NR; i++) {
			int gone = 0;
			for (int k = 0; k < nl; k++)
				if (l[k].f == f && i >= l[k].first && i < l[k].first + l[k].n)
					gone = 1;
			if (r->seen[f * 10000 + i * 7] != (gone ? 0 : 1))
				return 0;
		}
	long want = NF * NR;
	for (int k = 0; k < nl; k++)
		want -= (long)l[k].n;
	return r->n == want;
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	unsigned char buf[65536];
	while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
		fwrite(buf, 1, n, b);
	fclose(a);
	fclose(b);
}

/* ---- TFRecord files: "rec-NNN" records, 23-byte frames ---- */

static void write_tfr(const char *path, int first, int n)
{
	FILE *f = fopen(path, "wb");
	for (int i = first; i < first + n; i++) {
		char rec[16];
		int len = snprintf(rec, sizeof(rec), "rec-%03d", i);
		unsigned char h[PF_TFRECORD_HEADER], t[PF_TFRECORD_FOOTER];
		pf_tfrecord_frame(rec, (uint64_t)len, h, t);
		fwrite(h, 1, sizeof(h), f);
		fwrite(rec, 1, (size_t)len, f);
		fwrite(t, 1, sizeof(t), f);
	}
	fclose(f);
}

/* Read the TFRecord files; seen[v] counts record rec-v. */
static int run_tfr(const char *const *paths, int n, int skip, int64_t maxc, int *seen, long *cnt,
		   uint64_t *corrupt, uint64_t *skipped)
{
	pf_error_clear(&err);
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_source_opts so = { .cycle_length = 2, .skip_corrupt = skip, .max_corrupt = maxc };
	int rc = pf_tfrecords(p, paths, (size_t)n, &so, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	pf_elem e;
	*cnt = 0;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		char b[16] = { 0 };
		memcpy(b, e.data[0], e.nitems[0] < 15 ? (size_t)e.nitems[0] : 15);
		int v = -1;
		if (sscanf(b, "rec-%d", &v) == 1 && v >= 0 && v < 200)
			seen[v]++;
		(*cnt)++;
		pf_elem_release(&e);
	}
	pf_op_stats st;
	*corrupt = *skipped = ~0ull;
	if (it && pf_iter_stats(it, 0, &st) == 0) {
		*corrupt = st.corrupt_blocks;
		*skipped = st.skipped_records;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? 0 : rc;
}

static void tfrecord_checks(void)
{
	char a[700], b[700];
	snprintf(a, sizeof(a), "%s/t-0.tfrecord", dir);
	snprintf(b, sizeof(b), "%s/t-1.tfrecord", dir);
	write_tfr(a, 0, 100);
	write_tfr(b, 100, 100);
	const char *paths[2] = { a, b };
	int seen[200];
	long n;
	uint64_t cb, sr;
	/* a data byte of record 10 of a */
	flip(a, 23 * 10 + 12, 2);
	memset(seen, 0, sizeof(seen));
	int rc = run_tfr(paths, 2, 0, 0, seen, &n, &cb, &sr);
	ok(rc == PF_ECORRUPT && strstr(err.msg, a), "tfrecord, data crc, fail policy: error names the file (%s)", err.msg);
	memset(seen, 0, sizeof(seen));
	rc = run_tfr(paths, 2, 1, 0, seen, &n, &cb, &sr);
	int once = 1;
	for (int v = 0; v < 200; v++)
		if (seen[v] != (v == 10 ? 0 : 1))
			once = 0;
	ok(rc == 0 && once && n == 199 && cb == 1 && sr == 1,
	   "tfrecord, data crc, skip: only record 10 lost, the file read on after it (%ld, %llu, %llu)",
	   n, (unsigned long long)cb, (unsigned long long)sr);
	rc = run_tfr(paths, 2, 1, 1, seen, &n, &cb, &sr);
	ok(rc == 0 && n == 199, "tfrecord, max_corrupt 1 with 1 lost: runs");
	/* and a length crc of record 50 of b: its framing is lost there */
	flip(b, 23 * 50 + 8, 0);
	memset(seen, 0, sizeof(seen));
	rc = run_tfr(paths, 2, 1, 0, seen, &n, &cb, &sr);
	once = 1;
	for (int v = 0; v < 200; v++)
		if (seen[v] != (v == 10 || v >= 150 ? 0 : 1))
			once = 0;
	ok(rc == 0 && once && n == 149 && cb == 2,
	   "tfrecord, length crc too, skip: b read up to record 50, a all but 10 (%ld, %llu)", n,
	   (unsigned long long)cb);
	rc = run_tfr(paths, 2, 1, 1000, seen, &n, &cb, &sr);
	ok(rc == PF_ECORRUPT && strstr(err.msg, b) && strstr(err.msg, "max_corrupt"),
	   "tfrecord, framing lost and max_corrupt set: fails at start, naming the file (%s)", err.msg);
	write_tfr(b, 100, 100);
	/* two data crc errors, max_corrupt 1: fails at the second */
	flip(b, 23 * 70 + 13, 4);
	rc = run_tfr(paths, 2, 1, 1, seen, &n, &cb, &sr);
	ok(rc == PF_ECORRUPT && strstr(err.msg, "more than 1 corrupt records") && strstr(err.msg, b),
	   "tfrecord, 2 lost, max_corrupt 1: fails at the second, naming its file (%s)", err.msg);
}

int main(void)
{
	alarm(60);
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir("t2070"));
	make_shards();
	char keep[NF][2048];
	for (int f = 0; f < NF; f++) {
		snprintf(keep[f], sizeof(keep[f]), "%s.orig", files[f]);
		copy_file(files[f], keep[f]);
	}
	res r;
	for (int par = 1; par <= 3; par += 2) {
		run(0, 0, par, &r);
		ok(r.rc == 0 && exactly_intact(&r, NULL, 0), "par %d: intact shards: all %d records once", par, NF * NR);
		free(r.seen);
	}

	/* ---- one bit in block 2's payload of file 1 (zstd) ---- */
	pf_block_info b2 = block_of(1, 2);
	flip(files[1], b2.offset + PF_SHARD_BLOCK_HEADER_SIZE + b2.stored_len / 2, 3);
	char want_at[128];
	snprintf(want_at, sizeof(want_at), "block 2 at offset %llu", (unsigned long long)b2.offset);
	lost l1[2] = { { 1, b2.first_record, b2.nrecords } };
	for (int par = 1; par <= 3; par += 2) {
		run(0, 0, par, &r);
		ok(r.rc == PF_ECORRUPT && strstr(r.msg, files[1]) && strstr(r.msg, want_at),
		   "par %d, fail policy: error names file, block and offset (%s)", par, r.msg);
		free(r.seen);
		run(1, 0, par, &r);
		ok(r.rc == 0 && exactly_intact(&r, l1, 1),
		   "par %d, skip: every intact record once, block 2's %u lost (%ld delivered)", par,
		   b2.nrecords, r.n);
		ok(r.corrupt == 1 && r.skipped == b2.nrecords,
		   "par %d, skip: corrupt_blocks 1, skipped_records %u (%llu, %llu)", par, b2.nrecords,
		   (unsigned long long)r.corrupt, (unsigned long long)r.skipped);
		free(r.seen);
	}

	/* ---- and a second block: the last of file 2, its header's checksum field ---- */
	uint32_t nb2 = nblocks(2);
	pf_block_info bl = block_of(2, nb2 - 1);
	flip(files[2], bl.offset + PF_SHARD_BLOCK_HEADER_SIZE, 0);
	lost l2[2] = { { 1, b2.first_record, b2.nrecords }, { 2, bl.first_record, bl.nrecords } };
	int64_t D = (int64_t)b2.nrecords + bl.nrecords;
	for (int par = 1; par <= 3; par += 2) {
		run(1, 0, par, &r);
		ok(r.rc == 0 && exactly_intact(&r, l2, 2) && r.corrupt == 2 && r.skipped == (uint64_t)D,
		   "par %d, two damaged blocks, skip: intact records once, 2 blocks / %lld records counted (%llu, %llu)",
		   par, (long long)D, (unsigned long long)r.corrupt, (unsigned long long)r.skipped);
		free(r.seen);
		/* the limit: D - 1 fails, D and D + 1 do not */
		run(1, D - 1, par, &r);
		char lim[64];
		snprintf(lim, sizeof(lim), "more than %lld corrupt records", (long long)(D - 1));
		ok(r.rc == PF_ECORRUPT && strstr(r.msg, lim) && strstr(r.msg, "block ") && strstr(r.msg, "at offset "),
		   "par %d, max_corrupt %lld (below the damage): fails naming the limit, block and offset (%s)",
		   par, (long long)(D - 1), r.msg);
		free(r.seen);
		run(1, D, par, &r);
		ok(r.rc == 0 && exactly_intact(&r, l2, 2), "par %d, max_corrupt %lld (the damage): runs", par, (long long)D);
		free(r.seen);
		run(1, D + 1, par, &r);
		ok(r.rc == 0 && exactly_intact(&r, l2, 2), "par %d, max_corrupt %lld (above): runs", par, (long long)(D + 1));
		free(r.seen);
	}
	/* the same through the spec keys */
	for (int k = 0; k < 2; k++) {
		char spec[4096];
		snprintf(spec, sizeof(spec),
			 "shards(\"%s\", \"%s\", \"%s\", cycle=2, reads=3, skip_corrupt=true, max_corrupt=%lld) | map(decode) | batch(16)",
			 files[0], files[1], files[2], (long long)(k ? D : D - 1));
		pf_error_clear(&err);
		pf_pipeline *p;
		pf_pipeline_new(&p, NULL, &err);
		int rc = pf_spec_apply(p, spec, &err);
		pf_iter *it = NULL;
		if (!rc)
			rc = pf_iter_new(&it, p, &err);
		pf_elem e;
		long n = 0;
		while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
			n += e.batch;
			pf_elem_release(&e);
		}
		if (k)
			ok(rc == PF_END && n == NF * NR - D, "spec max_corrupt=%lld: runs, %ld records", (long long)D, n);
		else
			ok(rc == PF_ECORRUPT && strstr(err.msg, "max_corrupt"), "spec max_corrupt=%lld: fails (%s)",
			   (long long)(D - 1), err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	/* a limit under one block's records: fails at the first damaged block */
	run(1, 1, 3, &r);
	ok(r.rc == PF_ECORRUPT && strstr(r.msg, "more than 1 corrupt records") &&
	   (strstr(r.msg, files[1]) || strstr(r.msg, files[2])),
	   "max_corrupt 1: fails at the first damaged block, naming its file (%s)", r.msg);
	free(r.seen);
	copy_file(keep[1], files[1]);
	copy_file(keep[2], files[2]);

	/* ---- the footer index of file 0 ---- */
	long sz = 0;
	{
		FILE *fp = fopen(files[0], "rb");
		fseek(fp, 0, SEEK_END);
		sz = ftell(fp);
		fclose(fp);
	}
	/* an index entry: just before the footer */
	flip(files[0], (uint64_t)sz - PF_SHARD_FOOTER_SIZE - PF_SHARD_INDEX_ENTRY_SIZE + 4, 1);
	run(0, 0, 1, &r);
	ok(r.rc == PF_ECORRUPT && strstr(r.msg, files[0]) && strstr(r.msg, "offset "),
	   "index damaged, fail policy: error names the file and offset (%s)", r.msg);
	free(r.seen);
	run(1, 0, 3, &r);
	ok(r.rc == 0 && exactly_intact(&r, NULL, 0) && r.corrupt == 1 && r.skipped == 0,
	   "index damaged, skip: blocks found by scanning, every record once, 1 damage counted (%ld, %llu)",
	   r.n, (unsigned long long)r.corrupt);
	free(r.seen);
	run(1, 1000, 3, &r);
	ok(r.rc == PF_ECORRUPT && strstr(r.msg, files[0]) && strstr(r.msg, "max_corrupt"),
	   "index damaged, skip with max_corrupt: fails, the loss is unknown (%s)", r.msg);
	free(r.seen);
	copy_file(keep[0], files[0]);

	/* ---- file 2 truncated in the middle of block 3 ---- */
	pf_block_info b3 = block_of(2, 3);
	if (truncate(files[2], (off_t)(b3.offset + PF_SHARD_BLOCK_HEADER_SIZE + b3.stored_len / 2)))
		diag("truncate failed");
	run(0, 0, 3, &r);
	ok(r.rc == PF_ETRUNC || r.rc == PF_ECORRUPT, "truncated, fail policy: an error (%d)", r.rc);
	ok(strstr(r.msg, files[2]) && strstr(r.msg, "offset "), "truncated, fail policy: names the file and offset (%s)", r.msg);
	free(r.seen);
	lost l3[1] = { { 2, b3.first_record, NR - b3.first_record } };
	for (int par = 1; par <= 3; par += 2) {
		run(1, 0, par, &r);
		ok(r.rc == 0 && exactly_intact(&r, l3, 1) && r.corrupt == 1,
		   "par %d, truncated, skip: the %llu records before block 3 once, the rest lost (%ld delivered)",
		   par, (unsigned long long)b3.first_record, r.n);
		free(r.seen);
	}
	copy_file(keep[2], files[2]);

	/* ---- every block of every file damaged: ends, nothing delivered, no hang ---- */
	for (int f = 0; f < NF; f++)
		for (uint32_t b = 0; b < nblocks(f); b++) {
			pf_block_info bi = block_of(f, b);
			flip(files[f], bi.offset + PF_SHARD_BLOCK_HEADER_SIZE + bi.stored_len - 1, 5);
		}
	run(1, 0, 3, &r);
	ok(r.rc == 0 && r.n == 0 && r.skipped == NF * NR, "all blocks damaged, skip: 0 records, %d skipped (%llu)",
	   NF * NR, (unsigned long long)r.skipped);
	free(r.seen);
	for (int f = 0; f < NF; f++)
		copy_file(keep[f], files[f]);
	tfrecord_checks();
	return done_testing();
}
