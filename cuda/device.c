/*
 * device.c - pf_device: picks a backend (cpu, or the cuda module through
 * dlopen) and forwards the pf_device.h calls to its table, checking
 * arguments on the way so that backends only see well-formed requests.
 */
#include "config.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_device.h"
#include "pf_device_backend.h"

struct pf_device {
	const pf_dev_ops *ops;
	void *ctx;
	char info[160];
	char note[PF_ERROR_MSG_MAX];
	char math[64];
};

#ifndef PF_PKGLIBDIR
#define PF_PKGLIBDIR "/usr/local/lib/pipefeed"
#endif
#define PF_CUDA_MODULE_NAME "pf_cuda.so"

/* Try dlopen on path; on failure append dlerror() to why. */
static void *try_dlopen(const char *path, char *why, size_t cap)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h && why[0] == 0) {
		const char *e = dlerror();
		snprintf(why, cap, "%.380s", e ? e : path);
	}
	return h;
}

/*
 * The module beside this library, found from where the dynamic linker
 * loaded it: LIBDIR/pipefeed/pf_cuda.so (the install's pkglibdir, even when
 * the install was moved or made under DESTDIR) or LIBDIR/pf_cuda.so (the
 * build tree's cuda/.libs/).  Returns the handle, or NULL (why untouched
 * when there is no such file).
 */
static void *dlopen_beside_library(char *why, size_t cap)
{
	Dl_info info;
	if (!dladdr((void *)pf_device_open, &info) || !info.dli_fname)
		return NULL;
	const char *slash = strrchr(info.dli_fname, '/');
	if (!slash)
		return NULL;
	int dir = (int)(slash - info.dli_fname);
	static const char *rel[] = { PACKAGE "/" PF_CUDA_MODULE_NAME, PF_CUDA_MODULE_NAME };
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		char p[PATH_MAX];
		if (snprintf(p, sizeof(p), "%.*s/%s", dir, info.dli_fname, rel[i]) >= (int)sizeof(p))
			return NULL;
		if (access(p, R_OK) == 0)
			return try_dlopen(p, why, cap);
	}
	return NULL;
}

/*
 * Load the cuda module: $PF_CUDA_MODULE, then the build tree beside the
 * running program (program in the top build dir or in its .libs/, as
 * libtool leaves it), then beside this library (dlopen_beside_library),
 * then PF_PKGLIBDIR.  Returns the handle or NULL with `why` filled.
 */
static void *load_cuda_module(char *why, size_t cap)
{
	why[0] = 0;
	const char *env = getenv("PF_CUDA_MODULE");
	if (env && env[0])
		return try_dlopen(env, why, cap);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			static const char *rel[] = {
				"cuda/.libs/" PF_CUDA_MODULE_NAME,
				"../cuda/.libs/" PF_CUDA_MODULE_NAME,
				"../../cuda/.libs/" PF_CUDA_MODULE_NAME,
			};
			for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
				char p[PATH_MAX + 64];
				if (strlen(exe) > sizeof(p) - 64)
					break;
				snprintf(p, sizeof(p), "%s/%s", exe, rel[i]);
				if (access(p, R_OK) == 0)
					return try_dlopen(p, why, cap);
			}
		}
	}
	void *h = dlopen_beside_library(why, cap);
	if (h || why[0])
		return h;
	return try_dlopen(PF_PKGLIBDIR "/" PF_CUDA_MODULE_NAME, why, cap);
}

/* The module, loaded once per process and never unloaded: the CUDA runtime
 * and libstdc++ it pulls in keep state (exit handlers, allocations) that
 * must stay mapped, whether or not a device answered. */
static pthread_mutex_t module_mu = PTHREAD_MUTEX_INITIALIZER;
static void *module_handle;
static char module_why[400];

