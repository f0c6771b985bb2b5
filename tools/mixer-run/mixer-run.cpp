//===- mixer-run.cpp - Runs compiled mixer artifacts ----------------------===//
//
// mixer-run params | init | infer | bench: lists an artifact's parameters,
// draws initial weights, runs inference on tensor files or text, and measures
// throughput against the machine's fp32 GEMM peak. Usage errors exit with 2,
// failures at run time with 1; every message names the flag or file at fault.
//
//===----------------------------------------------------------------------===//

#include "tools/mixer-run/CommandLine.h"
#include "tools/mixer-run/Executors.h"
#include "tools/mixer-run/TrainCommands.h"

#include "mixer/Version.h"
#include "runtime/comm/Communicator.h"
#include "runtime/convert/FlaxCheckpoint.h"
#include "runtime/convert/HuggingFaceBert.h"
#include "runtime/data/Tokenizer.h"
#include "runtime/exec/Binding.h"
#include "runtime/exec/Init.h"
#include "runtime/exec/MemoryBudget.h"
#include "runtime/exec/Plan.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/train/Trainer.h"

#include <nlohmann/json.hpp>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace mixer;
using namespace mixer::run;
using json = nlohmann::ordered_json;

namespace {

//===----------------------------------------------------------------------===//
// Threads
//===----------------------------------------------------------------------===//

/// Number of CPUs this process may run on.
int availableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    return std::max(1, CPU_COUNT(&set));
  return std::max(1, omp_get_num_procs());
}

/// Chooses the thread count before any kernel, oneDNN or FFTW call starts a
/// thread pool. libgomp reads OMP_NUM_THREADS when it is loaded, before main,
/// so the choice is applied with omp_set_num_threads; oneDNN is built on the
/// OpenMP runtime and sizes its parallel regions from the same setting. The
/// default is one thread per available core (the kernels are compute-bound
/// and their GEMMs run at peak with every core), unless the user set
/// OMP_NUM_THREADS or --threads. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which
/// some environments set to slow values, are left alone: no kernel calls
/// OpenBLAS.
int configureThreads(const Args &args) {
  int threads = availableCores();
  // libgomp ignores a value that is not a positive count; so do we.
  if (const char *env = std::getenv("OMP_NUM_THREADS");
      env && std::atoi(env) > 0)
    threads = std::atoi(env);
  if (args.has("--threads")) {
    uint64_t requested = parseCount(args, "--threads", 0);
    if (requested == 0 || requested > 4096)
      throw UsageError{"--threads: must lie in [1, 4096]"};
    threads = static_cast<int>(requested);
  }
  omp_set_num_threads(threads);
  return threads;
}

//===----------------------------------------------------------------------===//
// Shared steps
//===----------------------------------------------------------------------===//

using Clock = std::chrono::steady_clock;

double millisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

/// Binds the weights of `path`, or weights drawn with seed 0 when `path` is
/// empty. A rank of a parallel plan (`world`) binds its shards of the file's
/// global tensors.
void bindWeights(exec::PlanExecutor &executor, const std::string &path,
                 bool allowExtra, const comm::Communicator *world = nullptr) {
  const exec::Plan &plan = executor.getPlan();
  std::vector<io::HostTensor> params =
      path.empty() ? exec::initParameters(plan, 0)
                   : check(io::readTensorFile(
                         path, exec::paramsFilter(plan, path, allowExtra)));
  std::vector<io::HostTensor> noInputs;
  if (world)
    exec::takeShards(plan, params, noInputs, world->rank());
  check(executor.bindParams(std::move(params), path.empty() ? plan.path : path,
                            allowExtra && !path.empty()));
  // A training plan runs from fresh optimizer state.
  if (plan.updatesParameters())
    check(executor.bindState(train::zeroOptimizerState(plan), "optimizer state",
                             /*allowExtra=*/false));
}

/// Mean, standard deviation, min and max of a float tensor.
struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
};

Stats statistics(const float *values, int64_t n) {
  Stats stats;
  if (n == 0)
    return stats;
  double sum = 0, squares = 0;
  stats.min = stats.max = values[0];
  for (int64_t i = 0; i < n; ++i) {
    sum += values[i];
    squares += static_cast<double>(values[i]) * values[i];
    stats.min = std::min<double>(stats.min, values[i]);
    stats.max = std::max<double>(stats.max, values[i]);
  }
  stats.mean = sum / n;
  stats.std = std::sqrt(std::max(0.0, squares / n - stats.mean * stats.mean));
  return stats;
}

//===----------------------------------------------------------------------===//
// params
//===----------------------------------------------------------------------===//

int runParams(const Args &args) {
  exec::Plan plan = check(exec::Plan::load(args.artifact));
  if (args.has("--json")) {
    json params = json::array();
    for (const exec::ParamInfo &param : plan.params)
      params.push_back({{"name", param.name},
                        {"shape", param.shape},
                        {"dtype", io::dtypeName(param.dtype)}});
    json out = {{"total", plan.numParameterElements()}, {"params", params}};
    std::cout << out.dump() << "\n";
    return 0;
  }
  size_t width = 0;
  for (const exec::ParamInfo &param : plan.params)
    width = std::max(width, param.name.size());
  for (const exec::ParamInfo &param : plan.params)
    std::printf("%-*s  %s  %s\n", static_cast<int>(width), param.name.c_str(),
                io::formatShape(param.shape).c_str(),
                io::dtypeName(param.dtype));
  std::printf("total: %lld parameters in %zu tensors (%s)\n",
              static_cast<long long>(plan.numParameterElements()),
              plan.params.size(), plan.model.c_str());
  return 0;
}

//===----------------------------------------------------------------------===//
// init
//===----------------------------------------------------------------------===//

