//===- KernelTableTest.cpp - The CUDA kernel table and plan checks --------===//
//
// What the CUDA executor decides before it touches a device: which plan
// kernels have a CUDA implementation, the refusal of a plan with one that has
// none, the per-step dtype, shape and operand checks, and what TargetInfo
// claims for the cuda target. No GPU needed.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTable.h"
#include "runtime/cuda/Executor.h"
#include "runtime/support/TargetInfo.h"

#include "test/unit/exec/PlanBuilder.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <cstdlib>

using namespace mixer;
using namespace mixer::exec::test;
using ::testing::StartsWith;

namespace {

/// A cuda plan: x [4, 8] (an F32 input) -> layer_norm -> `kernel` -> y.
PlanBuilder normThen(const std::string &kernel, json attrs = json::object(),
                     const std::string &dtype = "F32") {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  if (dtype == "BF16")
    b.plan["precision"] = "bf16";
  int64_t x = b.input("x", {4, 8}, false, "F32");
  int64_t scale = b.param("scale", {8}), bias = b.param("bias", {8});
  int64_t h = b.arena({4, 8}, dtype), y = b.arena({4, 8}, dtype);
  // Only the first step's operand types matter to the kernel check.
  b.step("layer_norm", {x, -1, scale, bias}, {h}, {{"epsilon", 1e-6}});
  b.step(kernel, {h}, {y}, attrs);
  b.output("y", y);
  return b;
}

/// The message of preparing step `index` of `b`'s plan for the device.
std::string prepareError(const PlanBuilder &b, size_t index) {
  exec::Plan plan = parseStandalone(b);
  int64_t scratch = 0;
  Expected<cuda::DeviceStep> step =
      cuda::prepareDeviceStep(plan, index, scratch);
  EXPECT_FALSE(step.ok()) << "the step was prepared";
  return step.ok() ? std::string() : step.message();
}

TEST(CudaKernelTableTest, WiresEveryPlanKernelOnce) {
  std::vector<Kernel> kernels = cuda::cudaKernels();
  for (const KernelInfo &info : kKernelTable)
    EXPECT_EQ(std::count(kernels.begin(), kernels.end(), info.kernel), 1)
        << info.name;
  EXPECT_EQ(kernels.size(), std::size(kKernelTable));
}

TEST(CudaKernelTableTest, AcceptsAPlanOfWiredKernels) {
  exec::Plan plan = parseStandalone(normThen("softmax"));
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    int64_t scratch = 0;
    Expected<cuda::DeviceStep> step = cuda::prepareDeviceStep(plan, i, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
  }
}

TEST(CudaKernelTableTest, PreparesBf16Activations) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  b.plan["precision"] = "bf16";
  int64_t scale = b.param("scale", {8}), bias = b.param("bias", {8});
  int64_t x = b.arena({4, 8}, "BF16"), y = b.arena({4, 8}, "BF16");
  b.step("layer_norm", {x, -1, scale, bias}, {y}, {{"epsilon", 1e-6}});
  exec::Plan plan = parseStandalone(b);
  int64_t scratch = 0;
  Expected<cuda::DeviceStep> step = cuda::prepareDeviceStep(plan, 0, scratch);
  EXPECT_TRUE(step.ok()) << step.message();
}

TEST(CudaKernelTableTest, RefusesMixedActivationTypes) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  b.plan["precision"] = "bf16";
  int64_t scale = b.param("scale", {8}), bias = b.param("bias", {8});
  int64_t x = b.arena({4, 8}, "BF16"), y = b.arena({4, 8}, "F32");
  b.step("layer_norm", {x, -1, scale, bias}, {y}, {{"epsilon", 1e-6}});
  EXPECT_EQ(prepareError(b, 0), "tiny.mxa: steps[0] (layer_norm): result 0 "
                                "(y) is [4, 8] F32 but the kernel needs [4, "
                                "8] BF16");
  b.plan["values"][x]["dtype"] = "I32";
  EXPECT_EQ(prepareError(b, 0), "tiny.mxa: steps[0] (layer_norm): operand 0 "
                                "(x) is [4, 8] I32 but the CUDA kernel needs "
                                "F32 or BF16");
}

