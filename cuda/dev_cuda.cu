/*
 * dev_cuda.cu - the cuda backend (CUDA runtime + cuBLAS), built into the
 * pf_cuda.so module and reached through pf_cuda_backend() (dlsym).
 *
 * Streams are non-blocking cudaStreams; events are cudaEvents without
 * timing.  pf_stream_wait_event also records a pair of timing events around
 * the cudaStreamWaitEvent (outside graph capture) so that the time the
 * stream spent blocked on the event can be summed later without a host
 * sync: pairs whose second event has completed are harvested by
 * stream_wait_ns (H2D copies likewise, for stream_copy_ns); one operation
 * in TIME_EVERY of each kind is timed and its time scaled, so the sums are
 * estimates.  GEMMs: row-major C = op(A) op(B) is column-major
 * C^T = op(B)^T op(A)^T, so the operands go to cublasSgemm swapped.
 *
 * The module does not link libpipefeed: it fills pf_error itself.
 *
 * Error hygiene (issue 16):
 *  - every call that touches the device makes the pf_device's GPU current
 *    for its duration and gives the caller's current device back
 *    (dev_scope), so a program using another GPU is not moved;
 *  - an error the backend chooses to tolerate (a workspace that could not
 *    be allocated, pinned memory refused) is cleared from CUDA's last-error
 *    slot where it happens, and each kernel launch clears the slot before
 *    it checks its own launch, so an error is reported by the call that
 *    made it and not by the next kernel;
 *  - cublasSetStream resets the handle's workspace: cu_gemm sets the
 *    workspace again after it, and checks both;
 *  - out-of-memory messages give the size asked and what was free;
 *  - a fault raised by earlier asynchronous work (an illegal address in a
 *    kernel, say) says so, names the call where it surfaced and the last
 *    operation enqueued on that stream (fail());
 *  - open launches a probe kernel and syncs it: a GPU this module has no
 *    code for (or a broken driver) fails open with PF_ENODEV, and "auto"
 *    falls back to cpu with that reason (pf_device_note).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_cuda_kernels.h"
#include "pf_cuda_lt.h"
#include "pf_device_backend.h"

#define WAIT_RING 64
/* One wait (and one H2D copy) in TIME_EVERY is bracketed by timing events,
 * its time counted TIME_EVERY times: two event records per step instead of
 * four on the feed's path, for sums that are estimates. */
#define TIME_EVERY 4

struct cu_dev {
	int index;
	cublasHandle_t blas;
	void *blas_ws;            /* cuBLAS workspace (graph capture needs one) */
	size_t blas_ws_size;
	pthread_mutex_t blas_mu;  /* the handle's stream is shared state */
	char math[48];            /* pf_device_math */
	pf_lt *lt;                /* cuBLASLt epilogues; NULL: none (under
				   * blas_mu: its heuristic cache) */
};

