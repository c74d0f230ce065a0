/*
 * pf_cpu_kernels.h - internal: the cpu backend's arithmetic (cpu_kernels.c),
 * run on a stream's worker thread.  Same meaning as the pf_gemm / pf_k_*
 * calls of pf_device.h, executed at once.
 */
#ifndef PF_CPU_KERNELS_H
#define PF_CPU_KERNELS_H

#include "pf_device_backend.h"

/* Row-major C = alpha op(A) op(B) + beta C (cblas_sgemm, or a loop). */
void pf_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha,
		 const float *A, int lda, const float *B, int ldb, float beta,
		 float *C, int ldc);

/* Run one kernel record now. */
void pf_cpu_kernel(const pf_kernel *k);

/* Threads the BLAS may use (OpenBLAS only; a no-op otherwise). */
void pf_cpu_set_threads(int n);

#endif /* PF_CPU_KERNELS_H */
