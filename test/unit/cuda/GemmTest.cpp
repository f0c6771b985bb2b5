//===- GemmTest.cpp - GPU matrix products against plain references --------===//

#include "runtime/cuda/Gemm.h"
#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

namespace mixer::cuda::test {
namespace {

/// cuBLASLt may evaluate GELU's tanh with the hardware approximation (about
/// 2^-11 relative), so GELU epilogues get a looser bound than plain products.
constexpr double kGeluTol = 2e-3;

/// Row-major c = alpha * op(a) op(b) + beta * c in double, as Gemm.h defines
/// a product: a plain triple loop over the stored layouts.
void referenceProduct(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda, const float *b, int64_t ldb,
                      float *c, int64_t ldc, float alpha, float beta) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t x = 0; x < k; ++x)
        sum += double(transA ? a[x * lda + i] : a[i * lda + x]) *
               (transB ? b[j * ldb + x] : b[x * ldb + j]);
      c[i * ldc + j] = static_cast<float>(alpha * sum + beta * c[i * ldc + j]);
    }
}

/// Column sums of a [rows, cols] matrix with leading dimension ld, in double.
std::vector<float> columnSums(const std::vector<float> &x, int64_t rows,
                              int64_t cols, int64_t ld) {
  std::vector<float> sums(cols);
  for (int64_t c = 0; c < cols; ++c) {
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r)
      sum += x[r * ld + c];
    sums[c] = static_cast<float>(sum);
  }
  return sums;
}

TEST(CudaGemm, Fp32LayoutsMatchReference) {
  GemmContext context(nullptr);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                         {7, 13, 5},
                         {64, 96, 48}})
    for (bool transA : {false, true})
      for (bool transB : {false, true}) {
        // Leading dimensions longer than the rows.
        int64_t lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 2;
        int64_t ldc = n + 1;
        auto a = randomFloats((transA ? k : m) * lda, 1);
        auto b = randomFloats((transB ? n : k) * ldb, 2);
        auto c = randomFloats(m * ldc, 3);
        auto expected = c;
        referenceProduct(transA, transB, m, n, k, a.data(), lda, b.data(), ldb,
                         expected.data(), ldc, 1.5f, 0.5f);
        DeviceArray<float> dA(a), dB(b), dC(c);
        GemmProblem<float> p;
        p.transA = transA;
        p.transB = transB;
        p.m = m;
        p.n = n;
        p.k = k;
        p.a = dA.get();
        p.lda = lda;
        p.b = dB.get();
        p.ldb = ldb;
        p.c = dC.get();
        p.ldc = ldc;
        p.alpha = 1.5f;
        p.beta = 0.5f;
        ASSERT_OK(context.gemm(p));
        std::string what = "gemm " + std::to_string(m) + "x" +
                           std::to_string(n) + "x" + std::to_string(k) +
                           (transA ? " A^T" : "") + (transB ? " B^T" : "");
        expectClose(dC.read(), expected, kRelTol, what);
        // The same problem again takes the cached algorithm: same bits.
        std::vector<float> first = dC.read();
        DeviceArray<float> again(c);
        p.c = again.get();
        ASSERT_OK(context.gemm(p));
        std::vector<float> second = again.read();
        expectBitwiseEqual(first, second, what + " repeated");
      }
}

TEST(CudaGemm, DenseForwardEpilogues) {
  // The dense layer y = act(x W + b) of cpu::dense, W stored [k, n] or
  // [n, k] (transposeW).
  GemmContext context(nullptr);
  int64_t m = 10, k = 16, n = 24;
  auto x = randomFloats(m * k, 4, -2.0f, 2.0f);
  auto bias = randomFloats(n, 5);
  for (bool transposeW : {false, true}) {
    auto w = randomFloats(k * n, 6 + transposeW);
    std::vector<float> pre(m * n), gelu(m * n);
    cpu::reference::dense(x.data(), w.data(), bias.data(), pre.data(), m, k, n,
                          transposeW, Activation::None);
    cpu::reference::dense(x.data(), w.data(), bias.data(), gelu.data(), m, k, n,
                          transposeW, Activation::Gelu);
    DeviceArray<float> dX(x), dW(w), dBias(bias), dY(m * n), dAux(m * n);
    GemmProblem<float> p;
    p.transB = transposeW;
    p.m = m;
    p.n = n;
    p.k = k;
    p.a = dX.get();
    p.lda = k;
    p.b = dW.get();
    p.ldb = transposeW ? k : n;
    p.c = dY.get();
    p.ldc = n;
    p.bias = dBias.get();
    p.epilogue = GemmEpilogue::Bias;
    ASSERT_OK(context.gemm(p));
    expectClose(dY.read(), pre, kRelTol, "gemm bias");
    p.epilogue = GemmEpilogue::Gelu;
    ASSERT_OK(context.gemm(p));
    expectClose(dY.read(), gelu, kGeluTol, "gemm bias gelu");
    p.epilogue = GemmEpilogue::GeluAux;
    p.aux = dAux.get();
    p.ldAux = n;
    ASSERT_OK(context.gemm(p));
    expectClose(dY.read(), gelu, kGeluTol, "gemm bias gelu_aux output");
    expectClose(dAux.read(), pre, kRelTol, "gemm gelu_aux pre-activation");
  }
}