/* Open the cuda backend into d; PF_ENODEV with the reason in err. */
static int open_cuda(pf_device *d, const pf_device_opts *o, pf_error *err)
{
	char why[400];
	pthread_mutex_lock(&module_mu);
	if (!module_handle && !module_why[0])
		module_handle = load_cuda_module(module_why, sizeof(module_why));
	void *h = module_handle;
	snprintf(why, sizeof(why), "%s", module_why);
	pthread_mutex_unlock(&module_mu);
	if (!h)
		return pf_error_set(err, PF_ENODEV, "cuda module not loaded: %s",
				    why);
	pf_cuda_entry_fn entry;
	*(void **)&entry = dlsym(h, PF_CUDA_ENTRY_SYMBOL);
	const pf_dev_ops *ops = entry ? entry() : NULL;
	if (!ops || ops->abi != PF_DEV_ABI)
		return pf_error_set(err, PF_ENODEV,
				    "cuda module: no %s entry of ABI %d",
				    PF_CUDA_ENTRY_SYMBOL, PF_DEV_ABI);
	int rc = ops->open(&d->ctx, o, d->info, sizeof(d->info), err);
	if (rc < 0)
		return rc;
	d->ops = ops;
	if (ops->math)
		snprintf(d->math, sizeof(d->math), "%s", ops->math(d->ctx));
	return 0;
}

int pf_device_open(pf_device **dp, const char *kind, const pf_device_opts *opts,
		   pf_error *err)
{
	*dp = NULL;
	pf_device_opts o = { 0 };
	if (opts)
		o = *opts;
	if (!kind)
		kind = "auto";
	int want_cuda = !strcmp(kind, "cuda"), is_auto = !strcmp(kind, "auto");
	if (!want_cuda && !is_auto && strcmp(kind, "cpu"))
		return pf_error_set(err, PF_EINVAL,
				    "device '%s': expected auto, cpu or cuda", kind);
	pf_device *d = calloc(1, sizeof(*d));
	if (!d)
		return pf_error_set(err, PF_ENOMEM, "device: out of memory");
	if (want_cuda || is_auto) {
		pf_error e = { 0 };
		int rc = open_cuda(d, &o, &e);
		if (rc == 0) {
			*dp = d;
			return 0;
		}
		if (want_cuda) {
			free(d);
			if (err && err->code == 0)
				*err = e;
			return rc;
		}
		snprintf(d->note, sizeof(d->note), "cuda unavailable (%.400s); using cpu",
			 e.msg);
	}
	int rc = pf_dev_cpu_ops.open(&d->ctx, &o, d->info, sizeof(d->info), err);
	if (rc < 0) {
		free(d);
		return rc;
	}
	d->ops = &pf_dev_cpu_ops;
	if (o.tf32)
		snprintf(d->math, sizeof(d->math),
			 "fp32 (tf32 asked: no effect on the cpu backend)");
	*dp = d;
	return 0;
}

void pf_device_close(pf_device *d)
{
	if (!d)
		return;
	d->ops->close(d->ctx);
	free(d);
}

const char *pf_device_kind(const pf_device *d) { return d->ops->kind; }
/* The cpu backend's "device memory" is malloc'd host memory. */
int pf_device_reads_host(const pf_device *d) { return !strcmp(d->ops->kind, "cpu"); }
const char *pf_device_info(const pf_device *d) { return d->info; }
const char *pf_device_note(const pf_device *d) { return d->note; }
const char *pf_device_math(const pf_device *d)
{
	return d->math[0] ? d->math : "fp32";
}

int pf_device_native(pf_device *d, pf_stream *s, void **stream, int *ordinal,
		     pf_error *err)
{
	void *st = NULL;
	int ord = -1;
	if (stream)
		*stream = NULL;
	if (ordinal)
		*ordinal = -1;
	if (!d->ops->native)
		return pf_error_set(err, PF_ENODEV, "the %s device has no native handles",
				    d->ops->kind);
	int rc = d->ops->native(d->ctx, s, &st, &ord, err);
	if (rc < 0)
		return rc;
	if (stream)
		*stream = st;
	if (ordinal)
		*ordinal = ord;
	return 0;
}

int pf_dev_alloc(pf_device *d, void **p, size_t n, pf_error *err)
{
	*p = NULL;
	if (n == 0)
		return pf_error_set(err, PF_EINVAL, "device alloc of 0 bytes");
	return d->ops->dev_alloc(d->ctx, p, n, err);
}

