//===- InitTest.cpp - Philox and the parameter initialisers ---------------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/exec/Init.h"

#include <omp.h>

#include <cmath>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;

namespace {

/// Standard deviation of a standard normal truncated at +-2.
constexpr double kTruncatedStd = 0.87962566103423978;

struct Moments {
  double mean = 0, std = 0;
};

Moments moments(const std::vector<float> &values) {
  Moments m;
  for (float v : values)
    m.mean += v;
  m.mean /= values.size();
  for (float v : values)
    m.std += (v - m.mean) * (v - m.mean);
  m.std = std::sqrt(m.std / values.size());
  return m;
}

std::vector<float> draw(InitKind kind, double stddev,
                        const std::vector<int64_t> &shape, uint64_t seed = 0,
                        uint64_t index = 0) {
  std::vector<float> values(numElements(shape));
  initTensor({kind, stddev}, seed, index, shape, values.data());
  return values;
}

/// Checks a sample of n values against a distribution with standard
/// deviation `stddev`: mean and standard deviation within five standard
/// errors (the standard deviation's error assumes a normal shape, which
/// over-estimates it for the truncated normal).
void expectMoments(const std::vector<float> &values, double stddev) {
  double n = values.size();
  Moments m = moments(values);
  EXPECT_NEAR(m.mean, 0.0, 5 * stddev / std::sqrt(n));
  EXPECT_NEAR(m.std, stddev, 5 * stddev / std::sqrt(2 * n));
}

// Known-answer vectors of the Random123 distribution (kat_vectors,
// philox4x32_10).
TEST(PhiloxTest, MatchesKnownAnswers) {
  EXPECT_EQ(philox4x32({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                       {0xffffffff, 0xffffffff}),
            (PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                       {0xa4093822, 0x299f31d0}),
            (PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(InitTest, NormalHasTheStatedMomentsAndShape) {
  std::vector<float> values = draw(InitKind::Normal, 0.02, {400, 500}, 7, 3);
  expectMoments(values, 0.02);
  // The share within one standard deviation identifies the normal shape.
  double inside = 0;
  for (float v : values)
    inside += std::fabs(v) <= 0.02;
  double p = 0.682689492137, n = values.size();
  EXPECT_NEAR(inside / n, p, 5 * std::sqrt(p * (1 - p) / n));
}

TEST(InitTest, TruncatedNormalStaysWithinTwoUntruncatedDeviations) {
  double stddev = 0.5, bound = 2 * stddev / kTruncatedStd;
  std::vector<float> values =
      draw(InitKind::TruncatedNormal, stddev, {300, 500}, 1, 2);
  expectMoments(values, stddev);
  float largest = 0;
  for (float v : values)
    largest = std::max(largest, std::fabs(v));
  EXPECT_LE(largest, bound * (1 + 1e-6));
  // The tails reach the bound: the cut is at 2 sigma, not earlier.
  EXPECT_GT(largest, 0.99 * bound);
}

TEST(InitTest, ZerosAndOnes) {
  for (float v : draw(InitKind::Zeros, 0.0, {3, 5}))
    EXPECT_EQ(v, 0.0f);
  for (float v : draw(InitKind::Ones, 0.0, {7}))
    EXPECT_EQ(v, 1.0f);
}

TEST(InitTest, RowRenormEqualisesRowNormsAndKeepsTheStd) {
  const std::vector<int64_t> shape = {64, 256};
  std::vector<float> renormed =
      draw(InitKind::NormalRowRenorm, 0.1, shape, 5, 9);
  std::vector<float> drawn = draw(InitKind::Normal, 0.1, shape, 5, 9);
  std::vector<double> norms;
  for (int r = 0; r < 64; ++r) {
    double squares = 0;
    for (int c = 0; c < 256; ++c)
      squares += double(renormed[r * 256 + c]) * renormed[r * 256 + c];
    norms.push_back(std::sqrt(squares));
  }
  for (double norm : norms)
    EXPECT_NEAR(norm, norms[0], 1e-5 * norms[0]);
  // The same normal draw, rescaled: the tensor's std is unchanged.
  EXPECT_NEAR(moments(renormed).std, moments(drawn).std,
              1e-5 * moments(drawn).std);
  expectMoments(renormed, 0.1);
}

TEST(InitTest, DependsOnlyOnSeedIndexAndPosition) {
  std::vector<float> a = draw(InitKind::Normal, 1.0, {1001}, 42, 3);
  EXPECT_EQ(a, draw(InitKind::Normal, 1.0, {1001}, 42, 3));
  EXPECT_NE(a, draw(InitKind::Normal, 1.0, {1001}, 43, 3));
  EXPECT_NE(a, draw(InitKind::Normal, 1.0, {1001}, 42, 4));
  // A longer tensor of the same stream starts with the same values.
  std::vector<float> longer = draw(InitKind::Normal, 1.0, {2000}, 42, 3);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), longer.begin()));
  std::vector<float> t = draw(InitKind::TruncatedNormal, 1.0, {999}, 42, 3);
  std::vector<float> tLonger =
      draw(InitKind::TruncatedNormal, 1.0, {3000}, 42, 3);
  EXPECT_TRUE(std::equal(t.begin(), t.end(), tLonger.begin()));
}

TEST(InitTest, ThreadCountDoesNotChangeTheValues) {
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> normal1 = draw(InitKind::Normal, 1.0, {4097}, 3, 1);
  std::vector<float> trunc1 = draw(InitKind::TruncatedNormal, 1.0, {4097}, 3);
  std::vector<float> renorm1 =
      draw(InitKind::NormalRowRenorm, 1.0, {33, 65}, 3);
  omp_set_num_threads(3);
  EXPECT_EQ(normal1, draw(InitKind::Normal, 1.0, {4097}, 3, 1));
  EXPECT_EQ(trunc1, draw(InitKind::TruncatedNormal, 1.0, {4097}, 3));
  EXPECT_EQ(renorm1, draw(InitKind::NormalRowRenorm, 1.0, {33, 65}, 3));
  omp_set_num_threads(saved);
}

TEST(InitTest, ParametersAreIndependentOfDrawingOrder) {
  PlanBuilder b;
  b.param("a", {3, 4}, {{"kind", "normal"}, {"stddev", 0.02}});
  b.param("b", {5}, {{"kind", "ones"}});
  b.param("c", {4, 4}, {{"kind", "truncated_normal"}, {"stddev", 0.5}});
  b.param("d", {2, 8}, {{"kind", "normal_row_renorm"}, {"stddev", 0.25}});
  Expected<Plan> plan = Plan::fromJson(b.plan.dump(), "init.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  std::vector<io::HostTensor> all = initParameters(*plan, 11);
  ASSERT_EQ(all.size(), 4u);
  for (size_t i = 4; i-- > 0;) {
    io::HostTensor alone = initParameter(*plan, i, 11);
    EXPECT_EQ(alone.name, plan->params[i].name);
    EXPECT_EQ(alone.dtype, io::DType::F32);
    EXPECT_EQ(alone.shape, plan->params[i].shape);
    EXPECT_EQ(alone.data, all[i].data) << alone.name;
  }
  // Parameter c is the stream of index 2 with its own spec.
  EXPECT_EQ(floats(all[2]),
            draw(InitKind::TruncatedNormal, 0.5, {4, 4}, 11, 2));
  EXPECT_NE(initParameters(*plan, 12)[0].data, all[0].data);
}

TEST(InitTest, ShardedParametersAreDrawnWhole) {
  PlanBuilder one;
  one.param("e", {4, 3}, {{"kind", "normal_row_renorm"}, {"stddev", 0.5}});
  one.param("b", {5}, {{"kind", "normal"}, {"stddev", 0.1}});
  auto mesh = one.plan;
  mesh["mesh"] = {{"dp", 1}, {"ep", 2}, {"world", 2}};
  mesh["batch"] = 2;
  mesh["params"][0]["shape"] = {2, 3};
  mesh["values"][0]["shape"] = {2, 3};
  mesh["params"][0]["shard"] = {{"axis", 0}, {"mesh_axis", "ep"}};
  mesh["params"][0]["global_shape"] = {4, 3};
  Expected<Plan> onePlan = Plan::fromJson(one.plan.dump(), "one.mxa");
  Expected<Plan> meshPlan = Plan::fromJson(mesh.dump(), "ep2.mxa");
  ASSERT_TRUE(onePlan.ok()) << onePlan.message();
  ASSERT_TRUE(meshPlan.ok()) << meshPlan.message();
  std::vector<io::HostTensor> expected = initParameters(*onePlan, 7);
  std::vector<io::HostTensor> drawn = initParameters(*meshPlan, 7);
  ASSERT_EQ(drawn.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(drawn[i].shape, expected[i].shape) << drawn[i].name;
    EXPECT_EQ(drawn[i].data, expected[i].data) << drawn[i].name;
  }
}

} // namespace
