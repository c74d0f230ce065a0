/*
 * t0003-shard-roundtrip: every record written comes back byte for byte, for
 * each codec, checksum and several block sizes; empty shards, 0-byte records,
 * a record larger than a block, highly compressible data, many small shards.
 */
#include "config.h"
#include "tap.h"
#include "shard_util.h"
#include "pf_checksum.h"
#include "pf_shard.h"

static size_t rec_len(uint64_t r, size_t big)
{
	if (r % 17 == 0)
		return 0;                 /* 0-byte records */
	if (r == 5)
		return big;               /* larger than a block */
	return (size_t)(tu_mix(r) % 300);
}

/* Write n records, read them all back, compare. Returns 1 when all match. */
static int roundtrip(const char *path, int codec, int csum, size_t bs, uint64_t n, int zeros)
{
	pf_shard_write_opts o = {.codec = codec, .codec_set = 1, .checksum = csum, .block_size = bs};
	pf_shard_writer *w;
	pf_shard *s;
	pf_schema sch;
	pf_error err = {0};
	unsigned char *buf = malloc(bs * 4 + 1024), *want = malloc(bs * 4 + 1024);
	pf_decoder *d = pf_decoder_new();
	pf_block b;
	uint64_t r = 0;
	int good = 1;

	pf_schema_parse(&sch, "bytes: u8[?]", &err);
	if (pf_shard_writer_open(&w, path, &sch, &o, &err)) {
		diag("open: %s", err.msg);
		return 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		size_t l = rec_len(i, bs * 3 + 11);
		if (zeros)
			memset(buf, 0, l);
		else
			tu_record(i, buf, l);
		if (pf_shard_writer_add(w, buf, l, &err)) {
			diag("add: %s", err.msg);
			return 0;
		}
	}
	if (pf_shard_writer_close(w, &err)) {
		diag("close: %s", err.msg);
		return 0;
	}
	if (pf_shard_open(&s, path, 0, &err)) {
		diag("open: %s", err.msg);
		return 0;
	}
	if (pf_shard_nrecords(s) != n) {
		diag("nrecords %llu, want %llu", (unsigned long long)pf_shard_nrecords(s), (unsigned long long)n);
		good = 0;
	}
	pf_block_init(&b);
	for (uint32_t i = 0; i < pf_shard_nblocks(s) && good; i++) {
		if (pf_shard_read_block(s, i, d, &b, &err)) {
			diag("read: %s", err.msg);
			good = 0;
			break;
		}
		for (uint32_t j = 0; j < b.nrecords; j++, r++) {
			size_t l, wl = rec_len(r, bs * 3 + 11);
			const void *p = pf_block_record(&b, j, &l);
			if (zeros)
				memset(want, 0, wl);
			else
				tu_record(r, want, wl);
			if (l != wl || memcmp(p, want, l)) {
				diag("record %llu differs (len %zu vs %zu)", (unsigned long long)r, l, wl);
				good = 0;
				break;
			}
			if (pf_shard_find_record(s, r) != i) {
				diag("find_record(%llu) = %lld, want %u", (unsigned long long)r,
				     (long long)pf_shard_find_record(s, r), i);
				good = 0;
			}
		}
	}
	if (r != n)
		good = 0;
	pf_block_free(&b);
	pf_decoder_free(d);
	pf_shard_close(s);
	free(buf);
	free(want);
	return good;
}

int main(void)
{
	const char *dir = tap_tmpdir("t0003");
	char path[600];
	static const size_t bss[] = {64, 4096, 256 << 10};
	pf_error err = {0};

	for (int codec = 0; codec <= 1; codec++)
		for (int cs = 1; cs <= 2; cs++)
			for (size_t k = 0; k < 3; k++) {
				snprintf(path, sizeof(path), "%s/rt-%d-%d-%zu.pfs", dir, codec, cs, k);
				ok(roundtrip(path, codec, cs, bss[k], 2000, 0),
				   "round trip: codec %s, %s, block %zu", pf_codec_name(codec),
				   pf_checksum_name(cs), bss[k]);
			}
	snprintf(path, sizeof(path), "%s/empty.pfs", dir);
	ok(roundtrip(path, PF_CODEC_ZSTD, 1, 4096, 0, 0), "empty shard round-trips");
	snprintf(path, sizeof(path), "%s/zeros.pfs", dir);
	ok(roundtrip(path, PF_CODEC_ZSTD, 1, 1 << 20, 3000, 1), "all-zero records (ratio over the cap) round-trip");
	long zsz = tu_file_size(path);
	ok(zsz > 0, "zero shard has a size (%ld bytes)", zsz);

	/* many small shards, named by the convention */
	int many = 1;
	for (unsigned i = 0; i < 40; i++) {
		char name[600], pre[600];
		snprintf(pre, sizeof(pre), "%s/many", dir);
		pf_shard_name(name, sizeof(name), pre, i, 40);
		if (!roundtrip(name, PF_CODEC_ZSTD, 1, 512, i % 4, 0))
			many = 0;
	}
	ok(many, "40 small shards of 0..3 records round-trip");
	pf_shard_name(path, sizeof(path), "fmnist", 3, 16);
	is_str(path, "fmnist-00003-of-00016.pfs", "shard names follow NAME-00003-of-00016");

	/* a temp file is never visible under the final name while writing */
	pf_shard_writer *w;
	pf_schema sch;
	pf_schema_parse(&sch, "x: u8", &err);
	snprintf(path, sizeof(path), "%s/atomic.pfs", dir);
	pf_shard_writer_open(&w, path, &sch, NULL, &err);
	pf_shard_writer_add(w, "a", 1, &err);
	ok(tu_file_size(path) < 0, "no file under the final name before close");
	pf_shard_writer_abort(w);
	ok(tu_file_size(path) < 0, "abort leaves nothing behind");

	/* a record over the limit is refused, not truncated */
	pf_shard_writer_open(&w, path, &sch, NULL, &err);
	pf_error_clear(&err);
	is_int(pf_shard_writer_add(w, "", (size_t)PF_SHARD_MAX_BLOCK_RAW, &err), PF_ELIMIT, "oversized record refused");
	pf_shard_writer_abort(w);
	return done_testing();
}
