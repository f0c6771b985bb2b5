//===- KernelWiringTest.cpp - Every kernel run through a plan -------------===//
//
// Small plans around each kernel, checked against plain double-precision
// loops written from the model semantics (docs/parameters.md): they catch
// operands passed in the wrong order, dimensions swapped and attributes
// misread between the plan and the kernel call.
//
//===----------------------------------------------------------------------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/cpu/Executor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;

namespace {

constexpr double kTol = 1e-5;
/// FFT paths round differently from the direct sums.
constexpr double kFftTol = 1e-4;

double gelu(double x) {
  return 0.5 * x *
         (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/// act(x W1[e] + b1[e]) W2[e] + b2[e] for one row x of width d; biases may
/// be null.
std::vector<double> expertFfn(const float *x, int64_t e, const float *w1,
                              const float *b1, const float *w2, const float *b2,
                              int64_t d, int64_t f, const char *act) {
  std::vector<double> hidden(f), out(d);
  for (int64_t j = 0; j < f; ++j) {
    double sum = b1 ? b1[e * f + j] : 0.0;
    for (int64_t i = 0; i < d; ++i)
      sum += double(x[i]) * w1[(e * d + i) * f + j];
    hidden[j] = std::string(act) == "relu" ? std::max(0.0, sum) : gelu(sum);
  }
  for (int64_t i = 0; i < d; ++i) {
    double sum = b2 ? b2[e * d + i] : 0.0;
    for (int64_t j = 0; j < f; ++j)
      sum += hidden[j] * w2[(e * f + j) * d + i];
    out[i] = sum;
  }
  return out;
}

/// Experts of `row` of probs [.., experts], best first, ties to the lower
/// index.
std::vector<int64_t> rankExperts(const float *row, int64_t experts) {
  std::vector<int64_t> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return row[a] > row[b]; });
  return order;
}

TEST(KernelWiringTest, DenseTransposedWithReluAndNoBias) {
  PlanBuilder b;
  int64_t x = b.param("x", {2, 2, 3});
  int64_t w = b.param("w", {4, 3});
  int64_t y = b.arena({2, 2, 4});
  b.step("dense", {x, w, -1}, {y},
         {{"activation", "relu"}, {"transpose_w", true}});
  b.output("y", y);
  std::vector<io::HostTensor> p = randomParams(b.plan, 10);
  std::vector<double> expected;
  for (int m = 0; m < 4; ++m)
    for (int n = 0; n < 4; ++n) {
      double sum = 0;
      for (int k = 0; k < 3; ++k)
        sum +=
            double(p[0].as<float>()[m * 3 + k]) * p[1].as<float>()[n * 3 + k];
      expected.push_back(std::max(0.0, sum));
    }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "y");
}

TEST(KernelWiringTest, LayerNormWithResidual) {
  PlanBuilder b;
  int64_t x = b.param("x", {3, 5});
  int64_t r = b.param("r", {3, 5});
  int64_t scale = b.param("scale", {5});
  int64_t bias = b.param("bias", {5});
  int64_t y = b.arena({3, 5});
  b.step("layer_norm", {x, r, scale, bias}, {y}, {{"epsilon", 1e-5}});
  b.output("y", y);
  std::vector<io::HostTensor> p = randomParams(b.plan, 20);
  std::vector<double> expected;
  for (int row = 0; row < 3; ++row) {
    double v[5], mean = 0, squares = 0;
    for (int c = 0; c < 5; ++c) {
      v[c] =
          double(p[0].as<float>()[row * 5 + c]) + p[1].as<float>()[row * 5 + c];
      mean += v[c] / 5;
      squares += v[c] * v[c] / 5;
    }
    double rstd = 1.0 / std::sqrt(squares - mean * mean + 1e-5);
    for (int c = 0; c < 5; ++c)
      expected.push_back((v[c] - mean) * rstd * p[2].as<float>()[c] +
                         p[3].as<float>()[c]);
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "y");
}

