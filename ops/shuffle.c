/*
 * shuffle.c - tf.data's shuffle: a buffer of N elements; each output is a
 * uniformly chosen buffered element, replaced by the next input.  The
 * PRNG is seeded from (seed, op index, epoch), so the order depends only on
 * the seed (and the epoch, unless no_reshuffle).
 *
 * Memory: the buffer holds 24-byte slots, not whole pf_elem structs: an
 * element in the canonical layout (its fields where pf_layout puts them in
 * its own buffer) is rebuilt from its buffer on the way out; any other
 * element keeps a full copy in a recycled node.  Elements that share their
 * storage are compacted first, so nothing upstream stays pinned.
 *
 * Slot mode: when the input can lend its elements as bytes (shards with a
 * fused fixed-shape map, see pf_op_vt.borrow), the buffer is one array of
 * size + 1 fixed-size slots: each input is copied once into a free slot,
 * and the output is lent the same way (a following batch gathers straight
 * from the slot).  perm[] lists the slots in buffer positions; `spare` is
 * the slot the next input goes to, so the slot just handed out stays
 * valid until the next call.  Same order as the element mode.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "pf_op.h"

typedef struct shuf_node {
	pf_elem e;
	struct shuf_node *next;
} shuf_node;

typedef struct shuf_slot {
	pf_buf *ref;          /* canonical: the element's storage */
	uint64_t id;          /* canonical: its id */
	shuf_node *full;      /* not canonical: the whole element */
	size_t nb;
} shuf_slot;

typedef struct shuffle_cfg {
	int64_t size;
	pf_shuffle_opts o;
	/* runtime */
	shuf_slot *buf;
	shuf_node *free_nodes;
	int64_t count;
	int filled, in_done, canon_ok;
	int64_t off[PF_MAX_FIELDS], cnt[PF_MAX_FIELDS];
	pf_rng rng;
	/* slot mode */
	size_t stride;        /* bytes per slot; 0 = element mode */
	unsigned char *store; /* size + 1 slots */
	uint64_t *ids;        /* per slot */
	uint32_t *lens;       /* per slot: bytes */
	uint32_t *perm;       /* buffer position -> slot */
	uint32_t spare;
	int64_t next_i;       /* the next draw, made one call ahead (-1: none) */
} shuffle_cfg;

static int shuffle_prepare(pf_op *op, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = (uint64_t)c->size * (in->elem_bytes + sizeof(shuf_slot) + 64);
	op->can_borrow = in->can_borrow && in->canon_bytes > 0;
	op->canon_bytes = op->can_borrow ? in->canon_bytes : 0;
	c->stride = op->can_borrow ? pf_align_up(in->canon_bytes, 64) : 0;
	if (c->stride)
		op->buffer_bytes = (uint64_t)(c->size + 1) * (c->stride + 16);
	op->cardinality = in->cardinality;
	op->st.depth = (int)(c->size > 1 << 30 ? 1 << 30 : c->size);
	return 0;
}

static void shuffle_seed(pf_op *op)
{
	shuffle_cfg *c = op->cfg;
	uint64_t seed = c->o.seed_set ? c->o.seed : op->rt->opts.seed;
	uint64_t ep = c->o.no_reshuffle ? 0 : op->epoch;
	pf_rng_seed(&c->rng, seed, ((uint64_t)op->index << 40) ^ ep);
	for (int64_t i = 0; c->perm && i < c->size; i++)
		c->perm[i] = (uint32_t)i;
	c->spare = (uint32_t)c->size;
	c->next_i = -1;
	c->count = 0;
	c->filled = 0;
	c->in_done = 0;
}

static int shuffle_start(pf_op *op, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	if (c->stride) {
		size_t n = (size_t)c->size + 1;
		c->store = aligned_alloc(64, n * c->stride);
		c->ids = calloc(n, sizeof(*c->ids));
		c->lens = calloc(n, sizeof(*c->lens));
		c->perm = calloc(n, sizeof(*c->perm));
		if (!c->store || !c->ids || !c->perm || !c->lens)
			return pf_op_error(op, err, PF_ENOMEM, "out of memory (%lld slots)",
					   (long long)c->size);
		shuffle_seed(op);
		return 0;
	}
	c->buf = calloc((size_t)c->size, sizeof(*c->buf));
	if (!c->buf)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory (%lld slots)",
				   (long long)c->size);
	pf_layout(&op->schema, 1, c->off);
	c->canon_ok = op->schema.nfields > 0;
	for (int i = 0; i < op->schema.nfields; i++) {
		c->cnt[i] = pf_field_count(&op->schema.fields[i]);
		if (c->off[i] < 0)
			c->canon_ok = 0;
	}
	shuffle_seed(op);
	return 0;
}

