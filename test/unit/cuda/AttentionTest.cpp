//===- AttentionTest.cpp - GPU attention against the CPU references -------===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <cmath>
#include <limits>

namespace mixer::cuda::test {
namespace {

constexpr int32_t kPad = 0;
/// Gradients through the softmax subtract the row's weighted mean from each
/// dP entry; in fp32 that cancellation costs about one more digit (as in the
/// CPU gradient tests).
constexpr double kGradTol = 1e-4;

struct Case {
  int64_t batch, seq, heads, headDim;
  bool padded, causal;
  double rate;
  int64_t size() const { return batch * seq * heads * headDim; }
};

// Both head-dimension buckets (<= 64, <= 128) with partial last dimensions;
// one token; sequences with partial query and key tiles, longer than one
// tile, and an example that is all padding.
const Case kCases[] = {
    {1, 1, 1, 1, false, false, 0.0},  {2, 70, 3, 64, true, false, 0.0},
    {1, 130, 2, 40, true, true, 0.0}, {2, 33, 1, 128, false, true, 0.0},
    {3, 45, 2, 96, true, false, 0.0}, {2, 70, 2, 64, true, false, 0.25},
    {1, 100, 1, 72, true, true, 0.1},
};

std::string describe(const Case &c) {
  return "batch=" + std::to_string(c.batch) + " seq=" + std::to_string(c.seq) +
         " heads=" + std::to_string(c.heads) +
         " head_dim=" + std::to_string(c.headDim) +
         (c.padded ? " padded" : "") + (c.causal ? " causal" : "") +
         " rate=" + std::to_string(c.rate);
}

/// Token ids: example b has seq - 5 - 17 b real tokens; the last example of
/// three or more is all padding.
std::vector<int32_t> paddedIds(const Case &c) {
  std::vector<int32_t> ids(c.batch * c.seq);
  for (int64_t b = 0; b < c.batch; ++b) {
    int64_t real = b >= 2 && b == c.batch - 1 ? 0 : c.seq - 5 - 17 * b;
    for (int64_t t = 0; t < c.seq; ++t)
      ids[b * c.seq + t] = t < real ? static_cast<int32_t>(3 + t) : kPad;
  }
  return ids;
}

const CounterKey kKey{7, 3, 11};

AttentionConfig configOf(const Case &c, const int32_t *ids) {
  AttentionConfig config;
  config.batch = c.batch;
  config.seq = c.seq;
  config.heads = c.heads;
  config.headDim = c.headDim;
  config.ids = ids;
  config.padId = kPad;
  config.causal = c.causal;
  config.dropoutRate = c.rate;
  config.dropoutKey = kKey;
  return config;
}

cpu::AttentionDropout dropoutOf(const Case &c) {
  return cpu::AttentionDropout::make(c.rate, kKey.seed, kKey.stream, kKey.step);
}

/// The row logsumexp in double from the masking rules of Kernels.h: log(seq)
/// on a pad row (uniform weights), else over the keys neither padded nor in
/// the future.
std::vector<float> referenceLse(const Case &c, const std::vector<float> &q,
                                const std::vector<float> &k,
                                const int32_t *ids) {
  std::vector<float> lse(c.batch * c.heads * c.seq);
  int64_t ld = c.heads * c.headDim;
  auto isPad = [&](int64_t b, int64_t t) {
    return ids && ids[b * c.seq + t] == kPad;
  };
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq; ++i) {
        double value;
        if (isPad(b, i)) {
          value = std::log(double(c.seq));
        } else {
          std::vector<double> logits;
          for (int64_t j = 0; j < c.seq; ++j) {
            if (isPad(b, j) || (c.causal && j > i))
              continue;
            double dot = 0.0;
            for (int64_t d = 0; d < c.headDim; ++d)
              dot += double(q[(b * c.seq + i) * ld + h * c.headDim + d]) *
                     k[(b * c.seq + j) * ld + h * c.headDim + d];
            logits.push_back(dot / std::sqrt(double(c.headDim)));
          }
          double top = -std::numeric_limits<double>::infinity();
          for (double l : logits)
            top = std::max(top, l);
          double sum = 0.0;
          for (double l : logits)
            sum += std::exp(l - top);
          value = top + std::log(sum);
        }
        lse[(b * c.heads + h) * c.seq + i] = static_cast<float>(value);
      }
  return lse;
}

TEST(CudaAttention, ForwardMatchesReference) {
  for (const Case &c : kCases) {
    auto q = randomFloats(c.size(), 1, -2.0f, 2.0f);
    auto k = randomFloats(c.size(), 2, -2.0f, 2.0f);
    auto v = randomFloats(c.size(), 3);
    auto ids = paddedIds(c);
    const int32_t *hostIds = c.padded ? ids.data() : nullptr;
    std::vector<float> expected(c.size());
    cpu::reference::attention(q.data(), k.data(), v.data(), hostIds,
                              expected.data(), c.batch, c.seq, c.heads,
                              c.headDim, kPad, c.causal, dropoutOf(c));
    DeviceArray<float> dQ(q), dK(k), dV(v), dOut(c.size()),
        dLse(c.batch * c.heads * c.seq);
    DeviceArray<int32_t> dIds(ids);
    AttentionConfig config = configOf(c, c.padded ? dIds.get() : nullptr);
    ASSERT_OK(attention(dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(),
                        config, nullptr));
    expectClose(dOut.read(), expected, kRelTol,
                "attention fp32 " + describe(c));
    expectClose(dLse.read(), referenceLse(c, q, k, hostIds), kRelTol,
                "attention logsumexp " + describe(c));

    // The same problem again: the same bits.
    std::vector<float> first = dOut.read();
    ASSERT_OK(attention(dQ.get(), dK.get(), dV.get(), dOut.get(), nullptr,
                        config, nullptr));
    expectBitwiseEqual(dOut.read(), first, "attention repeated " + describe(c));

    auto qb = roundedToBf16(q), kb = roundedToBf16(k), vb = roundedToBf16(v);
    cpu::reference::attention(qb.data(), kb.data(), vb.data(), hostIds,
                              expected.data(), c.batch, c.seq, c.heads,
                              c.headDim, kPad, c.causal, dropoutOf(c));
    DeviceArray<Bf16> bQ(toBf16(qb)), bK(toBf16(kb)), bV(toBf16(vb)),
        bOut(c.size());
    ASSERT_OK(attention(bQ.get(), bK.get(), bV.get(), bOut.get(), nullptr,
                        config, nullptr));
    expectClose(fromBf16(bOut.read()), expected, kBf16Tol,
                "attention bf16 " + describe(c));
  }
}

TEST(CudaAttention, DropsTheCpuElements) {
  // With V the identity (head_dim >= seq), out[b, q, h, j] is the dropped
  // probability P'[b, h, q, j]: zero exactly where the CPU's uniform of that
  // element is below the rate (no mask here, so every P is positive).
  Case c{2, 48, 2, 64, false, false, 0.3};
  auto q = randomFloats(c.size(), 4);
  auto k = randomFloats(c.size(), 5);
  std::vector<float> v(c.size(), 0.0f);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t j = 0; j < c.seq; ++j)
      for (int64_t h = 0; h < c.heads; ++h)
        v[((b * c.seq + j) * c.heads + h) * c.headDim + j] = 1.0f;
  DeviceArray<float> dQ(q), dK(k), dV(v), dOut(c.size());
  ASSERT_OK(attention(dQ.get(), dK.get(), dV.get(), dOut.get(), nullptr,
                      configOf(c, nullptr), nullptr));
  std::vector<float> out = dOut.read();
  cpu::AttentionDropout dropout = dropoutOf(c);
  int64_t mismatches = 0, dropped = 0;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq; ++i)
        for (int64_t j = 0; j < c.seq; ++j) {
          uint64_t element = ((b * c.heads + h) * c.seq + i) * c.seq + j;
          bool cpuDrops =
              cpu::reference::attentionDropoutFactor(dropout, element) == 0.0;
          float got = out[((b * c.seq + i) * c.heads + h) * c.headDim + j];
          dropped += cpuDrops;
          if (cpuDrops != (got == 0.0f) && mismatches++ < 5)
            ADD_FAILURE() << "element (" << b << ", " << h << ", " << i << ", "
                          << j << "): cpu " << (cpuDrops ? "drops" : "keeps")
                          << ", gpu weight " << got;
        }
  EXPECT_EQ(mismatches, 0);
  // About 30% of the 9216 probabilities.
  EXPECT_GT(dropped, 2400);
  EXPECT_LT(dropped, 3100);
}

