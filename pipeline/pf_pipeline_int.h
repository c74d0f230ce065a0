/*
 * pf_pipeline_int.h - internal: the pipeline and iterator handles, shared by
 * pipeline.c (builder), iter.c (runtime) and registry.c.
 */
#ifndef PF_PIPELINE_INT_H
#define PF_PIPELINE_INT_H

#include <pthread.h>

#include "pipefeed.h"
#include "pf_op.h"

/* Epoch starts an iterator remembers for pf_iter_epoch_start. */
#define PF_POS_RING 16

struct pf_pipeline {
	pf_options opts;      /* resolved defaults */
	pf_op **ops;          /* in the order added; ops[0] is the source */
	int nops, cap;
	pf_pool *pool;        /* outlives every element handed out */
	pf_pool *batch_pool;  /* opts.batch_alloc's pool, or NULL */
	pf_rt rt;
	pf_iter *iter;        /* the live iterator, if any */
	pf_op *split_op;      /* opts.world > 1: the rank split the optimizer
			       * puts after the source (made by the first
			       * plan, owned here; not one of ops, so formats
			       * and positions are those of a single rank) */
};

struct pf_iter {
	pf_pipeline *p;
	pf_op *stages[64];    /* the optimized plan, source first */
	int nstages;
	int ended;            /* the current epoch returned PF_END */
	int failed;           /* sticky error */
	pf_error error;
	uint64_t epoch;
	/* consumer stall: time in pf_iter_next waiting on the top stage */
	_Atomic uint64_t wait_ns;
	uint64_t t_start;
	struct pf_autotune *tune;   /* the controller (autotune.c), or NULL */
	/* positions (checkpoint/resume): elements returned this epoch, and
	 * the ops' epoch counters at the start of the last PF_POS_RING
	 * epochs (slot epoch % PF_POS_RING), read by other threads under
	 * pos_lock.  pos_ok: the pipeline has at most PF_POS_MAX_OPS ops. */
	uint64_t delivered;
	int pos_ok;
	pthread_mutex_t pos_lock;
	uint64_t pos_epoch;         /* the epoch begun last (under pos_lock) */
	struct {
		int valid;
		uint64_t epoch;
		uint64_t op_epoch[PF_POS_MAX_OPS];
	} ring[PF_POS_RING];
};

/* Append op to p (op NULL: its constructor failed, err is set): checks
 * that a source comes first and only first, and that no iterator is live;
 * labels the op "kind#index".  On failure op is freed.  0 or a code. */
int pf_pipeline_add_op(pf_pipeline *p, pf_op *op, pf_error *err);

/* Plan, check and start an iterator of p (pf_iter_new); with pos, every
 * op begins at its recorded epoch counter (pf_iter_new_at then
 * fast-forwards).  0 or a code, *itp NULL then. */
int pf_iter_start(pf_iter **itp, pf_pipeline *p, const pf_iter_pos *pos,
		  pf_error *err);

/* The optimizer (plan.c): prepare p's ops in order into it->stages,
 * dropping no-op stages and fusing what the ops' traits allow.  0 or the
 * first op's error. */
int pf_plan(pf_iter *it, pf_error *err);

/* The memory budget (budget.c): shed optional buffers, fit autotuned ones,
 * then check every stage's worst case; PF_EBUDGET naming the stage, its
 * need and its cause. */
int pf_budget_check(pf_iter *it, pf_error *err);

/* Remember the ops' epoch counters as the start of it->epoch (position.c). */
void pf_iter_snap_epoch(pf_iter *it);

/* Autotune controller (autotune.c): start one for the iterator when a
 * stage has a tunable knob (0, or a code: thread start failed), stop it
 * (before the stages stop).  pf_autotune_stop(NULL) is a no-op. */
int pf_autotune_start(pf_iter *it, pf_error *err);
void pf_autotune_stop(struct pf_autotune *t);

#endif /* PF_PIPELINE_INT_H */
