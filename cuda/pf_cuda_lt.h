/*
 * pf_cuda_lt.h - internal to the cuda module: the fused epilogues of
 * pf_gemm_bias_act / pf_gemm_drelu_bgrad on cuBLASLt (cuda/lt_epilogue.cu).
 *
 * Row-major arguments as pf_device.h gives them; the calls map them onto
 * column-major cuBLASLt (a row-major [r,c] matrix with row stride ld is a
 * column-major [c,r] one with leading dimension ld):
 *   forward   D[n,m] = W[n,k] . X[k,m] (+ bias[n], ReLU), mask [n,m]
 *   backward  D[n,m] = W^T[n,k] . dY[k,m], DRELU with the mask [n,m],
 *             BGRAD: db[n] = sum over the m columns
 * so the bias (length n, the layer's width) runs along D's rows, as
 * cuBLASLt's BIAS / BGRAD epilogues want, and the forward's mask has the
 * backward's output shape.  Mask leading dimension: n rounded up to 128
 * bits (pf_epilogue_aux_bytes).  No workspace: the module's streams may
 * run concurrently and one shared workspace would race.
 * Returns 0 (enqueued), 1 (no algorithm for this shape: nothing enqueued)
 * or -(cublasStatus_t).  The caller serializes calls (the heuristic cache).
 */
#ifndef PF_CUDA_LT_H
#define PF_CUDA_LT_H

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_lt pf_lt;

/* A cuBLASLt handle and its heuristic cache; tf32: FAST_TF32 compute.
 * NULL when cuBLASLt cannot be initialized (the caller then has no
 * epilogues). */
pf_lt *pf_lt_new(int tf32);
void pf_lt_free(pf_lt *lt);

int pf_lt_bias_act(pf_lt *lt, cudaStream_t s, int m, int n, int k,
		   const float *A, int lda, const float *W, int ldw,
		   const float *bias, int relu, float *C, void *aux);
int pf_lt_drelu_bgrad(pf_lt *lt, cudaStream_t s, int m, int n, int k,
		      const float *A, int lda, const float *W, int ldw,
		      const void *aux, float *C, float *db);

#ifdef __cplusplus
}
#endif
#endif /* PF_CUDA_LT_H */