int runInit(const Args &args) {
  std::string output = args.get("--output");
  if (output.empty())
    throw UsageError{"missing --output (-o) FILE"};
  checkExtension("--output", output, {".safetensors", ".npz"});
  uint64_t seed = parseCount(args, "--seed", 0);
  exec::Plan plan = check(exec::Plan::load(args.artifact));
  // The drawn parameters and the file's bytes are both held in memory.
  check(exec::checkHostMemory(plan, 2, /*withArena=*/false));
  // Global tensors: a parallel plan's file serves every mesh.
  std::vector<io::HostTensor> tensors = exec::initParameters(plan, seed);
  int64_t elements = 0;
  for (const io::HostTensor &tensor : tensors)
    elements += tensor.numel();
  if (extension(output) == ".safetensors")
    check(io::writeSafetensors(
        output, tensors,
        {{"model", plan.model}, {"seed", std::to_string(seed)}}));
  else
    check(io::writeTensorFile(output, tensors));
  std::printf("wrote %s: %zu tensors, %s parameters of %s, seed %llu\n",
              output.c_str(), tensors.size(),
              formatCount(elements, "").c_str(),
              plan.model.c_str(), static_cast<unsigned long long>(seed));
  return 0;
}

//===----------------------------------------------------------------------===//
// infer
//===----------------------------------------------------------------------===//

/// Token ids of `texts` as the plan's input_ids [batch, seq]: each text
/// encoded as a model input row (data::Tokenizer::encodeInput: cut to seq
/// tokens, between [CLS] and [SEP] for a WordPiece vocabulary) and padded
/// with the plan's pad id; rows without a text are all padding. `lengths`
/// receives the token counts before truncation.
io::HostTensor encodeTexts(const exec::Plan &plan,
                           const std::vector<std::string> &texts,
                           const std::string &tokenizerPath,
                           std::vector<size_t> &lengths) {
  auto input = std::find_if(
      plan.inputs.begin(), plan.inputs.end(),
      [](const exec::InputInfo &info) { return info.name == "input_ids"; });
  if (input == plan.inputs.end() || input->shape.size() != 2)
    throw RuntimeFailure{plan.path + ": the artifact has no input_ids "
                                     "[batch, seq] input to feed text into"};
  int64_t batch = input->shape[0], seq = input->shape[1];
  if (static_cast<int64_t>(texts.size()) > batch)
    throw RuntimeFailure{"--text: " + std::to_string(texts.size()) +
                         " sentences but the artifact's batch is " +
                         std::to_string(batch)};
  data::Tokenizer tokenizer =
      check(data::Tokenizer::load(tokenizerPath, /*forTraining=*/false));
  if (tokenizer.isWordPiece())
    check(tokenizer.checkMatches(plan.vocabSize, plan.padId));
  io::HostTensor ids;
  ids.name = input->name;
  ids.dtype = io::DType::I32;
  ids.shape = input->shape;
  ids.data.resize(input->numel * sizeof(int32_t));
  int32_t *out = ids.as<int32_t>();
  std::fill(out, out + input->numel, static_cast<int32_t>(plan.padId));
  for (size_t b = 0; b < texts.size(); ++b) {
    size_t count = 0;
    std::vector<int32_t> row = check(tokenizer.encodeInput(
        texts[b], "--text " + std::to_string(b), seq, count));
    lengths.push_back(count);
    std::copy(row.begin(), row.end(), out + b * seq);
  }
  return ids;
}

/// Renders up to `limit` values of `row` and how many there are.
std::string renderRow(const float *row, int64_t n, int64_t limit = 6) {
  std::string text;
  char number[32];
  for (int64_t i = 0; i < std::min(n, limit); ++i) {
    std::snprintf(number, sizeof(number), "%s%.4g", i ? " " : "", row[i]);
    text += number;
  }
  if (n > limit)
    text += " ... (" + std::to_string(n) + " values)";
  return "[" + text + "]";
}

void printTextSummary(const exec::Plan &plan,
                      const std::vector<std::string> &texts,
                      const std::vector<size_t> &lengths,
                      const std::vector<io::HostTensor> &outputs) {
  for (size_t b = 0; b < texts.size(); ++b) {
    std::string note = lengths[b] > static_cast<size_t>(plan.seq)
                           ? " (cut to " + std::to_string(plan.seq) + ")"
                           : "";
    std::printf("[%zu] %zu tokens%s: %s\n", b, lengths[b], note.c_str(),
                texts[b].c_str());
    for (const io::HostTensor &output : outputs) {
      if (output.dtype != io::DType::F32 || output.shape.empty() ||
          output.shape[0] != plan.batch || plan.batch == 0)
        continue;
      int64_t rowSize = output.numel() / plan.batch;
      std::printf("    %s %s\n", output.name.c_str(),
                  renderRow(output.as<float>() + b * rowSize, rowSize).c_str());
    }
  }
}

void printTensorSummary(const std::vector<io::HostTensor> &outputs) {
  for (const io::HostTensor &output : outputs) {
    if (output.dtype != io::DType::F32) {
      std::printf("%s %s %s\n", output.name.c_str(),
                  io::formatShape(output.shape).c_str(),
                  io::dtypeName(output.dtype));
      continue;
    }
    Stats stats = statistics(output.as<float>(), output.numel());
    std::printf("%s %s F32: mean %.6g, std %.6g, min %.6g, max %.6g\n",
                output.name.c_str(), io::formatShape(output.shape).c_str(),
                stats.mean, stats.std, stats.min, stats.max);
  }
}

/// The global outputs of a parallel plan from every rank's: an output split
/// over the world joined along axis 0 in rank order, an expert slice joined
/// over the ranks of the first expert group (world ranks 0 … ep − 1), a
/// summed output as it is (the plan says which is which).
std::vector<io::HostTensor> gatherOutputs(const exec::Plan &plan,
                                          comm::Communicator &world,
                                          std::vector<io::HostTensor> outputs) {
  for (io::HostTensor &output : outputs) {
    int64_t index = plan.findOutput(output.name);
    if (index < 0 || plan.outputs[index].shardGroup.empty())
      continue;
    bool expert = plan.outputs[index].shardGroup == "ep";
    check(comm::gatherParts(world, output,
                            expert ? plan.mesh.ep : world.size(), "outputs"));
  }
  return outputs;
}

