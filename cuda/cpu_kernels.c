/*
 * cpu_kernels.c - the cpu backend's arithmetic: the row-major GEMM (CBLAS,
 * or a plain loop when configure found none) and the model's kernels.
 * Called on a stream's worker thread by dev_cpu.c; pure functions of their
 * arguments, so the results do not depend on timing.
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "pf_cpu_kernels.h"
#include "pf_device.h"

#ifdef HAVE_CBLAS
#include <cblas.h>
#endif

void pf_cpu_set_threads(int n)
{
#if defined(HAVE_CBLAS) && defined(OPENBLAS_VERSION)
	openblas_set_num_threads(n);
#else
	(void)n;
#endif
}

void pf_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha,
		 const float *A, int lda, const float *B, int ldb, float beta,
		 float *C, int ldc)
{
#ifdef HAVE_CBLAS
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
		    tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B,
		    ldb, beta, C, ldc);
#else
	for (int i = 0; i < m; i++) {
		float *c = C + (size_t)i * ldc;
		for (int j = 0; j < n; j++)
			c[j] = beta == 0 ? 0 : beta * c[j];
		for (int p = 0; p < k; p++) {
			float a = alpha * (ta ? A[(size_t)p * lda + i]
					      : A[(size_t)i * lda + p]);
			if (a == 0)
				continue;
			if (!tb) {
				const float *b = B + (size_t)p * ldb;
				for (int j = 0; j < n; j++)
					c[j] += a * b[j];
			} else {
				for (int j = 0; j < n; j++)
					c[j] += a * B[(size_t)j * ldb + p];
			}
		}
	}
#endif
}

/* Label r of a label array of type t, as int64 (may be out of range). */
static int64_t label_at(const void *labels, int t, int r)
{
	switch (t) {
	case PF_LABEL_U8: return ((const uint8_t *)labels)[r];
	case PF_LABEL_I32: return ((const int32_t *)labels)[r];
	default: return ((const int64_t *)labels)[r];
	}
}

static void softmax_xent(const pf_kernel *k)
{
	const float *logits = k->in;
	float *dl = k->out;
	double loss = 0, correct = 0, bad = 0;
	for (int r = 0; r < k->rows; r++) {
		const float *x = logits + (size_t)r * k->cols;
		float *g = dl ? dl + (size_t)r * k->cols : NULL;
		int64_t y = label_at(k->in2, k->flag, r);
		if (y < 0 || y >= k->cols) {
			bad += 1;
			if (g)
				memset(g, 0, sizeof(float) * k->cols);
			continue;
		}
		int am = 0;
		float mx = x[0];
		for (int c = 1; c < k->cols; c++)
			if (x[c] > mx) {
				mx = x[c];
				am = c;
			}
		float sum = 0;
		for (int c = 0; c < k->cols; c++)
			sum += expf(x[c] - mx);
		float lse = mx + logf(sum);
		loss += lse - x[y];
		correct += am == y;
		if (g)
			for (int c = 0; c < k->cols; c++)
				g[c] = (expf(x[c] - lse) - (c == y)) * k->f[0];
	}
	k->acc[0] += loss;
	k->acc[1] += correct;
	k->acc[2] += bad;
}

/* Adam over every parameter: on the host the step's largest kernel after
 * the GEMMs (a third of a 1M-parameter MLP's step when scalar), and the
 * part of a step that every rank repeats, so it is vectorized: the
 * buffers are distinct (restrict), GCC, whose -O2 does not vectorize a
 * loop of unknown length, is told to here, and the library is built with
 * -fno-math-errno (cuda/Makemodule.am: a sqrtf that may set errno is not
 * vectorized; v >= 0 never sets it).  Each element's operations and their
 * order are the scalar loop's (no FMA contraction is enabled, sqrt and
 * division are exact): the same bits. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("-ftree-vectorize", "-fvect-cost-model=dynamic")))
#endif
static void adam(const pf_kernel *k)
{
	float *restrict w = k->out, *restrict m = k->m, *restrict v = k->v;
	const float *restrict g = k->in;
	float lr = k->f[0], b1 = k->f[1], b2 = k->f[2], eps = k->f[3];
	int t = *k->t < 1 ? 1 : *k->t;
	float lr_t = lr * sqrtf(1.0f - powf(b2, (float)t)) /
		     (1.0f - powf(b1, (float)t));
	for (size_t i = 0; i < k->n; i++) {
		m[i] = b1 * m[i] + (1.0f - b1) * g[i];
		v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
		w[i] -= lr_t * m[i] / (sqrtf(v[i]) + eps);
	}
}

/* pf_k_seq_canary: check, wait, check again, poison, count.  The slot is
 * read through a volatile pointer: a copy racing the check must be seen. */
