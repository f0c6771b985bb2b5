//===- MixerRunTest.cpp - The mixer-run command line ----------------------===//
//
// Runs the built tool on a hand-written artifact: listing, init, inference
// from tensor files and text, benchmarking, and the exit codes and messages
// of usage errors and failures.
//
//===----------------------------------------------------------------------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/cpu/Executor.h"
#include "runtime/exec/Init.h"
#include "runtime/io/TensorFiles.h"

#include <gmock/gmock.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <sys/wait.h>

#include <fstream>
#include <sstream>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

struct ToolResult {
  int code = -1;
  std::string out, err;
};

std::string readText(const std::string &path) {
  std::ifstream stream(path);
  std::stringstream buffer;
  buffer << stream.rdbuf();
  return buffer.str();
}

class MixerRunTest : public ::testing::Test {
protected:
  void SetUp() override {
    artifact = writeArtifact(dir, "tiny.mxa", embedNormDensePlan().dump());
  }

  /// Runs mixer-run with `args` (shell syntax), capturing its streams
  /// outside `dir`.
  ToolResult run(const std::string &args) {
    std::string command = std::string(MIXER_RUN_PATH) + " " + args + " >" +
                          logs.file("out") + " 2>" + logs.file("err");
    int status = std::system(command.c_str());
    ToolResult result;
    result.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = readText(logs.file("out"));
    result.err = readText(logs.file("err"));
    return result;
  }

  /// The names of the files in `dir`.
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto &entry : std::filesystem::directory_iterator(dir.path))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  /// Runs the plan in-process on `weights` and `inputs`: the outputs the
  /// tool must reproduce.
  std::vector<io::HostTensor> runInProcess(const std::string &weights,
                                           const io::HostTensor &ids) {
    Expected<Plan> plan = Plan::load(artifact);
    EXPECT_TRUE(plan.ok());
    Expected<cpu::Executor> executor = cpu::Executor::create(*plan);
    EXPECT_TRUE(executor.ok());
    Expected<std::vector<io::HostTensor>> tensors = io::readTensorFile(weights);
    EXPECT_TRUE(tensors.ok());
    EXPECT_TRUE(executor->bindParams(std::move(*tensors), weights).ok());
    EXPECT_TRUE(executor->bindInputs({ids}, "ids").ok());
    EXPECT_TRUE(executor->run().ok());
    return executor->outputs();
  }

  TempDir dir, logs;
  std::string artifact;
};

TEST_F(MixerRunTest, ParamsJsonListsNamesShapesAndTotal) {
  ToolResult result = run("params " + artifact + " --json");
  ASSERT_EQ(result.code, 0) << result.err;
  EXPECT_THAT(result.out, StartsWith("{\"total\":63,\"params\":["));
  json listed = json::parse(result.out);
  ASSERT_EQ(listed["params"].size(), 7u);
  EXPECT_EQ(listed["params"][1], json({{"name", "embedder/position"},
                                       {"shape", {1, 3, 4}},
                                       {"dtype", "F32"}}));
}

TEST_F(MixerRunTest, ParamsTextEndsWithTheTotal) {
  ToolResult result = run("params " + artifact);
  ASSERT_EQ(result.code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("dense/kernel       [4, 3]  F32\n"));
  EXPECT_THAT(result.out,
              HasSubstr("total: 63 parameters in 7 tensors (tiny)\n"));
}

TEST_F(MixerRunTest, InitIsDeterministicAndRecordsModelAndSeed) {
  std::string first = dir.file("a.safetensors"),
              second = dir.file("b.safetensors");
  ToolResult result = run("init " + artifact + " --seed 3 -o " + first);
  ASSERT_EQ(result.code, 0) << result.err;
  ASSERT_EQ(run("init " + artifact + " --output=" + second + " --seed=3").code,
            0);
  EXPECT_EQ(readText(first), readText(second));

  std::map<std::string, std::string> metadata;
  Expected<std::vector<io::HostTensor>> tensors =
      io::readSafetensors(first, metadata);
  ASSERT_TRUE(tensors.ok()) << tensors.message();
  EXPECT_EQ(metadata["model"], "tiny");
  EXPECT_EQ(metadata["seed"], "3");
  Expected<Plan> plan = Plan::load(artifact);
  ASSERT_TRUE(plan.ok());
  std::vector<io::HostTensor> expected = initParameters(*plan, 3);
  ASSERT_EQ(tensors->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*tensors)[i].name, expected[i].name);
    EXPECT_EQ((*tensors)[i].data, expected[i].data) << expected[i].name;
  }
}

