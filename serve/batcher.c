/*
 * batcher.c - the dynamic batcher (contract in pf_batcher.h).
 * One mutex guards the queues: a FIFO per priority level, a FIFO of delayed
 * requests (served last), and the list of every request in submit order
 * (for preserve_ordering and finishing in order).  A batch thread, holding
 * the mutex, rejects requests whose deadline has passed, decides whether a
 * batch is due (full, a preferred size fillable, the oldest request waited
 * batch_timeout_us, or shutting down), takes its pieces, and drops the
 * mutex to copy the inputs in and launch it (up to depth in flight), and
 * to complete the oldest and copy its answers back.  Done callbacks run
 * outside the queue mutex; with preserve_ordering a second mutex keeps
 * them in submit order across threads.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>   /* PR_SET_TIMERSLACK (Linux, as liburing) */

#include "pf_batcher.h"

typedef struct piece {
	pf_batch_req *r;
	int off, rows;
} piece;

/* One batch of a thread: formed, launched, then completed (at most
 * opts.depth of them in flight per thread, completed in launch order). */
typedef struct bslot {
	void *in, *out;
	piece *pieces;
	int n, rows, backlog, rc;   /* backlog: rows queued when it was taken */
	uint64_t first_enq, t0;
	pf_batch bt;
	pf_error e;
} bslot;

typedef struct bthread {
	pf_batcher *b;
	int idx;
	pthread_t tid;
	bslot *sl;
	int head, inflight;     /* oldest slot in flight, and how many */
} bthread;

