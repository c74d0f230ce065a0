/*
 * pf_batcher.h - a dynamic batcher: requests of one or more rows come in
 * one at a time from any number of threads; batch threads gather them into
 * batches and run a compute callback once per batch; each request gets its
 * own rows of the answer back.  The knobs are TF Serving's and Triton's,
 * with their meaning:
 *
 *   max_batch_size        rows a request may have at most; without
 *                         splitting also the rows of one batch
 *   batch_timeout_us      how long the oldest queued request may wait for
 *                         company before a partial batch runs (Triton's
 *                         max_queue_delay); 0 = run what is there at once
 *   preferred_batch_sizes a batch runs as soon as a preferred size can be
 *                         filled (the largest one the queue can fill)
 *   allowed_batch_sizes   a batch is padded up to the next allowed size
 *                         (zero rows); the last must equal the batch cap
 *   max_execution_batch_size  > 0: large requests are split across
 *                         batches of at most this many rows (TF's
 *                         enable_large_batch_splitting); the batch cap
 *   num_batch_threads     batches run concurrently on this many threads
 *   max_enqueued          requests queued at most: a submit beyond it fails
 *                         at once with PF_ELIMIT (fail fast, never an
 *                         unbounded queue)
 *   preserve_ordering     done callbacks run in submit order
 *   slo_p99_ms            adaptive mode (> 0): the batch size limit and
 *                         the wait are chosen online instead of
 *                         batch_timeout_us (below)
 *   priorities            levels 0 (highest) .. npriorities-1, each with
 *                         its own queue policy: max queue size, default
 *                         timeout, and on that timeout REJECT or DELAY
 *                         (served after every request not timed out)
 *
 * A request's own timeout_us (a deadline from its submit) rejects it with
 * PF_ETIMEDOUT when it has not started computing by then, or when the
 * batch it would join cannot finish by then (from the measured batch
 * time); a rejected request is never computed.
 *
 * Adaptive mode (slo_p99_ms > 0), deadline-driven as in Clipper: a batch
 * runs when the batch size limit is queued, or at the latest when half
 * the oldest request's SLO is left but what a batch of the rows queued
 * takes to compute (the measured compute time per row; the other half is
 * kept for the tail), or earlier once arrivals pause (no submit for twice
 * the mean gap between submits: waiting on for a closed loop's
 * stragglers only idles the device).  The limit starts at 1 and grows by
 * one row (additive increase) when more than the limit was queued; it
 * shrinks to 3/4 (multiplicative decrease) when a batch's oldest request
 * finished past the SLO with no more than the limit queued (with a
 * backlog the queue caused the miss: shrinking would deepen it, and a
 * closed loop then collapsed to batches of 1), and by one row when a
 * batch ran well short of the limit.  Each change of the limit is
 * reported through opts.log (at most 20 lines a second), like AUTOTUNE's.
 *
 * Flow: pf_batcher_submit queues r and returns; later, on a batch thread,
 * r->done(r) runs exactly once with r->status (0 or a negative PF_E*) and
 * r->out filled when 0.  If submit returns an error, done is never called.
 * The caller owns r and its buffers until done runs (r may be freed in
 * done).  pf_batcher_run is the blocking form.
 *
 * Compute: opts.compute(ctx, batch, err) gets the batch's inputs
 * contiguous in batch->in (rows copied straight from the requests, then
 * padding rows of zeros up to batch->padded_rows) and writes
 * batch->padded_rows answers into batch->out; the batcher copies each
 * request's rows back.  It runs on batch thread batch->thread, one batch
 * at a time per thread, so per-thread state (a model instance, a stream)
 * needs no lock.  A compute error fails every request of that batch.
 *
 * Pipelined compute (opts.complete, opts.depth > 1): a batch thread
 * launches a batch, then forms and launches the next while it may (a
 * batch is due and fewer than depth are in flight), and completes the
 * oldest when it may not: under load the copy of batch n+1 overlaps the
 * compute of batch n; at low load each batch is completed at once, as
 * without.  Answers, errors and order are those of the synchronous path.
 *
 * Ownership: pf_batcher_new / pf_batcher_free (free(NULL) is a no-op);
 * free stops taking requests, runs every queued one (no request is
 * dropped), joins the threads.
 */
#ifndef PF_BATCHER_H
#define PF_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_BATCH_MAX_SIZES 16
#define PF_BATCH_MAX_PRIORITIES 8

enum pf_batch_timeout_action { PF_BATCH_REJECT = 0, PF_BATCH_DELAY = 1 };

typedef struct pf_batch_queue_policy {
	int max_queue_size;          /* requests queued at this level; 0 = no
				      * bound of its own */
	uint64_t default_timeout_us; /* for requests without their own; 0 = none */
	int timeout_action;          /* PF_BATCH_REJECT or PF_BATCH_DELAY */
} pf_batch_queue_policy;

