/*
 * batch_par.c - parallel batch assembly.  The consumer's thread (the
 * serial path) only borrows: it lists where each of a batch's B inputs
 * lies (the input's lent bytes: a shuffle's slots, the cache's chunks)
 * and hands the list to a worker, which copies the rows into the batch
 * buffer; batches go out in the order they were listed, so the elements
 * and their order are those of the one-thread gather whatever the worker
 * count.  At most njobs batches are listed ahead; their inputs were lent
 * within the last njobs * B borrow calls, which the input keeps valid
 * (its lend window, op->lend_want).  While the oldest batch is not done
 * and a listed one is waiting, the consumer copies it itself.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pf_batch_int.h"

typedef struct batch_job {
	pf_buf *b;
	const unsigned char **src; /* its B inputs, lent */
	int n;
	int done;
	uint64_t first;
} batch_job;

typedef struct batch_run {
	pthread_mutex_t lock;
	pthread_cond_t cv_work, cv_done;
	pthread_t th[BATCH_PAR_MAX];
	int nth, quit;
	batch_job *jobs;      /* njobs, a ring */
	/* jobs [head, ready) listed, [head, claim) taken by a copier; only the
	 * consumer lists (ready) and hands out (head) */
	uint64_t head, ready, claim;
	int busy;             /* jobs being copied now */
	int ended, in_rc;     /* the input returned in_rc after job `ready` */
	pf_error in_err;
} batch_run;

static void copy_job(const pf_op *op, const batch_cfg *c, batch_job *j)
{
	int nf = op->schema.nfields;
	for (int n = 0; n < j->n; n++)
		pf_batch_row(c, nf, j->b->data, n, j->src[n]);
}

/* Take the next listed job and copy it; r->lock held (and held again on
 * return).  0: none was waiting. */
static int run_one(pf_op *op, batch_run *r)
{
	if (r->claim >= r->ready)
		return 0;
	batch_cfg *c = op->cfg;
	batch_job *j = &r->jobs[r->claim++ % (uint64_t)c->njobs];
	r->busy++;
	pthread_mutex_unlock(&r->lock);
	copy_job(op, c, j);
	pthread_mutex_lock(&r->lock);
	j->done = 1;
	r->busy--;
	pthread_cond_broadcast(&r->cv_done);
	return 1;
}

static void *batch_worker(void *arg)
{
	pf_op *op = arg;
	batch_run *r = op->run;
	pthread_mutex_lock(&r->lock);
	while (!r->quit) {
		if (!run_one(op, r))
			pthread_cond_wait(&r->cv_work, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int pf_batch_par_start(pf_op *op, pf_error *err)
{
	batch_cfg *c = op->cfg;
	batch_run *r = calloc(1, sizeof(*r));
	if (!r)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cv_work, NULL);
	pthread_cond_init(&r->cv_done, NULL);
	op->run = r;
	if (!(r->jobs = calloc((size_t)c->njobs, sizeof(*r->jobs))))
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	for (int k = 0; k < c->njobs; k++)
		if (!(r->jobs[k].src = calloc((size_t)c->size, sizeof(*r->jobs[k].src))))
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	for (int i = 0; i < c->par; i++) {
		if (pthread_create(&r->th[i], NULL, batch_worker, op) != 0)
			return pf_op_error(op, err, PF_ENOMEM, "cannot start worker thread %d", i);
		r->nth++;
	}
	return 0;
}

/* List the next batch into job j: borrow up to B inputs.  Returns 1 when j
 * holds a batch to copy, 0 when the input ended or failed first (r->ended,
 * r->in_rc set). */
static int list_job(pf_op *op, batch_run *r, batch_job *j)
{
	batch_cfg *c = op->cfg;
	int rc = 0, n = 0;
	for (; n < c->size; n++) {
		size_t len;
		uint64_t id;
		rc = pf_op_borrow(op->in, &j->src[n], &len, &id, &r->in_err);
		if (rc)
			break;
		if (!n)
			j->first = id;
	}
	if (n && (rc == 0 || (rc == PF_END && !c->drop)) &&
	    !(j->b = pf_buf_get(op->rt->batch_pool, op->elem_bytes)))
		rc = pf_op_error(op, &r->in_err, PF_ENOMEM, "out of memory");
	if (rc) {
		r->ended = 1;
		r->in_rc = rc;
	}
	if (!j->b)
		return 0;
	j->n = n;
	j->done = 0;
	return 1;
}

int pf_batch_par_next(pf_op *op, pf_elem *out, pf_error *err)
{
	batch_cfg *c = op->cfg;
	batch_run *r = op->run;
	/* list batches up to njobs ahead (the jobs from ready on are the
	 * consumer's alone until it publishes them) */
	while (!r->ended && r->ready - r->head < (uint64_t)c->njobs) {
		batch_job *j = &r->jobs[r->ready % (uint64_t)c->njobs];
		if (!list_job(op, r, j))
			break;
		pthread_mutex_lock(&r->lock);
		r->ready++;
		pthread_cond_signal(&r->cv_work);
		pthread_mutex_unlock(&r->lock);
	}
	if (r->head == r->ready) {
		if (r->in_rc < 0)
			pf_error_set(err, r->in_rc, "%s", r->in_err.msg);
		return r->ended ? r->in_rc : PF_END;
	}
	batch_job *j = &r->jobs[r->head % (uint64_t)c->njobs];
	pthread_mutex_lock(&r->lock);
	while (!j->done) {
		if (!run_one(op, r))
			pthread_cond_wait(&r->cv_done, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	pf_batch_output(op, j->b, j->n, j->first, out);
	j->b = NULL;
	r->head++;
	return 0;
}

void pf_batch_par_drop(pf_op *op)
{
	batch_cfg *c = op->cfg;
	batch_run *r = op->run;
	if (!r || !r->jobs)
		return;
	pthread_mutex_lock(&r->lock);
	r->claim = r->ready; /* nothing more is taken */
	while (r->busy)
		pthread_cond_wait(&r->cv_done, &r->lock);
	for (uint64_t k = r->head; k < r->ready; k++) {
		batch_job *j = &r->jobs[k % (uint64_t)c->njobs];
		pf_buf_unref(j->b);
		j->b = NULL;
	}
	r->head = r->ready = r->claim = 0;
	r->ended = r->in_rc = 0;
	pthread_mutex_unlock(&r->lock);
}

void pf_batch_par_stop(pf_op *op)
{
	batch_cfg *c = op->cfg;
	batch_run *r = op->run;
	if (!r)
		return;
	pf_batch_par_drop(op);
	pthread_mutex_lock(&r->lock);
	r->quit = 1;
	pthread_cond_broadcast(&r->cv_work);
	pthread_mutex_unlock(&r->lock);
	for (int i = 0; i < r->nth; i++)
		pthread_join(r->th[i], NULL);
	for (int k = 0; r->jobs && k < c->njobs; k++)
		free(r->jobs[k].src);
	free(r->jobs);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cv_work);
	pthread_cond_destroy(&r->cv_done);
	free(r);
	op->run = NULL;
}
