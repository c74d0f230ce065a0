/* checksum.c - CRC32C (hardware or slicing-by-8) and XXH64; see pf_checksum.h. */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "pf_checksum.h"

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];
static int crc_hw;

/* The hardware path runs three streams of CRC_LANE bytes at once (the
 * crc32 instruction has a latency of 3 cycles and a throughput of 1: one
 * stream leaves two thirds of it idle) and joins them: for streams A, B,
 * C of a chunk, crc = A * x^(16 LANE) + B * x^(8 LANE) + C (mod P), B and
 * C begun from 0.  Multiplying by those constants is linear in the 32
 * bits, so four 256-entry tables per constant do it (crc_shift). */
#define CRC_LANE 1024
static uint32_t crc_shift1[4][256], crc_shift2[4][256]; /* x^(8 LANE), x^(16 LANE) */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
	/* v * x^(8n) mod P is v run through n zero bytes */
	for (int j = 0; j < 4; j++)
		for (uint32_t b = 0; b < 256; b++) {
			uint32_t v = b << (8 * j);
			for (int k = 0; k < CRC_LANE; k++)
				v = (v >> 8) ^ crc_table[0][v & 0xff];
			crc_shift1[j][b] = v;
			for (int k = 0; k < CRC_LANE; k++)
				v = (v >> 8) ^ crc_table[0][v & 0xff];
			crc_shift2[j][b] = v;
		}
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline uint32_t crc_shift(uint32_t (*t)[256], uint32_t v)
{
	return t[0][v & 0xff] ^ t[1][(v >> 8) & 0xff] ^ t[2][(v >> 16) & 0xff] ^ t[3][v >> 24];
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
		n--;
	}
	while (n >= 8) {
		uint64_t v = load64(p) ^ crc;
		crc = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^
		      crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
		      crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^
		      crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw_run(uint32_t crc, const unsigned char *p, size_t n)
{
	uint64_t c = crc;
	while (n && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		n--;
	}
	/* three streams per chunk of 3 CRC_LANE bytes (see crc_shift1) */
	while (n >= 3 * CRC_LANE) {
		uint64_t a = c, b = 0, d = 0;
		for (int k = 0; k < CRC_LANE; k += 8) {
			a = __builtin_ia32_crc32di(a, load64(p + k));
			b = __builtin_ia32_crc32di(b, load64(p + CRC_LANE + k));
			d = __builtin_ia32_crc32di(d, load64(p + 2 * CRC_LANE + k));
		}
		c = crc_shift(crc_shift2, (uint32_t)a) ^ crc_shift(crc_shift1, (uint32_t)b) ^
		    (uint32_t)d;
		p += 3 * CRC_LANE;
		n -= 3 * CRC_LANE;
	}
	while (n >= 8) {
		c = __builtin_ia32_crc32di(c, load64(p));
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t pf_crc32c(uint32_t crc, const void *buf, size_t n)
{
	const unsigned char *p = buf;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
#if defined(__x86_64__)
	if (crc_hw)
		return ~crc_hw_run(crc, p, n);
#endif
	return ~crc_sw(crc, p, n);
}

uint32_t pf_crc32c_mask(uint32_t crc)
{
	return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* XXH64, from the public specification (xxhash.com doc/xxhash_spec.md). */
#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xround(uint64_t acc, uint64_t in)
{
	acc += in * P2;
	acc = rotl64(acc, 31);
	return acc * P1;
}
static inline uint64_t xmerge(uint64_t acc, uint64_t v)
{
	acc ^= xround(0, v);
	return acc * P1 + P4;
}

uint64_t pf_xxh64(const void *buf, size_t n, uint64_t seed)
{
	const unsigned char *p = buf, *end = p + n;
	uint64_t h;

	if (n >= 32) {
		uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
		const unsigned char *limit = end - 32;
		do {
			v1 = xround(v1, load64(p)); p += 8;
			v2 = xround(v2, load64(p)); p += 8;
			v3 = xround(v3, load64(p)); p += 8;
			v4 = xround(v4, load64(p)); p += 8;
		} while (p <= limit);
		h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
		h = xmerge(h, v1);
		h = xmerge(h, v2);
		h = xmerge(h, v3);
		h = xmerge(h, v4);
	} else {
		h = seed + P5;
	}
	h += (uint64_t)n;
	while (p + 8 <= end) {
		h ^= xround(0, load64(p));
		h = rotl64(h, 27) * P1 + P4;
		p += 8;
	}
	if (p + 4 <= end) {
		uint32_t v;
		memcpy(&v, p, 4);
		h ^= (uint64_t)v * P1;
		h = rotl64(h, 23) * P2 + P3;
		p += 4;
	}
	while (p < end) {
		h ^= (*p++) * P5;
		h = rotl64(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}

uint64_t pf_checksum(int kind, const void *buf, size_t n)
{
	switch (kind) {
	case PF_CHECKSUM_CRC32C: return pf_crc32c(0, buf, n);
	case PF_CHECKSUM_XXH64: return pf_xxh64(buf, n, 0);
	default: return 0;
	}
}

const char *pf_checksum_name(int kind)
{
	switch (kind) {
	case PF_CHECKSUM_CRC32C: return "crc32c";
	case PF_CHECKSUM_XXH64: return "xxh64";
	default: return NULL;
	}
}

int pf_checksum_parse(const char *name)
{
	if (!strcmp(name, "crc32c"))
		return PF_CHECKSUM_CRC32C;
	if (!strcmp(name, "xxh64"))
		return PF_CHECKSUM_XXH64;
	return -1;
}
