//===- ExecutorGpuTest.cpp - The CUDA executor against the CPU executor ---===//
//
// Runs one plan on both executors (as a cpu and as a cuda plan) and compares
// the outputs: LayerNorm, GELU and softmax to 1e-5 relative to the largest
// value, the dropout mask exactly (the same Philox draws). The noise key is a
// plan input, so a new step must re-capture the CUDA graph. Plans of the
// products and attention (dense, linear mixing, attention and their
// gradients), of MoE layers (routing, experts, gathers, scatters and their
// gradients), of a sigma-MoE layer (expert dropout, the entropy regulariser,
// grouped experts, route_grad), of both MoE layers with the dispatch fused
// into the experts on the device (`gather`, against the CPU's dispatch), of
// gradient accumulation (dropout keyed by the micro-step, accumulate_gradient,
// adamw over micro-steps) and of the spectral and structured mixers by both
// algorithms with their gradients agree with the CPU executor to 1e-4; the MoE
// layers with bf16 token and slot rows (the capacity experts on the tensor
// cores) agree with the fp32 CPU executor to 2e-2. The training loop
// (train::TrainingSession) over the tiny training plans that mixc compiles
// (MIXER_CUDA_PLANS) gives the CPU executor's losses and parameters on the
// CUDA executor, with gradient accumulation too, and a resumed CUDA run the
// bits of an uninterrupted one. An embedding id or a dispatched token outside
// its table fails the run, with a graph or without, naming the step, the
// operand and the element, and the next run with good ids succeeds. Without a
// usable device the binary prints why and exits 77 (skipped).
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Executor.h"
#include "runtime/cuda/Executor.h"
#include "runtime/exec/Init.h"
#include "runtime/train/Trainer.h"

