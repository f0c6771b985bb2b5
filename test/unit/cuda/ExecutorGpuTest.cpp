//===- ExecutorGpuTest.cpp - The CUDA executor against the CPU executor ---===//
//
// Runs one plan on both executors (as a cpu and as a cuda plan) and compares
// the outputs: LayerNorm, GELU and softmax to 1e-5 relative to the largest
// value, the dropout mask exactly (the same Philox draws). The noise key is a
// plan input, so a new step must re-capture the CUDA graph. Plans of the
// products and attention (dense, linear mixing, attention and their
// gradients), of MoE layers (routing, experts, gathers, scatters and their
// gradients) and of gradient accumulation (noise_counter,
// accumulate_gradient, adamw over micro-steps) and of the spectral and
// structured mixers by both algorithms with their gradients agree with the
// CPU executor to 1e-4. Without a usable device the binary
// prints why and exits 77 (skipped).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Executor.h"

#include "test/unit/exec/PlanBuilder.h"

#include <cmath>
#include <cstdio>
#include <memory>

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

/// The products and attention of a training step: dense with the GELU
/// epilogue, linear mixing, attention over padded tokens, and their
/// gradients (linear_mix_grad, dense_weight_grad, reduce_rows,
/// attention_grad).
PlanBuilder productsPlan() {
  PlanBuilder b;
  int64_t x = b.input("x", {2, 4, 8}, false, "F32"),
          ids = b.input("ids", {2, 4});
  int64_t w = b.param("w", {8, 8}), bias = b.param("bias", {8}),
          ws = b.param("ws", {4, 4}), wh = b.param("wh", {8, 8});
  auto act = [&] { return b.arena({2, 4, 8}); };
  int64_t h = act(), m = act(), a = act(), dh = act(), dq = act(), dk = act(),
          dv = act();
  int64_t dws = b.arena({4, 4}), dwh = b.arena({8, 8}), dw = b.arena({8, 8}),
          db = b.arena({8});
  json attention = {{"num_heads", 2},  {"head_dim", 4},       {"pad_id", 0},
                    {"causal", false}, {"dropout_rate", 0.0}, {"stream", 1}};
  b.step("dense", {x, w, bias}, {h},
         {{"activation", "gelu"}, {"transpose_w", false}});
  b.step("linear_mix", {h, ws, wh}, {m});
  b.step("attention", {m, m, m, ids, -1, -1}, {a}, attention);
  b.step("linear_mix_grad", {h, ws, wh, a}, {dh, dws, dwh});
  b.step("dense_weight_grad", {x, dh}, {dw}, {{"transpose_w", false}});
  b.step("reduce_rows", {dh}, {db});
  b.step("attention_grad", {m, m, m, ids, a, -1, -1}, {dq, dk, dv}, attention);
  for (auto [name, value] : {std::pair<const char *, int64_t>{"a", a},
                             {"dh", dh},
                             {"dws", dws},
                             {"dwh", dwh},
                             {"dw", dw},
                             {"db", db},
                             {"dq", dq},
                             {"dk", dk},
                             {"dv", dv}})
    b.output(name, value);
  return b;
}

/// Runs the plan of `b` as a cpu and as a cuda plan with the same weights
/// and inputs and compares every output (1e-4 relative to its largest value).
void expectSameOutputs(PlanBuilder b,
                       const std::vector<io::HostTensor> &weights,
                       const std::vector<io::HostTensor> &in) {
  std::vector<std::vector<io::HostTensor>> outputs;
  for (const char *target : {"cpu", "cuda"}) {
    b.plan["target"] = target;
    Expected<exec::Plan> plan = exec::Plan::parse(b.plan.dump(), "plan.mxa");
    ASSERT_TRUE(plan.ok()) << plan.message();
    std::unique_ptr<exec::PlanExecutor> executor;
    if (std::string(target) == "cpu") {
      Expected<exec::Executor> cpu = exec::Executor::create(*plan);
      ASSERT_TRUE(cpu.ok()) << cpu.message();
      executor = std::make_unique<exec::Executor>(std::move(*cpu));
    } else {
      Expected<std::unique_ptr<cuda::Executor>> gpu =
          cuda::Executor::create(*plan);
      ASSERT_TRUE(gpu.ok()) << gpu.message();
      executor = std::move(*gpu);
    }
    ASSERT_TRUE(executor->bindParams(weights, "params", false).ok());
    ASSERT_TRUE(executor->bindInputs(in, "inputs", false).ok());
    Status status = executor->run();
    ASSERT_TRUE(status.ok()) << status.message();
    outputs.push_back(executor->outputs());
  }
  for (size_t i = 0; i < outputs[0].size(); ++i) {
    SCOPED_TRACE(outputs[0][i].name);
    const io::HostTensor &cpu = outputs[0][i], &gpu = outputs[1][i];
    std::vector<float> c(cpu.as<float>(), cpu.as<float>() + cpu.numel()),
        g(gpu.as<float>(), gpu.as<float>() + gpu.numel());
    float largest = 0;
    for (float v : c)
      largest = std::max(largest, std::fabs(v));
    ASSERT_EQ(g.size(), c.size());
    for (size_t j = 0; j < c.size(); ++j)
      EXPECT_NEAR(g[j], c[j], 1e-4f * largest) << "element " << j;
  }
}

