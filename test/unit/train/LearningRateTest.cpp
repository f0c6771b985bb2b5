//===- LearningRateTest.cpp - warm-up and linear-decay schedule -----------===//
//
// Expected values are hand-computed from the schedule formula; they are
// binary fractions or short decimals, so they are compared to within 4 ulps
// (EXPECT_DOUBLE_EQ).
//
//===----------------------------------------------------------------------===//

#include "runtime/train/LearningRate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace mixer::train {
namespace {

std::vector<double> ratesAt(const LearningRateSchedule &schedule,
                            const std::vector<int64_t> &steps) {
  std::vector<double> rates;
  for (int64_t step : steps)
    rates.push_back(learningRate(schedule, step));
  return rates;
}

void expectRates(const LearningRateSchedule &schedule,
                 const std::vector<int64_t> &steps,
                 const std::vector<double> &expected) {
  std::vector<double> rates = ratesAt(schedule, steps);
  ASSERT_EQ(rates.size(), expected.size());
  for (size_t i = 0; i < rates.size(); ++i)
    EXPECT_DOUBLE_EQ(rates[i], expected[i]) << "step " << steps[i];
}

TEST(LearningRateTest, SpecGolden) {
  // Spec 14.1: base 1, warm-up 2, total 6 at steps 0..5.
  expectRates({1.0, 2, 6}, {0, 1, 2, 3, 4, 5}, {0, 0.5, 1, 0.75, 0.5, 0.25});
}

TEST(LearningRateTest, ScalesWithBase) {
  expectRates({3e-4, 2, 6}, {1, 2, 5}, {1.5e-4, 3e-4, 0.75e-4});
}

TEST(LearningRateTest, PreTrainingRecipe) {
  // lr 1e-4, 10,000 warm-up steps of 1,000,000: half-way through the
  // warm-up, its end, and half and three quarters of the way through the
  // 990,000 decay steps.
  expectRates({1e-4, 10000, 1000000}, {5000, 10000, 505000, 752500},
              {0.5e-4, 1e-4, 0.5e-4, 0.25e-4});
}

TEST(LearningRateTest, NoWarmup) {
  // Warm-up 0: the schedule starts at base and decays over all 4 steps.
  expectRates({2.0, 0, 4}, {0, 1, 2, 3}, {2, 1.5, 1, 0.5});
}

TEST(LearningRateTest, DecayRestartsPastTotal) {
  // The decay factor is 1 - (progress mod 1): at step = total the progress
  // is 1, whose fractional part is 0, so the rate jumps back to base and the
  // decay repeats with period total - warmup = 4.
  expectRates({1.0, 2, 6}, {6, 7, 9, 10, 13}, {1, 0.75, 0.25, 1, 0.25});
  expectRates({2.0, 0, 4}, {4, 5, 8}, {2, 1.5, 2});
}

TEST(LearningRateTest, HighestRateOfARun) {
  // Against the largest rate of every step of the run, for runs that end
  // before, at and past the end of a 4-step warm-up, and for resumed runs
  // within one decay and across a restart.
  LearningRateSchedule schedule{2.0, 4, 10};
  for (auto [first, last] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 1},
                                                {0, 3},
                                                {0, 4},
                                                {0, 5},
                                                {2, 4},
                                                {3, 12},
                                                {6, 9},
                                                {6, 10},
                                                {6, 11},
                                                {10, 17},
                                                {11, 20}}) {
    double highest = 0;
    for (int64_t step = first; step < last; ++step)
      highest = std::max(highest, learningRate(schedule, step));
    EXPECT_DOUBLE_EQ(highestLearningRate(schedule, first, last), highest)
        << "steps [" << first << ", " << last << ")";
  }
  EXPECT_DOUBLE_EQ(highestLearningRate(schedule, 0, 3), 1.0);
  EXPECT_EQ(highestLearningRate(schedule, 5, 5), 0.0);
  EXPECT_EQ(highestLearningRate({2.0, 0, 4}, 0, 1), 2.0);
}

TEST(LearningRateTest, ValidatesSchedule) {
  EXPECT_TRUE(validateSchedule({1.0, 2, 6}).ok());
  EXPECT_TRUE(validateSchedule({1.0, 0, 1}).ok());

  Status negative = validateSchedule({1.0, -1, 6});
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.message(),
            "learning-rate schedule: warmup_steps -1 is negative");

  Status noDecay = validateSchedule({1.0, 6, 6});
  ASSERT_FALSE(noDecay.ok());
  EXPECT_EQ(noDecay.message(), "learning-rate schedule: total_steps 6 leaves "
                               "no decay step after warmup_steps 6");
}

} // namespace
} // namespace mixer::train