#include "test/unit/exec/PlanBuilder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <set>

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
  b.step("random_scale", {p, seed, step, -1}, {y},
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
      exec::Plan::fromJson(cpuPlan.plan.dump(), "chain.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  Expected<cpu::Executor> cpu = cpu::Executor::create(*plan);
  ASSERT_TRUE(cpu.ok()) << cpu.message();
  ASSERT_TRUE(cpu->bindParams(params(), "params").ok());

  PlanBuilder cudaPlan = chainPlan();
  cudaPlan.plan["target"] = "cuda";
  plan = exec::Plan::fromJson(cudaPlan.plan.dump(), "chain.mxa");
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
  b.step("attention", {m, m, m, ids, -1, -1, -1}, {a}, attention);
  b.step("linear_mix_grad", {h, ws, wh, a}, {dh, dws, dwh});
  b.step("dense_weight_grad", {x, dh}, {dw}, {{"transpose_w", false}});
  b.step("reduce_rows", {dh}, {db});
  b.step("attention_grad", {m, m, m, ids, a, -1, -1, -1}, {dq, dk, dv},
         attention);
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

/// The values of an F32 or BF16 host tensor as floats (bf16 widens
/// exactly: its bits are the top half of the float's).
std::vector<float> floatsOf(const io::HostTensor &tensor) {
  std::vector<float> values(tensor.numel());
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    if (tensor.dtype != io::DType::BF16) {
      values[i] = tensor.as<float>()[i];
      continue;
    }
    uint32_t bits = uint32_t(tensor.as<uint16_t>()[i]) << 16;
    std::memcpy(&values[i], &bits, sizeof(float));
  }
  return values;
}

/// Runs `cpuPlan` as a cpu plan and `cudaPlan` (the same computation, with
/// the same parameters, inputs and outputs) as a cuda plan with the same
/// weights and inputs and compares every output (F32, or BF16 from a bf16
/// plan) within `tolerance` relative to its largest value.
void expectSameOutputs(PlanBuilder cpuPlan, PlanBuilder cudaPlan,
                       const std::vector<io::HostTensor> &weights,
                       const std::vector<io::HostTensor> &in,
                       float tolerance = 1e-4f) {
  std::vector<std::vector<io::HostTensor>> outputs;
  for (const char *target : {"cpu", "cuda"}) {
    PlanBuilder &b = std::string(target) == "cpu" ? cpuPlan : cudaPlan;
    b.plan["target"] = target;
    Expected<exec::Plan> plan = exec::Plan::fromJson(b.plan.dump(), "plan.mxa");
    ASSERT_TRUE(plan.ok()) << plan.message();
    std::unique_ptr<exec::PlanExecutor> executor;
    if (std::string(target) == "cpu") {
      Expected<cpu::Executor> cpu = cpu::Executor::create(*plan);
      ASSERT_TRUE(cpu.ok()) << cpu.message();
      executor = std::make_unique<cpu::Executor>(std::move(*cpu));
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
    std::vector<float> c = floatsOf(outputs[0][i]), g = floatsOf(outputs[1][i]);
    float largest = 0;
    for (float v : c)
      largest = std::max(largest, std::fabs(v));
    ASSERT_EQ(g.size(), c.size());
    for (size_t j = 0; j < c.size(); ++j)
      EXPECT_NEAR(g[j], c[j], tolerance * largest) << "element " << j;
  }
}

/// The plan of `b` on both executors.
void expectSameOutputs(const PlanBuilder &b,
                       const std::vector<io::HostTensor> &weights,
                       const std::vector<io::HostTensor> &in) {
  expectSameOutputs(b, b, weights, in);
}

/// `b` with its dispatch fused into the experts as mixrt-fuse-expert-gather
/// does it: the dispatch step goes, and experts and experts_grad read the
/// token rows with `gather`.
PlanBuilder gathering(PlanBuilder b) {
  json &steps = b.plan["steps"];
  auto dispatch = std::find_if(steps.begin(), steps.end(), [](const json &s) {
    return s["kernel"] == "dispatch";
  });
  EXPECT_NE(dispatch, steps.end()) << "the plan has no dispatch";
  if (dispatch == steps.end())
    return b;
  json x = (*dispatch)["operands"][0], xd = (*dispatch)["results"][0];
  steps.erase(dispatch);
  for (json &step : steps)
    if ((step["kernel"] == "experts" || step["kernel"] == "experts_grad") &&
        step["operands"][0] == xd) {
      step["operands"][0] = x;
      step["attrs"]["gather"] = true;
    }
  return b;
}

TEST(CudaExecutorProductsTest, MatchesTheCpuExecutor) {
  expectSameOutputs(productsPlan(),
                    {randomTensor("w", {8, 8}, 4), randomTensor("bias", {8}, 5),
                     randomTensor("ws", {4, 4}, 6),
                     randomTensor("wh", {8, 8}, 7)},
                    {randomTensor("x", {2, 4, 8}, 8, -2.0f, 2.0f),
                     intTensor("ids", {2, 4}, {5, 6, 7, 0, 9, 0, 4, 4})});
}

/// A MoE layer over 8 tokens of width d and 2 experts of hidden width f (4
/// and 6 unless given) and capacity 3 routed by `routing` (tokens choose:
/// some tokens dropped and some slots may stay empty), with the gradients of
/// its gathers, scatters and experts.
PlanBuilder moePlan(const std::string &routing, json attrs, int64_t d = 4,
                    int64_t f = 6) {
  PlanBuilder b;
  int64_t x = b.input("x", {8, d}, false, "F32"),
          probs = b.input("probs", {8, 2}, false, "F32"),
          dout = b.input("dout", {8, d}, false, "F32");
  int64_t w1 = b.param("w1", {2, d, f}), b1 = b.param("b1", {2, f}),
          w2 = b.param("w2", {2, f, d}), b2 = b.param("b2", {2, d});
  int64_t tokens = b.arena({6}, "I32"), gates = b.arena({6}),
          offsets = b.arena({3}, "I32");
  int64_t xd = b.arena({6, d}), yd = b.arena({6, d}), out = b.arena({8, d}),
          dyd = b.arena({6, d}), dgates = b.arena({6}), dx = b.arena({8, d}),
          dscores = b.arena({8, 2}), dlogits = b.arena({8, 2}),
          dxd = b.arena({6, d}), dw1 = b.arena({2, d, f}),
          db1 = b.arena({2, f}), dw2 = b.arena({2, f, d}),
          db2 = b.arena({2, d});
  b.step(routing, {probs}, {tokens, gates, offsets}, attrs);
  b.step("dispatch", {x, tokens}, {xd});
  b.step("experts", {xd, tokens, offsets, w1, b1, w2, b2}, {yd},
         {{"activation", "gelu"}, {"layout", "capacity"}});
  b.step("combine", {yd, tokens, gates}, {out});
  b.step("combine_grad", {yd, tokens, gates, dout}, {dyd, dgates});
  b.step("dispatch_grad", {dyd, tokens}, {dx});
  b.step("scatter_gate_grad", {tokens, offsets, dgates}, {dscores});
  // The probabilities taken for logits: back through their softmax.
  b.step("route_grad", {probs, tokens, offsets, dgates}, {dlogits},
         {{"routing", routing == "route_tokens_choose" ? "tokens_choose"
                                                       : "experts_choose"}});
  b.step("experts_grad", {xd, tokens, offsets, w1, b1, w2, dyd},
         {dxd, dw1, db1, dw2, db2},
         {{"activation", "gelu"}, {"layout", "capacity"}});
  for (auto [name, value] : {std::pair<const char *, int64_t>{"out", out},
                             {"dyd", dyd},
                             {"dx", dx},
                             {"dscores", dscores},
                             {"dlogits", dlogits},
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
    std::vector<io::HostTensor> weights = {
        randomTensor("w1", {2, 4, 6}, 9), randomTensor("b1", {2, 6}, 10),
        randomTensor("w2", {2, 6, 4}, 11), randomTensor("b2", {2, 4}, 12)};
    std::vector<io::HostTensor> in = {
        randomTensor("x", {8, 4}, 13),
        randomTensor("probs", {8, 2}, 14, 0.0f, 1.0f),
        randomTensor("dout", {8, 4}, 15)};
    expectSameOutputs(moePlan(routing, attrs), weights, in);
    // The capacity experts gather their 6 slot rows from the 8 tokens.
    SCOPED_TRACE("gathering");
    expectSameOutputs(moePlan(routing, attrs),
                      gathering(moePlan(routing, attrs)), weights, in);
  }
}

/// `b` with its F32 inputs `names` [rows, width] entering through `dense`
/// steps with the identity weight `eye` [width, width] (exact in fp32): the
/// way F32 inputs become activations of a bf16 plan.
PlanBuilder throughIdentity(PlanBuilder b,
                            const std::vector<std::string> &names,
                            int64_t width) {
  int64_t eye = b.param("eye", {width, width});
  json copies = json::array();
  for (const std::string &name : names) {
    json &values = b.plan["values"];
    auto input = std::find_if(values.begin(), values.end(), [&](json &v) {
      return v["storage"] == "input" &&
             b.plan["inputs"][v["index"].get<size_t>()]["name"] == name;
    });
    EXPECT_NE(input, values.end()) << "the plan has no input " << name;
    if (input == values.end())
      return b;
    int64_t from = input - values.begin();
    int64_t copy = b.arena((*input)["shape"].get<std::vector<int64_t>>());
    for (json &step : b.plan["steps"])
      for (json &operand : step["operands"])
        if (operand == from)
          operand = copy;
    copies.push_back(
        {{"kernel", "dense"},
         {"operands", {from, eye, -1}},
         {"results", {copy}},
         {"attrs", {{"activation", "none"}, {"transpose_w", false}}}});
  }
  json &steps = b.plan["steps"];
  steps.insert(steps.begin(), copies.begin(), copies.end());
  return b;
}

/// An identity matrix [n, n] named `name`.
io::HostTensor identity(const std::string &name, int64_t n) {
  io::HostTensor eye;
  eye.name = name;
  eye.shape = {n, n};
  eye.data.resize(n * n * sizeof(float));
  for (int64_t i = 0; i < n * n; ++i)
    eye.as<float>()[i] = i / n == i % n ? 1.0f : 0.0f;
  return eye;
}

/// `b` as a bf16 plan whose activations are BF16: the first result of every
/// step of `kernels`.
PlanBuilder withBf16Activations(PlanBuilder b,
                                const std::set<std::string> &kernels) {
  b.plan["precision"] = "bf16";
  for (const json &step : b.plan["steps"])
    if (kernels.count(step["kernel"].get<std::string>()))
      b.plan["values"][step["results"][0].get<int64_t>()]["dtype"] = "BF16";
  return b;
}

TEST(CudaExecutorMoeTest, Bf16CapacityExpertsTrackTheCpuExecutor) {
  // The MoE layer of moePlan with bf16 token and slot rows (the identity
  // copies of x and dout, xd, yd, the combined rows and their gradients)
  // against the fp32 CPU executor: products on the tensor cores with the
  // weights rounded to bf16, so 2e-2 relative to each output's largest
  // value (8 significant bits per operand, fp32 accumulation). Width 8 and
  // hidden width 16 keep every bf16 row and expert block 16-byte aligned,
  // as the compiled plans' are.
  int64_t d = 8, f = 16;
  json groups = {{"groups", 1}, {"tokens_per_group", 8}, {"capacity", 3}};
  json tokensChoose = groups;
  tokensChoose["k"] = 1;
  tokensChoose["batch_prioritized"] = false;
  std::set<std::string> rows = {"dense",       "dispatch",     "experts",
                                "combine",     "combine_grad", "dispatch_grad",
                                "experts_grad"};
  for (auto [routing, attrs] :
       {std::pair<const char *, json>{"route_tokens_choose", tokensChoose},
        {"route_experts_choose", groups}}) {
    SCOPED_TRACE(routing);
    std::vector<io::HostTensor> weights = {
        randomTensor("w1", {2, d, f}, 16), randomTensor("b1", {2, f}, 17),
        randomTensor("w2", {2, f, d}, 18), randomTensor("b2", {2, d}, 19),
        identity("eye", d)};
    std::vector<io::HostTensor> in = {
        randomTensor("x", {8, d}, 20),
        randomTensor("probs", {8, 2}, 21, 0.0f, 1.0f),
        randomTensor("dout", {8, d}, 22)};
    PlanBuilder plan =
        throughIdentity(moePlan(routing, attrs, d, f), {"x", "dout"}, d);
    expectSameOutputs(plan, withBf16Activations(plan, rows), weights, in,
                      2e-2f);
    // The capacity experts gather their 6 bf16 slot rows from the 8 tokens.
    SCOPED_TRACE("gathering");
    expectSameOutputs(plan, withBf16Activations(gathering(plan), rows), weights,
                      in, 2e-2f);
  }
}

/// A sigma-MoE layer over 12 tokens and 4 experts (top-2 of sigmoid gates,
/// expert dropout before the top-k, ReLU experts without biases as the
/// models use) with the entropy regulariser and every gradient.
PlanBuilder sigmaMoePlan() {
  PlanBuilder b;
  int64_t x = b.input("x", {12, 6}, false, "F32"),
          logits = b.input("logits", {12, 4}, false, "F32"),
          dout = b.input("dout", {12, 6}, false, "F32"),
          dloss = b.input("dloss", {}, false, "F32"),
          seed = b.input("seed", {}), step = b.input("step", {});
  int64_t w1 = b.param("w1", {4, 6, 5}), w2 = b.param("w2", {4, 5, 6});
  int64_t loss = b.arena({}), dropped = b.arena({12, 4}),
          tokens = b.arena({24}, "I32"), gates = b.arena({24}),
          offsets = b.arena({5}, "I32"), xd = b.arena({24, 6}),
          yd = b.arena({24, 6}), out = b.arena({12, 6}), dyd = b.arena({24, 6}),
          dgates = b.arena({24}), dxd = b.arena({24, 6}),
          dw1 = b.arena({4, 6, 5}), db1 = b.arena({4, 5}),
          dw2 = b.arena({4, 5, 6}), db2 = b.arena({4, 6}),
          dx = b.arena({12, 6}), dscores = b.arena({12, 4}),
          dlogits = b.arena({12, 4}), dentropy = b.arena({12, 4});
  json drop = {{"rate", 0.3}, {"stream", 5}, {"gradient", false}};
  json relu = {{"activation", "relu"}, {"layout", "grouped"}};
  b.step("entropy_regularizer", {logits}, {loss});
  b.step("drop_experts", {logits, seed, step, -1}, {dropped}, drop);
  b.step("route_sigmoid_topk", {dropped}, {tokens, gates, offsets}, {{"k", 2}});
  b.step("dispatch", {x, tokens}, {xd});
  b.step("experts", {xd, tokens, offsets, w1, -1, w2, -1}, {yd}, relu);
  b.step("combine", {yd, tokens, gates}, {out});
  b.step("combine_grad", {yd, tokens, gates, dout}, {dyd, dgates});
  b.step("experts_grad", {xd, tokens, offsets, w1, -1, w2, dyd},
         {dxd, dw1, db1, dw2, db2}, relu);
  b.step("dispatch_grad", {dxd, tokens}, {dx});
  b.step("route_grad", {dropped, tokens, offsets, dgates}, {dscores},
         {{"routing", "sigmoid_topk"}});
  drop["gradient"] = true;
  b.step("drop_experts", {dscores, seed, step, -1}, {dlogits}, drop);
  b.step("entropy_regularizer_grad", {logits, dloss}, {dentropy});
  for (auto [name, value] : {std::pair<const char *, int64_t>{"loss", loss},
                             {"out", out},
                             {"dx", dx},
                             {"dw1", dw1},
                             {"db1", db1},
                             {"dw2", dw2},
                             {"db2", db2},
                             {"dlogits", dlogits},
                             {"dentropy", dentropy}})
    b.output(name, value);
  return b;
}

TEST(CudaExecutorSigmaMoeTest, MatchesTheCpuExecutor) {
  for (int32_t seed : {-1, 7})
    for (bool gather : {false, true}) {
      SCOPED_TRACE(std::to_string(seed) + (gather ? " gathering" : ""));
      // Gathering, the grouped kernels read the 24 slots' rows from the 12
      // tokens in their loads.
      expectSameOutputs(
          sigmaMoePlan(), gather ? gathering(sigmaMoePlan()) : sigmaMoePlan(),
          {randomTensor("w1", {4, 6, 5}, 30),
           randomTensor("w2", {4, 5, 6}, 31)},
          {randomTensor("x", {12, 6}, 32), randomTensor("logits", {12, 4}, 33),
           randomTensor("dout", {12, 6}, 34), randomTensor("dloss", {}, 35),
           intTensor("seed", {}, {seed}), intTensor("step", {}, {3})});
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

/// One micro-step of gradient accumulation: dropout keyed by the micro-step,
/// then accumulate_gradient into a parameter-held accumulator and adamw,
/// which applies the average only on the last of 3 micro-steps.
PlanBuilder microStepPlan() {
  PlanBuilder b;
  int64_t grad = b.input("grad", {10}, false, "F32"),
          x = b.input("x", {10}, false, "F32"),
          lr = b.input("learning_rate", {}, false, "F32"),
          seed = b.input("seed", {}), step = b.input("step", {}),
          micro = b.input("micro_step", {});
  int64_t p = b.param("p", {10}), accum = b.param("accum", {10}),
          m = b.param("m", {10}), v = b.param("v", {10});
  int64_t dropped = b.arena({10}), average = b.arena({10});
  json micro3 = {{"micro_steps", 3}};
  b.step(
      "random_scale", {x, seed, step, micro}, {dropped},
      {{"kind", "dropout"}, {"rate", 0.5}, {"stream", 7}, {"micro_steps", 3}});
  b.step("accumulate_gradient", {grad, micro}, {accum, average}, micro3);
  b.step("adamw", {average, lr, step, -1, micro}, {p, m, v},
         {{"b1", 0.9},
          {"b2", 0.999},
          {"eps", 1e-6},
          {"weight_decay", 0.01},
          {"max_norm", 0.0},
          {"micro_steps", 3}});
  for (auto [name, value] :
       {std::pair<const char *, int64_t>{"dropped", dropped},
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
        {randomTensor("grad", {10}, 19), randomTensor("x", {10}, 22), lr,
         intTensor("seed", {}, {42}), intTensor("step", {}, {5}),
         intTensor("micro_step", {}, {micro})});
  }
}

/// MLM + NSP batches for a training plan's inputs, each a function of its
/// number only: rows of tokens (some padded), two segments, masked
/// positions with labels (the last two slots unused, -1) and random
/// next-sentence labels.
class SyntheticBatches : public train::BatchSource {
public:
  explicit SyntheticBatches(const exec::Plan &plan) : plan(plan) {}

  std::vector<io::HostTensor> next() override {
    std::mt19937 random(static_cast<uint32_t>(1000 + batch++));
    int64_t rows = plan.batch, seq = plan.seq;
    int64_t slots = plan.inputs[plan.findInput("masked_lm_positions")].shape[1];
    auto draw = [&](int64_t lo, int64_t hi) {
      return std::uniform_int_distribution<int64_t>(lo, hi - 1)(random);
    };
    std::vector<int64_t> ids, types, positions, labels, next;
    tokens = 0;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t length = seq - r % 3;
      tokens += length;
      for (int64_t t = 0; t < seq; ++t) {
        ids.push_back(t < length ? draw(4, plan.vocabSize) : plan.padId);
        types.push_back(t < length && 2 * t >= length ? 1 : 0);
      }
      for (int64_t p = 0; p < slots; ++p) {
        positions.push_back(draw(1, length));
        labels.push_back(p < slots - 2 ? draw(4, plan.vocabSize) : -1);
      }
      next.push_back(draw(0, 2));
    }
    return {intTensor("input_ids", {rows, seq}, ids),
            intTensor("type_ids", {rows, seq}, types),
            intTensor("masked_lm_positions", {rows, slots}, positions),
            intTensor("masked_lm_ids", {rows, slots}, labels),
            intTensor("next_sentence_labels", {rows}, next)};
  }
  json position() const override { return {{"batch", batch}}; }
  Status seek(const json &position) override {
    batch = position["batch"].get<int64_t>();
    return Status::success();
  }
  int64_t lastTokens() const override { return tokens; }

private:
  const exec::Plan &plan;
  int64_t batch = 0;
  int64_t tokens = 0;
};

/// The tiny training plan `name` (e.g. "bert_tiny-train-fp32") compiled by
/// ctest's MixerCudaTinyPlansCompile into MIXER_CUDA_PLANS.
Expected<exec::Plan> tinyPlan(const std::string &name) {
  return exec::Plan::load(std::string(std::getenv("MIXER_CUDA_PLANS")) + "/" +
                          name + ".mxa");
}

/// The executor of `plan`'s target.
std::unique_ptr<exec::PlanExecutor> executorFor(const exec::Plan &plan) {
  if (plan.target == "cpu") {
    Expected<cpu::Executor> cpu = cpu::Executor::create(plan);
    EXPECT_TRUE(cpu.ok()) << cpu.message();
    return cpu.ok() ? std::make_unique<cpu::Executor>(std::move(*cpu))
                    : nullptr;
  }
  Expected<std::unique_ptr<cuda::Executor>> gpu = cuda::Executor::create(plan);
  EXPECT_TRUE(gpu.ok()) << gpu.message();
  return gpu.ok() ? std::move(*gpu) : nullptr;
}

/// A learning rate large enough that the updates dominate what rounding
/// does to them (parameters of about 0.02 move by about 0.01 per update).
train::TrainOptions trainOptions(int64_t steps,
                                 std::vector<train::StepReport> &reports) {
  train::TrainOptions options;
  options.steps = steps;
  options.schedule = {1e-2, 0, 100};
  options.seed = 7;
  options.onStep = [&reports](const train::StepReport &report) {
    reports.push_back(report);
  };
  return options;
}

struct TrainedRun {
  std::vector<train::StepReport> reports;
  std::vector<io::HostTensor> params, state;
  /// The outputs of an evaluation batch after the last update.
  std::vector<io::HostTensor> evaluation;
};

/// `steps` updates of `plan` from `params` on the executor of its target.
void runTraining(const exec::Plan &plan, std::vector<io::HostTensor> params,
                 int64_t steps, TrainedRun &run) {
  SyntheticBatches data(plan);
  Expected<train::TrainingSession> session = train::TrainingSession::start(
      executorFor(plan), std::move(params), "params");
  ASSERT_TRUE(session.ok()) << session.message();
  Status status = session->train(data, trainOptions(steps, run.reports));
  ASSERT_TRUE(status.ok()) << status.message();
  ASSERT_EQ(session->step(), steps);
  Expected<std::vector<io::HostTensor>> trained =
      session->executor().copyParams();
  Expected<std::vector<io::HostTensor>> state = session->executor().copyState();
  ASSERT_TRUE(trained.ok() && state.ok());
  run.params = std::move(*trained);
  run.state = std::move(*state);
  Expected<std::vector<io::HostTensor>> evaluation =
      train::evaluateBatch(session->executor(), data.next());
  ASSERT_TRUE(evaluation.ok()) << evaluation.message();
  run.evaluation = std::move(*evaluation);
}

/// Every scalar "*loss" tensor of `gpu` within `tolerance` relative of
/// `cpu`.
void expectSameLosses(const std::vector<io::HostTensor> &gpu,
                      const std::vector<io::HostTensor> &cpu,
                      double tolerance) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (cpu[i].name.find("loss") == std::string::npos)
      continue;
    float c = cpu[i].as<float>()[0], g = gpu[i].as<float>()[0];
    EXPECT_NEAR(g, c, tolerance * std::fabs(c)) << cpu[i].name;
  }
}

class CudaTrainingTest : public ::testing::TestWithParam<const char *> {
protected:
  void SetUp() override {
    if (!std::getenv("MIXER_CUDA_PLANS"))
      GTEST_SKIP() << "MIXER_CUDA_PLANS is not set";
  }

  /// 3 updates of the model's cpu training plan and of its cuda plan of
  /// `precision` from the same parameters; the metrics of every update
  /// (only the losses when `lossesOnly`) and the evaluation losses within
  /// `tolerance` relative.
  void trainOnBoth(const char *precision, double tolerance, bool lossesOnly,
                   TrainedRun &cpu, TrainedRun &gpu) {
    std::string model = GetParam();
    Expected<exec::Plan> cpuPlan = tinyPlan(model + "-train-cpu");
    Expected<exec::Plan> gpuPlan =
        tinyPlan(model + "-train-" + std::string(precision));
    ASSERT_TRUE(cpuPlan.ok()) << cpuPlan.message();
    ASSERT_TRUE(gpuPlan.ok()) << gpuPlan.message();
    std::vector<io::HostTensor> params = exec::initParameters(*cpuPlan, 1);
    runTraining(*cpuPlan, params, 3, cpu);
    runTraining(*gpuPlan, params, 3, gpu);
    ASSERT_EQ(gpu.reports.size(), cpu.reports.size());
    for (size_t step = 0; step < cpu.reports.size(); ++step) {
      SCOPED_TRACE("update " + std::to_string(step + 1));
      const auto &c = cpu.reports[step].metrics, &g = gpu.reports[step].metrics;
      ASSERT_EQ(g.size(), c.size());
      for (size_t m = 0; m < c.size(); ++m) {
        EXPECT_EQ(g[m].first, c[m].first);
        if (!lossesOnly || c[m].first.find("loss") != std::string::npos)
          EXPECT_NEAR(g[m].second, c[m].second,
                      tolerance * std::fabs(c[m].second))
              << c[m].first;
      }
    }
    SCOPED_TRACE("evaluation");
    expectSameLosses(gpu.evaluation, cpu.evaluation, tolerance);
  }
};

TEST_P(CudaTrainingTest, MatchesTheCpuExecutor) {
  TrainedRun cpu, gpu;
  trainOnBoth("fp32", 1e-4, /*lossesOnly=*/false, cpu, gpu);
  // Relative to the largest parameter (the LayerNorm scales, about 1): the
  // gradients of some biases are zero but for rounding, which AdamW
  // amplifies into differences far below the updates.
  float largest = 0;
  for (const io::HostTensor &tensor : cpu.params)
    for (int64_t i = 0; i < tensor.numel(); ++i)
      largest = std::max(largest, std::fabs(tensor.as<float>()[i]));
  ASSERT_EQ(gpu.params.size(), cpu.params.size());
  for (size_t t = 0; t < cpu.params.size(); ++t) {
    const io::HostTensor &c = cpu.params[t], &g = gpu.params[t];
    ASSERT_EQ(g.name, c.name);
    ASSERT_EQ(g.numel(), c.numel());
    for (int64_t i = 0; i < c.numel(); ++i)
      ASSERT_NEAR(g.as<float>()[i], c.as<float>()[i], 1e-4f * largest)
          << c.name << " element " << i;
  }
}

/// The bf16 training step (bf16 activations on the tensor cores, fp32
/// master weights, optimizer state and statistics) tracks the fp32 CPU
/// step: the losses of 3 updates and of an evaluation batch within 2e-2
/// relative, bf16's documented tolerance (8 significant bits per operand,
/// fp32 accumulation); accuracies may differ by a flipped prediction.
TEST_P(CudaTrainingTest, Bf16TracksTheCpuExecutor) {
  TrainedRun cpu, gpu;
  trainOnBoth("bf16", 2e-2, /*lossesOnly=*/true, cpu, gpu);
}

TEST_P(CudaTrainingTest, ResumesBitForBit) {
  std::string model = GetParam();
  Expected<exec::Plan> plan = tinyPlan(model + "-train-fp32");
  ASSERT_TRUE(plan.ok()) << plan.message();
  std::vector<io::HostTensor> params = exec::initParameters(*plan, 1);
  TrainedRun straight;
  runTraining(*plan, params, 4, straight);

  std::string dir = ::testing::TempDir() + "/mixer-cuda-resume-" + model;
  std::filesystem::remove_all(dir);
  std::vector<train::StepReport> reports;
  {
    SyntheticBatches data(*plan);
    Expected<train::TrainingSession> first =
        train::TrainingSession::start(executorFor(*plan), params, "params");
    ASSERT_TRUE(first.ok()) << first.message();
    train::TrainOptions options = trainOptions(2, reports);
    options.checkpointDir = dir;
    Status status = first->train(data, options);
    ASSERT_TRUE(status.ok()) << status.message();
  }
  SyntheticBatches data(*plan);
  int32_t seed = 0;
  Expected<train::TrainingSession> resumed =
      train::TrainingSession::resume(executorFor(*plan), dir, {}, data, seed);
  ASSERT_TRUE(resumed.ok()) << resumed.message();
  EXPECT_EQ(resumed->step(), 2);
  EXPECT_EQ(seed, 7);
  Status status = resumed->train(data, trainOptions(4, reports));
  ASSERT_TRUE(status.ok()) << status.message();
  std::filesystem::remove_all(dir);

  ASSERT_EQ(reports.size(), straight.reports.size());
  for (size_t step = 0; step < reports.size(); ++step)
    for (size_t m = 0; m < reports[step].metrics.size(); ++m)
      EXPECT_EQ(reports[step].metrics[m].second,
                straight.reports[step].metrics[m].second)
          << "update " << step + 1 << ", " << reports[step].metrics[m].first;
  Expected<std::vector<io::HostTensor>> endParams =
      resumed->executor().copyParams();
  Expected<std::vector<io::HostTensor>> endState =
      resumed->executor().copyState();
  ASSERT_TRUE(endParams.ok() && endState.ok());
  for (auto [got, want] : {std::pair{&*endParams, &straight.params},
                           std::pair{&*endState, &straight.state}}) {
    ASSERT_EQ(got->size(), want->size());
    for (size_t t = 0; t < want->size(); ++t)
      EXPECT_EQ((*got)[t].data, (*want)[t].data) << (*want)[t].name;
  }
}

/// A step that indexes with ids from a plan input: embed (ids into a table
/// of 10 words) or dispatch (token ids into 4 token rows), then a scale.
PlanBuilder idPlan(bool embed) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  b.plan["vocab_size"] = 10;
  std::vector<int64_t> shape =
      embed ? std::vector<int64_t>{2, 3, 4} : std::vector<int64_t>{6, 4};
  int64_t rows = b.arena(shape), y = b.arena(shape);
  if (embed) {
    int64_t ids = b.input("ids", {2, 3});
    int64_t word = b.param("word", {10, 4}), pos = b.param("pos", {1, 3, 4}),
            type = b.param("type", {1, 4});
    b.step("embed", {ids, -1, word, pos, type}, {rows});
  } else {
    int64_t x = b.input("x", {4, 4}, false, "F32"),
            tokens = b.input("tokens", {6});
    b.step("dispatch", {x, tokens}, {rows});
  }
  b.step("scale", {rows}, {y}, {{"factor", 2.0}});
  b.output("y", y);
  return b;
}

/// Runs idPlan(embed) with `ids` (the embedding's ids, or the dispatch's
/// tokens); the run's status.
Status runIds(bool embed, bool graph, const std::vector<int64_t> &ids) {
  Expected<exec::Plan> plan =
      exec::Plan::fromJson(idPlan(embed).plan.dump(), "ids.mxa");
  EXPECT_TRUE(plan.ok()) << plan.message();
  if (!plan)
    return plan.takeStatus();
  cuda::ExecutorOptions options;
  options.cudaGraph = graph;
  Expected<std::unique_ptr<cuda::Executor>> gpu =
      cuda::Executor::create(*plan, options);
  EXPECT_TRUE(gpu.ok()) << gpu.message();
  if (!gpu)
    return gpu.takeStatus();
  cuda::Executor &executor = **gpu;
  std::vector<io::HostTensor> weights, in;
  if (embed) {
    weights = {randomTensor("word", {10, 4}, 1),
               randomTensor("pos", {1, 3, 4}, 2),
               randomTensor("type", {1, 4}, 3)};
    in = {intTensor("ids", {2, 3}, ids)};
  } else {
    in = {randomTensor("x", {4, 4}, 4), intTensor("tokens", {6}, ids)};
  }
  EXPECT_TRUE(executor.bindParams(weights, "params", false).ok());
  EXPECT_TRUE(executor.bindInputs(in, "inputs", false).ok());
  Status status = executor.run();
  // A later run with good ids succeeds: each run starts with a clear record.
  std::vector<int64_t> good(ids.size(), 0);
  in.back() =
      embed ? intTensor("ids", {2, 3}, good) : intTensor("tokens", {6}, good);
  EXPECT_TRUE(executor.bindInputs(in, "inputs", false).ok());
  Status again = executor.run();
  EXPECT_TRUE(again.ok()) << again.message();
  return status;
}

class CudaIdCheckTest : public ::testing::TestWithParam<bool> {};

TEST_P(CudaIdCheckTest, AnEmbeddingIdOutsideTheVocabularyFailsTheStep) {
  EXPECT_TRUE(runIds(true, GetParam(), {1, 2, 3, 4, 5, 9}).ok());
  Status status = runIds(true, GetParam(), {1, 2, 3, 4, 10, 7});
  EXPECT_EQ(status.message(),
            "ids.mxa: steps[0] (embed): ids[1,1] = 10 is outside [0, 10)");
  status = runIds(true, GetParam(), {-1, 2, 3, 4, 5, 6});
  EXPECT_EQ(status.message(),
            "ids.mxa: steps[0] (embed): ids[0,0] = -1 is outside [0, 10)");
}

TEST_P(CudaIdCheckTest, ADispatchedTokenOutsideTheTokensFailsTheStep) {
  // Negative tokens mark empty slots.
  EXPECT_TRUE(runIds(false, GetParam(), {3, -1, 0, 2, 1, -1}).ok());
  Status status = runIds(false, GetParam(), {3, -1, 0, 2, 40, -1});
  EXPECT_EQ(status.message(),
            "ids.mxa: steps[0] (dispatch): tokens[4] = 40 is outside [0, 4)");
}

INSTANTIATE_TEST_SUITE_P(GraphOrNot, CudaIdCheckTest, ::testing::Bool());

// sparse_mixer_accumulation_tiny: sparse_mixer_tiny with 2 micro-steps per
// update and dropout everywhere (noise keyed by the micro-steps).
INSTANTIATE_TEST_SUITE_P(TinyModels, CudaTrainingTest,
                         ::testing::Values("bert_tiny", "sparse_mixer_tiny",
                                           "sparse_mixer_accumulation_tiny"));

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
