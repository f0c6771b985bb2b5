//===- TrainCommands.cpp - mixer-run pretrain, finetune and eval ----------===//

#include "tools/mixer-run/TrainCommands.h"
#include "tools/mixer-run/Executors.h"

#include "runtime/data/Tokenizer.h"
#include "runtime/exec/Binding.h"
#include "runtime/exec/Init.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/train/Checkpoint.h"
#include "runtime/train/Trainer.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>

namespace mixer::run {

namespace {

using json = nlohmann::ordered_json;

std::atomic<bool> stopSignalled{false};

extern "C" void requestStop(int) { stopSignalled = true; }

/// Ctrl-C and SIGTERM finish the current update, save a checkpoint and stop.
void installStopHandlers() {
  std::signal(SIGINT, requestStop);
  std::signal(SIGTERM, requestStop);
}

/// This process's part in a run: the only process, or one rank of a
/// parallel plan's world.
struct Ranks {
  std::unique_ptr<comm::Communicator> world; ///< null: one process

  /// Whether this process reports: one-process runs and rank 0.
  bool speaks() const { return !world || world->rank() == 0; }

  /// Runs `setup` and, on a world, agrees on its outcome before the first
  /// collective of training: when it failed on any rank, the lowest such
  /// rank reports its failure (so rank 0 reports a failure that every rank
  /// meets, once) and the others exit silently with its code.
  template <typename Setup> auto agree(Setup setup) -> decltype(setup()) {
    if (!world)
      return setup();
    int32_t code = 0;
    std::string message;
    std::optional<decltype(setup())> result;
    try {
      result.emplace(setup());
    } catch (const UsageError &error) {
      code = kUsageError;
      message = error.message;
    } catch (const RuntimeFailure &error) {
      code = kRuntimeFailure;
      message = error.message;
    }
    std::vector<int32_t> codes(world->size());
    run::check(world->allGather(&code, codes.data(), sizeof(code), "setup"));
    auto failed = std::find_if(codes.begin(), codes.end(),
                               [](int32_t c) { return c != 0; });
    if (failed == codes.end())
      return std::move(*result);
    int rank = static_cast<int>(failed - codes.begin());
    if (rank != world->rank())
      throw ReportedElsewhere{};
    if (rank != 0)
      message = "rank " + std::to_string(rank) + ": " + message;
    if (code == kUsageError)
      throw UsageError{message};
    throw RuntimeFailure{message};
  }

  /// Ends a training run: a failure of this rank alone has already ended
  /// the job (TrainOptions::onRankFailure); one that every rank meets is
  /// reported by rank 0.
  void check(Status trained) const {
    if (!trained && !speaks())
      throw ReportedElsewhere{};
    run::check(std::move(trained));
  }
};

exec::Plan loadTrainingPlan(const Args &args) {
  exec::Plan plan = check(exec::Plan::load(args.artifact));
  requireTarget(plan);
  if (!plan.updatesParameters())
    throw RuntimeFailure{plan.path + ": not a training artifact (mode '" +
                         plan.mode + "'); compile the model with mixc --train"};
  return plan;
}

data::Tokenizer loadTokenizer(const Args &args, const exec::Plan &plan) {
  if (!args.has("--tokenizer"))
    throw UsageError{"missing --tokenizer FILE (a SentencePiece model)"};
  std::string path = args.get("--tokenizer");
  data::Tokenizer tokenizer = check(data::Tokenizer::load(path));
  if (Status status = tokenizer.checkMatches(plan.vocabSize, plan.padId);
      !status)
    throw RuntimeFailure{status.message() + " (model '" + plan.model + "' of " +
                         plan.path + ")"};
  return tokenizer;
}

std::string requireFlag(const Args &args, const std::string &flag,
                        const char *what) {
  if (!args.has(flag))
    throw UsageError{"missing " + flag + " " + what};
  return args.get(flag);
}

/// Parses a finite non-negative number flag value.
double parseRate(const Args &args, const std::string &flag, double fallback) {
  if (!args.has(flag))
    return fallback;
  std::string text = args.get(flag);
  char *end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= 0) || !std::isfinite(value))
    throw UsageError{flag + ": '" + text + "' is not a non-negative number"};
  return value;
}

