/* pool.c - size-class buffer pool with reference-counted buffers. */
#include <pthread.h>
#include <stdlib.h>

#include "pf_pool.h"

#define POOL_MIN_SHIFT 6
#define POOL_MAX_SHIFT 30
#define POOL_NCLASS (POOL_MAX_SHIFT - POOL_MIN_SHIFT + 1)

/* Free lists are striped: each thread uses its own stripe first (picked
 * round robin at its first call), so worker threads do not contend on one
 * lock for every element. */
#define POOL_STRIPES 8

/* Buffers of this size and up (batches) skip the striping: they are taken
 * once per batch, not per element, so one list costs no contention, and
 * its LIFO order hands out the buffer released last, still in the cache
 * (with stripes a producer cycles through every buffer of the other
 * threads' lists and writes into cold memory each time). */
#define POOL_SHARED_MIN (64u << 10)

typedef struct pool_stripe {
	pthread_mutex_t lock;
	pf_buf *free_[POOL_NCLASS];
	char pad_[64];
} pool_stripe;

struct pf_pool {
	pool_stripe st[POOL_STRIPES];
	size_t max_cached;
	atomic_size_t cached;
	atomic_size_t out;
	void *(*alloc)(void *user, size_t bytes);     /* NULL: aligned_alloc */
	void (*release)(void *user, void *p, size_t bytes);
	void *user;
};

static size_t buf_total(size_t cap)
{
	return (sizeof(pf_buf) + cap + 63) & ~(size_t)63;
}

static void buf_free(pf_pool *p, pf_buf *b)
{
	if (!b)
		return;
	if (p->release)
		p->release(p->user, b, buf_total(b->cap));
	else
		free(b);
}

pf_pool *pf_pool_new(size_t max_cached)
{
	pf_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	for (int i = 0; i < POOL_STRIPES; i++)
		pthread_mutex_init(&p->st[i].lock, NULL);
	p->max_cached = max_cached ? max_cached : (256u << 20);
	return p;
}

pf_pool *pf_pool_new_custom(size_t max_cached,
			    void *(*alloc)(void *user, size_t bytes),
			    void (*release)(void *user, void *p, size_t bytes),
			    void *user)
{
	if (!alloc || !release)
		return NULL;
	pf_pool *p = pf_pool_new(max_cached);
	if (p) {
		p->alloc = alloc;
		p->release = release;
		p->user = user;
	}
	return p;
}

void pf_pool_free(pf_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < POOL_STRIPES; i++) {
		for (int c = 0; c < POOL_NCLASS; c++) {
			pf_buf *b = p->st[i].free_[c];
			while (b) {
				pf_buf *n = b->next;
				buf_free(p, b);
				b = n;
			}
		}
		pthread_mutex_destroy(&p->st[i].lock);
	}
	free(p);
}

static int size_class(size_t size)
{
	int c = POOL_MIN_SHIFT;
	while (c <= POOL_MAX_SHIFT && ((size_t)1 << c) < size)
		c++;
	return c > POOL_MAX_SHIFT ? -1 : c - POOL_MIN_SHIFT;
}

static int my_stripe(void)
{
	static atomic_uint next;
	static _Thread_local int mine = -1;
	if (mine < 0)
		mine = (int)(atomic_fetch_add(&next, 1) % POOL_STRIPES);
	return mine;
}

pf_buf *pf_buf_get(pf_pool *p, size_t size)
{
	int c = size_class(size);
	if (c < 0)
		return NULL;
	size_t cap = (size_t)1 << (c + POOL_MIN_SHIFT);
	pf_buf *b = NULL;
	int s0 = cap >= POOL_SHARED_MIN ? 0 : my_stripe();
	pool_stripe *own = &p->st[s0];
	pthread_mutex_lock(&own->lock);
	b = own->free_[c];
	if (b) {
		__atomic_store_n(&own->free_[c], b->next, __ATOMIC_RELAXED);
		atomic_fetch_sub(&p->cached, cap);
	}
	pthread_mutex_unlock(&own->lock);
	for (int k = 1; k < POOL_STRIPES && !b && cap < POOL_SHARED_MIN; k++) {
		pool_stripe *st = &p->st[(s0 + k) % POOL_STRIPES];
		/* peek without the lock: only a hint, rechecked under it */
		if (!__atomic_load_n(&st->free_[c], __ATOMIC_RELAXED))
			continue;
		/* take the whole list (O(1): no walk over cold buffers): one for
		 * us, the rest to our own stripe, so a thread that allocates
		 * what another frees does not come back here for every buffer */
		pthread_mutex_lock(&st->lock);
		pf_buf *got = st->free_[c];
		__atomic_store_n(&st->free_[c], NULL, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&st->lock);
		if (!got)
			continue;
		b = got;
		atomic_fetch_sub(&p->cached, cap);
		if (b->next) {
			pthread_mutex_lock(&own->lock);
			if (!own->free_[c]) {
				__atomic_store_n(&own->free_[c], b->next, __ATOMIC_RELAXED);
				b->next = NULL;
			}
			pthread_mutex_unlock(&own->lock);
			if (b->next) {
				/* ours filled meanwhile: give the rest back */
				pthread_mutex_lock(&st->lock);
				pf_buf *rest = b->next, *t = rest;
				while (t->next)
					t = t->next;
				t->next = st->free_[c];
				__atomic_store_n(&st->free_[c], rest, __ATOMIC_RELAXED);
				pthread_mutex_unlock(&st->lock);
			}
		}
	}
	if (!b) {
		b = p->alloc ? p->alloc(p->user, buf_total(cap)) :
			aligned_alloc(64, buf_total(cap));
		if (!b)
			return NULL;
		b->cls = c;
		b->pool = p;
		b->cap = cap;
	}
	b->next = NULL;
	atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
	atomic_fetch_add(&p->out, cap);
	return b;
}

void pf_buf_unref(pf_buf *b)
{
	if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	pf_pool *p = b->pool;
	atomic_fetch_sub(&p->out, b->cap);
	pool_stripe *st = &p->st[b->cap >= POOL_SHARED_MIN ? 0 : my_stripe()];
	pthread_mutex_lock(&st->lock);
	if (atomic_load(&p->cached) + b->cap <= p->max_cached) {
		b->next = st->free_[b->cls];
		__atomic_store_n(&st->free_[b->cls], b, __ATOMIC_RELAXED);
		atomic_fetch_add(&p->cached, b->cap);
		b = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	buf_free(p, b);
}

size_t pf_pool_bytes_out(const pf_pool *p)
{
	return atomic_load(&((pf_pool *)p)->out);
}

size_t pf_pool_bytes_cached(const pf_pool *p)
{
	return atomic_load(&((pf_pool *)p)->cached);
}