TEST_F(MixerRunTest, InferReadsTensorFilesAndWritesOutputs) {
  std::string weights = dir.file("w.npz");
  ASSERT_EQ(run("init " + artifact + " -o " + weights).code, 0);
  io::HostTensor ids =
      intTensor("input_ids", {2, 3}, {1, 4, 0, 2, 3, 1}, io::DType::I64);
  ASSERT_TRUE(io::writeNpz(dir.file("batch.npz"), {ids}).ok());
  std::vector<io::HostTensor> expected = runInProcess(weights, ids);

  ToolResult result =
      run("infer " + artifact + " --weights " + weights + " --input " +
          dir.file("batch.npz") + " --output " + dir.file("out.safetensors"));
  ASSERT_EQ(result.code, 0) << result.err;
  EXPECT_THAT(result.out, StartsWith("y [2, 3, 3] F32: mean "));
  Expected<std::vector<io::HostTensor>> outputs =
      io::readSafetensors(dir.file("out.safetensors"));
  ASSERT_TRUE(outputs.ok()) << outputs.message();
  ASSERT_EQ(outputs->size(), 1u);
  EXPECT_EQ((*outputs)[0].name, "y");
  EXPECT_EQ((*outputs)[0].data, expected[0].data);

  // A lone .npy array feeds the required input whatever its file name.
  ASSERT_TRUE(io::writeNpy(dir.file("batch.npy"), ids).ok());
  result = run("infer " + artifact + " --weights " + weights + " --input " +
               dir.file("batch.npy") + " --output " + dir.file("out.npz"));
  ASSERT_EQ(result.code, 0) << result.err;
  outputs = io::readNpz(dir.file("out.npz"));
  ASSERT_TRUE(outputs.ok()) << outputs.message();
  EXPECT_EQ((*outputs)[0].data, expected[0].data);
}

TEST_F(MixerRunTest, FailedInferenceWritesNothing) {
  std::string weights = dir.file("w.safetensors");
  ASSERT_EQ(run("init " + artifact + " -o " + weights).code, 0);
  ASSERT_TRUE(io::writeNpz(dir.file("batch.npz"),
                           {intTensor("input_ids", {3, 2}, {0, 1, 2, 3, 4, 0})})
                  .ok());
  std::vector<std::string> before = files();
  ToolResult result =
      run("infer " + artifact + " --weights " + weights + " --input " +
          dir.file("batch.npz") + " --output " + dir.file("out.npz"));
  EXPECT_EQ(result.code, 1);
  EXPECT_THAT(result.err,
              HasSubstr("batch.npz: input 'input_ids' has shape [3, 2] but "
                        "the artifact expects [2, 3]"));
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr("terminate")));
  EXPECT_EQ(files(), before);

  // An id outside the vocabulary fails in the embed kernel.
  ASSERT_TRUE(io::writeNpz(dir.file("batch.npz"),
                           {intTensor("input_ids", {2, 3}, {0, 1, 9, 3, 4, 0})})
                  .ok());
  result = run("infer " + artifact + " --weights " + weights + " --input " +
               dir.file("batch.npz") + " --output " + dir.file("out.npz"));
  EXPECT_EQ(result.code, 1);
  EXPECT_THAT(result.err, HasSubstr("steps[0] (embed): "));
  EXPECT_EQ(files(), before);
}

TEST_F(MixerRunTest, UsageErrorsExitWithTwoAndNameTheFlag) {
  ToolResult result = run("infer " + artifact + " --weigths w.npz");
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err, HasSubstr("unknown flag '--weigths'"));

  result = run("infer " + artifact + " --input x.npz");
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err, HasSubstr("missing --weights"));

  result = run("bench " + artifact + " --iters 12x");
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err, HasSubstr("--iters: '12x' is not a non-negative "
                                    "integer"));

  result = run("init " + artifact + " -o w.bin");
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err, HasSubstr("--output: 'w.bin' must end in one of "
                                    ".safetensors, .npz"));

  result = run("init");
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err, HasSubstr("missing the artifact"));

  result = run("compile " + artifact);
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err, HasSubstr("unknown command 'compile'"));
}

TEST_F(MixerRunTest, MissingFilesExitWithOneAndNameTheFile) {
  ToolResult result = run("params " + dir.file("absent.mxa"));
  EXPECT_EQ(result.code, 1);
  EXPECT_THAT(result.err, HasSubstr("absent.mxa"));

  result = run("infer " + artifact + " --weights " + dir.file("none.npz") +
               " --input " + dir.file("x.npz"));
  EXPECT_EQ(result.code, 1);
  EXPECT_THAT(result.err, HasSubstr("none.npz"));
}

