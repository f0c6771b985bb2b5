//===- GradientCheck.h - Finite-difference checks of gradients --*- C++ -*-===//
//
// Central finite differences of a scalar loss, for checking the reference
// backward kernels against their forward references.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_CPU_GRADIENTCHECK_H
#define MIXER_TEST_UNIT_CPU_GRADIENTCHECK_H

#include <cstdint>
#include <vector>

namespace mixer::cpu::test {

/// sum_i weights[i] * values[i] in double: the loss whose gradient with
/// respect to `values` is `weights`.
inline double weightedSum(const std::vector<float> &values,
                          const std::vector<float> &weights) {
  double sum = 0.0;
  for (size_t i = 0; i < values.size(); ++i)
    sum += static_cast<double>(values[i]) * weights[i];
  return sum;
}

/// d loss / d param[i] for every i by central differences with step h; the
/// difference quotient uses the float steps actually taken. `param` is
/// restored.
template <typename Loss>
std::vector<float> finiteDifferences(std::vector<float> &param, float h,
                                     Loss &&loss) {
  std::vector<float> grad(param.size());
  for (size_t i = 0; i < param.size(); ++i) {
    float saved = param[i];
    float up = saved + h, down = saved - h;
    param[i] = up;
    double lossUp = loss();
    param[i] = down;
    double lossDown = loss();
    param[i] = saved;
    grad[i] = static_cast<float>((lossUp - lossDown) /
                                 (static_cast<double>(up) - down));
  }
  return grad;
}

} // namespace mixer::cpu::test

#endif // MIXER_TEST_UNIT_CPU_GRADIENTCHECK_H
