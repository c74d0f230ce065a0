/*
 * pf_shard_int.h - what the shard writer (shard_write.c) and the reader and
 * decoder (shard.c) share: the magics and little-endian field access of the
 * format (doc/FORMAT.md).  Internal to lib/.
 */
#ifndef PF_SHARD_INT_H
#define PF_SHARD_INT_H

#include <stdint.h>
#include <stdlib.h>

#include "pf_shard.h"

static const char header_magic[8] = {'P', 'F', 'S', 'H', 'A', 'R', 'D', 0};
static const char footer_magic[8] = {'P', 'F', 'S', 'H', 'E', 'N', 'D', 0};
static const char block_magic[4] = {'P', 'F', 'B', 'K'};

/* ---- little-endian field access (the format is LE on every host) ---- */

static inline uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static inline void wr16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void wr32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static inline void wr64(unsigned char *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}


/* Largest raw size a block of `stored` payload bytes may declare. */
static inline uint64_t max_raw_for(int codec, uint64_t stored)
{
	if (codec == PF_CODEC_NONE)
		return stored;
	return stored * PF_SHARD_MAX_RATIO + (64u << 10);
}

/* Grow *buf (of *cap elements of elem bytes) to hold need elements,
 * doubling from 64: 0, or PF_ENOMEM with *buf and *cap as they were. */
static inline int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
	size_t c = *cap ? *cap : 64;
	void *nb;
	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	nb = realloc(*buf, c * elem);
	if (!nb)
		return PF_ENOMEM;
	*buf = nb;
	*cap = c;
	return 0;
}

#endif /* PF_SHARD_INT_H */
