/*
 * pf_cuda_kernels.h - internal to the cuda module: launch one pf_kernel
 * record (kernels.cu) on a CUDA stream.  Returns a cudaError_t as int
 * (0 = cudaSuccess).
 */
#ifndef PF_CUDA_KERNELS_H
#define PF_CUDA_KERNELS_H

#include <cuda_runtime.h>

#include "pf_device_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

int pf_cuda_kernel_launch(const pf_kernel *k, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif /* PF_CUDA_KERNELS_H */