TEST(CudaExecutorProductsTest, MatchesTheCpuExecutor) {
  expectSameOutputs(productsPlan(),
                    {randomTensor("w", {8, 8}, 4), randomTensor("bias", {8}, 5),
                     randomTensor("ws", {4, 4}, 6),
                     randomTensor("wh", {8, 8}, 7)},
                    {randomTensor("x", {2, 4, 8}, 8, -2.0f, 2.0f),
                     intTensor("ids", {2, 4}, {5, 6, 7, 0, 9, 0, 4, 4})});
}

/// A MoE layer over 8 tokens and 2 experts of capacity 3 routed by `routing`
/// (tokens choose: some tokens dropped and some slots may stay empty), with
/// the gradients of its gathers, scatters and experts.
PlanBuilder moePlan(const std::string &routing, json attrs) {
  PlanBuilder b;
  int64_t x = b.input("x", {8, 4}, false, "F32"),
          probs = b.input("probs", {8, 2}, false, "F32"),
          dout = b.input("dout", {8, 4}, false, "F32");
  int64_t w1 = b.param("w1", {2, 4, 6}), b1 = b.param("b1", {2, 6}),
          w2 = b.param("w2", {2, 6, 4}), b2 = b.param("b2", {2, 4});
  int64_t tokens = b.arena({6}, "I32"), gates = b.arena({6}),
          offsets = b.arena({3}, "I32");
  int64_t xd = b.arena({6, 4}), yd = b.arena({6, 4}), out = b.arena({8, 4}),
          dyd = b.arena({6, 4}), dgates = b.arena({6}), dx = b.arena({8, 4}),
          dscores = b.arena({8, 2}), dxd = b.arena({6, 4}),
          dw1 = b.arena({2, 4, 6}), db1 = b.arena({2, 6}),
          dw2 = b.arena({2, 6, 4}), db2 = b.arena({2, 4});
  b.step(routing, {probs}, {tokens, gates, offsets}, attrs);
  b.step("dispatch", {x, tokens}, {xd});
  b.step("experts", {xd, tokens, offsets, w1, b1, w2, b2}, {yd},
         {{"activation", "gelu"}});
  b.step("combine", {yd, tokens, gates}, {out});
  b.step("combine_grad", {yd, tokens, gates, dout}, {dyd, dgates});
  b.step("dispatch_grad", {dyd, tokens}, {dx});
  b.step("scatter_gate_grad", {tokens, offsets, dgates}, {dscores});
  b.step("experts_grad", {xd, tokens, offsets, w1, b1, w2, dyd},
         {dxd, dw1, db1, dw2, db2}, {{"activation", "gelu"}});
  for (auto [name, value] : {std::pair<const char *, int64_t>{"out", out},
                             {"dyd", dyd},
                             {"dx", dx},
                             {"dscores", dscores},
                             {"dxd", dxd},
                             {"dw1", dw1},
                             {"db1", db1},
                             {"dw2", dw2},
                             {"db2", db2}})
    b.output(name, value);
  return b;
}

TEST(CudaExecutorMoeTest, MatchesTheCpuExecutor) {
  json groups = {{"groups", 1}, {"tokens_per_group", 8}, {"capacity", 3}};
  json tokensChoose = groups;
  tokensChoose["k"] = 1;
  tokensChoose["batch_prioritized"] = false;
  for (auto [routing, attrs] :
       {std::pair<const char *, json>{"route_tokens_choose", tokensChoose},
        {"route_experts_choose", groups}}) {
    SCOPED_TRACE(routing);
    expectSameOutputs(
        moePlan(routing, attrs),
        {randomTensor("w1", {2, 4, 6}, 9), randomTensor("b1", {2, 6}, 10),
         randomTensor("w2", {2, 6, 4}, 11), randomTensor("b2", {2, 4}, 12)},
        {randomTensor("x", {8, 4}, 13),
         randomTensor("probs", {8, 2}, 14, 0.0f, 1.0f),
         randomTensor("dout", {8, 4}, 15)});
  }
}

