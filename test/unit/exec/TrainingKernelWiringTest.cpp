//===- TrainingKernelWiringTest.cpp - Training kernels through plans ------===//
//
// Small plans around each training-step kernel (docs/runtime.md, "Training
// kernels"), checked against plain double-precision loops written from the
// gradient formulas: they catch operands passed in the wrong order,
// dimensions swapped and attributes misread between the plan and the kernel
// call.
//
//===----------------------------------------------------------------------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/cpu/CounterRandom.h"
#include "runtime/cpu/Executor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;

namespace {

constexpr double kTol = 1e-5;

/// The float data of parameter `i`.
const float *data(const std::vector<io::HostTensor> &params, size_t i) {
  return params[i].as<float>();
}

/// Row softmax of `rows` x `cols` values, in double.
std::vector<double> softmaxRows(const float *x, int64_t rows, int64_t cols) {
  std::vector<double> y(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    double top = *std::max_element(x + r * cols, x + (r + 1) * cols), sum = 0;
    for (int64_t c = 0; c < cols; ++c)
      sum += y[r * cols + c] = std::exp(double(x[r * cols + c]) - top);
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] /= sum;
  }
  return y;
}

TEST(TrainingKernelWiringTest, ScalarArithmeticOnZeroDimensionalValues) {
  PlanBuilder b;
  int64_t x = b.param("x", {2, 3});
  int64_t p = b.param("p", {});
  int64_t s = b.arena({});
  int64_t y = b.arena({2, 3});
  int64_t total = b.arena({});
  int64_t product = b.arena({});
  int64_t quotient = b.arena({});
  int64_t scaled = b.arena({});
  int64_t spread = b.arena({3});
  b.step("fill", {}, {s}, {{"value", 2.5}});
  b.step("broadcast", {s}, {y});
  b.step("reduce_sum", {x}, {total});
  b.step("multiply", {total, p}, {product});
  b.step("divide", {product, s}, {quotient});
  b.step("scale", {total}, {scaled}, {{"factor", -3}});
  b.step("broadcast", {p}, {spread});
  b.output("y", y);
  b.output("total", total);
  b.output("product", product);
  b.output("quotient", quotient);
  b.output("scaled", scaled);
  b.output("spread", spread);
  std::vector<io::HostTensor> params = randomParams(b.plan, 1);
  double sum = 0;
  for (int i = 0; i < 6; ++i)
    sum += data(params, 0)[i];
  double pv = data(params, 1)[0];
  std::vector<io::HostTensor> out = execute(b.plan, params, {});
  ASSERT_EQ(out.size(), 6u);
  EXPECT_TRUE(out[1].shape.empty());
  expectNear(floats(out[0]), std::vector<double>(6, 2.5), 0, "y");
  expectNear(floats(out[1]), {sum}, kTol, "total");
  expectNear(floats(out[2]), {sum * pv}, kTol, "product");
  expectNear(floats(out[3]), {sum * pv / 2.5}, kTol, "quotient");
  expectNear(floats(out[4]), {-3 * sum}, kTol, "scaled");
  expectNear(floats(out[5]), std::vector<double>(3, pv), 0, "spread");
}

TEST(TrainingKernelWiringTest, MultiplyAndDivideElementwise) {
  PlanBuilder b;
  int64_t a = b.param("a", {2, 3});
  int64_t c = b.param("c", {2, 3});
  int64_t product = b.arena({2, 3});
  int64_t quotient = b.arena({2, 3});
  b.step("multiply", {a, c}, {product});
  b.step("divide", {a, c}, {quotient});
  b.output("product", product);
  b.output("quotient", quotient);
  std::vector<io::HostTensor> p = randomParams(b.plan, 5);
  std::vector<double> expectedProduct, expectedQuotient;
  for (int i = 0; i < 6; ++i) {
    expectedProduct.push_back(double(data(p, 0)[i]) * data(p, 1)[i]);
    expectedQuotient.push_back(double(data(p, 0)[i]) / data(p, 1)[i]);
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 2u);
  expectNear(floats(out[0]), expectedProduct, kTol, "product");
  expectNear(floats(out[1]), expectedQuotient, kTol, "quotient");
}

TEST(TrainingKernelWiringTest, GatherPositionsAndItsGradient) {
  constexpr int batch = 2, seq = 4, d = 3, count = 2;
  PlanBuilder b(batch, seq);
  int64_t x = b.param("x", {batch, seq, d});
  int64_t dy = b.param("dy", {batch * count, d});
  int64_t positions = b.input("positions", {batch, count});
  int64_t y = b.arena({batch * count, d});
  int64_t dx = b.arena({batch, seq, d});
  b.step("gather_positions", {x, positions}, {y});
  b.step("gather_positions_grad", {dy, positions}, {dx});
  b.output("y", y);
  b.output("dx", dx);
  std::vector<io::HostTensor> p = randomParams(b.plan, 10);
  // Example 1 names position 1 twice: its gradients add up.
  std::vector<int64_t> pos = {3, 0, 1, 1};
  std::vector<double> expectedY, expectedDx(batch * seq * d, 0.0);
  for (int n = 0; n < batch; ++n)
    for (int j = 0; j < count; ++j)
      for (int c = 0; c < d; ++c) {
        int64_t row = n * seq + pos[n * count + j];
        expectedY.push_back(data(p, 0)[row * d + c]);
        expectedDx[row * d + c] += data(p, 1)[(n * count + j) * d + c];
      }
  std::vector<io::HostTensor> out =
      execute(b.plan, p, {intTensor("positions", {batch, count}, pos)});
  ASSERT_EQ(out.size(), 2u);
  expectNear(floats(out[0]), expectedY, 0, "y");
  expectNear(floats(out[1]), expectedDx, kTol, "dx");
}

TEST(TrainingKernelWiringTest, SoftmaxCrossEntropyLossAndGradient) {
  constexpr int rows = 3, classes = 4;
  PlanBuilder b;
  int64_t logits = b.param("logits", {rows, classes});
  int64_t weights = b.param("weights", {rows});
  int64_t labels = b.input("labels", {rows});
  int64_t loss = b.arena({});
  int64_t unweighted = b.arena({});
  int64_t dloss = b.arena({});
  int64_t dlogits = b.arena({rows, classes});
  b.step("softmax_cross_entropy", {logits, labels, weights}, {loss});
  b.step("softmax_cross_entropy", {logits, labels, -1}, {unweighted});
  b.step("fill", {}, {dloss}, {{"value", 0.5}});
  b.step("softmax_cross_entropy_grad", {logits, labels, dloss, weights},
         {dlogits});
  b.output("loss", loss);
  b.output("unweighted", unweighted);
  b.output("dlogits", dlogits);
  std::vector<io::HostTensor> p = randomParams(b.plan, 20);
  // Row 1 is ignored.
  std::vector<int64_t> label = {2, -1, 0};
  std::vector<double> probs = softmaxRows(data(p, 0), rows, classes);
  double expectedLoss = 0, expectedUnweighted = 0;
  std::vector<double> expectedGrad(rows * classes, 0.0);
  for (int r = 0; r < rows; ++r) {
    if (label[r] < 0)
      continue;
    double w = data(p, 1)[r];
    double ce = -std::log(probs[r * classes + label[r]]);
    expectedLoss += w * ce;
    expectedUnweighted += ce;
    for (int c = 0; c < classes; ++c)
      expectedGrad[r * classes + c] =
          0.5 * w * (probs[r * classes + c] - (c == label[r] ? 1.0 : 0.0));
  }
  std::vector<io::HostTensor> out =
      execute(b.plan, p, {intTensor("labels", {rows}, label)});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), {expectedLoss}, kTol, "loss");
  expectNear(floats(out[1]), {expectedUnweighted}, kTol, "unweighted");
  expectNear(floats(out[2]), expectedGrad, kTol, "dlogits");
}

