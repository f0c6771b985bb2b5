//===- Moe.cpp - Routing, dispatch, experts and combine -------------------===//
//
// Routing is parallel over (expert, group) or over groups, each writing only
// its own slots. The experts kernel runs per-expert GEMMs over row tiles of
// each expert's occupied slots with fused bias + activation. combine gathers
// per token through a precomputed list of the token's entries, in entry order,
// so its sums never race and never depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/ExpertTiles.h"
#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Simd.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;

/// Maps a float to an unsigned integer with the same order (-0 as +0).
uint32_t orderedBits(float value) {
  if (value == 0.0f)
    value = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

/// Writes the indices of the k largest of values[0..n) to `chosen`, largest
/// first, ties to the lower index.
void topK(const float *values, int64_t n, int64_t k, int32_t *chosen) {
  for (int64_t r = 0; r < k; ++r) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (std::find(chosen, chosen + r, i) != chosen + r)
        continue;
      if (best < 0 || values[i] > values[best])
        best = i;
    }
    chosen[r] = static_cast<int32_t>(best);
  }
}

/// offsets[e] = e * perExpert for e in [0, experts].
void uniformOffsets(int32_t *offsets, int64_t experts, int64_t perExpert) {
  for (int64_t e = 0; e <= experts; ++e)
    offsets[e] = static_cast<int32_t>(e * perExpert);
}

void requireAtMost(int64_t value, int64_t limit, const char *kernel,
                   const char *what, const char *limitName) {
  if (value > limit)
    throw KernelError{std::string(kernel) + ": " + what + " " +
                      std::to_string(value) + " exceeds " + limitName + " " +
                      std::to_string(limit)};
}

} // namespace

void routeExpertsChoose(const float *probs, int32_t *tokens, float *gates,
                        int32_t *offsets, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts,
                        int64_t capacity) {
  requireAtMost(capacity, tokensPerGroup, "route_experts_choose", "capacity",
                "tokens_per_group");
  uniformOffsets(offsets, experts, groups * capacity);
  int64_t items = experts * groups;
  bool parallel = items > 1 && groups * tokensPerGroup * experts >= 4096;
#pragma omp parallel if (parallel)
  {
    // Key = (probability, ~token): larger keys are higher probabilities, and
    // among equal probabilities lower tokens.
    std::vector<uint64_t> keys(tokensPerGroup);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      int64_t e = item / groups, g = item % groups;
      const float *column = probs + g * tokensPerGroup * experts + e;
      for (int64_t t = 0; t < tokensPerGroup; ++t)
        keys[t] = uint64_t(orderedBits(column[t * experts])) << 32 |
                  (0xffffffffu - static_cast<uint32_t>(t));
      auto taken = keys.begin() + capacity;
      std::nth_element(keys.begin(), taken, keys.end(),
                       std::greater<uint64_t>());
      std::sort(keys.begin(), taken, std::greater<uint64_t>());
      for (int64_t c = 0; c < capacity; ++c) {
        int64_t t = 0xffffffffu - static_cast<uint32_t>(keys[c]);
        tokens[item * capacity + c] =
            static_cast<int32_t>(g * tokensPerGroup + t);
        gates[item * capacity + c] = column[t * experts];
      }
    }
  }
}

