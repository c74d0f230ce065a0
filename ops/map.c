/*
 * map.c - map: apply a map function to every element, in the consumer's
 * thread (num_parallel_calls 1) or on a worker pool.  When the optimizer
 * fuses a following batch into it (op->fused_batch = B), it is map+batch:
 * each sample is mapped straight into its slot of the batch buffer.
 *
 * The parallel engine (a feeder thread, workers, the ordered hand-off) is
 * in map_pool.c.
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

#include "pf_map_int.h"

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
	 * with a fixed 1), at n >= 2, n of them do; more start when the
	 * autotuner finds the map waits (up to par_max, which the memory
	 * budget fits: map_fit_parallelism) */
	op->st.parallelism = c->par_req == PF_AUTOTUNE ? 1 : c->par;
	op->st.max_parallelism = c->par_req == PF_AUTOTUNE && c->par > 1 ? c->par : 0;
	op->st.autotuned = c->par_req == PF_AUTOTUNE;
	c->par_max = c->par; /* map_fit_parallelism may raise it */
	c->B = op->fused_batch ? op->fused_batch : 1;
	op->batched = op->fused_batch ? 1 : in->batched;
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
	/* one more worker: its 2 units (outputs, inputs, the unit's slots) */
	c->worker_bytes = 2 * ((uint64_t)(op->fused_batch ? 1 : c->R) * c->unit_bytes +
			       (uint64_t)c->R * (in->elem_bytes + 2 * sizeof(pf_elem)));
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
int pf_map_fill_one(pf_op *op, map_cfg *c, pf_buf *b, map_unit *u, int j,
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
void pf_map_unit_output(pf_op *op, map_cfg *c, map_unit *u, int n, pf_elem *out)
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
	int rc = pf_map_fill_one(op, c, b, &one, 0, ie, err);
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

/*
 * Autotuned: workers beyond the CPU budget's count, for a map that waits
 * (the autotuner gives them only when its workers use little CPU), as
 * many as `avail` bytes hold (2 units each), up to MAP_PAR_MAX.  Not when
 * the input lends its bytes: the lend window was sized for the units of
 * the workers started at first.
 */
static void map_fit_parallelism(pf_op *op, uint64_t avail)
{
	map_cfg *c = op->cfg;
	if (!op->st.max_parallelism || c->in_lend || c->par >= MAP_PAR_MAX)
		return;
	uint64_t more = c->worker_bytes ? avail / c->worker_bytes : 0;
	if (more > (uint64_t)(MAP_PAR_MAX - c->par))
		more = (uint64_t)(MAP_PAR_MAX - c->par);
	c->par_max = c->par + (int)more;
	c->cap = 2 * c->par_max + 1;
	op->st.max_parallelism = c->par_max;
	op->buffer_bytes += more * c->worker_bytes;
}

static int map_set_active(pf_op *op, int n)
{
	map_run *r = op->run;
	if (!r)
		return op->st.parallelism;
	pthread_mutex_lock(&r->lock);
	if (n < 1)
		n = 1;
	if (n > r->nw)
		n = pf_map_pool_grow(op, n) < n ? r->nw : n;
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
		/* autotuned (op->run): its CPU time too, so busy time less
		 * CPU says how much it waits.  A thread CPU clock read is a
		 * syscall (about 1 us on a VM): one timed call per
		 * PF_CPU_PROBE_NS stands for the calls since the last one */
		c->cpu_n++;
		int cpu = scale && op->run && t0 - c->cpu_t >= PF_CPU_PROBE_NS;
		uint64_t c0 = cpu ? pf_thread_cpu_ns() : 0;
		rc = pf_map_fill_one(op, c, u.buf, &u, n, &ie, err);
		if (scale)
			pf_stat_add(&op->st.busy_ns, scale * (pf_now_ns() - t0));
		if (cpu) {
			pf_stat_add(&op->st.cpu_ns, (uint64_t)c->cpu_n * (pf_thread_cpu_ns() - c0));
			c->cpu_n = 0;
			c->cpu_t = t0;
		}
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
	pf_map_unit_output(op, c, &u, n, out);
	return 0;
}

static int map_start(pf_op *op, pf_error *err)
{
	map_cfg *c = op->cfg;
	if (c->par <= 1)
		return 0;
	return pf_map_pool_start(op, err);
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
			int rc = pf_map_pool_next(op, out, err);
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
	pf_map_pool_quiesce(r, 0);
	pf_map_pool_drop_units(op);
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
	pf_map_pool_free(op);
	cleanup_state(c);
}

static void map_destroy(pf_op *op)
{
	map_cfg *c = op->cfg;
	cleanup_state(c);
	free(c->args);
	free(c->name);
	pf_drop_log_free(op->drops);
	op->drops = NULL;
}

static const pf_op_vt map_vt = {
	.prepare = map_prepare, .start = map_start, .next = map_next,
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
	pf_op *op = pf_op_alloc(&pf_op_map, sizeof(map_cfg), err);
	if (!op)
		return NULL;
	map_cfg *c = op->cfg;
	c->prepare = prepare;
	c->fn = fn;
	c->user = user;
	c->args = strdup(args ? args : "");
	if (name && !(c->name = strdup(name))) {
		free(c->args);
		c->args = NULL;
	}
	if (o) {
		c->par_req = o->num_parallel_calls;
		c->unordered = o->unordered;
		c->isolate = o->isolate;
	}
	if (name)
		snprintf(op->label, sizeof(op->label), "map(%.60s)", name);
	if (c->args && c->isolate && !(op->drops = pf_drop_log_new())) {
		free(c->args);
		c->args = NULL;
	}
	if (!c->args) {
		pf_op_free(op);
		pf_error_set(err, PF_ENOMEM, "map: out of memory");
		return NULL;
	}
	return op;
}

/* The spec's arguments -> a new map op: fn is a registered name, or
 * "lib.so:name" of a plugin (loaded first). */
static pf_op *map_build(const pf_arg *a, pf_error *err)
{
	const pf_map_def *d;
	const char *name;

	if (pf_fn_resolve(a[0].s, &name, err))
		return NULL;
	if (!(d = pf_map_lookup(name))) {
		pf_error_set(err, PF_EINVAL, "map: no map function called \"%s\"", name);
		return NULL;
	}
	pf_map_opts o = { .num_parallel_calls = a[1].set ? (int)a[1].i : 0,
			  .unordered = !a[2].i, .isolate = (int)a[3].i };
	pf_op *op = pf_op_map_new(d->name, d->prepare, d->fn, d->user, a[0].fargs, &o, err);
	map_cfg *c = op ? op->cfg : NULL;
	if (c && strcmp(c->name, a[0].s)) {   /* keep "lib.so:name" for the way back */
		free(c->name);
		if (!(c->name = strdup(a[0].s))) {
			pf_op_free(op);
			pf_error_set(err, PF_ENOMEM, "map: out of memory");
			return NULL;
		}
	}
	return op;
}

/* The way back: a function that the registry knows by this op's name (or
 * a plugin's "lib.so:name") has a spec form; one given by pointer only
 * has none. */
static int map_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	const map_cfg *c = op->cfg;
	const char *colon = c->name ? strrchr(c->name, ':') : NULL;
	const pf_map_def *d = pf_map_lookup(colon ? colon + 1 : c->name ? c->name : "");
	if (!d || d->prepare != c->prepare || d->fn != c->fn || d->user != c->user)
		return pf_op_error((pf_op *)op, err, PF_EINVAL,
				   "a map function given by pointer has no spec form (register it with pf_map_register)");
	a[0] = (pf_arg){ .set = 1, .s = c->name, .fargs = c->args };
	a[1] = (pf_arg){ .set = c->par_req != 0, .i = c->par_req ? c->par_req : 1 };
	a[2] = (pf_arg){ .set = c->unordered != 0, .i = !c->unordered };
	a[3] = (pf_arg){ .set = c->isolate != 0, .i = c->isolate != 0 };
	return 0;
}

const pf_op_desc pf_op_map = {
	.kind = "map", .traits = PF_OP_MAP,
	.help = "apply a map function to each element",
	.params = {
		{ "fn", PF_PARAM_FN, PF_PARAM_REQ | PF_PARAM_POS, 0, 0, 0, NULL,
		  "registered name, name(args), or lib.so:name" },
		{ "par", PF_PARAM_INT_AUTO, 0, 1, 1024, 1, NULL, "parallel calls (default 1)" },
		{ "ordered", PF_PARAM_BOOL, 0, 0, 1, 1, NULL,
		  "keep input order (default true)" },
		{ "isolate", PF_PARAM_BOOL, 0, 0, 1, 0, NULL,
		  "drop (and log) samples the function fails on instead of failing" },
	},
	.vt = &map_vt, .build = map_build, .args = map_args,
	.set_parallelism = map_set_active, .fit_parallelism = map_fit_parallelism,
};