int32_t parseSeed(const Args &args) {
  uint64_t seed = parseCount(args, "--seed", 0);
  if (seed > static_cast<uint64_t>(INT32_MAX))
    throw UsageError{"--seed: must be at most " + std::to_string(INT32_MAX)};
  return static_cast<int32_t>(seed);
}

} // namespace

std::vector<io::HostTensor> loadWeights(const std::string &path,
                                        const io::TensorFilter &filter) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path))
    return check(io::readTensorFile(path, filter));
  // One step of a checkpoint directory: DIR/step_<N>.
  fs::path step = fs::path(path).lexically_normal();
  if (step.filename().empty())
    step = step.parent_path();
  std::string leaf = step.filename().string();
  if (leaf.rfind("step_", 0) == 0 && leaf.size() > 5 && leaf.size() < 24 &&
      std::all_of(leaf.begin() + 5, leaf.end(),
                  [](unsigned char c) { return std::isdigit(c); }) &&
      fs::exists(step / "state.json"))
    return check(train::loadCheckpoint(step.parent_path().string(),
                                       std::stoll(leaf.substr(5))))
        .params;
  return check(train::loadCheckpoint(path)).params;
}

namespace {

/// The number of outputs of the plan's classification head; fails when it
/// has none.
int64_t classificationClasses(const exec::Plan &plan) {
  if (plan.heads.classes == 0)
    throw RuntimeFailure{plan.path +
                         ": the artifact has no classification head"};
  return plan.heads.classes;
}

/// The parameters a run starts from: the plan's initialisers drawn with
/// `seed`, with every tensor of --init (a checkpoint directory or a weights
/// file) whose name and shape match taken over. Parameters that --init
/// lacks are an error unless `freshPrefix` starts their name (a new head).
std::vector<io::HostTensor> initialParameters(const Args &args,
                                              const exec::Plan &plan,
                                              int32_t seed,
                                              const std::string &freshPrefix) {
  std::vector<io::HostTensor> params = exec::initParameters(plan, seed);
  if (!args.has("--init"))
    return params;
  std::string path = args.get("--init");
  // Only tensors that can replace a parameter are read.
  std::map<std::string, const io::HostTensor *> wanted;
  for (const io::HostTensor &param : params)
    wanted[param.name] = &param;
  std::vector<io::HostTensor> loaded =
      loadWeights(path, [&](const io::HostTensor &header) -> Expected<bool> {
        auto it = wanted.find(header.name);
        return it != wanted.end() && it->second->shape == header.shape &&
               it->second->dtype == header.dtype;
      });
  std::map<std::string, io::HostTensor *> byName;
  for (io::HostTensor &tensor : loaded)
    byName[tensor.name] = &tensor;
  std::vector<std::string> missing;
  for (io::HostTensor &param : params) {
    bool fresh = !freshPrefix.empty() && param.name.rfind(freshPrefix, 0) == 0;
    auto it = byName.find(param.name);
    if (!fresh && it != byName.end() && it->second->shape == param.shape &&
        it->second->dtype == param.dtype)
      param = std::move(*it->second);
    else if (!fresh)
      missing.push_back(param.name);
  }
  if (!missing.empty())
    throw RuntimeFailure{path + ": has no tensor of the right shape for " +
                         std::to_string(missing.size()) +
                         " parameters, e.g. '" + missing.front() + "'"};
  return params;
}

/// The schedule of the artifact's model JSON, with the flags' overrides.
train::LearningRateSchedule schedule(const Args &args, const exec::Plan &plan,
                                     int64_t defaultTotal,
                                     int64_t defaultWarmup) {
  train::LearningRateSchedule result;
  result.base = parseRate(args, "--lr", plan.training->learningRate);
  result.totalSteps = parseCount(args, "--total-steps", defaultTotal);
  result.warmupSteps = parseCount(args, "--warmup-steps", defaultWarmup);
  if (Status status = train::validateSchedule(result); !status)
    throw UsageError{"the learning-rate schedule: " + status.message()};
  return result;
}

/// Says once, before the first update, when a run of the updates at steps
/// [first, last) ends inside the warm-up: its learning rate never reaches the
/// peak, and the loss barely moves, which otherwise looks like a model that
/// does not learn.
void noteRunEndsInWarmup(const train::LearningRateSchedule &lr, int64_t first,
                         int64_t last, const char *lengthFlag) {
  if (first >= last || last > lr.warmupSteps || !(lr.base > 0))
    return;
  double highest = train::highestLearningRate(lr, first, last);
  std::fprintf(stderr,
               "note: this run ends at step %lld, inside the %lld-step "
               "warm-up: the learning rate rises only to %.3g, %.2g %% of its "
               "peak %.3g. --warmup-steps N shortens the warm-up (below "
               "--total-steps, now %lld); %s runs longer\n",
               static_cast<long long>(last),
               static_cast<long long>(lr.warmupSteps), highest,
               100.0 * highest / lr.base, lr.base,
               static_cast<long long>(lr.totalSteps), lengthFlag);
}

/// A one-line display of the run: redrawn in place on a terminal, plain
/// lines (about 20 per run) otherwise.
class Progress {
public:
  Progress(int64_t first, int64_t last)
      : first(first), last(last), tty(isatty(fileno(stderr))),
        every(std::max<int64_t>(1, (last - first) / 20)),
        start(std::chrono::steady_clock::now()) {}