static void seq_canary(const pf_kernel *k)
{
	volatile int64_t *slot = k->out;
	int64_t torn = 0, poisoned = 0;
	uint64_t sum = 0;
	for (size_t i = 0; i < k->n; i++) {
		int64_t v = slot[i];
		if (v == PF_CANARY_POISON)
			poisoned++;
		else if (v != k->i64 + (int64_t)i)
			torn++;
		sum += (uint64_t)v;
	}
	if (k->flag > 0) {
		struct timespec ts = { k->flag / 1000000, (long)(k->flag % 1000000) * 1000 };
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < k->n; i++)
		if (slot[i] != k->i64 + (int64_t)i)
			torn++;
	memset((void *)k->out, PF_CANARY_POISON_BYTE, k->n * sizeof(int64_t));
	k->cnt[0] += torn;
	k->cnt[1] += poisoned;
	k->cnt[2] += 1;
	k->cnt[3] = (int64_t)((uint64_t)k->cnt[3] + sum);
}

/* The epilogues' ReLU mask, one bit an element, each row padded to 128
 * bits (pf_epilogue_aux_bytes): written from y (RELU_MASK) or applied to
 * dy (MASK_GRAD, the same test as PF_K_RELU_GRAD's). */
static void relu_mask(const pf_kernel *k)
{
	size_t ld = ((size_t)k->cols + 127) / 128 * 16;
	for (int r = 0; r < k->rows; r++) {
		size_t o = (size_t)r * k->cols;
		if (k->kind == PF_K_RELU_MASK) {
			uint8_t *bits = (uint8_t *)k->out + (size_t)r * ld;
			const float *y = (const float *)k->in + o;
			memset(bits, 0, ld);
			for (int c = 0; c < k->cols; c++)
				if (y[c] > 0)
					bits[c >> 3] |= (uint8_t)(1u << (c & 7));
		} else {
			const uint8_t *bits = (const uint8_t *)k->in + (size_t)r * ld;
			float *dy = (float *)k->out + o;
			for (int c = 0; c < k->cols; c++)
				if (!(bits[c >> 3] >> (c & 7) & 1))
					dy[c] = 0;
		}
	}
}

void pf_cpu_kernel(const pf_kernel *k)
{
	switch (k->kind) {
	case PF_K_U8_TO_F32: {
		float *dst = k->out;
		const uint8_t *src = k->in;
		for (size_t i = 0; i < k->n; i++)
			dst[i] = src[i] * k->f[0];
		break;
	}
	case PF_K_BIAS_ACT: {
		float *y = k->out;
		const float *b = k->in;
		for (int r = 0; r < k->rows; r++) {
			float *row = y + (size_t)r * k->cols;
			for (int c = 0; c < k->cols; c++) {
				float z = row[c] + b[c];
				row[c] = k->flag && z < 0 ? 0 : z;
			}
		}
		break;
	}
	case PF_K_RELU_GRAD: {
		float *dy = k->out;
		const float *y = k->in2;
		for (size_t i = 0; i < k->n; i++)
			if (!(y[i] > 0))
				dy[i] = 0;
		break;
	}
	case PF_K_SOFTMAX_XENT:
		softmax_xent(k);
		break;
	case PF_K_BIAS_GRAD: {
		float *db = k->out;
		const float *dy = k->in;
		for (int c = 0; c < k->cols; c++)
			db[c] = 0;
		for (int r = 0; r < k->rows; r++)
			for (int c = 0; c < k->cols; c++)
				db[c] += dy[(size_t)r * k->cols + c];
		break;
	}
	case PF_K_ADAM:
		adam(k);
		break;
	case PF_K_COUNTER_ADD:
		*(int32_t *)k->out += k->flag;
		break;
	case PF_K_SEQ_CANARY:
		seq_canary(k);
		break;
	case PF_K_RELU_MASK:
	case PF_K_MASK_GRAD:
		relu_mask(k);
		break;
	}
}
