//===- ExecutorTest.cpp - Binding and running hand-written plans ----------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/cpu/Executor.h"
#include "runtime/cpu/KernelTable.h"
#include "runtime/cpu/KernelTableFamilies.h"
#include "runtime/exec/Binding.h"
#include "runtime/exec/StepContext.h"
#include "runtime/support/KernelVocabulary.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

constexpr double kTol = 1e-5;

double gelu(double x) {
  return 0.5 * x *
         (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/// The parameters of embedNormDensePlan(), uniform in [-1, 1); the norm
/// scale and biases are drawn too so that their wiring shows.
std::vector<io::HostTensor> tinyParams() {
  return {randomTensor("embedder/word", {5, 4}, 1),
          randomTensor("embedder/position", {1, 3, 4}, 2),
          randomTensor("embedder/type", {2, 4}, 3),
          randomTensor("norm/scale", {4}, 4, 0.5f, 1.5f),
          randomTensor("norm/bias", {4}, 5),
          randomTensor("dense/kernel", {4, 3}, 6),
          randomTensor("dense/bias", {3}, 7)};
}

const std::vector<int64_t> kIds = {1, 4, 0, 2, 3, 1};
const std::vector<int64_t> kTypeIds = {0, 1, 1, 0, 0, 1};

/// embed -> LayerNorm(eps 1e-6) over [B*S, 4] rows, in double.
std::vector<double> referenceNormed(const std::vector<io::HostTensor> &p,
                                    const std::vector<int64_t> &ids,
                                    const std::vector<int64_t> &typeIds) {
  const float *word = p[0].as<float>(), *pos = p[1].as<float>(),
              *type = p[2].as<float>(), *scale = p[3].as<float>(),
              *bias = p[4].as<float>();
  std::vector<double> out;
  for (int64_t t = 0; t < 6; ++t) {
    double e[4], mean = 0, squares = 0;
    for (int c = 0; c < 4; ++c) {
      e[c] = double(word[ids[t] * 4 + c]) + pos[(t % 3) * 4 + c] +
             type[typeIds[t] * 4 + c];
      mean += e[c] / 4;
      squares += e[c] * e[c] / 4;
    }
    double var = std::max(0.0, squares - mean * mean);
    for (int c = 0; c < 4; ++c)
      out.push_back((e[c] - mean) / std::sqrt(var + 1e-6) * scale[c] + bias[c]);
  }
  return out;
}

/// The whole tiny model: GELU(LN(embed) * W + b), [2, 3, 3].
std::vector<double> referenceTiny(const std::vector<io::HostTensor> &p,
                                  const std::vector<int64_t> &ids,
                                  const std::vector<int64_t> &typeIds) {
  std::vector<double> h = referenceNormed(p, ids, typeIds);
  const float *w = p[5].as<float>(), *b = p[6].as<float>();
  std::vector<double> y;
  for (int64_t t = 0; t < 6; ++t)
    for (int n = 0; n < 3; ++n) {
      double sum = b[n];
      for (int k = 0; k < 4; ++k)
        sum += h[t * 4 + k] * w[k * 3 + n];
      y.push_back(gelu(sum));
    }
  return y;
}

/// Loads `plan` as an artifact and creates an executor; fails the test on
/// any error.
class ExecutorTest : public ::testing::Test {
protected:
  Expected<cpu::Executor> create(const json &plan) {
    path = writeArtifact(dir, "tiny.mxa", plan.dump());
    Expected<Plan> parsed = Plan::load(path);
    if (!parsed)
      return parsed.takeStatus();
    return cpu::Executor::create(*parsed);
  }

  cpu::Executor ready(const json &plan) {
    Expected<cpu::Executor> executor = create(plan);
    EXPECT_TRUE(executor.ok()) << executor.message();
    Status bound = executor->bindParams(tinyParams(), "w.safetensors");
    EXPECT_TRUE(bound.ok()) << bound.message();
    return std::move(*executor);
  }

  TempDir dir;
  std::string path;
};

TEST_F(ExecutorTest, EmbedNormDenseMatchesAPlainReference) {
  cpu::Executor executor = ready(embedNormDensePlan());
  Status bound = executor.bindInputs({intTensor("input_ids", {2, 3}, kIds),
                                      intTensor("type_ids", {2, 3}, kTypeIds)},
                                     "batch.npz");
  ASSERT_TRUE(bound.ok()) << bound.message();
  Status ran = executor.run();
  ASSERT_TRUE(ran.ok()) << ran.message();
  std::vector<io::HostTensor> outputs = executor.outputs();
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(outputs[0].name, "y");
  EXPECT_EQ(outputs[0].dtype, io::DType::F32);
  EXPECT_EQ(outputs[0].shape, (std::vector<int64_t>{2, 3, 3}));
  expectNear(floats(outputs[0]), referenceTiny(tinyParams(), kIds, kTypeIds),
             kTol, "y");
}

TEST_F(ExecutorTest, OptionalInputsDefaultToZerosAndI64IsAccepted) {
  cpu::Executor executor = ready(embedNormDensePlan());
  Status bound = executor.bindInputs(
      {intTensor("input_ids", {2, 3}, kIds, io::DType::I64)}, "batch.npz");
  ASSERT_TRUE(bound.ok()) << bound.message();
  ASSERT_TRUE(executor.run().ok());
  expectNear(floats(executor.outputs()[0]),
             referenceTiny(tinyParams(), kIds, std::vector<int64_t>(6, 0)),
             kTol, "y");
}

TEST_F(ExecutorTest, RebindingInputsReusesTheBuffers) {
  cpu::Executor executor = ready(embedNormDensePlan());
  std::vector<int64_t> otherIds = {4, 4, 3, 0, 1, 2};
  ASSERT_TRUE(executor
                  .bindInputs({intTensor("input_ids", {2, 3}, kIds),
                               intTensor("type_ids", {2, 3}, kTypeIds)},
                              "a.npz")
                  .ok());
  ASSERT_TRUE(executor.run().ok());
  // Dropping type_ids must reset it to zeros, not keep the last batch's.
  ASSERT_TRUE(
      executor.bindInputs({intTensor("input_ids", {2, 3}, otherIds)}, "b.npz")
          .ok());
  ASSERT_TRUE(executor.run().ok());
  expectNear(floats(executor.outputs()[0]),
             referenceTiny(tinyParams(), otherIds, std::vector<int64_t>(6, 0)),
             kTol, "y");
}

TEST_F(ExecutorTest, ArenaValuesMayShareStorage) {
  // e and the dense result share bytes [0, 72); h and the softmax result
  // share [128, 200); the softmax reads the dense result through a [6, 3]
  // view of the same bytes.
  PlanBuilder b;
  int64_t word = b.param("embedder/word", {5, 4});
  int64_t pos = b.param("embedder/position", {1, 3, 4});
  int64_t type = b.param("embedder/type", {2, 4});
  int64_t scale = b.param("norm/scale", {4});
  int64_t bias = b.param("norm/bias", {4});
  int64_t w = b.param("dense/kernel", {4, 3});
  int64_t wb = b.param("dense/bias", {3});
  int64_t ids = b.input("input_ids", {2, 3});
  int64_t typeIds = b.input("type_ids", {2, 3}, true);
  int64_t e = b.arena({2, 3, 4}, "F32", 0);
  int64_t h = b.arena({2, 3, 4}, "F32", 128);
  int64_t y = b.arena({2, 3, 3}, "F32", 0);
  int64_t rows = b.view(y, {6, 3});
  int64_t p = b.arena({6, 3}, "F32", 128);
  b.step("embed", {ids, typeIds, word, pos, type}, {e});
  b.step("layer_norm", {e, -1, scale, bias}, {h}, {{"epsilon", 1e-6}});
  b.step("dense", {h, w, wb}, {y},
         {{"activation", "gelu"}, {"transpose_w", false}});
  b.step("softmax", {rows}, {p});
  b.output("probs", p);
  b.output("logits", rows);
  EXPECT_EQ(b.plan["arena_bytes"], 224);

  cpu::Executor executor = ready(b.plan);
  ASSERT_TRUE(executor
                  .bindInputs({intTensor("input_ids", {2, 3}, kIds),
                               intTensor("type_ids", {2, 3}, kTypeIds)},
                              "batch.npz")
                  .ok());
  Status ran = executor.run();
  ASSERT_TRUE(ran.ok()) << ran.message();
  std::vector<double> logits = referenceTiny(tinyParams(), kIds, kTypeIds);
  std::vector<double> probs;
  for (int r = 0; r < 6; ++r) {
    double sum = 0;
    for (int c = 0; c < 3; ++c)
      sum += std::exp(logits[r * 3 + c]);
    for (int c = 0; c < 3; ++c)
      probs.push_back(std::exp(logits[r * 3 + c]) / sum);
  }
  std::vector<io::HostTensor> outputs = executor.outputs();
  ASSERT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0].name, "probs");
  EXPECT_EQ(outputs[1].name, "logits");
  EXPECT_EQ(outputs[1].shape, (std::vector<int64_t>{6, 3}));
  expectNear(floats(outputs[0]), probs, kTol, "probs");
  expectNear(floats(outputs[1]), logits, kTol, "logits");
}

