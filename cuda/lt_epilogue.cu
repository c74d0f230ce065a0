/*
 * lt_epilogue.cu - the cuda backend's fused GEMM epilogues on cuBLASLt
 * (pf_cuda_lt.h has the layouts).  Each call builds its descriptors, asks
 * cublasLtMatmulAlgoGetHeuristic once per problem (shape, strides,
 * epilogue, pointer alignment) and keeps the answer, including "none", in
 * a small cache, then enqueues cublasLtMatmul on the stream.
 */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_cuda_lt.h"

#define LT_CACHE 32

typedef struct lt_key {
	int epi, m, n, k, lda, ldw, align;
} lt_key;

struct pf_lt {
	cublasLtHandle_t h;
	int tf32;
	struct {
		lt_key key;
		int have;                 /* 1: algo valid; 0: none found */
		cublasLtMatmulAlgo_t algo;
	} cache[LT_CACHE];
	int ncache, next;
};

extern "C" pf_lt *pf_lt_new(int tf32)
{
	pf_lt *lt = (pf_lt *)calloc(1, sizeof(*lt));
	if (!lt)
		return NULL;
	if (cublasLtCreate(&lt->h) != CUBLAS_STATUS_SUCCESS) {
		free(lt);
		return NULL;
	}
	lt->tf32 = tf32;
	return lt;
}

extern "C" void pf_lt_free(pf_lt *lt)
{
	if (!lt)
		return;
	cublasLtDestroy(lt->h);
	free(lt);
}

/* The lowest alignment (1..16 bytes) among the pointers: heuristics pick
 * kernels by it, so it is part of the cache key. */
static int align_of(const void *const *p, int np)
{
	int a = 16;
	for (int i = 0; i < np; i++) {
		uintptr_t v = (uintptr_t)p[i];
		while (a > 1 && v % (uintptr_t)a)
			a /= 2;
	}
	return a;
}

/* The descriptors of one fused GEMM, destroyed together. */
typedef struct lt_desc {
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t a, b, d;
	cublasLtMatmulPreference_t pref;
} lt_desc;

static void desc_free(lt_desc *ds)
{
	if (ds->pref)
		cublasLtMatmulPreferenceDestroy(ds->pref);
	if (ds->d)
		cublasLtMatrixLayoutDestroy(ds->d);
	if (ds->b)
		cublasLtMatrixLayoutDestroy(ds->b);
	if (ds->a)
		cublasLtMatrixLayoutDestroy(ds->a);
	if (ds->op)
		cublasLtMatmulDescDestroy(ds->op);
}

#define LT_TRY(x)                                                              \
	do {                                                                   \
		cublasStatus_t st_ = (x);                                      \
		if (st_ != CUBLAS_STATUS_SUCCESS) {                            \
			desc_free(&ds);                                        \
			return -(int)st_;                                      \
		}                                                              \
	} while (0)

/*
 * One column-major D[M,N] = op(A) B with epilogue epi: A stored [ar, ac]
 * (ld lda), op transA; B [K, N] (ld ldb); D dense [M, N]; bias (or the
 * bias gradient) and the mask aux as the epilogue reads or writes them.
 */
