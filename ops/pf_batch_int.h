/*
 * pf_batch_int.h - the batch op's state, shared by batch.c (the op, the
 * one-thread gather) and batch_par.c (parallel assembly: workers fill
 * whole batches from the input's lent bytes).  Internal to ops/.
 */
#ifndef PF_BATCH_INT_H
#define PF_BATCH_INT_H

#include "pf_op.h"

/* auto: assemble in parallel only when a batch is at least this many bytes
 * (below it, handing a batch to a worker costs about what copying it does) */
#define BATCH_PAR_MIN_BYTES ((size_t)16 << 10)
/* the most workers one batch op starts */
#define BATCH_PAR_MAX 16

typedef struct batch_cfg {
	int size, drop;
	int par_req;          /* workers asked for: PF_AUTOTUNE (the default),
			       * 1 (the consumer's thread) or n */
	int64_t off[PF_MAX_FIELDS];
	int64_t eoff[PF_MAX_FIELDS]; /* field offsets in a borrowed element */
	size_t fbytes[PF_MAX_FIELDS];
	size_t bytes;
	/* resolved by prepare: parallel assembly (0: in the consumer's thread) */
	int par;              /* workers */
	int njobs;            /* batches in flight (their lent inputs fit the
			       * input's lend window) */
} batch_cfg;

/* Copy row n of a batch (buffer dst) from a borrowed element d. */
static inline void pf_batch_row(const batch_cfg *c, int nf, unsigned char *dst, int n,
				const unsigned char *d)
{
	for (int i = 0; i < nf; i++)
		__builtin_memcpy(dst + c->off[i] + (size_t)n * c->fbytes[i], d + c->eoff[i],
				 c->fbytes[i]);
}

/* Make *out the batch of n samples in b, the first one's id first. */
void pf_batch_output(pf_op *op, pf_buf *b, int n, uint64_t first, pf_elem *out);

/* ---- batch_par.c ---- */

/* Start the workers (c->par > 0): op->run.  0 or a code (err set); on
 * failure pf_batch_par_stop cleans up whatever exists. */
int pf_batch_par_start(pf_op *op, pf_error *err);

/* The next batch, assembled by the workers, in input order.  0, PF_END or
 * a code. */
int pf_batch_par_next(pf_op *op, pf_elem *out, pf_error *err);

/* Wait for the workers' batches in hand and drop those not handed out (the
 * input's lent bytes are then no longer read; the caller resets it). */
void pf_batch_par_drop(pf_op *op);

/* Stop and join the workers, free op->run (may be NULL). */
void pf_batch_par_stop(pf_op *op);

#endif /* PF_BATCH_INT_H */
