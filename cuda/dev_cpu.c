/*
 * dev_cpu.c - the cpu backend: CUDA's stream and event semantics on threads.
 *
 * Each stream is a worker thread that runs a bounded FIFO (ring) of
 * operations in order.  An event holds two generation numbers under the
 * device mutex: `recorded` (bumped by each pf_event_record, at enqueue time)
 * and `done` (the highest generation whose record operation has run).  An
 * event is complete when done >= recorded.  pf_stream_wait_event enqueues a
 * WAIT for the generation recorded at call time, which blocks the stream's
 * worker (not the caller) until that generation is done; an event never
 * recorded is complete.  "Device" memory is aligned host memory, so tests
 * can look into it.
 *
 * Test hook (pf_device_opts.test_*_delay_us): random sleeps in copies (half
 * before, half in the middle of the copy) and kernels, from a per-stream
 * PRNG, to shake out ordering bugs in code built on the interface.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_cpu_kernels.h"
#include "pf_device_backend.h"
#include "pf_rng.h"

#define RING 256              /* operations queued per stream at most */

typedef struct cpu_dev {
	pthread_mutex_t mu;   /* guards every event's generations */
	pthread_cond_t cv;    /* broadcast when an event completes and a
			       * thread waits for one */
	int ev_waiters;       /* threads in an event wait (under mu) */
	pf_device_opts o;
	atomic_uint nstreams; /* seeds the per-stream PRNGs */
} cpu_dev;

struct pf_event {
	uint64_t recorded, done;
};

enum { OP_COPY = 1, OP_MEMSET, OP_RECORD, OP_WAIT, OP_HOSTFN, OP_GEMM,
       OP_KERNEL, OP_STOP };

typedef struct cpu_op {
	int type;
	union {
		struct { void *dst; const void *src; size_t n; int v; } mem;
		struct { pf_event *e; uint64_t gen; } ev;
		struct { void (*fn)(void *); void *arg; } host;
		struct {
			int ta, tb, m, n, k, lda, ldb, ldc;
			float alpha, beta;
			const float *A, *B;
			float *C;
		} gemm;
		pf_kernel k;
	} u;
} cpu_op;

