//===- Common.cu - Shared pieces of the CUDA kernels ----------------------===//

#include "runtime/cuda/Common.cuh"

namespace mixer::cuda::detail {

__global__ void __launch_bounds__(kBlockThreads)
    columnFinishKernel(const float *partial, int64_t rowBlocks, int64_t cols,
                       float *out0, float *out1, bool accumulate) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += int64_t(gridDim.x) * blockDim.x) {
    float sum0 = accumulate && out0 ? out0[c] : 0.0f;
    float sum1 = accumulate && out1 ? out1[c] : 0.0f;
    for (int64_t b = 0; b < rowBlocks; ++b) {
      sum0 += partial[b * 2 * cols + c];
      sum1 += partial[b * 2 * cols + cols + c];
    }
    if (out0)
      out0[c] = sum0;
    if (out1)
      out1[c] = sum1;
  }
}

StreamBuffer::StreamBuffer(size_t bytes, cudaStream_t stream) : stream(stream) {
  if (bytes == 0)
    return;
  cudaError_t err = cudaMallocAsync(&data, bytes, stream);
  if (err != cudaSuccess) {
    data = nullptr;
    failure = "cannot allocate " + std::to_string(bytes) +
              " bytes of temporary device memory: " + cudaGetErrorString(err);
  }
}

StreamBuffer::~StreamBuffer() {
  if (data)
    cudaFreeAsync(data, stream);
}

Status launchStatus(const char *kernel) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess)
    return Status::success();
  return Status::error(std::string(kernel) +
                       ": launch failed: " + cudaGetErrorString(err));
}

Status requireNonNegative(const char *kernel, const char *what, int64_t value) {
  if (value >= 0)
    return Status::success();
  return Status::error(std::string(kernel) + ": " + what + " " +
                       std::to_string(value) + " is negative");
}

Status allowSharedMemory(const void *kernel, size_t bytes, const char *name,
                         const std::string &what) {
  int deviceId = 0, limit = 0;
  cudaError_t err = cudaGetDevice(&deviceId);
  if (err == cudaSuccess)
    err = cudaDeviceGetAttribute(
        &limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, deviceId);
  if (err != cudaSuccess)
    return Status::error(std::string(name) + ": " + cudaGetErrorString(err));
  if (bytes > static_cast<size_t>(limit))
    return Status::error(std::string(name) + ": " + what + " needs " +
                         std::to_string(bytes) +
                         " bytes of shared memory per block, more than the " +
                         std::to_string(limit) + " the device allows");
  err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes));
  if (err != cudaSuccess)
    return Status::error(std::string(name) + ": " + cudaGetErrorString(err));
  return Status::success();
}

} // namespace mixer::cuda::detail