void pf_dev_free(pf_device *d, void *p)
{
	if (p)
		d->ops->dev_free(d->ctx, p);
}

int pf_host_alloc(pf_device *d, void **p, size_t n, pf_error *err)
{
	*p = NULL;
	if (n == 0)
		return pf_error_set(err, PF_EINVAL, "pinned alloc of 0 bytes");
	return d->ops->host_alloc(d->ctx, p, n, err);
}

void pf_host_free(pf_device *d, void *p)
{
	if (p)
		d->ops->host_free(d->ctx, p);
}

int pf_stream_new(pf_device *d, pf_stream **s, pf_error *err)
{
	*s = NULL;
	return d->ops->stream_new(d->ctx, s, err);
}

void pf_stream_free(pf_device *d, pf_stream *s)
{
	if (s)
		d->ops->stream_free(d->ctx, s);
}

int pf_stream_sync(pf_device *d, pf_stream *s, pf_error *err)
{
	return d->ops->stream_sync(d->ctx, s, err);
}

uint64_t pf_stream_wait_ns(pf_device *d, pf_stream *s)
{
	return d->ops->stream_wait_ns(d->ctx, s);
}

int pf_event_new(pf_device *d, pf_event **e, pf_error *err)
{
	*e = NULL;
	return d->ops->event_new(d->ctx, e, err);
}

void pf_event_free(pf_device *d, pf_event *e)
{
	if (e)
		d->ops->event_free(d->ctx, e);
}

int pf_event_record(pf_device *d, pf_event *e, pf_stream *s, pf_error *err)
{
	return d->ops->event_record(d->ctx, e, s, err);
}

int pf_stream_wait_event(pf_device *d, pf_stream *s, pf_event *e, pf_error *err)
{
	return d->ops->stream_wait_event(d->ctx, s, e, err);
}

int pf_event_record_foreign(pf_device *d, pf_event *e, uintptr_t stream,
			    pf_error *err)
{
	if (!d->ops->event_record_foreign)
		return pf_error_set(err, PF_EINVAL,
				    "device %s: no streams of other libraries (record on stream 0x%jx)",
				    d->ops->kind, (uintmax_t)stream);
	return d->ops->event_record_foreign(d->ctx, e, stream, err);
}

int pf_foreign_wait_event(pf_device *d, uintptr_t stream, pf_event *e,
			  pf_error *err)
{
	if (!d->ops->foreign_wait_event)
		return pf_error_set(err, PF_EINVAL,
				    "device %s: no streams of other libraries (wait on stream 0x%jx)",
				    d->ops->kind, (uintmax_t)stream);
	return d->ops->foreign_wait_event(d->ctx, stream, e, err);
}

uint64_t pf_stream_copy_ns(pf_device *d, pf_stream *s)
{
	return d->ops->stream_copy_ns ? d->ops->stream_copy_ns(d->ctx, s) : 0;
}

int pf_event_query(pf_device *d, pf_event *e)
{
	return d->ops->event_query(d->ctx, e);
}

int pf_event_sync(pf_device *d, pf_event *e, pf_error *err)
{
	return d->ops->event_sync(d->ctx, e, err);
}

int pf_memcpy_async(pf_device *d, pf_stream *s, void *dst, const void *src,
		    size_t n, int kind, pf_error *err)
{
	if (n == 0)
		return 0;
	if (!dst || !src || kind < PF_H2D || kind > PF_D2D)
		return pf_error_set(err, PF_EINVAL, "memcpy: bad arguments");
	return d->ops->memcpy_async(d->ctx, s, dst, src, n, kind, err);
}

int pf_memset_async(pf_device *d, pf_stream *s, void *dst, int v, size_t n,
		    pf_error *err)
{
	if (n == 0)
		return 0;
	if (!dst)
		return pf_error_set(err, PF_EINVAL, "memset: NULL destination");
	return d->ops->memset_async(d->ctx, s, dst, v, n, err);
}