static int canonical(const shuffle_cfg *c, const pf_elem *e)
{
	const pf_buf *b = e->ref_;
	if (!c->canon_ok || !b || e->batch || e->buf != b->data)
		return 0;
	for (int i = 0; i < e->schema->nfields; i++)
		if (e->data[i] != (const unsigned char *)e->buf + c->off[i] ||
		    e->nitems[i] != c->cnt[i] || e->var_len[i] || e->lengths[i])
			return 0;
	return 1;
}

/* Pull one input element into slot i; sets in_done at the end. */
static int pull(pf_op *op, int64_t i, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	pf_elem e;
	int rc = pf_op_next(op->in, &e, err);
	if (rc == PF_END) {
		c->in_done = 1;
		return 0;
	}
	if (rc)
		return rc;
	pf_buf *b = e.ref_;
	int own = b && atomic_load_explicit(&b->refs, memory_order_relaxed) == 1 &&
		e.nbytes + 64 >= b->cap / 2;
	if (!own) {
		pf_elem tmp = e;
		if ((rc = pf_elem_compact(op->rt, &tmp, &e, err)))
			return rc;
	}
	shuf_slot *s = &c->buf[i];
	if (canonical(c, &e)) {
		s->ref = e.ref_;
		s->id = e.id;
		s->nb = e.nbytes;
		s->full = NULL;
		return 0;
	}
	shuf_node *n = c->free_nodes;
	if (n)
		c->free_nodes = n->next;
	else if (!(n = malloc(sizeof(*n)))) {
		pf_elem_release(&e);
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	}
	n->e = e;
	s->full = n;
	s->ref = NULL;
	return 0;
}

/* Move slot i's element into *out. */
static void take(pf_op *op, int64_t i, pf_elem *out)
{
	shuffle_cfg *c = op->cfg;
	shuf_slot *s = &c->buf[i];
	if (s->full) {
		*out = s->full->e;
		s->full->next = c->free_nodes;
		c->free_nodes = s->full;
		s->full = NULL;
		return;
	}
	memset(out, 0, sizeof(*out));
	out->schema = &op->schema;
	out->id = s->id;
	out->ref_ = s->ref;
	out->buf = s->ref->data;
	out->nbytes = s->nb;
	for (int f = 0; f < op->schema.nfields; f++) {
		out->data[f] = s->ref->data + c->off[f];
		out->nitems[f] = c->cnt[f];
	}
	s->ref = NULL;
}

/* Copy n bytes into a 64-byte aligned slot.  The slots (size x stride
 * bytes) are far larger than the caches and a slot is read only much later,
 * so large copies use streaming stores: no read of the old line first, no
 * eviction of what the producer and the batch are using. */
static void slot_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
#ifdef __SSE2__
	if (n >= 1024) {
		size_t k = 0;
		for (; k + 64 <= n; k += 64) {
			__m128i a = _mm_loadu_si128((const __m128i *)(src + k));
			__m128i b = _mm_loadu_si128((const __m128i *)(src + k + 16));
			__m128i c = _mm_loadu_si128((const __m128i *)(src + k + 32));
			__m128i d = _mm_loadu_si128((const __m128i *)(src + k + 48));
			_mm_stream_si128((__m128i *)(dst + k), a);
			_mm_stream_si128((__m128i *)(dst + k + 16), b);
			_mm_stream_si128((__m128i *)(dst + k + 32), c);
			_mm_stream_si128((__m128i *)(dst + k + 48), d);
		}
		if (k < n)
			memcpy(dst + k, src + k, n - k);
		_mm_sfence();
		return;
	}
#endif
	memcpy(dst, src, n);
}

/* Slot mode: copy the next input into slot k; sets in_done at the end. */
static int pull_slot(pf_op *op, uint32_t k, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	const unsigned char *d;
	uint64_t id;
	size_t len;
	int rc = pf_op_borrow(op->in, &d, &len, &id, err);
	if (rc == PF_END) {
		c->in_done = 1;
		return 0;
	}
	if (rc)
		return rc;
	slot_copy(c->store + (size_t)k * c->stride, d, len);
	c->ids[k] = id;
	c->lens[k] = (uint32_t)len;
	return 0;
}

/* Publish the buffer's fill for pf_iter_stats, and return rc. */
static int set_occ(pf_op *op, const shuffle_cfg *c, int rc)
{
	atomic_store_explicit(&op->st.occupancy, c->count, memory_order_relaxed);
	return rc;
}

