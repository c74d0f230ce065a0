/*
 * kernels.cu - the model's CUDA kernels and their launchers (C linkage,
 * declared in pf_cuda_kernels.h).  Each launcher enqueues on the given
 * stream and returns cudaGetLastError(); the arithmetic matches
 * cpu_kernels.c operation for operation (expf/logf/powf in float) so the
 * two backends agree to rounding.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "pf_cuda_kernels.h"

#define THREADS 256

static unsigned blocks_for(size_t n)
{
	size_t b = (n + THREADS - 1) / THREADS;
	return (unsigned)(b > 4096 ? 4096 : (b ? b : 1));
}

__global__ void k_u8_to_f32(float *dst, const uint8_t *src, size_t n, float scale)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x)
		dst[i] = src[i] * scale;
}

__global__ void k_bias_act(float *y, const float *b, int rows, int cols, int relu)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float z = y[i] + b[i % cols];
		y[i] = relu && z < 0 ? 0.0f : z;
	}
}

__global__ void k_relu_grad(float *dy, const float *y, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x)
		if (!(y[i] > 0))
			dy[i] = 0;
}

__device__ static long long label_at(const void *labels, int t, int r)
{
	switch (t) {
	case 1: return ((const uint8_t *)labels)[r];
	case 2: return ((const int32_t *)labels)[r];
	default: return ((const int64_t *)labels)[r];
	}
}

/* One thread per row: the model's rows are short (classes). */
__global__ void k_softmax_xent(const float *logits, const void *labels, int lt,
			       int rows, int cols, float *dl, float scale,
			       double *acc)
{
	int r = blockIdx.x * blockDim.x + threadIdx.x;
	if (r >= rows)
		return;
	const float *x = logits + (size_t)r * cols;
	float *g = dl ? dl + (size_t)r * cols : NULL;
	long long y = label_at(labels, lt, r);
	if (y < 0 || y >= cols) {
		atomicAdd(&acc[2], 1.0);
		if (g)
			for (int c = 0; c < cols; c++)
				g[c] = 0;
		return;
	}
	int am = 0;
	float mx = x[0];
	for (int c = 1; c < cols; c++)
		if (x[c] > mx) {
			mx = x[c];
			am = c;
		}
	float sum = 0;
	for (int c = 0; c < cols; c++)
		sum += expf(x[c] - mx);
	float lse = mx + logf(sum);
	atomicAdd(&acc[0], (double)(lse - x[y]));
	if (am == y)
		atomicAdd(&acc[1], 1.0);
	if (g)
		for (int c = 0; c < cols; c++)
			g[c] = (expf(x[c] - lse) - (c == y ? 1.0f : 0.0f)) * scale;
}

/*
 * Bias gradient, a deterministic block reduction: a block of 32 x 32
 * threads owns 32 columns (threadIdx.x, so a warp reads 32 adjacent floats
 * of one row); row-thread ty sums rows ty, ty + 32, ... in order, then the
 * 32 partial sums of each column are added by a fixed shared-memory tree
 * (16, 8, 4, 2, 1).  No atomics: the order depends on rows only, so the
 * same inputs give the same bits on every run (the summation order differs
 * from the cpu backend's row-by-row loop: results agree to rounding).
 */
#define BG_COLS 32
#define BG_ROWS 32
__global__ void k_bias_grad(float *db, const float *dy, int rows, int cols)
{
	__shared__ float part[BG_ROWS][BG_COLS + 1];
	int c = blockIdx.x * BG_COLS + threadIdx.x;
	float s = 0;
	if (c < cols)
		for (int r = threadIdx.y; r < rows; r += BG_ROWS)
			s += dy[(size_t)r * cols + c];
	part[threadIdx.y][threadIdx.x] = s;
	__syncthreads();
	for (int h = BG_ROWS / 2; h > 0; h /= 2) {
		if (threadIdx.y < h)
			part[threadIdx.y][threadIdx.x] +=
				part[threadIdx.y + h][threadIdx.x];
		__syncthreads();
	}
	if (threadIdx.y == 0 && c < cols)
		db[c] = part[0][threadIdx.x];
}

__global__ void k_adam(float *w, const float *g, float *m, float *v, size_t n,
		       float lr, float b1, float b2, float eps, const int32_t *tp)
{
	int t = *tp < 1 ? 1 : *tp;
	float lr_t = lr * sqrtf(1.0f - powf(b2, (float)t)) /
		     (1.0f - powf(b1, (float)t));
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float gi = g[i];
		float mi = b1 * m[i] + (1.0f - b1) * gi;
		float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		w[i] -= lr_t * mi / (sqrtf(vi) + eps);
	}
}

