/*
 * map.c - map: apply a map function to every element, in the consumer's
 * thread (num_parallel_calls 1) or on a worker pool.  When the optimizer
 * fuses a following batch into it (op->fused_batch = B), it is map+batch:
 * each sample is mapped straight into its slot of the batch buffer.
 *
 * The parallel engine: one feeder thread pulls from the input, which
 * numbers the elements in input order (seq), and workers map.  Element seq
 * belongs to output unit seq / B (B = 1 without fusion), slot seq % B; a
 * bounded ring of `cap` units holds the output being built.  The consumer
 * hands out units in order (ordered) or the first finished one in the
 * window (unordered, B = 1 only), so the output order never depends on
 * thread timing unless unordered was asked for.
 *
 * Isolation (pf_map_opts.isolate): a sample whose fn fails is dropped and
 * logged (op->drops) instead of failing the op.  Outputs are compacted
 * within each unit; with a fused batch the consumer refills batches across
 * units (the carry), so every batch but the last is full and holds the same
 * samples, in the same order, whatever the thread count.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"

#define MAP_RUN 16 /* elements a worker maps per turn when not fused */
#define MAP_INLINE 2 /* map_next_par: nothing out, none coming: map inline */

typedef struct map_cfg {
	pf_map_prepare_fn prepare;
	pf_map_fn fn;
	void *user;
	char *args;
	int par_req, unordered, isolate;
	/* resolved by prepare */
	int prepared;
	pf_map_ctx ctx;
	int par, cap, B, R, has_var; /* R: inputs per unit */
	size_t unit_bytes;
	size_t in_stride;            /* input lends its elements: bytes per copy */
	int in_lend;                 /* ... and they stay valid while a unit is
				      * mapped (its lend window): no copy */
	uint32_t tick;               /* inline path: sampled timing */
	int64_t off[PF_MAX_FIELDS];  /* field offsets in a unit's buffer */
	size_t fbytes[PF_MAX_FIELDS];
	int64_t fcount[PF_MAX_FIELDS]; /* items of each fixed field (-1: variable) */
} map_cfg;

typedef struct map_unit {
	pf_buf *buf;          /* fused: the batch buffer */
	pf_elem *ins;         /* R inputs pulled for this unit */
	unsigned char *stage; /* borrowing input: R copies, in_stride apart */
	const unsigned char **src; /* in_lend: the R lent inputs, in place */
	size_t *blen;         /* ... their bytes */
	uint64_t *bid;        /* ... their ids */
	pf_elem *outs;        /* element mode: R outputs (each owns its buffer) */
	pf_elem out;          /* inline path: the one output */
	int n, pos;           /* inputs reserved; next output to hand out */
	int done, drained;
	uint64_t first_id;
	uint64_t *oid;        /* fused with isolate: each slot's sample id */
	int err;
	pf_error e;
} map_unit;

typedef struct map_run {
	pthread_mutex_t lock;
	pthread_cond_t cv_work, cv_done, cv_space, cv_fill;
	pthread_t *th;        /* the workers, then the feeder */
	int nth, idle, quit, pause, waiting;
	int nw;               /* worker threads (nth - the feeder) */
	int active, ids;      /* autotune: workers with id < active take work */
	int inline_busy;      /* the consumer maps in its thread: no reserving */
	int fill_wait;        /* workers waiting on cv_fill */
	/* units: [head, next_unit) reserved by the feeder, [.., filled) filled
	 * with inputs, [.., next_claim) claimed by a worker */
	uint64_t next_unit, head, cur, filled, next_claim;
	int ended, in_err, have_cur;
	pf_error in_e;
	map_unit *units;
	/* fused with isolate: the batch being refilled from the units */
	pf_buf *carry;
	int cn;               /* samples in it */
	uint64_t carry_id;    /* its first sample's id */
} map_run;

static void cleanup_state(map_cfg *c)
{
	if (c->prepared && c->ctx.state && c->ctx.free_state)
		c->ctx.free_state(c->ctx.state);
	c->ctx.state = NULL;
	c->prepared = 0;
}

