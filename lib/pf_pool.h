/*
 * pf_pool.h - reference-counted buffers from a size-class pool.
 *
 * Buffers come in power-of-two size classes (64 B .. 1 GiB).  A released
 * buffer goes back to its class's free list and is handed out again, so a
 * pipeline in steady state allocates nothing.  The pool keeps at most
 * `max_cached` bytes on its free lists; beyond that, freed buffers are
 * returned to the system.
 *
 * Threads: every call is thread-safe.  A buffer may be released from any
 * thread.  The pool must outlive its buffers (pf_pool_free with buffers
 * still out is a bug, caught in debug builds by the outstanding count).
 */
#ifndef PF_POOL_H
#define PF_POOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pf_pool pf_pool;

typedef struct pf_buf {
	atomic_int refs;
	int cls;               /* size class, -1 = not pooled */
	pf_pool *pool;
	size_t cap;            /* usable bytes at data */
	struct pf_buf *next;   /* free-list link */
	size_t pad_;
	_Alignas(64) unsigned char data[];
} pf_buf;

/* A new pool (NULL when out of memory). max_cached 0 = 256 MiB. */
pf_pool *pf_pool_new(size_t max_cached);
/* A pool whose buffers (pf_buf header and data together, `bytes` in all,
 * 64-byte aligned by the allocator) come from alloc(user, bytes) and go
 * back through release(user, ptr, bytes): e.g. pinned host memory.  Pooled
 * like any other.  NULL when out of memory or alloc/release is NULL. */
pf_pool *pf_pool_new_custom(size_t max_cached,
			    void *(*alloc)(void *user, size_t bytes),
			    void (*release)(void *user, void *p, size_t bytes),
			    void *user);
/* Free the pool and its cached buffers. NULL is a no-op. */
void pf_pool_free(pf_pool *p);

/* A buffer of at least `size` bytes with one reference, or NULL (out of
 * memory or size over 1 GiB).  Contents are undefined. */
pf_buf *pf_buf_get(pf_pool *p, size_t size);
/* Add a reference. */
static inline void pf_buf_ref(pf_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}
/* Drop a reference; the last one returns the buffer to its pool. NULL ok. */
void pf_buf_unref(pf_buf *b);

/* Bytes currently handed out (not on free lists), and cached. */
size_t pf_pool_bytes_out(const pf_pool *p);
size_t pf_pool_bytes_cached(const pf_pool *p);

#endif /* PF_POOL_H */
