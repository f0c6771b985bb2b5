//===- ExecutorKernelsTest.cpp - GPU glue kernels against the CPU ---------===//
//
// The executor's glue kernels (runtime/cuda/ExecutorKernels.h) against the
// CPU kernels of the same plan names and their plain references: the
// embedding sum and its gradient, the head's gathers, argmax, tanh, the
// scalar arithmetic, the bias gradient, the cross-entropy gradient with a
// device loss scale and the load-balancing loss with its gradient; and the
// fault record each gather, scatter, embedding and loss kernel leaves for an
// id outside its table.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/ExecutorKernels.h"
#include "CudaTestUtil.h"
#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"
#include "runtime/cpu/ReferenceAuxiliaryLosses.h"
#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/TransformerGradients.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace mixer::cuda::test {
namespace {

struct Tokens {
  int64_t batch = 3, seq = 7, d = 37, vocab = 11, typeVocab = 3, posRows = 9;
  std::vector<int32_t> ids, typeIds;
  Tokens() {
    // Repeated ids, so that table rows collect several tokens.
    for (int64_t i = 0; i < batch * seq; ++i) {
      ids.push_back(static_cast<int32_t>((i * 5 + 2) % vocab));
      typeIds.push_back(static_cast<int32_t>(i % typeVocab));
    }
  }
};

TEST(CudaEmbedSum, MatchesTheCpuBitForBit) {
  Tokens t;
  int64_t n = t.batch * t.seq * t.d;
  std::vector<float> word = randomFloats(t.vocab * t.d, 1),
                     pos = randomFloats(t.posRows * t.d, 2),
                     type = randomFloats(t.typeVocab * t.d, 3);
  DeviceArray<int32_t> ids(t.ids), types(t.typeIds);
  DeviceArray<float> dWord(word), dPos(pos), dType(type), y(n);
  for (bool withTypes : {false, true}) {
    const int32_t *typeIds = withTypes ? t.typeIds.data() : nullptr;
    std::vector<float> expected(n);
    cpu::embed(t.ids.data(), typeIds, word.data(), pos.data(), type.data(),
               expected.data(), t.batch, t.seq, t.d, t.vocab, t.typeVocab);
    ASSERT_OK(embedSum(ids.get(), withTypes ? types.get() : nullptr,
                       dWord.get(), dPos.get(), dType.get(), y.get(), t.batch,
                       t.seq, t.d, t.vocab, t.typeVocab, nullptr));
    expectBitwiseEqual(y.read(), expected, "embedding sum");
    DeviceArray<Bf16> b(n);
    ASSERT_OK(embedSum(ids.get(), withTypes ? types.get() : nullptr,
                       dWord.get(), dPos.get(), dType.get(), b.get(), t.batch,
                       t.seq, t.d, t.vocab, t.typeVocab, nullptr));
    expectBitwiseEqual(fromBf16(b.read()), roundedToBf16(expected),
                       "bf16 embedding sum");
  }
}

TEST(CudaEmbedBackward, MatchesTheCpuBitForBit) {
  Tokens t;
  std::vector<float> dy = randomFloats(t.batch * t.seq * t.d, 4);
  std::vector<float> word(t.vocab * t.d), pos(t.posRows * t.d),
      type(t.typeVocab * t.d), refWord = word, refPos = pos, refType = type;
  cpu::embedBackward(t.ids.data(), t.typeIds.data(), dy.data(), word.data(),
                     pos.data(), type.data(), t.batch, t.seq, t.d, t.vocab,
                     t.posRows, t.typeVocab, /*accumulate=*/false);
  cpu::reference::embedBackward(t.ids.data(), t.typeIds.data(), dy.data(),
                                refWord.data(), refPos.data(), refType.data(),
                                t.batch, t.seq, t.d, t.vocab, t.posRows,
                                t.typeVocab, /*accumulate=*/false);
  DeviceArray<int32_t> ids(t.ids), types(t.typeIds),
      scratch(t.vocab + t.posRows + t.typeVocab + 3 + 3 * t.batch * t.seq);
  DeviceArray<float> dDy(dy), gWord(word.size(), 7.0f), gPos(pos.size(), 7.0f),
      gType(type.size(), 7.0f);
  ASSERT_OK(embedBackward(ids.get(), types.get(), dDy.get(), gWord.get(),
                          gPos.get(), gType.get(), t.batch, t.seq, t.d, t.vocab,
                          t.posRows, t.typeVocab, scratch.get(), nullptr));
  expectBitwiseEqual(gWord.read(), word, "dword");
  expectBitwiseEqual(gPos.read(), pos, "dpos");
  expectBitwiseEqual(gType.read(), type, "dtype");
  expectClose(gWord.read(), refWord, kRelTol, "dword (reference)");
  expectClose(gPos.read(), refPos, kRelTol, "dpos (reference)");
}

TEST(CudaGatherPositions, MatchesTheCpu) {
  int64_t batch = 2, seq = 6, d = 19, count = 4;
  // Repeated positions add up in the gradient.
  std::vector<int32_t> positions = {0, 5, 5, 2, 3, 3, 3, 1};
  std::vector<float> x = randomFloats(batch * seq * d, 5),
                     dy = randomFloats(batch * count * d, 6);
  std::vector<float> y(batch * count * d), dx(batch * seq * d);
  cpu::reference::gatherRows(x.data(), positions.data(), y.data(), batch, seq,
                             d, count);
  cpu::gatherRowsBackward(dy.data(), positions.data(), dx.data(), batch, seq, d,
                          count, /*accumulate=*/false);
  DeviceArray<int32_t> dPositions(positions);
  DeviceArray<float> dX(x), dDy(dy), gY(y.size()), gDx(dx.size(), 7.0f);
  ASSERT_OK(gatherPositions(dX.get(), dPositions.get(), gY.get(), batch, seq, d,
                            count, nullptr));
  ASSERT_OK(gatherPositionsBackward(dDy.get(), dPositions.get(), gDx.get(),
                                    batch, seq, d, count, nullptr));
  expectBitwiseEqual(gY.read(), y, "gather");
  expectBitwiseEqual(gDx.read(), dx, "gather gradient");

  DeviceArray<Bf16> bDy(toBf16(dy)), bDx(dx.size());
  std::vector<float> roundedDy = roundedToBf16(dy), expected(dx.size());
  cpu::reference::gatherRowsBackward(roundedDy.data(), positions.data(),
                                     expected.data(), batch, seq, d, count,
                                     /*accumulate=*/false);
  ASSERT_OK(gatherPositionsBackward(bDy.get(), dPositions.get(), bDx.get(),
                                    batch, seq, d, count, nullptr));
  expectClose(fromBf16(bDx.read()), expected, kBf16Tol, "bf16 gather gradient");
}

TEST(CudaTakePosition, SlicesAndScattersOnePosition) {
  int64_t batch = 3, seq = 5, d = 7, index = 2;
  std::vector<float> x = randomFloats(batch * seq * d, 7),
                     dy = randomFloats(batch * d, 8);
  std::vector<float> y(batch * d), dx(batch * seq * d, 0.0f);
  cpu::takePosition(x.data(), y.data(), batch, seq, d, index);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < d; ++c)
      dx[(b * seq + index) * d + c] = dy[b * d + c];
  DeviceArray<float> dX(x), dDy(dy), gY(y.size()), gDx(dx.size(), 7.0f);
  ASSERT_OK(takePosition(dX.get(), gY.get(), batch, seq, d, index, nullptr));
  ASSERT_OK(takePositionBackward(dDy.get(), gDx.get(), batch, seq, d, index,
                                 nullptr));
  expectBitwiseEqual(gY.read(), y, "take_position");
  expectBitwiseEqual(gDx.read(), dx, "take_position_grad");
}

