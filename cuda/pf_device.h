/*
 * pf_device.h - the device interface: memory, streams, events, GEMM and the
 * few kernels the model needs, with two backends behind one set of calls.
 *
 *   cpu   the same asynchronous semantics on threads (cuda/dev_cpu.c): each
 *         stream is a worker thread running a FIFO of operations; a copy
 *         enqueued on a stream completes later; an event completes when its
 *         stream reaches it; a stream waiting on an event blocks that
 *         stream's thread, never the host.  GEMMs through CBLAS.
 *   cuda  CUDA runtime + cuBLAS (cuda/dev_cuda.cu), built as a module
 *         (pf_cuda.so) loaded with dlopen when a device is asked for, so one
 *         binary runs with and without CUDA.
 *
 * Semantics both backends give (the CUDA stream model):
 *  - operations on one stream run in the order they were enqueued;
 *  - pf_event_record(e, s) makes e complete when s has run everything
 *    enqueued on it before the record; recording again moves e forward;
 *  - pf_stream_wait_event(s, e) makes work enqueued on s after the call
 *    wait until e's most recent record (at call time) has completed; an
 *    event never recorded counts as complete;
 *  - pf_event_query never blocks; pf_event_sync and pf_stream_sync block the
 *    calling host thread (the only host-blocking calls besides alloc/free);
 *  - every enqueue call returns at once (it may block briefly when the
 *    stream's queue is full, as a CUDA launch queue does).
 *  - memory from pf_dev_alloc is device memory: the host must not touch it
 *    (on the cpu backend it is host memory, which tests exploit).
 *
 * Errors: calls return 0 or a negative PF_E* code and fill pf_error.  An
 * enqueued operation that fails later (a CUDA fault) is reported by the next
 * sync on that stream or event, or by the next call at all: the message then
 * says "asynchronous fault", names the call where it surfaced and the last
 * operation enqueued on that stream.  cuda calls make the device current
 * for their duration and restore the caller's current device.
 *
 * Threads: a pf_device may be used from several threads; one stream should
 * be fed by one thread at a time (as with CUDA, ordering between threads
 * enqueueing on the same stream is whatever the enqueue calls' order is).
 */
#ifndef PF_DEVICE_H
#define PF_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_device pf_device;
typedef struct pf_stream pf_stream;
typedef struct pf_event pf_event;
typedef struct pf_graph pf_graph;

/* Options of pf_device_open.  A zeroed struct means the defaults. */
typedef struct pf_device_opts {
	int index;                   /* cuda: device ordinal (0) */
	int cpu_threads;             /* cpu: BLAS threads; 0 = 1 (deterministic) */
	/* cpu test hook: every copy sleeps a random 0..copy_delay_us, half of
	 * it in the middle of the copy (so a reader racing it sees a torn
	 * buffer); every GEMM/kernel sleeps 0..compute_delay_us.  0 = off. */
	uint32_t test_copy_delay_us;
	uint32_t test_compute_delay_us;
	uint64_t test_seed;
	/* cuda: cuBLAS GEMMs in TF32 tensor-op math (cublasSetMathMode
	 * CUBLAS_TF32_TENSOR_OP_MATH; a 10-bit mantissa in the products,
	 * faster on sm_80 and newer, no effect on older GPUs).  cpu: accepted,
	 * no effect (float32).  pf_device_math() says what is in use. */
	int tf32;
} pf_device_opts;

/*
 * Open a device.  kind is "cpu", "cuda" or "auto" (cuda when the module
 * loads and a device answers, else cpu).  opts may be NULL.
 * "cuda" fails with PF_ENODEV when the module cannot be loaded, no device
 * answers (cudaGetDeviceCount failing for any reason counts as none) or a
 * probe kernel launched at open fails (a GPU without code in the module);
 * "auto" then opens cpu and pf_device_note() says why in one line.
 * The cuda module is looked up in $PF_CUDA_MODULE, then beside the program
 * in the build tree (cuda/.libs/pf_cuda.so), then beside the
 * libpipefeed-device library that was loaded (LIBDIR/pipefeed/pf_cuda.so,
 * so a moved install or one under DESTDIR finds its own), then in the
 * configured pkglibdir.  *d is NULL on failure.
 */
int pf_device_open(pf_device **d, const char *kind, const pf_device_opts *opts,
		   pf_error *err);

/* Close: waits for every stream, frees the backend.  Memory, streams and
 * events must be freed first.  NULL is a no-op. */
