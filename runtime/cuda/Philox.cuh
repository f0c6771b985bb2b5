//===- Philox.cuh - Counter-based draws of the kernels ---------*- CUDA -*-===//
//
// The draws of cpu::CounterUniforms (runtime/cpu/CounterRandom.h): element i
// of a random op takes word i%4 of Philox4x32-10({i/4 low, i/4 high, step, 0},
// {seed, stream}) and u = (word >> 8) * 2^-24.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_PHILOX_CUH
#define MIXER_RUNTIME_CUDA_PHILOX_CUH

#include <cuda_runtime.h>

#include <cstdint>

namespace mixer::cuda::detail {

/// Philox4x32-10 of `counter` under key (k0, k1).
__device__ __forceinline__ uint4 philox4x32(uint4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0 = __umulhi(kM0, c.x), lo0 = kM0 * c.x;
    uint32_t hi1 = __umulhi(kM1, c.z), lo1 = kM1 * c.z;
    c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

/// The 24 random bits of element i (u = bits * 2^-24) under key (seed,
/// stream) at `step`.
__device__ __forceinline__ uint32_t counterBits(uint64_t i, uint32_t seed,
                                                uint32_t stream,
                                                uint32_t step) {
  uint64_t block = i / 4;
  uint4 words =
      philox4x32(make_uint4(static_cast<uint32_t>(block),
                            static_cast<uint32_t>(block >> 32), step, 0u),
                 seed, stream);
  uint32_t lane = static_cast<uint32_t>(i % 4);
  uint32_t word = lane == 0   ? words.x
                  : lane == 1 ? words.y
                  : lane == 2 ? words.z
                              : words.w;
  return word >> 8;
}

/// Calls f(i, bits) for every element i < n with its 24 random bits under
/// key (seed, stream) at `step`, one Philox block of four elements per
/// thread of a grid-stride loop over `threads`-thread blocks.
template <int threads, typename F>
__device__ __forceinline__ void forEachCounterBits(int64_t n, uint32_t seed,
                                                   uint32_t stream,
                                                   uint32_t step, F f) {
  int64_t blocks = (n + 3) / 4;
  for (int64_t b = int64_t(blockIdx.x) * threads + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * threads) {
    uint4 words = philox4x32(
        make_uint4(static_cast<uint32_t>(b),
                   static_cast<uint32_t>(static_cast<uint64_t>(b) >> 32), step,
                   0u),
        seed, stream);
    uint32_t w[4] = {words.x, words.y, words.z, words.w};
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (4 * b + k < n)
        f(4 * b + k, w[k] >> 8);
  }
}

} // namespace mixer::cuda::detail

#endif // MIXER_RUNTIME_CUDA_PHILOX_CUH
