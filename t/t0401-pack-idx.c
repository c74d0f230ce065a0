/*
 * t0401-pack-idx: `pipe-pack idx` round trips IDX files (plain and gzip'd,
 * u8 / i16 / f32, big-endian data) into shards, split evenly or by
 * --records-per-shard, and refuses hostile IDX files (dims overflow, count
 * mismatch, truncated or corrupt gzip, short or long data) with exit 1 and
 * a message naming the file and the offset, leaving no shard behind.
 */
#include "config.h"

#include <unistd.h>
#include <zlib.h>

#include "pf_idx.h"
#include "t0400-pack-util.h"

static size_t idx_hdr(unsigned char *p, int type, int ndim, const uint32_t *dims)
{
	p[0] = p[1] = 0;
	p[2] = (unsigned char)type;
	p[3] = (unsigned char)ndim;
	for (int i = 0; i < ndim; i++) {
		p[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
		p[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
		p[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
		p[7 + 4 * i] = (unsigned char)dims[i];
	}
	return 4 + 4 * (size_t)ndim;
}

static void write_gz(const char *path, const void *buf, size_t len)
{
	gzFile g = gzopen(path, "wb9");

	if (!g || gzwrite(g, buf, (unsigned)len) != (int)len || gzclose(g) != Z_OK) {
		printf("Bail out! gzip %s\n", path);
		exit(1);
	}
}

static int no_shards(const char *prefix, unsigned n)
{
	char name[1024];

	for (unsigned i = 0; i < n; i++) {
		pf_shard_name(name, sizeof(name), prefix, i, n);
		if (access(name, F_OK) == 0)
			return 0;
	}
	return 1;
}

#define N 37
#define H 5
#define W 4

int main(void)
{
	static unsigned char img[16 + N * H * W], lab[8 + N];
	unsigned char buf[4096];
	struct pk_recs r;
	uint32_t dims[3] = { N, H, W };
	size_t ih, lh;
	int st, good;

	plan(52);
	pk_init("t0401");

	/* ---- u8 images + u8 labels, plain and gzip'd ---- */
	ih = idx_hdr(img, 0x08, 3, dims);
	for (int i = 0; i < N * H * W; i++)
		img[ih + i] = (unsigned char)(i * 7 + 3);
	lh = idx_hdr(lab, 0x08, 1, dims);
	for (int i = 0; i < N; i++)
		lab[lh + i] = (unsigned char)(i % 10);
	pk_write(pk_path("img"), img, ih + N * H * W);
	pk_write(pk_path("lab"), lab, lh + N);
	write_gz(pk_path("img.gz"), img, ih + N * H * W);
	write_gz(pk_path("lab.gz"), lab, lh + N);

	for (int gz = 0; gz < 2; gz++) {
		const char *sfx = gz ? ".gz" : "";
		const char *prefix = pk_path(gz ? "u8gz" : "u8");

		st = pk_run("idx --images '%s%s' --labels '%s%s' -o '%s' --shards 3 --block-size 1K",
			    pk_path("img"), sfx, pk_path("lab"), sfx, prefix);
		is_int(st, 0, "%s: pack u8 idx into 3 shards", gz ? "gzip" : "plain");
		like(pk_out, "total: 3 shards, 37 records", "%s: summary total line",
		     gz ? "gzip" : "plain");
		ok(pk_read_shards(prefix, 3, &r) == 0, "%s: shards read back", gz ? "gzip" : "plain");
		is_str(r.schema, "image: u8[5,4], label: u8", "%s: schema from the IDX headers",
		       gz ? "gzip" : "plain");
		is_int(r.n, N, "%s: every record back", gz ? "gzip" : "plain");
		ok(r.per_shard[0] == 12 && r.per_shard[1] == 12 && r.per_shard[2] == 13,
		   "%s: split 12/12/13 (contiguous, even)", gz ? "gzip" : "plain");
		good = r.n == N;
		for (int i = 0; i < N && good; i++) {
			memcpy(buf, img + ih + i * H * W, H * W);
			buf[H * W] = lab[lh + i];
			good = pk_rec_is(&r, (size_t)i, buf, H * W + 1);
		}
		ok(good, "%s: every record equals image bytes + label", gz ? "gzip" : "plain");
		pk_recs_free(&r);
	}

	/* --records-per-shard */
	st = pk_run("idx --images '%s' --labels '%s' -o '%s' --records-per-shard 10 -q",
		    pk_path("img.gz"), pk_path("lab"), pk_path("rps"));
	is_int(st, 0, "pack with --records-per-shard 10");
	is_str(pk_out, "", "-q prints nothing");
	ok(pk_read_shards(pk_path("rps"), 4, &r) == 0 && r.n == N &&
	   r.per_shard[0] == 10 && r.per_shard[3] == 7, "37 records in 4 shards of 10/10/10/7");
	pk_recs_free(&r);

	/* ---- i16 records + f32 labels: big-endian converted ---- */
	{
		static unsigned char a[16 + 6 * 3 * 2], b[8 + 6 * 4];
		uint32_t da[2] = { 6, 3 }, db[1] = { 6 };
		size_t ah = idx_hdr(a, 0x0B, 2, da), bh = idx_hdr(b, 0x0D, 1, db);

		for (int i = 0; i < 18; i++) {
			int16_t v = (int16_t)(i * 1000 - 9000);
			a[ah + 2 * i] = (unsigned char)((uint16_t)v >> 8);
			a[ah + 2 * i + 1] = (unsigned char)v;
		}
		for (int i = 0; i < 6; i++) {
			float f = (float)i * 0.5f - 1.0f;
			uint32_t u;
			memcpy(&u, &f, 4);
			for (int k = 0; k < 4; k++)
				b[bh + 4 * i + k] = (unsigned char)(u >> (24 - 8 * k));
		}
		write_gz(pk_path("i16.gz"), a, ah + sizeof(a) - 16);
		pk_write(pk_path("f32"), b, bh + 24);
		st = pk_run("idx --images '%s' --labels '%s' -o '%s' --codec none --checksum xxh64",
			    pk_path("i16.gz"), pk_path("f32"), pk_path("i16"));
		is_int(st, 0, "pack i16 images + f32 labels (codec none, xxh64)");
		ok(pk_read_shards(pk_path("i16"), 1, &r) == 0, "i16 shard read back");
		is_str(r.schema, "image: i16[3], label: f32", "schema i16[3] + f32");
		good = r.n == 6;
		for (int i = 0; i < 6 && good; i++) {
			int16_t v[3];
			float f = (float)i * 0.5f - 1.0f;

			for (int k = 0; k < 3; k++)
				v[k] = (int16_t)((i * 3 + k) * 1000 - 9000);
			memcpy(buf, v, 6);
			memcpy(buf + 6, &f, 4);
			good = pk_rec_is(&r, (size_t)i, buf, 10);
		}
		ok(good, "big-endian i16 and f32 stored little-endian");
		pk_recs_free(&r);
	}

	/* ---- hostile files ---- */
	{
		unsigned char h[64];
		uint32_t big[3] = { 0xffffffffu, 0xffffffffu, 0xffffffffu };
		size_t n = idx_hdr(h, 0x0E, 3, big);

		pk_write(pk_path("overflow"), h, n);
		st = pk_run("idx --images '%s' --labels '%s' -o '%s'", pk_path("overflow"),
			    pk_path("lab"), pk_path("bad1"));
		is_int(st, 1, "dims product overflow: exit 1");
		like(pk_err, pk_path("overflow"), "overflow: message names the file");
		like(pk_err, "offset 8", "overflow: message names the offset");
	}
	{
		uint32_t d36[1] = { 36 };
		unsigned char l36[8 + 36];
		size_t n = idx_hdr(l36, 0x08, 1, d36);

		memset(l36 + n, 1, 36);
		pk_write(pk_path("lab36"), l36, n + 36);
		st = pk_run("idx --images '%s' --labels '%s' -o '%s' --shards 2",
			    pk_path("img"), pk_path("lab36"), pk_path("bad2"));
		is_int(st, 1, "label count != image count: exit 1");
		like(pk_err, "36 labels", "count mismatch: message says so");
		like(pk_err, "offset 4", "count mismatch: message names the offset");
	}
	{
		size_t len = 0;
		char *gz = pk_slurp(pk_path("img.gz"), &len);

		pk_write(pk_path("cut.gz"), gz, len - 40);
		st = pk_run("idx --images '%s' --labels '%s' -o '%s' --shards 2",
			    pk_path("cut.gz"), pk_path("lab"), pk_path("bad3"));
		is_int(st, 1, "truncated gzip: exit 1");
		like(pk_err, "truncated", "truncated gzip: says truncated");
		like(pk_err, "cut.gz: offset", "truncated gzip: names file and offset");
		ok(no_shards(pk_path("bad3"), 2), "truncated gzip: no shard left behind");

		gz[len / 2] ^= 0x55;
		pk_write(pk_path("flip.gz"), gz, len);
		st = pk_run("idx --images '%s' --labels '%s' -o '%s'",
			    pk_path("flip.gz"), pk_path("lab"), pk_path("bad4"));
		is_int(st, 1, "corrupt gzip stream: exit 1");
		like(pk_err, "flip.gz: offset", "corrupt gzip: names file and offset");
		free(gz);
	}
	{
		/* a valid gzip stream holding fewer records than the dims say */
		write_gz(pk_path("short.gz"), img, ih + (N - 1) * H * W);
		st = pk_run("idx --images '%s' -o '%s'", pk_path("short.gz"), pk_path("bad5"));
		is_int(st, 1, "gzip with one record missing: exit 1");
		like(pk_err, "data ends in record 36", "short gzip: names the record");

		/* and one with more */
		static unsigned char more[16 + (N + 1) * H * W];
		memcpy(more, img, ih + N * H * W);
		write_gz(pk_path("long.gz"), more, sizeof(more));
		st = pk_run("idx --images '%s' -o '%s'", pk_path("long.gz"), pk_path("bad6"));
		is_int(st, 1, "gzip with data after the last record: exit 1");
		like(pk_err, "data continues after the 37 records", "long gzip: says so");

		pk_write(pk_path("short"), img, ih + N * H * W - 3);
		st = pk_run("idx --images '%s' -o '%s'", pk_path("short"), pk_path("bad7"));
		is_int(st, 1, "plain file too short: exit 1");
		like(pk_err, "short: offset", "plain short: names file and offset");

		pk_write(pk_path("notidx"), "\x01\x02\x08\x01", 4);
		st = pk_run("idx --images '%s' -o '%s'", pk_path("notidx"), pk_path("bad8"));
		is_int(st, 1, "bad magic: exit 1");
		like(pk_err, "not an IDX file", "bad magic: says so");
	}
	{
		/* gzip'd dims no stream of that size can hold */
		unsigned char h[16];
		uint32_t d[3] = { 60000, 1000, 1000 };
		size_t n = idx_hdr(h, 0x08, 3, d);

		write_gz(pk_path("bomb.gz"), h, n);
		st = pk_run("idx --images '%s' -o '%s'", pk_path("bomb.gz"), pk_path("bad9"));
		is_int(st, 1, "gzip dims far beyond the stream size: exit 1");
		like(pk_err, "more than a", "bomb: refused before inflating");
	}

	/* ---- the library directly ---- */
	{
		pf_idx_header hd;
		pf_error e = { 0 };
		unsigned char h[16];
		uint32_t d[3] = { 3, 0, 2 };
		size_t n = idx_hdr(h, 0x08, 3, d);
		pf_idx *x;
		unsigned char recs[2 * H * W];

		is_int(pf_idx_parse_header(&hd, h, n, "z", &e), PF_ECORRUPT, "a zero dimension is refused");
		like(e.msg, "dimension 1 is 0", "zero dim: message");
		pf_error_clear(&e);
		h[3] = 0;
		is_int(pf_idx_parse_header(&hd, h, n, "z", &e), PF_ECORRUPT, "ndim 0 is refused");
		pf_error_clear(&e);
		is_int(pf_idx_parse_header(&hd, h, 3, "z", &e), PF_ETRUNC, "a 3-byte header is truncated");
		pf_error_clear(&e);
		ok(pf_idx_open_mem(&x, img, ih + N * H * W, "mem", &e) == 0, "open_mem on a plain file");
		is_int(pf_idx_read(x, recs, 2, &e), 2, "read 2 records");
		ok(!memcmp(recs, img + ih, sizeof(recs)), "records as in the file");
		pf_idx_close(x);
		ok(pf_idx_open_mem(&x, img, ih + N * H * W - 1, "mem", &e) == PF_ETRUNC,
		   "open_mem on a short plain file fails");
		ok(x == NULL, "failed open leaves NULL");
	}
	return done_testing();
}