TEST(CudaGemm, DenseBackwardEpilogues) {
  // MLP y = GELU(x W1 + b1) W2: the gradient of the hidden pre-activation is
  // (dy W2^T) o GELU'(pre), with b1's gradient its column sums; then
  // dW1 = x^T dPre with the same column sums from BiasGradB.
  GemmContext context(nullptr);
  int64_t m = 12, d = 8, hidden = 32, out = 16;
  auto dy = randomFloats(m * out, 7);
  auto w2 = randomFloats(hidden * out, 8);
  auto pre = randomFloats(m * hidden, 9, -3.0f, 3.0f);
  auto x = randomFloats(m * d, 10);
  std::vector<float> dh(m * hidden), dPre(m * hidden);
  referenceProduct(false, true, m, hidden, out, dy.data(), out, w2.data(), out,
                   dh.data(), hidden, 1.0f, 0.0f);
  cpu::reference::activationBackward(pre.data(), dh.data(), dPre.data(),
                                     m * hidden, Activation::Gelu);
  auto db1 = columnSums(dPre, m, hidden, hidden);

  DeviceArray<float> dDy(dy), dW2(w2), dAux(pre), dDPre(m * hidden),
      dDb1(hidden);
  GemmProblem<float> p;
  p.transB = true;
  p.m = m;
  p.n = hidden;
  p.k = out;
  p.a = dDy.get();
  p.lda = out;
  p.b = dW2.get();
  p.ldb = out;
  p.c = dDPre.get();
  p.ldc = hidden;
  p.epilogue = GemmEpilogue::DGelu;
  p.aux = dAux.get();
  p.ldAux = hidden;
  p.biasGrad = dDb1.get();
  ASSERT_OK(context.gemm(p));
  std::vector<float> gotDPre = dDPre.read();
  expectClose(gotDPre, dPre, kGeluTol, "gemm dgelu");
  expectClose(dDb1.read(), db1, kGeluTol, "gemm dgelu bias gradient");

  // dW1 = x^T dPre and db1 = column sums of dPre, on the GPU's dPre.
  std::vector<float> dW1(d * hidden);
  referenceProduct(true, false, d, hidden, m, x.data(), d, gotDPre.data(),
                   hidden, dW1.data(), hidden, 1.0f, 0.0f);
  DeviceArray<float> dX(x), gW1(d * hidden), gB1(hidden);
  GemmProblem<float> w;
  w.transA = true;
  w.m = d;
  w.n = hidden;
  w.k = m;
  w.a = dX.get();
  w.lda = d;
  w.b = dDPre.get();
  w.ldb = hidden;
  w.c = gW1.get();
  w.ldc = hidden;
  w.epilogue = GemmEpilogue::BiasGradB;
  w.biasGrad = gB1.get();
  ASSERT_OK(context.gemm(w));
  expectClose(gW1.read(), dW1, kRelTol, "gemm weight gradient");
  expectClose(gB1.read(), columnSums(gotDPre, m, hidden, hidden), kRelTol,
              "gemm bias_grad_b");
}

