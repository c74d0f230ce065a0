/* t0001-checksum: CRC32C and XXH64 against published vectors, hw vs sw agree. */
#include "config.h"
#include "tap.h"
#include "pf_checksum.h"

#include <stdlib.h>

/* CRC32C one bit at a time: the reference for the fast paths */
static uint32_t crc_bits(const unsigned char *p, size_t n)
{
	uint32_t c = ~0u;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
	}
	return ~c;
}

int main(void)
{
	static const struct { const char *s; size_t n; uint64_t xxh; uint32_t crc; } v[] = {
		{"", 0, 0xef46db3751d8e999ULL, 0x0},
		{"a", 1, 0xd24ec4f1a98c6e5bULL, 0xc1d04330},
		{"abc", 3, 0x44bc2cf5ad770999ULL, 0x364b3fb7},
		{"123456789", 9, 0x8cb841db40e6ae83ULL, 0xe3069283},
	};
	unsigned char big[768];
	uint32_t c;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		is_int(pf_crc32c(0, v[i].s, v[i].n), v[i].crc, "crc32c(\"%s\")", v[i].s);
		ok(pf_xxh64(v[i].s, v[i].n, 0) == v[i].xxh, "xxh64(\"%s\")", v[i].s);
	}
	for (int i = 0; i < 768; i++)
		big[i] = (unsigned char)i;
	is_int(pf_crc32c(0, big, sizeof(big)), 0x9fa293b3, "crc32c over 768 bytes (aligned loop)");
	ok(pf_xxh64(big, sizeof(big), 0) == 0x8e03c838c596036fULL, "xxh64 over 768 bytes (stripe loop)");
	/* incremental = one shot, from every split point and unaligned starts */
	int inc_ok = 1;
	for (size_t k = 0; k <= 100; k++) {
		c = pf_crc32c(pf_crc32c(0, big + 1, k), big + 1 + k, 700 - k);
		if (c != pf_crc32c(0, big + 1, 700))
			inc_ok = 0;
	}
	ok(inc_ok, "crc32c is incremental across any split, unaligned");

	/* long buffers go through three interleaved streams per 3 KiB chunk
	 * (hardware path): the bitwise CRC's value for lengths around the
	 * chunk size and far beyond it, from every alignment, and split
	 * anywhere (a split inside a chunk, one on its edge) */
	{
		static unsigned char r[150000 + 8];
		srand(7);
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)rand();
		static const size_t lens[] = { 3071, 3072, 3073, 6144 + 5, 9216, 150000 };
		int same = 1, split = 1;
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
			for (size_t off = 0; off < 8; off++) {
				uint32_t want = crc_bits(r + off, lens[l]);
				same &= pf_crc32c(0, r + off, lens[l]) == want;
				size_t cut = (lens[l] * (off + 1)) / 9;
				split &= pf_crc32c(pf_crc32c(0, r + off, cut), r + off + cut,
						   lens[l] - cut) == want;
			}
		ok(same, "crc32c of 3071 .. 150000 bytes, 8 alignments: the bitwise CRC's value");
		ok(split, "... and the same when split at any point");
	}
	is_int(pf_crc32c_mask(0), 0xa282ead8, "TFRecord mask of 0");
	is_int(pf_checksum(PF_CHECKSUM_CRC32C, "123456789", 9), 0xe3069283, "pf_checksum crc32c");
	is_str(pf_checksum_name(pf_checksum_parse("xxh64")), "xxh64", "names round-trip");
	is_int(pf_checksum_parse("md5"), -1, "unknown checksum name");
	return done_testing();
}