TEST(TrainingKernelWiringTest, SquaredError) {
  PlanBuilder b;
  int64_t pred = b.param("pred", {2, 3});
  int64_t target = b.param("target", {2, 3});
  int64_t loss = b.arena({});
  b.step("squared_error", {pred, target}, {loss});
  b.output("loss", loss);
  std::vector<io::HostTensor> p = randomParams(b.plan, 30);
  double expected = 0;
  for (int i = 0; i < 6; ++i)
    expected += std::pow(double(data(p, 0)[i]) - data(p, 1)[i], 2);
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), {expected}, kTol, "loss");
}

TEST(TrainingKernelWiringTest, ActivationGradTanh) {
  PlanBuilder b;
  int64_t pre = b.param("pre", {2, 3});
  int64_t dy = b.param("dy", {2, 3});
  int64_t dx = b.arena({2, 3});
  b.step("activation_grad", {pre, dy}, {dx}, {{"kind", "tanh"}});
  b.output("dx", dx);
  std::vector<io::HostTensor> p = randomParams(b.plan, 40);
  std::vector<double> expected;
  for (int i = 0; i < 6; ++i) {
    double t = std::tanh(double(data(p, 0)[i]));
    expected.push_back(data(p, 1)[i] * (1 - t * t));
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "dx");
}

TEST(TrainingKernelWiringTest, DenseWeightGradAndReduceRows) {
  constexpr int m = 4, k = 3, n = 5;
  PlanBuilder b;
  int64_t x = b.param("x", {2, 2, k});
  int64_t dy = b.param("dy", {2, 2, n});
  int64_t dw = b.arena({k, n});
  int64_t dwT = b.arena({n, k});
  int64_t db = b.arena({n});
  b.step("dense_weight_grad", {x, dy}, {dw}, {{"transpose_w", false}});
  b.step("dense_weight_grad", {x, dy}, {dwT}, {{"transpose_w", true}});
  b.step("reduce_rows", {dy}, {db});
  b.output("dw", dw);
  b.output("dwT", dwT);
  b.output("db", db);
  std::vector<io::HostTensor> p = randomParams(b.plan, 50);
  std::vector<double> expectedW(k * n, 0.0), expectedWT(n * k, 0.0),
      expectedB(n, 0.0);
  for (int r = 0; r < m; ++r)
    for (int j = 0; j < n; ++j) {
      double g = data(p, 1)[r * n + j];
      expectedB[j] += g;
      for (int i = 0; i < k; ++i) {
        expectedW[i * n + j] += double(data(p, 0)[r * k + i]) * g;
        expectedWT[j * k + i] += double(data(p, 0)[r * k + i]) * g;
      }
    }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedW, kTol, "dw");
  expectNear(floats(out[1]), expectedWT, kTol, "dwT");
  expectNear(floats(out[2]), expectedB, kTol, "db");
}

TEST(TrainingKernelWiringTest, LayerNormGradWithResidual) {
  constexpr int rows = 3, cols = 5;
  constexpr double eps = 1e-5;
  PlanBuilder b;
  int64_t x = b.param("x", {rows, cols});
  int64_t r = b.param("r", {rows, cols});
  int64_t scale = b.param("scale", {cols});
  int64_t dy = b.param("dy", {rows, cols});
  int64_t dx = b.arena({rows, cols});
  int64_t dscale = b.arena({cols});
  int64_t dbias = b.arena({cols});
  b.step("layer_norm_grad", {x, r, scale, dy}, {dx, dscale, dbias},
         {{"epsilon", eps}});
  b.output("dx", dx);
  b.output("dscale", dscale);
  b.output("dbias", dbias);
  std::vector<io::HostTensor> p = randomParams(b.plan, 60);
  std::vector<double> expectedDx, expectedScale(cols, 0.0),
      expectedBias(cols, 0.0);
  for (int row = 0; row < rows; ++row) {
    double s[cols], xhat[cols], g[cols], mean = 0, var = 0;
    for (int c = 0; c < cols; ++c)
      mean += s[c] =
          double(data(p, 0)[row * cols + c]) + data(p, 1)[row * cols + c];
    mean /= cols;
    for (double v : s)
      var += (v - mean) * (v - mean) / cols;
    double inv = 1 / std::sqrt(var + eps), meanG = 0, meanGX = 0;
    for (int c = 0; c < cols; ++c) {
      double d = data(p, 3)[row * cols + c];
      xhat[c] = (s[c] - mean) * inv;
      g[c] = d * data(p, 2)[c];
      meanG += g[c] / cols;
      meanGX += g[c] * xhat[c] / cols;
      expectedScale[c] += d * xhat[c];
      expectedBias[c] += d;
    }
    for (int c = 0; c < cols; ++c)
      expectedDx.push_back(inv * (g[c] - meanG - xhat[c] * meanGX));
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedDx, 1e-4, "dx");
  expectNear(floats(out[1]), expectedScale, kTol, "dscale");
  expectNear(floats(out[2]), expectedBias, kTol, "dbias");
}

TEST(TrainingKernelWiringTest, SoftmaxGradAndTakePositionGrad) {
  constexpr int batch = 2, seq = 4, d = 3;
  PlanBuilder b(batch, seq);
  int64_t y = b.param("y", {batch, d});
  int64_t dy = b.param("dy", {batch, d});
  int64_t dx = b.arena({batch, d});
  int64_t dtokens = b.arena({batch, seq, d});
  b.step("softmax_grad", {y, dy}, {dx});
  b.step("take_position_grad", {dy}, {dtokens}, {{"index", 2}});
  b.output("dx", dx);
  b.output("dtokens", dtokens);
  std::vector<io::HostTensor> p = randomParams(b.plan, 70);
  std::vector<double> expectedDx, expectedTokens(batch * seq * d, 0.0);
  for (int n = 0; n < batch; ++n) {
    double dot = 0;
    for (int c = 0; c < d; ++c)
      dot += double(data(p, 0)[n * d + c]) * data(p, 1)[n * d + c];
    for (int c = 0; c < d; ++c) {
      expectedDx.push_back(data(p, 0)[n * d + c] *
                           (data(p, 1)[n * d + c] - dot));
      expectedTokens[(n * seq + 2) * d + c] = data(p, 1)[n * d + c];
    }
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 2u);
  expectNear(floats(out[0]), expectedDx, kTol, "dx");
  expectNear(floats(out[1]), expectedTokens, 0, "dtokens");
}