  void update(const train::StepReport &report) {
    tokens += report.tokens;
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    int64_t done = report.step - first;
    if (!tty && done % every != 0 && report.step != last)
      return;
    double perStep = elapsed / std::max<int64_t>(done, 1);
    double eta = perStep * (last - report.step);
    std::string line;
    char text[160];
    if (tty) {
      int filled =
          static_cast<int>(20.0 * report.step / std::max<int64_t>(last, 1));
      line =
          "[" + std::string(filled, '#') + std::string(20 - filled, ' ') + "] ";
    }
    std::snprintf(text, sizeof(text), "step %lld/%lld",
                  static_cast<long long>(report.step),
                  static_cast<long long>(last));
    line += text;
    for (const auto &[name, value] : report.metrics) {
      std::snprintf(text, sizeof(text), "  %s %.4f", name.c_str(), value);
      line += text;
    }
    std::snprintf(text, sizeof(text), "  lr %.3g  %.0f tok/s  ETA %s",
                  report.learningRate, tokens / std::max(elapsed, 1e-9),
                  formatDuration(eta).c_str());
    line += text;
    std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line.c_str());
    if (tty && report.step == last)
      std::fputc('\n', stderr);
  }

private:
  static std::string formatDuration(double seconds) {
    char text[32];
    long total = std::lround(seconds);
    std::snprintf(text, sizeof(text), "%ldm%02lds", total / 60, total % 60);
    return text;
  }

  int64_t first, last;
  bool tty;
  int64_t every;
  std::chrono::steady_clock::time_point start;
  double tokens = 0;
};

/// Starts a session on the executor of the plan's target: resumed from
/// --checkpoint-dir when --resume finds a checkpoint there, else fresh from
/// `params()`.
template <typename MakeParams>
train::TrainingSession openSession(const Args &args, const exec::Plan &plan,
                                   const Ranks &ranks, train::BatchSource &data,
                                   int32_t &seed, MakeParams params) {
  comm::Communicator *world = ranks.world.get();
  auto fresh = [&] {
    return check(train::TrainingSession::start(createExecutor(plan, world),
                                               params(), plan.path, world));
  };
  std::string dir = args.get("--checkpoint-dir");
  std::optional<int64_t> step;
  if (args.has("--resume-step"))
    step = static_cast<int64_t>(parseCount(args, "--resume-step", 0));
  if (args.has("--resume") || step) {
    if (dir.empty())
      throw UsageError{"--resume needs --checkpoint-dir"};
    std::error_code ec;
    if (!step && !std::filesystem::exists(dir, ec)) {
      if (ranks.speaks())
        std::fprintf(stderr,
                     "no checkpoint directory %s yet: starting at step 0 (it "
                     "is created at the first checkpoint)\n",
                     dir.c_str());
      return fresh();
    }
    std::vector<int64_t> steps = check(train::listCheckpoints(dir));
    if (!steps.empty() || step) {
      int32_t saved = seed;
      train::TrainingSession session = check(train::TrainingSession::resume(
          createExecutor(plan, world), dir, step, data, saved, world));
      if (args.has("--seed") && saved != seed)
        throw UsageError{"--seed " + std::to_string(seed) +
                         " differs from the resumed run's seed " +
                         std::to_string(saved)};
      seed = saved;
      if (ranks.speaks())
        std::fprintf(stderr, "resuming from %s/step_%lld\n", dir.c_str(),
                     static_cast<long long>(session.step()));
      return session;
    }
    if (ranks.speaks())
      std::fprintf(stderr, "no checkpoint in %s yet: starting at step 0\n",
                   dir.c_str());
  }
  return fresh();
}