void pf_device_close(pf_device *d);

/* "cpu" or "cuda". */
const char *pf_device_kind(const pf_device *d);
/* 1 when the device's memory is host memory, so its streams can read a
 * host batch in place (the cpu backend); 0 otherwise (cuda: device memory,
 * reached by a copy). */
int pf_device_reads_host(const pf_device *d);
/* One line describing the device ("cpu: OpenBLAS, 1 thread",
 * "cuda: NVIDIA H100 80GB HBM3 (sm_90)"). */
const char *pf_device_info(const pf_device *d);
/* Why "auto" did not give cuda ("" when it did or was not asked). */
const char *pf_device_note(const pf_device *d);
/* The GEMMs' math mode, one line: "fp32", "tf32" (cuda with opts.tf32 on
 * sm_80 or newer), "fp32 (tf32 asked: sm_XY has no TF32)" or, on cpu with
 * opts.tf32, "fp32 (tf32 asked: no effect on the cpu backend)". */
const char *pf_device_math(const pf_device *d);
/* The backend's own handles, for a library that enqueues on the same
 * device (NCCL's collectives): *stream = s's cudaStream_t (NULL when s
 * is NULL), *ordinal = the CUDA device's index, and that device made
 * current on the calling thread (libraries that take "the current
 * device", as ncclCommInitRank does, then use this one).  Either output
 * may be NULL.  PF_ENODEV on a backend without native handles (cpu). */
int pf_device_native(pf_device *d, pf_stream *s, void **stream, int *ordinal,
		     pf_error *err);

/* ---- memory ------------------------------------------------------------- */

/* Device memory of n bytes (256-byte aligned), contents undefined. */
int pf_dev_alloc(pf_device *d, void **p, size_t n, pf_error *err);
void pf_dev_free(pf_device *d, void *p);                   /* NULL ok */
/* Page-locked host memory (cudaMallocHost; the cpu backend: aligned malloc),
 * the source of asynchronous host-to-device copies.  cuda: when pinning is
 * refused, pageable memory with one warning on stderr giving the reason. */
int pf_host_alloc(pf_device *d, void **p, size_t n, pf_error *err);
void pf_host_free(pf_device *d, void *p);                  /* NULL ok */

/* ---- streams and events ------------------------------------------------- */

int pf_stream_new(pf_device *d, pf_stream **s, pf_error *err);
/* Waits for the stream's work, then frees it.  NULL ok. */
void pf_stream_free(pf_device *d, pf_stream *s);
/* Block the host until everything enqueued on s has run. */
int pf_stream_sync(pf_device *d, pf_stream *s, pf_error *err);
/* Nanoseconds s has spent blocked in pf_stream_wait_event waits so far
 * (as far as known: the cuda backend counts the waits that have finished,
 * and times one wait in 4, counting its time 4 times: an estimate). */
uint64_t pf_stream_wait_ns(pf_device *d, pf_stream *s);

/* Device time this stream has spent in copies that have completed (ns):
 * the host-to-device copy time pipe-stat reports (cuda: one copy in 4
 * timed and counted 4 times, an estimate).  Never blocks. */
uint64_t pf_stream_copy_ns(pf_device *d, pf_stream *s);

int pf_event_new(pf_device *d, pf_event **e, pf_error *err);
void pf_event_free(pf_device *d, pf_event *e);             /* NULL ok */
int pf_event_record(pf_device *d, pf_event *e, pf_stream *s, pf_error *err);
int pf_stream_wait_event(pf_device *d, pf_stream *s, pf_event *e,
			 pf_error *err);
/* 1 when complete, 0 when not yet, or a negative code.  Never blocks. */
int pf_event_query(pf_device *d, pf_event *e);
int pf_event_sync(pf_device *d, pf_event *e, pf_error *err);

/*
 * Interop with a stream of another library (a DLPack consumer's: the
 * integer __dlpack__(stream=...) is given).  stream is that backend's own
 * handle: on cuda a cudaStream_t of the device's context, where 1 means
 * the legacy default stream and 2 the per-thread default stream (as CUDA
 * and DLPack number them) and 0 the legacy default too.
 *   pf_event_record_foreign  e completes when `stream` has run what was
 *                            enqueued on it before the call;
 *   pf_foreign_wait_event    work enqueued on `stream` after the call
 *                            waits for e's latest record.
 * Neither blocks the host.  The cpu backend has no streams of other
 * libraries: PF_EINVAL (its consumer is the host: pf_event_sync instead).
 */