TEST(TrainingKernelWiringTest, LinearMixGrad) {
  constexpr int batch = 2, seq = 3, d = 4;
  PlanBuilder b(batch, seq);
  int64_t x = b.param("x", {batch, seq, d});
  int64_t ws = b.param("ws", {seq, seq});
  int64_t wh = b.param("wh", {d, d});
  int64_t dy = b.param("dy", {batch, seq, d});
  int64_t dx = b.arena({batch, seq, d});
  int64_t dws = b.arena({seq, seq});
  int64_t dwh = b.arena({d, d});
  b.step("linear_mix_grad", {x, ws, wh, dy}, {dx, dws, dwh});
  b.output("dx", dx);
  b.output("dws", dws);
  b.output("dwh", dwh);
  std::vector<io::HostTensor> p = randomParams(b.plan, 80);
  const float *xv = data(p, 0), *s = data(p, 1), *h = data(p, 2),
              *g = data(p, 3);
  // Y[n,i,j] = sum_{a,c} Ws[i,a] X[n,a,c] Wh[c,j]: each gradient is the sum
  // of the other two factors against dY.
  std::vector<double> expectedDx(batch * seq * d, 0.0),
      expectedWs(seq * seq, 0.0), expectedWh(d * d, 0.0);
  for (int n = 0; n < batch; ++n)
    for (int i = 0; i < seq; ++i)
      for (int j = 0; j < d; ++j)
        for (int a = 0; a < seq; ++a)
          for (int c = 0; c < d; ++c) {
            double dyv = g[(n * seq + i) * d + j];
            double xv2 = xv[(n * seq + a) * d + c];
            expectedDx[(n * seq + a) * d + c] +=
                s[i * seq + a] * dyv * h[c * d + j];
            expectedWs[i * seq + a] += dyv * xv2 * h[c * d + j];
            expectedWh[c * d + j] += dyv * s[i * seq + a] * xv2;
          }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedDx, kTol, "dx");
  expectNear(floats(out[1]), expectedWs, kTol, "dws");
  expectNear(floats(out[2]), expectedWh, kTol, "dwh");
}

/// Checks structured_mix_grad against the explicit matrices: circulant
/// M[r,c] = v[(r - c) mod n], Toeplitz M[r,c] = t[(n - 1) + c - r].
void checkStructuredMixGrad(bool toeplitz, uint32_t seed) {
  constexpr int batch = 2, seq = 4, d = 3;
  int64_t ns = toeplitz ? 2 * seq - 1 : seq, nh = toeplitz ? 2 * d - 1 : d;
  PlanBuilder b(batch, seq);
  int64_t x = b.param("x", {batch, seq, d});
  int64_t vs = b.param("vs", {ns});
  int64_t vh = b.param("vh", {nh});
  int64_t dy = b.param("dy", {batch, seq, d});
  int64_t dx = b.arena({batch, seq, d});
  int64_t dvs = b.arena({ns});
  int64_t dvh = b.arena({nh});
  b.step("structured_mix_grad", {x, vs, vh, dy}, {dx, dvs, dvh},
         {{"toeplitz", toeplitz}});
  b.output("dx", dx);
  b.output("dvs", dvs);
  b.output("dvh", dvh);
  std::vector<io::HostTensor> p = randomParams(b.plan, seed);
  auto entry = [&](int n, int r, int c) -> int64_t {
    return toeplitz ? (n - 1) + c - r : ((r - c) % n + n) % n;
  };
  const float *xv = data(p, 0), *s = data(p, 1), *h = data(p, 2),
              *g = data(p, 3);
  // Y[n,i,j] = sum_{a,c} A[i,a] X[n,a,c] B[j,c].
  std::vector<double> expectedDx(batch * seq * d, 0.0), expectedS(ns, 0.0),
      expectedH(nh, 0.0);
  for (int n = 0; n < batch; ++n)
    for (int i = 0; i < seq; ++i)
      for (int j = 0; j < d; ++j)
        for (int a = 0; a < seq; ++a)
          for (int c = 0; c < d; ++c) {
            double dyv = g[(n * seq + i) * d + j];
            double xa = xv[(n * seq + a) * d + c];
            double av = s[entry(seq, i, a)], bv = h[entry(d, j, c)];
            expectedDx[(n * seq + a) * d + c] += av * dyv * bv;
            expectedS[entry(seq, i, a)] += dyv * xa * bv;
            expectedH[entry(d, j, c)] += dyv * av * xa;
          }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedDx, kTol, "dx");
  expectNear(floats(out[1]), expectedS, kTol, "dvs");
  expectNear(floats(out[2]), expectedH, kTol, "dvh");
}

TEST(TrainingKernelWiringTest, StructuredMixGradCirculant) {
  checkStructuredMixGrad(false, 90);
}

TEST(TrainingKernelWiringTest, StructuredMixGradToeplitz) {
  checkStructuredMixGrad(true, 95);
}

TEST(TrainingKernelWiringTest, EmbedGrad) {
  constexpr int batch = 2, seq = 3, width = 2, vocab = 5, posRows = 4,
                types = 2;
  PlanBuilder b(batch, seq);
  int64_t dy = b.param("dy", {batch, seq, width});
  int64_t ids = b.input("ids", {batch, seq});
  int64_t typeIds = b.input("type_ids", {batch, seq});
  int64_t dword = b.arena({vocab, width});
  int64_t dpos = b.arena({1, posRows, width});
  int64_t dtype = b.arena({types, width});
  b.step("embed_grad", {ids, typeIds, dy}, {dword, dpos, dtype});
  b.output("dword", dword);
  b.output("dpos", dpos);
  b.output("dtype", dtype);
  std::vector<io::HostTensor> p = randomParams(b.plan, 100);
  std::vector<int64_t> tokenIds = {4, 1, 4, 0, 2, 1},
                       typeValues = {0, 0, 1, 1, 1, 0};
  std::vector<double> expectedWord(vocab * width, 0.0),
      expectedPos(posRows * width, 0.0), expectedType(types * width, 0.0);
  for (int n = 0; n < batch; ++n)
    for (int i = 0; i < seq; ++i)
      for (int c = 0; c < width; ++c) {
        double g = data(p, 0)[(n * seq + i) * width + c];
        expectedWord[tokenIds[n * seq + i] * width + c] += g;
        expectedPos[i * width + c] += g;
        expectedType[typeValues[n * seq + i] * width + c] += g;
      }
  std::vector<io::HostTensor> out =
      execute(b.plan, p,
              {intTensor("ids", {batch, seq}, tokenIds),
               intTensor("type_ids", {batch, seq}, typeValues)});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedWord, kTol, "dword");
  expectNear(floats(out[1]), expectedPos, kTol, "dpos");
  expectNear(floats(out[2]), expectedType, kTol, "dtype");
}