static int shuffle_borrow(pf_op *op, const unsigned char **data, size_t *len,
			  uint64_t *id, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	int rc;
	while (!c->filled && !c->in_done && c->count < c->size) {
		if ((rc = pull_slot(op, c->perm[c->count], err)))
			return rc;
		if (!c->in_done)
			c->count++;
	}
	c->filled = 1;
	if (!c->count)
		return set_occ(op, c, PF_END);
	/* the draw made at the last call (its slot is on its way into the
	 * cache), unless the buffer has shrunk under it since */
	int64_t i = c->next_i;
	if (i < 0 || i >= c->count)
		i = (int64_t)pf_rng_below(&c->rng, (uint64_t)c->count);
	c->next_i = -1;
	uint32_t k = c->perm[i];
	*data = c->store + (size_t)k * c->stride;
	*id = c->ids[k];
	*len = c->lens[k];
	if (!c->in_done) {
		if ((rc = pull_slot(op, c->spare, err)))
			return rc;
		if (!c->in_done) {
			c->perm[i] = c->spare;
			c->spare = k;
			/* draw the next one now and fetch its slot: the slots are
			 * far larger than the caches, and reading one is a chain
			 * of misses the caller would wait for */
			c->next_i = (int64_t)pf_rng_below(&c->rng, (uint64_t)c->count);
			const unsigned char *nx = c->store + (size_t)c->perm[c->next_i] * c->stride;
			for (size_t o = 0; o < op->canon_bytes; o += 64)
				__builtin_prefetch(nx + o);
			return set_occ(op, c, 0);
		}
	}
	/* input is over: fill the hole with the last one */
	c->perm[i] = c->perm[--c->count];
	c->perm[c->count] = k;
	return set_occ(op, c, 0);
}

static int shuffle_next(pf_op *op, pf_elem *out, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	int rc;
	if (c->stride) {
		const unsigned char *d;
		uint64_t id;
		size_t len;
		if ((rc = shuffle_borrow(op, &d, &len, &id, err)))
			return rc;
		if ((rc = pf_elem_from_bytes(op->rt, &op->schema, d, len, id, out, err)))
			return pf_op_error(op, err, rc, "out of memory");
		return set_occ(op, c, 0);
	}
	while (!c->filled && !c->in_done && c->count < c->size) {
		if ((rc = pull(op, c->count, err)))
			return rc;
		if (!c->in_done)
			c->count++;
	}
	c->filled = 1;
	if (!c->count)
		return set_occ(op, c, PF_END);
	int64_t i = (int64_t)pf_rng_below(&c->rng, (uint64_t)c->count);
	take(op, i, out);
	if (!c->in_done) {
		if ((rc = pull(op, i, err))) {
			pf_elem_release(out);
			return rc;
		}
		if (!c->in_done)
			return set_occ(op, c, 0);
	}
	/* input is over: fill the hole with the last one */
	c->buf[i] = c->buf[--c->count];
	memset(&c->buf[c->count], 0, sizeof(c->buf[c->count]));
	return set_occ(op, c, 0);
}

static void shuffle_drop(pf_op *op)
{
	shuffle_cfg *c = op->cfg;
	for (int64_t i = 0; c->buf && i < c->count; i++) {
		pf_elem e;
		take(op, i, &e);
		pf_elem_release(&e);
	}
	c->count = 0;
	atomic_store_explicit(&op->st.occupancy, 0, memory_order_relaxed);
}

static void shuffle_reset(pf_op *op)
{
	shuffle_drop(op);
	pf_op_reset(op->in);
	op->epoch++; /* seed with the epoch about to begin */
	shuffle_seed(op);
	op->epoch--; /* pf_op_reset increments it */
}

static void shuffle_stop(pf_op *op)
{
	shuffle_cfg *c = op->cfg;
	shuffle_drop(op);
	free(c->buf);
	c->buf = NULL;
	free(c->store);
	free(c->ids);
	free(c->lens);
	free(c->perm);
	c->store = NULL;
	c->ids = NULL;
	c->lens = NULL;
	c->perm = NULL;
	while (c->free_nodes) {
		shuf_node *n = c->free_nodes->next;
		free(c->free_nodes);
		c->free_nodes = n;
	}
}

static const pf_op_vt shuffle_vt = {
	.kind = "shuffle", .prepare = shuffle_prepare, .start = shuffle_start,
	.next = shuffle_next, .reset = shuffle_reset, .stop = shuffle_stop,
	.borrow = shuffle_borrow,
};

pf_op *pf_op_shuffle_new(int64_t size, const pf_shuffle_opts *o, pf_error *err)
{
	if (size < 1 || size > (1ll << 31)) {
		pf_error_set(err, PF_EINVAL, "shuffle: buffer_size must be in 1..2^31 (got %lld)",
			     (long long)size);
		return NULL;
	}
	pf_op *op = pf_op_alloc(&shuffle_vt, sizeof(shuffle_cfg), err);
	if (op) {
		shuffle_cfg *c = op->cfg;
		c->size = size;
		if (o)
			c->o = *o;
	}
	return op;
}
