/*
 * reader_buf.c - the reader's buffer pool (pf_reader_int.h): aligned
 * buffers reused by size class, bounded by max_bytes, optionally registered
 * with the ring (read_fixed).
 */
#include "config.h"

#include <stdlib.h>
#include <sys/uio.h>

#include "pf_reader_int.h"

/* ---------------------------------------------------------------- buffers */

static size_t buf_cap(size_t n)
{
	size_t c = RD_ALIGN;

	if (n > RD_BIG_UNIT)
		return (n + RD_BIG_UNIT - 1) & ~((size_t)RD_BIG_UNIT - 1);
	while (c < n)
		c <<= 1;
	return c;
}

static int buf_class(size_t cap)
{
	int c = 0;

	if (cap > RD_BIG_UNIT)
		return RD_NCLASS;
	while (((size_t)RD_ALIGN << c) < cap)
		c++;
	return c;
}

/* Register b in a free slot of the sparse table; b->fixed stays -1 if none. */
static void buf_register(pf_reader *r, struct rbuf *b)
{
	struct iovec iov = { b->mem, b->cap };
	int idx;

	b->fixed = -1;
	if (!r->fixed_avail || !r->fixed_on || !r->nfixed_free || b->cap > RD_FIXED_MAX)
		return;
	idx = r->fixed_free[--r->nfixed_free];
	if (io_uring_register_buffers_update_tag(&r->ring, idx, &iov, NULL, 1) != 1) {
		r->fixed_free[r->nfixed_free++] = idx;
		return;
	}
	b->fixed = idx;
}

void pf_rdbuf_destroy(pf_reader *r, struct rbuf *b)
{
	if (b->fixed >= 0 && r->fixed_avail) {
		struct iovec iov = { NULL, 0 };

		io_uring_register_buffers_update_tag(&r->ring, b->fixed, &iov, NULL, 1);
		r->fixed_free[r->nfixed_free++] = b->fixed;
	}
	free(b->mem);
	free(b);
}

/* Drop one pooled buffer, the largest class first (frees the most). */
static void pool_drop_one(pf_reader *r)
{
	for (int c = RD_NCLASS; c >= 0; c--) {
		struct rbuf *b = r->pool[c];

		if (b) {
			r->pool[c] = b->next;
			r->pooled -= b->cap;
			pf_rdbuf_destroy(r, b);
			return;
		}
	}
}

struct rbuf *pf_rdbuf_get(pf_reader *r, size_t n, int demand)
{
	size_t cap = buf_cap(n);
	int c = buf_class(cap);
	struct rbuf **pp, *b;

	if (!demand && r->held + cap > r->o.max_bytes)
		return NULL;
	for (pp = &r->pool[c]; *pp; pp = &(*pp)->next)
		if ((*pp)->cap == cap)
			break;
	if (*pp) {
		b = *pp;
		*pp = b->next;
		r->pooled -= cap;
		r->held += cap;
		return b;
	}
	while (r->pooled && r->held + r->pooled + cap > r->o.max_bytes)
		pool_drop_one(r);
	b = malloc(sizeof(*b));
	if (!b)
		return NULL;
	if (posix_memalign(&b->mem, RD_ALIGN, cap) != 0) {
		free(b);
		return NULL;
	}
	b->cap = cap;
	b->next = NULL;
	buf_register(r, b);
	r->held += cap;
	return b;
}

void pf_rdbuf_put(pf_reader *r, struct rbuf *b)
{
	int c = buf_class(b->cap);

	r->held -= b->cap;
	if (r->held + r->pooled + b->cap > r->o.max_bytes) {
		pf_rdbuf_destroy(r, b);
		return;
	}
	b->next = r->pool[c];
	r->pool[c] = b;
	r->pooled += b->cap;
}

void pf_rdbuf_pool_free(pf_reader *r)
{
	for (int c = 0; c <= RD_NCLASS; c++) {
		for (struct rbuf *b = r->pool[c], *next; b; b = next) {
			next = b->next;
			pf_rdbuf_destroy(r, b);
		}
	}
}