TEST(CudaKernelTableTest, RefusesActivationsWithoutAKernel) {
  EXPECT_EQ(prepareError(normThen("activation", {{"kind", "relu"}}), 1),
            "tiny.mxa: steps[1] (activation): activation 'relu' has no CUDA "
            "implementation yet (only gelu, gelu_erf and tanh)");
  PlanBuilder b = normThen("softmax");
  int64_t w = b.param("w", {8, 8});
  int64_t y = b.plan["outputs"][0]["value"], z = b.arena({4, 8});
  b.step("dense", {y, w, -1}, {z},
         {{"activation", "relu"}, {"transpose_w", false}});
  EXPECT_EQ(prepareError(b, 2), "tiny.mxa: steps[2] (dense): activation "
                                "'relu' has no cuBLASLt epilogue (only none "
                                "and gelu)");
}

/// A dropout attention step over q = k = v [2, 4, 8] whose seed and step are
/// the given values.
PlanBuilder attentionWith(int64_t headDim, bool seedIsInput) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  int64_t ids = b.input("ids", {2, 4});
  int64_t seed = seedIsInput ? b.input("seed", {}) : b.arena({}, "I32");
  int64_t step = b.input("step", {});
  int64_t q = b.arena({2, 4, 8}), y = b.arena({2, 4, 8});
  b.step("attention", {q, q, q, ids, seed, step}, {y},
         {{"num_heads", 8 / headDim},
          {"head_dim", headDim},
          {"pad_id", 0},
          {"causal", false},
          {"dropout_rate", 0.1},
          {"stream", 1}});
  return b;
}

TEST(CudaKernelTableTest, ChecksAttention) {
  exec::Plan plan = parseStandalone(attentionWith(4, true));
  int64_t scratch = 0;
  Expected<cuda::DeviceStep> step = cuda::prepareDeviceStep(plan, 0, scratch);
  EXPECT_TRUE(step.ok()) << step.message();
  EXPECT_EQ(prepareError(attentionWith(4, false), 0),
            "tiny.mxa: steps[0] (attention): operand 4 (seed) must be a plan "
            "input: the CUDA kernel reads it on the host");
}

TEST(CudaKernelTableTest, ReservesScratchForTheBf16Products) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  b.plan["precision"] = "bf16";
  int64_t w = b.param("w", {8, 3});
  int64_t x = b.arena({5, 8}, "BF16"), y = b.arena({5, 3}, "BF16");
  b.step("dense", {x, w, -1}, {y},
         {{"activation", "gelu"}, {"transpose_w", false}});
  auto scratchOf = [&](PlanBuilder &builder) {
    exec::Plan plan = parseStandalone(builder);
    int64_t scratch = 0;
    Expected<cuda::DeviceStep> step = cuda::prepareDeviceStep(plan, 0, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
    return scratch;
  };
  // The tensor cores read the weight rounded to bf16: 24 values in 12
  // floats, aligned to 64 floats; x and y are used in place.
  EXPECT_EQ(scratchOf(b), 64 * 4);
  // An F32 result (the router's logits) likewise.
  b.plan["values"][y]["dtype"] = "F32";
  EXPECT_EQ(scratchOf(b), 64 * 4);
  // An F32 x with a BF16 y (the router input's gradient): an fp32 product
  // into 15 floats, rounded once.
  b.plan["values"][x]["dtype"] = "F32";
  b.plan["values"][y]["dtype"] = "BF16";
  EXPECT_EQ(scratchOf(b), 15 * 4);

  // Linear mixing over x [2, 4, 8]: W_s (16 values) and W_h (64) rounded to
  // bf16, then X W_h (64 values), each block aligned to 64 floats.
  PlanBuilder mix;
  mix.plan["target"] = "cuda";
  mix.plan["precision"] = "bf16";
  int64_t ws = mix.param("ws", {4, 4}), wh = mix.param("wh", {8, 8});
  int64_t mx = mix.arena({2, 4, 8}, "BF16"), my = mix.arena({2, 4, 8}, "BF16");
  mix.step("linear_mix", {mx, ws, wh}, {my});
  EXPECT_EQ(scratchOf(mix), 3 * 64 * 4);
}