TEST(TrainingKernelWiringTest, AttentionGradWithPaddingAndCausalMasks) {
  constexpr int batch = 2, seq = 3, heads = 2, hd = 2, width = heads * hd;
  PlanBuilder b(batch, seq);
  int64_t q = b.param("q", {batch, seq, width});
  int64_t k = b.param("k", {batch, seq, width});
  int64_t v = b.param("v", {batch, seq, width});
  int64_t dout = b.param("dout", {batch, seq, width});
  int64_t ids = b.input("input_ids", {batch, seq});
  int64_t dq = b.arena({batch, seq, width});
  int64_t dk = b.arena({batch, seq, width});
  int64_t dv = b.arena({batch, seq, width});
  b.step("attention_grad", {q, k, v, ids, dout, -1, -1, -1}, {dq, dk, dv},
         {{"num_heads", heads},
          {"head_dim", hd},
          {"pad_id", 0},
          {"causal", true},
          {"dropout_rate", 0.0},
          {"stream", 0}});
  b.output("dq", dq);
  b.output("dk", dk);
  b.output("dv", dv);
  std::vector<io::HostTensor> p = randomParams(b.plan, 110);
  // The first token of example 1 is padding.
  std::vector<int64_t> tokenIds = {3, 1, 2, 0, 2, 4};
  const float *qv = data(p, 0), *kv = data(p, 1), *vv = data(p, 2),
              *go = data(p, 3);
  std::vector<double> expectedQ(batch * seq * width, 0.0), expectedK(expectedQ),
      expectedV(expectedQ);
  double norm = 1 / std::sqrt(double(hd));
  auto at = [&](int n, int i, int h, int c) {
    return (n * seq + i) * width + h * hd + c;
  };
  for (int n = 0; n < batch; ++n)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < seq; ++i) {
        // Masked logits are the lowest float: constants passing no gradient.
        std::vector<bool> masked(seq);
        std::vector<double> prob(seq), dp(seq);
        for (int j = 0; j < seq; ++j) {
          masked[j] =
              tokenIds[n * seq + i] == 0 || tokenIds[n * seq + j] == 0 || j > i;
          double dot = 0;
          for (int c = 0; c < hd; ++c)
            dot += double(qv[at(n, i, h, c)]) * kv[at(n, j, h, c)];
          prob[j] =
              masked[j] ? std::numeric_limits<float>::lowest() : dot * norm;
        }
        double top = *std::max_element(prob.begin(), prob.end()), total = 0;
        for (double &l : prob)
          total += (l = std::exp(l - top));
        double weighted = 0;
        for (int j = 0; j < seq; ++j) {
          prob[j] /= total;
          dp[j] = 0;
          for (int c = 0; c < hd; ++c) {
            dp[j] += double(go[at(n, i, h, c)]) * vv[at(n, j, h, c)];
            expectedV[at(n, j, h, c)] += prob[j] * go[at(n, i, h, c)];
          }
          weighted += prob[j] * dp[j];
        }
        for (int j = 0; j < seq; ++j) {
          if (masked[j])
            continue;
          double ds = prob[j] * (dp[j] - weighted) * norm;
          for (int c = 0; c < hd; ++c) {
            expectedQ[at(n, i, h, c)] += ds * kv[at(n, j, h, c)];
            expectedK[at(n, j, h, c)] += ds * qv[at(n, i, h, c)];
          }
        }
      }
  std::vector<io::HostTensor> out =
      execute(b.plan, p, {intTensor("input_ids", {batch, seq}, tokenIds)});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedQ, kTol, "dq");
  expectNear(floats(out[1]), expectedK, kTol, "dk");
  expectNear(floats(out[2]), expectedV, kTol, "dv");
}

/// Two experts over three tokens: expert 0 owns slots 0-1 (slot 1 empty),
/// expert 1 slots 2-3.
constexpr int kExperts = 2, kSlots = 4, kTokens = 3;
const std::vector<int64_t> kSlotTokens = {2, -1, 0, 2};
const std::vector<int64_t> kOffsets = {0, 2, 4};

std::vector<io::HostTensor> assignmentInputs() {
  return {intTensor("tokens", {kSlots}, kSlotTokens),
          intTensor("offsets", {kExperts + 1}, kOffsets)};
}

int expertOf(int slot) { return slot < kOffsets[1] ? 0 : 1; }

TEST(TrainingKernelWiringTest, DispatchAndCombineGrads) {
  constexpr int d = 2;
  PlanBuilder b;
  int64_t dxd = b.param("dxd", {kSlots, d});
  int64_t yd = b.param("yd", {kSlots, d});
  int64_t gates = b.param("gates", {kSlots});
  int64_t dout = b.param("dout", {kTokens, d});
  int64_t tokens = b.input("tokens", {kSlots});
  b.input("offsets", {kExperts + 1});
  int64_t dx = b.arena({kTokens, d});
  int64_t dyd = b.arena({kSlots, d});
  int64_t dgates = b.arena({kSlots});
  b.step("dispatch_grad", {dxd, tokens}, {dx});
  b.step("combine_grad", {yd, tokens, gates, dout}, {dyd, dgates});
  b.output("dx", dx);
  b.output("dyd", dyd);
  b.output("dgates", dgates);
  std::vector<io::HostTensor> p = randomParams(b.plan, 120);
  std::vector<double> expectedDx(kTokens * d, 0.0),
      expectedDyd(kSlots * d, 0.0), expectedGates(kSlots, 0.0);
  for (int i = 0; i < kSlots; ++i) {
    int64_t t = kSlotTokens[i];
    if (t < 0)
      continue;
    for (int c = 0; c < d; ++c) {
      expectedDx[t * d + c] += data(p, 0)[i * d + c];
      expectedDyd[i * d + c] = double(data(p, 2)[i]) * data(p, 3)[t * d + c];
      expectedGates[i] += double(data(p, 1)[i * d + c]) * data(p, 3)[t * d + c];
    }
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, assignmentInputs());
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), expectedDx, kTol, "dx");
  expectNear(floats(out[1]), expectedDyd, kTol, "dyd");
  expectNear(floats(out[2]), expectedGates, kTol, "dgates");
}

TEST(TrainingKernelWiringTest, ExpertsGradWithAndWithoutFirstBias) {
  constexpr int d = 2, f = 3;
  PlanBuilder b;
  int64_t xd = b.param("xd", {kSlots, d});
  int64_t w1 = b.param("w1", {kExperts, d, f});
  int64_t b1 = b.param("b1", {kExperts, f});
  int64_t w2 = b.param("w2", {kExperts, f, d});
  int64_t dyd = b.param("dyd", {kSlots, d});
  int64_t tokens = b.input("tokens", {kSlots});
  int64_t offsets = b.input("offsets", {kExperts + 1});
  const char *names[] = {"dxd", "dw1", "db1", "dw2", "db2"};
  std::vector<std::vector<int64_t>> shapes = {{kSlots, d},
                                              {kExperts, d, f},
                                              {kExperts, f},
                                              {kExperts, f, d},
                                              {kExperts, d}};
  for (int64_t bias : {b1, int64_t(-1)}) {
    std::vector<int64_t> results;
    for (int r = 0; r < 5; ++r) {
      results.push_back(b.arena(shapes[r]));
      b.output(names[r] + std::string(bias < 0 ? "/nobias" : ""),
               results.back());
    }
    b.step("experts_grad", {xd, tokens, offsets, w1, bias, w2, dyd}, results,
           {{"activation", "relu"}, {"layout", "grouped"}});
  }
  std::vector<io::HostTensor> p = randomParams(b.plan, 130);
  const float *x = data(p, 0), *k1 = data(p, 1), *k2 = data(p, 3),
              *g = data(p, 4);
  // Expected dxd, dw1, db1, dw2, db2 for the first bias b1 (or none).
  auto reference = [&](const float *c1) {
    std::vector<std::vector<double>> e;
    for (const std::vector<int64_t> &shape : shapes)
      e.emplace_back(numElements(shape), 0.0);
    for (int i = 0; i < kSlots; ++i) {
      if (kSlotTokens[i] < 0)
        continue;
      int ex = expertOf(i);
      for (int j = 0; j < f; ++j) {
        double pre = c1 ? c1[ex * f + j] : 0.0, back = 0;
        for (int c = 0; c < d; ++c) {
          pre += double(x[i * d + c]) * k1[(ex * d + c) * f + j];
          back += double(g[i * d + c]) * k2[(ex * f + j) * d + c];
        }
        double dpre = pre > 0 ? back : 0.0;
        e[2][ex * f + j] += dpre;
        for (int c = 0; c < d; ++c) {
          e[0][i * d + c] += dpre * k1[(ex * d + c) * f + j];
          e[1][(ex * d + c) * f + j] += x[i * d + c] * dpre;
          e[3][(ex * f + j) * d + c] += std::max(pre, 0.0) * g[i * d + c];
        }
      }
      for (int c = 0; c < d; ++c)
        e[4][ex * d + c] += g[i * d + c];
    }
    return e;
  };
  std::vector<io::HostTensor> out = execute(b.plan, p, assignmentInputs());
  ASSERT_EQ(out.size(), 10u);
  std::vector<std::vector<double>> withBias = reference(data(p, 2)),
                                   noBias = reference(nullptr);
  for (int r = 0; r < 5; ++r) {
    expectNear(floats(out[r]), withBias[r], kTol, names[r]);
    expectNear(floats(out[5 + r]), noBias[r], kTol,
               names[r] + std::string("/nobias"));
  }
}

