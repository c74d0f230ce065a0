/*
 * dev_cuda.cu - the cuda backend (CUDA runtime + cuBLAS), built into the
 * pf_cuda.so module and reached through pf_cuda_backend() (dlsym).
 *
 * Streams are non-blocking cudaStreams; events are cudaEvents without
 * timing.  pf_stream_wait_event also records a pair of timing events around
 * the cudaStreamWaitEvent (outside graph capture) so that the time the
 * stream spent blocked on the event can be summed later without a host
 * sync: pairs whose second event has completed are harvested by
 * stream_wait_ns.  GEMMs: row-major C = op(A) op(B) is column-major
 * C^T = op(B)^T op(A)^T, so the operands go to cublasSgemm swapped.
 *
 * The module does not link libpipefeed: it fills pf_error itself.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_cuda_kernels.h"
#include "pf_device_backend.h"

#define WAIT_RING 64

struct cu_dev {
	int index;
	cublasHandle_t blas;
	void *blas_ws;            /* cuBLAS workspace (graph capture needs one) */
	pthread_mutex_t blas_mu;  /* the handle's stream is shared state */
};

struct pf_stream {
	cudaStream_t s;
	pthread_mutex_t mu;
	cudaEvent_t pre[WAIT_RING], post[WAIT_RING];
	unsigned char copy[WAIT_RING]; /* the pair times a copy (else a wait) */
	unsigned head, tail;      /* timing pairs recorded / harvested */
	uint64_t wait_ns, copy_ns;
};

/* Fill err (first error wins) and return code. */
static int seterr(pf_error *err, int code, const char *fmt, ...)
{
	if (err && err->code == 0) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

#define CU_CHECK(call, err, what)                                              \
	do {                                                                   \
		cudaError_t e_ = (call);                                       \
		if (e_ != cudaSuccess)                                         \
			return seterr(err, e_ == cudaErrorMemoryAllocation     \
					      ? PF_ENOMEM : PF_EIO,            \
				      "cuda: %s: %s", what,                    \
				      cudaGetErrorString(e_));                 \
	} while (0)

static void bind(struct cu_dev *d)
{
	if (d->index != 0)
		cudaSetDevice(d->index);
}

static int cu_open(void **ctx, const pf_device_opts *o, char *info,
		   size_t infolen, pf_error *err)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess)
		return seterr(err, PF_ENODEV, "no CUDA device: cudaGetDeviceCount: %s",
			      cudaGetErrorString(e));
	if (n <= 0)
		return seterr(err, PF_ENODEV, "no CUDA device: none found");
	if (o->index < 0 || o->index >= n)
		return seterr(err, PF_ENODEV, "no CUDA device %d (%d found)",
			      o->index, n);
	CU_CHECK(cudaSetDevice(o->index), err, "cudaSetDevice");
	cudaDeviceProp p;
	CU_CHECK(cudaGetDeviceProperties(&p, o->index), err,
		 "cudaGetDeviceProperties");
	struct cu_dev *d = (struct cu_dev *)calloc(1, sizeof(*d));
	if (!d)
		return seterr(err, PF_ENOMEM, "cuda: out of memory");
	d->index = o->index;
	if (cublasCreate(&d->blas) != CUBLAS_STATUS_SUCCESS) {
		free(d);
		return seterr(err, PF_ENODEV, "cuda: cublasCreate failed");
	}
	size_t ws = 32u << 20;
	if (cudaMalloc(&d->blas_ws, ws) == cudaSuccess)
		cublasSetWorkspace(d->blas, d->blas_ws, ws);
	else
		d->blas_ws = NULL;
	pthread_mutex_init(&d->blas_mu, NULL);
	snprintf(info, infolen, "cuda: %s (sm_%d%d)", p.name, p.major, p.minor);
	*ctx = d;
	return 0;
}

static void cu_close(void *ctx)
{
	struct cu_dev *d = (struct cu_dev *)ctx;
	bind(d);
	cudaDeviceSynchronize();
	cublasDestroy(d->blas);
	if (d->blas_ws)
		cudaFree(d->blas_ws);
	pthread_mutex_destroy(&d->blas_mu);
	free(d);
}

static int cu_dev_alloc(void *ctx, void **p, size_t n, pf_error *err)
{
	bind((struct cu_dev *)ctx);
	CU_CHECK(cudaMalloc(p, n), err, "cudaMalloc");
	return 0;
}

static void cu_dev_free(void *ctx, void *p)
{
	bind((struct cu_dev *)ctx);
	cudaFree(p);
}

static int cu_host_alloc(void *ctx, void **p, size_t n, pf_error *err)
{
	bind((struct cu_dev *)ctx);
	CU_CHECK(cudaMallocHost(p, n), err, "cudaMallocHost");
	return 0;
}