TEST(CudaArgmax, TakesTheFirstMaximum) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  // Rows: ties (first wins), a NaN first (never replaced, as
  // std::max_element), a NaN later (skipped), one column.
  std::vector<float> x = {1, 3, 3, 2, nan, 5, 9, 1, 0, nan, 4, 4};
  DeviceArray<float> dX(x);
  DeviceArray<int32_t> y(3);
  ASSERT_OK(argmaxRows(dX.get(), y.get(), 3, 4, nullptr));
  EXPECT_EQ(y.read(), (std::vector<int32_t>{1, 0, 2}));
  DeviceArray<Bf16> bX(toBf16(std::vector<float>{2, 7, 7, -1}));
  DeviceArray<int32_t> single(4);
  ASSERT_OK(argmaxRows(bX.get(), single.get(), 4, 1, nullptr));
  EXPECT_EQ(single.read(), (std::vector<int32_t>{0, 0, 0, 0}));
}

TEST(CudaTanh, MatchesTheReference) {
  int64_t n = 1000;
  std::vector<float> x = randomFloats(n, 9, -6.0f, 6.0f),
                     dy = randomFloats(n, 10);
  std::vector<float> y(n), dx(n);
  cpu::reference::activation(x.data(), y.data(), n, Activation::Tanh);
  cpu::reference::activationBackward(x.data(), dy.data(), dx.data(), n,
                                     Activation::Tanh);
  DeviceArray<float> dX(x), dDy(dy), gY(n), gDx(n);
  ASSERT_OK(tanhForward(dX.get(), gY.get(), n, nullptr));
  ASSERT_OK(tanhBackward(dX.get(), dDy.get(), gDx.get(), n, nullptr));
  expectClose(gY.read(), y, kRelTol, "tanh");
  expectClose(gDx.read(), dx, kRelTol, "tanh gradient");
}

