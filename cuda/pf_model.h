/*
 * pf_model.h - the model pipe-train trains: an MLP (dense layers, ReLU
 * between them), softmax cross-entropy, Adam; every operation enqueued on a
 * device stream (pf_device.h), so the same code runs on the cpu and cuda
 * backends.
 *
 * Memory: parameters, gradients and both Adam moments are each ONE device
 * buffer (layer l's W [in, out] row-major, then its b [out]), so the update
 * is one kernel and a checkpoint is three copies.  Activations are sized for
 * cfg.max_batch rows.  Inputs stay where the caller has them (a device slot
 * from pf_devfeed): a u8 image batch is converted to f32 on the device.
 *
 * Accumulators: train steps add to the "train" accumulators, eval calls to
 * the "eval" ones (sum of losses, correct rows, rows with a bad label); the
 * host reads them with pf_model_read_acc, which syncs the stream (call it
 * once per epoch, not per step).
 *
 * Ownership: a pf_model is a handle (pf_model_new / pf_model_free, free(NULL)
 * is a no-op) bound to one device; calls on one model come from one thread.
 */
#ifndef PF_MODEL_H
#define PF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "pf_device.h"
#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_MLP_MAX_LAYERS 8

typedef struct pf_model pf_model;

typedef struct pf_model_cfg {
	int nsizes;                          /* layers + 1, >= 2 */
	int sizes[PF_MLP_MAX_LAYERS + 1];    /* input, hidden..., classes */
	int max_batch;                       /* rows per call at most */
	float lr, b1, b2, eps;               /* Adam; 0 = 1e-3, .9, .999, 1e-8 */
	uint64_t seed;                       /* parameter init */
	int use_graph;                       /* capture the step as a graph,
					      * one per batch shape (the batch
					      * is staged into fixed buffers
					      * outside it); cuda only */
	int epilogue_off;                    /* 1: each layer as pf_gemm and
					      * the kernels; 0: fused GEMM
					      * epilogues (pf_gemm_bias_act,
					      * pf_gemm_drelu_bgrad) where the
					      * device has them, the same bits
					      * on cpu */
} pf_model_cfg;

/* Parse "mlp:784-128-10" into c->nsizes / c->sizes (other fields kept).
 * Each size is 1..65536.  PF_EINVAL naming the column otherwise. */
int pf_model_parse(pf_model_cfg *c, const char *spec, pf_error *err);

/* A new model on d with parameters drawn from cfg->seed (He-uniform for
 * ReLU layers, Glorot-uniform for the last, zero biases), moments zero,
 * step 0.  Uploads synchronously.  *m is NULL on failure. */
int pf_model_new(pf_model **m, pf_device *d, const pf_model_cfg *cfg,
		 pf_error *err);
void pf_model_free(pf_model *m);
const pf_model_cfg *pf_model_config(const pf_model *m);
size_t pf_model_nparams(const pf_model *m);
/* Adam steps taken (host count). */
int32_t pf_model_step_count(const pf_model *m);

/* One batch as the model reads it (device pointers). */
typedef struct pf_model_input {
	const void *x;        /* [rows, sizes[0]] of x_type */
	int x_type;           /* PF_U8 (scaled by x_scale) or PF_F32 */
	float x_scale;        /* u8 only; 0 = 1/255 */
	const void *labels;   /* [rows] of label_type (pf_device.h) */
	int label_type;
	int rows;             /* 1..max_batch */
	float grad_scale;     /* the loss gradient's scale: 0 = 1/rows (the
			       * mean over the rows); over ranks 1/(all
			       * ranks' rows), so that summing the ranks'
			       * gradients gives the global batch's mean */
} pf_model_input;

/* Describe field pointers of a batch as a model input: x_type / label_type
 * from pipefeed dtypes (u8 or f32 images; u8, i32 or i64 labels);
 * PF_EINVAL naming the dtype otherwise. */
int pf_model_input_types(pf_model_input *in, int image_dtype, int label_dtype,
			 pf_error *err);

/* Enqueue forward, backward and the Adam update on s (a captured graph
 * replayed when cfg.use_graph and the device has graphs). */
int pf_model_train_step(pf_model *m, pf_stream *s, const pf_model_input *in,
			pf_error *err);
/* Enqueue forward and backward only (gradients in the grads buffer; mean
 * loss over the rows), adding to the train accumulators. */
int pf_model_grad(pf_model *m, pf_stream *s, const pf_model_input *in,
		  pf_error *err);
/* pf_model_grad recording ev[j] (pf_model_nlayers events) on s once the
 * gradients of bucket j are complete: the last layer's first (j = 0), as
 * backward computes them, so they can be reduced while it goes on. */
int pf_model_grad_layers(pf_model *m, pf_stream *s, const pf_model_input *in,
			 pf_event *const *ev, pf_error *err);
int pf_model_nlayers(const pf_model *m);
/* Layers whose GEMM ran with a fused epilogue in the last training pass
 * enqueued: fused[0] forward (of nlayers), fused[1] backward (of
 * nlayers - 1).  0s with cfg.epilogue_off or a device without them. */
