//===- OptimizerTest.cpp - GPU AdamW and global norm against the CPU ------===//

#include "runtime/cpu/Optimizer.h"
#include "CudaTestUtil.h"

namespace mixer::cuda::test {
namespace {

TEST(CudaAdamW, EqualsTheCpuBitForBit) {
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(100003)})
    for (float scale : {1.0f, 0.37f}) {
      auto param = randomFloats(n, 1);
      std::vector<float> m(n, 0.0f), v(n, 0.0f);
      DeviceArray<float> dParam(param), dM(m), dV(v), dScale(1, scale);
      AdamWConfig config;
      for (int64_t step = 1; step <= 3; ++step) {
        auto grad =
            randomFloats(n, static_cast<uint32_t>(10 + step), -3.0f, 3.0f);
        double lr = 1e-3 * step;
        cpu::adamwStep(param.data(), grad.data(), m.data(), v.data(), n, lr,
                       step, config, scale);
        DeviceArray<float> dGrad(grad);
        ASSERT_OK(adamwStep(dParam.get(), dGrad.get(), dM.get(), dV.get(), n,
                            lr, step, config,
                            scale == 1.0f ? nullptr : dScale.get(), nullptr));
      }
      expectBitwiseEqual(dParam.read(), param, "parameters");
      expectBitwiseEqual(dM.read(), m, "first moments");
      expectBitwiseEqual(dV.read(), v, "second moments");
    }
}

TEST(CudaGlobalNorm, MatchesTheCpu) {
  std::vector<std::vector<float>> tensors = {
      randomFloats(5, 1),
      {},
      randomFloats(40000, 2, -3.0f, 3.0f),
      randomFloats(16384, 3)};
  std::vector<ConstValues> host;
  std::vector<std::unique_ptr<DeviceArray<float>>> device;
  std::vector<ConstValues> onDevice;
  for (const auto &t : tensors) {
    host.emplace_back(t.data(), static_cast<int64_t>(t.size()));
    device.push_back(std::make_unique<DeviceArray<float>>(t));
    onDevice.emplace_back(device.back()->get(), static_cast<int64_t>(t.size()));
  }
  double expected = cpu::globalNorm(host);
  DeviceArray<double> norm(1);
  ASSERT_OK(globalNorm(onDevice, norm.get(), nullptr));
  EXPECT_NEAR(norm.read()[0], expected, 1e-12 * expected);

  // Clipping: factor maxNorm / norm rounded to f32 when norm >= maxNorm.
  DeviceArray<float> scale(1);
  ASSERT_OK(clipScale(norm.get(), expected / 2, scale.get(), nullptr));
  EXPECT_FLOAT_EQ(scale.read()[0], 0.5f);
  ASSERT_OK(clipScale(norm.get(), expected * 2, scale.get(), nullptr));
  EXPECT_EQ(scale.read()[0], 1.0f);
}

TEST(CudaGlobalNorm, NoValuesIsZero) {
  DeviceArray<double> norm(1, 5.0);
  ASSERT_OK(globalNorm({}, norm.get(), nullptr));
  EXPECT_EQ(norm.read()[0], 0.0);
}

} // namespace
} // namespace mixer::cuda::test