__global__ void k_counter_add(int32_t *c, int v)
{
	*c += v;
}

__device__ static unsigned long long global_ns(void)
{
	unsigned long long t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}

/* pf_k_seq_canary, one block: pass 1, thread 0 spins wait_us on the global
 * timer (clock64 bounds the spin should the timer not move), pass 2, then
 * poison once every thread's reads are done, and one thread adds the
 * block's counts.  The slot is read through volatile: pass 2 must see a
 * copy landing during the spin. */
__global__ void k_seq_canary(int64_t *slot_, size_t rows, long long first,
			     unsigned wait_us, unsigned long long *cnt)
{
	volatile long long *slot = (volatile long long *)slot_;
	const long long poison = (long long)0xDBDBDBDBDBDBDBDBull;
	__shared__ unsigned long long torn_s, pois_s, sum_s;
	if (threadIdx.x == 0)
		torn_s = pois_s = sum_s = 0;
	__syncthreads();
	unsigned long long torn = 0, pois = 0, sum = 0;
	for (size_t i = threadIdx.x; i < rows; i += blockDim.x) {
		long long v = slot[i];
		if (v == poison)
			pois++;
		else if (v != first + (long long)i)
			torn++;
		sum += (unsigned long long)v;
	}
	__syncthreads();
	if (threadIdx.x == 0 && wait_us) {
		unsigned long long t0 = global_ns(), c0 = clock64();
		while (global_ns() - t0 < wait_us * 1000ull &&
		       (unsigned long long)clock64() - c0 < wait_us * 5000000ull)
			;
	}
	__syncthreads();
	for (size_t i = threadIdx.x; i < rows; i += blockDim.x)
		if (slot[i] != first + (long long)i)
			torn++;
	__syncthreads();
	for (size_t i = threadIdx.x; i < rows; i += blockDim.x)
		slot[i] = poison;
	atomicAdd(&torn_s, torn);
	atomicAdd(&pois_s, pois);
	atomicAdd(&sum_s, sum);
	__syncthreads();
	if (threadIdx.x == 0) {
		atomicAdd(&cnt[0], torn_s);
		atomicAdd(&cnt[1], pois_s);
		atomicAdd(&cnt[2], 1ull);
		atomicAdd(&cnt[3], sum_s);
	}
}

extern "C" int pf_cuda_kernel_launch(const pf_kernel *k, cudaStream_t s)
{
	switch (k->kind) {
	case PF_K_U8_TO_F32:
		k_u8_to_f32<<<blocks_for(k->n), THREADS, 0, s>>>(
			(float *)k->out, (const uint8_t *)k->in, k->n, k->f[0]);
		break;
	case PF_K_BIAS_ACT:
		k_bias_act<<<blocks_for((size_t)k->rows * k->cols), THREADS, 0, s>>>(
			(float *)k->out, (const float *)k->in, k->rows, k->cols,
			k->flag);
		break;
	case PF_K_RELU_GRAD:
		k_relu_grad<<<blocks_for(k->n), THREADS, 0, s>>>(
			(float *)k->out, (const float *)k->in2, k->n);
		break;
	case PF_K_SOFTMAX_XENT:
		k_softmax_xent<<<blocks_for(k->rows), THREADS, 0, s>>>(
			(const float *)k->in, k->in2, k->flag, k->rows, k->cols,
			(float *)k->out, k->f[0], k->acc);
		break;
	case PF_K_BIAS_GRAD:
		k_bias_grad<<<(unsigned)((k->cols + BG_COLS - 1) / BG_COLS),
			      dim3(BG_COLS, BG_ROWS), 0, s>>>(
			(float *)k->out, (const float *)k->in, k->rows, k->cols);
		break;
	case PF_K_ADAM:
		k_adam<<<blocks_for(k->n), THREADS, 0, s>>>(
			(float *)k->out, (const float *)k->in, k->m, k->v, k->n,
			k->f[0], k->f[1], k->f[2], k->f[3], k->t);
		break;
	case PF_K_COUNTER_ADD:
		k_counter_add<<<1, 1, 0, s>>>((int32_t *)k->out, k->flag);
		break;
	case PF_K_SEQ_CANARY:
		k_seq_canary<<<1, 1024, 0, s>>>((int64_t *)k->out, k->n,
						(long long)k->i64,
						(unsigned)k->flag,
						(unsigned long long *)k->cnt);
		break;
	default:
		return (int)cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}