struct pf_stream {
	cpu_dev *dev;
	pthread_t th;
	pthread_mutex_t mu;
	/* each wait on its own condition, signalled only when somebody
	 * waits: a wake-up is a context switch, and on the cores the
	 * pipeline shares a needless one costs it (a step enqueues three
	 * operations, each of which woke every waiter) */
	pthread_cond_t cv_work;   /* the worker: the ring has an operation */
	pthread_cond_t cv_room;   /* enqueuers: the ring has room */
	pthread_cond_t cv_sync;   /* stream_sync: an operation finished */
	int worker_idle, room_waiters, sync_waiters;
	cpu_op ring[RING];
	uint64_t head, tail;  /* enqueued / taken counts */
	uint64_t finished;    /* operations run to completion */
	_Atomic uint64_t wait_ns;
	_Atomic uint64_t copy_ns;   /* time in OP_COPY (test delays included: they play the bus) */
	pf_rng rng;           /* worker-owned: the test delays */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(uint64_t us)
{
	if (!us)
		return;
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

static uint64_t rand_delay(pf_stream *s, uint32_t max_us)
{
	return max_us ? pf_rng_below(&s->rng, (uint64_t)max_us + 1) : 0;
}

/* Run one operation on the worker thread. */
static void run_op(pf_stream *s, cpu_op *op)
{
	cpu_dev *d = s->dev;
	switch (op->type) {
	case OP_COPY: {
		uint64_t t0 = now_ns();
		uint64_t us = rand_delay(s, d->o.test_copy_delay_us);
		size_t half = op->u.mem.n / 2;
		sleep_us(us / 2);
		memcpy(op->u.mem.dst, op->u.mem.src, half);
		sleep_us(us - us / 2);
		memcpy((char *)op->u.mem.dst + half,
		       (const char *)op->u.mem.src + half, op->u.mem.n - half);
		atomic_fetch_add(&s->copy_ns, now_ns() - t0);
		break;
	}
	case OP_MEMSET:
		memset(op->u.mem.dst, op->u.mem.v, op->u.mem.n);
		break;
	case OP_RECORD: {
		pthread_mutex_lock(&d->mu);
		if (op->u.ev.gen > op->u.ev.e->done)
			op->u.ev.e->done = op->u.ev.gen;
		int wake = d->ev_waiters > 0;
		pthread_mutex_unlock(&d->mu);
		if (wake)
			pthread_cond_broadcast(&d->cv);
		break;
	}
	case OP_WAIT: {
		pthread_mutex_lock(&d->mu);
		if (op->u.ev.e->done < op->u.ev.gen) {
			uint64_t t0 = now_ns();
			d->ev_waiters++;
			while (op->u.ev.e->done < op->u.ev.gen)
				pthread_cond_wait(&d->cv, &d->mu);
			d->ev_waiters--;
			atomic_fetch_add(&s->wait_ns, now_ns() - t0);
		}
		pthread_mutex_unlock(&d->mu);
		break;
	}
	case OP_HOSTFN:
		op->u.host.fn(op->u.host.arg);
		break;
	case OP_GEMM:
		sleep_us(rand_delay(s, d->o.test_compute_delay_us));
		pf_cpu_gemm(op->u.gemm.ta, op->u.gemm.tb, op->u.gemm.m,
			    op->u.gemm.n, op->u.gemm.k, op->u.gemm.alpha,
			    op->u.gemm.A, op->u.gemm.lda, op->u.gemm.B,
			    op->u.gemm.ldb, op->u.gemm.beta, op->u.gemm.C,
			    op->u.gemm.ldc);
		break;
	case OP_KERNEL:
		sleep_us(rand_delay(s, d->o.test_compute_delay_us));
		pf_cpu_kernel(&op->u.k);
		break;
	}
}

static void *worker(void *arg)
{
	pf_stream *s = arg;
	pf_cpu_set_threads(s->dev->o.cpu_threads > 0 ? s->dev->o.cpu_threads : 1);
	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (s->tail == s->head) {
			s->worker_idle = 1;
			pthread_cond_wait(&s->cv_work, &s->mu);
			s->worker_idle = 0;
		}
		cpu_op op = s->ring[s->tail % RING];
		s->tail++;
		int room = s->room_waiters > 0;
		pthread_mutex_unlock(&s->mu);
		if (room)
			pthread_cond_broadcast(&s->cv_room);
		if (op.type == OP_STOP)
			return NULL;
		run_op(s, &op);
		pthread_mutex_lock(&s->mu);
		s->finished++;
		int sync = s->sync_waiters > 0;
		pthread_mutex_unlock(&s->mu);
		if (sync)
			pthread_cond_broadcast(&s->cv_sync);
	}
}

/* Append op to s's FIFO, waiting while the ring is full. */
static int enqueue(pf_stream *s, const cpu_op *op)
{
	pthread_mutex_lock(&s->mu);
	while (s->head - s->tail >= RING) {
		s->room_waiters++;
		pthread_cond_wait(&s->cv_room, &s->mu);
		s->room_waiters--;
	}
	s->ring[s->head % RING] = *op;
	s->head++;
	int wake = s->worker_idle;
	pthread_mutex_unlock(&s->mu);
	if (wake)
		pthread_cond_signal(&s->cv_work);
	return 0;
}

#if defined(HAVE_CBLAS)
/* OpenBLAS's name for the kernels it chose (weak: other CBLAS lack it).
 * Worth showing: on a CPU its build does not know it falls back to generic
 * "Prescott" kernels, several times slower (seen on an H100 host's Xeon,
 * Debian 12's OpenBLAS 0.3.21; OPENBLAS_CORETYPE overrides the choice). */
extern char *openblas_get_corename(void) __attribute__((weak));
#endif

static int cpu_open(void **ctx, const pf_device_opts *o, char *info,
		    size_t infolen, pf_error *err)
{
	cpu_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return pf_error_set(err, PF_ENOMEM, "cpu device: out of memory");
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->o = *o;
	int th = o->cpu_threads > 0 ? o->cpu_threads : 1;
#if defined(HAVE_CBLAS)
	const char *core = openblas_get_corename ? openblas_get_corename() : NULL;
	if (core)
		snprintf(info, infolen, "cpu: OpenBLAS (%s kernels), %d thread%s", core,
			 th, th > 1 ? "s" : "");
	else
		snprintf(info, infolen, "cpu: CBLAS, %d thread%s", th, th > 1 ? "s" : "");
#else
	snprintf(info, infolen, "cpu: reference GEMM (no CBLAS)");
#endif
	*ctx = d;
	return 0;
}

static void cpu_close(void *ctx)
{
	cpu_dev *d = ctx;
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
}

static int cpu_alloc(void *ctx, void **p, size_t n, pf_error *err)
{
	size_t r = (n + 255) & ~(size_t)255;
	if (r < n || !(*p = aligned_alloc(256, r)))
		return pf_error_set(err, PF_ENOMEM,
				    "cpu device: cannot allocate %zu bytes", n);
	return 0;
}

static void cpu_free(void *ctx, void *p)
{
	free(p);
}

/* Free a stream whose worker is not running (never started, or joined). */
static void stream_destroy(pf_stream *s)
{
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv_work);
	pthread_cond_destroy(&s->cv_room);
	pthread_cond_destroy(&s->cv_sync);
	free(s);
}

