/*
 * fuzz_shard - the shard reader on arbitrary bytes: open (with and without
 * index recovery), decode every block, split every record by the schema.
 * Must never crash, leak, read out of bounds or allocate without bound.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_checksum.h"
#include "pf_shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

/*
 * Checksums stop a mutated input at the first check, so the structure behind
 * them would go unfuzzed.  This recomputes every checksum the layout lets it
 * find (header, block headers and payloads walked from the data start, index,
 * footer), so the second pass reaches the index and record validation with
 * hostile numbers.
 */
static void fix_checksums(uint8_t *m, size_t n)
{
	uint64_t off, foot;
	uint32_t slen;

	if (n < PF_SHARD_HEADER_SIZE + PF_SHARD_FOOTER_SIZE)
		return;
	slen = rd32(m + 16);
	if (slen > n - PF_SHARD_HEADER_SIZE - PF_SHARD_FOOTER_SIZE)
		return;
	wr32(m + 32, pf_crc32c(pf_crc32c(0, m, 32), m + PF_SHARD_HEADER_SIZE, slen));
	foot = n - PF_SHARD_FOOTER_SIZE;
	for (off = PF_SHARD_HEADER_SIZE + slen; foot - off >= PF_SHARD_BLOCK_HEADER_SIZE;) {
		uint8_t *bh = m + off;
		uint32_t stored = rd32(bh + 16);
		if (memcmp(bh, "PFBK", 4) || stored > foot - off - PF_SHARD_BLOCK_HEADER_SIZE)
			break;
		wr32(bh + 20, pf_crc32c(0, bh, 20));
		wr64(bh + 24, pf_checksum(m[11], bh + PF_SHARD_BLOCK_HEADER_SIZE, stored));
		off += PF_SHARD_BLOCK_HEADER_SIZE + stored;
	}
	off = rd64(m + foot);
	if (off <= foot)
		wr32(m + foot + 32, pf_crc32c(0, m + off, foot - off));
	wr32(m + foot + 36, pf_crc32c(0, m + foot, 36));
}

static void run(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *m = malloc(size ? size : 1);

	run(data, size);
	if (m) {
		memcpy(m, data, size);
		fix_checksums(m, size);
		run(m, size);
		free(m);
	}
	return 0;
}

static void run(const uint8_t *data, size_t size)
{
	static pf_decoder *d;
	pf_block b;

	if (!d)
		d = pf_decoder_new();
	pf_block_init(&b);
	for (int flags = 0; flags <= PF_SHARD_OPEN_SCAN; flags += PF_SHARD_OPEN_SCAN) {
		pf_shard *s;
		pf_error err = {0};
		if (pf_shard_open_mem(&s, data, size, "fuzz", flags, &err))
			continue;
		for (uint32_t i = 0; i < pf_shard_nblocks(s); i++) {
			pf_error_clear(&err);
			if (pf_shard_read_block(s, i, d, &b, &err))
				continue;
			for (uint32_t j = 0; j < b.nrecords; j++) {
				size_t len, off[PF_MAX_FIELDS];
				int64_t cnt[PF_MAX_FIELDS];
				const void *p = pf_block_record(&b, j, &len);
				pf_schema_split(pf_shard_schema(s), p, len, off, cnt, NULL);
			}
		}
		pf_shard_close(s);
	}
	pf_block_free(&b);
}
