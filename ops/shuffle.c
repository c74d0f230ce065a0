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
 * size + nring fixed-size slots: each input is copied once into a free slot,
 * and the output is lent the same way (a following batch gathers straight
 * from the slot).  perm[] lists the slots in buffer positions; ring[]
 * the slots handed out, oldest first, and the next input goes into the
 * oldest, so a slot handed out stays valid through nring - 1 more calls
 * (op->lend_window: a parallel map reads its inputs in place).  The slots'
 * ids and lengths are kept apart, in a dense array, so a hand-out reads no
 * line of the record itself.  While the input lasts, draws are made
 * SHUF_AHEAD calls ahead and what their hand-out reads fetched into the
 * cache then: the id and length, and the bytes only when this thread's
 * consumer reads them at once (a map's workers read them on their cores).  Same order as the element mode (t1002).
 * When the input's lent bytes stay put (PF_LEND_STABLE: the in-memory
 * cache), a slot holds a pointer to them instead of a copy (reference
 * mode): the shuffle then moves 32-byte slots, never the records' bytes,
 * and lends the input's bytes on.
 *
 * The next epoch's fill overlaps this epoch's drain: once the input ends,
 * the buffer only shrinks, so the shuffle resets its input right then (it
 * begins its next epoch early, as it would at this op's reset) and every
 * draw of the drain pulls one record of the next epoch into a second
 * list (in slot mode into the slot handed out the longest ago, so lent
 * bytes stay valid as long as in the steady state).  The next epoch then
 * starts with its buffer (nearly) full instead of waiting for size
 * records, and the source reads the next epoch while this one drains.
 * The fill takes the input in its order and draws nothing, so the output
 * is the same as with the reset at the epoch boundary; an error of the
 * next epoch's input is held back until that epoch begins.
 */
#include <stdint.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "pf_op.h"
#include "pf_prefetch.h"

/* slot mode: draws made this many calls ahead (a power of two) */
#ifndef SHUF_AHEAD
#define SHUF_AHEAD 16
#endif
/* slot mode: the most slots kept after they were handed out (the lend
 * window): at most half the buffer size, 4095 slots and 16 MiB */
#ifndef SHUF_LEND_MAX
#define SHUF_LEND_MAX 4095
#endif
#define SHUF_LEND_BYTES ((size_t)16 << 20)

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

/* slot mode: a slot's element id and length, in an array of their own
 * (dense: 16 bytes a slot, in the feeder's L2), so a draw reads no line of
 * the slot's bytes */
typedef struct shuf_meta {
	uint64_t id;
	uint32_t len;
} shuf_meta;

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
	int ref;              /* the input's lent bytes are stable (the
			       * in-memory cache): a slot keeps a pointer to
			       * them, not a copy */
	size_t stride;        /* bytes per slot; 0 = element mode */
	unsigned char *store; /* size + nring slots */
	shuf_meta *smeta;     /* size + nring: each slot's id and length */
	int touch;            /* the consumer reads the bytes lent in this
			       * thread at once: fetch them ahead (else a
			       * worker reads them later: leave them be) */
	uint32_t *perm;       /* buffer position -> slot */
	uint32_t *ring;       /* slots handed out, oldest first: the next input
			       * goes into ring[rhead], the oldest */
	uint32_t nring, rhead;
	/* draws made ahead (steady state: the count does not change), so
	 * their slots are fetched into the cache before they are handed out */
	int64_t ahead[SHUF_AHEAD];
	pf_rng ah_rng[SHUF_AHEAD]; /* the generator's state after each */
	unsigned ah_head, ah_n;
	/* the next epoch's fill, made while this epoch drains */
	int next;             /* the input was reset into the next epoch */
	int next_done;        /* ... and ended within the fill */
	int next_rc;          /* ... or failed (held back until that epoch) */
	pf_error next_err;
	int held_rc;          /* the failure, now due: returned by the next call */
	pf_error held_err;
	int64_t nfill;        /* records of the next epoch buffered (its
			       * positions 0..nfill-1) */
	uint32_t *nperm;      /* slot mode: their slots */
	shuf_slot *nbuf;      /* element mode: them */
} shuffle_cfg;