train::TrainOptions trainOptions(const Args &args, const Ranks &ranks,
                                 int64_t steps,
                                 train::LearningRateSchedule lrSchedule,
                                 int32_t seed, Progress &progress) {
  train::TrainOptions options;
  options.steps = steps;
  options.schedule = lrSchedule;
  options.seed = seed;
  options.checkpointDir = args.get("--checkpoint-dir");
  options.checkpointEvery = parseCount(args, "--checkpoint-every", 0);
  options.keepLast = static_cast<int>(parseCount(args, "--keep", 3));
  if (options.keepLast < 1)
    throw UsageError{"--keep: must be at least 1"};
  options.metricsPath = args.get("--log");
  options.onStep = [&progress](const train::StepReport &report) {
    progress.update(report);
  };
  options.stopRequested = [] { return stopSignalled.load(); };
  // The other ranks may wait in a collective this one will not join: a
  // rank that fails alone ends the job.
  if (comm::Communicator *world = ranks.world.get())
    options.onRankFailure = [world](const Status &failure) {
      std::fprintf(stderr, "mixer-run: error: rank %d: %s\n", world->rank(),
                   failure.message().c_str());
      world->abort(kRuntimeFailure);
    };
  return options;
}

/// Ends a run: 130 after a stop request (its checkpoint saved), else 0.
int finish(const train::TrainingSession &session, const Args &args,
           const Ranks &ranks) {
  if (!stopSignalled)
    return 0;
  if (!ranks.speaks())
    return 130;
  std::fprintf(stderr, "stopped at step %lld%s\n",
               static_cast<long long>(session.step()),
               args.has("--checkpoint-dir") ? "; checkpoint saved" : "");
  return 130;
}

/// Appends one record to the --log file.
void logRecord(const Args &args, const json &record) {
  if (!args.has("--log"))
    return;
  std::ofstream out(args.get("--log"), std::ios::app);
  out << record.dump() << "\n";
  if (!out)
    throw RuntimeFailure{args.get("--log") + ": cannot append to it"};
}

/// The input shape `name` of `plan`, or a failure naming what is missing.
const exec::InputInfo &requireInput(const exec::Plan &plan,
                                    const std::string &name, const char *head) {
  int64_t index = plan.findInput(name);
  if (index < 0)
    throw RuntimeFailure{plan.path + ": the artifact has no '" + name +
                         "' input: its model has no " + head + " head"};
  return plan.inputs[index];
}

//===----------------------------------------------------------------------===//
// Evaluation
//===----------------------------------------------------------------------===//

/// The output `name` of `outputs`, or a failure naming the artifact.
const io::HostTensor &output(const exec::Plan &plan,
                             const std::vector<io::HostTensor> &outputs,
                             const std::string &name) {
  for (const io::HostTensor &tensor : outputs)
    if (tensor.name == name)
      return tensor;
  throw RuntimeFailure{plan.path + ": the artifact has no output '" + name +
                       "'; recompile it with this version of mixc"};
}