void routeTokensChoose(const float *probs, int32_t *tokens, float *gates,
                       int32_t *offsets, int64_t groups, int64_t tokensPerGroup,
                       int64_t experts, int64_t k, int64_t capacity,
                       bool batchPrioritized) {
  requireAtMost(k, experts, "route_tokens_choose", "k", "the expert count");
  int64_t slots = experts * groups * capacity;
  uniformOffsets(offsets, experts, groups * capacity);
  std::fill(tokens, tokens + slots, -1);
  std::fill(gates, gates + slots, 0.0f);
  bool parallel = groups > 1 && groups * tokensPerGroup * experts >= 4096;
#pragma omp parallel if (parallel)
  {
    std::vector<int32_t> choices(tokensPerGroup * k);
    std::vector<int64_t> order(tokensPerGroup);
    std::vector<int64_t> fill(experts);
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < groups; ++g) {
      const float *groupProbs = probs + g * tokensPerGroup * experts;
      auto prob = [&](int64_t t, int64_t e) {
        return groupProbs[t * experts + e];
      };
      for (int64_t t = 0; t < tokensPerGroup; ++t)
        topK(groupProbs + t * experts, experts, k, choices.data() + t * k);
      std::iota(order.begin(), order.end(), 0);
      if (batchPrioritized)
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          return prob(a, choices[a * k]) > prob(b, choices[b * k]);
        });
      // All first choices claim buffer positions before any second choice.
      std::fill(fill.begin(), fill.end(), 0);
      for (int64_t rank = 0; rank < k; ++rank)
        for (int64_t t : order) {
          int64_t e = choices[t * k + rank];
          int64_t position = fill[e]++;
          if (position >= capacity)
            continue;
          int64_t slot = (e * groups + g) * capacity + position;
          tokens[slot] = static_cast<int32_t>(g * tokensPerGroup + t);
          gates[slot] = prob(t, e);
        }
    }
  }
}

void routeSigmoidTopK(const float *logits, int32_t *tokens, float *gates,
                      int32_t *offsets, int64_t numTokens, int64_t experts,
                      int64_t k) {
  requireAtMost(k, experts, "route_sigmoid_topk", "k", "the expert count");
  std::vector<int32_t> choices(numTokens * k);
  std::vector<float> chosenGates(numTokens * k);
#pragma omp parallel if (numTokens * experts >= kParallelValues)
  {
    std::vector<float> rowGates(experts);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < numTokens; ++t) {
      for (int64_t e = 0; e < experts; ++e)
        rowGates[e] = 1.0f / (1.0f + std::exp(-logits[t * experts + e]));
      topK(rowGates.data(), experts, k, choices.data() + t * k);
      for (int64_t r = 0; r < k; ++r)
        chosenGates[t * k + r] = rowGates[choices[t * k + r]];
    }
  }
  // Counting sort by expert; scanning tokens in order keeps each expert's
  // entries sorted by token.
  std::vector<int64_t> cursor(experts + 1, 0);
  for (int32_t e : choices)
    ++cursor[e + 1];
  std::partial_sum(cursor.begin(), cursor.end(), cursor.begin());
  for (int64_t e = 0; e <= experts; ++e)
    offsets[e] = static_cast<int32_t>(cursor[e]);
  for (int64_t i = 0; i < numTokens * k; ++i) {
    int64_t slot = cursor[choices[i]]++;
    tokens[slot] = static_cast<int32_t>(i / k);
    gates[slot] = chosenGates[i];
  }
}

void dispatch(const float *x, const int32_t *tokens, float *xd, int64_t slots,
              int64_t numTokens, int64_t d) {
  detail::checkTokens(tokens, slots, numTokens, "dispatch");
#pragma omp parallel for schedule(static) if (slots * d >= kParallelValues)
  for (int64_t i = 0; i < slots; ++i) {
    if (tokens[i] < 0)
      std::memset(xd + i * d, 0, d * sizeof(float));
    else
      std::memcpy(xd + i * d, x + static_cast<int64_t>(tokens[i]) * d,
                  d * sizeof(float));
  }
}