/// probs [8, 2] -> `routing` -> experts of width d and hidden width f (4
/// and 6 unless given) over 8 slots (2 experts x capacity 4, or 8 tokens x
/// top-1) -> experts_grad.
PlanBuilder expertsAfter(const std::string &routing, json attrs, int64_t d = 4,
                         int64_t f = 6) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  int64_t probs = b.input("probs", {8, 2}, false, "F32");
  int64_t w1 = b.param("w1", {2, d, f}), w2 = b.param("w2", {2, f, d});
  int64_t tokens = b.arena({8}, "I32"), gates = b.arena({8}),
          offsets = b.arena({3}, "I32");
  int64_t xd = b.arena({8, d}), yd = b.arena({8, d}), dxd = b.arena({8, d}),
          dw1 = b.arena({2, d, f}), db1 = b.arena({2, f}),
          dw2 = b.arena({2, f, d}), db2 = b.arena({2, d});
  b.step(routing, {probs}, {tokens, gates, offsets}, attrs);
  b.step("experts", {xd, tokens, offsets, w1, -1, w2, -1}, {yd},
         {{"activation", "gelu"}});
  b.step("experts_grad", {xd, tokens, offsets, w1, -1, w2, yd},
         {dxd, dw1, db1, dw2, db2}, {{"activation", "gelu"}});
  return b;
}

TEST(CudaTargetInfoTest, DenseFusesExactlyTheActivationsItClaims) {
  const TargetInfo *cuda = findTarget("cuda");
  ASSERT_NE(cuda, nullptr);
  for (std::string_view kind : ActivationKinds) {
    exec::Plan plan =
        parseStandalone(denseWithActivation("cuda", std::string(kind)));
    int64_t scratch = 0;
    Expected<cuda::DeviceStep> step = cuda::prepareDeviceStep(plan, 0, scratch);
    EXPECT_EQ(step.ok(), kind == "none" || cuda->fusesDenseActivation(kind))
        << kind << ": " << (step.ok() ? "prepared" : step.message());
  }
}

TEST(CudaTargetInfoTest, ExpertsGatherAndTakeBf16AsClaimed) {
  // The experts of a capacity routing reading the token rows [8, 4]
  // through the routing (gather), in a bf16 plan.
  PlanBuilder b =
      expertsAfter("route_tokens_choose", {{"groups", 1},
                                           {"tokens_per_group", 8},
                                           {"k", 1},
                                           {"capacity", 4},
                                           {"batch_prioritized", false}});
  b.plan["steps"][1]["attrs"]["gather"] = true;
  exec::Plan plan = parseStandalone(b);
  int64_t scratch = 0;
  Expected<cuda::DeviceStep> step = cuda::prepareDeviceStep(plan, 1, scratch);
  EXPECT_EQ(step.ok(), findTarget("cuda")->expertsGather)
      << (step.ok() ? "prepared" : step.message());
  PlanBuilder bf16 = normThen("softmax", json::object(), "BF16");
  plan = parseStandalone(bf16);
  step = cuda::prepareDeviceStep(plan, 1, scratch);
  EXPECT_EQ(step.ok(), findTarget("cuda")->bf16)
      << (step.ok() ? "prepared" : step.message());
}