TEST(TrainingKernelWiringTest, ScatterGateGradAndRouteGrads) {
  PlanBuilder b;
  int64_t logits = b.param("logits", {kTokens, kExperts});
  int64_t dgates = b.param("dgates", {kSlots});
  int64_t tokens = b.input("tokens", {kSlots});
  int64_t offsets = b.input("offsets", {kExperts + 1});
  int64_t dscores = b.arena({kTokens, kExperts});
  int64_t dsoftmax = b.arena({kTokens, kExperts});
  int64_t dsigmoid = b.arena({kTokens, kExperts});
  b.step("scatter_gate_grad", {tokens, offsets, dgates}, {dscores});
  b.step("route_grad", {logits, tokens, offsets, dgates}, {dsoftmax},
         {{"routing", "tokens_choose"}});
  b.step("route_grad", {logits, tokens, offsets, dgates}, {dsigmoid},
         {{"routing", "sigmoid_topk"}});
  b.output("dscores", dscores);
  b.output("dsoftmax", dsoftmax);
  b.output("dsigmoid", dsigmoid);
  std::vector<io::HostTensor> p = randomParams(b.plan, 140);
  const float *z = data(p, 0);
  std::vector<double> dprobs(kTokens * kExperts, 0.0), dsig(dprobs);
  for (int i = 0; i < kSlots; ++i) {
    int64_t t = kSlotTokens[i];
    if (t < 0)
      continue;
    int64_t at = t * kExperts + expertOf(i);
    double s = 1 / (1 + std::exp(-double(z[at])));
    dprobs[at] = data(p, 1)[i];
    dsig[at] = data(p, 1)[i] * s * (1 - s);
  }
  // d(logits) of probs = softmax(logits): probs * (dprobs - <probs, dprobs>).
  std::vector<double> probs = softmaxRows(z, kTokens, kExperts), dsoft;
  for (int t = 0; t < kTokens; ++t) {
    double dot = 0;
    for (int e = 0; e < kExperts; ++e)
      dot += probs[t * kExperts + e] * dprobs[t * kExperts + e];
    for (int e = 0; e < kExperts; ++e)
      dsoft.push_back(probs[t * kExperts + e] *
                      (dprobs[t * kExperts + e] - dot));
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, assignmentInputs());
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), dprobs, 0, "dscores");
  expectNear(floats(out[1]), dsoft, kTol, "dsoftmax");
  expectNear(floats(out[2]), dsig, kTol, "dsigmoid");
}

TEST(TrainingKernelWiringTest, RouteGradRejectsUnknownRouting) {
  PlanBuilder b;
  int64_t logits = b.param("logits", {kTokens, kExperts});
  int64_t dgates = b.param("dgates", {kSlots});
  int64_t tokens = b.input("tokens", {kSlots});
  int64_t offsets = b.input("offsets", {kExperts + 1});
  int64_t dlogits = b.arena({kTokens, kExperts});
  b.step("route_grad", {logits, tokens, offsets, dgates}, {dlogits},
         {{"routing", "softmax"}});
  b.output("dlogits", dlogits);
  Expected<Plan> parsed = Plan::fromJson(b.plan.dump(), "training.mxa");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.message(),
            "training.mxa: steps[0] (route_grad): attribute 'routing' must be "
            "experts_choose, tokens_choose or sigmoid_topk, not \"softmax\"");
}

} // namespace

/// A scalar f32 input tensor.
io::HostTensor scalarF32(const std::string &name, float value) {
  io::HostTensor tensor = randomTensor(name, {}, 0);
  tensor.as<float>()[0] = value;
  return tensor;
}

/// Zero tensors for the state table of `plan`.
std::vector<io::HostTensor> zeroState(const json &plan) {
  std::vector<io::HostTensor> state;
  for (const json &entry : plan["state"]) {
    io::HostTensor tensor = randomTensor(
        entry["name"], entry["shape"].get<std::vector<int64_t>>(), 0);
    std::fill(tensor.data.begin(), tensor.data.end(), 0);
    state.push_back(std::move(tensor));
  }
  return state;
}

/// The plan of one AdamW step on f(w) = sum(w^2) / 2 (so grad = w), with
/// global-norm clipping at `maxNorm` (0 = none).
json adamwPlan(double maxNorm) {
  PlanBuilder b;
  int64_t w = b.param("w", {5});
  int64_t m = b.state("adam_m/w", {5});
  int64_t v = b.state("adam_v/w", {5});
  int64_t lr = b.input("learning_rate", {}, false, "F32");
  int64_t step = b.input("step", {});
  int64_t grad = b.arena({5});
  int64_t norm = b.arena({});
  b.step("scale", {w}, {grad}, {{"factor", 1.0}});
  b.step("global_norm", {grad}, {norm});
  b.step("adamw", {grad, lr, step, maxNorm > 0 ? norm : -1, -1}, {w, m, v},
         {{"b1", 0.9},
          {"b2", 0.999},
          {"eps", 1e-6},
          {"weight_decay", 0.01},
          {"max_norm", maxNorm},
          {"micro_steps", 1}});
  b.output("norm", norm);
  return b.plan;
}

/// Runs two updates of adamwPlan(maxNorm) and compares the parameters and
/// moments with the AdamW formulas evaluated in double.
void checkAdamWUpdates(double maxNorm) {
  json plan = adamwPlan(maxNorm);
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "adamw.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  ASSERT_TRUE(parsed->updatesParameters());
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  ASSERT_TRUE(executor.ok()) << executor.message();
  std::vector<io::HostTensor> params = randomParams(plan, 7);
  std::vector<double> w(5), m(5, 0.0), v(5, 0.0);
  for (int i = 0; i < 5; ++i)
    w[i] = data(params, 0)[i];
  ASSERT_TRUE(executor->bindParams(params, "params").ok());
  ASSERT_TRUE(executor->bindState(zeroState(plan), "state").ok());
  const double rates[] = {0.1, 0.05};
  for (int update = 1; update <= 2; ++update) {
    double lr = rates[update - 1];
    ASSERT_TRUE(executor
                    ->bindInputs({scalarF32("learning_rate", lr),
                                  intTensor("step", {}, {update - 1})},
                                 "inputs")
                    .ok());
    ASSERT_TRUE(executor->run().ok());
    double norm = 0;
    for (double x : w)
      norm += x * x;
    norm = std::sqrt(norm);
    double scale = maxNorm > 0 && norm >= maxNorm ? maxNorm / norm : 1.0;
    for (int i = 0; i < 5; ++i) {
      double g = w[i] * scale;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      double mHat = m[i] / (1 - std::pow(0.9, update));
      double vHat = v[i] / (1 - std::pow(0.999, update));
      w[i] -= lr * (mHat / (std::sqrt(vHat) + 1e-6) + 0.01 * w[i]);
    }
    std::vector<io::HostTensor> out = executor->outputs();
    expectNear(floats(out[0]), {norm}, kTol, "norm");
  }
  expectNear(std::vector<float>(executor->params()[0].as<float>(),
                                executor->params()[0].as<float>() + 5),
             w, kTol, "w");
  expectNear(std::vector<float>(executor->state()[0].as<float>(),
                                executor->state()[0].as<float>() + 5),
             m, kTol, "adam_m");
  expectNear(std::vector<float>(executor->state()[1].as<float>(),
                                executor->state()[1].as<float>() + 5),
             v, 1e-4, "adam_v");
}