/// The spectral and structured mixers of FNet-style plans by `algorithm`:
/// Fourier and Hartley mixing (whose gradient is the same step on dY),
/// circulant and Toeplitz mixing and their gradients, over x [2, 5, 6]. The
/// executor makes the cuFFT plans and DFT matrices before the first run.
PlanBuilder mixingPlan(const std::string &algorithm) {
  PlanBuilder b;
  int64_t x = b.input("x", {2, 5, 6}, false, "F32"),
          dy = b.input("dy", {2, 5, 6}, false, "F32");
  for (bool hartley : {false, true}) {
    int64_t y = b.arena({2, 5, 6});
    b.step("spectral_mix", {x}, {y},
           {{"hartley", hartley}, {"algorithm", algorithm}});
    b.output(hartley ? "hartley" : "fourier", y);
  }
  for (bool toeplitz : {false, true}) {
    std::string kind = toeplitz ? "toeplitz" : "circulant";
    int64_t seqLength = toeplitz ? 9 : 5, hiddenLength = toeplitz ? 11 : 6;
    int64_t vs = b.param(kind + "/vs", {seqLength}),
            vh = b.param(kind + "/vh", {hiddenLength});
    int64_t y = b.arena({2, 5, 6}), dx = b.arena({2, 5, 6}),
            dvs = b.arena({seqLength}), dvh = b.arena({hiddenLength});
    b.step("structured_mix", {x, vs, vh}, {y},
           {{"toeplitz", toeplitz}, {"algorithm", algorithm}});
    b.step("structured_mix_grad", {x, vs, vh, dy}, {dx, dvs, dvh},
           {{"toeplitz", toeplitz}});
    b.output(kind, y);
    b.output(kind + "/dx", dx);
    b.output(kind + "/dvs", dvs);
    b.output(kind + "/dvh", dvh);
  }
  return b;
}

TEST(CudaExecutorMixingTest, MatchesTheCpuExecutor) {
  for (const char *algorithm : {"fft", "matmul"}) {
    SCOPED_TRACE(algorithm);
    expectSameOutputs(
        mixingPlan(algorithm),
        {randomTensor("circulant/vs", {5}, 22),
         randomTensor("circulant/vh", {6}, 23),
         randomTensor("toeplitz/vs", {9}, 24),
         randomTensor("toeplitz/vh", {11}, 25)},
        {randomTensor("x", {2, 5, 6}, 26), randomTensor("dy", {2, 5, 6}, 27)});
  }
}

/// One micro-step of gradient accumulation: noise_counter, then
/// accumulate_gradient into a parameter-held accumulator and adamw, which
/// applies the average only on the last of 3 micro-steps.
PlanBuilder microStepPlan() {
  PlanBuilder b;
  int64_t grad = b.input("grad", {10}, false, "F32"),
          lr = b.input("learning_rate", {}, false, "F32"),
          step = b.input("step", {}), micro = b.input("micro_step", {});
  int64_t p = b.param("p", {10}), accum = b.param("accum", {10}),
          m = b.param("m", {10}), v = b.param("v", {10});
  int64_t counter = b.arena({}, "I32"), average = b.arena({10});
  json micro3 = {{"micro_steps", 3}};
  b.step("noise_counter", {step, micro}, {counter}, micro3);
  b.step("accumulate_gradient", {grad, micro}, {accum, average}, micro3);
  b.step("adamw", {average, lr, step, -1, micro}, {p, m, v},
         {{"b1", 0.9},
          {"b2", 0.999},
          {"eps", 1e-6},
          {"weight_decay", 0.01},
          {"max_norm", 0.0},
          {"micro_steps", 3}});
  for (auto [name, value] :
       {std::pair<const char *, int64_t>{"counter", counter},
        {"accum", accum},
        {"average", average},
        {"p", p},
        {"m", m},
        {"v", v}})
    b.output(name, value);
  return b;
}

TEST(CudaExecutorMicroStepTest, MatchesTheCpuExecutor) {
  for (int64_t micro : {0, 2}) {
    SCOPED_TRACE(micro);
    io::HostTensor lr = randomTensor("learning_rate", {}, 16, 0.01f, 0.02f);
    expectSameOutputs(
        microStepPlan(),
        {randomTensor("p", {10}, 17), randomTensor("accum", {10}, 18),
         randomTensor("m", {10}, 20), randomTensor("v", {10}, 21, 0.0f, 1.0f)},
        {randomTensor("grad", {10}, 19), lr, intTensor("step", {}, {5}),
         intTensor("micro_step", {}, {micro})});
  }
}

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