TEST(CudaKernelTableTest, ChoosesTheExpertsKernelsByRouting) {
  // A capacity routing: strided batches, which need bf16-widening scratch
  // only in bf16 plans; P, dP, dyd [8, 6 | 4] aligned to 64 floats each.
  exec::Plan plan = parseStandalone(
      expertsAfter("route_tokens_choose", {{"groups", 1},
                                           {"tokens_per_group", 8},
                                           {"k", 1},
                                           {"capacity", 4},
                                           {"batch_prioritized", false}}));
  int64_t scratch = 0;
  for (size_t index : {1, 2}) {
    Expected<cuda::DeviceStep> step =
        cuda::prepareDeviceStep(plan, index, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
  }
  EXPECT_EQ(scratch, 3 * 64 * 4);
  // Sigmoid top-k: the grouped kernels, whose scratch is P and dP alone.
  plan = parseStandalone(expertsAfter("route_sigmoid_topk", {{"k", 1}}));
  scratch = 0;
  for (size_t index : {1, 2}) {
    Expected<cuda::DeviceStep> step =
        cuda::prepareDeviceStep(plan, index, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
  }
  EXPECT_EQ(scratch, 2 * 8 * 6 * 4);
  // The grouped epilogues know no tanh.
  PlanBuilder tanh = expertsAfter("route_sigmoid_topk", {{"k", 1}});
  tanh.plan["steps"][1]["attrs"]["activation"] = "tanh";
  EXPECT_EQ(prepareError(tanh, 1),
            "tiny.mxa: steps[1] (experts): activation 'tanh' has no "
            "grouped-experts epilogue (only none, relu and gelu)");
}

/// `b` (of expertsAfter) with the dispatch fused in: experts and
/// experts_grad read the token rows x `rows` through the tokens (`gather`).
PlanBuilder gathering(PlanBuilder b, const std::vector<int64_t> &rows) {
  int64_t x = b.arena(rows);
  for (size_t index : {1, 2}) {
    b.plan["steps"][index]["operands"][0] = x;
    b.plan["steps"][index]["attrs"]["gather"] = true;
  }
  return b;
}

/// expertsAfter with the dispatch fused in (see gathering).
PlanBuilder gatheringExpertsAfter(const std::string &routing, json attrs,
                                  const std::vector<int64_t> &rows = {5, 4}) {
  return gathering(expertsAfter(routing, std::move(attrs)), rows);
}

/// The scratch bytes of preparing steps 1 and 2 of `b`'s plan, or -1 when
/// one fails.
int64_t expertsScratch(const PlanBuilder &b) {
  exec::Plan plan = parseStandalone(b);
  int64_t scratch = 0;
  for (size_t index : {1, 2}) {
    Expected<cuda::DeviceStep> step =
        cuda::prepareDeviceStep(plan, index, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
    if (!step.ok())
      return -1;
  }
  return scratch;
}

TEST(CudaKernelTableTest, PreparesGatheringExperts) {
  json capacity = {{"groups", 1},
                   {"tokens_per_group", 8},
                   {"k", 1},
                   {"capacity", 4},
                   {"batch_prioritized", false}};
  // A capacity routing gathers the 8 slot rows [8, 4] (aligned to 64
  // floats) into scratch after P, dP and dyd.
  EXPECT_EQ(
      expertsScratch(gatheringExpertsAfter("route_tokens_choose", capacity)),
      4 * 64 * 4);
  // Any number of token rows, fewer or more than the slots.
  EXPECT_EQ(expertsScratch(gatheringExpertsAfter("route_tokens_choose",
                                                 capacity, {12, 4})),
            4 * 64 * 4);
  // The grouped kernels gather in their loads: P and dP alone.
  EXPECT_EQ(
      expertsScratch(gatheringExpertsAfter("route_sigmoid_topk", {{"k", 1}})),
      2 * 8 * 6 * 4);
  // An explicit `gather = false` is the slot rows' form.
  PlanBuilder slotRows = expertsAfter("route_sigmoid_topk", {{"k", 1}});
  slotRows.plan["steps"][1]["attrs"]["gather"] = false;
  EXPECT_EQ(expertsScratch(slotRows), 2 * 8 * 6 * 4);
}

/// `b` as a bf16 plan: the rows, results and slot gradients of its experts
/// and experts_grad steps BF16, the weights and their gradients F32.
PlanBuilder withBf16Experts(PlanBuilder b) {
  b.plan["precision"] = "bf16";
  for (const json &step : b.plan["steps"]) {
    if (step["kernel"] == "experts") {
      b.plan["values"][step["operands"][0].get<int64_t>()]["dtype"] = "BF16";
      b.plan["values"][step["results"][0].get<int64_t>()]["dtype"] = "BF16";
    } else if (step["kernel"] == "experts_grad") {
      b.plan["values"][step["operands"][6].get<int64_t>()]["dtype"] = "BF16";
      b.plan["values"][step["results"][0].get<int64_t>()]["dtype"] = "BF16";
    }
  }
  return b;
}

/// The scratch bytes of preparing step `index` of `b`'s plan alone.
int64_t stepScratch(const PlanBuilder &b, size_t index) {
  exec::Plan plan = parseStandalone(b);
  int64_t scratch = 0;
  Expected<cuda::DeviceStep> step =
      cuda::prepareDeviceStep(plan, index, scratch);
  EXPECT_TRUE(step.ok()) << step.message();
  return step.ok() ? scratch : -1;
}

TEST(CudaKernelTableTest, ReservesScratchForBf16CapacityExperts) {
  json capacity = {{"groups", 1},
                   {"tokens_per_group", 8},
                   {"k", 1},
                   {"capacity", 4},
                   {"batch_prioritized", false}};
  // Width 8, hidden width 40, 8 slots: fp32 keeps the hidden layer [8, 40]
  // (320 floats); the gradient P, dP and the zeroed copy of dyd [8, 8] (64
  // floats).
  PlanBuilder fp32 = expertsAfter("route_tokens_choose", capacity, 8, 40);
  EXPECT_EQ(stepScratch(fp32, 1), 320 * 4);
  EXPECT_EQ(stepScratch(fp32, 2), (2 * 320 + 64) * 4);
  // bf16 on the tensor cores: w1 and w2 (640 values each) rounded to bf16 in
  // 320 floats each; then the bf16 hidden layer (320 values in 160 floats,
  // aligned to 192), or P, dP and the zeroed bf16 copy of dyd (64 values in
  // 32 floats, aligned to 64); xd, yd and dxd in place.
  PlanBuilder bf16 = withBf16Experts(fp32);
  EXPECT_EQ(stepScratch(bf16, 1), (2 * 320 + 192) * 4);
  EXPECT_EQ(stepScratch(bf16, 2), (2 * 320 + 2 * 192 + 64) * 4);
  // Gathering from bf16 token rows [5, 8] adds the bf16 slot rows [8, 8].
  PlanBuilder gathered = withBf16Experts(
      gathering(expertsAfter("route_tokens_choose", capacity, 8, 40), {5, 8}));
  EXPECT_EQ(stepScratch(gathered, 1), (2 * 320 + 192 + 64) * 4);
  EXPECT_EQ(stepScratch(gathered, 2), (2 * 320 + 2 * 192 + 2 * 64) * 4);
  // The weights' gradients stay F32.
  PlanBuilder bf16Gradient =
      withBf16Experts(expertsAfter("route_tokens_choose", capacity));
  bf16Gradient.plan["values"][bf16Gradient.plan["steps"][2]["results"][1]
                                  .get<int64_t>()]["dtype"] = "BF16";
  EXPECT_EQ(prepareError(bf16Gradient, 2),
            "tiny.mxa: steps[2] (experts_grad): result 1 (dw1) is [2, 4, 6] "
            "BF16 but the kernel needs [2, 4, 6] F32");
}

TEST(CudaKernelTableTest, ChecksTheRowsOfGatheringExperts) {
  json capacity = {{"groups", 1},
                   {"tokens_per_group", 8},
                   {"k", 1},
                   {"capacity", 4},
                   {"batch_prioritized", false}};
  for (const char *routing : {"route_tokens_choose", "route_sigmoid_topk"}) {
    SCOPED_TRACE(routing);
    json attrs = std::string(routing) == "route_sigmoid_topk" ? json{{"k", 1}}
                                                              : capacity;
    // The token rows' width is the experts' input width.
    EXPECT_EQ(prepareError(gatheringExpertsAfter(routing, attrs, {5, 3}), 1),
              "tiny.mxa: steps[1] (experts): operand 3 (w1) is [2, 4, 6] F32 "
              "but the kernel needs [2, 3, 6] F32");
    EXPECT_EQ(
        prepareError(gatheringExpertsAfter(routing, attrs, {5, 4, 1}), 2),
        "tiny.mxa: steps[2] (experts_grad): operand 0 (xd) is [5, 4, 1] F32 "
        "but the kernel needs a rank-2 F32 tensor");
    // Without `gather` operand 0 must be the slot rows.
    PlanBuilder slotRows = gatheringExpertsAfter(routing, attrs);
    slotRows.plan["steps"][1]["attrs"]["gather"] = false;
    EXPECT_EQ(prepareError(slotRows, 1),
              "tiny.mxa: steps[1] (experts): operand 0 (xd) is [5, 4] F32 "
              "but the kernel needs [8, 4] F32");
  }
}

TEST(CudaKernelTableTest, ReadsNoiseKeysFromInputsOnly) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  int64_t seed = b.input("seed", {});
  int64_t x = b.arena({4, 8}), step = b.arena({}, "I32"), y = b.arena({4, 8});
  b.step("random_scale", {x, seed, step}, {y},
         {{"kind", "dropout"}, {"rate", 0.1}, {"stream", 1}});
  EXPECT_EQ(prepareError(b, 0),
            "tiny.mxa: steps[0] (random_scale): operand 2 (step) must be a "
            "plan input or the result of a noise_counter step: the CUDA "
            "kernel reads it on the host");
}

/// noise_counter (micro_step an input unless `microInArena`), then dropout
/// on x [2, 4, 4] and dropout of attention probabilities over it, both
/// keyed by the counter.
PlanBuilder countedNoise(bool microInArena) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  int64_t seed = b.input("seed", {}), step = b.input("step", {});
  int64_t micro = microInArena ? b.arena({}, "I32") : b.input("micro_step", {});
  int64_t x = b.input("x", {2, 4, 4}, false, "F32"),
          ids = b.input("ids", {2, 4});
  int64_t counter = b.arena({}, "I32"), y = b.arena({2, 4, 4}),
          a = b.arena({2, 4, 4});
  b.step("noise_counter", {step, micro}, {counter}, {{"micro_steps", 2}});
  b.step("random_scale", {x, seed, counter}, {y},
         {{"kind", "dropout"}, {"rate", 0.1}, {"stream", 1}});
  b.step("attention", {y, y, y, ids, seed, counter}, {a},
         {{"num_heads", 2},
          {"head_dim", 2},
          {"pad_id", 0},
          {"causal", false},
          {"dropout_rate", 0.1},
          {"stream", 2}});
  b.output("a", a);
  return b;
}

TEST(CudaKernelTableTest, ReadsNoiseCountersOfMicroStepsOnTheHost) {
  exec::Plan plan = parseStandalone(countedNoise(false));
  int64_t scratch = 0;
  for (size_t index : {0, 1, 2}) {
    Expected<cuda::DeviceStep> step =
        cuda::prepareDeviceStep(plan, index, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
  }
  for (size_t index : {1, 2})
    EXPECT_THAT(prepareError(countedNoise(true), index),
                ::testing::EndsWith(
                    "(step) comes from a noise_counter step the CUDA kernel "
                    "cannot read: tiny.mxa: steps[0] (noise_counter): operand "
                    "1 (micro_step) must be a plan input: the CUDA kernel "
                    "reads it on the host"));
}

/// accumulate_gradient then adamw over p [4] with `microSteps` micro-steps;
/// adamw's operand micro_step only `withMicro`.
PlanBuilder accumulatedAdamW(int64_t microSteps, bool withMicro) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  int64_t p = b.param("p", {4}), accum = b.param("accum", {4});
  int64_t m = b.state("adam_m/p", {4}), v = b.state("adam_v/p", {4});
  int64_t lr = b.input("learning_rate", {}, false, "F32");
  int64_t step = b.input("step", {}), micro = b.input("micro_step", {});
  int64_t g = b.arena({4}), average = b.arena({4});
  b.step("accumulate_gradient", {g, micro}, {accum, average},
         {{"micro_steps", microSteps}});
  b.step("adamw", {average, lr, step, -1, withMicro ? micro : -1}, {p, m, v},
         {{"b1", 0.9},
          {"b2", 0.999},
          {"eps", 1e-6},
          {"weight_decay", 0.0},
          {"max_norm", 0.0},
          {"micro_steps", microSteps}});
  return b;
}

TEST(CudaKernelTableTest, AccumulatesGradientsOverMicroSteps) {
  exec::Plan plan = parseStandalone(accumulatedAdamW(2, true));
  int64_t scratch = 0;
  for (size_t index : {0, 1}) {
    Expected<cuda::DeviceStep> step =
        cuda::prepareDeviceStep(plan, index, scratch);
    EXPECT_TRUE(step.ok()) << step.message();
  }
  EXPECT_EQ(prepareError(accumulatedAdamW(2, false), 1),
            "tiny.mxa: steps[1] (adamw): the operand micro_step must be "
            "present exactly when micro_steps > 1");
  EXPECT_EQ(prepareError(accumulatedAdamW(0, true), 0),
            "tiny.mxa: steps[0] (accumulate_gradient): attribute "
            "'micro_steps' must be at least 1, not 0");
}

TEST(CudaKernelTableTest, ReadsMicroStepsFromInputsOnly) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  int64_t step = b.input("step", {});
  int64_t micro = b.arena({}, "I32"), counter = b.arena({}, "I32");
  b.step("noise_counter", {step, micro}, {counter}, {{"micro_steps", 2}});
  EXPECT_EQ(prepareError(b, 0),
            "tiny.mxa: steps[0] (noise_counter): operand 1 (micro_step) must "
            "be a plan input: the CUDA kernel reads it on the host");
}