TEST_F(ExecutorTest, KernelErrorsNameTheStep) {
  cpu::Executor executor = ready(embedNormDensePlan());
  ASSERT_TRUE(
      executor
          .bindInputs({intTensor("input_ids", {2, 3}, {1, 2, 3, 7, 0, 0})},
                      "batch.npz")
          .ok());
  Status ran = executor.run();
  ASSERT_FALSE(ran.ok());
  EXPECT_THAT(ran.message(), StartsWith(path + ": steps[0] (embed): "));
}

TEST_F(ExecutorTest, RunNeedsBoundParametersAndInputs) {
  Expected<cpu::Executor> executor = create(embedNormDensePlan());
  ASSERT_TRUE(executor.ok()) << executor.message();
  Status ran = executor->run();
  ASSERT_FALSE(ran.ok());
  EXPECT_EQ(ran.message(), path + ": the parameters are not bound");
  ASSERT_TRUE(executor->bindParams(tinyParams(), "w.safetensors").ok());
  ran = executor->run();
  ASSERT_FALSE(ran.ok());
  EXPECT_EQ(ran.message(), path + ": the inputs are not bound");
}

TEST_F(ExecutorTest, ParameterBindingReportsEveryProblem) {
  Expected<cpu::Executor> executor = create(embedNormDensePlan());
  ASSERT_TRUE(executor.ok()) << executor.message();
  std::vector<io::HostTensor> params = tinyParams();
  params.erase(params.begin() + 6); // dense/bias
  params[5] = randomTensor("dense/kernel", {3, 4}, 6);
  params[4].dtype = io::DType::I32;
  params.push_back(randomTensor("pooler/kernel", {2, 2}, 9));
  Status bound = executor->bindParams(params, "w.safetensors");
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.message(),
            "w.safetensors: parameter 'norm/bias' has dtype I32 but the "
            "artifact expects F32\n"
            "w.safetensors: parameter 'dense/kernel' has shape [3, 4] but the "
            "artifact expects [4, 3]\n"
            "w.safetensors: missing parameter 'dense/bias' [3] F32\n"
            "w.safetensors: unexpected tensor 'pooler/kernel' [2, 2] F32: the "
            "artifact has no parameter of that name");
  ASSERT_TRUE(
      executor->bindInputs({intTensor("input_ids", {2, 3}, kIds)}, "batch.npz")
          .ok());
  EXPECT_FALSE(executor->run().ok()) << "a failed binding left params bound";
}