int pf_event_record_foreign(pf_device *d, pf_event *e, uintptr_t stream,
			    pf_error *err);
int pf_foreign_wait_event(pf_device *d, uintptr_t stream, pf_event *e,
			  pf_error *err);

/* ---- copies and host callbacks ------------------------------------------ */

enum pf_copy_kind { PF_H2D = 1, PF_D2H = 2, PF_D2D = 3 };

/* Enqueue a copy of n bytes on s.  For PF_H2D the source should be
 * pf_host_alloc memory (pageable memory works but is not asynchronous on
 * cuda); the source must not change until the copy completes. */
int pf_memcpy_async(pf_device *d, pf_stream *s, void *dst, const void *src,
		    size_t n, int kind, pf_error *err);
/* Enqueue: set n bytes of device memory to byte v. */
int pf_memset_async(pf_device *d, pf_stream *s, void *dst, int v, size_t n,
		    pf_error *err);
/* Enqueue a host function: fn(arg) runs on a host thread when s reaches it
 * (cudaLaunchHostFunc); fn must not call the device. */
int pf_host_func(pf_device *d, pf_stream *s, void (*fn)(void *), void *arg,
		 pf_error *err);

/* ---- compute ------------------------------------------------------------ */

/*
 * Row-major single-precision GEMM on s:
 *   C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C
 * op(X) is X or X^T (ta, tb nonzero); lda/ldb/ldc are row strides in
 * floats (A is [m,k] or, transposed, [k,m]).  The cuda backend maps it onto
 * column-major cuBLAS by computing C^T = op(B)^T op(A)^T.
 */
int pf_gemm(pf_device *d, pf_stream *s, int ta, int tb, int m, int n, int k,
	    float alpha, const float *A, int lda, const float *B, int ldb,
	    float beta, float *C, int ldc, pf_error *err);

/* Label dtypes the loss kernel reads. */
enum pf_label_type { PF_LABEL_U8 = 1, PF_LABEL_I32 = 2, PF_LABEL_I64 = 3 };

/* dst[i] = src[i] * scale for n bytes (the batch crosses the bus as u8). */
int pf_k_u8_to_f32(pf_device *d, pf_stream *s, float *dst, const uint8_t *src,
		   size_t n, float scale, pf_error *err);
/* y[r,c] += bias[c], then max(0, .) when relu, for a [rows, cols] y. */
int pf_k_bias_act(pf_device *d, pf_stream *s, float *y, const float *bias,
		  int rows, int cols, int relu, pf_error *err);
/* dy[i] = y[i] > 0 ? dy[i] : 0 (gradient through a ReLU whose output is y). */
int pf_k_relu_grad(pf_device *d, pf_stream *s, float *dy, const float *y,
		   size_t n, pf_error *err);
/*
 * Softmax cross-entropy of logits [rows, cols] against integer labels
 * (label_type), fused with its gradient: when dlogits is not NULL,
 * dlogits = (softmax - onehot) * grad_scale.  Accumulates acc[0] += sum of
 * the rows' losses, acc[1] += rows whose argmax equals the label,
 * acc[2] += rows whose label is outside [0, cols) (their loss and gradient
 * are 0).  acc is 3 doubles of device memory.
 */
int pf_k_softmax_xent(pf_device *d, pf_stream *s, const float *logits,
		      const void *labels, int label_type, int rows, int cols,
		      float *dlogits, float grad_scale, double *acc,
		      pf_error *err);
/* db[c] = sum over r of dy[r,c] (overwrites db). */
int pf_k_bias_grad(pf_device *d, pf_stream *s, float *db, const float *dy,
		   int rows, int cols, pf_error *err);
/*
 * Adam over n parameters, step count read from *t (device int32, >= 1):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   w -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
 * Reading t from device memory keeps the launch parameters constant, so a
 * captured graph can replay it.
 */
int pf_k_adam(pf_device *d, pf_stream *s, float *w, const float *g, float *m,
	      float *v, size_t n, float lr, float b1, float b2, float eps,
	      const int32_t *t, pf_error *err);
/* *c += v (device int32). */
int pf_k_counter_add(pf_device *d, pf_stream *s, int32_t *c, int v,
		     pf_error *err);