struct pf_stream {
	cudaStream_t s;
	pthread_mutex_t mu;
	cudaEvent_t pre[WAIT_RING], post[WAIT_RING];
	unsigned char copy[WAIT_RING]; /* the pair times a copy (else a wait) */
	unsigned head, tail;      /* timing pairs recorded / harvested */
	unsigned nops[2];         /* waits / copies seen (the sampling) */
	uint64_t wait_ns, copy_ns;
	const char *last_op;      /* named in asynchronous-fault messages */
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

/* The operation just enqueued on s, for fault messages (any thread reads). */
static void note_op(pf_stream *s, const char *op)
{
	__atomic_store_n(&s->last_op, op, __ATOMIC_RELAXED);
}

/* Faults of earlier asynchronous work: sticky, reported by whatever call
 * comes next. */
static int async_fault(cudaError_t e)
{
	switch (e) {
	case cudaErrorIllegalAddress: case cudaErrorLaunchFailure:
	case cudaErrorHardwareStackError: case cudaErrorIllegalInstruction:
	case cudaErrorMisalignedAddress: case cudaErrorInvalidAddressSpace:
	case cudaErrorInvalidPc: case cudaErrorAssert: case cudaErrorLaunchTimeout:
	case cudaErrorECCUncorrectable:
		return 1;
	default:
		return 0;
	}
}

/* Fill err for CUDA error e returned by `what`; s (may be NULL) names the
 * last operation enqueued on the stream involved.  Returns the code. */
static int fail(pf_error *err, cudaError_t e, const char *what, const pf_stream *s)
{
	if (e == cudaErrorMemoryAllocation)
		return seterr(err, PF_ENOMEM, "cuda: %s: %s", what, cudaGetErrorString(e));
	if (async_fault(e))
		return seterr(err, PF_EIO,
			      "cuda: asynchronous fault from earlier device work, surfaced at %s"
			      " (last enqueued on the stream: %s): %s; the device is unusable"
			      " in this process",
			      what, s ? __atomic_load_n(&s->last_op, __ATOMIC_RELAXED) : "unknown",
			      cudaGetErrorString(e));
	return seterr(err, PF_EIO, "cuda: %s: %s", what, cudaGetErrorString(e));
}

#define CU_CHECK_S(call, err, what, s)                                         \
	do {                                                                   \
		cudaError_t e_ = (call);                                       \
		if (e_ != cudaSuccess)                                         \
			return fail(err, e_, what, s);                         \
	} while (0)
#define CU_CHECK(call, err, what) CU_CHECK_S(call, err, what, NULL)

/* The pf_device's GPU made current for a call's duration; the caller's
 * current device is restored on the way out. */
struct dev_scope {
	int prev;
	explicit dev_scope(const void *ctx) : prev(-1)
	{
		int want = ((const struct cu_dev *)ctx)->index, cur = -1;
		if (cudaGetDevice(&cur) == cudaSuccess && cur == want)
			return;
		if (cudaSetDevice(want) == cudaSuccess && cur >= 0)
			prev = cur;
	}
	~dev_scope()
	{
		if (prev >= 0)
			cudaSetDevice(prev);
	}
};

/* Launch a probe kernel and wait for it: a GPU the module has no code for
 * (cudaErrorNoKernelImageForDevice), or a driver that cannot run kernels,
 * fails here and not at the first training step. */
static int probe_launch(const cudaDeviceProp *p, pf_error *err)
{
	int32_t *c = NULL;
	cudaError_t e = cudaMalloc((void **)&c, sizeof(*c));
	if (e == cudaSuccess) {
		pf_kernel k;
		memset(&k, 0, sizeof(k));
		k.kind = PF_K_COUNTER_ADD;
		k.out = c;
		k.flag = 1;
		e = cudaMemset(c, 0, sizeof(*c));
		if (e == cudaSuccess)
			e = (cudaError_t)pf_cuda_kernel_launch(&k, 0);
		if (e == cudaSuccess)
			e = cudaDeviceSynchronize();
		int32_t v = 0;
		if (e == cudaSuccess)
			e = cudaMemcpy(&v, c, sizeof(v), cudaMemcpyDeviceToHost);
		if (e == cudaSuccess && v != 1)
			e = cudaErrorUnknown;
		cudaFree(c);
	}
	if (e != cudaSuccess) {
		cudaGetLastError();
		return seterr(err, PF_ENODEV,
			      "no CUDA device usable: a probe kernel on %s (sm_%d%d) failed: %s",
			      p->name, p->major, p->minor, cudaGetErrorString(e));
	}
	return 0;
}

/* cuBLAS handle and its workspace (optional: without one cuBLAS uses its
 * own pool; a failed allocation is cleared and tolerated). */
static int blas_setup(struct cu_dev *d, pf_error *err)
{
	if (cublasCreate(&d->blas) != CUBLAS_STATUS_SUCCESS)
		return seterr(err, PF_ENODEV, "cuda: cublasCreate failed");
	size_t ws = 32u << 20;
	if (cudaMalloc(&d->blas_ws, ws) != cudaSuccess) {
		cudaGetLastError();       /* tolerated: not the next launch's */
		d->blas_ws = NULL;
		return 0;
	}
	cublasStatus_t st = cublasSetWorkspace(d->blas, d->blas_ws, ws);
	if (st != CUBLAS_STATUS_SUCCESS) {
		cudaFree(d->blas_ws);
		d->blas_ws = NULL;
		cudaGetLastError();
		return 0;
	}
	d->blas_ws_size = ws;
	return 0;
}

/* --tf32: cuBLAS in TF32 tensor-op math (the handle keeps it); what is in
 * use into d->math.  TF32 exists on sm_80 and newer only. */
static int math_setup(struct cu_dev *d, int tf32, const cudaDeviceProp *p,
		      pf_error *err)
{
	snprintf(d->math, sizeof(d->math), "fp32");
	if (!tf32)
		return 0;
	cublasStatus_t st = cublasSetMathMode(d->blas, CUBLAS_TF32_TENSOR_OP_MATH);
	if (st != CUBLAS_STATUS_SUCCESS) {
		cublasDestroy(d->blas);
		if (d->blas_ws)
			cudaFree(d->blas_ws);
		return seterr(err, PF_EIO, "cuda: cublasSetMathMode(TF32): status %d",
			      (int)st);
	}
	if (p->major >= 8)
		snprintf(d->math, sizeof(d->math), "tf32");
	else
		snprintf(d->math, sizeof(d->math), "fp32 (tf32 asked: sm_%d%d has no TF32)",
			 p->major, p->minor);
	return 0;
}

static const char *cu_math(void *ctx)
{
	return ((struct cu_dev *)ctx)->math;
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
	struct cu_dev *d = (struct cu_dev *)calloc(1, sizeof(*d));
	if (!d)
		return seterr(err, PF_ENOMEM, "cuda: out of memory");
	d->index = o->index;
	dev_scope g(d);
	cudaDeviceProp p;
	int rc = 0;
	if ((e = cudaGetDeviceProperties(&p, o->index)) != cudaSuccess)
		rc = fail(err, e, "cudaGetDeviceProperties", NULL);
	if (rc == 0)
		rc = probe_launch(&p, err);
	if (rc == 0)
		rc = blas_setup(d, err);
	if (rc == 0)
		rc = math_setup(d, o->tf32, &p, err);
	if (rc < 0) {
		free(d);
		return rc;
	}
	pthread_mutex_init(&d->blas_mu, NULL);
	d->lt = pf_lt_new(o->tf32);
	cudaGetLastError();       /* tolerated: no epilogues, not an error */
	snprintf(info, infolen, "cuda: %s (sm_%d%d)%s", p.name, p.major, p.minor,
		 d->blas_ws ? "" : ", cuBLAS without a workspace");
	*ctx = d;
	return 0;
}

static void cu_close(void *ctx)
{
	struct cu_dev *d = (struct cu_dev *)ctx;
	{
		dev_scope g(d);
		cudaDeviceSynchronize();
		cublasDestroy(d->blas);
		if (d->blas_ws)
			cudaFree(d->blas_ws);
		pf_lt_free(d->lt);
	}
	pthread_mutex_destroy(&d->blas_mu);
	free(d);
}

static int cu_dev_alloc(void *ctx, void **p, size_t n, pf_error *err)
{
	dev_scope g(ctx);
	cudaError_t e = cudaMalloc(p, n);
	if (e == cudaSuccess)
		return 0;
	*p = NULL;
	size_t fr = 0, tot = 0;
	cudaGetLastError();
	cudaMemGetInfo(&fr, &tot);
	cudaGetLastError();
	if (e == cudaErrorMemoryAllocation)
		return seterr(err, PF_ENOMEM,
			      "cuda: cudaMalloc of %zu bytes: out of device memory (%zu of %zu MiB free)",
			      n, fr >> 20, tot >> 20);
	char what[64];
	snprintf(what, sizeof(what), "cudaMalloc of %zu bytes", n);
	return fail(err, e, what, NULL);
}

static void cu_dev_free(void *ctx, void *p)
{
	dev_scope g(ctx);
	cudaFree(p);
}

/*
 * Page-locked memory; when the driver refuses it (the locked-memory limit,
 * say), pageable memory instead, with one warning per process giving the
 * reason: copies from it still work, synchronously.  host_free tells the
 * two apart by asking CUDA what the pointer is.
 */
static int cu_host_alloc(void *ctx, void **p, size_t n, pf_error *err)
{
	static int warned;
	dev_scope g(ctx);
	cudaError_t e = cudaMallocHost(p, n);
	if (e == cudaSuccess)
		return 0;
	cudaGetLastError();
	if (async_fault(e))
		return fail(err, e, "cudaMallocHost", NULL);
	size_t r = (n + 255) & ~(size_t)255;
	*p = r >= n ? aligned_alloc(256, r) : NULL;
	if (!*p)
		return seterr(err, PF_ENOMEM,
			      "cuda: cudaMallocHost of %zu bytes: %s, and pageable memory too",
			      n, cudaGetErrorString(e));
	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		fprintf(stderr,
			"pipefeed: cuda: cudaMallocHost of %zu bytes: %s; using pageable"
			" memory (host-to-device copies will not overlap; warned once)\n",
			n, cudaGetErrorString(e));
	return 0;
}

static void cu_host_free(void *ctx, void *p)
{
	dev_scope g(ctx);
	cudaPointerAttributes a;
	if (cudaPointerGetAttributes(&a, p) == cudaSuccess &&
	    a.type == cudaMemoryTypeHost) {
		cudaFreeHost(p);
		return;
	}
	cudaGetLastError();
	free(p);                  /* the pageable fallback */
}

static int cu_stream_new(void *ctx, pf_stream **sp, pf_error *err)
{
	dev_scope g(ctx);
	pf_stream *s = (pf_stream *)calloc(1, sizeof(*s));
	if (!s)
		return seterr(err, PF_ENOMEM, "cuda: out of memory");
	cudaError_t e = cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking);
	int ok_ev = 0;
	for (; e == cudaSuccess && ok_ev < WAIT_RING; ok_ev++) {
		e = cudaEventCreate(&s->pre[ok_ev]);
		if (e == cudaSuccess && (e = cudaEventCreate(&s->post[ok_ev])) != cudaSuccess)
			cudaEventDestroy(s->pre[ok_ev]);
	}
	if (e != cudaSuccess) {
		for (int i = 0; i < ok_ev; i++) {
			cudaEventDestroy(s->pre[i]);
			cudaEventDestroy(s->post[i]);
		}
		if (s->s)
			cudaStreamDestroy(s->s);
		free(s);
		return fail(err, e, "stream create", NULL);
	}
	pthread_mutex_init(&s->mu, NULL);
	s->last_op = "nothing yet";
	*sp = s;
	return 0;
}

