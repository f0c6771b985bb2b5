//===- ExecutorGpuTest.cpp - The CUDA executor against the CPU executor ---===//
//
// Runs one plan on both executors (as a cpu and as a cuda plan) and compares
// the outputs: LayerNorm, GELU and softmax to 1e-5 relative to the largest
// value, the dropout mask exactly (the same Philox draws). The noise key is a
// plan input, so a new step must re-capture the CUDA graph. Without a usable
// device the binary prints why and exits 77 (skipped).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Executor.h"

#include "test/unit/exec/PlanBuilder.h"

#include <cstdio>

using namespace mixer;
using namespace mixer::exec::test;

namespace {

/// x -> layer_norm -> gelu -> softmax -> dropout(seed, step) -> y.
PlanBuilder chainPlan() {
  PlanBuilder b;
  int64_t x = b.input("x", {6, 40}, false, "F32");
  int64_t seed = b.input("seed", {}), step = b.input("step", {});
  int64_t scale = b.param("scale", {40}), bias = b.param("bias", {40});
  int64_t h = b.arena({6, 40}), g = b.arena({6, 40}), p = b.arena({6, 40}),
          y = b.arena({6, 40});
  b.step("layer_norm", {x, -1, scale, bias}, {h}, {{"epsilon", 1e-6}});
  b.step("activation", {h}, {g}, {{"kind", "gelu"}});
  b.step("softmax", {g}, {p});
  b.step("random_scale", {p, seed, step}, {y},
         {{"kind", "dropout"}, {"rate", 0.5}, {"stream", 7}});
  b.output("y", y);
  return b;
}

std::vector<io::HostTensor> inputs(int64_t step) {
  return {randomTensor("x", {6, 40}, 1, -3.0f, 3.0f),
          intTensor("seed", {}, {42}), intTensor("step", {}, {step})};
}

std::vector<io::HostTensor> params() {
  return {randomTensor("scale", {40}, 2), randomTensor("bias", {40}, 3)};
}

std::vector<float> run(exec::PlanExecutor &executor, int64_t step) {
  Status status = executor.bindInputs(inputs(step), "inputs", false);
  EXPECT_TRUE(status.ok()) << status.message();
  status = executor.run();
  EXPECT_TRUE(status.ok()) << status.message();
  io::HostTensor y = executor.outputs().at(0);
  return std::vector<float>(y.as<float>(), y.as<float>() + y.numel());
}

void expectClose(const std::vector<float> &gpu, const std::vector<float> &cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  float largest = 0;
  for (float v : cpu)
    largest = std::max(largest, std::fabs(v));
  for (size_t i = 0; i < cpu.size(); ++i) {
    // Dropped elements are exactly zero on both.
    EXPECT_EQ(gpu[i] == 0.0f, cpu[i] == 0.0f) << "element " << i;
    EXPECT_NEAR(gpu[i], cpu[i], 1e-5f * largest) << "element " << i;
  }
}

class CudaExecutorTest : public ::testing::TestWithParam<bool> {};

TEST_P(CudaExecutorTest, MatchesTheCpuExecutorAcrossSteps) {
  PlanBuilder cpuPlan = chainPlan();
  Expected<exec::Plan> plan =
      exec::Plan::parse(cpuPlan.plan.dump(), "chain.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  Expected<exec::Executor> cpu = exec::Executor::create(*plan);
  ASSERT_TRUE(cpu.ok()) << cpu.message();
  ASSERT_TRUE(cpu->bindParams(params(), "params").ok());

  PlanBuilder cudaPlan = chainPlan();
  cudaPlan.plan["target"] = "cuda";
  plan = exec::Plan::parse(cudaPlan.plan.dump(), "chain.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  cuda::ExecutorOptions options;
  options.cudaGraph = GetParam();
  Expected<std::unique_ptr<cuda::Executor>> gpu =
      cuda::Executor::create(*plan, options);
  ASSERT_TRUE(gpu.ok()) << gpu.message();
  ASSERT_TRUE((*gpu)->bindParams(params(), "params", false).ok());

  std::vector<float> first = run(**gpu, 0);
  expectClose(first, run(*cpu, 0));
  // Replaying the same step gives the same numbers.
  EXPECT_EQ(run(**gpu, 0), first);
  // A new step draws a new mask: the graph's kernel arguments change.
  std::vector<float> second = run(**gpu, 1);
  expectClose(second, run(*cpu, 1));
  EXPECT_NE(second, first);
}

INSTANTIATE_TEST_SUITE_P(GraphOrNot, CudaExecutorTest, ::testing::Bool());

} // namespace

int main(int argc, char **argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (Status status = cuda::checkDevice(); !status) {
    std::printf("%s; skipping the CUDA executor tests\n",
                status.message().c_str());
    return 77;
  }
  return RUN_ALL_TESTS();
}
