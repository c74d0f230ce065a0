/* mkcorpus_shard - writes the seed corpus of fuzz_shard (small valid shards
 * of each codec, checksum and record shape) into the directory given. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "pf_shard.h"

static int one(const char *dir, const char *name, const char *schema, int codec,
	       int csum, size_t bs, int n, size_t reclen)
{
	char path[1024];
	unsigned char rec[256];
	pf_schema s;
	pf_error err = {0};
	pf_shard_writer *w;
	pf_shard_write_opts o = {.codec = codec, .codec_set = 1, .checksum = csum, .block_size = bs};

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (pf_schema_parse(&s, schema, &err) || pf_shard_writer_open(&w, path, &s, &o, &err))
		goto fail;
	for (int i = 0; i < n; i++) {
		size_t l = reclen ? reclen : (size_t)(4 + i % 9);
		memset(rec, 'a' + i % 26, sizeof(rec));
		if (!reclen) { /* variable field: u32 count, then bytes */
			uint32_t c = (uint32_t)(l - 4);
			memcpy(rec, &c, 4);
		}
		if (pf_shard_writer_add(w, rec, l, &err))
			goto fail;
	}
	if (pf_shard_writer_close(w, &err))
		goto fail;
	return 0;
fail:
	fprintf(stderr, "mkcorpus_shard: %s\n", err.msg);
	return 1;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	return one(dir, "zstd-crc-fixed.pfs", "image: u8[2,3], label: u8", PF_CODEC_ZSTD, 1, 64, 30, 7) |
	       one(dir, "none-xxh-fixed.pfs", "x: i32[2]", PF_CODEC_NONE, 2, 48, 12, 8) |
	       one(dir, "zstd-xxh-var.pfs", "tokens: u8[?]", PF_CODEC_ZSTD, 2, 80, 20, 0) |
	       one(dir, "empty.pfs", "x: u8", PF_CODEC_ZSTD, 1, 64, 0, 1) |
	       one(dir, "one-block.pfs", "a: f32, b: u16[3]", PF_CODEC_ZSTD, 1, 4096, 9, 10);
}