TEST(CudaGeluErf, MatchesTheReference) {
  int64_t n = 1000;
  std::vector<float> x = randomFloats(n, 19, -8.0f, 8.0f),
                     dy = randomFloats(n, 20);
  std::vector<float> y(n), dx(n);
  cpu::reference::activation(x.data(), y.data(), n, Activation::GeluErf);
  cpu::reference::activationBackward(x.data(), dy.data(), dx.data(), n,
                                     Activation::GeluErf);
  DeviceArray<float> dX(x), dDy(dy), gY(n), gDx(n);
  ASSERT_OK(geluErfForward(dX.get(), gY.get(), n, nullptr));
  ASSERT_OK(geluErfBackward(dX.get(), dDy.get(), gDx.get(), n, nullptr));
  expectClose(gY.read(), y, kRelTol, "gelu_erf");
  expectClose(gDx.read(), dx, kRelTol, "gelu_erf gradient");
}

TEST(CudaPool, MatchesTheReference) {
  const int64_t batch = 3, seq = 9, d = 300;
  std::vector<float> x = randomFloats(batch * seq * d, 21);
  std::vector<int32_t> ids(batch * seq);
  for (int64_t i = 0; i < batch * seq; ++i)
    ids[i] = i % seq < 1 + 4 * (i / seq) ? 7 : 0;
  ids[2 * seq] = 0; // the last example: padding first, then tokens
  DeviceArray<float> dX(x), dY(batch * d);
  DeviceArray<int32_t> dIds(ids);
  for (PoolMode mode : {PoolMode::Cls, PoolMode::Mean})
    for (bool normalize : {false, true}) {
      std::vector<float> expected(batch * d);
      cpu::reference::pool(x.data(), ids.data(), expected.data(), batch, seq, d,
                           mode, normalize, 0);
      ASSERT_OK(pool(dX.get(), dIds.get(), dY.get(), batch, seq, d, mode,
                     normalize, 0, nullptr));
      expectClose(dY.read(), expected, kRelTol, "pool");
    }
}