TEST(TrainingKernelWiringTest, AdamWUpdatesParametersAndStateInPlace) {
  checkAdamWUpdates(0.0);
}

TEST(TrainingKernelWiringTest, AdamWClipsByTheGlobalNorm) {
  // The random parameters have a norm above 0.5, so both updates clip.
  checkAdamWUpdates(0.5);
}

TEST(TrainingKernelWiringTest, AdamWRefusesANegativeStep) {
  json plan = adamwPlan(0.0);
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "adamw.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  ASSERT_TRUE(executor.ok());
  ASSERT_TRUE(executor->bindParams(randomParams(plan, 1), "params").ok());
  ASSERT_TRUE(executor
                  ->bindInputs({scalarF32("learning_rate", 0.1f),
                                intTensor("step", {}, {-1})},
                               "inputs")
                  .ok());
  Status status = executor->run();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("optimizer state is not bound"),
            std::string::npos)
      << status.message();
  ASSERT_TRUE(executor->bindState(zeroState(plan), "state").ok());
  status = executor->run();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("adamw.mxa: steps[2] (adamw): input 'step' "
                                  "is -1"),
            std::string::npos)
      << status.message();
}

/// One parameter w [2] trained with gradient accumulation over two
/// micro-steps: the gradient is the input g; its average, clipped to global
/// norm 2.5, feeds AdamW (lr 0.1, b1 0.9, b2 0.999, eps 1e-6, no weight
/// decay). Outputs the average and its norm.
json accumulationPlan() {
  PlanBuilder b;
  int64_t w = b.param("w", {2});
  int64_t m = b.state("adam_m/w", {2});
  int64_t v = b.state("adam_v/w", {2});
  int64_t accum = b.state("grad_accum/w", {2});
  b.plan["training"]["gradient_accumulation_steps"] = 2;
  int64_t g = b.input("g", {2}, false, "F32");
  int64_t lr = b.input("learning_rate", {}, false, "F32");
  int64_t step = b.input("step", {});
  int64_t micro = b.input("micro_step", {});
  int64_t average = b.arena({2});
  int64_t norm = b.arena({});
  b.step("accumulate_gradient", {g, micro}, {accum, average},
         {{"micro_steps", 2}});
  b.step("global_norm", {average}, {norm});
  b.step("adamw", {average, lr, step, norm, micro}, {w, m, v},
         {{"b1", 0.9},
          {"b2", 0.999},
          {"eps", 1e-6},
          {"weight_decay", 0.0},
          {"max_norm", 2.5},
          {"micro_steps", 2}});
  b.output("average", average);
  b.output("norm", norm);
  return b.plan;
}

