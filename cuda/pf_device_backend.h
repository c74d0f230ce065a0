/*
 * pf_device_backend.h - internal: the table a device backend fills (the cpu
 * backend in the library, the cuda backend in the pf_cuda.so module).
 *
 * The module exports one C symbol, PF_CUDA_ENTRY_SYMBOL, returning its table;
 * device.c checks `abi` before using anything else.  The table's calls have
 * the meaning of the pf_device.h calls of the same name, with the backend's
 * own context as first argument.  Kernels go through one entry taking a
 * pf_kernel record, so a backend that queues work (cpu) stores it as is.
 * A backend fills a pf_error itself (the module does not link the library).
 */
#ifndef PF_DEVICE_BACKEND_H
#define PF_DEVICE_BACKEND_H

#include "pf_device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_DEV_ABI 5
#define PF_CUDA_ENTRY_SYMBOL "pf_cuda_backend"

enum pf_kernel_kind {
	PF_K_U8_TO_F32 = 1, PF_K_BIAS_ACT, PF_K_RELU_GRAD, PF_K_SOFTMAX_XENT,
	PF_K_BIAS_GRAD, PF_K_ADAM, PF_K_COUNTER_ADD,
	PF_K_SEQ_CANARY,      /* ABI 3 */
	PF_K_RELU_MASK,       /* ABI 4, cpu only: aux bit (r, c) = y[r,c] > 0 */
	PF_K_MASK_GRAD,       /* ABI 4, cpu only: dy[r,c] = bit (r, c) ? dy : 0 */
};

/* One kernel launch: which kernel and its arguments (unused ones 0). */
typedef struct pf_kernel {
	int kind;
	void *out;            /* y / dst / db / w / dlogits / counter */
	const void *in;       /* src / bias / dy / g / logits */
	const void *in2;      /* y (relu_grad) / labels */
	float *m, *v;         /* adam moments */
	double *acc;          /* softmax_xent accumulators */
	const int32_t *t;     /* adam step */
	size_t n;             /* elements */
	int rows, cols, flag; /* flag: relu / label type / counter increment /
			       * seq_canary's wait in us */
	float f[4];           /* scale | lr, b1, b2, eps | grad_scale */
	int64_t *cnt;         /* ABI 3: seq_canary's 4 counters */
	int64_t i64;          /* ABI 3: seq_canary's first sequence number */
} pf_kernel;

typedef struct pf_dev_ops {
	int abi;              /* PF_DEV_ABI */
	const char *kind;     /* "cpu" / "cuda" */
	/* info: one line describing the device, written into info[infolen] */
	int (*open)(void **ctx, const pf_device_opts *o, char *info,
		    size_t infolen, pf_error *err);
	void (*close)(void *ctx);
	int (*dev_alloc)(void *ctx, void **p, size_t n, pf_error *err);
	void (*dev_free)(void *ctx, void *p);
	int (*host_alloc)(void *ctx, void **p, size_t n, pf_error *err);
	void (*host_free)(void *ctx, void *p);
	int (*stream_new)(void *ctx, pf_stream **s, pf_error *err);
	void (*stream_free)(void *ctx, pf_stream *s);
	int (*stream_sync)(void *ctx, pf_stream *s, pf_error *err);
	uint64_t (*stream_wait_ns)(void *ctx, pf_stream *s);
	int (*event_new)(void *ctx, pf_event **e, pf_error *err);
	void (*event_free)(void *ctx, pf_event *e);
	int (*event_record)(void *ctx, pf_event *e, pf_stream *s, pf_error *err);
	int (*stream_wait_event)(void *ctx, pf_stream *s, pf_event *e,
				 pf_error *err);
	int (*event_query)(void *ctx, pf_event *e);
	int (*event_sync)(void *ctx, pf_event *e, pf_error *err);
	int (*memcpy_async)(void *ctx, pf_stream *s, void *dst, const void *src,
			    size_t n, int kind, pf_error *err);
	int (*memset_async)(void *ctx, pf_stream *s, void *dst, int v, size_t n,
			    pf_error *err);
	int (*host_func)(void *ctx, pf_stream *s, void (*fn)(void *), void *arg,
			 pf_error *err);
	int (*gemm)(void *ctx, pf_stream *s, int ta, int tb, int m, int n, int k,
		    float alpha, const float *A, int lda, const float *B,
		    int ldb, float beta, float *C, int ldc, pf_error *err);
	int (*kernel)(void *ctx, pf_stream *s, const pf_kernel *k,
		      pf_error *err);
	/* graphs: all NULL when unsupported */
	int (*graph_begin)(void *ctx, pf_stream *s, pf_error *err);
	int (*graph_end)(void *ctx, pf_stream *s, pf_graph **g, pf_error *err);
	int (*graph_launch)(void *ctx, pf_graph *g, pf_stream *s, pf_error *err);
	void (*graph_free)(void *ctx, pf_graph *g);
	/* ABI 2: device time spent in completed copies on a stream */
	uint64_t (*stream_copy_ns)(void *ctx, pf_stream *s);
	/* ABI 4: the GEMMs' math mode as pf_device_math() says it (NULL:
	 * "fp32"); pf_device_opts.tf32 asked for TF32 at open. */
	const char *(*math)(void *ctx);
	/* ABI 4: GEMMs with a fused epilogue, as pf_gemm_bias_act() and
	 * pf_gemm_drelu_bgrad() (arguments checked by device.c).  NULL when
	 * the backend has none (the caller uses pf_gemm and the kernels);
	 * returning 1 means "not for this shape", nothing enqueued. */
	int (*gemm_bias_act)(void *ctx, pf_stream *s, int m, int n, int k,
			     const float *A, int lda, const float *W, int ldw,
			     const float *bias, int relu, float *C, void *aux,
			     pf_error *err);
	int (*gemm_drelu_bgrad)(void *ctx, pf_stream *s, int m, int n, int k,
				const float *A, int lda, const float *W, int ldw,
				const void *aux, float *C, float *db,
				pf_error *err);
	/* ABI 5: pf_device_native (s may be NULL: *stream untouched); NULL
	 * when the backend has no native handles (cpu) */
	int (*native)(void *ctx, pf_stream *s, void **stream, int *ordinal,
		      pf_error *err);
	/* ABI 5 too: another library's stream (pf_event_record_foreign,
	 * pf_foreign_wait_event); NULL when the backend has none (cpu). */
	int (*event_record_foreign)(void *ctx, pf_event *e, uintptr_t stream,
				    pf_error *err);
	int (*foreign_wait_event)(void *ctx, uintptr_t stream, pf_event *e,
				  pf_error *err);
} pf_dev_ops;

/* The cpu backend's table (dev_cpu.c). */
extern const pf_dev_ops pf_dev_cpu_ops;

/* The module's entry point: its table, or NULL. */
typedef const pf_dev_ops *(*pf_cuda_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif /* PF_DEVICE_BACKEND_H */
