/*
 * pf_pipeline_int.h - internal: the pipeline and iterator handles, shared by
 * pipeline.c (builder), iter.c (runtime) and registry.c.
 */
#ifndef PF_PIPELINE_INT_H
#define PF_PIPELINE_INT_H

#include "pf_op.h"

struct pf_pipeline {
	pf_options opts;      /* resolved defaults */
	pf_op **ops;          /* in the order added; ops[0] is the source */
	int nops, cap;
	pf_pool *pool;        /* outlives every element handed out */
	pf_pool *batch_pool;  /* opts.batch_alloc's pool, or NULL */
	pf_rt rt;
	pf_iter *iter;        /* the live iterator, if any */
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
};

/* Autotune controller (autotune.c): start one for the iterator when a
 * stage has a tunable knob (0, or a code: thread start failed), stop it
 * (before the stages stop).  pf_autotune_stop(NULL) is a no-op. */
int pf_autotune_start(pf_iter *it, pf_error *err);
void pf_autotune_stop(struct pf_autotune *t);

#endif /* PF_PIPELINE_INT_H */