TEST(CudaScalarKernels, FollowTheCpuKernels) {
  std::vector<float> a = randomFloats(301, 11),
                     b = randomFloats(301, 12, 0.5f, 2.0f);
  DeviceArray<float> dA(a), dB(b), y(301);
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Multiply, BinaryOp::Divide}) {
    std::vector<float> expected(301);
    for (size_t i = 0; i < a.size(); ++i)
      expected[i] = op == BinaryOp::Add        ? a[i] + b[i]
                    : op == BinaryOp::Multiply ? a[i] * b[i]
                                               : a[i] / b[i];
    ASSERT_OK(binary(dA.get(), dB.get(), y.get(), 301, op, nullptr));
    expectBitwiseEqual(y.read(), expected, "binary op");
  }
  double sum = 0.0;
  for (float v : a)
    sum += v;
  DeviceArray<float> total(1);
  ASSERT_OK(sumValues(dA.get(), total.get(), 301, nullptr));
  EXPECT_EQ(total.read()[0], static_cast<float>(sum));

  ASSERT_OK(scaleValues(dA.get(), y.get(), 301, 0.125f, nullptr));
  std::vector<float> scaled = y.read();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(scaled[i], a[i] * 0.125f);
  ASSERT_OK(fillValues(y.get(), 301, 2.5f, nullptr));
  EXPECT_EQ(y.read(), std::vector<float>(301, 2.5f));
  ASSERT_OK(broadcastScalar(total.get(), y.get(), 301, nullptr));
  EXPECT_EQ(y.read(), std::vector<float>(301, static_cast<float>(sum)));

  DeviceArray<int32_t> labels(std::vector<int32_t>{-1, 0, 4, -2});
  DeviceArray<float> mask(4);
  ASSERT_OK(labelMask(labels.get(), mask.get(), 4, nullptr));
  EXPECT_EQ(mask.read(), (std::vector<float>{0, 1, 1, 0}));
}

float fromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

TEST(CudaRoundBf16, MatchesTheCpuBits) {
  float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = randomFloats(500, 16, -100.0f, 100.0f);
  // Ties (to even, both ways), the largest finite value, infinities, NaN.
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x7fc00001u})
    x.push_back(fromBits(bits));
  x.push_back(inf);
  x.push_back(-inf);
  std::vector<float> expected(x.size());
  cpu::roundToBf16(x.data(), expected.data(), x.size());
  DeviceArray<float> dX(x), y(x.size());
  ASSERT_OK(roundToBf16Values(dX.get(), y.get(), x.size(), nullptr));
  expectBitwiseEqual(y.read(), expected, "round_bf16");
}

TEST(CudaBf16Router, MatchesTheCpuBits) {
  // Logits of 300 tokens over 16 experts, wide enough to underflow some
  // probabilities, with a repeated maximum in the first row.
  int64_t rows = 300, cols = 16;
  std::vector<float> products = randomFloats(rows * cols, 21, -40.0f, 40.0f);
  std::vector<float> bias = randomFloats(cols, 22, -1.0f, 1.0f);
  products[1] = products[0];
  bias[1] = bias[0];
  std::vector<float> logits(products.size()), probs(products.size());
  cpu::routerLogitsBf16(products.data(), bias.data(), logits.data(), rows,
                        cols);
  cpu::routerSoftmaxBf16(logits.data(), probs.data(), rows, cols);
  DeviceArray<float> dProducts(products), dBias(bias), dLogits(rows * cols),
      dProbs(rows * cols);
  ASSERT_OK(routerLogitsBf16(dProducts.get(), dBias.get(), dLogits.get(), rows,
                             cols, nullptr));
  ASSERT_OK(
      routerSoftmaxBf16(dLogits.get(), dProbs.get(), rows, cols, nullptr));
  expectBitwiseEqual(dLogits.read(), logits, "router_logits_bf16");
  expectBitwiseEqual(dProbs.read(), probs, "softmax bf16");
}

TEST(CudaSquaredError, MatchesTheCpuBitForBit) {
  std::vector<float> p = randomFloats(257, 17), t = randomFloats(257, 18);
  DeviceArray<float> dP(p), dT(t), loss(1);
  ASSERT_OK(squaredError(dP.get(), dT.get(), loss.get(), 257, nullptr));
  EXPECT_EQ(loss.read()[0],
            cpu::squaredError(p.data(), t.data(), 257, nullptr, 1.0f));
}

