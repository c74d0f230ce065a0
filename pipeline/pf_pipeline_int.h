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
};

#endif /* PF_PIPELINE_INT_H */