TEST(TrainingKernelWiringTest, AccumulatesMicroStepsAndClipsTheAverage) {
  json plan = accumulationPlan();
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "accumulate.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_EQ(parsed->training->microSteps, 2);
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  ASSERT_TRUE(executor.ok()) << executor.message();
  io::HostTensor w = randomTensor("w", {2}, 0);
  w.as<float>()[0] = 1.0f;
  w.as<float>()[1] = -1.0f;
  ASSERT_TRUE(executor->bindParams({w}, "params").ok());
  ASSERT_TRUE(executor->bindState(zeroState(plan), "state").ok());
  auto run = [&](float g0, float g1, int64_t micro) {
    io::HostTensor g = randomTensor("g", {2}, 0);
    g.as<float>()[0] = g0;
    g.as<float>()[1] = g1;
    Status status = executor->bindInputs({g, scalarF32("learning_rate", 0.1f),
                                          intTensor("step", {}, {0}),
                                          intTensor("micro_step", {}, {micro})},
                                         "inputs");
    EXPECT_TRUE(status.ok()) << status.message();
    return executor->run();
  };
  auto values = [](const io::HostTensor &t) {
    return std::vector<float>(t.as<float>(), t.as<float>() + t.numel());
  };

  // Micro-step 0, g = (6, 0): the accumulator takes it, the parameter and
  // the moments stay; the average (3, 0) has norm 3.
  ASSERT_TRUE(run(6.0f, 0.0f, 0).ok());
  EXPECT_EQ(values(executor->params()[0]), (std::vector<float>{1.0f, -1.0f}));
  EXPECT_EQ(values(executor->state()[0]), (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(values(executor->state()[1]), (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(values(executor->state()[2]), (std::vector<float>{6.0f, 0.0f}));
  std::vector<io::HostTensor> out = executor->outputs();
  EXPECT_EQ(values(out[1]), (std::vector<float>{3.0f}));

  // Micro-step 1, g = (0, 8): average (3, 4), norm 5 > 2.5, so the update
  // uses g = (1.5, 2). Update 1: m = 0.1 g = (0.15, 0.2), v = 0.001 g^2 =
  // (0.00225, 0.004), m^ = g, sqrt(v^) = |g|, and
  // w = (1 - 0.1 * 1.5 / (1.5 + 1e-6), -1 - 0.1 * 2 / (2 + 1e-6))
  //   = (0.9000000666667, -1.0999999500000). The accumulator is zero again.
  ASSERT_TRUE(run(0.0f, 8.0f, 1).ok());
  out = executor->outputs();
  EXPECT_EQ(values(out[0]), (std::vector<float>{3.0f, 4.0f}));
  EXPECT_EQ(values(out[1]), (std::vector<float>{5.0f}));
  expectNear(values(executor->params()[0]), {0.9000000666667, -1.0999999500000},
             1e-6, "w");
  expectNear(values(executor->state()[0]), {0.15, 0.2}, 1e-6, "adam_m");
  expectNear(values(executor->state()[1]), {0.00225, 0.004}, 1e-8, "adam_v");
  EXPECT_EQ(values(executor->state()[2]), (std::vector<float>{0.0f, 0.0f}));

  // A micro-step outside the update is refused.
  Status status = run(1.0f, 1.0f, 2);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("accumulate.mxa: steps[0] "
                                  "(accumulate_gradient): input 'micro_step' "
                                  "is 2 but an update has 2 micro-steps"),
            std::string::npos)
      << status.message();
}

/// y = random_scale(x) (dropout 0.25, stream 3, seed 11) for x = ones(n),
/// keyed by micro-step `micro` of the update after `step` updates, three
/// micro-steps an update: the step's operands step and micro_step and its
/// attribute micro_steps. `microSteps` and `withMicro` change them.
Expected<std::vector<float>> dropoutAtMicroStep(int64_t n, int32_t step,
                                                int32_t micro,
                                                int64_t microSteps = 3,
                                                bool withMicro = true) {
  PlanBuilder b;
  int64_t x = b.param("x", {n}, {{"kind", "ones"}});
  int64_t seedInput = b.input("seed", {}), stepInput = b.input("step", {}),
          microInput = b.input("micro_step", {});
  int64_t y = b.arena({n});
  b.step("random_scale",
         {x, seedInput, stepInput, withMicro ? microInput : int64_t(-1)}, {y},
         {{"kind", "dropout"},
          {"rate", 0.25},
          {"stream", 3},
          {"micro_steps", microSteps}});
  b.output("y", y);
  Expected<Plan> parsed = Plan::fromJson(b.plan.dump(), "counter.mxa");
  if (!parsed)
    return parsed.takeStatus();
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  if (!executor)
    return executor.takeStatus();
  io::HostTensor ones = randomTensor("x", {n}, 0);
  std::fill_n(ones.as<float>(), n, 1.0f);
  Status status = executor->bindParams({ones}, "params");
  if (status.ok())
    status = executor->bindInputs({intTensor("seed", {}, {11}),
                                   intTensor("step", {}, {step}),
                                   intTensor("micro_step", {}, {micro})},
                                  "inputs");
  if (status.ok())
    status = executor->run();
  if (!status.ok())
    return status;
  return floats(executor->outputs()[0]);
}

TEST(TrainingKernelWiringTest, NoiseKernelsCountMicroStepsAndWrap) {
  const int64_t n = 1001;
  // The counter is step * 3 + micro_step: 5 * 3 + 2 = 17; (2^31 - 1) * 3 + 1
  // = 6442450942 = 2^32 + 2147483646, which wraps to 2147483646.
  for (auto [step, micro, counter] :
       {std::tuple<int32_t, int32_t, int32_t>{5, 2, 17},
        {0, 0, 0},
        {2147483647, 1, 2147483646}}) {
    Expected<std::vector<float>> y = dropoutAtMicroStep(n, step, micro);
    ASSERT_TRUE(y.ok()) << y.message();
    cpu::CounterUniforms uniforms(11, 3, counter);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ((*y)[i], uniforms.at(i) >= 0.25f ? 1.0f / 0.75f : 0.0f)
          << "step " << step << " micro-step " << micro << " element " << i;
  }
  Expected<std::vector<float>> outside = dropoutAtMicroStep(n, 5, 3);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.message().find("input 'micro_step' is 3 but an update "
                                   "has 3 micro-steps"),
            std::string::npos)
      << outside.message();

  // The operand micro_step and the attribute micro_steps go together.
  for (auto [microSteps, withMicro] :
       {std::pair<int64_t, bool>{1, true}, {3, false}}) {
    Expected<std::vector<float>> refused =
        dropoutAtMicroStep(n, 5, 0, microSteps, withMicro);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.message(),
              "counter.mxa: steps[0] (random_scale): the operand micro_step "
              "must be present exactly when micro_steps > 1");
  }
  Expected<std::vector<float>> zero = dropoutAtMicroStep(n, 5, 0, 0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.message(), "counter.mxa: steps[0] (random_scale): attribute "
                            "'micro_steps' must be at least 1, not 0");
}

/// y = random_scale(x) for x = ones(n), at the given seed and step.
std::vector<float> randomScaleOfOnes(const std::string &kind, double rate,
                                     int64_t n, int32_t seed, int32_t step) {
  PlanBuilder b;
  int64_t x = b.param("x", {n}, {{"kind", "ones"}});
  int64_t seedInput = b.input("seed", {});
  int64_t stepInput = b.input("step", {});
  int64_t y = b.arena({n});
  b.step("random_scale", {x, seedInput, stepInput, -1}, {y},
         {{"kind", kind}, {"rate", rate}, {"stream", 3}});
  b.output("y", y);
  io::HostTensor ones = randomTensor("x", {n}, 0);
  std::fill_n(ones.as<float>(), n, 1.0f);
  std::vector<io::HostTensor> out =
      execute(b.plan, {ones},
              {intTensor("seed", {}, {seed}), intTensor("step", {}, {step})});
  return floats(out[0]);
}

TEST(TrainingKernelWiringTest, RandomScaleDropsWithItsCounterUniforms) {
  const int64_t n = 4001;
  std::vector<float> y = randomScaleOfOnes("dropout", 0.25, n, 11, 5);
  cpu::CounterUniforms uniforms(11, 3, 5);
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool keep = uniforms.at(i) >= 0.25f;
    ASSERT_EQ(y[i], keep ? 1.0f / 0.75f : 0.0f) << "element " << i;
    dropped += !keep;
  }
  // 25 % of 4001 has a standard deviation of 27.
  EXPECT_NEAR(dropped, 1000, 110);
  // Another step draws another mask; a negative seed adds no noise.
  EXPECT_NE(randomScaleOfOnes("dropout", 0.25, n, 11, 6), y);
  EXPECT_EQ(randomScaleOfOnes("dropout", 0.25, n, -1, 5),
            std::vector<float>(n, 1.0f));
}

TEST(TrainingKernelWiringTest, RandomScaleJittersWithinItsRange) {
  std::vector<float> y = randomScaleOfOnes("jitter", 0.1, 999, 2, 0);
  cpu::CounterUniforms uniforms(2, 3, 0);
  for (int64_t i = 0; i < 999; ++i) {
    ASSERT_GE(y[i], 0.9f);
    ASSERT_LT(y[i], 1.1f);
    ASSERT_NEAR(y[i], 0.9 + 0.2 * uniforms.at(i), 1e-6);
  }
}

TEST(TrainingKernelWiringTest, ArgmaxTakesTheFirstMaximumOfEachRow) {
  PlanBuilder b;
  int64_t x = b.param("x", {2, 2, 3});
  int64_t y = b.arena({2, 2}, "I32");
  b.step("argmax", {x}, {y});
  b.output("y", y);
  io::HostTensor values = randomTensor("x", {2, 2, 3}, 0);
  const float rows[] = {0.5f,  2.0f,  -1.0f, 3.0f, 3.0f, 1.0f,
                        -2.0f, -3.0f, -1.0f, 0.0f, 0.0f, 0.0f};
  std::copy(std::begin(rows), std::end(rows), values.as<float>());
  std::vector<io::HostTensor> out = execute(b.plan, {values}, {});
  const int32_t *argmax = out[0].as<int32_t>();
  EXPECT_EQ(std::vector<int32_t>(argmax, argmax + 4),
            (std::vector<int32_t>{1, 0, 2, 0}));
}