int runInfer(const Args &args) {
  std::string weights = args.get("--weights");
  std::string output = args.get("--output");
  bool textMode = args.has("--text");
  if (weights.empty())
    throw UsageError{"missing --weights FILE"};
  if (textMode == args.has("--input"))
    throw UsageError{"give either --input FILE or --text SENTENCE"};
  if (textMode && !args.has("--tokenizer"))
    throw UsageError{"--text needs --tokenizer MODEL"};
  if (!textMode && args.has("--tokenizer"))
    throw UsageError{"--tokenizer is only used with --text"};
  if (!output.empty())
    checkExtension("--output", output, {".safetensors", ".npz", ".npy"});
  if (args.has("--input"))
    checkExtension("--input", args.get("--input"),
                   {".safetensors", ".npz", ".npy"});

  Clock::time_point start = Clock::now();
  exec::Plan plan = check(exec::Plan::load(args.artifact));
  if (extension(output) == ".npy" && plan.outputs.size() != 1)
    throw UsageError{"--output: a .npy file holds one tensor but the "
                     "artifact has " +
                     std::to_string(plan.outputs.size()) +
                     " outputs; use .safetensors or .npz"};
  std::unique_ptr<comm::Communicator> world = parallelWorld(plan);
  std::unique_ptr<exec::PlanExecutor> executor =
      createExecutor(plan, world.get());
  double loadMs = millisecondsSince(start);
  start = Clock::now();
  bindWeights(*executor, weights, args.has("--allow-extra"), world.get());
  // Each rank binds its rows of the global batch.
  auto bindRows = [&](std::vector<io::HostTensor> inputs,
                      const std::string &source) {
    std::vector<io::HostTensor> noParams;
    if (world)
      exec::takeShards(plan, noParams, inputs, world->rank());
    check(executor->bindInputs(inputs, source, /*allowExtra=*/false));
  };
  double weightsMs = millisecondsSince(start);

  std::vector<std::string> texts;
  std::vector<size_t> lengths;
  if (textMode) {
    texts = args.flags.at("--text");
    std::vector<io::HostTensor> inputs;
    inputs.push_back(
        encodeTexts(plan, texts, args.get("--tokenizer"), lengths));
    bindRows(std::move(inputs), "--text");
  } else {
    std::string path = args.get("--input");
    // A .npy array is named after its file; it feeds the first required
    // input unless its name already matches one.
    auto required = std::find_if(
        plan.inputs.begin(), plan.inputs.end(),
        [](const exec::InputInfo &info) { return !info.optional; });
    auto inputName = [&](const std::string &name) {
      bool named = std::any_of(
          plan.inputs.begin(), plan.inputs.end(),
          [&](const exec::InputInfo &info) { return info.name == name; });
      return extension(path) == ".npy" && !named &&
                     required != plan.inputs.end()
                 ? required->name
                 : name;
    };
    io::TensorFilter filter =
        exec::inputFilter(plan, path, /*allowExtra=*/false);
    std::vector<io::HostTensor> inputs =
        check(io::readTensorFile(path, [&](const io::HostTensor &header) {
          io::HostTensor renamed{
              inputName(header.name), header.dtype, header.shape, {}};
          return filter(renamed);
        }));
    if (inputs.empty())
      throw RuntimeFailure{path + ": holds no tensors"};
    inputs.front().name = inputName(inputs.front().name);
    bindRows(std::move(inputs), path);
  }

  start = Clock::now();
  Status ran = executor->run();
  // The other ranks may wait in a collective this one will not join: a
  // failing rank ends the job.
  if (!ran && world) {
    std::fprintf(stderr, "mixer-run: error: rank %d: %s\n", world->rank(),
                 ran.message().c_str());
    world->abort(kRuntimeFailure);
  }
  check(ran);
  double runMs = millisecondsSince(start);
  std::vector<io::HostTensor> outputs = executor->outputs();
  if (world) {
    outputs = gatherOutputs(plan, *world, std::move(outputs));
    // Rank 0 writes and reports for every rank.
    if (world->rank() != 0)
      return 0;
  }
  if (!output.empty())
    check(io::writeTensorFile(output, outputs));
  if (textMode)
    printTextSummary(plan, texts, lengths, outputs);
  else
    printTensorSummary(outputs);
  std::printf("load %.1f ms (plan, arena, kernels), weights %.1f ms, run "
              "%.1f ms\n",
              loadMs, weightsMs, runMs);
  if (!output.empty())
    std::printf("wrote %s\n", output.c_str());
  return 0;
}

//===----------------------------------------------------------------------===//
// bench
//===----------------------------------------------------------------------===//

/// Best fp32 GEMM rate of this machine with the current thread count:
/// dnnl_sgemm at M = N = K = 2048, best of a few runs after a warm-up.
double measureGemmPeak() {
  constexpr int64_t n = 2048;
  std::vector<float> a(n * n), b(n * n), c(n * n);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < n * n; ++i) {
    a[i] = dist(rng);
    b[i] = dist(rng);
  }
  double best = 0;
  for (int run = 0; run < 4; ++run) {
    Clock::time_point start = Clock::now();
    if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                   c.data(), n) != dnnl_success)
      throw RuntimeFailure{"dnnl_sgemm failed measuring the GEMM peak"};
    double seconds = millisecondsSince(start) / 1e3;
    if (run > 0)
      best = std::max(best, 2.0 * n * n * n / seconds / 1e9);
  }
  return best;
}

/// Best bf16 GEMM rate of this machine with the current thread count:
/// oneDNN's bf16 matmul (fp32 accumulation, bf16 result) at M = N = K = 2048
/// with packed weights, best of a few runs after a warm-up; 0 on a CPU
/// without bf16 products.
double measureBf16GemmPeak() {
  if (dnnl::get_effective_cpu_isa() < dnnl::cpu_isa::avx512_core_bf16)
    return 0.0;
  constexpr int64_t n = 2048;
  using Type = dnnl::memory::data_type;
  using Tag = dnnl::memory::format_tag;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    dnnl::memory::desc a({n, n}, Type::bf16, Tag::ab);
    dnnl::memory::desc c({n, n}, Type::bf16, Tag::ab);
    dnnl::matmul::primitive_desc desc(
        dnnl::matmul::desc(a, dnnl::memory::desc({n, n}, Type::bf16, Tag::any),
                           c),
        engine);
    // Ones are exact in bf16; the rate does not depend on the values.
    std::vector<uint16_t> ones(n * n, 0x3f80);
    dnnl::memory am(a, engine, ones.data()), wm(desc.weights_desc(), engine),
        cm(c, engine);
    dnnl::memory plain({{n, n}, Type::bf16, Tag::ab}, engine, ones.data());
    dnnl::reorder(plain, wm).execute(stream, plain, wm);
    dnnl::matmul matmul(desc);
    double best = 0;
    for (int run = 0; run < 4; ++run) {
      Clock::time_point start = Clock::now();
      matmul.execute(
          stream,
          {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, cm}});
      stream.wait();
      double seconds = millisecondsSince(start) / 1e3;
      if (run > 0)
        best = std::max(best, 2.0 * n * n * n / seconds / 1e9);
    }
    return best;
  } catch (const dnnl::error &error) {
    throw RuntimeFailure{std::string("oneDNN bf16 matmul failed measuring "
                                     "the bf16 GEMM peak: ") +
                         error.what()};
  }
}

