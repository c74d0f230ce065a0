/*
 * pf_checksum.h - CRC32C (Castagnoli) and XXH64, the two block checksums of
 * the shard format, and TFRecord's masked CRC32C.
 *
 * crc32c uses the SSE4.2 crc32 instruction when the CPU has it (checked once,
 * at first use) and a slicing-by-8 table otherwise; both give identical
 * results.  All functions are pure and thread-safe.
 */
#ifndef PF_CHECKSUM_H
#define PF_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Extend crc (0 to start) over n bytes; returns the new CRC32C. */
uint32_t pf_crc32c(uint32_t crc, const void *buf, size_t n);

/* TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t pf_crc32c_mask(uint32_t crc);

/* XXH64 of n bytes with the given seed. */
uint64_t pf_xxh64(const void *buf, size_t n, uint64_t seed);

/* Checksum kinds stored in shard headers. */
enum pf_checksum_kind {
	PF_CHECKSUM_CRC32C = 1,
	PF_CHECKSUM_XXH64 = 2,
};

/* The checksum of kind `kind` over n bytes, widened to 64 bits; 0 for an unknown kind. */
uint64_t pf_checksum(int kind, const void *buf, size_t n);

/* "crc32c" / "xxh64" / NULL, and back (-1 when unknown). */
const char *pf_checksum_name(int kind);
int pf_checksum_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* PF_CHECKSUM_H */