/*
 * The slot canary: a device-side check that a buffer the host filled
 * through a stream protocol (device prefetch slots, say) is complete when
 * read and is not overwritten while in use.  slot holds rows int64
 * sequence numbers that should read first, first + 1, ...  Enqueued on s,
 * it runs as one kernel:
 *   1. each row equal to PF_CANARY_POISON counts as poisoned (read before
 *      the copy that fills it), any other row != first + i as torn; the
 *      rows' values are summed (as uint64, wrapping);
 *   2. it waits wait_us microseconds (cpu: sleeps; cuda: spins on the
 *      global timer), so that a copy wrongly landing in the slot meanwhile
 *      is caught by
 *   3. a second pass: each row != first + i counts as torn again;
 *   4. every byte of the rows is set to PF_CANARY_POISON_BYTE (a later
 *      reader that gets the slot before its next copy sees poison);
 *   5. counters[0] += torn rows, counters[1] += poisoned rows,
 *      counters[2] += 1 (checks run), counters[3] += the sum.
 * counters is 4 int64 of device memory, zeroed by the caller and read
 * back with a PF_D2H copy.  PF_EINVAL on NULL pointers or rows == 0.
 * (t/t3004-devfeed runs the device feed under it on both backends.)
 */
#define PF_CANARY_POISON_BYTE 0xDB
#define PF_CANARY_POISON ((int64_t)0xDBDBDBDBDBDBDBDBull)
int pf_k_seq_canary(pf_device *d, pf_stream *s, int64_t *slot, uint32_t rows,
		    int64_t first, uint32_t wait_us, int64_t *counters,
		    pf_error *err);

/* ---- fused epilogues ---------------------------------------------------- */

/*
 * A dense layer's GEMM with its bias and ReLU fused (cuda: cuBLASLt
 * epilogues RELU_AUX_BIAS / RELU_BIAS / BIAS; cpu: pf_gemm, then
 * pf_k_bias_act, then the mask, the same arithmetic in the same order, so
 * its results equal the unfused calls' bit for bit):
 *   C[m,n] = A[m,k] W[k,n] + bias[n], then max(0, .) when relu
 * C is dense (row stride n); lda >= k, ldw >= n.  With relu and aux not
 * NULL, the ReLU mask of C (1 bit per element, C > 0) goes to aux,
 * pf_epilogue_aux_bytes(m, n) bytes of device memory in the backend's own
 * layout, for pf_gemm_drelu_bgrad.  Returns 0 when enqueued, 1 when this
 * device or shape has no fused form (nothing enqueued: do it with pf_gemm
 * and the kernels), or a negative code.
 */
int pf_gemm_bias_act(pf_device *d, pf_stream *s, int m, int n, int k,
		     const float *A, int lda, const float *W, int ldw,
		     const float *bias, int relu, float *C, void *aux,
		     pf_error *err);
/*
 * The backward of such a layer below another (cuda: cuBLASLt DRELU_BGRAD):
 *   C[m,n] = (A[m,k] W[n,k]^T) masked by aux (zero where the forward
 *   output was not > 0),  db[n] = sum over the m rows of C
 * aux: what pf_gemm_bias_act wrote for a [m,n] output (same m and n).
 * C dense; lda >= k, ldw >= k.  0, 1 (not fused, nothing enqueued) or a
 * negative code, as pf_gemm_bias_act.
 */
int pf_gemm_drelu_bgrad(pf_device *d, pf_stream *s, int m, int n, int k,
			const float *A, int lda, const float *W, int ldw,
			const void *aux, float *C, float *db, pf_error *err);
/* Bytes of the mask for a [rows, cols] output: rows * ceil(cols / 128) * 16
 * (one bit an element, each row padded to 128 bits, as cuBLASLt wants). */
size_t pf_epilogue_aux_bytes(int rows, int cols);

/* ---- graphs (cuda only) ------------------------------------------------- */

/* 1 when the backend can capture and replay graphs. */
int pf_graph_supported(const pf_device *d);
/* Begin capturing the work enqueued on s (nothing runs until launched);
 * PF_EINVAL on a backend without graphs. */
int pf_graph_begin(pf_device *d, pf_stream *s, pf_error *err);
/* End the capture into an executable graph *g. */
int pf_graph_end(pf_device *d, pf_stream *s, pf_graph **g, pf_error *err);
int pf_graph_launch(pf_device *d, pf_graph *g, pf_stream *s, pf_error *err);
void pf_graph_free(pf_device *d, pf_graph *g);             /* NULL ok */

#ifdef __cplusplus
}
#endif
#endif /* PF_DEVICE_H */