TEST_F(MixerRunTest, EveryCommandHasHelp) {
  for (const char *command : {"params", "init", "infer", "bench"}) {
    ToolResult result = run(std::string(command) + " --help");
    EXPECT_EQ(result.code, 0) << command;
    EXPECT_THAT(result.out,
                StartsWith(std::string("usage: mixer-run ") + command));
  }
  ToolResult result = run("--help");
  EXPECT_EQ(result.code, 0);
  EXPECT_THAT(result.out, HasSubstr("bench"));
}

TEST_F(MixerRunTest, BenchReportsThroughputAgainstTheGemmPeak) {
  ToolResult result =
      run("bench " + artifact + " --iters 3 --warmup 1 --threads 1 --json");
  ASSERT_EQ(result.code, 0) << result.err;
  json report = json::parse(result.out);
  EXPECT_EQ(report["model"], "tiny");
  EXPECT_EQ(report["batch"], 2);
  EXPECT_EQ(report["threads"], 1);
  EXPECT_EQ(report["peak_arena_bytes"], 328);
  EXPECT_GT(report["rss_bytes"].get<int64_t>(), 0);
  double perBatch = report["ms_per_batch"];
  EXPECT_GT(perBatch, 0.0);
  EXPECT_DOUBLE_EQ(report["ms_per_example"].get<double>(), perBatch / 2);
  EXPECT_LE(report["ms_per_batch_min"].get<double>(), perBatch);
  // 1000 flops per batch (the plan's count).
  EXPECT_NEAR(report["gflops"].get<double>(), 1000 / (perBatch / 1e3) / 1e9,
              1e-9);
  double peak = report["gemm_peak_gflops"];
  EXPECT_GT(peak, 1.0);
  // An fp32 plan's share is of the fp32 peak; the bf16 peak is reported
  // beside it where the CPU has bf16 products.
  EXPECT_EQ(report["precision"], "fp32");
  EXPECT_NEAR(report["share_of_gemm_peak"].get<double>(),
              report["gflops"].get<double>() / peak, 1e-12);
  EXPECT_EQ(report["bf16_gemm_peak_gflops"].get<double>() > 0.0,
            cpu::hasBf16Products());
}

TEST_F(MixerRunTest, InferEncodesTextWithSentencePiece) {
  // A word-level model over a tiny corpus: <unk>, <s>, </s> and 9 words.
  std::ofstream(dir.file("corpus.txt"))
      << "the cat sat on the mat\nthe dog sat on the log\na cat and a dog\n";
  auto trained = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + dir.file("corpus.txt") + " --model_prefix=" +
      dir.file("words") + " --vocab_size=12 --model_type=word --minloglevel=2");
  ASSERT_TRUE(trained.ok()) << trained.ToString();
  std::string tokenizer = dir.file("words.model");

  json plan = embedNormDensePlan();
  plan["vocab_size"] = 12;
  plan["params"][0]["shape"] = {12, 4};
  plan["values"][0]["shape"] = {12, 4};
  artifact = writeArtifact(dir, "text.mxa", plan.dump());
  std::string weights = dir.file("w.safetensors");
  ASSERT_EQ(run("init " + artifact + " -o " + weights).code, 0);

  ToolResult result = run("infer " + artifact + " --weights " + weights +
                          " --tokenizer " + tokenizer +
                          " --text 'the cat sat on the mat' --text 'a dog'"
                          " --output " +
                          dir.file("out.npz"));
  ASSERT_EQ(result.code, 0) << result.err;
  EXPECT_THAT(result.out,
              HasSubstr("[0] 6 tokens (cut to 3): the cat sat on the mat\n"));
  EXPECT_THAT(result.out, HasSubstr("[1] 2 tokens: a dog\n    y ["));

  sentencepiece::SentencePieceProcessor processor;
  ASSERT_TRUE(processor.Load(tokenizer).ok());
  std::vector<int> first, second;
  ASSERT_TRUE(processor.Encode("the cat sat on the mat", &first).ok());
  ASSERT_TRUE(processor.Encode("a dog", &second).ok());
  // Cut to S = 3, padded with the plan's pad id 0.
  io::HostTensor ids =
      intTensor("input_ids", {2, 3},
                {first[0], first[1], first[2], second[0], second[1], 0});
  std::vector<io::HostTensor> expected = runInProcess(weights, ids);
  Expected<std::vector<io::HostTensor>> outputs =
      io::readNpz(dir.file("out.npz"));
  ASSERT_TRUE(outputs.ok()) << outputs.message();
  EXPECT_EQ((*outputs)[0].data, expected[0].data);

  result = run("infer " + artifact + " --weights " + weights + " --tokenizer " +
               tokenizer + " --text a --text b --text c");
  EXPECT_EQ(result.code, 1);
  EXPECT_THAT(result.err,
              HasSubstr("--text: 3 sentences but the artifact's batch is 2"));
}

} // namespace
