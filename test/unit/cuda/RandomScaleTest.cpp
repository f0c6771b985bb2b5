//===- RandomScaleTest.cpp - GPU dropout/jitter against the CPU draws -----===//

#include "runtime/cpu/RandomScale.h"
#include "CudaTestUtil.h"

#include <cmath>

namespace mixer::cuda::test {
namespace {

const CounterKey kKeys[] = {{0, 0, 1}, {-1, 7, 123456}, {42, 3, 0}};
const int64_t kSizes[] = {1, 3, 64, 1001, 70003};

TEST(CudaRandomScale, DropoutEqualsTheCpuBitForBit) {
  for (CounterKey key : kKeys)
    for (int64_t n : kSizes)
      for (double rate : {0.0, 0.1, 0.5}) {
        auto x = randomFloats(n, 1);
        std::vector<float> expected(n);
        cpu::randomScale(x.data(), expected.data(), n, true, rate,
                         cpu::CounterUniforms(key.seed, key.stream, key.step));
        DeviceArray<float> dX(x);
        ASSERT_OK(randomScale(dX.get(), dX.get(), n, true, rate, key, nullptr));
        expectBitwiseEqual(dX.read(), expected,
                           "dropout n=" + std::to_string(n) +
                               " rate=" + std::to_string(rate));

        // bf16: the same mask and division, then one rounding.
        auto xb = roundedToBf16(x);
        cpu::randomScale(xb.data(), expected.data(), n, true, rate,
                         cpu::CounterUniforms(key.seed, key.stream, key.step));
        DeviceArray<Bf16> bX(toBf16(xb)), bY(n);
        ASSERT_OK(randomScale(bX.get(), bY.get(), n, true, rate, key, nullptr));
        expectBitwiseEqual(fromBf16(bY.read()), roundedToBf16(expected),
                           "bf16 dropout");
      }
}

TEST(CudaRandomScale, JitterIsXTimesFusedScale) {
  // Written from the documented formula and the CPU uniforms, not from the
  // kernel: y = x * fma(2 rate, u, 1 - rate) in f32.
  for (CounterKey key : kKeys)
    for (int64_t n : kSizes) {
      double rate = 0.3;
      auto x = randomFloats(n, 2);
      cpu::CounterUniforms uniforms(key.seed, key.stream, key.step);
      float r = static_cast<float>(rate);
      std::vector<float> expected(n);
      for (int64_t i = 0; i < n; ++i)
        expected[i] = x[i] * std::fma(2.0f * r, uniforms.at(i), 1.0f - r);
      DeviceArray<float> dX(x), dY(n);
      ASSERT_OK(randomScale(dX.get(), dY.get(), n, false, rate, key, nullptr));
      expectBitwiseEqual(dY.read(), expected, "jitter n=" + std::to_string(n));
      // The CPU kernel agrees to within one rounding whether or not its
      // compiler fused the multiply-add.
      std::vector<float> cpuY(n);
      cpu::randomScale(x.data(), cpuY.data(), n, false, rate, uniforms);
      expectClose(cpuY, expected, 1e-6, "cpu jitter");
    }
}

} // namespace
} // namespace mixer::cuda::test
