//===- GradientTestUtil.h - Gradient test helpers ---------------*- C++ -*-===//
//
// Finite-difference checks of the reference gradients against the forward
// reference kernels, and small helpers shared by the GradientTest* files.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_CPU_GRADIENTTESTUTIL_H
#define MIXER_TEST_UNIT_CPU_GRADIENTTESTUTIL_H

#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace mixer::cpu::test {

/// Step of the central differences, relative to inputs of magnitude ~1.
constexpr double kFiniteDifferenceStep = 1e-3;
/// Tolerance of a finite-difference check, relative to sum |g_i * dx_i|.
/// The forward references round their outputs to float, which puts about
/// 1e-7 / step of noise on a difference quotient; the truncation error is
/// O(step^2).
constexpr double kFiniteDifferenceTol = 1e-3;

/// <weights, values> in double: the scalar objective whose gradient with
/// respect to `values` is `weights`.
inline double dot(const std::vector<float> &weights,
                  const std::vector<float> &values) {
  double sum = 0.0;
  for (size_t i = 0; i < weights.size(); ++i)
    sum += static_cast<double>(weights[i]) * values[i];
  return sum;
}

/// Checks `grad` = dF/dx by central differences along two random directions:
/// with x+ and x- the float-rounded points x +- step * direction, F(x+) -
/// F(x-) must match sum_i grad_i (x+_i - x-_i) (the rounded points are used
/// exactly, so input rounding adds no error). `objective()` evaluates F at
/// the current contents of x; x is restored afterwards.
template <typename Objective>
void expectGradientMatchesDifferences(std::vector<float> &x,
                                      const std::vector<float> &grad,
                                      Objective &&objective,
                                      const std::string &what) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  const std::vector<float> saved = x;
  for (uint32_t seed : {101u, 202u}) {
    std::vector<float> direction = randomFloats(x.size(), seed);
    std::vector<float> plus(x.size()), minus(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      plus[i] =
          static_cast<float>(saved[i] + kFiniteDifferenceStep * direction[i]);
      minus[i] =
          static_cast<float>(saved[i] - kFiniteDifferenceStep * direction[i]);
    }
    x = plus;
    double high = objective();
    x = minus;
    double low = objective();
    x = saved;
    double predicted = 0.0, scale = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      double step = static_cast<double>(plus[i]) - minus[i];
      predicted += grad[i] * step;
      scale += std::fabs(grad[i] * step);
    }
    EXPECT_NEAR(high - low, predicted, kFiniteDifferenceTol * scale)
        << what << " (direction seed " << seed << ")";
  }
}

/// n uniform values in [lo, hi) whose magnitude is at least `gap` (keeps
/// finite differences off the kink of ReLU).
inline std::vector<float> floatsAwayFromZero(int64_t n, uint32_t seed, float lo,
                                             float hi, float gap) {
  std::vector<float> values = randomFloats(n, seed, lo, hi);
  for (float &v : values)
    if (std::fabs(v) < gap)
      v = v < 0.0f ? -gap : gap;
  return values;
}

} // namespace mixer::cpu::test

#endif // MIXER_TEST_UNIT_CPU_GRADIENTTESTUTIL_H
