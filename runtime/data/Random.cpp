//===- Random.cpp - Counter-based draws for the data pipeline -------------===//

#include "runtime/data/Random.h"

#include <numeric>
#include <utility>

namespace mixer::data {

DrawStream::DrawStream(uint64_t seed, DrawPurpose purpose, uint64_t index)
    : key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)},
      counter{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
              static_cast<uint32_t>(purpose), 0} {}

uint32_t DrawStream::nextBits() {
  if (used == 4) {
    block = cpu::philox4x32(counter, key);
    ++counter[3];
    used = 0;
  }
  return block[used++];
}

uint32_t DrawStream::below(uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(nextBits()) * n) >> 32);
}

double DrawStream::uniform() { return nextBits() * 0x1p-32; }

std::vector<int64_t> permutation(int64_t n, uint64_t seed, DrawPurpose purpose,
                                 uint64_t index) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  DrawStream draws(seed, purpose, index);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[i], order[draws.below(static_cast<uint32_t>(i + 1))]);
  return order;
}

} // namespace mixer::data
