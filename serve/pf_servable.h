/*
 * pf_servable.h - a model saved by `pipe-train --save`, loaded for
 * inference behind a pf_batcher: one model instance, one stream and one
 * device input buffer per batch thread, so batches of different threads
 * run at once without a lock.  The forward pass is pf_model_predict (the
 * training forward, without the loss).
 *
 * Rows are f32 [in_dim] in, f32 logits [out_dim] out.  The batcher's batch
 * buffers come from pf_host_alloc (pinned on cuda), each batch crosses to
 * the device with one copy on the thread's stream, the logits come back
 * into the pinned output buffer, and the stream is synced once a batch.
 *
 * Ownership: pf_servable_open / pf_servable_free (NULL is a no-op); free it
 * after the batcher that uses it.
 */
#ifndef PF_SERVABLE_H
#define PF_SERVABLE_H

#include "pf_batcher.h"
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

int pf_servable_in_dim(const pf_servable *sv);
int pf_servable_out_dim(const pf_servable *sv);
/* The architecture as "mlp:784-128-10". */
const char *pf_servable_arch(const pf_servable *sv);
const char *pf_servable_device(const pf_servable *sv);

/* Point o's in_bytes, out_bytes, compute, ctx, alloc and free at sv (the
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