static int shuffle_prepare(pf_op *op, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	/* a slot (and its twin for the next epoch's fill) per element */
	op->buffer_bytes = (uint64_t)c->size * (in->elem_bytes + 2 * sizeof(shuf_slot) + 64);
	op->can_borrow = in->can_borrow && in->canon_bytes > 0;
	op->canon_bytes = op->can_borrow ? in->canon_bytes : 0;
	/* a slot: the bytes (or, by reference, a pointer to them); ids and
	 * lengths are in smeta */
	c->ref = op->can_borrow && in->lend_window == PF_LEND_STABLE;
	c->stride = !op->can_borrow ? 0 : c->ref ? sizeof(void *) : pf_align_up(in->canon_bytes, 64);
	/* a slot handed out is refilled only nring calls later: what it lent
	 * stays valid through nring - 1 more calls (a parallel map reads it
	 * in place instead of copying it) */
	int64_t lend = c->size / 2 < SHUF_LEND_MAX ? c->size / 2 : SHUF_LEND_MAX;
	if (c->stride && (size_t)lend > SHUF_LEND_BYTES / c->stride)
		lend = (int64_t)(SHUF_LEND_BYTES / c->stride);
	op->lend_window = c->ref ? PF_LEND_STABLE : c->stride ? (int)lend : 0;
	op->lend_want = 0; /* the consumer's prepare (after this) may ask */
	if (c->stride)
		op->buffer_bytes = (uint64_t)(c->size + (c->ref ? 0 : lend) + 1) *
				   (c->stride + sizeof(shuf_meta));
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
	for (uint32_t i = 0; c->ring && i < c->nring; i++)
		c->ring[i] = (uint32_t)c->size + i;
	c->rhead = 0;
	c->ah_head = c->ah_n = 0;
	c->count = 0;
	c->filled = 0;
	c->in_done = 0;
}

/* The slot store: read at random, so with 4 KiB pages nearly every slot
 * handed out is a TLB miss as well as a cache miss (a page walk the
 * prefetch of the slot may not start).  Large stores are put on 2 MiB
 * pages where the kernel allows it (transparent huge pages on madvise).
 * free() releases it. */
static void *store_alloc(size_t n)
{
	const size_t huge = (size_t)2 << 20;
	if (n < huge)
		return aligned_alloc(64, pf_align_up(n, 64));
	void *p = aligned_alloc(huge, pf_align_up(n, huge));
#ifdef MADV_HUGEPAGE
	if (p)
		madvise(p, pf_align_up(n, huge), MADV_HUGEPAGE); /* a hint: errors do not matter */
#endif
	return p;
}