static int lt_run(pf_lt *lt, cudaStream_t s, cublasLtEpilogue_t epi,
		  cublasOperation_t transA, int M, int N, int K, const float *A,
		  int lda, const float *B, int ldb, float *D, const void *bias,
		  const void *aux, const lt_key *key)
{
	lt_desc ds;
	memset(&ds, 0, sizeof(ds));
	cublasComputeType_t ct = lt->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
					  : CUBLAS_COMPUTE_32F;
	int64_t aux_ld = ((int64_t)M + 127) / 128 * 128;
	int ar = transA == CUBLAS_OP_N ? M : K, ac = transA == CUBLAS_OP_N ? K : M;
	LT_TRY(cublasLtMatmulDescCreate(&ds.op, ct, CUDA_R_32F));
	LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSA,
					      &transA, sizeof(transA)));
	LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_EPILOGUE,
					      &epi, sizeof(epi)));
	LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
					      &bias, sizeof(bias)));
	if (aux) {
		LT_TRY(cublasLtMatmulDescSetAttribute(
			ds.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
			sizeof(aux)));
		LT_TRY(cublasLtMatmulDescSetAttribute(
			ds.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
			sizeof(aux_ld)));
	}
	LT_TRY(cublasLtMatrixLayoutCreate(&ds.a, CUDA_R_32F, ar, ac, lda));
	LT_TRY(cublasLtMatrixLayoutCreate(&ds.b, CUDA_R_32F, K, N, ldb));
	LT_TRY(cublasLtMatrixLayoutCreate(&ds.d, CUDA_R_32F, M, N, M));
	int slot = -1;
	for (int i = 0; i < lt->ncache; i++)
		if (!memcmp(&lt->cache[i].key, key, sizeof(*key)))
			slot = i;
	if (slot < 0) {
		size_t ws = 0;
		LT_TRY(cublasLtMatmulPreferenceCreate(&ds.pref));
		LT_TRY(cublasLtMatmulPreferenceSetAttribute(
			ds.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
			sizeof(ws)));
		cublasLtMatmulHeuristicResult_t r;
		int found = 0;
		cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
			lt->h, ds.op, ds.a, ds.b, ds.d, ds.d, ds.pref, 1, &r, &found);
		slot = lt->ncache < LT_CACHE ? lt->ncache++ : lt->next++ % LT_CACHE;
		lt->cache[slot].key = *key;
		lt->cache[slot].have = st == CUBLAS_STATUS_SUCCESS && found > 0;
		if (lt->cache[slot].have)
			lt->cache[slot].algo = r.algo;
	}
	if (!lt->cache[slot].have) {
		desc_free(&ds);
		return 1;
	}
	const float one = 1.0f, zero = 0.0f;
	LT_TRY(cublasLtMatmul(lt->h, ds.op, &one, A, ds.a, B, ds.b, &zero, D, ds.d,
			      D, ds.d, &lt->cache[slot].algo, NULL, 0, s));
	desc_free(&ds);
	return 0;
}

extern "C" int pf_lt_bias_act(pf_lt *lt, cudaStream_t s, int m, int n, int k,
			      const float *A, int lda, const float *W, int ldw,
			      const float *bias, int relu, float *C, void *aux)
{
	cublasLtEpilogue_t epi = !relu ? CUBLASLT_EPILOGUE_BIAS
				 : aux ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS
				       : CUBLASLT_EPILOGUE_RELU_BIAS;
	const void *p[] = { A, W, bias, C, aux ? aux : (const void *)C };
	lt_key key = { (int)epi, m, n, k, lda, ldw, align_of(p, 5) };
	/* D[n,m] = W[n,k] (W row-major [k,n], ld ldw) . X[k,m] (A, ld lda) */
	return lt_run(lt, s, epi, CUBLAS_OP_N, n, m, k, W, ldw, A, lda, C, bias,
		      aux, &key);
}

extern "C" int pf_lt_drelu_bgrad(pf_lt *lt, cudaStream_t s, int m, int n, int k,
				 const float *A, int lda, const float *W, int ldw,
				 const void *aux, float *C, float *db)
{
	cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DRELU_BGRAD;
	const void *p[] = { A, W, aux, C, db };
	lt_key key = { (int)epi, m, n, k, lda, ldw, align_of(p, 5) };
	/* D[n,m] = op(W) dY: W row-major [n,k] (ld ldw) is column-major
	 * [k,n], transposed to [n,k]; dY = A row-major [m,k] = [k,m] */
	return lt_run(lt, s, epi, CUBLAS_OP_T, n, m, k, W, ldw, A, lda, C, db,
		      aux, &key);
}
