//===- Norm.cuh - Row statistics of the LayerNorm kernels -------*- CUDA
//-*-===//

#ifndef MIXER_RUNTIME_CUDA_NORM_CUH
#define MIXER_RUNTIME_CUDA_NORM_CUH

#include "runtime/cuda/Common.cuh"

namespace mixer::cuda::detail {

/// Mean and 1/sqrt(var + eps) of one row, in fp32. As on the CPU, the sums
/// are taken about the row's first value (shift), so that a mean far from
/// zero neither cancels the variance nor rounds the centred values:
/// v - mean = (v - shift) - meanOffset. The variance is the mean squared
/// deviation from the mean (a second pass), never negative.
struct RowStats {
  float shift, meanOffset, rstd;
};

/// The statistics of the row value(0 .. cols), by a kBlockThreads block.
template <typename Value>
__device__ __forceinline__ RowStats rowStats(Value value, int64_t cols,
                                             float eps, float *scratch) {
  float shift = value(0);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    sum += value(i) - shift;
  float meanOffset = blockSum(sum, scratch) / static_cast<float>(cols);
  float squares = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads) {
    float centred = (value(i) - shift) - meanOffset;
    squares += centred * centred;
  }
  float variance = blockSum(squares, scratch) / static_cast<float>(cols);
  return {shift, meanOffset, 1.0f / sqrtf(variance + eps)};
}

/// y[i] = normalised value(i) * scale[i] + bias[i] over the row.
template <typename Value, typename T>
__device__ __forceinline__ void
writeNormalised(Value value, RowStats stats, const float *scale,
                const float *bias, T *y, int64_t cols) {
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    store(y, i,
          ((value(i) - stats.shift) - stats.meanOffset) * stats.rstd *
                  scale[i] +
              bias[i]);
}

} // namespace mixer::cuda::detail

#endif // MIXER_RUNTIME_CUDA_NORM_CUH
