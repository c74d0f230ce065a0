/*
 * t0405-pack-verify: `pipe-pack verify` passes intact shards (one thread or
 * several) and, on a flipped byte in a block, exits 1 naming the file, the
 * block and its byte offset; a shard cut short is reported with how far it
 * is intact.  `pipe-pack info` prints the header, the schema and the block
 * table.
 */
#include "config.h"

#include "t0400-pack-util.h"

#define RS 64
#define NR 2000

int main(void)
{
	static unsigned char data[RS * NR];
	char s0[1024], s1[1024], want[256];
	uint64_t x = 88172645463325252ull, boff = 0;
	size_t len;
	char *f;
	int st;

	plan(27);
	pk_init("t0405");
	for (size_t i = 0; i < sizeof(data); i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		data[i] = (unsigned char)(i % 3 ? (x & 0x0f) : i / RS);
	}
	pk_write(pk_path("in.bin"), data, sizeof(data));
	st = pk_run("raw --record-size %d --field 'v: u8[16,4]' -o '%s' --shards 2 "
		    "--block-size 8K -q '%s'", RS, pk_path("s"), pk_path("in.bin"));
	is_int(st, 0, "pack 2000 records into 2 shards of 8K blocks");
	pf_shard_name(s0, sizeof(s0), pk_path("s"), 0, 2);
	pf_shard_name(s1, sizeof(s1), pk_path("s"), 1, 2);

	st = pk_run("verify '%s' '%s'", s0, s1);
	is_int(st, 0, "verify intact shards: exit 0");
	like(pk_out, "s-00000-of-00002.pfs: ok, 1000 records", "per-file line for shard 0");
	like(pk_out, "s-00001-of-00002.pfs: ok, 1000 records", "per-file line for shard 1");
	like(pk_out, "MB/s", "verify prints MB/s");
	like(pk_out, "2 files, 0 damaged; 2000 records", "total line");
	st = pk_run("verify -j 1 -q '%s' '%s'", s0, s1);
	is_int(st, 0, "verify -j 1 -q: exit 0");
	is_str(pk_out, "", "-q: silent when intact");

	st = pk_run("info '%s'", s1);
	is_int(st, 0, "info: exit 0");
	like(pk_out, "schema:    v: u8[16,4]", "info prints the schema");
	like(pk_out, "codec:     zstd", "info prints the codec");
	like(pk_out, "checksum:  crc32c", "info prints the checksum kind");
	like(pk_out, "records:   1000", "info prints the record count");
	like(pk_out, "   block       offset    records", "info prints the block table");
	st = pk_run("info --blocks 3 '%s'", s1);
	like(pk_out, "... 6 more blocks (--blocks all", "info --blocks 3 limits the table");
	st = pk_run("info --blocks all '%s'", s1);
	ok(st == 0 && !strstr(pk_out, "more blocks"), "info --blocks all: the whole table");
	st = pk_run("info '%s' '%s'", s0, s1);
	is_int(st, 2, "info with two files: usage error");

	/* flip one byte in the payload of block 2 of shard 1 */
	{
		pf_shard *s;
		pf_error e = { 0 };

		if (pf_shard_open(&s, s1, 0, &e) == 0) {
			boff = pf_shard_block(s, 2)->offset;
			pf_shard_close(s);
		}
	}
	ok(boff > 0, "block 2 of shard 1 found");
	f = pk_slurp(s1, &len);
	if (!f || len < boff + 100) {
		printf("Bail out! cannot read %s\n", s1);
		return 1;
	}
	f[boff + PF_SHARD_BLOCK_HEADER_SIZE + 10] ^= 0x04;
	pk_write(pk_path("flip.pfs"), f, len);
	st = pk_run("verify '%s' '%s'", s0, pk_path("flip.pfs"));
	is_int(st, 1, "verify a flipped byte: exit 1");
	snprintf(want, sizeof(want), "flip.pfs: DAMAGED: %s: block 2 at offset %" PRIu64,
		 pk_path("flip.pfs"), boff);
	like(pk_out, want, "names the file, the block and its offset");
	like(pk_out, "checksum mismatch", "says checksum mismatch");
	like(pk_out, "s-00000-of-00002.pfs: ok", "the intact file is still reported ok");
	like(pk_out, "2 files, 1 damaged", "total counts the damaged file");

	/* cut the file inside its last block: the index is gone */
	pk_write(pk_path("cut.pfs"), f, (size_t)boff + 40);
	st = pk_run("verify '%s'", pk_path("cut.pfs"));
	is_int(st, 1, "verify a truncated shard: exit 1");
	like(pk_out, "cut.pfs: DAMAGED", "truncated: reported damaged");
	like(pk_out, "index rebuilt by scanning: 2 blocks", "truncated: 2 blocks intact by scanning");
	free(f);

	pk_write(pk_path("junk.pfs"), "not a shard at all, just text\n", 30);
	st = pk_run("verify '%s'", pk_path("junk.pfs"));
	is_int(st, 1, "verify a file that is no shard: exit 1");
	return done_testing();
}
