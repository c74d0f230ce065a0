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
 */
#include <stdlib.h>
#include <string.h>

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
} shuffle_cfg;

static int shuffle_prepare(pf_op *op, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->buffer_bytes = (uint64_t)c->size * (in->elem_bytes + sizeof(shuf_slot) + 64);
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
	c->count = 0;
	c->filled = 0;
	c->in_done = 0;
}

static int shuffle_start(pf_op *op, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
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

static int shuffle_next(pf_op *op, pf_elem *out, pf_error *err)
{
	shuffle_cfg *c = op->cfg;
	int rc;
	while (!c->filled && !c->in_done && c->count < c->size) {
		if ((rc = pull(op, c->count, err)))
			return rc;
		if (!c->in_done)
			c->count++;
	}
	c->filled = 1;
	if (!c->count)
		return PF_END;
	int64_t i = (int64_t)pf_rng_below(&c->rng, (uint64_t)c->count);
	take(op, i, out);
	if (!c->in_done) {
		if ((rc = pull(op, i, err))) {
			pf_elem_release(out);
			return rc;
		}
		if (!c->in_done)
			return 0;
	}
	/* input is over: fill the hole with the last one */
	c->buf[i] = c->buf[--c->count];
	memset(&c->buf[c->count], 0, sizeof(c->buf[c->count]));
	return 0;
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
	while (c->free_nodes) {
		shuf_node *n = c->free_nodes->next;
		free(c->free_nodes);
		c->free_nodes = n;
	}
}

static const pf_op_vt shuffle_vt = {
	.kind = "shuffle", .prepare = shuffle_prepare, .start = shuffle_start,
	.next = shuffle_next, .reset = shuffle_reset, .stop = shuffle_stop,
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
