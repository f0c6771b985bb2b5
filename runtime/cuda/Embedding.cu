//===- Embedding.cu - Word + position + type embeddings and LayerNorm -----===//
//
// One block per token: the three table rows are summed, optionally stored,
// and normalised (the statistics of Norm.cuh, as layerNorm).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Norm.cuh"

namespace mixer::cuda {
namespace {

using namespace detail;

/// word[id] + pos[s] + type[typeId], added in that order as cpu::embed does.
struct EmbeddingSum {
  const float *word, *pos, *type;
  __device__ float operator()(int64_t i) const {
    return word[i] + pos[i] + type[i];
  }
};

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    embedLayerNormKernel(const int32_t *ids, const int32_t *typeIds,
                         const float *word, const float *pos, const float *type,
                         const float *scale, const float *bias, T *sum, T *y,
                         int64_t seq, int64_t dEmb, int64_t vocab,
                         int64_t typeVocab, float eps) {
  __shared__ float scratch[kBlockWarps];
  int64_t token = blockIdx.x;
  int64_t id = ids[token];
  int64_t typeId = typeIds ? typeIds[token] : 0;
  T *sumRow = sum ? sum + token * dEmb : nullptr;
  T *yRow = y + token * dEmb;
  if (id < 0 || id >= vocab || typeId < 0 || typeId >= typeVocab) {
    for (int64_t i = threadIdx.x; i < dEmb; i += kBlockThreads) {
      if (sumRow)
        store(sumRow, i, __int_as_float(0x7fc00000));
      store(yRow, i, __int_as_float(0x7fc00000));
    }
    return;
  }
  EmbeddingSum value{word + id * dEmb, pos + (token % seq) * dEmb,
                     type + typeId * dEmb};
  if (sumRow)
    for (int64_t i = threadIdx.x; i < dEmb; i += kBlockThreads)
      store(sumRow, i, value(i));
  RowStats stats = rowStats(value, dEmb, eps, scratch);
  writeNormalised(value, stats, scale, bias, yRow, dEmb);
}

template <typename T>
Status embedLayerNormImpl(const int32_t *ids, const int32_t *typeIds,
                          const float *word, const float *pos,
                          const float *type, const float *scale,
                          const float *bias, T *sum, T *y, int64_t batch,
                          int64_t seq, int64_t dEmb, int64_t vocab,
                          int64_t typeVocab, float eps, cudaStream_t stream) {
  const char *kernel = "embed_layer_norm";
  for (auto [what, value] : {std::pair<const char *, int64_t>{"batch", batch},
                             {"seq", seq},
                             {"dEmb", dEmb},
                             {"vocab", vocab},
                             {"typeVocab", typeVocab}}) {
    Status s = requireNonNegative(kernel, what, value);
    if (!s.ok())
      return s;
  }
  int64_t tokens = batch * seq;
  if (tokens > 0x7fffffff)
    return Status::error(std::string(kernel) + ": " + std::to_string(tokens) +
                         " tokens exceed the grid limit");
  if (tokens == 0 || dEmb == 0)
    return Status::success();
  embedLayerNormKernel<<<static_cast<unsigned>(tokens), kBlockThreads, 0,
                         stream>>>(ids, typeIds, word, pos, type, scale, bias,
                                   device(sum), device(y), seq, dEmb, vocab,
                                   typeVocab, eps);
  return launchStatus(kernel);
}

} // namespace

Status embedLayerNorm(const int32_t *ids, const int32_t *typeIds,
                      const float *word, const float *pos, const float *type,
                      const float *scale, const float *bias, float *sum,
                      float *y, int64_t batch, int64_t seq, int64_t dEmb,
                      int64_t vocab, int64_t typeVocab, float eps,
                      cudaStream_t stream) {
  return embedLayerNormImpl(ids, typeIds, word, pos, type, scale, bias, sum, y,
                            batch, seq, dEmb, vocab, typeVocab, eps, stream);
}

Status embedLayerNorm(const int32_t *ids, const int32_t *typeIds,
                      const float *word, const float *pos, const float *type,
                      const float *scale, const float *bias, Bf16 *sum, Bf16 *y,
                      int64_t batch, int64_t seq, int64_t dEmb, int64_t vocab,
                      int64_t typeVocab, float eps, cudaStream_t stream) {
  return embedLayerNormImpl(ids, typeIds, word, pos, type, scale, bias, sum, y,
                            batch, seq, dEmb, vocab, typeVocab, eps, stream);
}

} // namespace mixer::cuda
