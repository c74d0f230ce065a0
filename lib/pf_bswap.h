/*
 * pf_bswap.h - reverse the byte order of every element of an array, in
 * place: big-endian data (IDX, '>' .npy arrays) to the little-endian layout
 * records use.  Internal to lib/.
 */
#ifndef PF_BSWAP_H
#define PF_BSWAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Swap each es-byte element of p[0..nbytes); es other than 2, 4, 8 is a
 * no-op (1-byte elements have no order).  A trailing partial element is
 * left alone. */
static inline void pf_bswap_elems(void *buf, size_t nbytes, size_t es)
{
	unsigned char *p = buf;
	size_t i;

	switch (es) {
	case 2:
		for (i = 0; i + 2 <= nbytes; i += 2) {
			uint16_t v;
			memcpy(&v, p + i, 2);
			v = __builtin_bswap16(v);
			memcpy(p + i, &v, 2);
		}
		break;
	case 4:
		for (i = 0; i + 4 <= nbytes; i += 4) {
			uint32_t v;
			memcpy(&v, p + i, 4);
			v = __builtin_bswap32(v);
			memcpy(p + i, &v, 4);
		}
		break;
	case 8:
		for (i = 0; i + 8 <= nbytes; i += 8) {
			uint64_t v;
			memcpy(&v, p + i, 8);
			v = __builtin_bswap64(v);
			memcpy(p + i, &v, 8);
		}
		break;
	default:
		break;
	}
}

#endif /* PF_BSWAP_H */