static int map_prepare(pf_op *op, pf_error *err)
{
	map_cfg *c = op->cfg;
	pf_op *in = op->in;
	if (!c->prepared) {
		memset(&c->ctx, 0, sizeof(c->ctx));
		c->ctx.in = &in->schema;
		c->ctx.record = &op->record;
		c->ctx.args = c->args;
		c->ctx.user = c->user;
		pf_error e = { 0 };
		int rc = c->prepare(&c->ctx, &e);
		if (rc)
			return pf_op_error(op, err, rc < 0 ? rc : PF_EMAP, "%s",
					   e.code ? e.msg : "prepare failed");
		if (c->ctx.out.nfields < 1 || c->ctx.out.nfields > PF_MAX_FIELDS)
			return pf_op_error(op, err, PF_EINVAL, "prepare gave no output fields");
		c->prepared = 1;
	}
	op->schema = c->ctx.out;
	pf_drop_log_clear(op->drops);
	c->has_var = pf_schema_record_bytes(&op->schema) < 0;
	if (c->has_var && !c->ctx.max_out_bytes)
		return pf_op_error(op, err, PF_EINVAL,
				   "output has variable-length fields but prepare set no max_out_bytes");

	c->par = c->par_req == PF_AUTOTUNE ? op->rt->opts.cpu_budget :
		(c->par_req > 0 ? c->par_req : 1);
	/* autotuned: threads for the whole CPU budget are started; at
	 * parallelism 1 none of them works (the consumer's thread maps, as
	 * with a fixed 1), at n >= 2, n of them do */
	op->st.parallelism = c->par_req == PF_AUTOTUNE ? 1 : c->par;
	op->st.max_parallelism = c->par_req == PF_AUTOTUNE && c->par > 1 ? c->par : 0;
	op->st.autotuned = c->par_req == PF_AUTOTUNE;
	c->B = op->fused_batch ? op->fused_batch : 1;
	size_t fixed = pf_layout(&op->schema, op->fused_batch ? (uint32_t)c->B : 1, c->off);
	for (int i = 0; i < op->schema.nfields; i++) {
		int64_t fb = pf_field_bytes(&op->schema.fields[i]);
		c->fbytes[i] = fb > 0 ? (size_t)fb : 0;
		c->fcount[i] = pf_field_count(&op->schema.fields[i]);
	}
	c->unit_bytes = fixed + (c->has_var ? c->ctx.max_out_bytes : 0);
	if (!c->unit_bytes)
		c->unit_bytes = 1;
	op->elem_bytes = c->unit_bytes;
	op->canon_bytes = c->has_var || op->fused_batch ? 0 : fixed;
	c->in_stride = in->can_borrow ? pf_align_up(in->canon_bytes, 64) : 0;
	/* parallel: units of R inputs (a batch when fused), 2 per worker + 1 */
	c->R = op->fused_batch ? c->B : (c->par > 1 ? MAP_RUN : 1);
	c->cap = c->par > 1 ? 2 * c->par + 1 : 0;
	op->st.depth = c->cap * c->R;
	/* the feeder pulls at most cap * R - 1 inputs after a unit's first
	 * one before that unit is mapped (it stays within cap units of the
	 * consumer's head): inputs lent for that long are read in place */
	c->in_lend = c->in_stride && c->cap && in->lend_window >= c->cap * c->R;
	in->lend_want = c->in_lend ? c->cap * c->R : 0;
	op->buffer_bytes = op->fused_batch ?
		(uint64_t)(c->cap ? c->cap : 1) * c->unit_bytes :
		(uint64_t)(c->cap ? c->cap : 1) * c->R * c->unit_bytes;
	op->buffer_bytes += (uint64_t)(c->cap ? c->cap : 1) * c->R * in->elem_bytes;
	if (op->fused_batch && c->isolate && c->cap)
		op->buffer_bytes += c->unit_bytes; /* the carry */
	op->cardinality = in->cardinality;
	if (op->fused_batch && in->cardinality >= 0)
		op->cardinality = op->fused_drop ? in->cardinality / c->B :
			(in->cardinality + c->B - 1) / c->B;
	if (op->fused_batch)
		snprintf(op->label + strcspn(op->label, "+"), sizeof(op->label) - strcspn(op->label, "+"),
			 "+batch(%d)", c->B);
	return 0;
}

/*
 * fn failed on sample id with rc (its message in *e): the message becomes
 * "<op>: sample ID (FILE, record R): <fn's message>" (the file when the
 * source has files).  With isolate the sample is logged, *e cleared, and
 * PF_MAP_DROPPED returned (the caller counts it); else the error code.
 */
static int map_failed(pf_op *op, map_cfg *c, uint64_t id, int rc, pf_error *e)
{
	char m[PF_ERROR_MSG_MAX];
	snprintf(m, sizeof(m), "%s", e && e->code ? e->msg : pf_strerror(rc < 0 ? rc : PF_EMAP));
	pf_error_clear(e);
	const char *path = pf_op_sample_path(op, id);
	if (c->isolate && op->drops) {
		pf_drop_log_add(op->drops, id, path, op->label, m);
		return PF_MAP_DROPPED;
	}
	int code = rc < 0 ? rc : PF_EMAP;
	if (path)
		return pf_op_error(op, e, code, "sample %llu (%s, record %llu): %s",
				   (unsigned long long)id, path,
				   (unsigned long long)pf_id_rec(id), m);
	return pf_op_error(op, e, code, "sample %llu: %s", (unsigned long long)id, m);
}

