/* iter.c - the iterator: start (plan.c, budget.c, then the stages'
 * threads), pull, epochs, stats.  Positions: position.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_pipeline_int.h"

static void stop_stages(pf_iter *it, int n)
{
	/* consumer end first: a thread must stop before the input it pulls from */
	for (int i = n - 1; i >= 0; i--)
		if (it->stages[i]->vt->stop)
			it->stages[i]->vt->stop(it->stages[i]);
}

/* Free an iterator that never started (or whose stages are stopped). */
static void iter_dealloc(pf_iter *it)
{
	pthread_mutex_destroy(&it->pos_lock);
	free(it);
}

int pf_iter_new(pf_iter **itp, pf_pipeline *p, pf_error *err)
{
	return pf_iter_start(itp, p, NULL, err);
}

/* The stages' threads, then the autotuner: 0, or a code with everything
 * stopped again. */
static int start_stages(pf_iter *it, pf_error *err)
{
	int rc;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->vt->start && (rc = op->vt->start(op, err))) {
			stop_stages(it, i + 1); /* stops clean up a partial start too */
			return rc;
		}
	}
	it->t_start = pf_now_ns();
	if ((rc = pf_autotune_start(it, err)))
		stop_stages(it, it->nstages);
	return rc;
}

int pf_iter_start(pf_iter **itp, pf_pipeline *p, const pf_iter_pos *pos,
		  pf_error *err)
{
	*itp = NULL;
	if (!p || !p->nops)
		return pf_error_set(err, PF_EINVAL, "pipeline: no ops (add a source first)");
	if (p->iter)
		return pf_error_set(err, PF_ESTATE, "pipeline: an iterator is already live");
	if (pos && ((int64_t)pos->nops != p->nops || pos->nops > PF_POS_MAX_OPS))
		return pf_error_set(err, PF_EINVAL,
				    "position: recorded for a pipeline of %u ops, this one has %d",
				    pos->nops, p->nops);
	pf_iter *it = calloc(1, sizeof(*it));
	if (!it)
		return pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
	it->p = p;
	it->pos_ok = p->nops <= PF_POS_MAX_OPS;
	pthread_mutex_init(&it->pos_lock, NULL);
	int rc = pf_plan(it, err);
	if (!rc)
		rc = pf_budget_check(it, err);
	if (rc) {
		iter_dealloc(it);
		return rc;
	}
	/* resume: the ops begin at their recorded epochs (seeds, file order) */
	if (pos) {
		for (int i = 0; i < p->nops; i++)
			p->ops[i]->epoch = p->ops[i]->epoch_mark = pos->op_epoch[i];
		it->epoch = pos->epoch;
	}
	pf_iter_snap_epoch(it);
	if ((rc = start_stages(it, err))) {
		iter_dealloc(it);
		return rc;
	}
	p->iter = it;
	*itp = it;
	return 0;
}

int pf_iter_next(pf_iter *it, pf_elem *out, pf_error *err)
{
	memset(out, 0, sizeof(*out));
	if (it->failed) {
		pf_error_set(err, it->error.code, "%s", it->error.msg);
		return it->error.code;
	}
	pf_op *top = it->stages[it->nstages - 1];
	if (it->ended) {
		pf_op_reset(top);
		it->ended = 0;
		it->epoch++;
		it->delivered = 0;
		pf_iter_snap_epoch(it);
	}
	pf_error e = { 0 };
	uint64_t t0 = pf_now_ns();
	int rc = pf_op_next(top, out, &e);
	pf_stat_add(&it->wait_ns, pf_now_ns() - t0);
	if (rc == 0) {
		it->delivered++;
	} else if (rc == PF_END) {
		it->ended = 1;
		memset(out, 0, sizeof(*out));
	} else if (rc < 0) {
		it->failed = 1;
		if (!e.code)
			pf_error_set(&e, rc, "%s: %s", top->label, pf_strerror(rc));
		it->error = e;
		pf_error_set(err, rc, "%s", e.msg);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

uint64_t pf_iter_epoch(const pf_iter *it)
{
	return it ? it->epoch : 0;
}

void pf_iter_free(pf_iter *it)
{
	if (!it)
		return;
	pf_autotune_stop(it->tune);
	stop_stages(it, it->nstages);
	it->p->iter = NULL;
	iter_dealloc(it);
}

size_t pf_iter_describe(const pf_iter *it, char *buf, size_t cap)
{
	size_t n = 0;
	char tmp[160];
	if (cap)
		buf[0] = 0;
	for (int i = 0; it && i < it->nstages; i++) {
		const pf_op *op = it->stages[i];
		int k;
		if (op->fused_batch)
			k = snprintf(tmp, sizeof(tmp), "%s%s(%d)", i ? " -> " : "",
				     op->stage, op->fused_batch);
		else
			k = snprintf(tmp, sizeof(tmp), "%s%s", i ? " -> " : "", op->stage);
		if (n + (size_t)k < cap)
			memcpy(buf + n, tmp, (size_t)k + 1);
		else if (n < cap)
			buf[n] = 0;
		n += (size_t)k;
	}
	return n;
}

int pf_iter_nstages(const pf_iter *it)
{
	return it ? it->nstages : 0;
}

int pf_iter_stats(const pf_iter *it, int i, pf_op_stats *o)
{
	if (!it || i < 0 || i >= it->nstages)
		return PF_EINVAL;
	const pf_op *op = it->stages[i];
	const pf_stage_stats *s = &op->st;
	memset(o, 0, sizeof(*o));
	o->name = op->stage;
	o->elements = atomic_load(&s->elements);
	o->bytes = atomic_load(&s->bytes);
	o->buffer_bytes = op->buffer_bytes;
	o->parallelism = s->parallelism;
	o->depth = s->depth;
	o->autotuned = s->autotuned;
	o->corrupt_blocks = atomic_load(&s->corrupt_blocks);
	o->skipped_records = atomic_load(&s->skipped_records);
	o->dropped_samples = atomic_load(&s->dropped_samples);
	o->decoded_records = atomic_load(&s->decoded_records);
	o->occupancy = atomic_load(&s->occupancy);
	o->cpu_ns = atomic_load(&s->cpu_ns);
	o->serial_cpu_ns = atomic_load(&s->serial_cpu_ns);
	if (s->self_timed) {
		o->busy_ns = atomic_load(&s->busy_ns);
		o->wait_input_ns = atomic_load(&s->wait_ns);
		o->blocked_output_ns = atomic_load(&s->blocked_ns);
	} else {
		/* an inline stage: its calls' time (sampled) less its input's */
		uint64_t total = atomic_load(&s->total_ns);
		uint64_t in = i > 0 ? atomic_load(&it->stages[i - 1]->st.total_ns) : 0;
		o->wait_input_ns = in;
		o->busy_ns = total > in ? total - in : 0;
	}
	return 0;
}

void pf_iter_stall(const pf_iter *it, uint64_t *wait_ns, uint64_t *total_ns)
{
	uint64_t w = it ? atomic_load(&((pf_iter *)it)->wait_ns) : 0;
	uint64_t t = it ? pf_now_ns() - it->t_start : 0;
	if (wait_ns)
		*wait_ns = w;
	if (total_ns)
		*total_ns = t;
}