static void cu_host_free(void *ctx, void *p)
{
	cudaFreeHost(p);
}

static int cu_stream_new(void *ctx, pf_stream **sp, pf_error *err)
{
	bind((struct cu_dev *)ctx);
	pf_stream *s = (pf_stream *)calloc(1, sizeof(*s));
	if (!s)
		return seterr(err, PF_ENOMEM, "cuda: out of memory");
	cudaError_t e = cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking);
	for (int i = 0; e == cudaSuccess && i < WAIT_RING; i++) {
		e = cudaEventCreate(&s->pre[i]);
		if (e == cudaSuccess)
			e = cudaEventCreate(&s->post[i]);
	}
	if (e != cudaSuccess) {
		free(s);    /* leaks the events created so far: start-up only */
		return seterr(err, PF_EIO, "cuda: stream: %s",
			      cudaGetErrorString(e));
	}
	pthread_mutex_init(&s->mu, NULL);
	*sp = s;
	return 0;
}

static void cu_stream_free(void *ctx, pf_stream *s)
{
	cudaStreamSynchronize(s->s);
	for (int i = 0; i < WAIT_RING; i++) {
		cudaEventDestroy(s->pre[i]);
		cudaEventDestroy(s->post[i]);
	}
	cudaStreamDestroy(s->s);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static int cu_stream_sync(void *ctx, pf_stream *s, pf_error *err)
{
	CU_CHECK(cudaStreamSynchronize(s->s), err, "cudaStreamSynchronize");
	return 0;
}

/* Sum the timing pairs that have completed (caller holds s->mu). */
static void harvest(pf_stream *s)
{
	while (s->tail != s->head) {
		unsigned i = s->tail % WAIT_RING;
		if (cudaEventQuery(s->post[i]) != cudaSuccess)
			break;
		float ms = 0;
		if (cudaEventElapsedTime(&ms, s->pre[i], s->post[i]) == cudaSuccess &&
		    ms > 0)
			*(s->copy[i] ? &s->copy_ns : &s->wait_ns) += (uint64_t)(ms * 1e6);
		s->tail++;
	}
}

static uint64_t cu_stream_wait_ns(void *ctx, pf_stream *s)
{
	pthread_mutex_lock(&s->mu);
	harvest(s);
	uint64_t v = s->wait_ns;
	pthread_mutex_unlock(&s->mu);
	return v;
}

static int cu_event_new(void *ctx, pf_event **e, pf_error *err)
{
	bind((struct cu_dev *)ctx);
	cudaEvent_t ev;
	CU_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), err,
		 "cudaEventCreate");
	*e = (pf_event *)ev;
	return 0;
}

static void cu_event_free(void *ctx, pf_event *e)
{
	cudaEventDestroy((cudaEvent_t)e);
}

static int cu_event_record(void *ctx, pf_event *e, pf_stream *s, pf_error *err)
{
	CU_CHECK(cudaEventRecord((cudaEvent_t)e, s->s), err, "cudaEventRecord");
	return 0;
}

/* Bracket one stream operation with a timing pair (outside graph capture,
 * while the ring has room): timed_begin records `pre`, timed_end `post`;
 * harvest() adds the elapsed time to wait_ns or copy_ns. */
static int timed_begin(pf_stream *s, unsigned *slot)
{
	cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
	cudaStreamIsCapturing(s->s, &cs);
	int timed = 0;
	if (cs == cudaStreamCaptureStatusNone) {
		pthread_mutex_lock(&s->mu);
		harvest(s);
		if (s->head - s->tail < WAIT_RING) {
			*slot = s->head % WAIT_RING;
			timed = cudaEventRecord(s->pre[*slot], s->s) == cudaSuccess;
		}
		pthread_mutex_unlock(&s->mu);
	}
	return timed;
}

static void timed_end(pf_stream *s, int timed, unsigned slot, int is_copy)
{
	if (!timed)
		return;
	pthread_mutex_lock(&s->mu);
	s->copy[slot] = (unsigned char)is_copy;
	if (cudaEventRecord(s->post[slot], s->s) == cudaSuccess)
		s->head++;
	pthread_mutex_unlock(&s->mu);
}

static int cu_stream_wait_event(void *ctx, pf_stream *s, pf_event *e,
				pf_error *err)
{
	unsigned i = 0;
	int timed = timed_begin(s, &i);
	CU_CHECK(cudaStreamWaitEvent(s->s, (cudaEvent_t)e, 0), err,
		 "cudaStreamWaitEvent");
	timed_end(s, timed, i, 0);
	return 0;
}

static uint64_t cu_stream_copy_ns(void *ctx, pf_stream *s)
{
	pthread_mutex_lock(&s->mu);
	harvest(s);
	uint64_t v = s->copy_ns;
	pthread_mutex_unlock(&s->mu);
	return v;
}