/* Map input element ie into slot j of unit u (buffer b).  Releases ie.
 * 0, PF_MAP_DROPPED (isolate: fn failed, nothing written to u) or a code. */
static int fill_one(pf_op *op, map_cfg *c, pf_buf *b, map_unit *u, int j,
		    pf_elem *ie, pf_error *e)
{
	pf_elem o;
	if (op->fused_batch) {
		/* fixed fields only: what the fn may read is set, as in
		 * pf_map_into (zeroing a whole pf_elem per sample cost more
		 * than a cheap map) */
		o.schema = &op->schema;
		o.batch = 0;
		o.buf = b->data;
		o.id = ie->id;
		o.ref_ = NULL;
		for (int i = 0; i < op->schema.nfields; i++) {
			o.data[i] = b->data + c->off[i] + (size_t)j * c->fbytes[i];
			o.nitems[i] = c->fcount[i];
			o.var_len[i] = 0;
			o.lengths[i] = NULL;
		}
		o.nbytes = c->unit_bytes;
	} else {
		memset(&o, 0, sizeof(o));
		o.schema = &op->schema;
		o.buf = b->data;
		o.id = ie->id;
		o.ref_ = b;
		o.nbytes = 0;
		for (int i = 0; i < op->schema.nfields; i++) {
			if (c->off[i] < 0)
				continue;
			o.data[i] = b->data + c->off[i];
			o.nitems[i] = pf_field_count(&op->schema.fields[i]);
			size_t end = (size_t)c->off[i] + c->fbytes[i];
			if (end > o.nbytes)
				o.nbytes = end;
		}
	}
	void *state = c->ctx.state ? c->ctx.state : c->user;
	int rc = c->fn(state, ie, &o, e);
	uint64_t id = ie->id;
	pf_elem_unref(ie);
	if (rc)
		return map_failed(op, c, id, rc, e);
	if (!op->fused_batch) {
		o.ref_ = NULL; /* the unit keeps the reference */
		u->out = o;
	} else if (j == 0) {
		u->first_id = id;
	}
	return 0;
}

/* Turn a finished unit of n samples into the output element. */
static void unit_output(pf_op *op, map_cfg *c, map_unit *u, int n, pf_elem *out)
{
	if (!op->fused_batch) {
		*out = u->out;
		out->ref_ = u->buf;
	} else {
		memset(out, 0, sizeof(*out));
		out->schema = &op->schema;
		out->batch = (uint32_t)n;
		out->id = u->first_id;
		out->buf = u->buf->data;
		out->ref_ = u->buf;
		out->nbytes = c->unit_bytes;
		for (int i = 0; i < op->schema.nfields; i++) {
			out->data[i] = u->buf->data + c->off[i];
			out->nitems[i] = (int64_t)n * pf_field_count(&op->schema.fields[i]);
		}
	}
	u->buf = NULL;
}

/* Map-into-source fusion (see pf_op.h): one element into a new pooled one. */
int pf_map_one(pf_op *op, pf_elem *ie, pf_elem *out, pf_error *err)
{
	map_cfg *c = op->cfg;
	pf_buf *b = pf_buf_get(op->rt->pool, c->unit_bytes);
	if (!b) {
		pf_elem_release(ie);
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	}
	map_unit one;
	memset(&one, 0, sizeof(one));
	int rc = fill_one(op, c, b, &one, 0, ie, err);
	if (rc) { /* PF_MAP_DROPPED included: *out untouched */
		pf_buf_unref(b);
		return rc;
	}
	*out = one.out;
	out->ref_ = b;
	return 0;
}

int pf_map_into(pf_op *op, const pf_elem *ie, unsigned char *dst, pf_error *err)
{
	map_cfg *c = op->cfg;
	pf_elem o;
	o.schema = &op->schema;
	o.batch = 0;
	o.id = ie->id;
	o.buf = dst;
	o.ref_ = NULL;
	o.nbytes = op->canon_bytes;
	int nf = op->schema.nfields;
	for (int i = 0; i < nf; i++) {
		o.data[i] = dst + c->off[i];
		o.nitems[i] = (int64_t)(c->fbytes[i] / pf_dtype_size(op->schema.fields[i].dtype));
		o.var_len[i] = 0;
		o.lengths[i] = NULL;
	}
	void *state = c->ctx.state ? c->ctx.state : c->user;
	int rc = c->fn(state, ie, &o, err);
	if (rc)
		return map_failed(op, c, ie->id, rc, err);
	return 0;
}