TEST(KernelWiringTest, AddActivationAndTakePosition) {
  PlanBuilder b;
  int64_t x = b.param("x", {2, 3, 4});
  int64_t z = b.param("z", {2, 3, 4});
  int64_t sum = b.arena({2, 3, 4});
  int64_t act = b.arena({2, 3, 4});
  int64_t taken = b.arena({2, 4});
  b.step("add", {x, z}, {sum});
  b.step("activation", {sum}, {act}, {{"kind", "tanh"}});
  b.step("take_position", {act}, {taken}, {{"index", 2}});
  b.output("sum", sum);
  b.output("taken", taken);
  std::vector<io::HostTensor> p = randomParams(b.plan, 30);
  std::vector<double> sums, taken2;
  for (int i = 0; i < 24; ++i)
    sums.push_back(double(p[0].as<float>()[i]) + p[1].as<float>()[i]);
  for (int batch = 0; batch < 2; ++batch)
    for (int c = 0; c < 4; ++c)
      taken2.push_back(std::tanh(sums[(batch * 3 + 2) * 4 + c]));
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 2u);
  expectNear(floats(out[0]), sums, kTol, "sum");
  expectNear(floats(out[1]), taken2, kTol, "taken");
}

TEST(KernelWiringTest, RoundBf16TiesToEven) {
  PlanBuilder b;
  int64_t x = b.param("x", {4});
  int64_t y = b.arena({4});
  b.step("round_bf16", {x}, {y});
  b.output("y", y);
  // bf16 keeps 7 mantissa bits: the unit in the last place at 1 is 2^-7.
  io::HostTensor values = randomTensor("x", {4}, 0);
  const float in[4] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -2.5f,
                       1.0f + 0x1p-7f + 0x1p-9f};
  std::copy(in, in + 4, values.as<float>());
  std::vector<io::HostTensor> out = execute(b.plan, {values}, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), {1.0, 1.015625, -2.5, 1.0078125}, 0, "y");
}

TEST(KernelWiringTest, LinearMix) {
  PlanBuilder b;
  int64_t x = b.param("x", {2, 3, 4});
  int64_t ws = b.param("ws", {3, 3});
  int64_t wh = b.param("wh", {4, 4});
  int64_t y = b.arena({2, 3, 4});
  b.step("linear_mix", {x, ws, wh}, {y});
  b.output("y", y);
  std::vector<io::HostTensor> p = randomParams(b.plan, 40);
  const float *xv = p[0].as<float>(), *s = p[1].as<float>(),
              *h = p[2].as<float>();
  std::vector<double> expected;
  for (int batch = 0; batch < 2; ++batch)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) {
        double sum = 0;
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 4; ++j)
            sum += double(s[r * 3 + i]) * xv[(batch * 3 + i) * 4 + j] *
                   h[j * 4 + c];
        expected.push_back(sum);
      }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "y");
}

