/*
 * map_pool.c - the map op's parallel engine (pf_map_int.h).
 *
 * The parallel engine: one feeder thread pulls from the input, which
 * numbers the elements in input order (seq), and workers map.  Element seq
 * belongs to output unit seq / B (B = 1 without fusion), slot seq % B; a
 * bounded ring of `cap` units holds the output being built.  The consumer
 * hands out units in order (ordered) or the first finished one in the
 * window (unordered, B = 1 only), so the output order never depends on
 * thread timing unless unordered was asked for.
 *
 * With isolate and a fused batch, dropped samples leave units short: the
 * consumer refills batches across units (the carry), so every batch but the
 * last is full and holds the same samples whatever the thread count.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_map_int.h"

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
	/* its CPU: the serial path's cost (a clock read per PF_CPU_PROBE_NS) */
	uint64_t cpu0 = pf_thread_cpu_ns(), cpu_t = pf_now_ns();
	pthread_mutex_lock(&r->lock);
	for (;;) {
		if (r->quit)
			break;
		/* units ahead of the consumer: 2 per worker + 1, for the
		 * workers started at first (as many as the CPU budget) or
		 * the more of them at work (a map that waits) */
		uint64_t win = 2 * (uint64_t)(r->active > c->par ? r->active : c->par) + 1;
		if (r->pause || r->ended || r->active < 2 || r->inline_busy ||
		    r->next_unit >= r->head + win) {
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
		uint64_t t1 = pf_now_ns();
		pf_stat_add(&op->st.wait_ns, t1 - t0);
		if (t1 - cpu_t >= PF_CPU_PROBE_NS) {
			uint64_t cpu1 = pf_thread_cpu_ns();
			pf_stat_add(&op->st.serial_cpu_ns, cpu1 - cpu0);
			cpu0 = cpu1;
			cpu_t = t1;
		}
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
	pf_stat_add(&op->st.serial_cpu_ns, pf_thread_cpu_ns() - cpu0);
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
	pf_cpu_probe cpu;
	pf_cpu_probe_open(&cpu, pf_now_ns());
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
			ferr = pf_map_fill_one(op, c, b, op->fused_batch ? u : &one, k, &u->ins[j], &fe);
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
		uint64_t t1 = pf_now_ns();
		pf_stat_add(&op->st.busy_ns, t1 - t0);
		pf_cpu_probe_tick(&cpu, &op->st, t1);
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
	pf_cpu_probe_close(&cpu, &op->st);
	return NULL;
}

/* Start workers until n exist (at most c->par_max); r->lock held.  The
 * autotuner raises a map that waits past the workers started at first.
 * Returns the workers now started. */
int pf_map_pool_grow(pf_op *op, int n)
{
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	if (n > c->par_max)
		n = c->par_max;
	while (r->nw < n && !r->quit) {
		if (pthread_create(&r->th[r->nth], NULL, map_worker, op) != 0)
			break; /* fewer workers: the caller is told how many */
		r->nth++;
		r->nw++;
	}
	return r->nw;
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
	pf_map_unit_output(op, c, &t, r->cn, out);
	r->carry = NULL;
	r->cn = 0;
}

int pf_map_pool_next(pf_op *op, pf_elem *out, pf_error *err)
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
				pf_map_unit_output(op, c, u, u->n, out);
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


void pf_map_pool_quiesce(map_run *r, int quit)
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

void pf_map_pool_drop_units(pf_op *op)
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

int pf_map_pool_start(pf_op *op, pf_error *err)
{
	map_cfg *c = op->cfg;
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
	op->st.cpu_timed = 1;
	int bad = !(r->units = calloc((size_t)c->cap, sizeof(*r->units))) ||
		!(r->th = calloc((size_t)c->par_max + 1, sizeof(*r->th)));
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

void pf_map_pool_free(pf_op *op)
{
	map_cfg *c = op->cfg;
	map_run *r = op->run;
	if (!r)
		return;
	pf_map_pool_quiesce(r, 1);
	for (int i = 0; i < r->nth; i++)
		pthread_join(r->th[i], NULL);
	pf_map_pool_drop_units(op);
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