/// x [3, 5, 7] of `dtype` -> spectral_mix (fourier and hartley) and
/// structured_mix (circulant and Toeplitz) by `algorithm` -> the structured
/// gradients.
PlanBuilder mixingPlan(const std::string &algorithm, const std::string &dtype) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  if (dtype == "BF16")
    b.plan["precision"] = "bf16";
  auto act = [&] { return b.arena({3, 5, 7}, dtype); };
  int64_t x = act();
  for (bool hartley : {false, true})
    b.step("spectral_mix", {x}, {act()},
           {{"hartley", hartley}, {"algorithm", algorithm}});
  for (bool toeplitz : {false, true}) {
    std::string kind = toeplitz ? "toeplitz" : "circulant";
    int64_t vs = b.param(kind + "/vs", {toeplitz ? 9 : 5}),
            vh = b.param(kind + "/vh", {toeplitz ? 13 : 7});
    int64_t y = act();
    b.step("structured_mix", {x, vs, vh}, {y},
           {{"toeplitz", toeplitz}, {"algorithm", algorithm}});
    b.step("structured_mix_grad", {x, vs, vh, y},
           {act(), b.arena({toeplitz ? 9 : 5}), b.arena({toeplitz ? 13 : 7})},
           {{"toeplitz", toeplitz}});
  }
  return b;
}

