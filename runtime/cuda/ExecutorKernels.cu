//===- ExecutorKernels.cu - Glue kernels of the CUDA executor -------------===//

#include "runtime/cuda/ExecutorKernels.h"

#include <cuda_runtime.h>

#include <string>

namespace mixer::cuda {

namespace {

__global__ void __launch_bounds__(1)
    narrowToFloatKernel(const double *in, float *out) {
  *out = static_cast<float>(*in);
}

__global__ void __launch_bounds__(1)
    clipFactorKernel(const float *norm, double maxNorm, float *scale) {
  double total = *norm;
  *scale = total >= maxNorm ? static_cast<float>(maxNorm / total) : 1.0f;
}

Status launched(const char *kernel) {
  cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess)
    return Status::success();
  return Status::error(std::string(kernel) +
                       ": launch failed: " + cudaGetErrorString(error));
}

} // namespace

Status narrowToFloat(const double *in, float *out, cudaStream_t stream) {
  narrowToFloatKernel<<<1, 1, 0, stream>>>(in, out);
  return launched("narrowToFloat");
}

Status clipFactor(const float *norm, double maxNorm, float *scale,
                  cudaStream_t stream) {
  clipFactorKernel<<<1, 1, 0, stream>>>(norm, maxNorm, scale);
  return launched("clipFactor");
}

} // namespace mixer::cuda
