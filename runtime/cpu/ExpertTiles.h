//===- ExpertTiles.h - work items of the expert kernels ---------*- C++ -*-===//
//
// Internal to the CPU kernels: the forward and backward expert kernels split
// an assignment table into the same row tiles, so that the backward sees
// exactly the products the forward computed.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_EXPERTTILES_H
#define MIXER_RUNTIME_CPU_EXPERTTILES_H

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mixer::cpu::detail {

/// At most this many rows per work item; as for dense, enough that repacking
/// the expert's weights per item stays cheap.
constexpr int64_t kExpertTileRows = 512;

/// Consecutive slots [row0, row0 + rows) of one expert.
struct ExpertRows {
  int64_t expert, row0, rows;
};

/// The runs of occupied slots (token >= 0) of every expert, by expert, then
/// by slot.
inline std::vector<ExpertRows> occupiedRuns(const int32_t *tokens,
                                            const int32_t *offsets,
                                            int64_t numExperts) {
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