void experts(const float *xd, const int32_t *tokens, const int32_t *offsets,
             const float *w1, const float *b1, const float *w2, const float *b2,
             float *yd, int64_t numExperts, int64_t slots, int64_t d, int64_t f,
             Activation act) {
  std::vector<detail::ExpertRows> tiles = detail::rowTiles(
      detail::occupiedRuns(tokens, offsets, numExperts, slots, "experts"));
  for (int64_t i = 0; i < slots; ++i)
    if (tokens[i] < 0)
      std::memset(yd + i * d, 0, d * sizeof(float));

  int64_t items = static_cast<int64_t>(tiles.size());
  bool parallel = items > 1 && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    std::vector<float> hidden(std::min(detail::kExpertTileRows, slots) * f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item)
      errors.run([&] {
        const detail::ExpertRows &tile = tiles[item];
        detail::expertProjection(
            xd + tile.row0 * d, tile.rows, d, w1 + tile.expert * d * f, f,
            b1 ? b1 + tile.expert * f : nullptr, hidden.data(), act);
        detail::expertProjection(hidden.data(), tile.rows, f,
                                 w2 + tile.expert * f * d, d,
                                 b2 ? b2 + tile.expert * d : nullptr,
                                 yd + tile.row0 * d, Activation::None);
      });
  }
  errors.rethrow();
}

namespace {

/// The rows of the bf16 experts' products: tiles padded to a multiple.
constexpr int64_t kPaddedRows = 32;

/// `rows` rounded up to a multiple of kPaddedRows (at least one).
int64_t paddedRows(int64_t rows) {
  return std::max<int64_t>(1, (rows + kPaddedRows - 1) / kPaddedRows) *
         kPaddedRows;
}

} // namespace

struct ExpertsBf16::Impl {
  int64_t numExperts, slots, d, f;
  /// Per padded tile size, from the largest down by kPaddedRows: the first
  /// and second layer.
  std::vector<detail::Bf16Product> first, second;
};

ExpertsBf16::ExpertsBf16(int64_t numExperts, int64_t slots, int64_t d,
                         int64_t f, bool bias1, bool bias2, Activation act)
    : impl(new Impl{numExperts, slots, d, f, {}, {}}) {
  int64_t largest = paddedRows(
      std::min(detail::kExpertTileRows, std::max<int64_t>(slots, 1)));
  // The largest tile's products choose the packed layouts the others share.
  for (int64_t rows = largest; rows > 0; rows -= kPaddedRows) {
    const detail::Bf16Product *layout1 =
        impl->first.empty() ? nullptr : &impl->first.front();
    const detail::Bf16Product *layout2 =
        impl->second.empty() ? nullptr : &impl->second.front();
    impl->first.emplace_back(rows, d, f, /*cBf16=*/true, bias1, act, layout1);
    impl->second.emplace_back(rows, f, d, /*cBf16=*/false, bias2,
                              Activation::None, layout2);
  }
}

ExpertsBf16::~ExpertsBf16() = default;
ExpertsBf16::ExpertsBf16(ExpertsBf16 &&) noexcept = default;

int64_t ExpertsBf16::packedBytes() const {
  return impl->numExperts * (impl->first.front().packedBytes() +
                             impl->second.front().packedBytes());
}

void ExpertsBf16::pack(const float *w1, const float *w2, void *packed) const {
  const Impl &p = *impl;
  int64_t bytes1 = p.first.front().packedBytes();
  int64_t bytes2 = p.second.front().packedBytes();
  char *out = static_cast<char *>(packed);
  for (int64_t e = 0; e < p.numExperts; ++e) {
    p.first.front().pack(w1 + e * p.d * p.f, false, out + e * bytes1);
    p.second.front().pack(w2 + e * p.f * p.d, false,
                          out + p.numExperts * bytes1 + e * bytes2);
  }
}

