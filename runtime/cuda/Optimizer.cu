//===- Optimizer.cu - AdamW, global norm and clipping ---------------------===//
//
// AdamW performs cpu::adamwStep's f32 sequence with explicit
// round-to-nearest intrinsics: one rounding per operation and no fused
// multiply-add, whatever the compiler flags, so the GPU update equals the
// CPU update bit for bit. The global norm sums fixed blocks of each tensor in
// double, then the blocks in order: no atomics.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"

#include <cmath>

namespace mixer::cuda {
namespace {

using namespace detail;

/// Values per partial sum of the global norm.
constexpr int64_t kNormBlock = 1 << 14;

/// The f32 constants of one AdamW step, rounded from double once on the host
/// as cpu::adamwStep rounds them.
struct AdamWConstants {
  float b1, b2, oneMinusB1, oneMinusB2, correction1, correction2, eps, decay,
      rate;
};

__global__ void __launch_bounds__(kBlockThreads)
    adamwKernel(float *param, const float *grad, float *m, float *v, int64_t n,
                AdamWConstants k, const float *gradScale) {
  float scale = gradScale ? *gradScale : 1.0f;
  for (int64_t i = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kBlockThreads) {
    float g = __fmul_rn(grad[i], scale);
    float mi = __fadd_rn(__fmul_rn(k.b1, m[i]), __fmul_rn(k.oneMinusB1, g));
    float vi = __fadd_rn(__fmul_rn(k.b2, v[i]),
                         __fmul_rn(k.oneMinusB2, __fmul_rn(g, g)));
    m[i] = mi;
    v[i] = vi;
    float mHat = __fdiv_rn(mi, k.correction1);
    float vHat = __fdiv_rn(vi, k.correction2);
    float update =
        __fadd_rn(__fdiv_rn(mHat, __fadd_rn(__fsqrt_rn(vHat), k.eps)),
                  __fmul_rn(k.decay, param[i]));
    param[i] = __fsub_rn(param[i], __fmul_rn(k.rate, update));
  }
}

/// partial[blockIdx.x] = sum of squares of x[blockIdx.x * kNormBlock, ...)
/// in double, in a fixed order.
__global__ void __launch_bounds__(kBlockThreads)
    sumOfSquaresKernel(const float *x, int64_t n, double *partial) {
  __shared__ double scratch[kBlockWarps];
  int64_t begin = int64_t(blockIdx.x) * kNormBlock;
  int64_t end = min(n, begin + kNormBlock);
  double sum = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlockThreads) {
    double value = x[i];
    sum += value * value;
  }
  sum = blockSum(sum, scratch);
  if (threadIdx.x == 0)
    partial[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kBlockThreads)
    normFinishKernel(const double *partial, int64_t count, double *norm) {
  __shared__ double scratch[kBlockWarps];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kBlockThreads)
    sum += partial[i];
  sum = blockSum(sum, scratch);
  if (threadIdx.x == 0)
    *norm = sqrt(sum);
}

__global__ void clipScaleKernel(const double *norm, double maxNorm,
                                float *scale) {
  double n = *norm;
  *scale = n >= maxNorm ? static_cast<float>(maxNorm / n) : 1.0f;
}

} // namespace

Status adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
                 double lr, int64_t step, const AdamWConfig &config,
                 const float *gradScale, cudaStream_t stream) {
  const char *kernel = "adamw";
  Status s = validateAdamW(config);
  if (!s.ok())
    return Status::error(std::string(kernel) + ": " + s.message());
  if (step < 1)
    return Status::error(std::string(kernel) + ": step " +
                         std::to_string(step) + " is not positive");
  if (!(s = requireNonNegative(kernel, "n", n)).ok() || n == 0)
    return s;
  AdamWConstants k{
      static_cast<float>(config.b1),
      static_cast<float>(config.b2),
      static_cast<float>(1.0 - config.b1),
      static_cast<float>(1.0 - config.b2),
      static_cast<float>(1.0 - std::pow(config.b1, static_cast<double>(step))),
      static_cast<float>(1.0 - std::pow(config.b2, static_cast<double>(step))),
      static_cast<float>(config.eps),
      static_cast<float>(config.weightDecay),
      static_cast<float>(lr)};
  adamwKernel<<<gridFor(n), kBlockThreads, 0, stream>>>(param, grad, m, v, n, k,
                                                        gradScale);
  return launchStatus(kernel);
}

Status globalNorm(const std::vector<ConstValues> &tensors, double *norm,
                  cudaStream_t stream) {
  const char *kernel = "global_norm";
  int64_t count = 0;
  for (const auto &[data, n] : tensors) {
    Status s = requireNonNegative(kernel, "tensor size", n);
    if (!s.ok())
      return s;
    count += (n + kNormBlock - 1) / kNormBlock;
  }
  StreamBuffer partial(count * sizeof(double), stream);
  if (!partial.error().empty())
    return Status::error(std::string(kernel) + ": " + partial.error());
  int64_t first = 0;
  for (const auto &[data, n] : tensors) {
    int64_t blocks = (n + kNormBlock - 1) / kNormBlock;
    if (blocks == 0)
      continue;
    sumOfSquaresKernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0,
                         stream>>>(data, n, partial.as<double>() + first);
    first += blocks;
  }
  normFinishKernel<<<1, kBlockThreads, 0, stream>>>(partial.as<double>(), count,
                                                    norm);
  return launchStatus(kernel);
}

Status clipScale(const double *norm, double maxNorm, float *scale,
                 cudaStream_t stream) {
  if (!(maxNorm > 0.0))
    return Status::error("clip_scale: the bound " + std::to_string(maxNorm) +
                         " is not positive");
  clipScaleKernel<<<1, 1, 0, stream>>>(norm, maxNorm, scale);
  return launchStatus("clip_scale");
}

} // namespace mixer::cuda