TEST(KernelWiringTest, SpectralMixFourierAndHartley) {
  constexpr int batch = 2, seq = 4, d = 3;
  PlanBuilder b;
  int64_t x = b.param("x", {batch, seq, d});
  int64_t fourier = b.arena({batch, seq, d});
  int64_t hartleyFft = b.arena({batch, seq, d});
  int64_t hartleyMatmul = b.arena({batch, seq, d});
  b.step("spectral_mix", {x}, {fourier},
         {{"hartley", false}, {"algorithm", "fft"}});
  b.step("spectral_mix", {x}, {hartleyFft},
         {{"hartley", true}, {"algorithm", "fft"}});
  b.step("spectral_mix", {x}, {hartleyMatmul},
         {{"hartley", true}, {"algorithm", "matmul"}});
  b.output("fourier", fourier);
  b.output("hartley_fft", hartleyFft);
  b.output("hartley_matmul", hartleyMatmul);
  std::vector<io::HostTensor> p = randomParams(b.plan, 50);
  // Re(F_S X F_D) = sum X cos(theta); Re - Im = sum X (cos + sin)(theta),
  // theta = 2 pi (s s' / S + d d' / D).
  std::vector<double> re, hartley;
  for (int n = 0; n < batch; ++n)
    for (int s = 0; s < seq; ++s)
      for (int c = 0; c < d; ++c) {
        double sumRe = 0, sumHartley = 0;
        for (int s2 = 0; s2 < seq; ++s2)
          for (int c2 = 0; c2 < d; ++c2) {
            double theta =
                2 * M_PI * (double(s * s2) / seq + double(c * c2) / d);
            double v = p[0].as<float>()[(n * seq + s2) * d + c2];
            sumRe += v * std::cos(theta);
            sumHartley += v * (std::cos(theta) + std::sin(theta));
          }
        re.push_back(sumRe);
        hartley.push_back(sumHartley);
      }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), re, kFftTol, "fourier");
  expectNear(floats(out[1]), hartley, kFftTol, "hartley fft");
  expectNear(floats(out[2]), hartley, kFftTol, "hartley matmul");
}

TEST(KernelWiringTest, StructuredMixCirculantAndToeplitz) {
  constexpr int batch = 2, seq = 4, d = 3;
  PlanBuilder b;
  int64_t x = b.param("x", {batch, seq, d});
  int64_t vs = b.param("vs", {seq});
  int64_t vh = b.param("vh", {d});
  int64_t ts = b.param("ts", {2 * seq - 1});
  int64_t th = b.param("th", {2 * d - 1});
  int64_t circulant = b.arena({batch, seq, d});
  int64_t toeplitz = b.arena({batch, seq, d});
  b.step("structured_mix", {x, vs, vh}, {circulant},
         {{"toeplitz", false}, {"algorithm", "fft"}});
  b.step("structured_mix", {x, ts, th}, {toeplitz},
         {{"toeplitz", true}, {"algorithm", "matmul"}});
  b.output("circulant", circulant);
  b.output("toeplitz", toeplitz);
  std::vector<io::HostTensor> p = randomParams(b.plan, 60);
  auto circ = [&](const float *v, int n, int r, int c) {
    return double(v[((r - c) % n + n) % n]);
  };
  auto toep = [&](const float *t, int n, int r, int c) {
    return double(t[(n - 1) + c - r]);
  };
  // Y = M_s X M_h^T for both structured matrices.
  std::vector<double> expectedCirc, expectedToep;
  const float *xv = p[0].as<float>();
  for (int n = 0; n < batch; ++n)
    for (int r = 0; r < seq; ++r)
      for (int c = 0; c < d; ++c) {
        double sumCirc = 0, sumToep = 0;
        for (int i = 0; i < seq; ++i)
          for (int j = 0; j < d; ++j) {
            double v = xv[(n * seq + i) * d + j];
            sumCirc += circ(p[1].as<float>(), seq, r, i) * v *
                       circ(p[2].as<float>(), d, c, j);
            sumToep += toep(p[3].as<float>(), seq, r, i) * v *
                       toep(p[4].as<float>(), d, c, j);
          }
        expectedCirc.push_back(sumCirc);
        expectedToep.push_back(sumToep);
      }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 2u);
  expectNear(floats(out[0]), expectedCirc, kFftTol, "circulant");
  expectNear(floats(out[1]), expectedToep, kFftTol, "toeplitz");
}