static int cu_event_query(void *ctx, pf_event *e)
{
	cudaError_t r = cudaEventQuery((cudaEvent_t)e);
	if (r == cudaSuccess)
		return 1;
	if (r == cudaErrorNotReady)
		return 0;
	return PF_EIO;
}

static int cu_event_sync(void *ctx, pf_event *e, pf_error *err)
{
	CU_CHECK(cudaEventSynchronize((cudaEvent_t)e), err, "cudaEventSynchronize");
	return 0;
}

static int cu_memcpy(void *ctx, pf_stream *s, void *dst, const void *src,
		     size_t n, int kind, pf_error *err)
{
	cudaMemcpyKind k = kind == PF_H2D ? cudaMemcpyHostToDevice
			 : kind == PF_D2H ? cudaMemcpyDeviceToHost
					  : cudaMemcpyDeviceToDevice;
	unsigned i = 0;
	int timed = k == cudaMemcpyHostToDevice ? timed_begin(s, &i) : 0;
	CU_CHECK(cudaMemcpyAsync(dst, src, n, k, s->s), err, "cudaMemcpyAsync");
	timed_end(s, timed, i, 1);
	return 0;
}

static int cu_memset(void *ctx, pf_stream *s, void *dst, int v, size_t n,
		     pf_error *err)
{
	CU_CHECK(cudaMemsetAsync(dst, v, n, s->s), err, "cudaMemsetAsync");
	return 0;
}

static int cu_host_func(void *ctx, pf_stream *s, void (*fn)(void *), void *arg,
			pf_error *err)
{
	CU_CHECK(cudaLaunchHostFunc(s->s, fn, arg), err, "cudaLaunchHostFunc");
	return 0;
}

static int cu_gemm(void *ctx, pf_stream *s, int ta, int tb, int m, int n, int k,
		   float alpha, const float *A, int lda, const float *B, int ldb,
		   float beta, float *C, int ldc, pf_error *err)
{
	struct cu_dev *d = (struct cu_dev *)ctx;
	pthread_mutex_lock(&d->blas_mu);
	cublasSetStream(d->blas, s->s);
	cublasStatus_t st = cublasSgemm(d->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
					ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
					&alpha, B, ldb, A, lda, &beta, C, ldc);
	pthread_mutex_unlock(&d->blas_mu);
	if (st != CUBLAS_STATUS_SUCCESS)
		return seterr(err, PF_EIO, "cublasSgemm(m=%d n=%d k=%d): status %d",
			      m, n, k, (int)st);
	return 0;
}

static int cu_kernel(void *ctx, pf_stream *s, const pf_kernel *k, pf_error *err)
{
	int e = pf_cuda_kernel_launch(k, s->s);
	if (e != 0)
		return seterr(err, PF_EIO, "cuda kernel %d: %s", k->kind,
			      cudaGetErrorString((cudaError_t)e));
	return 0;
}

static int cu_graph_begin(void *ctx, pf_stream *s, pf_error *err)
{
	CU_CHECK(cudaStreamBeginCapture(s->s, cudaStreamCaptureModeThreadLocal),
		 err, "cudaStreamBeginCapture");
	return 0;
}

static int cu_graph_end(void *ctx, pf_stream *s, pf_graph **g, pf_error *err)
{
	cudaGraph_t graph;
	CU_CHECK(cudaStreamEndCapture(s->s, &graph), err, "cudaStreamEndCapture");
	cudaGraphExec_t exec;
	cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
	cudaGraphDestroy(graph);
	CU_CHECK(e, err, "cudaGraphInstantiate");
	*g = (pf_graph *)exec;
	return 0;
}

static int cu_graph_launch(void *ctx, pf_graph *g, pf_stream *s, pf_error *err)
{
	CU_CHECK(cudaGraphLaunch((cudaGraphExec_t)g, s->s), err, "cudaGraphLaunch");
	return 0;
}

static void cu_graph_free(void *ctx, pf_graph *g)
{
	cudaGraphExecDestroy((cudaGraphExec_t)g);
}

static const pf_dev_ops cuda_ops = {
	PF_DEV_ABI, "cuda", cu_open, cu_close, cu_dev_alloc, cu_dev_free,
	cu_host_alloc, cu_host_free, cu_stream_new, cu_stream_free,
	cu_stream_sync, cu_stream_wait_ns, cu_event_new, cu_event_free,
	cu_event_record, cu_stream_wait_event, cu_event_query, cu_event_sync,
	cu_memcpy, cu_memset, cu_host_func, cu_gemm, cu_kernel,
	cu_graph_begin, cu_graph_end, cu_graph_launch, cu_graph_free,
	cu_stream_copy_ns,
};

extern "C" __attribute__((visibility("default"))) const pf_dev_ops *
pf_cuda_backend(void)
{
	return &cuda_ops;
}
