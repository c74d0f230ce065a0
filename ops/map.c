/*
 * map.c - map: apply a map function to every element, in the consumer's
 * thread (num_parallel_calls 1) or on a worker pool.  When the optimizer
 * fuses a following batch into it (op->fused_batch = B), it is map+batch:
 * each sample is mapped straight into its slot of the batch buffer.
 *
 * The parallel engine: workers take turns pulling from the input under
 * in_lock, which numbers the elements in input order (seq).  Element seq
 * belongs to output unit seq / B (B = 1 without fusion), slot seq % B; a
 * bounded ring of `cap` units holds the output being built.  The consumer
 * hands out units in order (ordered) or the first finished one in the
 * window (unordered, B = 1 only), so the output order never depends on
 * thread timing unless unordered was asked for.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"

#define MAP_RUN 16 /* elements a worker maps per turn when not fused */

typedef struct map_cfg {
	pf_map_prepare_fn prepare;
	pf_map_fn fn;
	void *user;
	char *args;
	int par_req, unordered;
	/* resolved by prepare */
	int prepared;
	pf_map_ctx ctx;
	int par, cap, B, R, has_var; /* R: inputs per unit */
	size_t unit_bytes;
	size_t in_stride;            /* input lends its elements: bytes per copy */
	uint32_t tick;               /* inline path: sampled timing */
	int64_t off[PF_MAX_FIELDS];  /* field offsets in a unit's buffer */
	size_t fbytes[PF_MAX_FIELDS];
} map_cfg;

typedef struct map_unit {
	pf_buf *buf;          /* fused: the batch buffer */
	pf_elem *ins;         /* R inputs pulled for this unit */
	unsigned char *stage; /* borrowing input: R copies, in_stride apart */
	size_t *blen;         /* ... their bytes */
	uint64_t *bid;        /* ... their ids */
	pf_elem *outs;        /* element mode: R outputs (each owns its buffer) */
	pf_elem out;          /* inline path: the one output */
	int n, pos;           /* inputs reserved; next output to hand out */
	int done, drained;
	uint64_t first_id;
	int err;
	pf_error e;
} map_unit;

typedef struct map_run {
	pthread_mutex_t lock, in_lock;
	pthread_cond_t cv_work, cv_done, cv_space;
	pthread_t *th;
	int nth, idle, quit, pause, waiting;
	int active, ids;      /* autotune: workers with id < active take work */
	int inline_busy;      /* the consumer maps in its thread: no reserving */
	uint64_t next_unit, head, cur;
	int ended, in_err, have_cur;
	pf_error in_e;
	map_unit *units;
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
	op->buffer_bytes = op->fused_batch ?
		(uint64_t)(c->cap ? c->cap : 1) * c->unit_bytes :
		(uint64_t)(c->cap ? c->cap : 1) * c->R * c->unit_bytes;
	op->buffer_bytes += (uint64_t)(c->cap ? c->cap : 1) * c->R * in->elem_bytes;
	op->cardinality = in->cardinality;
	if (op->fused_batch && in->cardinality >= 0)
		op->cardinality = op->fused_drop ? in->cardinality / c->B :
			(in->cardinality + c->B - 1) / c->B;
	if (op->fused_batch)
		snprintf(op->label + strcspn(op->label, "+"), sizeof(op->label) - strcspn(op->label, "+"),
			 "+batch(%d)", c->B);
	return 0;
}