void pf_model_fused_layers(const pf_model *m, int fused[2]);
/* Bucket j's gradients: floats [off, off + len) of the grads buffer (one
 * layer's weights and biases; j = 0 is the last layer). */
void pf_model_layer_grads(const pf_model *m, int j, size_t *off, size_t *len);
/* The device address of buffer `which` (nparams floats): what a
 * collective on the device (NCCL) reduces in place, enqueued on the
 * model's stream between pf_model_grad and pf_model_apply. */
float *pf_model_dev_buf(pf_model *m, int which);
/* Enqueue on s the copy of floats [off, off + len) of buffer `which` to
 * host + off (no sync: sync s, or an event after it). */
int pf_model_download_range(pf_model *m, pf_stream *s, int which, float *host,
			    size_t off, size_t len, pf_error *err);
/* Enqueue the Adam update from the grads buffer as it stands (after
 * pf_model_grad, or pf_model_upload of PF_BUF_GRADS: gradients reduced
 * over ranks); counts a step, as pf_model_train_step does. */
int pf_model_apply(pf_model *m, pf_stream *s, pf_error *err);
/* Enqueue forward only, adding to the eval accumulators. */
int pf_model_eval(pf_model *m, pf_stream *s, const pf_model_input *in,
		  pf_error *err);

/* Enqueue forward only (the same layers as training; in->labels unused,
 * may be NULL) and a copy of the logits [rows, classes] into host memory
 * `logits` (pf_host_alloc memory for an asynchronous copy); the logits are
 * there once s has been synced.  No accumulator changes.  Inference
 * (pipe-serve) runs through this. */
int pf_model_predict(pf_model *m, pf_stream *s, const pf_model_input *in,
		     float *logits, pf_error *err);

enum pf_model_acc { PF_ACC_TRAIN = 0, PF_ACC_EVAL = 1 };
/* Sync s and read accumulator set `which`: out[0] loss sum, out[1] correct,
 * out[2] bad labels, out[3] rows.  reset: zero them afterwards. */
int pf_model_read_acc(pf_model *m, pf_stream *s, int which, double out[4],
		      int reset, pf_error *err);

enum pf_model_buf { PF_BUF_PARAMS = 0, PF_BUF_GRADS, PF_BUF_M, PF_BUF_V };
/* Copy buffer `which` (nparams floats) to or from host memory; syncs s. */
int pf_model_download(pf_model *m, pf_stream *s, int which, float *host,
		      pf_error *err);
int pf_model_upload(pf_model *m, pf_stream *s, int which, const float *host,
		    pf_error *err);

/*
 * Checkpoints (cuda/checkpoint.c): the architecture, Adam settings and step,
 * parameters and both moments, and an optional "run" section that the
 * library does not interpret (pipe-train keeps its options and the
 * iterator position there), in a little-endian file:
 *   0  "PFCKPT\0\0"   8  u32 version (2)   12 u32 nsizes
 *   16 u32 sizes[9]   52 i32 step          56 u64 nparams   64 u64 seed
 *   72 f32 lr, b1, b2, eps (informative: load keeps the model's own)
 *   88 f32 params[n], m[n], v[n]
 *   R = 88 + 12 n: u32 run_len (0..1 MiB)
 *   R + 4: the run section, run_len bytes
 *   R + 8 + run_len: u32 crc32c of every byte before it
 * Version 1 (still read) ends with the crc32c at R: no run section.
 * save writes "path.tmp.PID", fsyncs it, renames it over path and fsyncs the
 * directory: a crash (or a signal) leaves the old file or the new one,
 * never a mix.  load checks magic (PF_EFORMAT), version (PF_EVERSION),
 * length (PF_ETRUNC; PF_ECORRUPT when longer), checksum (PF_ECORRUPT) and
 * that the architecture equals m's (PF_EINVAL), messages naming the file
 * and offset; m is unchanged on failure.
 */
#define PF_CKPT_VERSION 2
int pf_model_save(pf_model *m, pf_stream *s, const char *path, pf_error *err);
int pf_model_load(pf_model *m, pf_stream *s, const char *path, pf_error *err);

/* pf_model_save with a run section of run_len bytes (copied; at most
 * 1 MiB, PF_ELIMIT otherwise). */
int pf_model_save_run(pf_model *m, pf_stream *s, const char *path,
		      const void *run, size_t run_len, pf_error *err);

/* Check the whole checkpoint file at path (as load does, without a model)
 * and return a copy of its run section in *run (malloc'd, NUL-terminated,
 * the caller frees it; "" for a file without one) and its length. */
int pf_ckpt_read_run(const char *path, char **run, size_t *run_len,
		     pf_error *err);

/* Check the whole checkpoint file at path (as load does) and set
 * c->nsizes / c->sizes to its architecture (other fields kept): what a
 * model must be created with to load it (pipe-serve). */
int pf_ckpt_read_arch(const char *path, pf_model_cfg *c, pf_error *err);

/* Set accumulator set `which` to in[0..3] (as pf_model_read_acc gives
 * them: loss sum, correct, bad labels, rows), e.g. to continue an epoch's
 * sums after a resume.  Syncs s. */
int pf_model_set_acc(pf_model *m, pf_stream *s, int which, const double in[4],
		     pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_MODEL_H */