static void cu_stream_free(void *ctx, pf_stream *s)
{
	dev_scope g(ctx);
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
	dev_scope g(ctx);
	CU_CHECK_S(cudaStreamSynchronize(s->s), err, "stream sync (cudaStreamSynchronize)", s);
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
			*(s->copy[i] ? &s->copy_ns : &s->wait_ns) +=
				(uint64_t)(ms * 1e6) * TIME_EVERY;
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
	dev_scope g(ctx);
	cudaEvent_t ev;
	CU_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), err,
		 "cudaEventCreate");
	*e = (pf_event *)ev;
	return 0;
}

static void cu_event_free(void *ctx, pf_event *e)
{
	dev_scope g(ctx);
	cudaEventDestroy((cudaEvent_t)e);
}

static int cu_event_record(void *ctx, pf_event *e, pf_stream *s, pf_error *err)
{
	dev_scope g(ctx);
	CU_CHECK_S(cudaEventRecord((cudaEvent_t)e, s->s), err, "cudaEventRecord", s);
	return 0;
}

/* Bracket one stream operation of its kind in TIME_EVERY (the first one
 * too) with a timing pair (outside graph capture, while the ring has room):
 * timed_begin records `pre`, timed_end `post`; harvest() adds the elapsed
 * time, times TIME_EVERY, to wait_ns or copy_ns. */