TEST_F(ExecutorTest, ExtraParametersAreAcceptedWhenAllowed) {
  Expected<cpu::Executor> executor = create(embedNormDensePlan());
  ASSERT_TRUE(executor.ok()) << executor.message();
  std::vector<io::HostTensor> params = tinyParams();
  params.push_back(randomTensor("optimizer/step", {1}, 9));
  EXPECT_FALSE(executor->bindParams(params, "w.safetensors").ok());
  Status bound = executor->bindParams(params, "w.safetensors", true);
  ASSERT_TRUE(bound.ok()) << bound.message();
  ASSERT_TRUE(
      executor->bindInputs({intTensor("input_ids", {2, 3}, kIds)}, "batch.npz")
          .ok());
  ASSERT_TRUE(executor->run().ok());
  expectNear(floats(executor->outputs()[0]),
             referenceTiny(tinyParams(), kIds, std::vector<int64_t>(6, 0)),
             kTol, "y");
}

TEST_F(ExecutorTest, ManyParameterProblemsAreSummarised) {
  Expected<cpu::Executor> executor = create(embedNormDensePlan());
  ASSERT_TRUE(executor.ok()) << executor.message();
  Status bound = executor->bindParams({}, "empty.safetensors");
  ASSERT_FALSE(bound.ok());
  EXPECT_THAT(bound.message(),
              StartsWith("empty.safetensors: missing parameter "
                         "'embedder/word' [5, 4] F32\n"));
  std::vector<io::HostTensor> many;
  for (int i = 0; i < 20; ++i)
    many.push_back(randomTensor("extra" + std::to_string(i), {1}, i));
  bound = executor->bindParams(many, "many.safetensors");
  ASSERT_FALSE(bound.ok());
  EXPECT_THAT(bound.message(), HasSubstr("\nmany.safetensors: ... and 17 more "
                                         "problems"));
}