TEST(CudaColumnSum, IsTheBiasGradient) {
  for (int64_t rows : {1, 300, 777}) {
    int64_t cols = 45;
    std::vector<float> dy = randomFloats(rows * cols, 13, -1.0f, 3.0f);
    std::vector<float> db(cols);
    cpu::reference::denseBackward(nullptr, nullptr, dy.data(), nullptr, nullptr,
                                  db.data(), rows, 0, cols, false,
                                  /*accumulate=*/false);
    DeviceArray<float> dDy(dy), gDb(cols, 7.0f);
    ASSERT_OK(columnSum(dDy.get(), gDb.get(), rows, cols, nullptr));
    expectClose(gDb.read(), db, kRelTol, "column sums");

    std::vector<float> rounded = roundedToBf16(dy), bDb(cols);
    cpu::reference::denseBackward(nullptr, nullptr, rounded.data(), nullptr,
                                  nullptr, bDb.data(), rows, 0, cols, false,
                                  /*accumulate=*/false);
    DeviceArray<Bf16> bDy(toBf16(dy));
    ASSERT_OK(columnSum(bDy.get(), gDb.get(), rows, cols, nullptr));
    expectClose(gDb.read(), bDb, kRelTol, "bf16 column sums");
  }
}

TEST(CudaCrossEntropyGrad, ReadsTheLossScaleOnTheDevice) {
  int64_t rows = 6, classes = 13;
  std::vector<float> logits = randomFloats(rows * classes, 14, -3.0f, 3.0f),
                     weights = randomFloats(rows, 15, 0.0f, 2.0f);
  std::vector<int32_t> labels = {3, -1, 0, 12, 7, 7};
  std::vector<float> expected(rows * classes);
  cpu::reference::softmaxCrossEntropy(logits.data(), labels.data(),
                                      weights.data(), rows, classes,
                                      expected.data(), 0.375f);
  DeviceArray<float> dLogits(logits), dWeights(weights),
      scale(std::vector<float>{0.375f}), grad(expected.size());
  DeviceArray<int32_t> dLabels(labels);
  ASSERT_OK(softmaxCrossEntropyGrad(dLogits.get(), dLabels.get(),
                                    dWeights.get(), scale.get(), grad.get(),
                                    rows, classes, nullptr));
  expectClose(grad.read(), expected, kRelTol, "cross-entropy gradient");
}

/// Slots of 3 experts with 3 slots each over 5 tokens: token 1 in two
/// experts, token 3 in none, empty slots (-1).
struct Slots {
  int64_t numTokens = 5, slots = 9, experts = 3, d = 21;
  std::vector<int32_t> tokens = {0, 1, -1, 4, 1, 2, -1, 0, -1};
  std::vector<int32_t> offsets = {0, 3, 6, 9};
  std::vector<float> gates = randomFloats(slots, 19, 0.1f, 1.0f);
};

TEST(CudaMoeRows, DispatchAndCombineMatchTheCpu) {
  Slots s;
  std::vector<float> x = randomFloats(s.numTokens * s.d, 20),
                     yd = randomFloats(s.slots * s.d, 21),
                     dout = randomFloats(s.numTokens * s.d, 22);
  std::vector<float> xd(s.slots * s.d), out(s.numTokens * s.d),
      dx(s.numTokens * s.d), dyd(s.slots * s.d), dgates(s.slots);
  cpu::dispatch(x.data(), s.tokens.data(), xd.data(), s.slots, s.numTokens,
                s.d);
  cpu::combine(yd.data(), s.tokens.data(), s.gates.data(), out.data(), s.slots,
               s.numTokens, s.d);
  cpu::dispatchBackward(yd.data(), s.tokens.data(), dx.data(), s.slots,
                        s.numTokens, s.d);
  cpu::combineBackward(yd.data(), s.tokens.data(), s.gates.data(), dout.data(),
                       dyd.data(), dgates.data(), s.slots, s.numTokens, s.d);
  DeviceArray<int32_t> tokens(s.tokens), scratch(s.numTokens + 1 + s.slots);
  DeviceArray<float> dX(x), dYd(yd), dDout(dout), gates(s.gates),
      gXd(xd.size(), 7.0f), gOut(out.size(), 7.0f), gDx(dx.size(), 7.0f),
      gDyd(dyd.size(), 7.0f), gDgates(s.slots, 7.0f);
  ASSERT_OK(dispatchRows(dX.get(), tokens.get(), gXd.get(), s.slots,
                         s.numTokens, s.d, nullptr));
  ASSERT_OK(combineRows(dYd.get(), tokens.get(), gates.get(), gOut.get(),
                        s.slots, s.numTokens, s.d, scratch.get(), nullptr));
  ASSERT_OK(combineRows(dYd.get(), tokens.get(), nullptr, gDx.get(), s.slots,
                        s.numTokens, s.d, scratch.get(), nullptr));
  ASSERT_OK(combineBackward(dYd.get(), tokens.get(), gates.get(), dDout.get(),
                            gDyd.get(), gDgates.get(), s.slots, s.numTokens,
                            s.d, nullptr));
  expectBitwiseEqual(gXd.read(), xd, "dispatch");
  expectClose(gOut.read(), out, kRelTol, "combine");
  expectBitwiseEqual(gDx.read(), dx, "dispatch gradient");
  expectBitwiseEqual(gDyd.read(), dyd, "combine gradient");
  expectClose(gDgates.read(), dgates, kRelTol, "gate gradient");
}

