//===- OptimizerTest.cpp - AdamW, clipping and accumulation ---------------===//
//
// Expected values are worked out by hand from the optax.adamw formulas (the
// arithmetic is written next to each); the optimizer computes in f32, so
// results are compared to within 1e-6 relative (about 8 f32 ulps).
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Optimizer.h"

#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace mixer::cpu {
namespace {

using cpu::test::expectBitwiseEqual;
using cpu::test::randomFloats;
using cpu::test::ScopedThreads;

void expectNearF32(float actual, double expected, const char *what) {
  EXPECT_NEAR(actual, expected, 1e-6 * std::fabs(expected) + 1e-12) << what;
}

TEST(OptimizerTest, FirstStepMatchesHandComputedUpdates) {
  // lr 0.1, b1 0.9, b2 0.999, eps 1e-6, weight decay 0.01, step t = 1, so
  // 1 - b1^t = 0.1 and 1 - b2^t = 0.001.
  std::vector<float> p = {1.0f, -2.0f, 0.5f, 3.0f};
  std::vector<float> g = {0.5f, -4.0f, 0.0f, 1e-3f};
  std::vector<float> m(4, 0.0f), v(4, 0.0f);
  adamwStep(p.data(), g.data(), m.data(), v.data(), 4, 0.1, 1, {});

  // p 1, g 0.5: m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025,
  // m^ = 0.05 / 0.1 = 0.5, v^ = 0.00025 / 0.001 = 0.25, sqrt(v^) = 0.5,
  // u = 0.5 / (0.5 + 1e-6) + 0.01 * 1 = 1.009998000004,
  // p' = 1 - 0.1 * u = 0.8990001999996.
  expectNearF32(m[0], 0.05, "m[0]");
  expectNearF32(v[0], 0.00025, "v[0]");
  expectNearF32(p[0], 0.8990001999996, "p[0]");
  // p -2, g -4: m = -0.4, v = 0.016, m^ = -4, v^ = 16, sqrt(v^) = 4,
  // u = -4 / (4 + 1e-6) + 0.01 * -2 = -1.01999975000006,
  // p' = -2 + 0.101999975000006 = -1.898000024999994.
  expectNearF32(m[1], -0.4, "m[1]");
  expectNearF32(v[1], 0.016, "v[1]");
  expectNearF32(p[1], -1.898000024999994, "p[1]");
  // p 0.5, g 0: the moments stay 0 and u = 0 / (0 + 1e-6) + 0.01 * 0.5 =
  // 0.005 (eps outside the root keeps it finite), p' = 0.5 - 0.0005.
  EXPECT_EQ(m[2], 0.0f);
  EXPECT_EQ(v[2], 0.0f);
  expectNearF32(p[2], 0.4995, "p[2]");
  // p 3, g 1e-3: m = 1e-4, v = 1e-9, m^ = 1e-3, v^ = 1e-6, sqrt(v^) = 1e-3,
  // u = 1e-3 / (1e-3 + 1e-6) + 0.03 = 1/1.001 + 0.03 = 1.029000999000999,
  // p' = 3 - 0.1029000999000999 = 2.8970999000999.
  expectNearF32(m[3], 1e-4, "m[3]");
  expectNearF32(v[3], 1e-9, "v[3]");
  expectNearF32(p[3], 2.8970999000999, "p[3]");
}

TEST(OptimizerTest, SecondStepUsesMomentsAndBiasCorrection) {
  // Step 1 as above (p 1, g 0.5, lr 0.1): m 0.05, v 0.00025,
  // p 0.8990001999996. Step 2 with g -0.25 and lr 0.05:
  //   m = 0.9 * 0.05 + 0.1 * -0.25 = 0.02
  //   v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225
  //   m^ = 0.02 / (1 - 0.81) = 0.105263157894737
  //   v^ = 0.00031225 / (1 - 0.998001) = 0.156203101550778,
  //   sqrt(v^) = 0.395225380701667
  //   u = 0.105263157894737 / (0.395225380701667 + 1e-6)
  //       + 0.01 * 0.8990001999996 = 0.275326367775624
  //   p = 0.8990001999996 - 0.05 * u = 0.885233881610819
  float p = 1.0f, m = 0.0f, v = 0.0f;
  float g1 = 0.5f, g2 = -0.25f;
  adamwStep(&p, &g1, &m, &v, 1, 0.1, 1, {});
  adamwStep(&p, &g2, &m, &v, 1, 0.05, 2, {});
  expectNearF32(m, 0.02, "m");
  expectNearF32(v, 0.00031225, "v");
  expectNearF32(p, 0.885233881610819, "p");
}

TEST(OptimizerTest, ZeroGradientOnlyDecaysTheWeights) {
  // With g = 0 the moments stay 0 and u = wd * p: each step multiplies p by
  // 1 - lr * wd = 1 - 0.1 * 0.01 = 0.999; three steps: 2 * 0.999^3 =
  // 1.994005998.
  std::vector<float> p = {2.0f, -1.0f}, g = {0.0f, 0.0f};
  std::vector<float> m(2, 0.0f), v(2, 0.0f);
  for (int64_t step = 1; step <= 3; ++step)
    adamwStep(p.data(), g.data(), m.data(), v.data(), 2, 0.1, step, {});
  expectNearF32(p[0], 1.994005998, "p[0]");
  expectNearF32(p[1], -0.997002999, "p[1]");
  EXPECT_EQ(m, (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(v, (std::vector<float>{0.0f, 0.0f}));
}

TEST(OptimizerTest, HonoursEveryHyperParameter) {
  // b1 0.5, b2 0.75, eps 0.1, no weight decay, lr 1, g 1 twice.
  // Step 1: m = 0.5, v = 0.25, m^ = 0.5 / 0.5 = 1, v^ = 0.25 / 0.25 = 1,
  //   u = 1 / (1 + 0.1) = 0.909090..., p = 1 - 0.909090... = 0.090909...
  // Step 2: m = 0.25 + 0.5 = 0.75, v = 0.1875 + 0.25 = 0.4375,
  //   m^ = 0.75 / 0.75 = 1, v^ = 0.4375 / 0.4375 = 1, u = 1 / 1.1,
  //   p = 0.090909... - 0.909090... = -0.818181...
  // (eps inside the root would give u = 1 / sqrt(1.1) = 0.953 instead.)
  AdamWConfig config{0.5, 0.75, 0.1, 0.0};
  float p = 1.0f, g = 1.0f, m = 0.0f, v = 0.0f;
  adamwStep(&p, &g, &m, &v, 1, 1.0, 1, config);
  expectNearF32(p, 1.0 / 11.0, "p after step 1");
  adamwStep(&p, &g, &m, &v, 1, 1.0, 2, config);
  expectNearF32(m, 0.75, "m");
  expectNearF32(v, 0.4375, "v");
  expectNearF32(p, -9.0 / 11.0, "p after step 2");
}

TEST(OptimizerTest, ValidatesTheConfiguration) {
  EXPECT_TRUE(validateAdamW({}).ok());
  EXPECT_TRUE(validateAdamW({0.0, 0.0, 1e-8, 0.0}).ok());
  struct Case {
    AdamWConfig config;
    const char *message;
  };
  for (const Case &c : std::vector<Case>{
           {{1.0, 0.999, 1e-6, 0.01}, "adamw: b1 1 is not in [0, 1)"},
           {{0.9, -0.5, 1e-6, 0.01}, "adamw: b2 -0.5 is not in [0, 1)"},
           {{0.9, NAN, 1e-6, 0.01}, "adamw: b2 nan is not in [0, 1)"},
           {{0.9, 0.999, 0.0, 0.01}, "adamw: eps 0 is not positive and finite"},
           {{0.9, 0.999, 1e-6, -0.01},
            "adamw: weight_decay -0.01 is not non-negative and finite"}}) {
    Status s = validateAdamW(c.config);
    ASSERT_FALSE(s.ok()) << c.message;
    EXPECT_EQ(s.message(), c.message);
  }
}

TEST(OptimizerTest, AdamWIsThreadCountIndependent) {
  const int64_t n = (1 << 16) + 13;
  std::vector<float> grad = randomFloats(n, 1);
  auto run = [&](int threads) {
    ScopedThreads scoped(threads);
    std::vector<float> p = randomFloats(n, 2), m(n, 0.0f), v(n, 0.0f);
    for (int64_t step = 1; step <= 3; ++step)
      adamwStep(p.data(), grad.data(), m.data(), v.data(), n, 1e-3, step, {});
    return p;
  };
  expectBitwiseEqual(run(1), run(2), "parameters with 1 and 2 threads");
  expectBitwiseEqual(run(1), run(3), "parameters with 1 and 3 threads");
}

TEST(OptimizerTest, GlobalNormOfSeveralTensors) {
  // sqrt(1 + 4 + 4) = 3; an empty tensor adds nothing.
  std::vector<float> a = {1.0f, -2.0f}, b = {2.0f};
  EXPECT_DOUBLE_EQ(globalNorm({{a.data(), 2}, {nullptr, 0}, {b.data(), 1}}),
                   3.0);
  EXPECT_EQ(globalNorm({}), 0.0);
  // 100,000 values of 0.5 span several summation blocks: sqrt(25,000).
  std::vector<float> halves(100000, 0.5f);
  EXPECT_DOUBLE_EQ(globalNorm({{halves.data(), 100000}}), 158.11388300841898);
}

TEST(OptimizerTest, GlobalNormIsThreadCountIndependent) {
  std::vector<float> a = randomFloats(70001, 3), b = randomFloats(40000, 4);
  auto norm = [&](int threads) {
    ScopedThreads scoped(threads);
    return globalNorm({{a.data(), 70001}, {b.data(), 40000}});
  };
  double one = norm(1);
  EXPECT_EQ(one, norm(2));
  EXPECT_EQ(one, norm(3));
  // Against a plain double sum.
  double squares = 0.0;
  for (float x : a)
    squares += static_cast<double>(x) * x;
  for (float x : b)
    squares += static_cast<double>(x) * x;
  EXPECT_NEAR(one, std::sqrt(squares), 1e-12 * std::sqrt(squares));
}

TEST(OptimizerTest, ClipsByGlobalNorm) {
  // The norm of [3, 0] and [4] is sqrt(9 + 16) = 5.
  std::vector<float> a = {3.0f, 0.0f}, b = {4.0f};
  std::vector<Values> grads = {{a.data(), 2}, {b.data(), 1}};
  // Below the norm: scaled by 1 / 5 to [0.6, 0] and [0.8].
  EXPECT_DOUBLE_EQ(clipByGlobalNorm(grads, 1.0), 5.0);
  EXPECT_FLOAT_EQ(a[0], 0.6f);
  EXPECT_EQ(a[1], 0.0f);
  EXPECT_FLOAT_EQ(b[0], 0.8f);
  EXPECT_NEAR(globalNorm({{a.data(), 2}, {b.data(), 1}}), 1.0, 1e-7);

  // At or above the norm: unchanged.
  std::vector<float> c = {3.0f, 0.0f}, d = {4.0f};
  std::vector<Values> unclipped = {{c.data(), 2}, {d.data(), 1}};
  EXPECT_DOUBLE_EQ(clipByGlobalNorm(unclipped, 10.0), 5.0);
  EXPECT_DOUBLE_EQ(clipByGlobalNorm(unclipped, 5.0), 5.0);
  EXPECT_EQ(c, (std::vector<float>{3.0f, 0.0f}));
  EXPECT_EQ(d, (std::vector<float>{4.0f}));
}

TEST(OptimizerTest, ScalesGradients) {
  std::vector<float> a = {1.0f, -2.0f}, b = {6.0f};
  scaleGradients({{a.data(), 2}, {b.data(), 1}}, 0.5);
  EXPECT_EQ(a, (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(b, (std::vector<float>{3.0f}));
}

TEST(OptimizerTest, AccumulatesAndAveragesMicroSteps) {
  // Three micro-steps with gradients 1, 2, 4 (and -1, 0.5, 0.25): sums 7
  // and -0.25, means 7 / 3 and -0.25 / 3.
  std::vector<float> sum = {0.0f, 0.0f};
  for (std::vector<float> micro :
       {std::vector<float>{1.0f, -1.0f}, std::vector<float>{2.0f, 0.5f},
        std::vector<float>{4.0f, 0.25f}})
    accumulate(sum.data(), micro.data(), 2);
  EXPECT_EQ(sum, (std::vector<float>{7.0f, -0.25f}));
  averageGradients({{sum.data(), 2}}, 3);
  EXPECT_FLOAT_EQ(sum[0], 7.0f / 3.0f);
  EXPECT_FLOAT_EQ(sum[1], -0.25f / 3.0f);
}

TEST(OptimizerTest, AccumulationIsThreadCountIndependent) {
  const int64_t n = (1 << 16) + 5;
  std::vector<float> src = randomFloats(n, 5);
  auto run = [&](int threads) {
    ScopedThreads scoped(threads);
    std::vector<float> dst = randomFloats(n, 6);
    accumulate(dst.data(), src.data(), n);
    averageGradients({{dst.data(), n}}, 2);
    return dst;
  };
  std::vector<float> one = run(1);
  expectBitwiseEqual(one, run(2), "accumulated gradients");
  // Against a plain loop: (dst + src) / 2 in f32.
  std::vector<float> dst = randomFloats(n, 6);
  for (int64_t i = 0; i < n; ++i)
    dst[i] = (dst[i] + src[i]) / 2.0f;
  expectBitwiseEqual(one, dst, "accumulated gradients against a plain loop");
}

TEST(OptimizerTest, AccumulateGradientAveragesOnTheLastMicroStep) {
  // Three micro-steps with gradients (1, -1), (2, 0.5), (4, 0.25): running
  // sums (1, -1), (3, -0.5), (7, -0.25); each average is the sum / 3; the
  // last micro-step leaves the accumulator at zero.
  std::vector<float> accum = {0.0f, 0.0f}, average(2);
  std::vector<float> g0 = {1.0f, -1.0f}, g1 = {2.0f, 0.5f}, g2 = {4.0f, 0.25f};
  accumulateGradient(accum.data(), g0.data(), average.data(), 2, 0, 3);
  EXPECT_EQ(accum, (std::vector<float>{1.0f, -1.0f}));
  EXPECT_EQ(average, (std::vector<float>{1.0f / 3.0f, -1.0f / 3.0f}));
  accumulateGradient(accum.data(), g1.data(), average.data(), 2, 1, 3);
  EXPECT_EQ(accum, (std::vector<float>{3.0f, -0.5f}));
  EXPECT_EQ(average, (std::vector<float>{1.0f, -0.5f / 3.0f}));
  accumulateGradient(accum.data(), g2.data(), average.data(), 2, 2, 3);
  EXPECT_EQ(accum, (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(average, (std::vector<float>{7.0f / 3.0f, -0.25f / 3.0f}));
}

TEST(OptimizerTest, AccumulateGradientIsThreadCountIndependent) {
  const int64_t n = (1 << 16) + 5;
  std::vector<float> grad = randomFloats(n, 7);
  auto run = [&](int threads, int64_t microStep) {
    ScopedThreads scoped(threads);
    std::vector<float> accum = randomFloats(n, 8), average(n);
    accumulateGradient(accum.data(), grad.data(), average.data(), n, microStep,
                       4);
    accum.insert(accum.end(), average.begin(), average.end());
    return accum;
  };
  for (int64_t microStep : {0, 3})
    expectBitwiseEqual(run(1, microStep), run(2, microStep),
                       "accumulator and average");
}

} // namespace
} // namespace mixer::cpu