struct pf_batcher {
	pf_batcher_opts o;
	int cap;                 /* rows of one batch at most */
	int nlevels;
	pthread_mutex_t mu, deliver_mu;
	pthread_cond_t cv;
	pf_batch_req *qhead[PF_BATCH_MAX_PRIORITIES + 1];  /* last: delayed */
	pf_batch_req *qtail[PF_BATCH_MAX_PRIORITIES + 1];
	int qcount[PF_BATCH_MAX_PRIORITIES + 1];
	int queued;              /* requests in the queues */
	int queued_rows;         /* their rows not yet taken */
	pf_batch_req *ohead, *otail;   /* every request not yet handed back */
	int stopping;
	int to_deliver;          /* finished requests not yet collected */
	uint64_t est_ns;         /* smoothed batch compute time */
	double row_ns;           /* smoothed compute time per padded row */
	int eff_cap;             /* adaptive: the batch size limit now */
	uint64_t slo_ns, last_log_ns;
	uint64_t last_arrival, gap_ns;   /* adaptive: last submit, mean gap */
	pf_batcher_stats st;
	int nthreads;
	bthread *th;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- options -------------------------------------------------------------- */

static int check_sizes(const int *v, int n, int cap, const char *name,
		       pf_error *err)
{
	if (n < 0 || n > PF_BATCH_MAX_SIZES)
		return pf_error_set(err, PF_EINVAL, "batcher: %s: %d sizes (at most %d)",
				    name, n, PF_BATCH_MAX_SIZES);
	for (int i = 0; i < n; i++)
		if (v[i] < 1 || v[i] > cap || (i && v[i] <= v[i - 1]))
			return pf_error_set(err, PF_EINVAL,
					    "batcher: %s[%d] = %d: sizes must ascend within 1..%d",
					    name, i, v[i], cap);
	return 0;
}

static int check_opts(pf_batcher_opts *o, int *cap, pf_error *err)
{
	if (!o->compute || !o->in_bytes || !o->out_bytes)
		return pf_error_set(err, PF_EINVAL,
				    "batcher: compute, in_bytes and out_bytes are required");
	if (!o->max_batch_size)
		o->max_batch_size = 32;
	if (!o->num_batch_threads)
		o->num_batch_threads = 1;
	if (!o->max_enqueued)
		o->max_enqueued = 1024;
	if (!o->npriorities)
		o->npriorities = 1;
	if (!o->depth || !o->complete)
		o->depth = 1;
	if (o->depth < 1 || o->depth > 16)
		return pf_error_set(err, PF_EINVAL, "batcher: depth %d (1..16)", o->depth);
	if (o->max_batch_size < 1 || o->max_batch_size > (1 << 20))
		return pf_error_set(err, PF_EINVAL, "batcher: max_batch_size %d (1..%d)",
				    o->max_batch_size, 1 << 20);
	if (o->num_batch_threads < 1 || o->num_batch_threads > 256)
		return pf_error_set(err, PF_EINVAL, "batcher: num_batch_threads %d (1..256)",
				    o->num_batch_threads);
	if (!(o->slo_p99_ms >= 0 && o->slo_p99_ms < 3600e3))
		return pf_error_set(err, PF_EINVAL, "batcher: slo_p99_ms %g (0 = off, else > 0)",
				    o->slo_p99_ms);
	if (o->max_enqueued < 1)
		return pf_error_set(err, PF_EINVAL, "batcher: max_enqueued %d (>= 1)",
				    o->max_enqueued);
	if (o->npriorities < 1 || o->npriorities > PF_BATCH_MAX_PRIORITIES)
		return pf_error_set(err, PF_EINVAL, "batcher: npriorities %d (1..%d)",
				    o->npriorities, PF_BATCH_MAX_PRIORITIES);
	if (o->max_execution_batch_size < 0 ||
	    o->max_execution_batch_size > o->max_batch_size)
		return pf_error_set(err, PF_EINVAL,
				    "batcher: max_execution_batch_size %d (0..max_batch_size %d)",
				    o->max_execution_batch_size, o->max_batch_size);
	*cap = o->max_execution_batch_size ? o->max_execution_batch_size
					   : o->max_batch_size;
	int rc;
	if ((rc = check_sizes(o->allowed_batch_sizes, o->n_allowed, *cap,
			      "allowed_batch_sizes", err)) < 0 ||
	    (rc = check_sizes(o->preferred_batch_sizes, o->n_preferred, *cap,
			      "preferred_batch_sizes", err)) < 0)
		return rc;
	if (o->n_allowed && o->allowed_batch_sizes[o->n_allowed - 1] != *cap)
		return pf_error_set(err, PF_EINVAL,
				    "batcher: allowed_batch_sizes must end with the batch cap %d, not %d",
				    *cap, o->allowed_batch_sizes[o->n_allowed - 1]);
	for (int i = 0; i < o->npriorities; i++)
		if (o->prio[i].max_queue_size < 0 ||
		    (o->prio[i].timeout_action != PF_BATCH_REJECT &&
		     o->prio[i].timeout_action != PF_BATCH_DELAY))
			return pf_error_set(err, PF_EINVAL,
					    "batcher: priority %d: bad queue policy", i);
	return 0;
}

/* ---- queues (hold b->mu) ------------------------------------------------- */

static void q_push(pf_batcher *b, int q, pf_batch_req *r)
{
	r->priv.qnext = NULL;
	if (b->qtail[q])
		b->qtail[q]->priv.qnext = r;
	else
		b->qhead[q] = r;
	b->qtail[q] = r;
	b->qcount[q]++;
}

/* Unlink r from queue q given its predecessor (NULL: r is the head). */
static void q_unlink(pf_batcher *b, int q, pf_batch_req *prev, pf_batch_req *r)
{
	if (prev)
		prev->priv.qnext = r->priv.qnext;
	else
		b->qhead[q] = r->priv.qnext;
	if (b->qtail[q] == r)
		b->qtail[q] = prev;
	b->qcount[q]--;
}

/* Mark r finished with status rc (the first error wins). */
static void finish(pf_batcher *b, pf_batch_req *r, int rc, const pf_error *e)
{
	if (rc < 0 && r->status == 0) {
		r->status = rc;
		if (e)
			r->err = *e;
	}
	r->priv.finished = 1;
	b->to_deliver++;
	if (r->status == PF_ETIMEDOUT)
		b->st.rejected_timeout++;
	else if (r->status < 0)
		b->st.failed++;
	else
		b->st.completed++;
}

/* Reject or delay the queued requests whose deadline has passed at now,
 * or (hard deadlines) that a batch starting now could not finish in time. */
static void expire(pf_batcher *b, uint64_t now)
{
	for (int q = 0; q <= b->nlevels; q++) {
		pf_batch_req *prev = NULL, *r = b->qhead[q];
		while (r) {
			pf_batch_req *next = r->priv.qnext;
			uint64_t dl = r->priv.deadline_ns;
			int late = dl && (now >= dl ||
					  (r->priv.hard_deadline && b->est_ns &&
					   now + b->est_ns > dl));
			if (!late || r->priv.taken) {  /* a split one is started */
				prev = r;
				r = next;
				continue;
			}
			q_unlink(b, q, prev, r);
			b->queued_rows -= r->rows;
			if (!r->priv.hard_deadline &&
			    b->o.prio[r->priv.level].timeout_action == PF_BATCH_DELAY) {
				r->priv.deadline_ns = 0;
				r->priv.delayed = 1;
				b->st.delayed++;
				b->queued_rows += r->rows;
				q_push(b, b->nlevels, r);
			} else {
				b->queued--;
				pf_error e = { 0 };
				pf_error_set(&e, PF_ETIMEDOUT,
					     "request of %d rows, priority %d: timeout of %llu us passed before it could be computed",
					     r->rows, r->priv.level,
					     (unsigned long long)((dl - r->priv.enq_ns) / 1000));
				finish(b, r, PF_ETIMEDOUT, &e);
			}
			r = next;
		}
	}
}

static pf_batch_req *oldest(pf_batcher *b)
{
	pf_batch_req *o = NULL;
	for (int q = 0; q <= b->nlevels; q++)
		if (b->qhead[q] && (!o || b->qhead[q]->priv.enq_ns < o->priv.enq_ns))
			o = b->qhead[q];
	return o;
}

/* Adaptive mode's batch_target: full at the limit, else dispatch the
 * oldest request when half its SLO is left but the compute of what is
 * queued (Clipper's deadline-driven batching, half the SLO kept for the
 * tail), or earlier once arrivals pause (no submit for twice the mean gap:
 * waiting on for a closed loop's stragglers only idles the device). */
static int adaptive_target(pf_batcher *b, uint64_t now, int avail, uint64_t *wake)
{
	int lim = b->eff_cap, n = avail < lim ? avail : lim;
	if (avail >= lim || b->stopping)
		return n;
	pf_batch_req *o = oldest(b);
	uint64_t need = (uint64_t)(b->row_ns * n), half = b->slo_ns / 2;
	uint64_t due = o->priv.enq_ns + (half > need ? half - need : 0);
	uint64_t lull = b->last_arrival + 2 * b->gap_ns + 20000;
	due = b->gap_ns && lull < due && lull > o->priv.enq_ns ? lull : due;
	b->st.adaptive_wait_us = due > o->priv.enq_ns ? (due - o->priv.enq_ns) / 1000 : 0;
	if (now >= due)
		return n;
	*wake = due;
	return 0;
}

/* Adaptive mode, after a batch of rows whose oldest request waited since
 * first_enq, taken when backlog rows were queued: multiplicative decrease
 * when it missed the SLO with no backlog beyond the limit (with one, the
 * queue is the cause, and smaller batches would only deepen it: grow); one
 * row down when it ran well short of the limit; additive increase when
 * more than the limit was queued.  Holds b->mu; a log line goes to line. */
static void adapt(pf_batcher *b, int rows, int backlog, uint64_t first_enq,
		  uint64_t end, char *line, size_t cap)
{
	int old = b->eff_cap;
	uint64_t lat = end - first_enq;
	if (lat > b->slo_ns && b->eff_cap > 1 && backlog <= b->eff_cap)
		b->eff_cap = b->eff_cap * 3 / 4 > 0 ? b->eff_cap * 3 / 4 : 1;
	else if (rows < b->eff_cap - 1 && !b->stopping)
		b->eff_cap--;   /* ran on its deadline: fewer arrive than that */
	else if (backlog > b->eff_cap && b->eff_cap < b->cap)
		b->eff_cap++;
	if (b->eff_cap == old)
		return;
	b->st.adaptive_changes++;
	if (b->o.log && end - b->last_log_ns >= 50000000u) {
		b->last_log_ns = end;
		snprintf(line, cap, "adaptive: batch limit %d -> %d (oldest waited %.3f ms, slo %.3f ms, %.1f us/row, wait %.3f ms)",
			 old, b->eff_cap, lat / 1e6, b->slo_ns / 1e6, b->row_ns / 1e3,
			 b->st.adaptive_wait_us / 1e3);
	}
}

/* Rows the next batch should have now (0: wait), and when to look again
 * (*wake, 0 = no timer). */
static int batch_target(pf_batcher *b, uint64_t now, uint64_t *wake)
{
	*wake = 0;
	int avail = b->queued_rows;
	if (!avail)
		return 0;
	if (b->slo_ns)
		return adaptive_target(b, now, avail, wake);
	if (avail >= b->cap || b->stopping || !b->o.batch_timeout_us)
		return avail < b->cap ? avail : b->cap;
	for (int i = b->o.n_preferred - 1; i >= 0; i--)
		if (avail >= b->o.preferred_batch_sizes[i])
			return b->o.preferred_batch_sizes[i];
	pf_batch_req *o = oldest(b);
	uint64_t due = o->priv.enq_ns + b->o.batch_timeout_us * 1000;
	if (now >= due)
		return avail;
	*wake = due;
	return 0;
}

/* The earliest deadline of a queued request (0: none). */
static uint64_t next_deadline(pf_batcher *b)
{
	uint64_t w = 0;
	for (int q = 0; q < b->nlevels; q++)
		for (pf_batch_req *r = b->qhead[q]; r; r = r->priv.qnext)
			if (r->priv.deadline_ns && !r->priv.taken &&
			    (!w || r->priv.deadline_ns < w))
				w = r->priv.deadline_ns;
	return w;
}

/* Take up to target rows from the queues, highest level first, FIFO within
 * one; a request that does not fit stops the batch unless splitting. */
static int take(pf_batcher *b, bslot *t, int target, uint64_t now, int *npieces)
{
	int rows = 0, n = 0, split = b->o.max_execution_batch_size > 0;
	for (int q = 0; q <= b->nlevels && rows < target; q++) {
		pf_batch_req *r;
		while ((r = b->qhead[q]) && rows < target) {
			int left = r->rows - r->priv.taken;
			int k = left;
			if (rows + k > target && (split || rows)) {
				/* (a whole request that alone exceeds a
				 * preferred target still fits the cap) */
				if (!split)
					goto out;
				k = target - rows;
			}
			if (!r->priv.taken)
				r->queue_ns = now - r->priv.enq_ns;
			t->pieces[n++] = (piece){ r, r->priv.taken, k };
			r->priv.taken += k;
			r->priv.pending++;
			rows += k;
			b->queued_rows -= k;
			if (r->priv.taken == r->rows) {
				q_unlink(b, q, NULL, r);
				b->queued--;
			}
		}
	}
out:
	*npieces = n;
	return rows;
}

static int padded(const pf_batcher *b, int rows)
{
	for (int i = 0; i < b->o.n_allowed; i++)
		if (b->o.allowed_batch_sizes[i] >= rows)
			return b->o.allowed_batch_sizes[i];
	return rows;
}

/* Pop the finished requests that may be handed back now into a list
 * (linked through qnext).  Holds b->mu. */
static pf_batch_req *collect(pf_batcher *b)
{
	pf_batch_req *head = NULL, **tail = &head;
	pf_batch_req *r = b->ohead;
	while (r) {
		pf_batch_req *next = r->priv.onext;
		if (r->priv.finished && (!r->priv.pending)) {
			if (r->priv.oprev)
				r->priv.oprev->priv.onext = next;
			else
				b->ohead = next;
			if (next)
				next->priv.oprev = r->priv.oprev;
			else
				b->otail = r->priv.oprev;
			r->priv.qnext = NULL;
			b->to_deliver--;
			*tail = r;
			tail = &r->priv.qnext;
		} else if (b->o.preserve_ordering) {
			break;
		}
		r = next;
	}
	return head;
}

/* Whether collect would hand something back now.  Holds b->mu. */
static int deliverable(const pf_batcher *b)
{
	if (b->o.preserve_ordering)
		return b->ohead && b->ohead->priv.finished && !b->ohead->priv.pending;
	return b->to_deliver > 0;
}

static void hand_back(pf_batch_req *list)
{
	while (list) {
		pf_batch_req *next = list->priv.qnext;
		list->done(list);   /* may free list */
		list = next;
	}
}

/* Collect and run the done callbacks; called without b->mu. */
static void deliver(pf_batcher *b)
{
	if (b->o.preserve_ordering)
		pthread_mutex_lock(&b->deliver_mu);
	pthread_mutex_lock(&b->mu);
	pf_batch_req *list = collect(b);
	pthread_mutex_unlock(&b->mu);
	hand_back(list);
	if (b->o.preserve_ordering)
		pthread_mutex_unlock(&b->deliver_mu);
}

/* ---- batch threads -------------------------------------------------------- */

/* Gather slot sl's pieces into its input buffer (padded) and launch it:
 * opts.compute runs it (synchronous) or enqueues it (with opts.complete). */
static void start_batch(pf_batcher *b, bthread *t, bslot *sl)
{
	size_t ib = b->o.in_bytes;
	int rows = sl->rows, pr = padded(b, rows), off = 0;
	char *in = sl->in;
	for (int i = 0; i < sl->n; i++) {
		piece *p = &sl->pieces[i];
		memcpy(in + (size_t)off * ib,
		       (const char *)p->r->in + (size_t)p->off * ib,
		       (size_t)p->rows * ib);
		off += p->rows;
	}
	if (pr > rows)
		memset(in + (size_t)rows * ib, 0, (size_t)(pr - rows) * ib);
	sl->first_enq = UINT64_MAX;
	for (int i = 0; i < sl->n; i++)
		if (sl->pieces[i].r->priv.enq_ns < sl->first_enq)
			sl->first_enq = sl->pieces[i].r->priv.enq_ns;
	memset(&sl->e, 0, sizeof(sl->e));
	sl->t0 = now_ns();
	sl->bt = (pf_batch){ .in = sl->in, .out = sl->out, .rows = rows,
			     .padded_rows = pr, .thread = t->idx, .nreq = sl->n,
			     .wait_ns = sl->first_enq < sl->t0 ? sl->t0 - sl->first_enq : 0,
			     .slot = (int)(sl - t->sl) };
	sl->rc = b->o.compute(b->o.ctx, &sl->bt, &sl->e);
}

/* Wait for slot sl's batch (opts.complete), copy each request's answers
 * back, account and finish its requests. */
static void end_batch(pf_batcher *b, bslot *sl)
{
	size_t ob = b->o.out_bytes;
	int rows = sl->rows, pr = sl->bt.padded_rows, n = sl->n, rc = sl->rc;
	if (rc == 0 && b->o.complete)
		rc = b->o.complete(b->o.ctx, &sl->bt, &sl->e);
	uint64_t end = now_ns(), dt = end - sl->t0, first_enq = sl->first_enq;
	if (rc == 0) {
		int off = 0;
		for (int i = 0; i < n; i++) {
			piece *p = &sl->pieces[i];
			memcpy((char *)p->r->out + (size_t)p->off * ob,
			       (const char *)sl->out + (size_t)off * ob,
			       (size_t)p->rows * ob);
			off += p->rows;
		}
	}
	first_enq = first_enq > end ? end : first_enq;
	char line[256] = "";
	pthread_mutex_lock(&b->mu);
	b->est_ns = b->est_ns ? (b->est_ns * 7 + dt) / 8 : dt;
	b->row_ns = b->row_ns > 0 ? (b->row_ns * 7 + (double)dt / pr) / 8 : (double)dt / pr;
	if (b->slo_ns)
		adapt(b, rows, sl->backlog, first_enq, end, line, sizeof(line));
	b->st.batches++;
	b->st.rows += rows;
	b->st.padded_rows += pr;
	b->st.compute_ns += dt;
	int h = 0;
	while (h < PF_BATCH_HIST - 1 && (1 << h) < pr)
		h++;
	b->st.batch_hist[h]++;
	for (int i = 0; i < n; i++) {
		pf_batch_req *r = sl->pieces[i].r;
		r->compute_ns = dt;
		r->batch_rows = pr;
		r->batches++;
		if (rc < 0 && r->status == 0) {
			r->status = rc;
			r->err = sl->e;
		}
		r->priv.pending--;
		if (!r->priv.pending && r->priv.taken == r->rows) {
			b->st.queue_ns += r->queue_ns;
			finish(b, r, r->status, NULL);
		}
	}
	pthread_mutex_unlock(&b->mu);
	if (line[0])
		b->o.log(b->o.ctx, line);
}

/* Complete thread t's oldest batch in flight and hand back what is done.
 * Called without b->mu. */
static void end_oldest(pf_batcher *b, bthread *t)
{
	end_batch(b, &t->sl[t->head]);
	t->head = (t->head + 1) % b->o.depth;
	t->inflight--;
	deliver(b);
}

static void *batch_thread(void *arg)
{
	bthread *t = arg;
	pf_batcher *b = t->b;
	/* a batch's timeout is a deadline: Linux's default 50 us timer slack
	 * would come on top of batch_timeout_us at low load */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
	pthread_mutex_lock(&b->mu);
	for (;;) {
		uint64_t now = now_ns(), wake;
		expire(b, now);
		int target = batch_target(b, now, &wake);
		if (target && t->inflight < b->o.depth) {
			/* form and launch the next batch; with depth > 1 its
			 * copy overlaps the compute of the one before */
			bslot *sl = &t->sl[(t->head + t->inflight) % b->o.depth];
			sl->backlog = b->queued_rows;
			sl->rows = take(b, sl, target, now, &sl->n);
			if (b->queued_rows)   /* more for another thread */
				pthread_cond_signal(&b->cv);
			pthread_mutex_unlock(&b->mu);
			if (sl->rows) {
				start_batch(b, t, sl);
				t->inflight++;
			}
			if (t->inflight && !b->o.complete)
				end_oldest(b, t);
			pthread_mutex_lock(&b->mu);
			continue;
		}
		if (t->inflight) {    /* nothing to launch now: finish one */
			pthread_mutex_unlock(&b->mu);
			end_oldest(b, t);
			pthread_mutex_lock(&b->mu);
			continue;
		}
		/* here target is 0 and nothing is in flight: wait */
		if (b->stopping && !b->queued)
			break;
		if (deliverable(b)) {   /* rejections to hand back */
			pthread_mutex_unlock(&b->mu);
			deliver(b);
			pthread_mutex_lock(&b->mu);
			continue;
		}
		uint64_t dl = next_deadline(b);
		if (dl && (!wake || dl < wake))
			wake = dl;
		if (wake) {
			struct timespec ts = { (time_t)(wake / 1000000000u),
					       (long)(wake % 1000000000u) };
			pthread_cond_timedwait(&b->cv, &b->mu, &ts);
		} else {
			pthread_cond_wait(&b->cv, &b->mu);
		}
	}
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	deliver(b);
	return NULL;
}

/* ---- public --------------------------------------------------------------- */

static void *buf_alloc(pf_batcher *b, int thread, size_t n)
{
	return b->o.alloc ? b->o.alloc(b->o.ctx, thread, n) : malloc(n);
}

static void buf_free(pf_batcher *b, int thread, void *p)
{
	if (p && b->o.free)
		b->o.free(b->o.ctx, thread, p);
	else
		free(p);
}

int pf_batcher_new(pf_batcher **bp, const pf_batcher_opts *opts, pf_error *err)
{
	*bp = NULL;
	pf_batcher *b = calloc(1, sizeof(*b));
	if (!b)
		return pf_error_set(err, PF_ENOMEM, "batcher: out of memory");
	b->o = *opts;
	int rc = check_opts(&b->o, &b->cap, err);
	if (rc < 0) {
		free(b);
		return rc;
	}
	b->nlevels = b->o.npriorities;
	if (b->o.slo_p99_ms > 0) {
		b->slo_ns = (uint64_t)(b->o.slo_p99_ms * 1e6);
		b->eff_cap = 1;   /* Clipper's start: grow while a backlog builds */
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_mutex_init(&b->deliver_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);
	b->th = calloc((size_t)b->o.num_batch_threads, sizeof(*b->th));
	if (!b->th) {
		pf_batcher_free(b);
		return pf_error_set(err, PF_ENOMEM, "batcher: out of memory");
	}
	for (int i = 0; i < b->o.num_batch_threads; i++) {
		bthread *t = &b->th[i];
		t->b = b;
		t->idx = i;
		int ok = (t->sl = calloc((size_t)b->o.depth, sizeof(bslot))) != NULL;
		for (int k = 0; ok && k < b->o.depth; k++) {
			bslot *sl = &t->sl[k];
			sl->in = buf_alloc(b, i, (size_t)b->cap * b->o.in_bytes);
			sl->out = buf_alloc(b, i, (size_t)b->cap * b->o.out_bytes);
			sl->pieces = calloc((size_t)b->cap, sizeof(piece));
			ok = sl->in && sl->out && sl->pieces;
		}
		if (!ok) {
			pf_batcher_free(b);
			return pf_error_set(err, PF_ENOMEM,
					    "batcher: out of memory for the batch buffers (%d rows)",
					    b->cap);
		}
	}
	for (int i = 0; i < b->o.num_batch_threads; i++) {
		if (pthread_create(&b->th[i].tid, NULL, batch_thread, &b->th[i]) != 0) {
			pf_batcher_free(b);
			return pf_error_set(err, PF_ENOMEM, "batcher: cannot start thread %d", i);
		}
		b->nthreads = i + 1;
	}
	*bp = b;
	return 0;
}

int pf_batcher_submit(pf_batcher *b, pf_batch_req *r, pf_error *err)
{
	int split = b->o.max_execution_batch_size > 0;
	if (!r->in || !r->out || !r->done || r->rows < 1 ||
	    r->rows > b->o.max_batch_size)
		return pf_error_set(err, r->rows > b->o.max_batch_size ? PF_ELIMIT : PF_EINVAL,
				    "request: rows %d: must be 1..%d (max_batch_size%s), with in, out and done",
				    r->rows, b->o.max_batch_size,
				    split ? "" : ", no splitting");
	if (r->priority < 0 || r->priority >= b->nlevels)
		return pf_error_set(err, PF_EINVAL, "request: priority %d: must be 0..%d",
				    r->priority, b->nlevels - 1);
	uint64_t now = now_ns();
	const pf_batch_queue_policy *pol = &b->o.prio[r->priority];
	r->status = 0;
	r->err.code = 0;
	r->err.msg[0] = 0;
	r->queue_ns = r->compute_ns = 0;
	r->batch_rows = r->batches = 0;
	memset(&r->priv, 0, sizeof(r->priv));
	r->priv.enq_ns = now;
	r->priv.level = r->priority;
	if (r->timeout_us) {
		r->priv.deadline_ns = now + r->timeout_us * 1000;
		r->priv.hard_deadline = 1;
	} else if (pol->default_timeout_us) {
		r->priv.deadline_ns = now + pol->default_timeout_us * 1000;
	}
	pthread_mutex_lock(&b->mu);
	int rc = 0;
	if (b->stopping)
		rc = pf_error_set(err, PF_ESTATE, "request: the batcher is shutting down");
	else if (b->queued >= b->o.max_enqueued)
		rc = pf_error_set(err, PF_ELIMIT, "request: queue full (max_enqueued %d)",
				  b->o.max_enqueued);
	else if (pol->max_queue_size && b->qcount[r->priority] >= pol->max_queue_size)
		rc = pf_error_set(err, PF_ELIMIT,
				  "request: priority %d queue full (max_queue_size %d)",
				  r->priority, pol->max_queue_size);
	if (rc < 0) {
		if (rc == PF_ELIMIT)
			b->st.rejected_full++;
		pthread_mutex_unlock(&b->mu);
		return rc;
	}
	q_push(b, r->priority, r);
	b->queued++;
	b->queued_rows += r->rows;
	r->priv.oprev = b->otail;
	if (b->otail)
		b->otail->priv.onext = r;
	else
		b->ohead = r;
	b->otail = r;
	b->st.submitted++;
	uint64_t gap = now - (b->last_arrival ? b->last_arrival : now);
	b->gap_ns = (b->gap_ns * 7 + (gap < b->slo_ns ? gap : b->slo_ns)) / 8;
	b->last_arrival = now;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	return 0;
}

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
} waiter;

static void wake_waiter(pf_batch_req *r)
{
	waiter *w = r->arg;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int pf_batcher_run(pf_batcher *b, pf_batch_req *r, pf_error *err)
{
	waiter w = { .done = 0 };
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	r->done = wake_waiter;
	r->arg = &w;
	int rc = pf_batcher_submit(b, r, err);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = r->status;
		if (rc < 0 && err)
			*err = r->err;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

void pf_batcher_free(pf_batcher *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->stopping = 1;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < b->nthreads; i++)
		pthread_join(b->th[i].tid, NULL);
	deliver(b);
	for (int i = 0; b->th && i < b->o.num_batch_threads; i++)
		for (int k = 0; b->th[i].sl && k < b->o.depth; k++) {
			buf_free(b, i, b->th[i].sl[k].in);
			buf_free(b, i, b->th[i].sl[k].out);
			free(b->th[i].sl[k].pieces);
		}
	for (int i = 0; b->th && i < b->o.num_batch_threads; i++)
		free(b->th[i].sl);
	free(b->th);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->deliver_mu);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

void pf_batcher_get_stats(pf_batcher *b, pf_batcher_stats *s)
{
	pthread_mutex_lock(&b->mu);
	*s = b->st;
	s->queued = b->queued;
	s->adaptive_batch = b->eff_cap;
	pthread_mutex_unlock(&b->mu);
}

const pf_batcher_opts *pf_batcher_options(const pf_batcher *b) { return &b->o; }