// The tiny models' plans pick one algorithm per mixer; both are prepared here.
TEST(CudaKernelTableTest, PreparesEveryMixingAlgorithm) {
  for (const char *algorithm : {"fft", "matmul"})
    for (const char *dtype : {"F32", "BF16"}) {
      SCOPED_TRACE(std::string(algorithm) + " " + dtype);
      exec::Plan plan = parseStandalone(mixingPlan(algorithm, dtype));
      ASSERT_EQ(plan.steps.size(), 6u);
      int64_t scratch = 0;
      for (size_t i = 0; i < plan.steps.size(); ++i) {
        Expected<cuda::DeviceStep> step =
            cuda::prepareDeviceStep(plan, i, scratch);
        EXPECT_TRUE(step.ok()) << step.message();
      }
      // bf16 steps widen into the scratch: x and dy, and the fp32 dx (105
      // floats each, aligned to 128); fp32 steps need none.
      EXPECT_EQ(scratch, std::string(dtype) == "BF16" ? 3 * 128 * 4 : 0);
    }
}

TEST(CudaKernelTableTest, ChecksTheMixingKernels) {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  b.plan["precision"] = "bf16";
  int64_t x = b.arena({3, 5, 7}, "BF16"), y = b.arena({3, 5, 7}, "BF16"),
          z = b.arena({3, 5, 7});
  // The Toeplitz hidden kernel needs 2 * 7 - 1 entries.
  int64_t vs = b.param("vs", {9}), vh = b.param("vh", {7});
  b.step("structured_mix", {x, vs, vh}, {y},
         {{"toeplitz", true}, {"algorithm", "fft"}});
  b.step("spectral_mix", {x}, {z},
         {{"hartley", false}, {"algorithm", "matmul"}});
  EXPECT_EQ(prepareError(b, 0),
            "tiny.mxa: steps[0] (structured_mix): operand 2 (vh) is [7] F32 "
            "but the kernel needs [13] F32");
  EXPECT_EQ(prepareError(b, 1),
            "tiny.mxa: steps[1] (spectral_mix): result 0 (y) is [3, 5, 7] "
            "F32 but the kernel needs [3, 5, 7] BF16");
}