static int shuffle_start(pf_op *op, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	if (c->stride) {
		/* only as many slots kept as the consumer relies on: a slot
		 * refilled right after it was handed out is still in the cache */
		int w = op->lend_want < op->lend_window ? op->lend_want : op->lend_window;
		c->nring = (uint32_t)(w > 0 && !c->ref ? w : 0) + 1;
		c->touch = op->lend_want == 0;
		size_t n = (size_t)c->size + c->nring;
		c->store = store_alloc(n * c->stride);
		c->smeta = calloc(n, sizeof(*c->smeta));
		c->perm = calloc((size_t)c->size, sizeof(*c->perm));
		c->nperm = calloc((size_t)c->size, sizeof(*c->nperm));
		c->ring = calloc(c->nring, sizeof(*c->ring));
		if (!c->store || !c->smeta || !c->perm || !c->nperm || !c->ring)
			return pf_op_error(op, err, PF_ENOMEM, "out of memory (%lld slots)",
					   (long long)c->size);
		shuffle_seed(op);
		return 0;
	}
	c->buf = calloc((size_t)c->size, sizeof(*c->buf));
	c->nbuf = calloc((size_t)c->size, sizeof(*c->nbuf));
	if (!c->buf || !c->nbuf)
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

/* Pull one input element into *s.  0, PF_END or a code. */
static int pull_into(pf_op *op, shuf_slot *s, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	pf_elem e;
	int rc = pf_op_next(op->in, &e, err);
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

/* Pull one input element into slot i; sets in_done at the end. */
static int pull(pf_op *op, int64_t i, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	int rc = pull_into(op, &c->buf[i], err);
	if (rc == PF_END) {
		c->in_done = 1;
		return 0;
	}
	return rc;
}

/* Move the element of *s into *out. */
static void take_from(pf_op *op, shuf_slot *s, pf_elem *out)
{
	shuffle_cfg *c = op->cfg;
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

/* Move slot i's element into *out. */
static void take(pf_op *op, int64_t i, pf_elem *out)
{
	take_from(op, &((shuffle_cfg *)op->cfg)->buf[i], out);
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

/* Slot mode: copy the next input into slot k.  0, PF_END or a code. */
static int pull_slot_rc(pf_op *op, uint32_t k, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	const unsigned char *d;
	uint64_t id;
	size_t len;
	int rc = pf_op_borrow(op->in, &d, &len, &id, err);
	if (rc)
		return rc;
	if (c->ref)
		memcpy(c->store + (size_t)k * c->stride, &d, sizeof(d));
	else
		slot_copy(c->store + (size_t)k * c->stride, d, len);
	c->smeta[k].id = id;
	c->smeta[k].len = (uint32_t)len;
	return 0;
}

/* The same; sets in_done at the end. */
static int pull_slot(pf_op *op, uint32_t k, pf_error *err)
{
	int rc = pull_slot_rc(op, k, err);
	if (rc == PF_END) {
		((shuffle_cfg *)op->cfg)->in_done = 1;
		return 0;
	}
	return rc;
}

/*
 * A draw of the drain: pull one record of the next epoch (resetting the
 * input into it at the first).  Slot mode: slot k was just handed out; it
 * joins the ring and the ring's oldest slot takes the record.  Element
 * mode (k unused): the record goes into nbuf.  The next epoch's failure is
 * kept for it (next_rc), not returned.
 */
static void fill_next(pf_op *op, uint32_t k)
{
	shuffle_cfg *c = op->cfg;
	if (!c->next) {
		pf_op_reset_ahead(op->in);
		c->next = 1;
		c->next_done = c->next_rc = 0;
		c->nfill = 0;
	}
	if (c->next_done || c->next_rc || c->nfill >= c->size)
		return;
	int rc;
	if (c->stride) {
		uint32_t s = c->ring[c->rhead];
		rc = pull_slot_rc(op, s, &c->next_err);
		if (!rc) {
			c->nperm[c->nfill++] = s;
			c->ring[c->rhead] = k;
			if (++c->rhead == c->nring)
				c->rhead = 0;
		}
	} else {
		rc = pull_into(op, &c->nbuf[c->nfill], &c->next_err);
		if (!rc)
			c->nfill++;
	}
	if (rc == PF_END)
		c->next_done = 1;
	else if (rc)
		c->next_rc = rc;
}

/*
 * At the reset: the next epoch's records become the buffer (count nfill,
 * full when the fill reached size or the input ended).  Slot mode: the
 * slots not holding them make the ring and the rest of perm.
 */
static void adopt_next(pf_op *op)
{
	shuffle_cfg *c = op->cfg;
	c->next = 0;
	if (c->next_rc) {
		c->held_rc = c->next_rc;
		c->held_err = c->next_err;
		c->next_rc = 0;
	}
	if (c->stride) {
		size_t n = (size_t)c->size + c->nring;
		unsigned char *used = calloc(n, 1);
		if (!used) { /* keep it simple: refill from the input's position */
			c->held_rc = pf_op_error(op, &c->held_err, PF_ENOMEM, "out of memory");
			return;
		}
		for (int64_t j = 0; j < c->nfill; j++) {
			used[c->nperm[j]] = 1;
			c->perm[j] = c->nperm[j];
		}
		size_t f = 0;
		for (uint32_t r = 0; r < c->nring; r++) {
			while (used[f])
				f++;
			c->ring[r] = (uint32_t)f++;
		}
		for (int64_t j = c->nfill; j < c->size; j++) {
			while (used[f])
				f++;
			c->perm[j] = (uint32_t)f++;
		}
		free(used);
		c->rhead = 0;
	} else {
		for (int64_t j = 0; j < c->nfill; j++) {
			c->buf[j] = c->nbuf[j];
			memset(&c->nbuf[j], 0, sizeof(c->nbuf[j]));
		}
	}
	c->count = c->nfill;
	c->in_done = c->next_done;
	c->filled = c->next_done || c->nfill == c->size;
	c->nfill = 0;
}

/* Publish the buffer's fill for pf_iter_stats, and return rc. */
static int set_occ(pf_op *op, const shuffle_cfg *c, int rc)
{
	atomic_store_explicit(&op->st.occupancy, c->count, memory_order_relaxed);
	return rc;
}

/* The next epoch's input failed while the last one drained: now it is due. */
static int held(pf_op *op, shuffle_cfg *c, pf_error *err)
{
	int rc = c->held_rc;
	pf_error_set(err, rc, "%s", c->held_err.msg);
	c->held_rc = 0;
	return rc;
}

/* The same, to be written: the lines are fetched owned (another core may
 * hold them: a map worker read the slot in place). */
static inline void fetch_lines_w(void *p, size_t bytes)
{
	char *b = p;
	for (size_t o = 0; o < bytes; o += 64) {
#if defined(__x86_64__) || defined(__i386__)
		__asm__ volatile("prefetchw %0" : : "m"(b[o]));
#else
		__builtin_prefetch(b + o, 1);
#endif
	}
}

/* Slot mode: fetch what the hand-out of buffer position i reads into the
 * cache: its id and length, and its bytes when this thread's consumer reads
 * them at once (a batch filled here); a map's workers read them on their
 * own cores later, where fetching them here would only move the lines. */
static inline void prefetch_slot(const pf_op *op, const shuffle_cfg *c, int64_t i)
{
	(void)op;
	uint32_t k = c->perm[i];
	pf_fetch_lines(&c->smeta[k], sizeof(c->smeta[k]));
	if (c->touch || c->ref)
		pf_fetch_lines(c->store + (size_t)k * c->stride, c->stride);
}

/* Slot mode, steady state (full buffer, input not over): keep SHUF_AHEAD
 * draws made ahead, each slot's fetch started when it is drawn, so a slot
 * handed out is already (on its way) in the cache: the slots are far
 * larger than the caches and reading one is a chain of misses.  The count
 * is the same for all of them, so the draws are those made one at a time. */
static int64_t draw_ahead(pf_op *op, shuffle_cfg *c)
{
	while (c->ah_n < SHUF_AHEAD) {
		unsigned k = (c->ah_head + c->ah_n++) & (SHUF_AHEAD - 1);
		c->ahead[k] = (int64_t)pf_rng_below(&c->rng, (uint64_t)c->count);
		c->ah_rng[k] = c->rng;
		/* first its position's slot number (perm: 4 bytes a
		 * position, and as large as the buffer) */
		pf_fetch_lines(&c->perm[c->ahead[k]], sizeof(*c->perm));
	}
	/* then, half way, what its hand-out reads: its slot number is in
	 * the cache by now, so this fetch does not wait for it */
	prefetch_slot(op, c, c->ahead[(c->ah_head + SHUF_AHEAD / 2) & (SHUF_AHEAD - 1)]);
	int64_t i = c->ahead[c->ah_head];
	c->ah_head = (c->ah_head + 1) & (SHUF_AHEAD - 1);
	c->ah_n--;
	return i;
}

/* Drop the draws made ahead: the generator goes back to its state after
 * the last draw used, so the order is that of one draw per call (the
 * element mode's). */
static void drop_ahead(shuffle_cfg *c)
{
	if (c->ah_n)
		c->rng = c->ah_rng[(c->ah_head + SHUF_AHEAD - 1) & (SHUF_AHEAD - 1)];
	c->ah_n = 0;
}

static int shuffle_borrow(pf_op *op, const unsigned char **data, size_t *len,
			  uint64_t *id, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	int rc;
	if (c->held_rc)
		return held(op, c, err);
	while (!c->filled && !c->in_done && c->count < c->size) {
		if ((rc = pull_slot(op, c->perm[c->count], err)))
			return rc;
		if (!c->in_done)
			c->count++;
	}
	c->filled = 1;
	if (!c->count)
		return set_occ(op, c, PF_END);
	/* while the input lasts the count stays put and draws are made
	 * ahead; once it is over the buffer shrinks at each call and each
	 * draw is made then (draws made ahead and not used are dropped: the
	 * order stays a function of the seed and the input alone) */
	int64_t i;
	if (!c->in_done && c->count == c->size) {
		i = draw_ahead(op, c);
	} else {
		drop_ahead(c);
		i = (int64_t)pf_rng_below(&c->rng, (uint64_t)c->count);
	}
	uint32_t k = c->perm[i];
	*data = c->store + (size_t)k * c->stride;
	if (c->ref)
		memcpy(data, *data, sizeof(*data));
	*id = c->smeta[k].id;
	*len = c->smeta[k].len;
	if (!c->in_done) {
		uint32_t s = c->ring[c->rhead];
		if ((rc = pull_slot(op, s, err)))
			return rc;
		if (!c->in_done) {
			c->perm[i] = s;
			c->ring[c->rhead] = k;
			if (++c->rhead == c->nring)
				c->rhead = 0;
			/* a long ring: the slot refilled a few calls from now was
			 * last read elsewhere; fetch it for writing now */
			if (c->nring > 2 * SHUF_AHEAD) {
				uint32_t a = c->rhead + SHUF_AHEAD;
				if (a >= c->nring)
					a -= c->nring;
				fetch_lines_w(c->store + (size_t)c->ring[a] * c->stride, c->stride);
			}
			return set_occ(op, c, 0);
		}
	}
	/* input is over: fill the hole with the last one, and a record of
	 * the next epoch into the slot lent the longest ago */
	drop_ahead(c);
	c->perm[i] = c->perm[--c->count];
	c->perm[c->count] = k;
	fill_next(op, k);
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
	if (c->held_rc)
		return held(op, c, err);
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
	/* input is over: fill the hole with the last one, and pull one of
	 * the next epoch */
	c->buf[i] = c->buf[--c->count];
	memset(&c->buf[c->count], 0, sizeof(c->buf[c->count]));
	fill_next(op, 0);
	return set_occ(op, c, 0);
}

/* Release the buffered elements (element mode); with next, the next
 * epoch's too. */
static void shuffle_drop(pf_op *op, int next)
{
	shuffle_cfg *c = op->cfg;
	for (int64_t i = 0; c->buf && i < c->count; i++) {
		pf_elem e;
		take(op, i, &e);
		pf_elem_release(&e);
	}
	c->count = 0;
	for (int64_t i = 0; next && c->nbuf && i < c->nfill; i++) {
		pf_elem e;
		take_from(op, &c->nbuf[i], &e);
		pf_elem_release(&e);
	}
	if (next) {
		c->nfill = 0;
		c->next = 0;
	}
	atomic_store_explicit(&op->st.occupancy, 0, memory_order_relaxed);
}

static void shuffle_reset(pf_op *op)
{
	shuffle_cfg *c = op->cfg;
	shuffle_drop(op, 0);
	int next = c->next;
	if (!next) /* else the input is in that epoch already */
		pf_op_reset(op->in);
	c->held_rc = 0;
	op->epoch++; /* seed with the epoch about to begin */
	shuffle_seed(op);
	op->epoch--; /* pf_op_reset increments it */
	if (next) {
		adopt_next(op);
		pf_op_mark_epochs(op->in); /* they begin this epoch where they are */
	}
}

static void shuffle_stop(pf_op *op)
{
	shuffle_cfg *c = op->cfg;
	shuffle_drop(op, 1);
	c->held_rc = c->next_rc = c->next_done = 0;
	free(c->buf);
	free(c->nbuf);
	c->buf = NULL;
	c->nbuf = NULL;
	free(c->store);
	free(c->smeta);
	c->smeta = NULL;
	free(c->perm);
	free(c->nperm);
	c->nperm = NULL;
	free(c->ring);
	c->ring = NULL;
	c->store = NULL;
	c->perm = NULL;
	while (c->free_nodes) {
		shuf_node *n = c->free_nodes->next;
		free(c->free_nodes);
		c->free_nodes = n;
	}
}

static const pf_op_vt shuffle_vt = {
	.prepare = shuffle_prepare, .start = shuffle_start,
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
	pf_op *op = pf_op_alloc(&pf_op_shuffle, sizeof(shuffle_cfg), err);
	if (op) {
		shuffle_cfg *c = op->cfg;
		c->size = size;
		if (o)
			c->o = *o;
	}
	return op;
}

/* The spec's arguments -> a new shuffle op. */
static pf_op *shuffle_build(const pf_arg *a, pf_error *err)
{
	pf_shuffle_opts o = { .seed_set = a[1].set, .seed = (uint64_t)a[1].i,
				.no_reshuffle = !a[2].i };
	return pf_op_shuffle_new(a[0].i, &o, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int shuffle_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const shuffle_cfg *c = op->cfg;
	a[0] = (pf_arg){ .set = 1, .i = c->size };
	a[1] = (pf_arg){ .set = c->o.seed_set, .i = (int64_t)c->o.seed };
	a[2] = (pf_arg){ .set = c->o.no_reshuffle, .i = !c->o.no_reshuffle };
	if (c->o.seed_set && c->o.seed > INT64_MAX)
		return pf_op_error((pf_op *)op, err, PF_EINVAL, "seed %" PRIu64 " has no spec form (at most %" PRId64 ")",
				   c->o.seed, INT64_MAX);
	return 0;
}

const pf_op_desc pf_op_shuffle = {
	.kind = "shuffle", .traits = PF_OP_REORDERS,
	.help = "shuffle through a buffer of elements",
	.params = {
		{ "buffer", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 1, (int64_t)1 << 31, 0, NULL, "buffer size" },
		{ "seed", PF_PARAM_INT, 0, 0, INT64_MAX, 0, NULL,
		  "seed (default: derived from the pipeline's)" },
		{ "reshuffle", PF_PARAM_BOOL, 0, 0, 1, 1, NULL,
		  "a new order every epoch (default true)" },
	},
	.vt = &shuffle_vt, .build = shuffle_build, .args = shuffle_args,
};