static int cpu_stream_new(void *ctx, pf_stream **sp, pf_error *err)
{
	cpu_dev *d = ctx;
	pf_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return pf_error_set(err, PF_ENOMEM, "cpu stream: out of memory");
	s->dev = d;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv_work, NULL);
	pthread_cond_init(&s->cv_room, NULL);
	pthread_cond_init(&s->cv_sync, NULL);
	pf_rng_seed(&s->rng, d->o.test_seed, atomic_fetch_add(&d->nstreams, 1));
	if (pthread_create(&s->th, NULL, worker, s) != 0) {
		stream_destroy(s);
		return pf_error_set(err, PF_ENOMEM, "cpu stream: cannot start thread");
	}
	*sp = s;
	return 0;
}

static void cpu_stream_free(void *ctx, pf_stream *s)
{
	cpu_op op = { .type = OP_STOP };
	enqueue(s, &op);
	pthread_join(s->th, NULL);
	stream_destroy(s);
}

static int cpu_stream_sync(void *ctx, pf_stream *s, pf_error *err)
{
	pthread_mutex_lock(&s->mu);
	uint64_t target = s->head;
	s->sync_waiters++;
	while (s->finished < target)
		pthread_cond_wait(&s->cv_sync, &s->mu);
	s->sync_waiters--;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static uint64_t cpu_stream_copy_ns(void *ctx, pf_stream *s)
{
	return atomic_load(&s->copy_ns);
}

static uint64_t cpu_stream_wait_ns(void *ctx, pf_stream *s)
{
	return atomic_load(&s->wait_ns);
}

static int cpu_event_new(void *ctx, pf_event **e, pf_error *err)
{
	if (!(*e = calloc(1, sizeof(**e))))
		return pf_error_set(err, PF_ENOMEM, "cpu event: out of memory");
	return 0;
}

static void cpu_event_free(void *ctx, pf_event *e)
{
	free(e);
}

static int cpu_event_record(void *ctx, pf_event *e, pf_stream *s, pf_error *err)
{
	cpu_dev *d = ctx;
	cpu_op op = { .type = OP_RECORD };
	op.u.ev.e = e;
	/* The generation is taken under the stream's enqueue order: one thread
	 * feeds a stream, so records of one stream reach the ring in order. */
	pthread_mutex_lock(&d->mu);
	op.u.ev.gen = ++e->recorded;
	pthread_mutex_unlock(&d->mu);
	return enqueue(s, &op);
}

static int cpu_stream_wait_event(void *ctx, pf_stream *s, pf_event *e,
				 pf_error *err)
{
	cpu_dev *d = ctx;
	cpu_op op = { .type = OP_WAIT };
	op.u.ev.e = e;
	pthread_mutex_lock(&d->mu);
	op.u.ev.gen = e->recorded;
	pthread_mutex_unlock(&d->mu);
	if (op.u.ev.gen == 0)
		return 0;                       /* never recorded: complete */
	return enqueue(s, &op);
}

static int cpu_event_query(void *ctx, pf_event *e)
{
	cpu_dev *d = ctx;
	pthread_mutex_lock(&d->mu);
	int done = e->done >= e->recorded;
	pthread_mutex_unlock(&d->mu);
	return done;
}

static int cpu_event_sync(void *ctx, pf_event *e, pf_error *err)
{
	cpu_dev *d = ctx;
	pthread_mutex_lock(&d->mu);
	uint64_t target = e->recorded;
	d->ev_waiters++;
	while (e->done < target)
		pthread_cond_wait(&d->cv, &d->mu);
	d->ev_waiters--;
	pthread_mutex_unlock(&d->mu);
	return 0;
}

static int cpu_memcpy(void *ctx, pf_stream *s, void *dst, const void *src,
		      size_t n, int kind, pf_error *err)
{
	cpu_op op = { .type = OP_COPY };
	op.u.mem.dst = dst;
	op.u.mem.src = src;
	op.u.mem.n = n;
	return enqueue(s, &op);
}

static int cpu_memset(void *ctx, pf_stream *s, void *dst, int v, size_t n,
		      pf_error *err)
{
	cpu_op op = { .type = OP_MEMSET };
	op.u.mem.dst = dst;
	op.u.mem.v = v;
	op.u.mem.n = n;
	return enqueue(s, &op);
}

static int cpu_host_func(void *ctx, pf_stream *s, void (*fn)(void *), void *arg,
			 pf_error *err)
{
	cpu_op op = { .type = OP_HOSTFN };
	op.u.host.fn = fn;
	op.u.host.arg = arg;
	return enqueue(s, &op);
}

static int cpu_gemm(void *ctx, pf_stream *s, int ta, int tb, int m, int n, int k,
		    float alpha, const float *A, int lda, const float *B, int ldb,
		    float beta, float *C, int ldc, pf_error *err)
{
	cpu_op op = { .type = OP_GEMM };
	op.u.gemm.ta = ta;
	op.u.gemm.tb = tb;
	op.u.gemm.m = m;
	op.u.gemm.n = n;
	op.u.gemm.k = k;
	op.u.gemm.alpha = alpha;
	op.u.gemm.A = A;
	op.u.gemm.lda = lda;
	op.u.gemm.B = B;
	op.u.gemm.ldb = ldb;
	op.u.gemm.beta = beta;
	op.u.gemm.C = C;
	op.u.gemm.ldc = ldc;
	return enqueue(s, &op);
}

static int cpu_kernel(void *ctx, pf_stream *s, const pf_kernel *k, pf_error *err)
{
	cpu_op op = { .type = OP_KERNEL };
	op.u.k = *k;
	return enqueue(s, &op);
}

/* The fused epilogues as the unfused operations, in the same order (so the
 * same bits), with the mask in the aux layout: row r's bits at
 * aux + r * pf_epilogue_aux_bytes(1, n). */
static int cpu_gemm_bias_act(void *ctx, pf_stream *s, int m, int n, int k,
			     const float *A, int lda, const float *W, int ldw,
			     const float *bias, int relu, float *C, void *aux,
			     pf_error *err)
{
	pf_kernel ba = { .kind = PF_K_BIAS_ACT, .out = C, .in = bias, .rows = m,
			 .cols = n, .flag = relu };
	pf_kernel mk = { .kind = PF_K_RELU_MASK, .out = aux, .in = C, .rows = m,
			 .cols = n };
	int rc = cpu_gemm(ctx, s, 0, 0, m, n, k, 1.0f, A, lda, W, ldw, 0.0f, C, n,
			  err);
	if (rc == 0)
		rc = cpu_kernel(ctx, s, &ba, err);
	if (rc == 0 && aux)
		rc = cpu_kernel(ctx, s, &mk, err);
	return rc;
}

static int cpu_gemm_drelu_bgrad(void *ctx, pf_stream *s, int m, int n, int k,
				const float *A, int lda, const float *W, int ldw,
				const void *aux, float *C, float *db, pf_error *err)
{
	pf_kernel mg = { .kind = PF_K_MASK_GRAD, .out = C, .in = aux, .rows = m,
			 .cols = n };
	pf_kernel bg = { .kind = PF_K_BIAS_GRAD, .out = db, .in = C, .rows = m,
			 .cols = n };
	int rc = cpu_gemm(ctx, s, 0, 1, m, n, k, 1.0f, A, lda, W, ldw, 0.0f, C, n,
			  err);
	if (rc == 0)
		rc = cpu_kernel(ctx, s, &mg, err);
	if (rc == 0)
		rc = cpu_kernel(ctx, s, &bg, err);
	return rc;
}

const pf_dev_ops pf_dev_cpu_ops = {
	.abi = PF_DEV_ABI,
	.kind = "cpu",
	.open = cpu_open,
	.close = cpu_close,
	.dev_alloc = cpu_alloc,
	.dev_free = cpu_free,
	.host_alloc = cpu_alloc,
	.host_free = cpu_free,
	.stream_new = cpu_stream_new,
	.stream_free = cpu_stream_free,
	.stream_sync = cpu_stream_sync,
	.stream_wait_ns = cpu_stream_wait_ns,
	.stream_copy_ns = cpu_stream_copy_ns,
	.event_new = cpu_event_new,
	.event_free = cpu_event_free,
	.event_record = cpu_event_record,
	.stream_wait_event = cpu_stream_wait_event,
	.event_query = cpu_event_query,
	.event_sync = cpu_event_sync,
	.memcpy_async = cpu_memcpy,
	.memset_async = cpu_memset,
	.host_func = cpu_host_func,
	.gemm = cpu_gemm,
	.kernel = cpu_kernel,
	.gemm_bias_act = cpu_gemm_bias_act,
	.gemm_drelu_bgrad = cpu_gemm_drelu_bgrad,
};