TEST_F(ExecutorTest, FiltersRefuseFromTheHeaderWhatBindingCannotTake) {
  Expected<Plan> loaded =
      Plan::load(writeArtifact(dir, "tiny.mxa", embedNormDensePlan().dump()));
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  const Plan &plan = *loaded;
  auto header = [](const std::string &name, std::vector<int64_t> shape,
                   io::DType dtype = io::DType::F32) {
    return io::HostTensor{name, dtype, std::move(shape), {}};
  };
  auto keeps = [](const io::TensorFilter &filter, const io::HostTensor &h) {
    Expected<bool> kept = filter(h);
    EXPECT_TRUE(kept.ok()) << kept.message();
    return kept.ok() && *kept;
  };
  auto refusal = [](const io::TensorFilter &filter, const io::HostTensor &h) {
    Expected<bool> kept = filter(h);
    return kept.ok() ? std::string("kept") : kept.message();
  };

  io::TensorFilter strict = exec::paramsFilter(plan, "w.safetensors", false);
  EXPECT_TRUE(keeps(strict, header("dense/kernel", {4, 3})));
  // Mismatches no larger than the table are read, for bindTable to list.
  EXPECT_TRUE(keeps(strict, header("dense/kernel", {3, 4})));
  EXPECT_TRUE(keeps(strict, header("pooler/kernel", {2, 2})));
  EXPECT_EQ(refusal(strict, header("dense/kernel", {4000, 3})),
            "w.safetensors: parameter 'dense/kernel' has shape [4000, 3] F32 "
            "(48000 bytes) but the artifact expects [4, 3] F32");
  EXPECT_EQ(refusal(strict, header("pooler/kernel", {1 << 20})),
            "w.safetensors: unexpected tensor 'pooler/kernel' [1048576] F32 "
            "(4194304 bytes): the artifact has no parameter of that name");
  EXPECT_EQ(refusal(strict, header("x", {INT64_MAX, 2})),
            "w.safetensors: unexpected tensor 'x' [9223372036854775807, 2] "
            "F32 (9223372036854775807 bytes): the artifact has no parameter "
            "of that name");

  io::TensorFilter lenient = exec::paramsFilter(plan, "w.safetensors", true);
  EXPECT_FALSE(keeps(lenient, header("pooler/kernel", {1 << 20})));

  // Many tensors that each fit still add up to a bound.
  io::TensorFilter repeated = exec::paramsFilter(plan, "w.safetensors", false);
  int64_t tableBytes = 0;
  for (const exec::ParamInfo &param : plan.params)
    tableBytes += param.numel * 4;
  int64_t kept = 0;
  std::string message;
  while (message.empty()) {
    message = refusal(repeated, header("embedder/word", {5, 4}));
    if (message == "kept") {
      kept += 5 * 4 * 4;
      message.clear();
    }
  }
  EXPECT_EQ(kept, 2 * tableBytes / 80 * 80);
  EXPECT_EQ(message, "w.safetensors: holds more than twice the " +
                         std::to_string(tableBytes) +
                         " bytes of the artifact's parameters; not read "
                         "further");

  io::TensorFilter inputs = exec::inputFilter(plan, "batch.npz", false);
  EXPECT_TRUE(keeps(inputs, header("input_ids", {2, 3}, io::DType::I64)));
  EXPECT_EQ(refusal(inputs, header("input_ids", {200, 3}, io::DType::I32)),
            "batch.npz: input 'input_ids' has shape [200, 3] I32 (2400 bytes) "
            "but the artifact expects [2, 3] I32");
}

TEST_F(ExecutorTest, AttributeReadsMustBeDeclaredInTheVocabulary) {
  Expected<Plan> loaded =
      Plan::load(writeArtifact(dir, "tiny.mxa", embedNormDensePlan().dump()));
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  auto dense = std::find_if(
      loaded->steps.begin(), loaded->steps.end(),
      [](const Step &step) { return step.kernel == Kernel::Dense; });
  ASSERT_NE(dense, loaded->steps.end());
  int64_t scratch = 0;
  StepContext context(*loaded, dense - loaded->steps.begin(), scratch);
  EXPECT_NO_THROW((void)context.boolAttr("transpose_w"));
  try {
    (void)context.boolAttr("transpose");
    ADD_FAILURE() << "a misspelt attribute was read";
  } catch (const std::logic_error &error) {
    EXPECT_STREQ(error.what(), "attribute 'transpose' of kernel 'dense' is "
                               "read as a boolean, which Kernels.def does not "
                               "declare");
  }
  EXPECT_THROW((void)context.intAttr("transpose_w"), std::logic_error);
}

