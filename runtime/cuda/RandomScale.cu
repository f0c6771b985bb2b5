//===- RandomScale.cu - Dropout and multiplicative jitter -----------------===//
//
// The draws of cpu::CounterUniforms: element i takes word i%4 of
// Philox4x32-10({i/4 low, i/4 high, step, 0}, {seed, stream}) and
// u = (word >> 8) * 2^-24. One thread draws one counter block, hence four
// elements. The arithmetic after the draw is pinned with round-to-nearest
// intrinsics so that fp32 results equal the CPU kernel's bit for bit
// (which computes the jitter factor 1 - rate + 2 rate u as one std::fma).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"
#include "runtime/cuda/Philox.cuh"

#include <cmath>

namespace mixer::cuda {
namespace {

using namespace detail;

/// The scaling of one element after its draw.
struct Scale {
  bool dropout;
  float keepFrom, keep; // dropout: u >= keepFrom keeps x / keep
  float low, width;     // jitter: x * fma(width, u, low)
  __device__ float operator()(float x, uint32_t bits) const {
    float u = static_cast<float>(bits) * 0x1p-24f;
    if (dropout)
      return u >= keepFrom ? __fdiv_rn(x, keep) : 0.0f;
    return __fmul_rn(x, __fmaf_rn(width, u, low));
  }
};

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    randomScaleKernel(const T *x, T *y, int64_t n, Scale scale, uint32_t seed,
                      uint32_t stream, uint32_t step) {
  forEachCounterBits<kBlockThreads>(
      n, seed, stream, step,
      [&](int64_t i, uint32_t bits) { store(y, i, scale(load(x, i), bits)); });
}

template <typename T>
Status randomScaleImpl(const T *x, T *y, int64_t n, bool dropout, double rate,
                       CounterKey key, cudaStream_t stream) {
  const char *kernel = "random_scale";
  Status s = requireNonNegative(kernel, "n", n);
  if (!s.ok())
    return s;
  if (dropout ? !(rate >= 0.0 && rate < 1.0) : !(rate >= 0.0 && rate <= 1.0))
    return Status::error(
        std::string(kernel) + ": rate " + std::to_string(rate) +
        " is outside " +
        (dropout ? "[0, 1) for dropout" : "[0, 1] for jitter"));
  if (n == 0)
    return Status::success();
  // The constants of cpu::randomScale: u is a multiple of 2^-24, so u >= rate
  // exactly when u >= keepFrom.
  Scale scale{dropout, static_cast<float>(std::ceil(rate * 0x1p24) * 0x1p-24),
              static_cast<float>(1.0 - rate), 1.0f - static_cast<float>(rate),
              2.0f * static_cast<float>(rate)};
  randomScaleKernel<<<gridFor((n + 3) / 4), kBlockThreads, 0, stream>>>(
      device(x), device(y), n, scale, static_cast<uint32_t>(key.seed),
      static_cast<uint32_t>(key.stream), static_cast<uint32_t>(key.step));
  return launchStatus(kernel);
}

} // namespace

Status randomScale(const float *x, float *y, int64_t n, bool dropout,
                   double rate, CounterKey key, cudaStream_t stream) {
  return randomScaleImpl(x, y, n, dropout, rate, key, stream);
}

Status randomScale(const Bf16 *x, Bf16 *y, int64_t n, bool dropout, double rate,
                   CounterKey key, cudaStream_t stream) {
  return randomScaleImpl(x, y, n, dropout, rate, key, stream);
}

} // namespace mixer::cuda