int pf_host_func(pf_device *d, pf_stream *s, void (*fn)(void *), void *arg,
		 pf_error *err)
{
	if (!fn)
		return pf_error_set(err, PF_EINVAL, "host_func: NULL function");
	return d->ops->host_func(d->ctx, s, fn, arg, err);
}

int pf_gemm(pf_device *d, pf_stream *s, int ta, int tb, int m, int n, int k,
	    float alpha, const float *A, int lda, const float *B, int ldb,
	    float beta, float *C, int ldc, pf_error *err)
{
	if (m <= 0 || n <= 0 || k <= 0 || !A || !B || !C ||
	    lda < (ta ? m : k) || ldb < (tb ? k : n) || ldc < n)
		return pf_error_set(err, PF_EINVAL,
				    "gemm: bad shape m=%d n=%d k=%d lda=%d ldb=%d ldc=%d",
				    m, n, k, lda, ldb, ldc);
	return d->ops->gemm(d->ctx, s, !!ta, !!tb, m, n, k, alpha, A, lda, B,
			    ldb, beta, C, ldc, err);
}

/* Enqueue kernel k after a last shape check. */
static int launch(pf_device *d, pf_stream *s, const pf_kernel *k, int ok,
		  const char *name, pf_error *err)
{
	if (!ok)
		return pf_error_set(err, PF_EINVAL, "kernel %s: bad arguments",
				    name);
	return d->ops->kernel(d->ctx, s, k, err);
}

int pf_k_u8_to_f32(pf_device *d, pf_stream *s, float *dst, const uint8_t *src,
		   size_t n, float scale, pf_error *err)
{
	pf_kernel k = { .kind = PF_K_U8_TO_F32, .out = dst, .in = src, .n = n,
			.f = { scale } };
	return launch(d, s, &k, dst && src && n > 0, "u8_to_f32", err);
}

int pf_k_bias_act(pf_device *d, pf_stream *s, float *y, const float *bias,
		  int rows, int cols, int relu, pf_error *err)
{
	pf_kernel k = { .kind = PF_K_BIAS_ACT, .out = y, .in = bias,
			.rows = rows, .cols = cols, .flag = !!relu };
	return launch(d, s, &k, y && bias && rows > 0 && cols > 0, "bias_act",
		      err);
}

int pf_k_relu_grad(pf_device *d, pf_stream *s, float *dy, const float *y,
		   size_t n, pf_error *err)
{
	pf_kernel k = { .kind = PF_K_RELU_GRAD, .out = dy, .in2 = y, .n = n };
	return launch(d, s, &k, dy && y && n > 0, "relu_grad", err);
}

int pf_k_softmax_xent(pf_device *d, pf_stream *s, const float *logits,
		      const void *labels, int label_type, int rows, int cols,
		      float *dlogits, float grad_scale, double *acc,
		      pf_error *err)
{
	pf_kernel k = { .kind = PF_K_SOFTMAX_XENT, .out = dlogits, .in = logits,
			.in2 = labels, .acc = acc, .rows = rows, .cols = cols,
			.flag = label_type, .f = { grad_scale } };
	int ok = logits && labels && acc && rows > 0 && cols > 0 &&
		 label_type >= PF_LABEL_U8 && label_type <= PF_LABEL_I64;
	return launch(d, s, &k, ok, "softmax_xent", err);
}

int pf_k_bias_grad(pf_device *d, pf_stream *s, float *db, const float *dy,
		   int rows, int cols, pf_error *err)
{
	pf_kernel k = { .kind = PF_K_BIAS_GRAD, .out = db, .in = dy,
			.rows = rows, .cols = cols };
	return launch(d, s, &k, db && dy && rows > 0 && cols > 0, "bias_grad",
		      err);
}

int pf_k_adam(pf_device *d, pf_stream *s, float *w, const float *g, float *m,
	      float *v, size_t n, float lr, float b1, float b2, float eps,
	      const int32_t *t, pf_error *err)
{
	pf_kernel k = { .kind = PF_K_ADAM, .out = w, .in = g, .m = m, .v = v,
			.t = t, .n = n, .f = { lr, b1, b2, eps } };
	int ok = w && g && m && v && t && n > 0 && b1 >= 0 && b1 < 1 &&
		 b2 >= 0 && b2 < 1 && eps > 0;
	return launch(d, s, &k, ok, "adam", err);
}