void ExpertsBf16::run(const float *xd, const int32_t *tokens,
                      const int32_t *offsets, const void *packed,
                      const float *b1, const float *b2, float *yd) const {
  const Impl &p = *impl;
  std::vector<detail::ExpertRows> tiles = detail::rowTiles(
      detail::occupiedRuns(tokens, offsets, p.numExperts, p.slots, "experts"));
  for (int64_t i = 0; i < p.slots; ++i)
    if (tokens[i] < 0)
      std::memset(yd + i * p.d, 0, p.d * sizeof(float));
  int64_t bytes1 = p.first.front().packedBytes();
  int64_t bytes2 = p.second.front().packedBytes();
  const char *packed1 = static_cast<const char *>(packed);
  const char *packed2 = packed1 + p.numExperts * bytes1;
  int64_t largest = paddedRows(
      std::min(detail::kExpertTileRows, std::max<int64_t>(p.slots, 1)));

  int64_t items = static_cast<int64_t>(tiles.size());
  bool parallel = items > 1 && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    // Each thread's tile buffers, kept between runs. The padding rows are
    // zeroed; their results are dropped.
    thread_local std::vector<uint16_t> rows, hidden;
    thread_local std::vector<float> out;
    rows.resize(std::max(rows.size(), size_t(largest * p.d)));
    hidden.resize(std::max(hidden.size(), size_t(largest * p.f)));
    out.resize(std::max(out.size(), size_t(largest * p.d)));
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item)
      errors.run([&] {
        const detail::ExpertRows &tile = tiles[item];
        int64_t padded = paddedRows(tile.rows);
        size_t index = (largest - padded) / kPaddedRows;
        toBf16(xd + tile.row0 * p.d, rows.data(), tile.rows * p.d);
        std::fill(rows.begin() + tile.rows * p.d, rows.begin() + padded * p.d,
                  uint16_t(0));
        p.first[index].run(rows.data(), packed1 + tile.expert * bytes1,
                           b1 ? b1 + tile.expert * p.f : nullptr,
                           hidden.data());
        p.second[index].run(hidden.data(), packed2 + tile.expert * bytes2,
                            b2 ? b2 + tile.expert * p.d : nullptr, out.data());
        std::memcpy(yd + tile.row0 * p.d, out.data(),
                    tile.rows * p.d * sizeof(float));
      });
  }
  errors.rethrow();
}

void permuteBlocks(const uint8_t *x, const int32_t *offsets, int64_t outer,
                   int64_t inner, int64_t numRows, size_t rowBytes, uint8_t *y,
                   int32_t *permuted, int32_t *grouped) {
  int64_t row = 0;
  permuted[0] = 0;
  for (int64_t j = 0; j < inner; ++j) {
    grouped[j] = static_cast<int32_t>(row);
    for (int64_t i = 0; i < outer; ++i) {
      int64_t block = i * inner + j;
      int64_t rows = offsets[block + 1] - offsets[block];
      std::memcpy(y + row * rowBytes, x + offsets[block] * rowBytes,
                  rows * rowBytes);
      row += rows;
      permuted[j * outer + i + 1] = static_cast<int32_t>(row);
    }
  }
  grouped[inner] = static_cast<int32_t>(row);
  std::memset(y + row * rowBytes, 0, (numRows - row) * rowBytes);
}

void combine(const float *yd, const int32_t *tokens, const float *gates,
             float *out, int64_t slots, int64_t numTokens, int64_t d) {
  // Entries of each token in ascending entry order (CSR).
  std::vector<int64_t> start(numTokens + 1, 0);
  detail::checkTokens(tokens, slots, numTokens, "combine");
  for (int64_t i = 0; i < slots; ++i)
    if (tokens[i] >= 0)
      ++start[tokens[i] + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int64_t> entries(start[numTokens]);
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < slots; ++i)
    if (tokens[i] >= 0)
      entries[cursor[tokens[i]]++] = i;

#pragma omp parallel for schedule(static) if (numTokens * d >= kParallelValues)
  for (int64_t t = 0; t < numTokens; ++t) {
    float *row = out + t * d;
    int64_t first = start[t], last = start[t + 1];
    if (first == last) {
      std::memset(row, 0, d * sizeof(float));
      continue;
    }
    simd::scaleRow(yd + entries[first] * d, row, d, gates[entries[first]]);
    for (int64_t j = first + 1; j < last; ++j) {
      const float *src = yd + entries[j] * d;
      float gate = gates[entries[j]];
      simd::forChunks(d, [&](int64_t i, int64_t count) {
        simd::storeChunk(row + i,
                         simd::loadChunk(row + i, count) +
                             gate * simd::loadChunk(src + i, count),
                         count);
      });
    }
  }
}

} // namespace mixer::cpu