TEST(KernelWiringTest, AttentionWithPaddingAndCausalMasks) {
  constexpr int batch = 2, seq = 3, heads = 2, hd = 2, width = heads * hd;
  PlanBuilder b(batch, seq);
  int64_t q = b.param("q", {batch, seq, width});
  int64_t k = b.param("k", {batch, seq, width});
  int64_t v = b.param("v", {batch, seq, width});
  int64_t ids = b.input("input_ids", {batch, seq});
  int64_t padded = b.arena({batch, seq, width});
  int64_t causal = b.arena({batch, seq, width});
  int64_t open = b.arena({batch, seq, width});
  json attrs = {{"num_heads", heads}, {"head_dim", hd},      {"pad_id", 0},
                {"causal", false},    {"dropout_rate", 0.0}, {"stream", 0}};
  b.step("attention", {q, k, v, ids, -1, -1, -1}, {padded}, attrs);
  attrs["causal"] = true;
  b.step("attention", {q, k, v, ids, -1, -1, -1}, {causal}, attrs);
  attrs["causal"] = false;
  b.step("attention", {q, k, v, -1, -1, -1, -1}, {open}, attrs);
  b.output("padded", padded);
  b.output("causal", causal);
  b.output("open", open);
  std::vector<io::HostTensor> p = randomParams(b.plan, 70);
  // The last token of example 0 and the first of example 1 are padding.
  std::vector<int64_t> tokenIds = {3, 1, 0, 0, 2, 4};

  auto reference = [&](bool useIds, bool isCausal) {
    std::vector<double> out(batch * seq * width);
    const float *qv = p[0].as<float>(), *kv = p[1].as<float>(),
                *vv = p[2].as<float>();
    for (int n = 0; n < batch; ++n)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < seq; ++i) {
          std::vector<double> logits(seq);
          for (int j = 0; j < seq; ++j) {
            bool masked = (useIds && (tokenIds[n * seq + i] == 0 ||
                                      tokenIds[n * seq + j] == 0)) ||
                          (isCausal && j > i);
            double dot = 0;
            for (int c = 0; c < hd; ++c)
              dot += double(qv[(n * seq + i) * width + h * hd + c]) *
                     kv[(n * seq + j) * width + h * hd + c];
            logits[j] = masked ? std::numeric_limits<float>::lowest()
                               : dot / std::sqrt(double(hd));
          }
          double top = *std::max_element(logits.begin(), logits.end());
          double total = 0;
          for (double &l : logits)
            total += (l = std::exp(l - top));
          for (int c = 0; c < hd; ++c) {
            double sum = 0;
            for (int j = 0; j < seq; ++j)
              sum += logits[j] / total * vv[(n * seq + j) * width + h * hd + c];
            out[(n * seq + i) * width + h * hd + c] = sum;
          }
        }
    return out;
  };
  std::vector<io::HostTensor> out =
      execute(b.plan, p, {intTensor("input_ids", {batch, seq}, tokenIds)});
  ASSERT_EQ(out.size(), 3u);
  expectNear(floats(out[0]), reference(true, false), kTol, "padded");
  expectNear(floats(out[1]), reference(true, true), kTol, "causal");
  expectNear(floats(out[2]), reference(false, false), kTol, "open");
}

TEST(KernelWiringTest, SigmoidTopKExpertsPipeline) {
  constexpr int tokens = 4, d = 3, experts = 3, f = 2, k = 2;
  constexpr int slots = tokens * k;
  PlanBuilder b;
  int64_t x = b.param("x", {tokens, d});
  int64_t logits = b.param("logits", {tokens, experts});
  int64_t w1 = b.param("keys", {experts, d, f});
  int64_t w2 = b.param("values", {experts, f, d});
  int64_t assigned = b.arena({slots}, "I32");
  int64_t gates = b.arena({slots});
  int64_t offsets = b.arena({experts + 1}, "I32");
  int64_t xd = b.arena({slots, d});
  int64_t yd = b.arena({slots, d});
  int64_t y = b.arena({tokens, d});
  b.step("route_sigmoid_topk", {logits}, {assigned, gates, offsets},
         {{"k", k}});
  b.step("dispatch", {x, assigned}, {xd});
  b.step("experts", {xd, assigned, offsets, w1, -1, w2, -1}, {yd},
         {{"activation", "relu"}, {"layout", "grouped"}});
  b.step("combine", {yd, assigned, gates}, {y});
  b.output("y", y);
  std::vector<io::HostTensor> p = randomParams(b.plan, 80);
  std::vector<double> expected(tokens * d, 0.0);
  for (int t = 0; t < tokens; ++t) {
    const float *row = p[1].as<float>() + t * experts;
    std::vector<int64_t> order = rankExperts(row, experts);
    for (int choice = 0; choice < k; ++choice) {
      int64_t e = order[choice];
      double gate = 1.0 / (1.0 + std::exp(-double(row[e])));
      std::vector<double> ffn =
          expertFfn(p[0].as<float>() + t * d, e, p[2].as<float>(), nullptr,
                    p[3].as<float>(), nullptr, d, f, "relu");
      for (int c = 0; c < d; ++c)
        expected[t * d + c] += gate * ffn[c];
    }
  }
  std::vector<io::HostTensor> out = execute(b.plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "y");
}