int pf_k_counter_add(pf_device *d, pf_stream *s, int32_t *c, int v,
		     pf_error *err)
{
	pf_kernel k = { .kind = PF_K_COUNTER_ADD, .out = c, .flag = v };
	return launch(d, s, &k, c != NULL, "counter_add", err);
}

int pf_k_seq_canary(pf_device *d, pf_stream *s, int64_t *slot, uint32_t rows,
		    int64_t first, uint32_t wait_us, int64_t *counters,
		    pf_error *err)
{
	pf_kernel k = { .kind = PF_K_SEQ_CANARY, .out = slot, .n = rows,
			.flag = (int)(wait_us > INT_MAX ? INT_MAX : wait_us),
			.cnt = counters, .i64 = first };
	return launch(d, s, &k, slot && counters && rows > 0, "seq_canary",
		      err);
}

size_t pf_epilogue_aux_bytes(int rows, int cols)
{
	if (rows < 1 || cols < 1)
		return 0;
	return (size_t)rows * (((size_t)cols + 127) / 128) * 16;
}

int pf_gemm_bias_act(pf_device *d, pf_stream *s, int m, int n, int k,
		     const float *A, int lda, const float *W, int ldw,
		     const float *bias, int relu, float *C, void *aux,
		     pf_error *err)
{
	if (m <= 0 || n <= 0 || k <= 0 || !A || !W || !bias || !C ||
	    lda < k || ldw < n || (aux && !relu))
		return pf_error_set(err, PF_EINVAL,
				    "gemm_bias_act: bad arguments m=%d n=%d k=%d lda=%d ldw=%d%s",
				    m, n, k, lda, ldw, aux && !relu ? ", a mask without relu" : "");
	if (!d->ops->gemm_bias_act)
		return 1;
	return d->ops->gemm_bias_act(d->ctx, s, m, n, k, A, lda, W, ldw, bias,
				     !!relu, C, aux, err);
}

int pf_gemm_drelu_bgrad(pf_device *d, pf_stream *s, int m, int n, int k,
			const float *A, int lda, const float *W, int ldw,
			const void *aux, float *C, float *db, pf_error *err)
{
	if (m <= 0 || n <= 0 || k <= 0 || !A || !W || !aux || !C || !db ||
	    lda < k || ldw < k)
		return pf_error_set(err, PF_EINVAL,
				    "gemm_drelu_bgrad: bad arguments m=%d n=%d k=%d lda=%d ldw=%d",
				    m, n, k, lda, ldw);
	if (!d->ops->gemm_drelu_bgrad)
		return 1;
	return d->ops->gemm_drelu_bgrad(d->ctx, s, m, n, k, A, lda, W, ldw, aux,
					C, db, err);
}

int pf_graph_supported(const pf_device *d)
{
	return d->ops->graph_begin != NULL;
}

int pf_graph_begin(pf_device *d, pf_stream *s, pf_error *err)
{
	if (!d->ops->graph_begin)
		return pf_error_set(err, PF_EINVAL, "%s device: no graph capture",
				    d->ops->kind);
	return d->ops->graph_begin(d->ctx, s, err);
}

int pf_graph_end(pf_device *d, pf_stream *s, pf_graph **g, pf_error *err)
{
	*g = NULL;
	if (!d->ops->graph_end)
		return pf_error_set(err, PF_EINVAL, "%s device: no graph capture",
				    d->ops->kind);
	return d->ops->graph_end(d->ctx, s, g, err);
}

int pf_graph_launch(pf_device *d, pf_graph *g, pf_stream *s, pf_error *err)
{
	if (!d->ops->graph_launch || !g)
		return pf_error_set(err, PF_EINVAL, "graph launch: no graph");
	return d->ops->graph_launch(d->ctx, g, s, err);
}

void pf_graph_free(pf_device *d, pf_graph *g)
{
	if (g && d->ops->graph_free)
		d->ops->graph_free(d->ctx, g);
}