/// A valid batch for any plan: token ids drawn in [0, vocab_size), masked
/// positions inside the sequence, every other input (type ids, labels,
/// learning rate, step, seed) zero.
std::vector<io::HostTensor> benchmarkInputs(const exec::Plan &plan) {
  if (plan.vocabSize <= 0)
    throw RuntimeFailure{plan.path +
                         ": the artifact records no vocab_size to draw "
                         "random token ids from"};
  std::mt19937 rng(0);
  std::vector<io::HostTensor> inputs;
  for (const exec::InputInfo &info : plan.inputs) {
    io::HostTensor tensor;
    tensor.name = info.name;
    tensor.dtype = info.dtype;
    tensor.shape = info.shape;
    tensor.data.assign(info.numel * io::dtypeSize(info.dtype), 0);
    int64_t bound = info.name == "input_ids"             ? plan.vocabSize
                    : info.name == "masked_lm_ids"       ? plan.vocabSize
                    : info.name == "masked_lm_positions" ? plan.seq
                                                         : 0;
    std::uniform_int_distribution<int32_t> dist(
        0, static_cast<int32_t>(std::max<int64_t>(bound, 1) - 1));
    for (int64_t i = 0; bound > 0 && i < info.numel; ++i)
      tensor.as<int32_t>()[i] = dist(rng);
    inputs.push_back(std::move(tensor));
  }
  return inputs;
}

int64_t peakRssBytes() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

/// Adds up the wall time of the collective steps of the runs it observes.
class CollectiveTimer : public exec::StepObserver {
public:
  explicit CollectiveTimer(const exec::Plan &plan) : plan(plan) {}

  void beforeStep(size_t) override { start = Clock::now(); }
  void afterStep(size_t index, std::optional<double>) override {
    if (kernelInfo(plan.steps[index].kernel).family == KernelFamily::Collective)
      milliseconds += millisecondsSince(start);
  }

  double milliseconds = 0;

private:
  const exec::Plan &plan;
  Clock::time_point start;
};

