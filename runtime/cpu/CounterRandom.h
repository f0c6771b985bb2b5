//===- CounterRandom.h - Counter-based uniforms of training ops -*- C++ -*-===//
//
// The random numbers of a training step (dropout, jitter, expert dropout) come
// from Philox4x32-10 (Salmon et al., SC'11) used as a pure function of a key
// and a counter: the uniform of element i of a random op depends only on the
// run's seed, the op's stream, the step and i. Any element can therefore be
// drawn on its own, by any thread, and the same draw is repeated exactly by
// the op's gradient.
//
// Layout of one draw: key (seed, stream), counter (i/4 low 32 bits, i/4 high
// 32 bits, step, 0); element i takes word i%4, u = (word >> 8) * 2^-24, a
// float in [0, 1) with 24 random bits (exact in float).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_COUNTERRANDOM_H
#define MIXER_RUNTIME_CPU_COUNTERRANDOM_H

#include <algorithm>
#include <array>
#include <cstdint>

namespace mixer::cpu {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

/// The ten Philox4x32 rounds on counter words held in the low 32 bits of
/// 64-bit values. Word is uint64_t, or a vector of them (GCC/Clang vector
/// extensions) that runs several counters side by side.
template <typename Word>
inline void philoxRounds(Word &c0, Word &c1, Word &c2, Word &c3, uint32_t k0,
                         uint32_t k1) {
  constexpr uint64_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    Word p0 = c0 * kM0;
    Word p1 = c2 * kM1;
    c0 = (p1 >> 32) ^ c1 ^ uint64_t(k0);
    c1 = p1 & uint64_t(0xffffffffu);
    c2 = (p0 >> 32) ^ c3 ^ uint64_t(k1);
    c3 = p0 & uint64_t(0xffffffffu);
    k0 += kW0;
    k1 += kW1;
  }
}

/// The Philox4x32 block function with 10 rounds.
inline PhiloxCounter philox4x32(PhiloxCounter counter, PhiloxKey key) {
  uint64_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  philoxRounds(c0, c1, c2, c3, key[0], key[1]);
  return {static_cast<uint32_t>(c0), static_cast<uint32_t>(c1),
          static_cast<uint32_t>(c2), static_cast<uint32_t>(c3)};
}

/// A uniform float in [0, 1) from the top 24 of 32 random bits.
inline float uniformFromBits(uint32_t word) {
  return static_cast<float>(word >> 8) * 0x1p-24f;
}

/// The uniforms of one random op at one training step: global element g gets
/// word g%4 of philox4x32({g/4 low, g/4 high, step, 0}, {seed, stream}). Seed,
/// stream and step enter as their low 32 bits (an i32 seed of -1 is the key
/// word 0xffffffff). Element i of the op's tensor is global element
/// `first + i`: 0 in one process; on a rank of a parallel plan the index of
/// its slice's first element in the whole batch's tensor, so that every mesh
/// draws what one process draws.
class CounterUniforms {
public:
  /// Elements drawn by one call of `batch`.
  static constexpr int64_t kBatchElements = 64;

  CounterUniforms(int64_t seed, int64_t stream, int64_t step,
                  uint64_t first = 0)
      : key{static_cast<uint32_t>(seed), static_cast<uint32_t>(stream)},
        step(static_cast<uint32_t>(step)), first(first) {}

  /// The uniforms of elements 4*block .. 4*block+3.
  std::array<float, 4> block(uint64_t block) const {
    uint64_t global = 4 * block + first;
    std::array<float, 4> low = globalBlock(global / 4);
    if (global % 4 == 0)
      return low;
    std::array<float, 4> high = globalBlock(global / 4 + 1), u;
    for (uint64_t j = 0; j < 4; ++j) {
      uint64_t k = global % 4 + j;
      u[j] = k < 4 ? low[k] : high[k - 4];
    }
    return u;
  }

  /// The uniform of element i.
  float at(uint64_t i) const {
    uint64_t global = i + first;
    return globalBlock(global / 4)[global % 4];
  }

  /// u[j] = at(4*firstBlock + j) for j < kBatchElements: the same draws as
  /// `block`, several times faster, with the blocks computed in vector lanes.
  void batch(uint64_t firstBlock, float *u) const {
    uint64_t global = 4 * firstBlock + first;
    if (global % 4 == 0) {
      globalBatch(global / 4, u);
      return;
    }
    float spread[kBatchElements + 4];
    globalBatch(global / 4, spread);
    std::array<float, 4> tail = globalBlock(global / 4 + kBatchElements / 4);
    std::copy(tail.begin(), tail.end(), spread + kBatchElements);
    std::copy_n(spread + global % 4, kBatchElements, u);
  }

private:
  /// The uniforms of global elements 4*block .. 4*block+3.
  std::array<float, 4> globalBlock(uint64_t block) const {
    PhiloxCounter words =
        philox4x32({static_cast<uint32_t>(block),
                    static_cast<uint32_t>(block >> 32), step, 0},
                   key);
    return {uniformFromBits(words[0]), uniformFromBits(words[1]),
            uniformFromBits(words[2]), uniformFromBits(words[3])};
  }

  /// u[j] = the uniform of global element 4*firstBlock + j, j <
  /// kBatchElements.
  void globalBatch(uint64_t firstBlock, float *u) const {
    typedef uint64_t Lanes __attribute__((vector_size(8 * sizeof(uint64_t))));
    typedef float Floats __attribute__((vector_size(8 * sizeof(float))));
    const Lanes offsets = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int64_t half = 0; half < kBatchElements / 32; ++half) {
      Lanes blocks = offsets + (firstBlock + 8 * half);
      Lanes c0 = blocks & uint64_t(0xffffffffu), c1 = blocks >> 32;
      Lanes c2 = Lanes{} + uint64_t(step), c3 = Lanes{};
      philoxRounds(c0, c1, c2, c3, key[0], key[1]);
      const Lanes *words[4] = {&c0, &c1, &c2, &c3};
      for (int w = 0; w < 4; ++w) {
        Floats values =
            __builtin_convertvector(*words[w] >> 8, Floats) * 0x1p-24f;
        for (int lane = 0; lane < 8; ++lane)
          u[32 * half + 4 * lane + w] = values[lane];
      }
    }
  }

  PhiloxKey key;
  uint32_t step;
  uint64_t first;
};

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_COUNTERRANDOM_H
