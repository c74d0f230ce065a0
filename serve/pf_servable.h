/*
 * pf_servable.h - a model saved by `pipe-train --save`, loaded for
 * inference behind a pf_batcher: one model instance, one stream and one
 * device input buffer per batch thread, so batches of different threads
 * run at once without a lock.  The forward pass is pf_model_predict (the
 * training forward, without the loss).
 *
 * Rows are f32 [in_dim] in, f32 logits [out_dim] out.  The batcher's batch
 * buffers come from pf_host_alloc (pinned on cuda): the batcher copies the
 * requests' rows straight into one, and the logits come back into a pinned
 * output buffer.
 *
 * Two paths to the device:
 *  - feed_depth 0 (direct): each batch crosses with one copy on the
 *    thread's stream, then the forward pass, and the stream is synced
 *    once a batch: copy and compute of one thread never overlap.
 *  - feed_depth D >= 1 (the training device feed, pf_devfeed.h, in push
 *    mode): each batch thread has a feed of D device slots with its own
 *    copy stream; a batch is put into the feed (copy stream: wait for the
 *    slot's done event, copy, record its copy event), the compute stream
 *    waits for that copy event, runs the forward pass and copies the
 *    logits back, and records the batch's done event; the batcher keeps
 *    up to D batches in flight per thread (pf_batcher_opts.complete), so
 *    with D >= 2 the copy of batch n+1 runs while batch n computes.  The
 *    answers are the direct path's, bit for bit (t3103).
 * With timeline, host functions on the copy and compute streams time each
 * batch's copy and compute (pf_batch's *_ns fields, for a stats file).
 *
 * Ownership: pf_servable_open / pf_servable_free (NULL is a no-op); free it
 * after the batcher that uses it.
 */
#ifndef PF_SERVABLE_H
#define PF_SERVABLE_H

#include "pf_batcher.h"
#include "pf_device.h"
#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_servable pf_servable;

/* Load the checkpoint at path (its architecture read from the file) on a
 * device of kind ("cpu", "cuda", "auto"; NULL = "cpu") for nthreads batch
 * threads of at most max_rows rows each.  *sv is NULL on failure; err
 * names the file. */
int pf_servable_open(pf_servable **sv, const char *path, const char *device,
		     int nthreads, int max_rows, pf_error *err);
void pf_servable_free(pf_servable *sv);

typedef struct pf_servable_opts {
	const char *device;       /* "cpu", "cuda", "auto"; NULL = "cpu" */
	int nthreads, max_rows;   /* batch threads, rows of a batch at most */
	int feed_depth;           /* 0 = direct path; 1..16 = the device feed */
	int timeline;             /* feed path: time copies and computes */
	const pf_device_opts *dev;/* NULL = defaults (tests: delay hooks) */
} pf_servable_opts;

/* pf_servable_open with every option; pf_servable_open is this with
 * feed_depth 0. */
int pf_servable_open_opts(pf_servable **sv, const char *path,
			  const pf_servable_opts *o, pf_error *err);

int pf_servable_in_dim(const pf_servable *sv);
int pf_servable_out_dim(const pf_servable *sv);
/* The architecture as "mlp:784-128-10". */
const char *pf_servable_arch(const pf_servable *sv);
const char *pf_servable_device(const pf_servable *sv);

/* Point o's in_bytes, out_bytes, compute, complete, depth, ctx, alloc and
 * free at sv (the
 * other knobs are the caller's; num_batch_threads and the batch cap must
 * not exceed what sv was opened for). */
void pf_servable_hook(pf_servable *sv, pf_batcher_opts *o);

/* Compute the logits of rows f32 inputs directly on thread 0's model
 * (no batcher; the unbatched reference).  Not concurrently with a batcher
 * running on sv. */
int pf_servable_predict(pf_servable *sv, const float *in, int rows, float *out,
			pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_SERVABLE_H */