/// The CPU experts read dispatched rows: a step with the dispatch fused in
/// (`gather`, the form only cuda plans have) is refused when it is
/// prepared, naming the step; `gather = false` is the ordinary form.
TEST(KernelWiringTest, RefusesGatheringExperts) {
  constexpr int tokens = 3, slots = 4, experts = 2, d = 3, f = 2;
  PlanBuilder b;
  int64_t x = b.param("x", {tokens, d});
  int64_t w1 = b.param("w1", {experts, d, f});
  int64_t w2 = b.param("w2", {experts, f, d});
  int64_t assigned = b.input("assigned", {slots});
  int64_t offsets = b.input("offsets", {experts + 1});
  int64_t yd = b.arena({slots, d}), dxd = b.arena({slots, d});
  int64_t dw1 = b.arena({experts, d, f}), db1 = b.arena({experts, f});
  int64_t dw2 = b.arena({experts, f, d}), db2 = b.arena({experts, d});
  json gather = {
      {"activation", "relu"}, {"layout", "grouped"}, {"gather", true}};
  b.step("experts", {x, assigned, offsets, w1, -1, w2, -1}, {yd}, gather);
  b.step("experts_grad", {x, assigned, offsets, w1, -1, w2, yd},
         {dxd, dw1, db1, dw2, db2}, gather);
  b.output("y", yd);
  Expected<Plan> plan = Plan::fromJson(b.plan.dump(), "moe.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  const char *kernels[] = {"experts", "experts_grad"};
  for (size_t index : {0, 1}) {
    int64_t scratch = 0;
    Expected<cpu::StepFunction> step = cpu::prepareStep(*plan, index, scratch);
    ASSERT_FALSE(step.ok());
    EXPECT_EQ(step.message(),
              "moe.mxa: steps[" + std::to_string(index) + "] (" +
                  kernels[index] +
                  "): attribute 'gather' (the dispatch fused into the "
                  "experts, as cuda plans have it) has no CPU "
                  "implementation");
  }
  // Without gathering, operand 0 is checked as the slot rows.
  b.plan["steps"][0]["attrs"]["gather"] = false;
  plan = Plan::fromJson(b.plan.dump(), "moe.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  int64_t scratch = 0;
  Expected<cpu::StepFunction> step = cpu::prepareStep(*plan, 0, scratch);
  ASSERT_FALSE(step.ok());
  EXPECT_EQ(step.message(), "moe.mxa: steps[0] (experts): operand 1 (tokens) "
                            "is [4] I32 but the kernel needs [3] I32");
}

/// Builds route -> dispatch -> experts (GELU, with biases) -> combine for a
/// capacity routing and returns the plan.
json capacityPipeline(const char *kernel, json attrs, int tokens, int experts,
                      int slots, int d, int f) {
  PlanBuilder b;
  int64_t x = b.param("x", {tokens, d});
  int64_t probs = b.param("probs", {tokens, experts});
  int64_t w1 = b.param("w1", {experts, d, f});
  int64_t b1 = b.param("b1", {experts, f});
  int64_t w2 = b.param("w2", {experts, f, d});
  int64_t b2 = b.param("b2", {experts, d});
  int64_t assigned = b.arena({slots}, "I32");
  int64_t gates = b.arena({slots});
  int64_t offsets = b.arena({experts + 1}, "I32");
  int64_t xd = b.arena({slots, d});
  int64_t yd = b.arena({slots, d});
  int64_t y = b.arena({tokens, d});
  b.step(kernel, {probs}, {assigned, gates, offsets}, attrs);
  b.step("dispatch", {x, assigned}, {xd});
  b.step("experts", {xd, assigned, offsets, w1, b1, w2, b2}, {yd},
         {{"activation", "gelu"}, {"layout", "capacity"}});
  b.step("combine", {yd, assigned, gates}, {y});
  b.output("y", y);
  return b.plan;
}

/// out[t] += gate * FFN_e(x_t) for one kept assignment of capacityPipeline.
void addAssignment(const std::vector<io::HostTensor> &p, int64_t t, int64_t e,
                   int d, int f, std::vector<double> &out) {
  double gate = p[1].as<float>()[t * p[1].shape[1] + e];
  std::vector<double> ffn =
      expertFfn(p[0].as<float>() + t * d, e, p[2].as<float>(), p[3].as<float>(),
                p[4].as<float>(), p[5].as<float>(), d, f, "gelu");
  for (int c = 0; c < d; ++c)
    out[t * d + c] += gate * ffn[c];
}

TEST(KernelWiringTest, ExpertsChooseExpertsPipeline) {
  constexpr int groups = 2, perGroup = 3, experts = 2, capacity = 2, d = 3,
                f = 4;
  constexpr int tokens = groups * perGroup;
  json plan =
      capacityPipeline("route_experts_choose",
                       {{"groups", groups},
                        {"tokens_per_group", perGroup},
                        {"capacity", capacity}},
                       tokens, experts, experts * groups * capacity, d, f);
  std::vector<io::HostTensor> p = randomParams(plan, 90, 0.0f, 1.0f);
  std::vector<double> expected(tokens * d, 0.0);
  // Expert e of group g takes the group's `capacity` most probable tokens.
  for (int g = 0; g < groups; ++g)
    for (int e = 0; e < experts; ++e) {
      std::vector<int64_t> order(perGroup);
      std::iota(order.begin(), order.end(), g * perGroup);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) {
        return p[1].as<float>()[a * experts + e] >
               p[1].as<float>()[c * experts + e];
      });
      for (int slot = 0; slot < capacity; ++slot)
        addAssignment(p, order[slot], e, d, f, expected);
    }
  std::vector<io::HostTensor> out = execute(plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "y");
}

TEST(KernelWiringTest, TokensChooseExpertsPipeline) {
  constexpr int tokens = 4, experts = 3, k = 2, capacity = 2, d = 3, f = 2;
  json plan = capacityPipeline("route_tokens_choose",
                               {{"groups", 1},
                                {"tokens_per_group", tokens},
                                {"capacity", capacity},
                                {"k", k},
                                {"batch_prioritized", false}},
                               tokens, experts, experts * capacity, d, f);
  std::vector<io::HostTensor> p = randomParams(plan, 100, 0.0f, 1.0f);
  std::vector<double> expected(tokens * d, 0.0);
  // All first choices in token order, then all second choices; an expert
  // whose buffer is full drops the assignment.
  std::vector<int> fill(experts, 0);
  for (int choice = 0; choice < k; ++choice)
    for (int t = 0; t < tokens; ++t) {
      int64_t e = rankExperts(p[1].as<float>() + t * experts, experts)[choice];
      if (fill[e] < capacity) {
        ++fill[e];
        addAssignment(p, t, e, d, f, expected);
      }
    }
  std::vector<io::HostTensor> out = execute(plan, p, {});
  ASSERT_EQ(out.size(), 1u);
  expectNear(floats(out[0]), expected, kTol, "y");
}

} // namespace