static int timed_begin(pf_stream *s, unsigned *slot, int is_copy)
{
	if (s->nops[is_copy]++ % TIME_EVERY)
		return 0;         /* one thread feeds a stream: no lock needed */
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
	dev_scope g(ctx);
	unsigned i = 0;
	int timed = timed_begin(s, &i, 0);
	CU_CHECK_S(cudaStreamWaitEvent(s->s, (cudaEvent_t)e, 0), err,
		   "cudaStreamWaitEvent", s);
	timed_end(s, timed, i, 0);
	return 0;
}

/* Another library's stream: 0 and 1 are the legacy default stream
 * (cudaStreamLegacy is 0x1), 2 the per-thread one (cudaStreamPerThread). */
static int cu_event_record_foreign(void *ctx, pf_event *e, uintptr_t stream,
				   pf_error *err)
{
	dev_scope g(ctx);
	CU_CHECK(cudaEventRecord((cudaEvent_t)e, (cudaStream_t)stream), err,
		 "cudaEventRecord on a foreign stream");
	return 0;
}

static int cu_foreign_wait_event(void *ctx, uintptr_t stream, pf_event *e,
				 pf_error *err)
{
	dev_scope g(ctx);
	CU_CHECK(cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)e, 0), err,
		 "cudaStreamWaitEvent on a foreign stream");
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
	dev_scope g(ctx);
	CU_CHECK(cudaEventSynchronize((cudaEvent_t)e), err,
		 "event sync (cudaEventSynchronize)");
	return 0;
}

