//===- Activation.cu - Bias + GELU forward and backward -------------------===//
//
// GELU is the tanh approximation, as every CPU kernel computes it
// (cpu::activation, cpu::activationBackward). Elementwise kernels run grid-
// stride loops; the bias gradient is a fixed-order column sum.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Activation.cuh"
#include "runtime/cuda/Common.cuh"

namespace mixer::cuda {
namespace {

using namespace detail;

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    biasGeluKernel(const T *x, const float *bias, T *y, int64_t n,
                   int64_t cols) {
  for (int64_t i = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kBlockThreads) {
    float v = load(x, i);
    if (bias)
      v += bias[i % cols];
    store(y, i, gelu(v));
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    biasGeluBackwardKernel(const T *x, const float *bias, const T *dy, T *dx,
                           int64_t n, int64_t cols) {
  for (int64_t i = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kBlockThreads) {
    float v = load(x, i);
    if (bias)
      v += bias[i % cols];
    store(dx, i, load(dy, i) * geluDerivative(v));
  }
}

/// (dy * GELU'(x + bias), 0) at (r, c): the term of dbias.
template <typename T> struct BiasGradTerm {
  const T *x, *dy;
  const float *bias;
  int64_t cols;
  __device__ float2 operator()(int64_t r, int64_t c) const {
    int64_t i = r * cols + c;
    float v = load(x, i);
    if (bias)
      v += bias[c];
    return make_float2(load(dy, i) * geluDerivative(v), 0.0f);
  }
};

Status checkShape(const char *kernel, int64_t rows, int64_t cols) {
  Status s = requireNonNegative(kernel, "rows", rows);
  return s.ok() ? requireNonNegative(kernel, "cols", cols) : s;
}

template <typename T>
Status biasGeluImpl(const T *x, const float *bias, T *y, int64_t rows,
                    int64_t cols, cudaStream_t stream) {
  Status s = checkShape("bias_gelu", rows, cols);
  int64_t n = rows * cols;
  if (!s.ok() || n == 0)
    return s;
  biasGeluKernel<<<gridFor(n), kBlockThreads, 0, stream>>>(device(x), bias,
                                                           device(y), n, cols);
  return launchStatus("bias_gelu");
}

template <typename T>
Status biasGeluBackwardImpl(const T *x, const float *bias, const T *dy, T *dx,
                            float *dbias, int64_t rows, int64_t cols,
                            bool accumulate, cudaStream_t stream) {
  const char *kernel = "bias_gelu_backward";
  Status s = checkShape(kernel, rows, cols);
  if (!s.ok())
    return s;
  // The bias gradient reads dy before dx, which may alias it, is written.
  BiasGradTerm<typename DeviceStorage<T>::type> term{device(x), device(dy),
                                                     bias, cols};
  if (!(s = columnSums(kernel, term, rows, cols, dbias, nullptr, accumulate,
                       stream))
           .ok())
    return s;
  int64_t n = rows * cols;
  if (!dx || n == 0)
    return Status::success();
  biasGeluBackwardKernel<<<gridFor(n), kBlockThreads, 0, stream>>>(
      device(x), bias, device(dy), device(dx), n, cols);
  return launchStatus(kernel);
}

} // namespace

Status biasGelu(const float *x, const float *bias, float *y, int64_t rows,
                int64_t cols, cudaStream_t stream) {
  return biasGeluImpl(x, bias, y, rows, cols, stream);
}

Status biasGelu(const Bf16 *x, const float *bias, Bf16 *y, int64_t rows,
                int64_t cols, cudaStream_t stream) {
  return biasGeluImpl(x, bias, y, rows, cols, stream);
}

Status biasGeluBackward(const float *x, const float *bias, const float *dy,
                        float *dx, float *dbias, int64_t rows, int64_t cols,
                        bool accumulate, cudaStream_t stream) {
  return biasGeluBackwardImpl(x, bias, dy, dx, dbias, rows, cols, accumulate,
                              stream);
}

Status biasGeluBackward(const Bf16 *x, const float *bias, const Bf16 *dy,
                        Bf16 *dx, float *dbias, int64_t rows, int64_t cols,
                        bool accumulate, cudaStream_t stream) {
  return biasGeluBackwardImpl(x, bias, dy, dx, dbias, rows, cols, accumulate,
                              stream);
}

} // namespace mixer::cuda