TEST(CudaScatterGateGrad, MatchesTheCpu) {
  Slots s;
  std::vector<float> dgates = randomFloats(s.slots, 23);
  std::vector<float> expected(s.numTokens * s.experts);
  cpu::routerGateBackward(Routing::ExpertsChoose, nullptr, s.tokens.data(),
                          s.offsets.data(), dgates.data(), expected.data(),
                          s.numTokens, s.experts);
  DeviceArray<int32_t> tokens(s.tokens), offsets(s.offsets);
  DeviceArray<float> dDgates(dgates), scores(expected.size(), 7.0f);
  ASSERT_OK(scatterGateGrad(tokens.get(), offsets.get(), dDgates.get(),
                            scores.get(), s.slots, s.numTokens, s.experts,
                            nullptr));
  expectBitwiseEqual(scores.read(), expected, "scatter_gate_grad");
}

/// The fault record of the kernels under test, read back after a call.
class IdRecord {
public:
  /// The check of step index 4 (recorded as 5) and operand `operand`.
  IdCheck idCheck(int32_t operand) const { return {record.get(), 5, operand}; }
  /// Expects `operand`'s element `position`, `id`, outside [0, limit), to be
  /// recorded, then clears the record.
  void expect(int32_t operand, int64_t position, int32_t id, int64_t limit,
              const std::string &what) {
    IdFault fault = record.read()[0];
    EXPECT_EQ(fault.step, 5) << what;
    EXPECT_EQ(fault.operand, operand) << what;
    EXPECT_EQ(fault.position, position) << what;
    EXPECT_EQ(fault.id, id) << what;
    EXPECT_EQ(fault.limit, limit) << what;
    check(cudaMemset(record.get(), 0, sizeof(IdFault)), "cudaMemset");
  }
  /// Expects nothing recorded.
  void expectClear(const std::string &what) {
    EXPECT_EQ(record.read()[0].step, 0) << what;
  }

private:
  DeviceArray<IdFault> record{size_t{1}};
};