static int cu_memcpy(void *ctx, pf_stream *s, void *dst, const void *src,
		     size_t n, int kind, pf_error *err)
{
	cudaMemcpyKind k = kind == PF_H2D ? cudaMemcpyHostToDevice
			 : kind == PF_D2H ? cudaMemcpyDeviceToHost
					  : cudaMemcpyDeviceToDevice;
	dev_scope g(ctx);
	unsigned i = 0;
	int timed = k == cudaMemcpyHostToDevice ? timed_begin(s, &i, 1) : 0;
	const char *what = kind == PF_H2D ? "copy H2D" : kind == PF_D2H ? "copy D2H"
								    : "copy D2D";
	note_op(s, what);
	cudaError_t e = cudaMemcpyAsync(dst, src, n, k, s->s);
	if (e != cudaSuccess) {
		char w[64];
		snprintf(w, sizeof(w), "cudaMemcpyAsync (%s, %zu bytes)", what, n);
		return fail(err, e, w, s);
	}
	timed_end(s, timed, i, 1);
	return 0;
}

static int cu_memset(void *ctx, pf_stream *s, void *dst, int v, size_t n,
		     pf_error *err)
{
	dev_scope g(ctx);
	note_op(s, "memset");
	CU_CHECK_S(cudaMemsetAsync(dst, v, n, s->s), err, "cudaMemsetAsync", s);
	return 0;
}

static int cu_host_func(void *ctx, pf_stream *s, void (*fn)(void *), void *arg,
			pf_error *err)
{
	dev_scope g(ctx);
	note_op(s, "host function");
	CU_CHECK_S(cudaLaunchHostFunc(s->s, fn, arg), err, "cudaLaunchHostFunc", s);
	return 0;
}

