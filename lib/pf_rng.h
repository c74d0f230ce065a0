/*
 * pf_rng.h - a small seeded PRNG (xoshiro256**, seeded through splitmix64).
 *
 * Deterministic across platforms and thread counts: the same seed gives the
 * same sequence.  A pf_rng is a plain value owned by one thread at a time.
 */
#ifndef PF_RNG_H
#define PF_RNG_H

#include <stdint.h>

typedef struct pf_rng {
	uint64_t s[4];
} pf_rng;

/* One splitmix64 step: advances *x and returns a well-mixed value. */
uint64_t pf_splitmix64(uint64_t *x);

/* Seed from a 64-bit seed and a stream number (e.g. op index, epoch):
 * different (seed, stream) pairs give independent-looking sequences. */
void pf_rng_seed(pf_rng *r, uint64_t seed, uint64_t stream);

/* Next 64 random bits. */
uint64_t pf_rng_next(pf_rng *r);

/* Uniform integer in [0, n) without modulo bias (n >= 1). */
uint64_t pf_rng_below(pf_rng *r, uint64_t n);

/* Fisher-Yates shuffle of n uint32 values in place. */
void pf_rng_shuffle_u32(pf_rng *r, uint32_t *v, uint32_t n);

#endif /* PF_RNG_H */