TEST(CudaAttentionBackward, MatchesReference) {
  for (const Case &c : kCases) {
    auto q = randomFloats(c.size(), 6, -2.0f, 2.0f);
    auto k = randomFloats(c.size(), 7, -2.0f, 2.0f);
    auto v = randomFloats(c.size(), 8);
    auto dout = randomFloats(c.size(), 9);
    auto ids = paddedIds(c);
    const int32_t *hostIds = c.padded ? ids.data() : nullptr;
    std::vector<float> dq(c.size()), dk(c.size()), dv(c.size());
    cpu::reference::attentionBackward(q.data(), k.data(), v.data(), hostIds,
                                      dout.data(), dq.data(), dk.data(),
                                      dv.data(), c.batch, c.seq, c.heads,
                                      c.headDim, kPad, c.causal, dropoutOf(c));

    DeviceArray<float> dQ(q), dK(k), dV(v), dDout(dout), dOut(c.size()),
        dLse(c.batch * c.heads * c.seq), gQ(c.size()), gK(c.size()),
        gV(c.size());
    DeviceArray<int32_t> dIds(ids);
    AttentionConfig config = configOf(c, c.padded ? dIds.get() : nullptr);
    ASSERT_OK(attention(dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(),
                        config, nullptr));
    ASSERT_OK(attentionBackward(dQ.get(), dK.get(), dV.get(), dOut.get(),
                                dDout.get(), dLse.get(), gQ.get(), gK.get(),
                                gV.get(), config, nullptr));
    std::string what = describe(c);
    std::vector<float> gotQ = gQ.read(), gotK = gK.read(), gotV = gV.read();
    expectClose(gotQ, dq, kGradTol, "attention_backward dq " + what);
    expectClose(gotK, dk, kGradTol, "attention_backward dk " + what);
    expectClose(gotV, dv, kGradTol, "attention_backward dv " + what);

    // Deterministic: the same bits again, and with dq alone.
    DeviceArray<float> again(c.size());
    ASSERT_OK(attentionBackward(dQ.get(), dK.get(), dV.get(), dOut.get(),
                                dDout.get(), dLse.get(), again.get(), nullptr,
                                nullptr, config, nullptr));
    expectBitwiseEqual(again.read(), gotQ, "attention_backward repeated dq");

    auto qb = roundedToBf16(q), kb = roundedToBf16(k), vb = roundedToBf16(v);
    auto doutb = roundedToBf16(dout);
    cpu::reference::attentionBackward(qb.data(), kb.data(), vb.data(), hostIds,
                                      doutb.data(), dq.data(), dk.data(),
                                      dv.data(), c.batch, c.seq, c.heads,
                                      c.headDim, kPad, c.causal, dropoutOf(c));
    DeviceArray<Bf16> bQ(toBf16(qb)), bK(toBf16(kb)), bV(toBf16(vb)),
        bDout(toBf16(doutb)), bOut(c.size()), hQ(c.size()), hK(c.size()),
        hV(c.size());
    ASSERT_OK(attention(bQ.get(), bK.get(), bV.get(), bOut.get(), dLse.get(),
                        config, nullptr));
    ASSERT_OK(attentionBackward(bQ.get(), bK.get(), bV.get(), bOut.get(),
                                bDout.get(), dLse.get(), hQ.get(), hK.get(),
                                hV.get(), config, nullptr));
    // The correction rowsum(dO o O) comes from the bf16-rounded output:
    // twice the bf16 bound.
    expectClose(fromBf16(hQ.read()), dq, 2 * kBf16Tol, "bf16 dq " + what);
    expectClose(fromBf16(hK.read()), dk, 2 * kBf16Tol, "bf16 dk " + what);
    expectClose(fromBf16(hV.read()), dv, 2 * kBf16Tol, "bf16 dv " + what);
  }
}

} // namespace
} // namespace mixer::cuda::test