/* One batch as compute sees it. */
typedef struct pf_batch {
	void *in;          /* padded_rows * in_bytes */
	void *out;         /* padded_rows * out_bytes */
	int rows;          /* rows from requests */
	int padded_rows;   /* rows to compute (allowed_batch_sizes) */
	int thread;        /* 0 .. num_batch_threads - 1 */
	int nreq;          /* request pieces in it */
	uint64_t wait_ns;  /* its oldest request's wait: from its submit to
			    * this batch's compute (for a stats file) */
	int slot;          /* 0 .. depth - 1: which of the thread's buffers */
	/* what complete may report for a stats file: the host clock
	 * (CLOCK_MONOTONIC, ns) when the batch's copy to the device began and
	 * ended, and when its compute began and ended; 0 = not known */
	uint64_t copy_start_ns, copy_end_ns, compute_start_ns, compute_end_ns;
} pf_batch;

typedef struct pf_batcher_opts {
	size_t in_bytes, out_bytes;  /* one row of input / of answer; required */
	int (*compute)(void *ctx, pf_batch *b, pf_error *err);  /* required */
	/* Asynchronous compute: when set, compute only launches the batch
	 * (enqueues its copy and compute on a device) and complete(ctx, b,
	 * err) waits for its answers in b->out.  Up to depth batches are
	 * in flight per batch thread, completed in
	 * launch order, each in its own in/out buffers (b->slot), so the
	 * next batch is formed and its copy runs while one computes. */
	int (*complete)(void *ctx, pf_batch *b, pf_error *err);
	int depth;                   /* with complete: 0 = 1; without: 1 */
	void *ctx;
	/* Batch buffers (e.g. pinned memory); NULL = malloc / free. */
	void *(*alloc)(void *ctx, int thread, size_t n);
	void (*free)(void *ctx, int thread, void *p);
	int max_batch_size;          /* 0 = 32 */
	uint64_t batch_timeout_us;
	int allowed_batch_sizes[PF_BATCH_MAX_SIZES];   /* ascending */
	int n_allowed;
	int preferred_batch_sizes[PF_BATCH_MAX_SIZES];
	int n_preferred;
	int num_batch_threads;       /* 0 = 1 */
	int max_enqueued;            /* 0 = 1024 */
	int max_execution_batch_size;/* 0 = no splitting */
	int preserve_ordering;
	double slo_p99_ms;           /* > 0: adaptive mode */
	void (*log)(void *ctx, const char *line);  /* adaptive decisions (ctx is
						    * opts.ctx); NULL = none */
	int npriorities;             /* 0 = 1 level */
	pf_batch_queue_policy prio[PF_BATCH_MAX_PRIORITIES];
} pf_batcher_opts;

typedef struct pf_batch_req pf_batch_req;
struct pf_batch_req {
	/* the caller's */
	const void *in;          /* rows * in_bytes */
	void *out;               /* rows * out_bytes */
	int rows;                /* 1 .. max_batch_size */
	int priority;            /* 0 (highest) .. npriorities - 1 */
	uint64_t timeout_us;     /* 0 = the level's default */
	void (*done)(pf_batch_req *r);
	void *arg;
	/* set before done runs */
	int status;              /* 0, PF_ETIMEDOUT, or the compute's error */
	pf_error err;
	uint64_t queue_ns;       /* submit to the start of its (first) batch */
	uint64_t compute_ns;     /* its (last) batch's compute */
	int batch_rows;          /* rows of its (last) batch, padding included */
	int batches;             /* batches it was computed in (splitting) */
	/* the batcher's: do not touch */
	struct {
		pf_batch_req *qnext, *onext, *oprev;
		uint64_t enq_ns, deadline_ns;
		int hard_deadline, taken, pending, finished, level, delayed;
	} priv;
};

typedef struct pf_batcher pf_batcher;

/* Check opts (PF_EINVAL naming the knob), allocate the batch buffers and
 * start the batch threads.  *b is NULL on failure. */
int pf_batcher_new(pf_batcher **b, const pf_batcher_opts *opts, pf_error *err);
/* Queue r (see the flow above).  PF_EINVAL for bad rows or priority,
 * PF_ELIMIT when max_enqueued or the level's queue is full, PF_ESTATE
 * after shutdown began; err names the request's fields. */
int pf_batcher_submit(pf_batcher *b, pf_batch_req *r, pf_error *err);
/* Submit r and wait for it (r->done is replaced); returns r->status. */
int pf_batcher_run(pf_batcher *b, pf_batch_req *r, pf_error *err);
/* Stop taking requests, finish every queued one, join the threads. */
void pf_batcher_free(pf_batcher *b);

/* Counters since pf_batcher_new. */
#define PF_BATCH_HIST 12   /* batch rows: <=1, <=2, <=4, ... <=1024, more */
typedef struct pf_batcher_stats {
	uint64_t submitted, rejected_full, rejected_timeout, delayed, failed,
		completed, batches, rows, padded_rows;
	uint64_t queue_ns, compute_ns;    /* sums over requests / batches */
	uint64_t batch_hist[PF_BATCH_HIST];
	int queued;                       /* requests queued now */
	int adaptive_batch;               /* adaptive mode: the size limit now */
	uint64_t adaptive_wait_us;        /* ... and the last wait it chose */
	uint64_t adaptive_changes;        /* ... and how often the limit moved */
} pf_batcher_stats;
void pf_batcher_get_stats(pf_batcher *b, pf_batcher_stats *s);
const pf_batcher_opts *pf_batcher_options(const pf_batcher *b);

#ifdef __cplusplus
}
#endif
#endif /* PF_BATCHER_H */