/* The handle's stream, then its workspace again: cublasSetStream resets the
 * workspace to cuBLAS's default pool (caller holds blas_mu). */
static cublasStatus_t blas_bind(struct cu_dev *d, cudaStream_t cs)
{
	cublasStatus_t st = cublasSetStream(d->blas, cs);
	if (st == CUBLAS_STATUS_SUCCESS && d->blas_ws)
		st = cublasSetWorkspace(d->blas, d->blas_ws, d->blas_ws_size);
	return st;
}

static int cu_gemm(void *ctx, pf_stream *s, int ta, int tb, int m, int n, int k,
		   float alpha, const float *A, int lda, const float *B, int ldb,
		   float beta, float *C, int ldc, pf_error *err)
{
	struct cu_dev *d = (struct cu_dev *)ctx;
	dev_scope g(ctx);
	note_op(s, "gemm");
	cudaGetLastError();       /* an error tolerated earlier is not this one's */
	pthread_mutex_lock(&d->blas_mu);
	cublasStatus_t st = blas_bind(d, s->s);
	if (st != CUBLAS_STATUS_SUCCESS) {
		pthread_mutex_unlock(&d->blas_mu);
		return seterr(err, PF_EIO, "cuda: cublasSetStream/SetWorkspace: status %d",
			      (int)st);
	}
	st = cublasSgemm(d->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
			 ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ldb, A,
			 lda, &beta, C, ldc);
	pthread_mutex_unlock(&d->blas_mu);
	if (st != CUBLAS_STATUS_SUCCESS) {
		cudaError_t e = cudaGetLastError();
		if (e != cudaSuccess && async_fault(e))
			return fail(err, e, "cublasSgemm", s);
		return seterr(err, PF_EIO, "cublasSgemm(m=%d n=%d k=%d): status %d",
			      m, n, k, (int)st);
	}
	return 0;
}

/* A cuBLASLt call's result: 0, 1 (not fused, nothing enqueued) or the
 * error, an asynchronous fault of earlier work named as such. */
static int lt_result(int rc, const char *what, int m, int n, int k,
		     pf_stream *s, pf_error *err)
{
	if (rc >= 0)
		return rc;
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess && async_fault(e))
		return fail(err, e, what, s);
	return seterr(err, PF_EIO, "%s(m=%d n=%d k=%d): cuBLASLt status %d", what,
		      m, n, k, -rc);
}

static int cu_gemm_bias_act(void *ctx, pf_stream *s, int m, int n, int k,
			    const float *A, int lda, const float *W, int ldw,
			    const float *bias, int relu, float *C, void *aux,
			    pf_error *err)
{
	struct cu_dev *d = (struct cu_dev *)ctx;
	if (!d->lt)
		return 1;
	dev_scope g(ctx);
	note_op(s, "gemm_bias_act");
	cudaGetLastError();       /* an error tolerated earlier is not this one's */
	pthread_mutex_lock(&d->blas_mu);
	int rc = pf_lt_bias_act(d->lt, s->s, m, n, k, A, lda, W, ldw, bias, relu, C,
				aux);
	pthread_mutex_unlock(&d->blas_mu);
	return lt_result(rc, "cublasLtMatmul bias_act", m, n, k, s, err);
}

static int cu_gemm_drelu_bgrad(void *ctx, pf_stream *s, int m, int n, int k,
			       const float *A, int lda, const float *W, int ldw,
			       const void *aux, float *C, float *db, pf_error *err)
{
	struct cu_dev *d = (struct cu_dev *)ctx;
	if (!d->lt)
		return 1;
	dev_scope g(ctx);
	note_op(s, "gemm_drelu_bgrad");
	cudaGetLastError();
	pthread_mutex_lock(&d->blas_mu);
	int rc = pf_lt_drelu_bgrad(d->lt, s->s, m, n, k, A, lda, W, ldw, aux, C, db);
	pthread_mutex_unlock(&d->blas_mu);
	return lt_result(rc, "cublasLtMatmul drelu_bgrad", m, n, k, s, err);
}

