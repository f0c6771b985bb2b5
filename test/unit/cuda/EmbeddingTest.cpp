//===- EmbeddingTest.cpp - GPU embedding + LayerNorm against the CPU ------===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <cmath>

namespace mixer::cuda::test {
namespace {

struct Tables {
  int64_t batch = 3, seq = 11, dEmb = 45, vocab = 50, typeVocab = 4,
          posRows = 16;
  std::vector<int32_t> ids, typeIds;
  std::vector<float> word, pos, type, scale, bias;
  Tables() {
    for (int64_t i = 0; i < batch * seq; ++i) {
      ids.push_back(static_cast<int32_t>((i * 7 + 3) % vocab));
      typeIds.push_back(static_cast<int32_t>(i % typeVocab));
    }
    word = randomFloats(vocab * dEmb, 1);
    pos = randomFloats(posRows * dEmb, 2);
    type = randomFloats(typeVocab * dEmb, 3);
    scale = randomFloats(dEmb, 4, 0.5f, 1.5f);
    bias = randomFloats(dEmb, 5);
  }
};

TEST(CudaEmbedLayerNorm, MatchesEmbedThenLayerNorm) {
  Tables t;
  int64_t n = t.batch * t.seq * t.dEmb;
  for (bool withTypes : {false, true}) {
    const int32_t *typeIds = withTypes ? t.typeIds.data() : nullptr;
    std::vector<float> sum(n), expected(n);
    cpu::reference::embed(t.ids.data(), typeIds, t.word.data(), t.pos.data(),
                          t.type.data(), sum.data(), t.batch, t.seq, t.dEmb,
                          t.vocab, t.typeVocab);
    cpu::reference::layerNorm(sum.data(), nullptr, t.scale.data(),
                              t.bias.data(), expected.data(), t.batch * t.seq,
                              t.dEmb, 1e-12f);
    DeviceArray<int32_t> dIds(t.ids), dTypes(t.typeIds);
    DeviceArray<float> dWord(t.word), dPos(t.pos), dType(t.type),
        dScale(t.scale), dBias(t.bias), gSum(n), gY(n);
    ASSERT_OK(embedLayerNorm(dIds.get(), withTypes ? dTypes.get() : nullptr,
                             dWord.get(), dPos.get(), dType.get(), dScale.get(),
                             dBias.get(), gSum.get(), gY.get(), t.batch, t.seq,
                             t.dEmb, t.vocab, t.typeVocab, 1e-12f, nullptr));
    // The sum is three fp32 additions in the CPU kernel's order.
    std::vector<float> cpuSum(n);
    cpu::embed(t.ids.data(), typeIds, t.word.data(), t.pos.data(),
               t.type.data(), cpuSum.data(), t.batch, t.seq, t.dEmb, t.vocab,
               t.typeVocab);
    expectBitwiseEqual(gSum.read(), cpuSum, "embedding sum");
    expectClose(gY.read(), expected, kRelTol, "embedding layer norm");

    DeviceArray<Bf16> bY(n);
    ASSERT_OK(embedLayerNorm(dIds.get(), withTypes ? dTypes.get() : nullptr,
                             dWord.get(), dPos.get(), dType.get(), dScale.get(),
                             dBias.get(), nullptr, bY.get(), t.batch, t.seq,
                             t.dEmb, t.vocab, t.typeVocab, 1e-12f, nullptr));
    expectClose(fromBf16(bY.read()), expected, kBf16Tol, "bf16 embedding");
  }
}

TEST(CudaEmbedLayerNorm, OutOfRangeIdsGiveNanRowsOnly) {
  Tables t;
  t.ids[4] = static_cast<int32_t>(t.vocab); // one past the table
  t.typeIds[9] = -1;
  int64_t n = t.batch * t.seq * t.dEmb;
  DeviceArray<int32_t> dIds(t.ids), dTypes(t.typeIds);
  DeviceArray<float> dWord(t.word), dPos(t.pos), dType(t.type), dScale(t.scale),
      dBias(t.bias), gY(n);
  ASSERT_OK(embedLayerNorm(dIds.get(), dTypes.get(), dWord.get(), dPos.get(),
                           dType.get(), dScale.get(), dBias.get(), nullptr,
                           gY.get(), t.batch, t.seq, t.dEmb, t.vocab,
                           t.typeVocab, 1e-12f, nullptr));
  std::vector<float> y = gY.read();
  for (int64_t token = 0; token < t.batch * t.seq; ++token) {
    bool bad = token == 4 || token == 9;
    for (int64_t c = 0; c < t.dEmb; ++c)
      ASSERT_EQ(std::isnan(y[token * t.dEmb + c]), bad)
          << "token " << token << " column " << c;
  }
}

} // namespace
} // namespace mixer::cuda::test
