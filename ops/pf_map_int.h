/*
 * pf_map_int.h - the map op's state, shared by map.c (the op: prepare,
 * mapping one sample, the one-thread path) and map_pool.c (the parallel
 * engine: feeder, workers, the ordered hand-off).  Internal to ops/.
 */
#ifndef PF_MAP_INT_H
#define PF_MAP_INT_H

#include <pthread.h>

#include "pf_op.h"

#define MAP_RUN 16 /* elements a worker maps per turn when not fused */
#define MAP_INLINE 2 /* map_next_par: nothing out, none coming: map inline */
/* autotuned: the most workers a map that waits (little CPU per worker)
 * may get, whatever the CPU budget; the memory budget may allow fewer */
#define MAP_PAR_MAX 64

typedef struct map_cfg {
	pf_map_prepare_fn prepare;
	pf_map_fn fn;
	void *user;
	char *args;
	char *name;                  /* the function's name as given (NULL: none) */
	int par_req, unordered, isolate;
	/* resolved by prepare */
	int prepared;
	pf_map_ctx ctx;
	int par, cap, B, R, has_var; /* R: inputs per unit; par: workers
				      * started, cap: units in the ring */
	int par_max;                 /* autotuned: workers it may grow to
				      * (threads beyond par start on demand;
				      * cap is 2 * par_max + 1) */
	uint64_t worker_bytes;       /* buffers of one more worker's 2 units */
	size_t unit_bytes;
	size_t in_stride;            /* input lends its elements: bytes per copy */
	int in_lend;                 /* ... and they stay valid while a unit is
				      * mapped (its lend window): no copy */
	uint32_t tick;               /* inline path: sampled timing */
	uint32_t cpu_n;              /* ... elements since its last CPU sample */
	uint64_t cpu_t;              /* ... and that sample's wall time */
	int64_t off[PF_MAX_FIELDS];  /* field offsets in a unit's buffer */
	size_t fbytes[PF_MAX_FIELDS];
	int64_t fcount[PF_MAX_FIELDS]; /* items of each fixed field (-1: variable) */
} map_cfg;

typedef struct map_unit {
	pf_buf *buf;          /* fused: the batch buffer */
	pf_elem *ins;         /* R inputs pulled for this unit */
	unsigned char *stage; /* borrowing input: R copies, in_stride apart */
	const unsigned char **src; /* in_lend: the R lent inputs, in place */
	size_t *blen;         /* ... their bytes */
	uint64_t *bid;        /* ... their ids */
	pf_elem *outs;        /* element mode: R outputs (each owns its buffer) */
	pf_elem out;          /* inline path: the one output */
	int n, pos;           /* inputs reserved; next output to hand out */
	int done, drained;
	uint64_t first_id;
	uint64_t *oid;        /* fused with isolate: each slot's sample id */
	int err;
	pf_error e;
} map_unit;

typedef struct map_run {
	pthread_mutex_t lock;
	pthread_cond_t cv_work, cv_done, cv_space, cv_fill;
	pthread_t *th;        /* the workers, then the feeder */
	int nth, idle, quit, pause, waiting;
	int nw;               /* worker threads (nth - the feeder); th has
			       * room for par_max + 1 */
	int active, ids;      /* autotune: workers with id < active take work */
	int inline_busy;      /* the consumer maps in its thread: no reserving */
	int fill_wait;        /* workers waiting on cv_fill */
	/* units: [head, next_unit) reserved by the feeder, [.., filled) filled
	 * with inputs, [.., next_claim) claimed by a worker */
	uint64_t next_unit, head, cur, filled, next_claim;
	int ended, in_err, have_cur;
	pf_error in_e;
	map_unit *units;
	/* fused with isolate: the batch being refilled from the units */
	pf_buf *carry;
	int cn;               /* samples in it */
	uint64_t carry_id;    /* its first sample's id */
} map_run;

/* ---- map.c ---- */

/* Map input element ie into slot j of unit u (buffer b).  Releases ie.
 * 0, PF_MAP_DROPPED (isolate: fn failed, nothing written to u) or a code. */
int pf_map_fill_one(pf_op *op, map_cfg *c, pf_buf *b, map_unit *u, int j,
		    pf_elem *ie, pf_error *e);

/* Turn a finished unit of n samples into the output element (the element
 * takes the unit's buffer). */
void pf_map_unit_output(pf_op *op, map_cfg *c, map_unit *u, int n, pf_elem *out);

/* ---- map_pool.c ---- */

/* Start the parallel engine (c->par > 1): op->run, the units, c->par
 * workers and the feeder.  0, or a code with err filled; on failure op->run
 * may be set and pf_map_pool_free cleans up whatever exists. */
int pf_map_pool_start(pf_op *op, pf_error *err);

/* Start workers until n exist (at most c->par_max), r->lock held; the
 * workers now started. */
int pf_map_pool_grow(pf_op *op, int n);

/* The next output of the parallel engine: 0, PF_END, a code, or
 * MAP_INLINE when the consumer should map in its own thread. */
int pf_map_pool_next(pf_op *op, pf_elem *out, pf_error *err);

/* Pause the workers and wait until none holds an element or the input
 * (quit: also make them exit, without waiting). */
void pf_map_pool_quiesce(map_run *r, int quit);

/* Drop the units filled, mapped or being handed out, and the carry (the
 * threads quiesced or gone). */
void pf_map_pool_drop_units(pf_op *op);

/* Stop and join the threads, free the units and op->run (may be NULL). */
void pf_map_pool_free(pf_op *op);

#endif /* PF_MAP_INT_H */