/// Accuracy, F1 (of class 1 for two classes, else the mean over classes)
/// or the mean squared error, the mean loss and the majority-class rate of
/// `examples` under the session's current parameters.
json evaluateClassification(exec::PlanExecutor &executor,
                            const data::ClassificationData &examples) {
  const exec::Plan &plan = executor.getPlan();
  int64_t batchSize = plan.batch, seq = plan.seq;
  bool regression = examples.isRegression();
  std::vector<double> predictions, labels;
  double lossSum = 0;
  int64_t batches = examples.numBatches(batchSize);
  for (int64_t b = 0; b < batches; ++b) {
    data::ClassificationBatch batch = examples.batch(b, batchSize, seq);
    std::vector<io::HostTensor> outputs =
        check(train::evaluateBatch(executor, batch.tensors()));
    const io::HostTensor &logits =
        output(plan, outputs, "classification_logits");
    int64_t classes = logits.shape.back();
    for (int64_t row = 0; row < batchSize; ++row) {
      if (batch.exampleWeights[row] == 0)
        continue;
      const float *scores = logits.as<float>() + row * classes;
      if (!regression) {
        // Cross-entropy of the real rows only (padding rows also feed the
        // plan's batch-mean loss).
        double top = *std::max_element(scores, scores + classes), sum = 0;
        for (int64_t c = 0; c < classes; ++c)
          sum += std::exp(scores[c] - top);
        lossSum += top + std::log(sum) - scores[batch.classLabels[row]];
      }
      predictions.push_back(
          regression ? scores[0]
                     : std::max_element(scores, scores + classes) - scores);
      labels.push_back(regression ? batch.targets[row]
                                  : batch.classLabels[row]);
    }
  }
  int64_t n = static_cast<int64_t>(labels.size());
  json result = {{"examples", n}};
  if (regression) {
    double squares = 0;
    for (int64_t i = 0; i < n; ++i)
      squares += (predictions[i] - labels[i]) * (predictions[i] - labels[i]);
    result["mse"] = n ? squares / n : 0.0;
    return result;
  }
  result["eval_loss"] = n ? lossSum / n : 0.0;
  int64_t classes = 0;
  for (double label : labels)
    classes = std::max<int64_t>(classes, label + 1);
  for (double prediction : predictions)
    classes = std::max<int64_t>(classes, prediction + 1);
  std::vector<int64_t> truePos(classes), predicted(classes), actual(classes);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t p = predictions[i], y = labels[i];
    correct += p == y;
    truePos[y] += p == y;
    ++predicted[p];
    ++actual[y];
  }
  auto f1 = [&](int64_t c) {
    double denominator = predicted[c] + actual[c];
    return denominator > 0 ? 2.0 * truePos[c] / denominator : 0.0;
  };
  double macro = 0;
  for (int64_t c = 0; c < classes; ++c)
    macro += f1(c);
  result["accuracy"] = n ? double(correct) / n : 0.0;
  result["f1"] = classes == 2 ? f1(1) : (classes ? macro / classes : 0.0);
  result["majority_class_rate"] =
      n ? double(*std::max_element(actual.begin(), actual.end())) / n : 0.0;
  return result;
}

/// Masked-LM and next-sentence accuracy, or the causal-LM token accuracy
/// and perplexity, and the mean losses over `batches` batches of the
/// corpus, with the accuracy of always answering the most frequent label
/// as the baseline.
json evaluatePretraining(exec::PlanExecutor &executor, train::BatchSource &data,
                         int64_t batches) {
  const exec::Plan &plan = executor.getPlan();
  bool causal = plan.heads.causalLm;
  // Predicted ids against the labels they predict (-1: not counted).
  const char *predictionsName =
      causal ? "causal_lm_predictions" : "masked_lm_predictions";
  const char *labelsName = causal ? "labels" : "masked_lm_ids";
  double tokenCorrect = 0, tokenTotal = 0, nspCorrect = 0, nspTotal = 0;
  std::map<std::string, double> lossSums;
  std::map<int32_t, int64_t> labelCounts;
  for (int64_t b = 0; b < batches; ++b) {
    std::vector<io::HostTensor> inputs = data.next();
    std::vector<io::HostTensor> outputs =
        check(train::evaluateBatch(executor, inputs));
    auto input = [&](const char *name) -> const io::HostTensor & {
      for (const io::HostTensor &tensor : inputs)
        if (tensor.name == name)
          return tensor;
      throw RuntimeFailure{std::string("the batch has no ") + name};
    };
    const io::HostTensor &predicted = output(plan, outputs, predictionsName);
    const io::HostTensor &ids = input(labelsName);
    for (int64_t i = 0; i < ids.numel(); ++i) {
      int32_t label = ids.as<int32_t>()[i];
      if (label < 0)
        continue;
      tokenCorrect += predicted.as<int32_t>()[i] == label;
      ++tokenTotal;
      ++labelCounts[label];
    }
    if (plan.heads.nextSentence) {
      const io::HostTensor &logits = output(plan, outputs, "nsp_logits");
      const io::HostTensor &labels = input("next_sentence_labels");
      for (int64_t row = 0; row < labels.numel(); ++row) {
        const float *scores = logits.as<float>() + 2 * row;
        nspCorrect +=
            (scores[1] > scores[0]) == (labels.as<int32_t>()[row] == 1);
        ++nspTotal;
      }
    }
    for (const io::HostTensor &tensor : outputs)
      if (tensor.name == "loss" ||
          tensor.name.find("_loss") != std::string::npos)
        lossSums[tensor.name] += tensor.as<float>()[0];
  }
  json result = {{"batches", batches},
                 {causal ? "token_accuracy" : "masked_lm_accuracy",
                  tokenTotal ? tokenCorrect / tokenTotal : 0.0}};
  int64_t mostFrequent = 0;
  for (const auto &[label, count] : labelCounts)
    mostFrequent = std::max(mostFrequent, count);
  result[causal ? "token_most_frequent_rate" : "masked_lm_most_frequent_rate"] =
      tokenTotal ? mostFrequent / tokenTotal : 0.0;
  if (nspTotal)
    result["next_sentence_accuracy"] = nspCorrect / nspTotal;
  for (const auto &[name, sum] : lossSums)
    result["eval_" + name] = sum / batches;
  // The perplexity of the mean next-token cross-entropy.
  if (causal)
    result["perplexity"] = std::exp(lossSums["causal_lm_loss"] / batches);
  return result;
}

