//===- Embedding.cpp - Word + position + type embeddings ------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Simd.h"

#include <string>

namespace mixer::cpu {
namespace {

/// Throws for the first (row-major) id outside [0, size).
void checkIds(const int32_t *ids, int64_t batch, int64_t seq, int64_t size,
              const char *tensor, const char *what) {
  for (int64_t i = 0; i < batch * seq; ++i) {
    if (ids[i] >= 0 && ids[i] < size)
      continue;
    throw KernelError{std::string(tensor) + "[" + std::to_string(i / seq) +
                      "," + std::to_string(i % seq) +
                      "] = " + std::to_string(ids[i]) + " is outside the " +
                      what + " [0, " + std::to_string(size) + ")"};
  }
}

} // namespace

void embed(const int32_t *ids, const int32_t *typeIds, const float *word,
           const float *pos, const float *type, float *y, int64_t batch,
           int64_t seq, int64_t dEmb, int64_t vocab, int64_t typeVocab) {
  checkIds(ids, batch, seq, vocab, "input_ids", "vocabulary");
  if (typeIds)
    checkIds(typeIds, batch, seq, typeVocab, "type_ids", "type vocabulary");
  int64_t tokens = batch * seq;
#pragma omp parallel for schedule(static) if (tokens * dEmb >= (1 << 15))
  for (int64_t t = 0; t < tokens; ++t) {
    const float *w = word + static_cast<int64_t>(ids[t]) * dEmb;
    const float *p = pos + (t % seq) * dEmb;
    const float *ty = type + (typeIds ? typeIds[t] : 0) * dEmb;
    float *out = y + t * dEmb;
    simd::forChunks(dEmb, [&](int64_t i, int64_t count) {
      simd::storeChunk(out + i,
                       simd::loadChunk(w + i, count) +
                           simd::loadChunk(p + i, count) +
                           simd::loadChunk(ty + i, count),
                       count);
    });
  }
}

} // namespace mixer::cpu