TEST(CudaGemm, StridedBatches) {
  GemmContext context(nullptr);
  // Linear mixing: Y[b] = W_s X[b] with W_s shared (stride 0), as
  // cpu::batchedMatmul.
  int64_t batch = 3, seq = 9, dModel = 12;
  auto ws = randomFloats(seq * seq, 11);
  auto xs = randomFloats(batch * seq * dModel, 12);
  std::vector<float> expected(batch * seq * dModel);
  cpu::reference::batchedMatmul(ws.data(), xs.data(), expected.data(), batch,
                                seq, seq, dModel, 0, seq * dModel,
                                seq * dModel);
  DeviceArray<float> dWs(ws), dXs(xs), dYs(expected.size());
  GemmProblem<float> p;
  p.m = seq;
  p.n = dModel;
  p.k = seq;
  p.a = dWs.get();
  p.lda = seq;
  p.b = dXs.get();
  p.ldb = dModel;
  p.c = dYs.get();
  p.ldc = dModel;
  p.batch = batch;
  p.strideB = p.strideC = seq * dModel;
  ASSERT_OK(context.gemm(p));
  expectClose(dYs.read(), expected, kRelTol, "gemm per-example mixing");

  // Per-expert products with per-expert biases: Y[e] = X[e] W[e] + b[e].
  int64_t experts = 4, capacity = 6, d = 8, g = 16;
  auto x = randomFloats(experts * capacity * d, 13);
  auto w = randomFloats(experts * d * g, 14);
  auto bias = randomFloats(experts * g, 15);
  std::vector<float> y(experts * capacity * g);
  for (int64_t e = 0; e < experts; ++e)
    cpu::reference::dense(x.data() + e * capacity * d, w.data() + e * d * g,
                          bias.data() + e * g, y.data() + e * capacity * g,
                          capacity, d, g, false, Activation::None);
  DeviceArray<float> dX(x), dW(w), dBias(bias), dY(y.size());
  GemmProblem<float> q;
  q.m = capacity;
  q.n = g;
  q.k = d;
  q.a = dX.get();
  q.lda = d;
  q.b = dW.get();
  q.ldb = g;
  q.c = dY.get();
  q.ldc = g;
  q.batch = experts;
  q.strideA = capacity * d;
  q.strideB = d * g;
  q.strideC = capacity * g;
  q.epilogue = GemmEpilogue::Bias;
  q.bias = dBias.get();
  q.strideBias = g;
  ASSERT_OK(context.gemm(q));
  expectClose(dY.read(), y, kRelTol, "gemm per-expert with biases");
}

TEST(CudaGemm, Bf16AccumulatesInFp32) {
  GemmContext context(nullptr);
  int64_t m = 33, k = 40, n = 24;
  auto x = roundedToBf16(randomFloats(m * k, 16, -2.0f, 2.0f));
  auto w = roundedToBf16(randomFloats(k * n, 17));
  auto bias = randomFloats(n, 18);
  std::vector<float> pre(m * n), gelu(m * n);
  cpu::reference::dense(x.data(), w.data(), bias.data(), pre.data(), m, k, n,
                        false, Activation::None);
  cpu::reference::dense(x.data(), w.data(), bias.data(), gelu.data(), m, k, n,
                        false, Activation::Gelu);
  DeviceArray<Bf16> dX(toBf16(x)), dW(toBf16(w)), dY(m * n), dAux(m * n);
  DeviceArray<float> dBias(bias);
  GemmProblem<Bf16> p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = dX.get();
  p.lda = k;
  p.b = dW.get();
  p.ldb = n;
  p.c = dY.get();
  p.ldc = n;
  p.bias = dBias.get();
  p.epilogue = GemmEpilogue::Bias;
  ASSERT_OK(context.gemm(p));
  expectClose(fromBf16(dY.read()), pre, kBf16Tol, "bf16 gemm bias");
  p.epilogue = GemmEpilogue::GeluAux;
  p.aux = dAux.get();
  p.ldAux = n;
  ASSERT_OK(context.gemm(p));
  expectClose(fromBf16(dY.read()), gelu, kBf16Tol, "bf16 gemm gelu_aux");
  expectClose(fromBf16(dAux.read()), pre, kBf16Tol, "bf16 gemm aux");
}

TEST(CudaGemm, Bf16OperandsWriteAnFp32WeightGradient) {
  // dW [k, n] = X^T dY from bf16 X [m, k] and dY [m, n] (the weight gradient
  // of a bf16 plan): products of bf16 values are exact in fp32, so only the
  // fp32 accumulation rounds.
  GemmContext context(nullptr);
  int64_t m = 70, k = 24, n = 40;
  auto x = roundedToBf16(randomFloats(m * k, 19, -2.0f, 2.0f));
  auto dy = roundedToBf16(randomFloats(m * n, 20, -2.0f, 2.0f));
  std::vector<float> want(k * n);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t r = 0; r < m; ++r)
        sum += double(x[r * k + i]) * dy[r * n + j];
      want[i * n + j] = static_cast<float>(sum);
    }
  DeviceArray<Bf16> dX(toBf16(x)), dDy(toBf16(dy));
  DeviceArray<float> dW(k * n);
  GemmProblem<Bf16, float> p;
  p.transA = true;
  p.m = k;
  p.n = n;
  p.k = m;
  p.a = dX.get();
  p.lda = k;
  p.b = dDy.get();
  p.ldb = n;
  p.c = dW.get();
  p.ldc = n;
  ASSERT_OK(context.gemm(p));
  expectClose(dW.read(), want, kRelTol, "bf16 operands, fp32 result");
}

} // namespace
} // namespace mixer::cuda::test