/// Pre-training batches of the plan's heads: causal-LM windows for a
/// causal-LM artifact, MLM + NSP batches otherwise.
std::unique_ptr<train::BatchSource>
pretrainingSource(const exec::Plan &plan, const Args &args,
                  const data::Tokenizer &tokenizer, uint64_t seed) {
  std::string corpus = requireFlag(args, "--corpus", "FILE (plain text)");
  if (plan.heads.causalLm) {
    data::LmOptions options;
    options.batchSize = plan.batch;
    options.seqLength = plan.seq;
    return train::makeLmSource(
        check(data::LmStream::create(corpus, tokenizer, options)),
        static_cast<int32_t>(plan.padId));
  }
  const exec::InputInfo &positions =
      requireInput(plan, "masked_lm_positions", "masked-LM or causal-LM");
  data::MlmOptions options;
  options.batchSize = plan.batch;
  options.seqLength = plan.seq;
  options.maxPredictions = positions.shape[1];
  options.seed = seed;
  return train::makeMlmSource(
      check(data::MlmBatcher::create(corpus, tokenizer, options)),
      static_cast<int32_t>(plan.padId));
}

void printJsonOrTable(const Args &args, const json &result) {
  if (args.has("--json")) {
    std::cout << result.dump() << "\n";
    return;
  }
  for (const auto &[key, value] : result.items())
    std::printf("%-26s %s\n", key.c_str(), value.dump().c_str());
}

} // namespace

//===----------------------------------------------------------------------===//
// Commands
//===----------------------------------------------------------------------===//

int runPretrain(const Args &args) {
  exec::Plan plan = loadTrainingPlan(args);
  Ranks ranks{parallelWorld(plan)};
  uint64_t steps = 0;
  int32_t seed = 0;
  std::unique_ptr<train::BatchSource> data;
  // Every rank draws the same global batches and keeps its rows.
  train::TrainingSession session = ranks.agree([&] {
    steps = parseCount(args, "--steps", 0);
    if (steps == 0)
      throw UsageError{
          "--steps N: the number of updates to reach (at least 1)"};
    seed = parseSeed(args);
    data::Tokenizer tokenizer = loadTokenizer(args, plan);
    data = pretrainingSource(plan, args, tokenizer, seed);
    return openSession(args, plan, ranks, *data, seed,
                       [&] { return initialParameters(args, plan, seed, ""); });
  });
  train::LearningRateSchedule lr = schedule(
      args, plan, plan.training->totalSteps, plan.training->warmupSteps);
  if (ranks.speaks())
    noteRunEndsInWarmup(lr, session.step(), steps, "--steps N");
  Progress progress(session.step(), steps);
  installStopHandlers();
  ranks.check(session.train(
      *data, trainOptions(args, ranks, steps, lr, seed, progress)));
  return finish(session, args, ranks);
}

