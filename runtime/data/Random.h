//===- Random.h - Counter-based draws for the data pipeline -----*- C++ -*-===//
//
// Every random choice of the pipeline comes from Philox4x32-10 (the generator
// of parameter initialisation) keyed by the seed, with the counter naming
// what is drawn: a purpose and an index (the example counter, the epoch).
// A draw therefore depends only on (seed, purpose, index) and the order of
// draws within it, so any position of a run can be reproduced without
// replaying the draws before it.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_DATA_RANDOM_H
#define MIXER_RUNTIME_DATA_RANDOM_H

#include "runtime/cpu/CounterRandom.h"

#include <cstdint>
#include <vector>

namespace mixer::data {

/// What a stream of draws is for; a word of the Philox counter.
enum class DrawPurpose : uint32_t {
  Example = 0,             ///< pair split, order and masking of one example
  DocumentOrder = 1,       ///< the document order of an epoch (pre-training)
  ClassificationOrder = 2, ///< the example order of a fine-tuning epoch
};

/// A sequence of 32-bit draws for (seed, purpose, index): block b of four
/// words is philox4x32({index lo, index hi, purpose, b}, {seed lo, seed hi}).
class DrawStream {
public:
  DrawStream(uint64_t seed, DrawPurpose purpose, uint64_t index);

  /// The next 32 random bits.
  uint32_t nextBits();
  /// A uniform integer in [0, n), n >= 1 (multiply-shift).
  uint32_t below(uint32_t n);
  /// A uniform double in [0, 1).
  double uniform();

private:
  cpu::PhiloxKey key;
  cpu::PhiloxCounter counter;
  cpu::PhiloxCounter block{};
  int used = 4;
};

/// A uniformly random permutation of 0..n-1 (Fisher-Yates) drawn from
/// (seed, purpose, index).
std::vector<int64_t> permutation(int64_t n, uint64_t seed, DrawPurpose purpose,
                                 uint64_t index);

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_RANDOM_H