TEST(CudaIdCheck, TheMoeGathersAndScattersRecordATokenOutsideTheBatch) {
  Slots s;
  IdRecord record;
  DeviceArray<int32_t> good(s.tokens), scratch(s.numTokens + 1 + s.slots);
  std::vector<int32_t> tokens = s.tokens;
  tokens[5] = 9;
  DeviceArray<int32_t> bad(tokens), offsets(s.offsets);
  DeviceArray<float> x(s.numTokens * s.d, 1.0f), rows(s.slots * s.d, 1.0f),
      gates(s.gates), out(s.numTokens * s.d), slotRows(s.slots * s.d),
      dgates(s.slots), scores(s.numTokens * s.experts);
  for (const DeviceArray<int32_t> *table : {&good, &bad}) {
    ASSERT_OK(dispatchRows(x.get(), table->get(), slotRows.get(), s.slots,
                           s.numTokens, s.d, nullptr, record.idCheck(1)));
    if (table == &good)
      record.expectClear("dispatch");
    else
      record.expect(1, 5, 9, 5, "dispatch");
  }
  ASSERT_OK(combineRows(rows.get(), bad.get(), gates.get(), out.get(), s.slots,
                        s.numTokens, s.d, scratch.get(), nullptr,
                        record.idCheck(1)));
  record.expect(1, 5, 9, 5, "combine");
  ASSERT_OK(combineBackward(rows.get(), bad.get(), gates.get(), x.get(),
                            slotRows.get(), dgates.get(), s.slots, s.numTokens,
                            s.d, nullptr, record.idCheck(1)));
  record.expect(1, 5, 9, 5, "combine_grad");
  ASSERT_OK(scatterGateGrad(bad.get(), offsets.get(), dgates.get(),
                            scores.get(), s.slots, s.numTokens, s.experts,
                            nullptr, nullptr, record.idCheck(0)));
  record.expect(0, 5, 9, 5, "scatter_gate_grad");
  // The first step to record wins: a later one leaves the record alone.
  ASSERT_OK(dispatchRows(x.get(), bad.get(), slotRows.get(), s.slots,
                         s.numTokens, s.d, nullptr, record.idCheck(1)));
  ASSERT_OK(dispatchRows(x.get(), bad.get(), slotRows.get(), s.slots,
                         s.numTokens, s.d, nullptr,
                         IdCheck{record.idCheck(1).fault, 9, 3}));
  record.expect(1, 5, 9, 5, "the first of two steps");
}

TEST(CudaIdCheck, EmbeddingsPositionsAndLabelsRecordAnIdOutsideTheirTable) {
  IdRecord record;
  int64_t batch = 2, seq = 3, d = 4, vocab = 10, typeVocab = 2;
  DeviceArray<int32_t> ids(std::vector<int32_t>{1, 2, 3, 4, 12, 5}),
      types(std::vector<int32_t>{0, 1, 2, 0, 1, 0}),
      scratch(vocab + seq + typeVocab + 3 + 3 * batch * seq);
  DeviceArray<float> word(vocab * d), pos(seq * d), type(typeVocab * d),
      y(batch * seq * d), dword(vocab * d), dpos(seq * d), dtype(typeVocab * d);
  // The word ids are operand 0, the type ids operand 1.
  ASSERT_OK(embedSum(ids.get(), nullptr, word.get(), pos.get(), type.get(),
                     y.get(), batch, seq, d, vocab, typeVocab, nullptr,
                     record.idCheck(0), record.idCheck(1)));
  record.expect(0, 4, 12, vocab, "embed");
  DeviceArray<int32_t> goodIds(std::vector<int32_t>{1, 2, 3, 4, 5, 6});
  ASSERT_OK(embedSum(goodIds.get(), types.get(), word.get(), pos.get(),
                     type.get(), y.get(), batch, seq, d, vocab, typeVocab,
                     nullptr, record.idCheck(0), record.idCheck(1)));
  record.expect(1, 2, 2, typeVocab, "embed type ids");
  ASSERT_OK(embedBackward(ids.get(), nullptr, y.get(), dword.get(), dpos.get(),
                          dtype.get(), batch, seq, d, vocab, seq, typeVocab,
                          scratch.get(), nullptr, record.idCheck(0),
                          record.idCheck(1)));
  record.expect(0, 4, 12, vocab, "embed_grad");

  // Positions [batch, 2] into the sequence.
  DeviceArray<int32_t> positions(std::vector<int32_t>{0, 2, 1, 7});
  DeviceArray<float> gathered(batch * 2 * d);
  ASSERT_OK(gatherPositions(y.get(), positions.get(), gathered.get(), batch,
                            seq, d, 2, nullptr, record.idCheck(1)));
  record.expect(1, 3, 7, seq, "gather_positions");
  ASSERT_OK(gatherPositionsBackward(gathered.get(), positions.get(), y.get(),
                                    batch, seq, d, 2, nullptr,
                                    record.idCheck(1)));
  record.expect(1, 3, 7, seq, "gather_positions_grad");

  // Labels of 4 rows over 3 classes; -1 is ignored.
  DeviceArray<int32_t> labels(std::vector<int32_t>{-1, 2, 3, 0});
  DeviceArray<float> logits(4 * 3), loss(1), scale(1, 1.0f);
  ASSERT_OK(softmaxCrossEntropy(logits.get(), labels.get(), nullptr, nullptr,
                                loss.get(), 4, 3, 1.0f, nullptr,
                                record.idCheck(1)));
  record.expect(1, 2, 3, 3, "softmax_cross_entropy");
  ASSERT_OK(softmaxCrossEntropyGrad(logits.get(), labels.get(), nullptr,
                                    scale.get(), logits.get(), 4, 3, nullptr,
                                    record.idCheck(1)));
  record.expect(1, 2, 3, 3, "softmax_cross_entropy_grad");
}

