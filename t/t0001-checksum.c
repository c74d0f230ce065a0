/* t0001-checksum: CRC32C and XXH64 against published vectors, hw vs sw agree. */
#include "config.h"
#include "tap.h"
#include "pf_checksum.h"

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
	is_int(pf_crc32c_mask(0), 0xa282ead8, "TFRecord mask of 0");
	is_int(pf_checksum(PF_CHECKSUM_CRC32C, "123456789", 9), 0xe3069283, "pf_checksum crc32c");
	is_str(pf_checksum_name(pf_checksum_parse("xxh64")), "xxh64", "names round-trip");
	is_int(pf_checksum_parse("md5"), -1, "unknown checksum name");
	return done_testing();
}