int runBench(const Args &args, int threads) {
  uint64_t iters = parseCount(args, "--iters", 10);
  uint64_t warmup = parseCount(args, "--warmup", 2);
  if (iters == 0)
    throw UsageError{"--iters: must be at least 1"};
  exec::Plan plan = check(exec::Plan::load(args.artifact));
  std::unique_ptr<comm::Communicator> world = parallelWorld(plan);
  std::unique_ptr<exec::PlanExecutor> executor =
      createExecutor(plan, world.get());
  bindWeights(*executor, args.get("--weights"), args.has("--allow-extra"),
              world.get());
  check(executor->bindInputs(benchmarkInputs(plan), "random inputs",
                             /*allowExtra=*/false));

  for (uint64_t i = 0; i < warmup; ++i)
    check(executor->run());
  // A parallel run's steps are timed one by one for the time inside its
  // collectives (the CPU executor runs them so anyway).
  CollectiveTimer collectives(plan);
  if (world)
    executor->setObserver(&collectives);
  std::vector<double> times;
  for (uint64_t i = 0; i < iters; ++i) {
    Clock::time_point start = Clock::now();
    check(executor->run());
    times.push_back(millisecondsSince(start));
  }
  executor->setObserver(nullptr);
  if (world && world->rank() != 0)
    return 0;
  double collectiveMs = collectives.milliseconds / iters;
  int64_t commBytes = 0;
  for (const auto &[kernel, bytes] : plan.commBytes)
    commBytes += bytes;
  // Bytes one rank sends per run over the time it spends in collectives.
  double commGBps = collectiveMs > 0 ? commBytes / (collectiveMs / 1e3) / 1e9
                                     : 0.0;
  std::sort(times.begin(), times.end());
  double median =
      times.size() % 2
          ? times[times.size() / 2]
          : (times[times.size() / 2 - 1] + times[times.size() / 2]) / 2;
  double best = times.front();
  double examples = std::max<int64_t>(plan.batch, 1);
  double gflops = plan.flops / (median / 1e3) / 1e9;
  // Sampled before the GEMM measurement, whose matrices are not the model's.
  int64_t rss = peakRssBytes();
  // The share is of the host's GEMM peak in the plan's precision; a
  // device's is not measured yet.
  bool cpu = plan.target == "cpu";
  double peak = cpu ? measureGemmPeak() : 0.0;
  double bf16Peak = cpu ? measureBf16GemmPeak() : 0.0;
  double planPeak = plan.precision == "bf16" ? bf16Peak : peak;
  double share = planPeak > 0 ? gflops / planPeak : 0;

  if (args.has("--json")) {
    json out = {{"ms_per_example", median / examples},
                {"ms_per_batch", median},
                {"ms_per_example_min", best / examples},
                {"ms_per_batch_min", best},
                {"gflops", gflops},
                {"gemm_peak_gflops", peak},
                {"bf16_gemm_peak_gflops", bf16Peak},
                {"precision", plan.precision},
                {"share_of_gemm_peak", share},
                {"batch", plan.batch},
                {"threads", threads},
                {"model", plan.model},
                {"iters", iters},
                {"peak_arena_bytes", plan.arenaBytes},
                {"rss_bytes", rss}};
    if (world) {
      out["ranks"] = world->size();
      out["collective_ms_per_batch"] = collectiveMs;
      out["comm_bytes_per_batch"] = commBytes;
      out["collective_gbps"] = commGBps;
    }
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::printf("%s: batch %lld, seq %lld, %d threads, %llu iterations after "
              "%llu warm-up\n",
              plan.model.c_str(), static_cast<long long>(plan.batch),
              static_cast<long long>(plan.seq), threads,
              static_cast<unsigned long long>(iters),
              static_cast<unsigned long long>(warmup));
  std::printf("  ms per batch     median %10.3f   min %10.3f\n", median, best);
  std::printf("  ms per example   median %10.3f   min %10.3f\n",
              median / examples, best / examples);
  std::printf("  %.1f GFLOP/s (%s per batch, %s); GEMM peak fp32 %.1f "
              "GFLOP/s (dnnl_sgemm 2048^3), bf16 %.1f GFLOP/s (oneDNN bf16 "
              "matmul 2048^3): %.1f %% of the %s peak\n",
              gflops, formatCount(plan.flops, "FLOP").c_str(),
              plan.precision.c_str(), peak, bf16Peak, 100 * share,
              plan.precision.c_str());
  std::printf("  arena %s, peak RSS %s\n",
              formatCount(plan.arenaBytes, "B").c_str(),
              formatCount(rss, "B").c_str());
  if (world)
    std::printf("  %d ranks (dp %lld × ep %lld): %.3f ms per batch inside "
                "collectives on rank 0, sending %s per batch: %.2f GB/s\n",
                world->size(), static_cast<long long>(plan.mesh.dp),
                static_cast<long long>(plan.mesh.ep), collectiveMs,
                formatCount(commBytes, "B").c_str(), commGBps);
  return 0;
}

//===----------------------------------------------------------------------===//
// import
//===----------------------------------------------------------------------===//

/// Maps a checkpoint of another framework to OUT/ (model.json,
/// weights.safetensors and the files copied as they are), written into a
/// sibling temporary directory that is renamed into place at the end.
int runImport(const Args &args) {
  namespace fs = std::filesystem;
  std::string source = args.artifact;
  if (!args.has("--output"))
    throw UsageError{"missing -o OUT/ (the directory to create)"};
  fs::path out = fs::path(args.get("--output")).lexically_normal();
  if (out.filename().empty())
    out = out.parent_path();
  std::error_code error;
  if (fs::exists(out, error) &&
      !(fs::is_directory(out, error) && fs::is_empty(out, error)))
    throw RuntimeFailure{out.string() +
                         ": exists and is not an empty directory; nothing "
                         "was written"};
  convert::ImportedModel imported;
  if (convert::isHuggingFaceDirectory(source)) {
    if (args.has("--config"))
      throw UsageError{"--config takes the original Sparse Mixer's "
                       "configuration; a Hugging Face directory has its own "
                       "config.json"};
    imported = check(convert::importHuggingFaceBert(source));
  } else {
    std::string configPath = args.has("--config") ? args.get("--config") : "";
    json config = json::object();
    if (!configPath.empty()) {
      std::string text = check(io::readFile(configPath));
      config = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (config.is_discarded() || !config.is_object())
        throw RuntimeFailure{configPath + ": not a JSON object"};
    }
    imported = check(convert::importFlaxCheckpoint(source, config, configPath));
  }
  fs::path staging = out;
  staging += ".partial-" + std::to_string(::getpid());
  fs::remove_all(staging, error);
  auto fail = [&](const std::string &what) {
    fs::remove_all(staging, error);
    throw RuntimeFailure{what + "; nothing was written"};
  };
  if (!fs::create_directories(staging, error))
    fail(staging.string() +
         ": cannot create the directory: " + error.message());
  Status status = io::writeFileAtomic((staging / "model.json").string(),
                                      imported.model.dump(2) + "\n");
  if (status.ok())
    status = io::writeSafetensors((staging / "weights.safetensors").string(),
                                  imported.weights, {{"source", source}});
  if (!status.ok())
    fail(status.message());
  for (const auto &[from, name] : imported.copied)
    if (!fs::copy_file(from, staging / name, error))
      fail(from + ": cannot copy: " + error.message());
  if (Status synced = io::syncDirectory(staging.string()); !synced.ok())
    fail(synced.message());
  fs::rename(staging, out, error);
  if (error)
    fail(out.string() + ": cannot rename " + staging.string() +
         " to it: " + error.message());
  for (const std::string &line : imported.mapped)
    std::printf("%s\n", line.c_str());
  int64_t values = 0;
  for (const io::HostTensor &t : imported.weights)
    values += t.numel();
  std::printf("mapped %zu tensors (%lld values) of %s into %s: model.json, "
              "weights.safetensors",
              imported.weights.size(), static_cast<long long>(values),
              source.c_str(), out.string().c_str());
  for (const auto &copied : imported.copied)
    std::printf(", %s", copied.second.c_str());
  std::printf("\n");
  return 0;
}

//===----------------------------------------------------------------------===//
// export
//===----------------------------------------------------------------------===//

/// Writes weights or a checkpoint's parameters as the original's Flax tree.
int runExport(const Args &args) {
  if (!args.has("--format") || args.get("--format") != "flax")
    throw UsageError{"--format must be flax (the original Sparse Mixer's "
                     "Flax msgpack)"};
  if (!args.has("--output"))
    throw UsageError{"missing -o OUT.msgpack"};
  std::vector<io::HostTensor> weights = loadWeights(args.artifact);
  std::string bytes = check(convert::exportFlaxParams(weights, args.artifact));
  check(io::writeFileAtomic(args.get("--output"), bytes));
  int64_t values = 0;
  for (const io::HostTensor &t : weights)
    values += t.numel();
  std::printf("wrote %zu tensors (%lld values) of %s to %s as the original's "
              "Flax tree\n",
              weights.size(), static_cast<long long>(values),
              args.artifact.c_str(), args.get("--output").c_str());
  return 0;
}

//===----------------------------------------------------------------------===//
// tokenize
//===----------------------------------------------------------------------===//

/// Prints the token ids of every line of a text file, one line each.
int runTokenize(const Args &args) {
  if (!args.has("--tokenizer"))
    throw UsageError{"missing --tokenizer FILE (a vocab.txt or a "
                     "SentencePiece model)"};
  data::Tokenizer tokenizer = check(
      data::Tokenizer::load(args.get("--tokenizer"), /*forTraining=*/false));
  std::ifstream in(args.artifact, std::ios::binary);
  if (!in)
    throw RuntimeFailure{args.artifact + ": cannot read the text"};
  std::string line, out;
  for (size_t number = 1; std::getline(in, line); ++number) {
    std::vector<int32_t> ids = check(
        tokenizer.encode(line, args.artifact + ":" + std::to_string(number)));
    out.clear();
    for (size_t i = 0; i < ids.size(); ++i)
      out += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", out.c_str());
  }
  if (in.bad())
    throw RuntimeFailure{args.artifact + ": cannot read the text"};
  return 0;
}

//===----------------------------------------------------------------------===//
// Command table and main
//===----------------------------------------------------------------------===//

struct Command {
  const char *name;
  const char *summary;
  const char *help;
  std::vector<FlagSpec> flags;
};

const FlagSpec kThreadsFlag = {"--threads", nullptr, true, false};

/// `own` and the flags every training run takes (pretrain, finetune).
std::vector<FlagSpec> withTrainingRunFlags(std::vector<FlagSpec> own) {
  own.insert(own.end(), {{"--tokenizer", nullptr, true, false},
                         {"--seed", nullptr, true, false},
                         {"--init", nullptr, true, false},
                         {"--checkpoint-dir", nullptr, true, false},
                         {"--checkpoint-every", nullptr, true, false},
                         {"--keep", nullptr, true, false},
                         {"--resume", nullptr, false, false},
                         {"--resume-step", nullptr, true, false},
                         {"--log", nullptr, true, false},
                         {"--lr", nullptr, true, false},
                         {"--warmup-steps", nullptr, true, false},
                         kThreadsFlag});
  return own;
}

const std::vector<Command> &commands() {
  static const std::vector<Command> table = {
      {"params",
       "list an artifact's parameters",
       "usage: mixer-run params A.mxa [--json]\n"
       "\n"
       "Lists every parameter the artifact expects (name, shape, dtype) and\n"
       "the total number of parameter values.\n"
       "\n"
       "  --json   print {\"total\": N, \"params\": [{\"name\", \"shape\",\n"
       "           \"dtype\"}, ...]}\n",
       {{"--json", nullptr, false, false}}},
      {"init",
       "draw initial weights",
       "usage: mixer-run init A.mxa [--seed N] -o W.safetensors|W.npz\n"
       "\n"
       "Draws every parameter as the artifact's init specs say, with a\n"
       "counter-based generator: the same seed gives the same weights on\n"
       "every machine and thread count. The file is written atomically; a\n"
       "safetensors file records the model name and seed as metadata. For a\n"
       "parallel artifact (run without mpirun) it holds the global tensors,\n"
       "the same as the one-process artifact's.\n"
       "\n"
       "  --seed N            seed (default 0)\n"
       "  -o, --output FILE   the weights file (.safetensors or .npz)\n",
       {{"--seed", nullptr, true, false}, {"--output", "-o", true, false}}},
      {"infer",
       "run inference on a tensor file or on text",
       "usage: mixer-run infer A.mxa --weights W --input X [--output Y]\n"
       "       mixer-run infer A.mxa --weights W --tokenizer M.model\n"
       "                       --text SENTENCE [--text SENTENCE ...] "
       "[--output Y]\n"
       "\n"
       "Runs the artifact once. Inputs come from a tensor file whose tensors\n"
       "are named as the artifact's inputs (I32 or I64; a single .npy array\n"
       "feeds the first required input; optional inputs default to zeros),\n"
       "or from sentences encoded with a SentencePiece model, cut or padded\n"
       "with the artifact's pad id to its sequence length. Outputs are\n"
       "summarised on stdout and written atomically to --output; nothing is\n"
       "written when anything fails.\n"
       "\n"
       "A parallel artifact (mixc --dp --ep) runs under mpirun -np dp·ep:\n"
       "every rank reads the same global weights and inputs and binds its\n"
       "shards and rows; rank 0 gathers the outputs, reports and writes.\n"
       "\n"
       "  --weights FILE     weights (.safetensors, .npz)\n"
       "  --input FILE       inputs (.safetensors, .npz, .npy)\n"
       "  --text SENTENCE    a sentence to encode (repeat for a batch)\n"
       "  --tokenizer FILE   for --text: a WordPiece vocab.txt (BERT: [CLS] "
       "...\n"
       "                     [SEP]) or a SentencePiece model\n"
       "  --output FILE      outputs (.safetensors, .npz, or .npy for one)\n"
       "  --allow-extra      ignore weight tensors the artifact does not use\n"
       "  --threads N        worker threads (default: OMP_NUM_THREADS, else\n"
       "                     every available core)\n",
       {{"--weights", nullptr, true, false},
        {"--input", nullptr, true, false},
        {"--text", nullptr, true, true},
        {"--tokenizer", nullptr, true, false},
        {"--output", "-o", true, false},
        {"--allow-extra", nullptr, false, false},
        kThreadsFlag}},
      {"import",
       "map a Hugging Face BERT or Flax Sparse Mixer checkpoint to mixer",
       "usage: mixer-run import DIR|CKPT -o OUT/ [--config C.json]\n"
       "\n"
       "Reads a Hugging Face model directory DIR (config.json,\n"
       "model.safetensors, vocab.txt; sentence-transformers' modules.json\n"
       "and pooling configuration when present), or a checkpoint of the\n"
       "original Sparse Mixer code CKPT (a zip archive or a directory with\n"
       "replicated_checkpoint_<step> and its shard files, or one Flax\n"
       "msgpack file), and writes OUT/model.json (mixer's model\n"
       "description), OUT/weights.safetensors (the parameters under mixer's\n"
       "names and layouts) and, for Hugging Face, OUT/vocab.txt, printing\n"
       "each mapped tensor. What cannot be mapped is refused with the file,\n"
       "the key or tensor and the reason, and nothing is written. OUT must\n"
       "not exist or be empty.\n"
       "\n"
       "  -o, --output DIR   the directory to create\n"
       "  --config FILE      Flax only: the original's configuration values\n"
       "                     (JSON) that the weights do not show (capacity\n"
       "                     factors, routing, pad_id, ...); defaults are the\n"
       "                     original's base configuration (docs/import.md)\n",
       {{"--output", "-o", true, false}, {"--config", nullptr, true, false}}},
      {"export",
       "write weights back as the original Sparse Mixer's Flax tree",
       "usage: mixer-run export W|DIR --format flax -o OUT.msgpack\n"
       "\n"
       "Writes the parameters of a weights file or a checkpoint (the latest\n"
       "step of a checkpoint directory, or DIR/step_<N>) as the original\n"
       "code's Flax variables {\"params\": tree}, one msgpack state dict:\n"
       "routers under router_weights_<l>/DenseGeneral_0, the expert axis\n"
       "second, every array float32. mixer-run import of the file gives the\n"
       "same weights bit for bit.\n"
       "\n"
       "  --format flax      the only format\n"
       "  -o, --output FILE  the file to write (atomically)\n",
       {{"--format", nullptr, true, false}, {"--output", "-o", true, false}}},
      {"tokenize",
       "print the token ids of each line of a text",
       "usage: mixer-run tokenize TEXT --tokenizer FILE\n"
       "\n"
       "Prints one line per line of TEXT: its token ids separated by spaces\n"
       "(no [CLS] or [SEP]). FILE is a WordPiece vocab.txt or a SentencePiece\n"
       "model, as for infer --text.\n",
       {{"--tokenizer", nullptr, true, false}}},
      {"bench",
       "measure inference throughput",
       "usage: mixer-run bench A.mxa [--weights W] [--iters N] [--warmup N] "
       "[--json]\n"
       "\n"
       "Runs the artifact on random token ids (weights drawn with seed 0\n"
       "unless --weights is given): warm-up runs, then timed runs. Reports\n"
       "milliseconds per batch and per example (median and min), GFLOP/s\n"
       "from the artifact's flop count, the machine's fp32 GEMM peak\n"
       "(dnnl_sgemm at 2048^3 with the same threads, best of 3) and the\n"
       "share of it reached, the arena size and the peak resident set.\n"
       "\n"
       "  --weights FILE   weights (.safetensors, .npz)\n"
       "  --iters N        timed runs (default 10)\n"
       "  --warmup N       untimed runs first (default 2)\n"
       "  --json           print one JSON object\n"
       "  --allow-extra    ignore weight tensors the artifact does not use\n"
       "  --threads N      worker threads (default: OMP_NUM_THREADS, else\n"
       "                   every available core)\n",
       {{"--weights", nullptr, true, false},
        {"--iters", nullptr, true, false},
        {"--warmup", nullptr, true, false},
        {"--json", nullptr, false, false},
        {"--allow-extra", nullptr, false, false},
        kThreadsFlag}},
      {"pretrain", "pre-train with masked-LM and next-sentence losses",
       "usage: mixer-run pretrain A.mxa --corpus TEXT --tokenizer M.model\n"
       "                          --steps N [options]\n"
       "\n"
       "Runs the training artifact (mixc --train) until N updates are\n"
       "applied, on MLM + NSP batches drawn from TEXT (one document per\n"
       "line). The tokenizer's vocabulary must match the model's. Shows a\n"
       "progress bar on a terminal, plain lines otherwise. Ctrl-C finishes\n"
       "the update, saves a checkpoint and exits with 130.\n"
       "\n"
       "A parallel artifact (mixc --dp --ep) runs under mpirun -np dp·ep:\n"
       "every rank draws the same global batches and binds its rows and its\n"
       "shards of the global weights; rank 0 reports and writes checkpoints\n"
       "of global tensors, which resume at any mesh and in one process.\n"
       "\n"
       "  --seed N               initial weights, data order and dropout\n"
       "                         (default 0)\n"
       "  --init W|DIR           start from these weights (a weights file or "
       "a\n"
       "                         checkpoint directory)\n"
       "  --checkpoint-dir DIR   save DIR/step_<N>/ (atomically) every\n"
       "                         --checkpoint-every updates and at the end\n"
       "  --checkpoint-every N   (default: only at the end)\n"
       "  --keep N               checkpoints kept (default 3)\n"
       "  --resume               continue from DIR's latest checkpoint: the\n"
       "                         same bits as a run that never stopped\n"
       "  --resume-step N        continue from DIR/step_<N> instead\n"
       "  --log FILE             append one JSON line per update "
       "(metrics.jsonl)\n"
       "  --lr X, --warmup-steps N, --total-steps N\n"
       "                         override the model JSON's schedule\n"
       "  --threads N            worker threads\n",
       withTrainingRunFlags({{"--corpus", nullptr, true, false},
                             {"--steps", nullptr, true, false},
                             {"--total-steps", nullptr, true, false}})},
      {"finetune", "fine-tune a classification or regression head",
       "usage: mixer-run finetune A.mxa --train T.jsonl --tokenizer M.model\n"
       "                          [--eval D.jsonl] [--epochs N] [options]\n"
       "\n"
       "Trains the classification artifact for N epochs (default 3) of full\n"
       "batches in a seeded order, evaluating on D after every epoch\n"
       "(accuracy and F1, or MSE for one output). --init takes every tensor\n"
       "of a pre-training checkpoint except the classification head, which\n"
       "is drawn anew. The schedule warms up over the first 10 % of the\n"
       "updates unless --warmup-steps is given. Other options as pretrain;\n"
       "a parallel artifact runs under mpirun as there, without --eval.\n",
       withTrainingRunFlags({{"--train", nullptr, true, false},
                             {"--eval", nullptr, true, false},
                             {"--epochs", nullptr, true, false}})},
      {"eval",
       "evaluate weights with a training artifact",
       "usage: mixer-run eval A.mxa --weights W|DIR --tokenizer M.model\n"
       "                      (--data D.jsonl | --corpus TEXT) [--json]\n"
       "\n"
       "Runs the artifact's forward pass without dropout. With --data:\n"
       "accuracy, F1 (of class 1 for two classes, else macro) and the\n"
       "majority-class rate, or the MSE of a regression head. With --corpus:\n"
       "masked-LM and next-sentence accuracy and the mean losses over\n"
       "--batches batches (default 20) drawn with --seed.\n",
       {{"--weights", nullptr, true, false},
        {"--tokenizer", nullptr, true, false},
        {"--data", nullptr, true, false},
        {"--corpus", nullptr, true, false},
        {"--batches", nullptr, true, false},
        {"--seed", nullptr, true, false},
        {"--json", nullptr, false, false},
        kThreadsFlag}},
  };
  return table;
}

void printUsage(std::FILE *stream) {
  std::fprintf(stream,
               "usage: mixer-run COMMAND A.mxa [options]\n\ncommands:\n");
  for (const Command &command : commands())
    std::fprintf(stream, "  %-8s %s\n", command.name, command.summary);
  std::fprintf(stream, "\n'mixer-run COMMAND --help' describes a command; "
                       "'mixer-run --version' prints the version.\n");
}

/// Parses the arguments after the command name. Returns false if --help was
/// asked for.
bool parseArgs(const Command &command, int argc, char **argv, Args &args) {
  args.command = command.name;
  for (int i = 2; i < argc; ++i) {
    std::string token = argv[i];
    if (token == "--help" || token == "-h")
      return false;
    if (token.size() < 2 || token[0] != '-') {
      if (!args.artifact.empty())
        throw UsageError{"unexpected argument '" + token +
                         "' (the artifact is '" + args.artifact + "')"};
      args.artifact = token;
      continue;
    }
    std::string name = token, value;
    size_t equals = token.find('=');
    bool inlineValue = token.rfind("--", 0) == 0 && equals != std::string::npos;
    if (inlineValue) {
      name = token.substr(0, equals);
      value = token.substr(equals + 1);
    }
    const FlagSpec *spec = nullptr;
    for (const FlagSpec &flag : command.flags)
      if (name == flag.name || (flag.alias && name == flag.alias))
        spec = &flag;
    if (!spec)
      throw UsageError{"unknown flag '" + name + "'"};
    if (!spec->takesValue && inlineValue)
      throw UsageError{"flag '" + name + "' takes no value"};
    if (spec->takesValue && !inlineValue) {
      if (i + 1 >= argc)
        throw UsageError{"flag '" + name + "' needs a value"};
      value = argv[++i];
    }
    std::vector<std::string> &values = args.flags[spec->name];
    if (!values.empty() && !spec->repeatable)
      throw UsageError{"flag '" + name + "' is given twice"};
    values.push_back(value);
  }
  if (args.artifact.empty())
    throw UsageError{command.name == std::string("tokenize")
                         ? "missing the text (TEXT) argument"
                     : command.name == std::string("import")
                         ? "missing the checkpoint (DIR or CKPT) argument"
                     : command.name == std::string("export")
                         ? "missing the weights (W or DIR) argument"
                         : "missing the artifact (A.mxa) argument"};
  return true;
}

/// Checks the processes mpirun started against the plan's mesh: a
/// one-process plan runs without mpirun or with one rank, a parallel plan
/// (infer, pretrain, finetune) with exactly its world of ranks; init writes
/// the global weights of any plan in one process. Rank 0 says what does not
/// fit; the other ranks exit without a word.
void checkWorld(const Args &args) {
  std::optional<comm::Launch> launch = comm::detectLaunch();
  int ranks = launch ? launch->worldSize : 1;
  bool quiet = launch && launch->worldRank != 0;
  auto refuse = [&](const std::string &message) {
    // The other ranks leave quietly and successfully: a rank that failed
    // first would make mpirun kill rank 0 before it says why, and rank 0's
    // failure is the job's status.
    if (quiet)
      std::exit(0);
    throw RuntimeFailure{message};
  };
  Expected<exec::Plan> loaded = exec::Plan::load(args.artifact);
  if (!loaded) {
    if (ranks == 1)
      return; // the command reports it
    refuse(loaded.message());
  }
  const exec::Plan &plan = *loaded;
  int64_t world = plan.mesh.world();
  if (world == 1 && ranks > 1)
    refuse(args.artifact + " is a one-process plan (no mesh); mpirun started " +
           std::to_string(ranks) + " ranks; run it without mpirun");
  if (world == 1 || args.command == "params")
    return;
  // The weights file is global: one process draws it for every mesh.
  if (args.command == "init") {
    if (ranks > 1)
      refuse("mixer-run init writes one global weights file for every mesh; "
             "run it without mpirun");
    return;
  }
  std::string needs = args.artifact + " needs " + std::to_string(world) +
                      " ranks (dp " + std::to_string(plan.mesh.dp) + " × ep " +
                      std::to_string(plan.mesh.ep) + ")";
  if (args.command != "infer" && args.command != "pretrain" &&
      args.command != "finetune" && args.command != "bench")
    refuse(args.artifact + " is a parallel plan; mixer-run " + args.command +
           " runs one-process plans only (infer, bench, pretrain and "
           "finetune run parallel ones)");
  if (ranks != world)
    refuse(needs +
           (launch ? "; mpirun started " + std::to_string(ranks)
                   : "; start it with mpirun -np " + std::to_string(world)));
}

int dispatch(const Args &args) {
  checkWorld(args);
  int threads = configureThreads(args);
  if (args.command == "params")
    return runParams(args);
  if (args.command == "init")
    return runInit(args);
  if (args.command == "infer")
    return runInfer(args);
  if (args.command == "pretrain")
    return runPretrain(args);
  if (args.command == "finetune")
    return runFinetune(args);
  if (args.command == "eval")
    return runEval(args);
  if (args.command == "tokenize")
    return runTokenize(args);
  if (args.command == "import")
    return runImport(args);
  if (args.command == "export")
    return runExport(args);
  return runBench(args, threads);
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    printUsage(stderr);
    return kUsageError;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h") {
    printUsage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("mixer-run %s (plan format %lld)\n", kVersion,
                static_cast<long long>(exec::kPlanFormatVersion));
    return 0;
  }
  auto command = std::find_if(commands().begin(), commands().end(),
                              [&](const Command &c) { return name == c.name; });
  if (command == commands().end()) {
    std::fprintf(stderr, "mixer-run: unknown command '%s'\n", name.c_str());
    printUsage(stderr);
    return kUsageError;
  }
  try {
    Args args;
    if (!parseArgs(*command, argc, argv, args)) {
      std::fputs(command->help, stdout);
      return 0;
    }
    return dispatch(args);
  } catch (const ReportedElsewhere &) {
    return 0;
  } catch (const UsageError &error) {
    std::fprintf(stderr, "mixer-run %s: %s\nsee 'mixer-run %s --help'\n",
                 command->name, error.message.c_str(), command->name);
    return kUsageError;
  } catch (const RuntimeFailure &error) {
    std::fprintf(stderr, "mixer-run: error: %s\n", error.message.c_str());
    return kRuntimeFailure;
  } catch (const std::bad_alloc &) {
    std::fprintf(stderr, "mixer-run: error: out of memory\n");
    return kRuntimeFailure;
  } catch (const std::exception &error) {
    std::fprintf(stderr, "mixer-run: error: %s\n", error.what());
    return kRuntimeFailure;
  }
}
