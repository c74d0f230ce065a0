/*
 * pf_u8_f32.h - bytes to floats in [0,1]: d[j] = (float)s[j] / 255.0f, the
 * conversion behind the built-in decode_f32 map.
 *
 * Every implementation gives the very floats of the scalar division, bit
 * for bit (t2012 checks all 256 byte values on each).  The fastest one the
 * CPU has is chosen once:
 *   avx2  8 at a time: a multiply by 1/255 and one FMA correction step,
 *         which makes the quotient correctly rounded (no divide);
 *   sse2  4 at a time with the IEEE divide;
 *   table a 256-entry table.
 * The vector ones write 16-byte (sse2) or 32-byte (avx2) aligned output
 * with streaming stores: the output is usually a batch the consumer or the
 * device reads much later, so its lines are not read first nor kept.
 */
#ifndef PF_U8_F32_H
#define PF_U8_F32_H

#include <stdint.h>

/* d[j] = s[j] / 255.0f for j < n.  d and s must not overlap. */
void pf_u8_to_f32(float *d, const unsigned char *s, int64_t n);

/* The same floats with plain stores, for output that is read again soon
 * (a small element a batch copies next): streaming stores would evict it,
 * and on short runs (an image row) their fences cost more than the
 * conversion.  d and s must not overlap. */
void pf_u8_to_f32_hot(float *d, const unsigned char *s, int64_t n);

/* Testing aid: use implementation `name` ("avx2", "sse2" or "table"; NULL:
 * the best this CPU has) from now on, process-wide.  Returns 0, or -1 when
 * the CPU lacks it (nothing changes). */
int pf_u8_to_f32_use(const char *name);

/* The name of the implementation in use. */
const char *pf_u8_to_f32_impl(void);

#endif