int runFinetune(const Args &args) {
  exec::Plan plan = loadTrainingPlan(args);
  Ranks ranks{parallelWorld(plan)};
  int32_t seed = 0;
  uint64_t epochs = 0;
  int64_t perEpoch = 0;
  std::optional<data::ClassificationData> train, dev;
  std::unique_ptr<train::BatchSource> data;
  train::TrainingSession session = ranks.agree([&] {
    seed = parseSeed(args);
    epochs = parseCount(args, "--epochs", 3);
    if (epochs == 0)
      throw UsageError{"--epochs: must be at least 1"};
    if (ranks.world && args.has("--eval"))
      throw UsageError{"--eval: evaluation between epochs runs one-process "
                       "plans only; evaluate a checkpoint with mixer-run eval "
                       "on the one-process artifact"};
    data::Tokenizer tokenizer = loadTokenizer(args, plan);
    const exec::InputInfo &labels =
        requireInput(plan, "labels", "classification");
    int64_t classes = classificationClasses(plan);
    train = check(data::ClassificationData::load(
        requireFlag(args, "--train", "FILE (JSONL)"), tokenizer, classes));
    // Updates per epoch, each of microSteps batches.
    int64_t microSteps = plan.training->microSteps;
    perEpoch = train->size() / plan.batch / microSteps;
    if (perEpoch == 0)
      throw RuntimeFailure{
          args.get("--train") + ": " + std::to_string(train->size()) +
          " examples do not fill one update of " + std::to_string(microSteps) +
          " x " + std::to_string(labels.shape[0])};
    if (args.has("--eval"))
      dev = check(data::ClassificationData::load(args.get("--eval"), tokenizer,
                                                 classes));
    data = train::makeClassificationSource(*train, plan.batch, plan.seq, seed,
                                           static_cast<int32_t>(plan.padId),
                                           microSteps);
    // The classification head is new: drawn, not taken from --init.
    return openSession(args, plan, ranks, *data, seed, [&] {
      return initialParameters(args, plan, seed, "classification/");
    });
  });
  int64_t total = perEpoch * epochs;
  train::LearningRateSchedule lr = schedule(args, plan, total, total / 10);
  if (ranks.speaks())
    noteRunEndsInWarmup(lr, session.step(), total, "--epochs N");
  Progress progress(session.step(), total);
  installStopHandlers();
  train::TrainOptions options =
      trainOptions(args, ranks, total, lr, seed, progress);
  for (int64_t epoch = session.step() / perEpoch; epoch < int64_t(epochs);
       ++epoch) {
    options.steps = (epoch + 1) * perEpoch;
    ranks.check(session.train(*data, options));
    // Stopped early (on any rank's request).
    if (session.step() < options.steps)
      break;
    if (dev) {
      // Evaluation runs on the session's executor between updates.
      json result = {{"step", session.step()}, {"epoch", epoch + 1}};
      result.update(evaluateClassification(session.executor(), *dev));
      std::fprintf(stderr, "epoch %lld: %s\n",
                   static_cast<long long>(epoch + 1), result.dump().c_str());
      logRecord(args, result);
    }
  }
  return finish(session, args, ranks);
}

int runEval(const Args &args) {
  exec::Plan plan = loadTrainingPlan(args);
  data::Tokenizer tokenizer = loadTokenizer(args, plan);
  std::unique_ptr<exec::PlanExecutor> executor = createExecutor(plan);
  std::string weights =
      requireFlag(args, "--weights", "FILE or checkpoint directory");
  check(executor->bindParams(
      loadWeights(weights,
                  exec::paramsFilter(plan, weights, /*allowExtra=*/true)),
      weights, /*allowExtra=*/true));
  check(executor->bindState(train::zeroOptimizerState(plan), "optimizer state",
                            /*allowExtra=*/false));
  if (args.has("--data") == args.has("--corpus"))
    throw UsageError{"give either --data FILE (JSONL, classification) or "
                     "--corpus FILE (text, pre-training)"};
  json result;
  if (args.has("--data")) {
    result = evaluateClassification(
        *executor,
        check(data::ClassificationData::load(args.get("--data"), tokenizer,
                                             classificationClasses(plan))));
  } else {
    std::unique_ptr<train::BatchSource> data =
        pretrainingSource(plan, args, tokenizer, parseSeed(args));
    uint64_t batches = parseCount(args, "--batches", 20);
    if (batches == 0)
      throw UsageError{"--batches: must be at least 1"};
    result = evaluatePretraining(*executor, *data, batches);
  }
  printJsonOrTable(args, result);
  return 0;
}

} // namespace mixer::run
