//===- Norm.cu - Residual + LayerNorm forward and backward ----------------===//
//
// One block per row. The backward pass runs in three steps so that dx may
// overwrite dy: the row statistics, then the parameter gradients as
// fixed-order column sums, then dx.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Norm.cuh"

namespace mixer::cuda {
namespace {

using namespace detail;

/// Element i of row `row` of x + residual (residual may be null).
template <typename T> struct RowSum {
  const T *x, *residual;
  __device__ float operator()(int64_t i) const {
    float v = load(x, i);
    return residual ? v + load(residual, i) : v;
  }
};

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    layerNormKernel(const T *x, const T *residual, const float *scale,
                    const float *bias, T *y, int64_t cols, float eps) {
  __shared__ float scratch[kBlockWarps];
  int64_t row = blockIdx.x;
  RowSum<T> value = {x + row * cols,
                     residual ? residual + row * cols : nullptr};
  RowStats stats = rowStats(value, cols, eps, scratch);
  writeNormalised(value, stats, scale, bias, y + row * cols, cols);
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    rowStatsKernel(const T *x, const T *residual, RowStats *stats, int64_t cols,
                   float eps) {
  __shared__ float scratch[kBlockWarps];
  int64_t row = blockIdx.x;
  RowSum<T> value = {x + row * cols,
                     residual ? residual + row * cols : nullptr};
  RowStats s = rowStats(value, cols, eps, scratch);
  if (threadIdx.x == 0)
    stats[row] = s;
}

/// (dy * xhat, dy) at (r, c): the terms of dscale and dbias.
template <typename T> struct LayerNormParameterTerm {
  const T *x, *residual, *dy;
  const RowStats *stats;
  int64_t cols;
  __device__ float2 operator()(int64_t r, int64_t c) const {
    int64_t i = r * cols + c;
    float v = load(x, i);
    if (residual)
      v += load(residual, i);
    RowStats s = stats[r];
    float d = load(dy, i);
    return make_float2(d * (((v - s.shift) - s.meanOffset) * s.rstd), d);
  }
};

/// dx = rstd * ((g - mean(g)) - xhat * mean(g * xhat)), g = dy * scale.
template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    layerNormInputGradKernel(const T *x, const T *residual, const float *scale,
                             const T *dy, const RowStats *stats, T *dx,
                             int64_t cols) {
  __shared__ float scratch[kBlockWarps];
  int64_t row = blockIdx.x;
  RowSum<T> value = {x + row * cols,
                     residual ? residual + row * cols : nullptr};
  const T *dyRow = dy + row * cols;
  RowStats s = stats[row];
  auto xhat = [=](int64_t i) {
    return ((value(i) - s.shift) - s.meanOffset) * s.rstd;
  };
  float sumG = 0.0f, sumGX = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads) {
    float g = load(dyRow, i) * scale[i];
    sumG += g;
    sumGX += g * xhat(i);
  }
  float meanG = blockSum(sumG, scratch) / static_cast<float>(cols);
  float meanGX = blockSum(sumGX, scratch) / static_cast<float>(cols);
  T *dxRow = dx + row * cols;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads) {
    float g = load(dyRow, i) * scale[i];
    store(dxRow, i, s.rstd * ((g - meanG) - xhat(i) * meanGX));
  }
}

Status checkShape(const char *kernel, int64_t rows, int64_t cols) {
  Status s = requireNonNegative(kernel, "rows", rows);
  if (!s.ok())
    return s;
  if (rows > 0x7fffffff)
    return Status::error(std::string(kernel) + ": " + std::to_string(rows) +
                         " rows exceed the grid limit");
  return requireNonNegative(kernel, "cols", cols);
}

template <typename T>
Status layerNormImpl(const T *x, const T *residual, const float *scale,
                     const float *bias, T *y, int64_t rows, int64_t cols,
                     float eps, cudaStream_t stream) {
  Status s = checkShape("layer_norm", rows, cols);
  if (!s.ok() || rows == 0 || cols == 0)
    return s;
  layerNormKernel<<<static_cast<unsigned>(rows), kBlockThreads, 0, stream>>>(
      device(x), device(residual), scale, bias, device(y), cols, eps);
  return launchStatus("layer_norm");
}

template <typename T>
Status layerNormBackwardImpl(const T *x, const T *residual, const float *scale,
                             const T *dy, T *dx, float *dscale, float *dbias,
                             int64_t rows, int64_t cols, float eps,
                             bool accumulate, cudaStream_t stream) {
  const char *kernel = "layer_norm_backward";
  Status s = checkShape(kernel, rows, cols);
  if (!s.ok() || cols == 0)
    return s;
  auto dX = device(x);
  auto dResidual = device(residual);
  auto dDy = device(dy);
  StreamBuffer stats(rows * sizeof(RowStats), stream);
  if (!stats.error().empty())
    return Status::error(std::string(kernel) + ": " + stats.error());
  if (rows > 0) {
    rowStatsKernel<<<static_cast<unsigned>(rows), kBlockThreads, 0, stream>>>(
        dX, dResidual, stats.as<RowStats>(), cols, eps);
    if (!(s = launchStatus(kernel)).ok())
      return s;
  }
  LayerNormParameterTerm<typename DeviceStorage<T>::type> term{
      dX, dResidual, dDy, stats.as<RowStats>(), cols};
  if (!(s = columnSums(kernel, term, rows, cols, dscale, dbias, accumulate,
                       stream))
           .ok())
    return s;
  if (!dx || rows == 0)
    return Status::success();
  layerNormInputGradKernel<<<static_cast<unsigned>(rows), kBlockThreads, 0,
                             stream>>>(dX, dResidual, scale, dDy,
                                       stats.as<RowStats>(), device(dx), cols);
  return launchStatus(kernel);
}

} // namespace

Status layerNorm(const float *x, const float *residual, const float *scale,
                 const float *bias, float *y, int64_t rows, int64_t cols,
                 float eps, cudaStream_t stream) {
  return layerNormImpl(x, residual, scale, bias, y, rows, cols, eps, stream);
}

Status layerNorm(const Bf16 *x, const Bf16 *residual, const float *scale,
                 const float *bias, Bf16 *y, int64_t rows, int64_t cols,
                 float eps, cudaStream_t stream) {
  return layerNormImpl(x, residual, scale, bias, y, rows, cols, eps, stream);
}

Status layerNormBackward(const float *x, const float *residual,
                         const float *scale, const float *dy, float *dx,
                         float *dscale, float *dbias, int64_t rows,
                         int64_t cols, float eps, bool accumulate,
                         cudaStream_t stream) {
  return layerNormBackwardImpl(x, residual, scale, dy, dx, dscale, dbias, rows,
                               cols, eps, accumulate, stream);
}

Status layerNormBackward(const Bf16 *x, const Bf16 *residual,
                         const float *scale, const Bf16 *dy, Bf16 *dx,
                         float *dscale, float *dbias, int64_t rows,
                         int64_t cols, float eps, bool accumulate,
                         cudaStream_t stream) {
  return layerNormBackwardImpl(x, residual, scale, dy, dx, dscale, dbias, rows,
                               cols, eps, accumulate, stream);
}

} // namespace mixer::cuda