namespace {

/// A float tensor named `name` holding `values`.
io::HostTensor floatTensor(const std::string &name,
                           const std::vector<int64_t> &shape,
                           const std::vector<float> &values) {
  io::HostTensor tensor = randomTensor(name, shape, 0);
  std::copy(values.begin(), values.end(), tensor.as<float>());
  return tensor;
}

TEST(TrainingKernelWiringTest, RouterZLossAndGradientOfTheSpecGolden) {
  PlanBuilder b;
  int64_t logits = b.param("logits", {2, 3});
  int64_t dloss = b.param("dloss", {});
  int64_t z = b.arena({});
  int64_t dlogits = b.arena({2, 3});
  b.step("router_z_loss", {logits}, {z});
  b.step("router_z_loss_grad", {logits, dloss}, {dlogits});
  b.output("z", z);
  b.output("dlogits", dlogits);
  std::vector<io::HostTensor> params = {
      floatTensor("logits", {2, 3}, {1, 2, 3, 0, 0, 0}),
      floatTensor("dloss", {}, {0.5f})};
  std::vector<io::HostTensor> out = execute(b.plan, params, {});
  // Spec 14.3: z-loss([[1,2,3],[0,0,0]]) = 6.4093637.
  expectNear(floats(out[0]), {6.4093637}, kTol, "z");
  // d/dlogits of mean_t lse_t^2 = 2 lse_t softmax_t / N, times dloss.
  std::vector<double> p = softmaxRows(data(params, 0), 2, 3);
  std::vector<double> expected(6);
  for (int64_t t = 0; t < 2; ++t) {
    double lse = t == 0
                     ? std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0))
                     : std::log(3.0);
    for (int64_t e = 0; e < 3; ++e)
      expected[t * 3 + e] = 0.5 * 2 * lse * p[t * 3 + e] / 2;
  }
  expectNear(floats(out[1]), expected, kTol, "dlogits");
}

TEST(TrainingKernelWiringTest, LoadBalancingLossAndGradientOfTheSpecGolden) {
  // Spec 14.3: six tokens, three experts, one group. Top-1 choices count
  // [3, 1, 2] per expert; top-2 choices (ties to the lower index) [6, 4, 2].
  const std::vector<float> probs = {.7f, .2f,  .1f,  .1f, .8f, .1f,
                                    .6f, .3f,  .1f,  .3f, .3f, .4f,
                                    .9f, .05f, .05f, .2f, .2f, .6f};
  for (auto [k, golden, counts] :
       {std::tuple<int64_t, double, std::vector<double>>{
            1, 1.0791667, {3, 1, 2}},
        {2, 2.2416667, {6, 4, 2}}}) {
    PlanBuilder b;
    int64_t p = b.param("probs", {6, 3});
    int64_t dloss = b.param("dloss", {});
    int64_t aux = b.arena({});
    int64_t dprobs = b.arena({6, 3});
    b.step("load_balancing_loss", {p}, {aux}, {{"groups", 1}, {"k", k}});
    b.step("load_balancing_loss_grad", {p, dloss}, {dprobs},
           {{"groups", 1}, {"k", k}});
    b.output("aux", aux);
    b.output("dprobs", dprobs);
    std::vector<io::HostTensor> out = execute(
        b.plan,
        {floatTensor("probs", {6, 3}, probs), floatTensor("dloss", {}, {2.0f})},
        {});
    expectNear(floats(out[0]), {golden}, kTol, "aux");
    // E * count_e / T^2 for every token, times dloss.
    std::vector<double> expected(18);
    for (int64_t i = 0; i < 18; ++i)
      expected[i] = 2.0 * 3 * counts[i % 3] / 36;
    expectNear(floats(out[1]), expected, kTol, "dprobs");
  }
}

TEST(TrainingKernelWiringTest, LoadBalancingLossRejectsGroupsThatDoNotDivide) {
  PlanBuilder b;
  int64_t p = b.param("probs", {6, 3});
  int64_t aux = b.arena({});
  b.step("load_balancing_loss", {p}, {aux}, {{"groups", 4}, {"k", 1}});
  b.output("aux", aux);
  Expected<Plan> parsed = Plan::fromJson(b.plan.dump(), "training.mxa");
  ASSERT_TRUE(parsed) << parsed.message();
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  ASSERT_FALSE(executor);
  EXPECT_NE(executor.message().find(
                "attribute 'groups' 4 does not divide the 6 tokens"),
            std::string::npos)
      << executor.message();
}

TEST(TrainingKernelWiringTest, EntropyRegularizerAndGradient) {
  PlanBuilder b;
  int64_t logits = b.param("logits", {5, 4});
  int64_t dloss = b.param("dloss", {});
  int64_t h = b.arena({});
  int64_t dlogits = b.arena({5, 4});
  b.step("entropy_regularizer", {logits}, {h});
  b.step("entropy_regularizer_grad", {logits, dloss}, {dlogits});
  b.output("h", h);
  b.output("dlogits", dlogits);
  std::vector<io::HostTensor> params = {
      randomTensor("logits", {5, 4}, 3, -2, 2),
      floatTensor("dloss", {}, {1.5f})};
  std::vector<io::HostTensor> out = execute(b.plan, params, {});
  // Negative entropy of the batch-mean softmax, and its gradient by the
  // chain rule: dR/dpbar_e = log pbar_e + 1 through pbar = mean_t softmax_t.
  std::vector<double> p = softmaxRows(data(params, 0), 5, 4);
  std::vector<double> mean(4, 0.0);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t e = 0; e < 4; ++e)
      mean[e] += p[t * 4 + e] / 5;
  double negEntropy = 0;
  for (double m : mean)
    negEntropy += m * std::log(m);
  expectNear(floats(out[0]), {negEntropy}, kTol, "h");
  std::vector<double> expected(20);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t e = 0; e < 4; ++e) {
      double sum = 0;
      for (int64_t j = 0; j < 4; ++j)
        sum += (std::log(mean[j]) + 1) / 5 * p[t * 4 + j] *
               ((j == e) - p[t * 4 + e]);
      expected[t * 4 + e] = 1.5 * sum;
    }
  expectNear(floats(out[1]), expected, kTol, "dlogits");
}

/// drop_experts of `x` [tokens, experts] at the given seed.
std::vector<float> dropExperts(const io::HostTensor &x, bool gradient,
                               int32_t seed) {
  PlanBuilder b;
  int64_t in = b.param("x", x.shape);
  int64_t seedInput = b.input("seed", {});
  int64_t stepInput = b.input("step", {});
  int64_t y = b.arena(x.shape);
  b.step("drop_experts", {in, seedInput, stepInput, -1}, {y},
         {{"rate", 0.25}, {"stream", 4}, {"gradient", gradient}});
  b.output("y", y);
  return floats(
      execute(b.plan, {x},
              {intTensor("seed", {}, {seed}), intTensor("step", {}, {9})})[0]);
}

TEST(TrainingKernelWiringTest, DropExpertsRemovesExpertsWithTheirUniforms) {
  const int64_t tokens = 250, experts = 4;
  io::HostTensor x = randomTensor("x", {tokens, experts}, 5);
  std::vector<float> forward = dropExperts(x, false, 7);
  std::vector<float> backward = dropExperts(x, true, 7);
  cpu::CounterUniforms uniforms(7, 4, 9);
  int64_t dropped = 0;
  for (int64_t i = 0; i < tokens * experts; ++i) {
    bool drop = uniforms.at(i) < 0.25f;
    float kept = x.as<float>()[i];
    ASSERT_EQ(forward[i], drop ? -std::numeric_limits<float>::infinity() : kept)
        << "element " << i;
    ASSERT_EQ(backward[i], drop ? 0.0f : kept) << "element " << i;
    dropped += drop;
  }
  // 25 % of 1000 has a standard deviation of 14.
  EXPECT_NEAR(dropped, 250, 60);
  // A negative seed evaluates: every expert stays.
  EXPECT_EQ(dropExperts(x, false, -1), floats(x));
}

} // namespace