/* Map input element ie into slot j of unit u (buffer b).  Releases ie. */
static int fill_one(pf_op *op, map_cfg *c, pf_buf *b, map_unit *u, int j,
		    pf_elem *ie, pf_error *e)
{
	pf_elem o;
	memset(&o, 0, sizeof(o));
	o.schema = &op->schema;
	o.buf = b->data;
	o.id = ie->id;
	if (op->fused_batch) {
		for (int i = 0; i < op->schema.nfields; i++) {
			o.data[i] = b->data + c->off[i] + (size_t)j * c->fbytes[i];
			o.nitems[i] = pf_field_count(&op->schema.fields[i]);
		}
		o.nbytes = c->unit_bytes;
	} else {
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
	pf_elem_release(ie);
	if (rc) {
		char m[PF_ERROR_MSG_MAX];
		snprintf(m, sizeof(m), "%s", e->code ? e->msg : pf_strerror(rc));
		pf_error_clear(e);
		return pf_op_error(op, e, rc < 0 ? rc : PF_EMAP, "sample %llu: %s",
				   (unsigned long long)id, m);
	}
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
	if (rc) {
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
	if (rc) {
		char m[PF_ERROR_MSG_MAX];
		snprintf(m, sizeof(m), "%s", err->code ? err->msg : pf_strerror(rc));
		pf_error_clear(err);
		return pf_op_error(op, err, rc < 0 ? rc : PF_EMAP, "sample %llu: %s",
				   (unsigned long long)ie->id, m);
	}
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
	if (n > r->nth)
		n = r->nth;
	r->active = n;
	op->st.parallelism = n;
	pthread_cond_broadcast(&r->cv_work);
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* ---- inline (one thread) ------------------------------------------------ */

static int map_next_inline(pf_op *op, pf_elem *out, pf_error *err)
{
	map_cfg *c = op->cfg;
	map_unit u;
	memset(&u, 0, sizeof(u));
	int n = 0, rc = 0;
	pf_elem ie;
	for (; n < c->B; n++) {
		if (op->in->can_borrow) {
			const unsigned char *d;
			size_t len;
			uint64_t id;
			rc = pf_op_borrow(op->in, &d, &len, &id, err);
			if (!rc)
				pf_elem_view(&op->in->schema, d, len, id, &ie);
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
		/* busy time sampled (one call in 8, scaled): the autotuner
		 * reads it, and a clock read per element costs as much as a
		 * cheap map */
		int timed = (c->tick++ & 7) == 0;
		uint64_t t0 = timed ? pf_now_ns() : 0;
		rc = fill_one(op, c, u.buf, &u, n, &ie, err);
		if (timed)
			pf_stat_add(&op->st.busy_ns, 8 * (pf_now_ns() - t0));
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
 * A worker reserves a whole unit (R consecutive inputs: a batch when fused,
 * else a run of R elements) under in_lock, maps it outside any lock, and
 * marks it done: one lock round trip per unit, not per element.
 */
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
		if (r->pause || r->ended || me >= r->active || r->active < 2) {
			r->idle++;
			pthread_cond_broadcast(&r->cv_done);
			while (!r->quit && (r->pause || r->ended || me >= r->active ||
					    r->active < 2))
				pthread_cond_wait(&r->cv_work, &r->lock);
			r->idle--;
			continue;
		}
		pthread_mutex_unlock(&r->lock);

		pthread_mutex_lock(&r->in_lock);
		pthread_mutex_lock(&r->lock);
		uint64_t t0 = pf_now_ns();
		while (!r->quit && !r->pause && !r->ended &&
		       (r->next_unit >= r->head + (uint64_t)c->cap || r->inline_busy))
			pthread_cond_wait(&r->cv_space, &r->lock);
		pf_stat_add(&op->st.blocked_ns, pf_now_ns() - t0);
		if (r->quit || r->pause || r->ended) {
			pthread_mutex_unlock(&r->in_lock);
			continue; /* still holding lock */
		}
		uint64_t un = r->next_unit++;
		map_unit *u = &r->units[un % c->cap];
		u->n = u->pos = u->done = u->drained = u->err = 0;
		pthread_mutex_unlock(&r->lock);

		/* pull up to R inputs, in input order */
		pf_error e = { 0 };
		int rc = 0;
		t0 = pf_now_ns();
		if (c->in_stride) {
			/* copy the lent bytes: the input reuses them at its next call */
			const unsigned char *d;
			while (u->n < c->R &&
			       !(rc = pf_op_borrow(op->in, &d, &u->blen[u->n], &u->bid[u->n], &e))) {
				memcpy(u->stage + (size_t)u->n * c->in_stride, d, u->blen[u->n]);
				u->n++;
			}
		} else {
			while (u->n < c->R && !(rc = pf_op_next(op->in, &u->ins[u->n], &e)))
				u->n++;
		}
		pf_stat_add(&op->st.wait_ns, pf_now_ns() - t0);
		int n = u->n;
		if (rc) {
			pthread_mutex_lock(&r->lock);
			r->ended = 1;
			if (rc < 0) {
				r->in_err = rc;
				r->in_e = e;
			}
			if (!n)
				r->next_unit--; /* nobody reserved after us: in_lock */
			pthread_cond_broadcast(&r->cv_done);
			pthread_mutex_unlock(&r->lock);
		}
		pthread_mutex_unlock(&r->in_lock);
		if (!n) {
			pthread_mutex_lock(&r->lock);
			continue;
		}

		t0 = pf_now_ns();
		int ferr = 0;
		pf_error fe = { 0 };
		if (op->fused_batch && !(u->buf = pf_buf_get(op->rt->batch_pool, c->unit_bytes)))
			ferr = pf_op_error(op, &fe, PF_ENOMEM, "out of memory");
		for (int j = 0; c->in_stride && j < n; j++)
			pf_elem_view(&op->in->schema, u->stage + (size_t)j * c->in_stride, u->blen[j],
				     u->bid[j], &u->ins[j]);
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
			ferr = fill_one(op, c, b, op->fused_batch ? u : &one, j, &u->ins[j], &fe);
			if (!op->fused_batch) {
				if (ferr) {
					pf_buf_unref(b);
				} else {
					u->outs[j] = one.out;
					u->outs[j].ref_ = b;
				}
			}
			if (ferr) /* keep only the good ones before it */
				u->n = j;
		}
		pf_stat_add(&op->st.busy_ns, pf_now_ns() - t0);
		pthread_mutex_lock(&r->lock);
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
			int rc = r->in_err ? r->in_err : PF_END;
			if (r->in_err)
				pf_error_set(err, rc, "%s", r->in_e.msg);
			pthread_mutex_unlock(&r->lock);
			return rc;
		}
		if (!u) {
			r->waiting = 1;
			pthread_cond_wait(&r->cv_done, &r->lock);
			r->waiting = 0;
			continue;
		}
		int rc = 0, have = 0;
		if (op->fused_batch) {
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
	while (!quit && r->idle < r->nth)
		pthread_cond_wait(&r->cv_done, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

static void map_drop_units(pf_op *op)
{
	map_cfg *c = op->cfg;
	map_run *r = op->run;
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
	pthread_mutex_init(&r->in_lock, NULL);
	pthread_cond_init(&r->cv_work, NULL);
	pthread_cond_init(&r->cv_done, NULL);
	pthread_cond_init(&r->cv_space, NULL);
	op->run = r; /* from here on, map_stop cleans up whatever exists */
	op->st.self_timed = 1;
	int bad = !(r->units = calloc((size_t)c->cap, sizeof(*r->units))) ||
		!(r->th = calloc((size_t)c->par, sizeof(*r->th)));
	for (int k = 0; !bad && k < c->cap; k++) {
		r->units[k].ins = calloc((size_t)c->R, sizeof(pf_elem));
		r->units[k].outs = calloc((size_t)c->R, sizeof(pf_elem));
		r->units[k].drained = 1;
		if (!r->units[k].ins || !r->units[k].outs)
			bad = 1;
		if (c->in_stride &&
		    (!(r->units[k].stage = aligned_alloc(64, (size_t)c->R * c->in_stride)) ||
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
	}
	return 0;
}

static int map_next(pf_op *op, pf_elem *out, pf_error *err)
{
	map_run *r = op->run;
	if (!r)
		return map_next_inline(op, out, err);
	/* autotuned parallelism 1: map in the consumer's thread, like a fixed
	 * 1, while no unit is out.  inline_busy keeps workers from reserving
	 * a unit meanwhile (none is pulling: none has a unit out), so the
	 * order is kept when the workers take over */
	pthread_mutex_lock(&r->lock);
	int inline_ = r->active < 2 && r->head == r->next_unit && !r->have_cur && !r->ended;
	r->inline_busy = inline_;
	pthread_mutex_unlock(&r->lock);
	if (!inline_)
		return map_next_par(op, out, err);
	int rc = map_next_inline(op, out, err);
	pthread_mutex_lock(&r->lock);
	r->inline_busy = 0;
	pthread_cond_broadcast(&r->cv_space);
	pthread_mutex_unlock(&r->lock);
	return rc;
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
			free(r->units[k].blen);
			free(r->units[k].bid);
		}
		pthread_mutex_destroy(&r->lock);
		pthread_mutex_destroy(&r->in_lock);
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
	}
	op->is_map = 1;
	if (name)
		snprintf(op->label, sizeof(op->label), "map(%.60s)", name);
	if (!c->args) {
		free(op->cfg);
		free(op);
		pf_error_set(err, PF_ENOMEM, "map: out of memory");
		return NULL;
	}
	return op;
}