int pf_map_set_active(pf_op *op, int n)
{
	map_run *r = op->run;
	if (!r)
		return op->st.parallelism;
	pthread_mutex_lock(&r->lock);
	if (n < 1)
		n = 1;
	if (n > r->nw)
		n = r->nw;
	r->active = n;
	op->st.parallelism = n;
	pthread_cond_broadcast(&r->cv_work);
	pthread_cond_broadcast(&r->cv_fill);
	pthread_cond_broadcast(&r->cv_space);
	pthread_cond_broadcast(&r->cv_done); /* a consumer waiting for a unit
					      * that will not come maps itself */
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* ---- inline (one thread) ------------------------------------------------ */

/* Map up to B inputs into one output.  carry (may be NULL): a batch buffer
 * already holding n0 samples, the first one's id id0 (fused with isolate:
 * left by the parallel engine); it is taken over. */
static int map_next_inline(pf_op *op, pf_elem *out, pf_error *err,
			   pf_buf *carry, int n0, uint64_t id0)
{
	map_cfg *c = op->cfg;
	map_unit u;
	memset(&u, 0, sizeof(u));
	u.buf = carry;
	u.first_id = id0;
	int n = carry ? n0 : 0, rc = 0, viewed = 0;
	pf_elem ie;
	for (; n < c->B; n++) {
		if (op->in->can_borrow) {
			const unsigned char *d;
			size_t len;
			uint64_t id;
			rc = pf_op_borrow(op->in, &d, &len, &id, err);
			if (!rc && viewed)
				pf_elem_view_again(&ie, d, len, id);
			else if (!rc)
				pf_elem_view(&op->in->schema, d, len, id, &ie);
			viewed = !rc;
		} else {
			rc = pf_op_next(op->in, &ie, err);
		}
		if (rc)
			break;
		if (!u.buf && !(u.buf = pf_buf_get(op->fused_batch ? op->rt->batch_pool :
						    op->rt->pool, c->unit_bytes))) {
			pf_elem_release(&ie);
			rc = pf_op_error(op, err, PF_ENOMEM, "out of memory");
			break;
		}
		/* busy time sampled (pf_sample_scale, over the run): the
		 * autotuner reads it, and a clock read per element costs as
		 * much as a cheap map */
		uint32_t k = c->tick++, scale = k ? pf_sample_scale(k) : 8;
		uint64_t t0 = scale ? pf_now_ns() : 0;
		rc = fill_one(op, c, u.buf, &u, n, &ie, err);
		if (scale)
			pf_stat_add(&op->st.busy_ns, scale * (pf_now_ns() - t0));
		if (rc == PF_MAP_DROPPED) { /* isolate: the next input takes slot n */
			pf_stat_add(&op->st.dropped_samples, 1);
			rc = 0;
			n--;
			continue;
		}
		if (rc)
			break;
	}
	if (rc < 0 || (rc == PF_END && (!n || (op->fused_batch && op->fused_drop)))) {
		pf_buf_unref(u.buf);
		return rc;
	}
	unit_output(op, c, &u, n, out);
	return 0;
}

/* ---- parallel ----------------------------------------------------------- */

/*
 * The feeder (one thread) runs the serial part: it reserves a unit (R
 * consecutive inputs: a batch when fused, else a run of R elements), pulls
 * its inputs (lent bytes are pointed at when the input's lend window
 * outlasts the unit, else copied into the unit's stage) and marks it
 * filled.  So the input chain (the source's hand-off, a shuffle) always
 * runs in the same thread, its state hot in that core's caches, with no
 * lock passed between threads per unit.  Workers claim filled units in
 * order and map them outside any lock; the consumer hands them out in
 * order.  One lock round trip per unit, not per element.
 */
static void *map_feeder(void *arg)
{
	pf_op *op = arg;
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		if (r->quit)
			break;
		if (r->pause || r->ended || r->active < 2 || r->inline_busy ||
		    r->next_unit >= r->head + (uint64_t)c->cap) {
			/* room downstream is what it waits for while running */
			int running = !r->pause && !r->ended && r->active >= 2;
			uint64_t t0 = running ? pf_now_ns() : 0;
			r->idle++;
			pthread_cond_broadcast(&r->cv_done);
			pthread_cond_wait(&r->cv_space, &r->lock);
			r->idle--;
			if (running)
				pf_stat_add(&op->st.blocked_ns, pf_now_ns() - t0);
			continue;
		}
		uint64_t un = r->next_unit++;
		map_unit *u = &r->units[un % c->cap];
		u->n = u->pos = u->done = u->drained = u->err = 0;
		pthread_mutex_unlock(&r->lock);

		/* pull up to R inputs, in input order */
		pf_error e = { 0 };
		int rc = 0;
		uint64_t t0 = pf_now_ns();
		if (c->in_stride) {
			/* copy the lent bytes: the input reuses them at its next call */
			const unsigned char *d;
			while (u->n < c->R &&
			       !(rc = pf_op_borrow(op->in, &d, &u->blen[u->n], &u->bid[u->n], &e))) {
				if (c->in_lend)
					u->src[u->n] = d;
				else
					memcpy(u->stage + (size_t)u->n * c->in_stride, d, u->blen[u->n]);
				u->n++;
			}
		} else {
			while (u->n < c->R && !(rc = pf_op_next(op->in, &u->ins[u->n], &e)))
				u->n++;
		}
		pf_stat_add(&op->st.wait_ns, pf_now_ns() - t0);
		pthread_mutex_lock(&r->lock);
		if (rc) {
			r->ended = 1;
			if (rc < 0) {
				r->in_err = rc;
				r->in_e = e;
			}
			if (!u->n)
				r->next_unit--; /* only the feeder reserves */
			pthread_cond_broadcast(&r->cv_done);
		}
		if (u->n) {
			r->filled = un + 1;
			if (r->fill_wait)
				pthread_cond_signal(&r->cv_fill);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* May worker `me` map now?  Worker 0 always may, so filled units never
 * wait for a worker when the autotuner lowers the count. */
static int may_map(const map_run *r, int me)
{
	return !r->pause && (me < r->active || me == 0);
}

static void *map_worker(void *arg)
{
	pf_op *op = arg;
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	pthread_mutex_lock(&r->lock);
	int me = r->ids++;
	for (;;) {
		if (r->quit)
			break;
		if (!may_map(r, me)) {
			r->idle++;
			pthread_cond_broadcast(&r->cv_done);
			pthread_cond_wait(&r->cv_work, &r->lock);
			r->idle--;
			continue;
		}
		if (r->next_claim >= r->filled) {
			r->idle++;
			r->fill_wait++;
			pthread_cond_broadcast(&r->cv_done);
			pthread_cond_wait(&r->cv_fill, &r->lock);
			r->fill_wait--;
			r->idle--;
			/* a wake-up this worker may not use goes to another */
			if (!may_map(r, me) && r->next_claim < r->filled && r->fill_wait)
				pthread_cond_signal(&r->cv_fill);
			continue;
		}
		uint64_t un = r->next_claim++;
		map_unit *u = &r->units[un % c->cap];
		int n = u->n;
		/* more filled units than this one: wake another worker for them */
		if (r->next_claim < r->filled && r->fill_wait)
			pthread_cond_signal(&r->cv_fill);
		pthread_mutex_unlock(&r->lock);

		uint64_t t0 = pf_now_ns();
		int ferr = 0;
		pf_error fe = { 0 };
		if (op->fused_batch && !(u->buf = pf_buf_get(op->rt->batch_pool, c->unit_bytes)))
			ferr = pf_op_error(op, &fe, PF_ENOMEM, "out of memory");
		for (int j = 0; c->in_stride && j < n; j++) {
			const unsigned char *d = c->in_lend ? u->src[j] :
				u->stage + (size_t)j * c->in_stride;
			/* still the view of the last unit in this slot (fill_one
			 * only drops references): repoint it */
			if (u->ins[j].schema == &op->in->schema && u->ins[j].buf && !u->ins[j].ref_)
				pf_elem_view_again(&u->ins[j], d, u->blen[j], u->bid[j]);
			else
				pf_elem_view(&op->in->schema, d, u->blen[j], u->bid[j], &u->ins[j]);
		}
		int k = 0; /* outputs so far: dropped samples leave no gap */
		for (int j = 0; j < n; j++) {
			if (ferr) {
				pf_elem_release(&u->ins[j]);
				continue;
			}
			pf_buf *b = u->buf;
			if (!op->fused_batch && !(b = pf_buf_get(op->rt->pool, c->unit_bytes))) {
				ferr = pf_op_error(op, &fe, PF_ENOMEM, "out of memory");
				pf_elem_release(&u->ins[j]);
				continue;
			}
			map_unit one;
			memset(&one, 0, sizeof(one));
			uint64_t id = u->ins[j].id;
			ferr = fill_one(op, c, b, op->fused_batch ? u : &one, k, &u->ins[j], &fe);
			if (!op->fused_batch && ferr)
				pf_buf_unref(b);
			if (ferr == PF_MAP_DROPPED) {
				pf_stat_add(&op->st.dropped_samples, 1);
				ferr = 0;
				continue;
			}
			if (ferr)
				continue; /* keep only the good ones before it */
			if (!op->fused_batch) {
				u->outs[k] = one.out;
				u->outs[k].ref_ = b;
			} else if (u->oid) {
				u->oid[k] = id;
			}
			k++;
		}
		pf_stat_add(&op->st.busy_ns, pf_now_ns() - t0);
		pthread_mutex_lock(&r->lock);
		u->n = k;
		if (ferr) {
			u->err = ferr;
			u->e = fe;
		}
		u->done = 1;
		if (r->waiting)
			pthread_cond_broadcast(&r->cv_done);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void free_unit(map_cfg *c, map_unit *u)
{
	for (int j = u->pos; !u->drained && j < u->n; j++)
		pf_elem_release(&u->outs[j]);
	pf_buf_unref(u->buf);
	u->buf = NULL;
	u->n = u->pos = 0;
	u->drained = 1;
}

/* Fused with isolate: move the samples of unit u (from u->pos) into the
 * carry until it holds B.  Called with r->lock held.  0 or PF_ENOMEM. */
static int carry_take(pf_op *op, map_cfg *c, map_run *r, map_unit *u, pf_error *err)
{
	int take = c->B - r->cn;
	if (take > u->n - u->pos)
		take = u->n - u->pos;
	if (take <= 0)
		return 0;
	if (!r->carry && !(r->carry = pf_buf_get(op->rt->batch_pool, c->unit_bytes)))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	if (!r->cn)
		r->carry_id = u->oid[u->pos];
	for (int i = 0; i < op->schema.nfields; i++)
		memcpy(r->carry->data + c->off[i] + (size_t)r->cn * c->fbytes[i],
		       u->buf->data + c->off[i] + (size_t)u->pos * c->fbytes[i],
		       (size_t)take * c->fbytes[i]);
	r->cn += take;
	u->pos += take;
	return 0;
}

/* Hand out the carry (r->cn samples) as a batch. */
static void carry_output(pf_op *op, map_cfg *c, map_run *r, pf_elem *out)
{
	map_unit t;
	memset(&t, 0, sizeof(t));
	t.buf = r->carry;
	t.first_id = r->carry_id;
	unit_output(op, c, &t, r->cn, out);
	r->carry = NULL;
	r->cn = 0;
}

static int map_next_par(pf_op *op, pf_elem *out, pf_error *err)
{
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	int unordered = c->unordered && !op->fused_batch && op->rt->opts.nondeterministic;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		/* the unit being drained: the head (ordered) or any finished one */
		map_unit *u = NULL;
		if (r->have_cur) {
			u = &r->units[r->cur % c->cap];
		} else if (r->head < r->next_unit) {
			uint64_t last = unordered ? r->next_unit : r->head + 1;
			for (uint64_t k = r->head; k < last; k++) {
				map_unit *v = &r->units[k % c->cap];
				if (v->done && !v->drained) {
					r->cur = k;
					r->have_cur = 1;
					u = v;
					break;
				}
			}
		} else if (r->ended) {
			if (r->cn && !op->fused_drop) { /* the last, smaller batch */
				carry_output(op, c, r, out);
				pthread_mutex_unlock(&r->lock);
				return 0;
			}
			pf_buf_unref(r->carry);
			r->carry = NULL;
			r->cn = 0;
			int rc = r->in_err ? r->in_err : PF_END;
			if (r->in_err)
				pf_error_set(err, rc, "%s", r->in_e.msg);
			pthread_mutex_unlock(&r->lock);
			return rc;
		}
		if (!u) {
			/* the autotuner took the workers back to 1 while no unit is
			 * out: none will come (the feeder needs 2), so this thread
			 * maps, as at parallelism 1 */
			if (r->active < 2 && r->head == r->next_unit && !r->ended) {
				pthread_mutex_unlock(&r->lock);
				return MAP_INLINE;
			}
			r->waiting = 1;
			pthread_cond_wait(&r->cv_done, &r->lock);
			r->waiting = 0;
			continue;
		}
		int rc = 0, have = 0;
		if (op->fused_batch && c->isolate && !u->err &&
		    (r->cn || u->pos || u->n < c->B)) {
			/* samples were dropped: refill the batch in order */
			rc = carry_take(op, c, r, u, err);
			if (!rc && r->cn == c->B) {
				carry_output(op, c, r, out);
				have = 1;
			}
		} else if (op->fused_batch) {
			if (u->err) {
				rc = u->err;
				pf_error_set(err, rc, "%s", u->e.msg);
			} else if (u->n < c->B && op->fused_drop) {
				rc = PF_END;
			} else {
				unit_output(op, c, u, u->n, out);
				have = 1;
			}
			u->pos = u->n;
		} else if (u->pos < u->n) {
			*out = u->outs[u->pos++];
			have = 1;
		} else if (u->err) {
			rc = u->err;
			pf_error_set(err, rc, "%s", u->e.msg);
		}
		if (rc || (u->pos >= u->n && !u->err)) {
			free_unit(c, u);
			r->have_cur = 0;
			while (r->head < r->next_unit && r->units[r->head % c->cap].drained)
				r->head++;
			pthread_cond_broadcast(&r->cv_space);
		}
		if (rc || have) {
			pthread_mutex_unlock(&r->lock);
			return rc;
		}
	}
}

/* Pause the workers and wait until none holds an element or the input. */
static void map_quiesce(map_run *r, int quit)
{
	pthread_mutex_lock(&r->lock);
	r->pause = 1;
	if (quit)
		r->quit = 1;
	pthread_cond_broadcast(&r->cv_work);
	pthread_cond_broadcast(&r->cv_space);
	pthread_cond_broadcast(&r->cv_fill);
	while (!quit && r->idle < r->nth)
		pthread_cond_wait(&r->cv_done, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

static void map_drop_units(pf_op *op)
{
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	/* the threads are idle (quiesced) or gone, but idle ones still look
	 * at the counters when they wake */
	pthread_mutex_lock(&r->lock);
	/* filled and not claimed: the inputs are still held (element mode;
	 * lent bytes were copied into the stage or stay the input's) */
	for (uint64_t k = r->next_claim; r->units && k < r->filled; k++) {
		map_unit *u = &r->units[k % c->cap];
		for (int j = 0; !c->in_stride && u->ins && j < u->n; j++)
			pf_elem_release(&u->ins[j]);
		u->n = 0;
	}
	r->next_claim = r->filled = 0;
	for (int k = 0; r->units && k < c->cap; k++) {
		if (!r->units[k].ins || !r->units[k].outs)
			continue;
		map_unit *u = &r->units[k];
		if (u->done && !u->drained)
			free_unit(c, u);
		pf_buf_unref(u->buf);
		u->buf = NULL;
		u->done = 0;
		u->drained = 1;
	}
	r->have_cur = 0;
	pf_buf_unref(r->carry);
	r->carry = NULL;
	r->cn = 0;
	pthread_mutex_unlock(&r->lock);
}

static int map_start(pf_op *op, pf_error *err)
{
	map_cfg *c = op->cfg;
	if (c->par <= 1)
		return 0;
	map_run *r = calloc(1, sizeof(*r));
	if (!r)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cv_work, NULL);
	pthread_cond_init(&r->cv_done, NULL);
	pthread_cond_init(&r->cv_space, NULL);
	pthread_cond_init(&r->cv_fill, NULL);
	op->run = r; /* from here on, map_stop cleans up whatever exists */
	op->st.self_timed = 1;
	int bad = !(r->units = calloc((size_t)c->cap, sizeof(*r->units))) ||
		!(r->th = calloc((size_t)c->par + 1, sizeof(*r->th)));
	for (int k = 0; !bad && k < c->cap; k++) {
		r->units[k].ins = calloc((size_t)c->R, sizeof(pf_elem));
		r->units[k].outs = calloc((size_t)c->R, sizeof(pf_elem));
		r->units[k].drained = 1;
		if (!r->units[k].ins || !r->units[k].outs)
			bad = 1;
		if (op->fused_batch && c->isolate &&
		    !(r->units[k].oid = calloc((size_t)c->R, sizeof(uint64_t))))
			bad = 1;
		if (c->in_lend && !(r->units[k].src = calloc((size_t)c->R, sizeof(*r->units[k].src))))
			bad = 1;
		if (c->in_stride &&
		    (!(c->in_lend ||
		       (r->units[k].stage = aligned_alloc(64, (size_t)c->R * c->in_stride))) ||
		     !(r->units[k].blen = calloc((size_t)c->R, sizeof(size_t))) ||
		     !(r->units[k].bid = calloc((size_t)c->R, sizeof(uint64_t)))))
			bad = 1;
	}
	if (bad)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	r->active = op->st.parallelism;
	for (int i = 0; i < c->par; i++) {
		if (pthread_create(&r->th[i], NULL, map_worker, op) != 0)
			return pf_op_error(op, err, PF_ENOMEM, "cannot start worker thread %d", i);
		r->nth++;
		r->nw++;
	}
	if (pthread_create(&r->th[r->nth], NULL, map_feeder, op) != 0)
		return pf_op_error(op, err, PF_ENOMEM, "cannot start its feeder thread");
	r->nth++;
	return 0;
}

static int map_next(pf_op *op, pf_elem *out, pf_error *err)
{
	map_run *r = op->run;
	if (!r)
		return map_next_inline(op, out, err, NULL, 0, 0);
	/* autotuned parallelism 1: map in the consumer's thread, like a fixed
	 * 1, while no unit is out.  inline_busy keeps workers from reserving
	 * a unit meanwhile (none is pulling: none has a unit out), so the
	 * order is kept when the workers take over */
	for (;;) {
		pthread_mutex_lock(&r->lock);
		int inline_ = r->active < 2 && r->head == r->next_unit && !r->have_cur && !r->ended;
		r->inline_busy = inline_;
		/* the carry's samples come first: the inline batch starts with them */
		pf_buf *carry = inline_ ? r->carry : NULL;
		int cn = r->cn;
		uint64_t cid = r->carry_id;
		if (inline_) {
			r->carry = NULL;
			r->cn = 0;
		}
		pthread_mutex_unlock(&r->lock);
		if (!inline_) {
			int rc = map_next_par(op, out, err);
			if (rc == MAP_INLINE)
				continue; /* the workers were taken back meanwhile */
			return rc;
		}
		int rc = map_next_inline(op, out, err, carry, cn, cid);
		pthread_mutex_lock(&r->lock);
		r->inline_busy = 0;
		pthread_cond_broadcast(&r->cv_space);
		pthread_mutex_unlock(&r->lock);
		return rc;
	}
}

static void map_reset(pf_op *op)
{
	map_run *r = op->run;
	if (!r) {
		pf_op_reset(op->in);
		return;
	}
	map_quiesce(r, 0);
	map_drop_units(op);
	pf_op_reset(op->in);
	pthread_mutex_lock(&r->lock);
	r->next_unit = r->head = 0;
	r->ended = r->in_err = 0;
	r->pause = 0;
	pthread_cond_broadcast(&r->cv_work);
	pthread_cond_broadcast(&r->cv_space);
	pthread_mutex_unlock(&r->lock);
}

static void map_stop(pf_op *op)
{
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	if (r) {
		map_quiesce(r, 1);
		for (int i = 0; i < r->nth; i++)
			pthread_join(r->th[i], NULL);
		map_drop_units(op);
		for (int k = 0; r->units && k < c->cap; k++) {
			free(r->units[k].ins);
			free(r->units[k].outs);
			free(r->units[k].stage);
			free(r->units[k].src);
			free(r->units[k].blen);
			free(r->units[k].bid);
			free(r->units[k].oid);
		}
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cv_fill);
		pthread_cond_destroy(&r->cv_work);
		pthread_cond_destroy(&r->cv_done);
		pthread_cond_destroy(&r->cv_space);
		free(r->units);
		free(r->th);
		free(r);
		op->run = NULL;
	}
	cleanup_state(c);
}

static void map_destroy(pf_op *op)
{
	map_cfg *c = op->cfg;
	cleanup_state(c);
	free(c->args);
	pf_drop_log_free(op->drops);
	op->drops = NULL;
}

static const pf_op_vt map_vt = {
	.kind = "map", .prepare = map_prepare, .start = map_start, .next = map_next,
	.reset = map_reset, .stop = map_stop, .destroy = map_destroy,
};

pf_op *pf_op_map_new(const char *name, pf_map_prepare_fn prepare, pf_map_fn fn,
		     void *user, const char *args, const pf_map_opts *o,
		     pf_error *err)
{
	if (!prepare || !fn) {
		pf_error_set(err, PF_EINVAL, "map: NULL prepare or fn");
		return NULL;
	}
	if (o && o->num_parallel_calls < 0 && o->num_parallel_calls != PF_AUTOTUNE) {
		pf_error_set(err, PF_EINVAL, "map: num_parallel_calls must be >= 1 or PF_AUTOTUNE");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&map_vt, sizeof(map_cfg), err);
	if (!op)
		return NULL;
	map_cfg *c = op->cfg;
	c->prepare = prepare;
	c->fn = fn;
	c->user = user;
	c->args = strdup(args ? args : "");
	if (o) {
		c->par_req = o->num_parallel_calls;
		c->unordered = o->unordered;
		c->isolate = o->isolate;
	}
	op->is_map = 1;
	if (name)
		snprintf(op->label, sizeof(op->label), "map(%.60s)", name);
	if (c->isolate && !(op->drops = pf_drop_log_new())) {
		free(c->args);
		c->args = NULL;
	}
	if (!c->args) {
		free(op->cfg);
		free(op);
		pf_error_set(err, PF_ENOMEM, "map: out of memory");
		return NULL;
	}
	return op;
}