TEST_F(ExecutorTest, InputBindingChecksNamesShapesAndDtypes) {
  Expected<cpu::Executor> executor = create(embedNormDensePlan());
  ASSERT_TRUE(executor.ok()) << executor.message();
  Status bound = executor->bindInputs({}, "batch.npz");
  EXPECT_EQ(bound.message(), "batch.npz: missing input 'input_ids' [2, 3] I32");
  bound =
      executor->bindInputs({intTensor("input_ids", {3, 2}, kIds)}, "batch.npz");
  EXPECT_EQ(bound.message(), "batch.npz: input 'input_ids' has shape [3, 2] "
                             "but the artifact expects [2, 3]");
  io::HostTensor real = randomTensor("input_ids", {2, 3}, 1);
  bound = executor->bindInputs({real}, "batch.npz");
  EXPECT_EQ(bound.message(), "batch.npz: input 'input_ids' has dtype F32 but "
                             "the artifact expects I32");
  bound = executor->bindInputs(
      {intTensor("input_ids", {2, 3}, {0, 1, int64_t(1) << 33, 0, 0, 0},
                 io::DType::I64)},
      "batch.npz");
  EXPECT_EQ(bound.message(), "batch.npz: input 'input_ids' holds 8589934592 "
                             "at element 2, outside the int32 range");
  bound = executor->bindInputs(
      {intTensor("input_ids", {2, 3}, kIds), intTensor("labels", {2}, {0, 1})},
      "batch.npz");
  EXPECT_EQ(bound.message(), "batch.npz: unexpected tensor 'labels' [2] I32: "
                             "the artifact has no input of that name");
  EXPECT_TRUE(executor
                  ->bindInputs({intTensor("input_ids", {2, 3}, kIds),
                                intTensor("labels", {2}, {0, 1})},
                               "batch.npz", true)
                  .ok());
}

TEST_F(ExecutorTest, CreateChecksKernelShapesOnce) {
  json plan = embedNormDensePlan();
  // dense/kernel [5, 3] (a view would not do: values must match the param).
  plan["params"][5]["shape"] = {5, 3};
  plan["values"][5]["shape"] = {5, 3};
  Expected<cpu::Executor> executor = create(plan);
  ASSERT_FALSE(executor.ok());
  EXPECT_EQ(executor.message(),
            path + ": steps[2] (dense): operand 1 (w) is [5, 3] F32 but "
                   "operand 0 (x) has 4 features (w is [K, N])");

  plan = embedNormDensePlan();
  plan["values"][11]["shape"] = {2, 3, 4};
  plan["values"][11]["offset"] = 0;
  plan["arena_bytes"] = 328;
  executor = create(plan);
  ASSERT_FALSE(executor.ok());
  EXPECT_EQ(executor.message(),
            path + ": steps[2] (dense): result 0 (y) is [2, 3, 4] F32 but the "
                   "kernel needs [2, 3, 3] F32");

  plan = embedNormDensePlan();
  plan["steps"][0]["operands"][0] = 1;
  executor = create(plan);
  ASSERT_FALSE(executor.ok());
  EXPECT_THAT(executor.message(),
              HasSubstr("steps[0] (embed): operand 0 (ids) is [1, 3, 4] F32 "
                        "but the kernel needs a rank-2 I32 tensor"));
}

TEST(CpuKernelTableTest, ImplementsEveryPlanKernelOnce) {
  std::vector<Kernel> kernels = cpu::cpuKernels();
  for (const KernelInfo &info : kKernelTable)
    EXPECT_EQ(std::count(kernels.begin(), kernels.end(), info.kernel), 1)
        << info.name;
  EXPECT_EQ(kernels.size(), std::size(kKernelTable));
}

TEST(CpuKernelTableTest, EachFamilyFileBindsItsOwnFamily) {
  std::pair<KernelFamily, std::vector<cpu::KernelEntry>> files[] = {
      {KernelFamily::DenseNorm, cpu::denseNormKernels()},
      {KernelFamily::Mixing, cpu::mixingKernels()},
      {KernelFamily::Attention, cpu::attentionKernels()},
      {KernelFamily::Moe, cpu::moeKernels()},
      {KernelFamily::HeadsLosses, cpu::headsLossesKernels()},
      {KernelFamily::Training, cpu::trainingKernels()},
      {KernelFamily::Collective, cpu::collectiveKernels()}};
  for (const auto &[family, entries] : files)
    for (const cpu::KernelEntry &entry : entries) {
      EXPECT_EQ(kernelInfo(entry.kernel).family, family)
          << kernelName(entry.kernel);
      // The kernels that name a group, and only they, take the
      // communicators.
      EXPECT_EQ(!entry.prepare,
                kernelInfo(entry.kernel).findAttribute("group") != nullptr)
          << kernelName(entry.kernel);
    }
}

} // namespace
