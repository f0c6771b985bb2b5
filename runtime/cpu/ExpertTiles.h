//===- ExpertTiles.h - work items of the expert kernels ---------*- C++ -*-===//
//
// Internal to the CPU kernels: the forward and backward expert kernels split
// an assignment table into the same row tiles, so that the backward sees
// exactly the products the forward computed. The MoE kernels check the token
// ids and offsets of a table before indexing with them: they are arena data,
// and a damaged plan could leave anything there.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_EXPERTTILES_H
#define MIXER_RUNTIME_CPU_EXPERTTILES_H

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace mixer::cpu::detail {

/// At most this many rows per work item; as for dense, enough that repacking
/// the expert's weights per item stays cheap.
constexpr int64_t kExpertTileRows = 512;

/// Consecutive slots [row0, row0 + rows) of one expert.
struct ExpertRows {
  int64_t expert, row0, rows;
};

/// Throws unless every token id of the table is below numTokens (negative ids
/// mark empty slots).
inline void checkTokens(const int32_t *tokens, int64_t slots, int64_t numTokens,
                        const char *kernel) {
  for (int64_t i = 0; i < slots; ++i)
    if (tokens[i] >= numTokens)
      throw KernelError{std::string(kernel) + ": slot " + std::to_string(i) +
                        " names token " + std::to_string(tokens[i]) +
                        " outside [0, " + std::to_string(numTokens) + ")"};
}

/// Throws unless the numExperts + 1 offsets (`what` in the message: the
/// experts', or the blocks' of a collective) rise from 0 and stay within the
/// slots.
inline void checkOffsets(const int32_t *offsets, int64_t numExperts,
                         int64_t slots, const char *kernel,
                         const char *what = "expert offset") {
  for (int64_t e = 0; e <= numExperts; ++e)
    if (offsets[e] < (e == 0 ? 0 : offsets[e - 1]) || offsets[e] > slots)
      throw KernelError{
          std::string(kernel) + ": " + what + " " + std::to_string(e) + " is " +
          std::to_string(offsets[e]) + ", not in ascending order within [0, " +
          std::to_string(slots) + "]"};
}

/// The runs of occupied slots (token >= 0) of every expert, by expert, then
/// by slot; checks the offsets first.
inline std::vector<ExpertRows> occupiedRuns(const int32_t *tokens,
                                            const int32_t *offsets,
                                            int64_t numExperts, int64_t slots,
                                            const char *kernel) {
  checkOffsets(offsets, numExperts, slots, kernel);
  std::vector<ExpertRows> runs;
  for (int64_t e = 0; e < numExperts; ++e) {
    int64_t end = offsets[e + 1];
    for (int64_t i = offsets[e]; i < end;) {
      if (tokens[i] < 0) {
        ++i;
        continue;
      }
      int64_t runEnd = i;
      while (runEnd < end && tokens[runEnd] >= 0)
        ++runEnd;
      runs.push_back({e, i, runEnd - i});
      i = runEnd;
    }
  }
  return runs;
}

/// Each run cut into equal tiles of at most kExpertTileRows rows.
inline std::vector<ExpertRows> rowTiles(const std::vector<ExpertRows> &runs) {
  std::vector<ExpertRows> tiles;
  for (const ExpertRows &run : runs) {
    int64_t parts = (run.rows + kExpertTileRows - 1) / kExpertTileRows;
    int64_t size = (run.rows + parts - 1) / parts;
    for (int64_t row0 = run.row0; row0 < run.row0 + run.rows; row0 += size)
      tiles.push_back(
          {run.expert, row0, std::min(size, run.row0 + run.rows - row0)});
  }
  return tiles;
}

/// out[rows, n] = act(in[rows, k] · weight[k, n] + bias[n]) for one tile of
/// one expert (single-threaded GEMM; bias may be null).
inline void expertProjection(const float *in, int64_t rows, int64_t k,
                             const float *weight, int64_t n, const float *bias,
                             float *out, Activation act) {
  GemmArgs product;
  product.m = rows;
  product.n = n;
  product.k = k;
  product.a = in;
  product.lda = k;
  product.b = weight;
  product.ldb = n;
  product.c = out;
  product.ldc = n;
  gemm(product);
  biasActivation(out, rows, n, n, bias, act);
}

} // namespace mixer::cpu::detail

#endif // MIXER_RUNTIME_CPU_EXPERTTILES_H