TEST(CudaKernelTableTest, ExecutorRunsCudaPlansOnly) {
  PlanBuilder b = normThen("softmax");
  b.plan["target"] = "cpu";
  Expected<std::unique_ptr<cuda::Executor>> executor =
      cuda::Executor::create(parseStandalone(b));
  ASSERT_FALSE(executor.ok());
  EXPECT_EQ(executor.message(), "tiny.mxa: the plan targets 'cpu'; the CUDA "
                                "executor runs 'cuda' plans");
}

TEST(CudaKernelTableTest, NamesTheMissingDevice) {
  Status status = cuda::checkDevice();
  if (status.ok())
    GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THAT(status.message(),
              StartsWith("no CUDA device (cudaGetDeviceCount: "));
  Expected<std::unique_ptr<cuda::Executor>> executor =
      cuda::Executor::create(parseStandalone(normThen("softmax")));
  ASSERT_FALSE(executor.ok());
  EXPECT_THAT(executor.message(),
              StartsWith("tiny.mxa: no CUDA device (cudaGetDeviceCount: "));
}

} // namespace

/// The cuda plans mixc compiles (CTest's MixerCudaTinyPlans passes their
/// folder in MIXER_CUDA_PLANS): the inference and training steps of
/// bert_tiny, the MoE models, the spectral and structured mixers and
/// sparse_mixer_tiny with gradient accumulation, fp32 and bf16. Every
/// kernel has a CUDA implementation and every step prepares, which is all the
/// executor checks before it needs a device.
TEST(CudaPlanFileTest, WiresEveryStep) {
  const char *folder = std::getenv("MIXER_CUDA_PLANS");
  if (!folder)
    GTEST_SKIP() << "MIXER_CUDA_PLANS is not set";
  std::vector<std::string> names;
  for (const char *precision : {"fp32", "bf16"}) {
    for (const char *model :
         {"bert_tiny", "sparse_mixer_tiny", "fast_sparse_mixer_tiny",
          "tokens_choose_tiny", "sigma_moe_tiny", "fnet_tiny", "hartley_tiny",
          "circulant_tiny", "toeplitz_tiny", "sparse_mixer_accumulation_tiny"})
      names.push_back(std::string(model) + "-train-" + precision);
    for (const char *model :
         {"bert_tiny", "sparse_mixer_tiny", "fast_sparse_mixer_tiny",
          "tokens_choose_tiny", "sigma_moe_tiny", "fnet_tiny", "hartley_tiny",
          "circulant_tiny", "toeplitz_tiny"})
      names.push_back(std::string(model) + "-infer-" + precision);
  }
  for (const std::string &name : names) {
    SCOPED_TRACE(name);
    Expected<exec::Plan> plan =
        exec::Plan::load(std::string(folder) + "/" + name + ".mxa");
    ASSERT_TRUE(plan.ok()) << plan.message();
    EXPECT_EQ(plan->target, "cuda");
    int64_t scratch = 0;
    for (size_t i = 0; i < plan->steps.size(); ++i) {
      Expected<cuda::DeviceStep> step =
          cuda::prepareDeviceStep(*plan, i, scratch);
      EXPECT_TRUE(step.ok()) << step.message();
    }
  }
}