static const char *kernel_name(int kind)
{
	static const char *names[] = { "?", "u8_to_f32", "bias_act", "relu_grad",
				       "softmax_xent", "bias_grad", "adam",
				       "counter_add", "seq_canary" };
	return kind > 0 && kind < (int)(sizeof(names) / sizeof(names[0])) ? names[kind]
									  : "?";
}

static int cu_kernel(void *ctx, pf_stream *s, const pf_kernel *k, pf_error *err)
{
	dev_scope g(ctx);
	const char *name = kernel_name(k->kind);
	note_op(s, name);
	cudaGetLastError();       /* an error tolerated earlier is not this one's */
	cudaError_t e = (cudaError_t)pf_cuda_kernel_launch(k, s->s);
	if (e != cudaSuccess) {
		char w[64];
		snprintf(w, sizeof(w), "launch of kernel %s", name);
		return fail(err, e, w, s);
	}
	return 0;
}

static int cu_graph_begin(void *ctx, pf_stream *s, pf_error *err)
{
	dev_scope g(ctx);
	CU_CHECK_S(cudaStreamBeginCapture(s->s, cudaStreamCaptureModeThreadLocal),
		   err, "cudaStreamBeginCapture", s);
	return 0;
}

static int cu_graph_end(void *ctx, pf_stream *s, pf_graph **g, pf_error *err)
{
	dev_scope sc(ctx);
	cudaGraph_t graph;
	CU_CHECK_S(cudaStreamEndCapture(s->s, &graph), err, "cudaStreamEndCapture", s);
	cudaGraphExec_t exec;
	cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
	cudaGraphDestroy(graph);
	CU_CHECK(e, err, "cudaGraphInstantiate");
	*g = (pf_graph *)exec;
	return 0;
}

static int cu_graph_launch(void *ctx, pf_graph *g, pf_stream *s, pf_error *err)
{
	dev_scope sc(ctx);
	note_op(s, "graph");
	CU_CHECK_S(cudaGraphLaunch((cudaGraphExec_t)g, s->s), err, "cudaGraphLaunch", s);
	return 0;
}

static void cu_graph_free(void *ctx, pf_graph *g)
{
	dev_scope sc(ctx);
	cudaGraphExecDestroy((cudaGraphExec_t)g);
}

/* pf_device_native: the stream's handle, the device's index, and the
 * device current on this thread (no dev_scope: that is the point). */
static int cu_native(void *ctx, pf_stream *s, void **stream, int *ordinal, pf_error *err)
{
	int idx = ((const struct cu_dev *)ctx)->index;
	CU_CHECK(cudaSetDevice(idx), err, "cudaSetDevice");
	if (s)
		*stream = (void *)s->s;
	*ordinal = idx;
	return 0;
}

static const pf_dev_ops cuda_ops = {
	PF_DEV_ABI, "cuda", cu_open, cu_close, cu_dev_alloc, cu_dev_free,
	cu_host_alloc, cu_host_free, cu_stream_new, cu_stream_free,
	cu_stream_sync, cu_stream_wait_ns, cu_event_new, cu_event_free,
	cu_event_record, cu_stream_wait_event, cu_event_query, cu_event_sync,
	cu_memcpy, cu_memset, cu_host_func, cu_gemm, cu_kernel,
	cu_graph_begin, cu_graph_end, cu_graph_launch, cu_graph_free,
	cu_stream_copy_ns, cu_math, cu_gemm_bias_act, cu_gemm_drelu_bgrad,
	cu_native,
	cu_event_record_foreign, cu_foreign_wait_event,
};

extern "C" __attribute__((visibility("default"))) const pf_dev_ops *
pf_cuda_backend(void)
{
	return &cuda_ops;
}