TEST(CudaRouterZLoss, MatchesTheReference) {
  // More than one block of 256 tokens.
  int64_t numTokens = 300, experts = 7;
  std::vector<float> logits =
      randomFloats(numTokens * experts, 24, -4.0f, 4.0f);
  float expected =
      cpu::reference::routerZLoss(logits.data(), numTokens, experts);
  std::vector<float> grad(logits.size());
  cpu::reference::routerZLossGrad(logits.data(), numTokens, experts, 0.75f,
                                  grad.data());
  DeviceArray<float> dLogits(logits), loss(1), dloss(std::vector<float>{0.75f}),
      gGrad(logits.size());
  DeviceArray<double> scratch(numTokens);
  ASSERT_OK(routerZLoss(dLogits.get(), loss.get(), numTokens, experts,
                        scratch.get(), nullptr));
  ASSERT_OK(routerZLossGrad(dLogits.get(), dloss.get(), gGrad.get(), numTokens,
                            experts, nullptr));
  EXPECT_NEAR(loss.read()[0], expected, kRelTol * std::fabs(expected));
  expectClose(gGrad.read(), grad, kRelTol, "z-loss gradient");
}

TEST(CudaLoadBalancingLoss, MatchesTheCpuKernelAndTheReference) {
  // Two groups of more than one block of 256 tokens; probabilities on a
  // coarse grid, so that rows hold ties (the lower expert wins).
  int64_t groups = 2, perGroup = 300, experts = 6, k = 2;
  std::vector<float> probs =
      randomFloats(groups * perGroup * experts, 25, 0.0f, 1.0f);
  for (float &p : probs)
    p = std::round(p * 8.0f) / 8.0f;
  float cpuLoss =
            cpu::loadBalancingLoss(probs.data(), groups, perGroup, experts, k),
        expected = cpu::reference::loadBalancingLoss(probs.data(), groups,
                                                     perGroup, experts, k);
  std::vector<float> cpuGrad(probs.size()), grad(probs.size());
  cpu::loadBalancingLossGrad(probs.data(), groups, perGroup, experts, k, 0.5f,
                             cpuGrad.data());
  cpu::reference::loadBalancingLossGrad(probs.data(), groups, perGroup, experts,
                                        k, 0.5f, grad.data());
  DeviceArray<float> dProbs(probs), loss(1), dloss(std::vector<float>{0.5f}),
      gGrad(probs.size(), 7.0f), rows(groups * experts);
  DeviceArray<double> terms(groups * experts);
  ASSERT_OK(loadBalancingLoss(dProbs.get(), loss.get(), groups, perGroup,
                              experts, k, terms.get(), nullptr));
  ASSERT_OK(loadBalancingLossGrad(dProbs.get(), dloss.get(), gGrad.get(),
                                  groups, perGroup, experts, k, rows.get(),
                                  nullptr));
  EXPECT_EQ(loss.read()[0], cpuLoss);
  EXPECT_NEAR(loss.read()[0], expected, kRelTol * std::fabs(expected));
  expectBitwiseEqual(gGrad.read(), cpuGrad, "load-balancing gradient");
  expectClose(gGrad.read(), grad, kRelTol, "load-balancing gradient");
}

} // namespace
} // namespace mixer::cuda::test
