/* pf_prefetch.h - start fetching memory a thread is about to read. */
#ifndef PF_PREFETCH_H
#define PF_PREFETCH_H
#include <stddef.h>

/* Start fetching the cache lines of [p, p + bytes).  (An asm statement:
 * gcc deletes a loop of __builtin_prefetch it finds has no effect.) */
static inline void pf_fetch_lines(const void *p, size_t bytes)
{
	const char *b = p;
	for (size_t o = 0; o < bytes; o += 64) {
#if defined(__x86_64__) || defined(__i386__)
		__asm__ volatile("prefetcht0 %0" : : "m"(b[o]));
#else
		__builtin_prefetch(b + o);
#endif
	}
}
#endif
