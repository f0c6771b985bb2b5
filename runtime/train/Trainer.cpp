//===- Trainer.cpp - The training loop over a training plan ---------------===//

#include "runtime/train/Trainer.h"

#include "runtime/exec/Binding.h"
#include "runtime/io/Container.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/train/Checkpoint.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

namespace mixer::train {

namespace {

using json = nlohmann::json;

io::HostTensor scalarTensor(const std::string &name, io::DType dtype) {
  io::HostTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.data.resize(io::dtypeSize(dtype));
  return tensor;
}

io::HostTensor int32Scalar(const std::string &name, int32_t value) {
  io::HostTensor tensor = scalarTensor(name, io::DType::I32);
  tensor.as<int32_t>()[0] = value;
  return tensor;
}

io::HostTensor floatScalar(const std::string &name, float value) {
  io::HostTensor tensor = scalarTensor(name, io::DType::F32);
  tensor.as<float>()[0] = value;
  return tensor;
}

int64_t countTokens(const std::vector<int32_t> &ids, int32_t padId) {
  int64_t tokens = 0;
  for (int32_t id : ids)
    tokens += id != padId;
  return tokens;
}

/// A batch source over a corpus stream (MlmBatcher, LmStream) whose
/// position is a DataPosition.
template <typename Stream> class CorpusSource : public BatchSource {
public:
  CorpusSource(Stream stream, int32_t padId)
      : stream(std::move(stream)), padId(padId) {}

  json position() const override { return stream.position().toJson(); }
  Status seek(const json &position) override {
    Expected<data::DataPosition> parsed =
        data::DataPosition::fromJson(position, "data position");
    if (!parsed)
      return parsed.takeStatus();
    return stream.seek(*parsed);
  }
  int64_t lastTokens() const override { return tokens; }

protected:
  Stream stream;
  int32_t padId;
  int64_t tokens = 0;
};

class MlmSource : public CorpusSource<data::MlmBatcher> {
public:
  using CorpusSource::CorpusSource;

  std::vector<io::HostTensor> next() override {
    data::MlmBatch batch = stream.next();
    for (size_t i = 0; i < batch.maskedLmIds.size(); ++i)
      if (batch.maskedLmWeights[i] == 0)
        batch.maskedLmIds[i] = -1;
    tokens = countTokens(batch.inputIds, padId);
    return batch.tensors();
  }
};

class LmSource : public CorpusSource<data::LmStream> {
public:
  using CorpusSource::CorpusSource;

  std::vector<io::HostTensor> next() override {
    data::LmBatch batch = stream.next();
    tokens = countTokens(batch.inputIds, padId);
    return batch.tensors();
  }
};

class ClassificationSource : public BatchSource {
public:
  ClassificationSource(const data::ClassificationData &examples,
                       int64_t batchSize, int64_t seqLength, uint64_t seed,
                       int32_t padId, int64_t microSteps)
      : examples(examples), batchSize(batchSize), seqLength(seqLength),
        seed(seed), padId(padId),
        batchesPerEpoch(examples.size() / batchSize / microSteps * microSteps) {
    order = examples.epochOrder(seed, epoch);
  }

  std::vector<io::HostTensor> next() override {
    if (batch == batchesPerEpoch) {
      batch = 0;
      order = examples.epochOrder(seed, ++epoch);
    }
    data::ClassificationBatch next =
        examples.batch(batch++, batchSize, seqLength, order);
    tokens = countTokens(next.inputIds, padId);
    return next.tensors();
  }
  json position() const override {
    return {{"epoch", epoch}, {"batch", batch}};
  }
  Status seek(const json &position) override {
    if (!position.is_object() || !position.contains("epoch") ||
        !position.contains("batch") ||
        !position["epoch"].is_number_unsigned() ||
        !position["batch"].is_number_unsigned() ||
        position["batch"].get<int64_t>() > batchesPerEpoch)
      return Status::error("data position " + position.dump() +
                           " is not an {epoch, batch} of this data set");
    epoch = position["epoch"].get<uint64_t>();
    batch = position["batch"].get<int64_t>();
    order = examples.epochOrder(seed, epoch);
    return Status::success();
  }
  int64_t lastTokens() const override { return tokens; }

private:
  const data::ClassificationData &examples;
  int64_t batchSize, seqLength;
  uint64_t seed;
  int32_t padId;
  int64_t batchesPerEpoch;
  uint64_t epoch = 0;
  int64_t batch = 0;
  std::vector<int64_t> order;
  int64_t tokens = 0;
};

/// The CRC-64 of the parameter and state tables (names and global shapes):
/// a checkpoint resumes only into a plan with the same tensors, at any mesh.
std::string tensorTablesChecksum(const exec::Plan &plan) {
  std::ostringstream tables;
  for (const auto *table : {&plan.params, &plan.state})
    for (const exec::ParamInfo &entry : *table)
      tables << entry.name
             << io::formatShape(entry.globalShape.empty() ? entry.shape
                                                          : entry.globalShape)
             << ';';
  std::string text = tables.str();
  return io::formatChecksum(io::crc64(text.data(), text.size()));
}

/// Keeps the lines of `path` whose "step" is at most `step`, so that a
/// resumed run does not log a step twice.
Status truncateMetrics(const std::string &path, int64_t step) {
  std::ifstream in(path);
  if (!in)
    return Status::success();
  std::string kept, line;
  while (std::getline(in, line)) {
    json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object() && record.contains("step") &&
        record["step"].is_number_integer() &&
        record["step"].get<int64_t>() <= step)
      kept += line + "\n";
  }
  return io::writeFileAtomic(path, kept);
}

} // namespace

std::unique_ptr<BatchSource> makeMlmSource(data::MlmBatcher batcher,
                                           int32_t padId) {
  return std::make_unique<MlmSource>(std::move(batcher), padId);
}

std::unique_ptr<BatchSource> makeLmSource(data::LmStream stream,
                                          int32_t padId) {
  return std::make_unique<LmSource>(std::move(stream), padId);
}

std::unique_ptr<BatchSource>
makeClassificationSource(const data::ClassificationData &data,
                         int64_t batchSize, int64_t seqLength, uint64_t seed,
                         int32_t padId, int64_t microSteps) {
  return std::make_unique<ClassificationSource>(data, batchSize, seqLength,
                                                seed, padId, microSteps);
}

std::vector<io::HostTensor> zeroOptimizerState(const exec::Plan &plan) {
  std::vector<io::HostTensor> state;
  for (const exec::ParamInfo &entry : plan.state) {
    io::HostTensor tensor;
    tensor.name = entry.name;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.data.assign(entry.numel * io::dtypeSize(entry.dtype), 0);
    state.push_back(std::move(tensor));
  }
  return state;
}

Expected<TrainingSession>
TrainingSession::start(std::unique_ptr<exec::PlanExecutor> executor,
                       std::vector<io::HostTensor> params,
                       const std::string &source, comm::Communicator *world) {
  const exec::Plan &plan = executor->getPlan();
  if (!plan.updatesParameters())
    return Status::error(plan.path + ": not a training plan; compile the "
                                     "model with mixc --train");
  if (plan.training->microSteps > 1 && plan.findInput("micro_step") < 0)
    return Status::error(plan.path + ": accumulates gradients over " +
                         std::to_string(plan.training->microSteps) +
                         " micro-steps but has no 'micro_step' input");
  if (world)
    exec::takeTableShards(plan, plan.params, params, world->rank());
  if (Status status = executor->bindParams(std::move(params), source,
                                           /*allowExtra=*/false);
      !status)
    return status;
  if (Status status =
          executor->bindState(zeroOptimizerState(plan), "optimizer state",
                              /*allowExtra=*/false);
      !status)
    return status;
  return TrainingSession(std::move(executor), 0, world);
}

Expected<TrainingSession>
TrainingSession::resume(std::unique_ptr<exec::PlanExecutor> executor,
                        const std::string &dir, std::optional<int64_t> step,
                        BatchSource &data, int32_t &seed,
                        comm::Communicator *world) {
  const exec::Plan &plan = executor->getPlan();
  // Rank 0 alone writes the directory.
  if (!world || world->rank() == 0)
    removeInterruptedSaves(dir);
  Expected<TrainingState> saved = loadCheckpoint(dir, step);
  if (!saved)
    return saved.takeStatus();
  const json &progress = saved->progress;
  std::string where = dir + "/step_" + std::to_string(saved->step);
  if (!progress.is_object() || !progress.contains("tensors_crc64") ||
      !progress.contains("seed") || !progress.contains("data") ||
      !progress["seed"].is_number_integer())
    return Status::error(where + ": state.json lacks the run's seed, data "
                                 "position or tensor checksum");
  if (progress["tensors_crc64"] != tensorTablesChecksum(plan))
    return Status::error(where +
                         ": the checkpoint's parameters do not match "
                         "the tensors of " +
                         plan.path + " (another model or optimizer?)");
  Expected<TrainingSession> session =
      start(std::move(executor), std::move(saved->params),
            where + "/params.safetensors", world);
  if (!session)
    return session.takeStatus();
  if (world)
    exec::takeTableShards(plan, plan.state, saved->optimizerState,
                          world->rank());
  if (Status status = session->runner->bindState(
          std::move(saved->optimizerState), where + "/optimizer.safetensors",
          /*allowExtra=*/false);
      !status)
    return status;
  if (Status status = data.seek(progress["data"]); !status)
    return Status::error(where + ": " + status.message());
  session->applied = saved->step;
  seed = progress["seed"].get<int32_t>();
  return session;
}

Status TrainingSession::gatherTable(const std::vector<exec::ParamInfo> &table,
                                    std::vector<io::HostTensor> &tensors) {
  if (!world)
    return Status::success();
  const exec::Plan &plan = runner->getPlan();
  for (size_t i = 0; i < table.size(); ++i)
    if (table[i].shardGroup == "ep")
      if (Status status = comm::gatherParts(*world, tensors[i], plan.mesh.ep,
                                            "checkpoint of step " +
                                                std::to_string(applied));
          !status)
        return status;
  return Status::success();
}

Status TrainingSession::alone(const TrainOptions &options,
                              Status failure) const {
  if (world && options.onRankFailure)
    options.onRankFailure(failure);
  return failure;
}

Expected<bool> TrainingSession::anyRank(bool flag, const std::string &step) {
  int32_t count = flag;
  if (world)
    if (Status status =
            world->allReduceSum(&count, &count, 1, io::DType::I32, step);
        !status)
      return status;
  return count > 0;
}

Status TrainingSession::save(const TrainOptions &options,
                             const BatchSource &data) {
  const exec::Plan &plan = runner->getPlan();
  Expected<std::vector<io::HostTensor>> params = runner->copyParams();
  if (!params)
    return params.takeStatus();
  Expected<std::vector<io::HostTensor>> optimizerState = runner->copyState();
  if (!optimizerState)
    return optimizerState.takeStatus();
  if (Status status = gatherTable(plan.params, *params); !status)
    return alone(options, status);
  if (Status status = gatherTable(plan.state, *optimizerState); !status)
    return alone(options, status);
  // Rank 0 writes while the others wait, then tells them how it went: no
  // rank goes on past a checkpoint that is not on disk.
  Status saved = Status::success();
  if (leads())
    saved = writeCheckpoint(options, data, std::move(*params),
                            std::move(*optimizerState));
  if (!world)
    return saved;
  int32_t failed = !saved;
  if (Status status =
          world->broadcast(&failed, sizeof(failed), 0,
                           "checkpoint of step " + std::to_string(applied));
      !status)
    return alone(options, status);
  if (failed && saved)
    return Status::error("rank 0 could not save the checkpoint of step " +
                         std::to_string(applied));
  return saved;
}

Status TrainingSession::writeCheckpoint(
    const TrainOptions &options, const BatchSource &data,
    std::vector<io::HostTensor> params,
    std::vector<io::HostTensor> optimizerState) const {
  TrainingState state;
  state.step = applied;
  state.params = std::move(params);
  state.optimizerState = std::move(optimizerState);
  state.progress = {{"model", runner->getPlan().model},
                    {"tensors_crc64", tensorTablesChecksum(runner->getPlan())},
                    {"seed", options.seed},
                    {"data", data.position()}};
  return saveCheckpoint(options.checkpointDir, state, options.keepLast);
}

Status TrainingSession::train(BatchSource &data, const TrainOptions &options) {
  const exec::Plan &plan = runner->getPlan();
  if (Status valid = validateSchedule(options.schedule); !valid)
    return valid;
  if (options.seed < 0)
    return Status::error("the seed must not be negative");
  std::ofstream metrics;
  if (!options.metricsPath.empty() && leads()) {
    if (Status status = truncateMetrics(options.metricsPath, applied); !status)
      return status;
    metrics.open(options.metricsPath, std::ios::app);
    if (!metrics)
      return Status::error(options.metricsPath + ": cannot open for writing");
  }
  // The loss and its components ("loss", "*_loss").
  std::vector<int64_t> lossOutputs;
  for (size_t i = 0; i < plan.outputs.size(); ++i) {
    const std::string &name = plan.outputs[i].name;
    if (name == "loss" ||
        (name.size() > 5 && name.compare(name.size() - 5, 5, "_loss") == 0))
      lossOutputs.push_back(i);
  }

  const int64_t microSteps = plan.training->microSteps;
  while (applied < options.steps) {
    auto start = std::chrono::steady_clock::now();
    double lr = learningRate(options.schedule, applied);
    StepReport report;
    report.step = applied + 1;
    report.learningRate = lr;
    for (int64_t i : lossOutputs)
      report.metrics.emplace_back(plan.outputs[i].name, 0.0);
    // One update: the plan accumulates the gradients of its micro-steps and
    // applies their mean on the last one.
    for (int64_t micro = 0; micro < microSteps; ++micro) {
      std::vector<io::HostTensor> inputs = data.next();
      inputs.push_back(floatScalar("learning_rate", static_cast<float>(lr)));
      inputs.push_back(int32Scalar("step", static_cast<int32_t>(applied)));
      inputs.push_back(int32Scalar("micro_step", static_cast<int32_t>(micro)));
      inputs.push_back(int32Scalar("seed", options.seed));
      // Each rank binds its rows of the global batch.
      std::vector<io::HostTensor> noParams;
      if (world)
        exec::takeShards(plan, noParams, inputs, world->rank());
      std::string what = "batch of step " + std::to_string(applied + 1);
      if (microSteps > 1)
        what += ", micro-step " + std::to_string(micro);
      if (Status status = runner->bindInputs(inputs, what, /*allowExtra=*/true);
          !status)
        return status;
      if (Status status = runner->run(); !status)
        return alone(options, status);
      report.tokens += data.lastTokens();
      std::vector<io::HostTensor> outputs = runner->outputs();
      for (size_t m = 0; m < lossOutputs.size(); ++m)
        report.metrics[m].second += outputs[lossOutputs[m]].as<float>()[0];
    }
    ++applied;
    // The mean over the micro-batches (of equal size): the loss of the
    // update's whole batch.
    for (auto &metric : report.metrics)
      metric.second /= static_cast<double>(microSteps);

    for (const auto &[name, value] : report.metrics)
      if (name == "loss" && !std::isfinite(value))
        return Status::error("the loss of step " + std::to_string(applied) +
                             " is " + std::to_string(value) +
                             "; stopping (the last checkpoint is intact)");
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    if (metrics.is_open()) {
      json line = {{"step", report.step}};
      for (const auto &[name, value] : report.metrics)
        line[name] = value;
      line["learning_rate"] = lr;
      line["tokens_per_second"] = report.tokens / report.seconds;
      metrics << line.dump() << "\n" << std::flush;
    }
    if (options.onStep && leads())
      options.onStep(report);

    Expected<bool> stop =
        anyRank(options.stopRequested && options.stopRequested(),
                "stop request after step " + std::to_string(applied));
    if (!stop)
      return alone(options, stop.takeStatus());
    bool due =
        options.checkpointEvery > 0 && applied % options.checkpointEvery == 0;
    if (!options.checkpointDir.empty() &&
        (due || *stop || applied == options.steps))
      if (Status status = save(options, data); !status)
        return status;
    if (*stop)
      break;
  }
  return Status::success();
}

Expected<std::vector<io::HostTensor>>
evaluateBatch(exec::PlanExecutor &executor,
              std::vector<io::HostTensor> inputs) {
  inputs.push_back(floatScalar("learning_rate", 0.0f));
  inputs.push_back(int32Scalar("step", 0));
  inputs.push_back(int32Scalar("micro_step", 0));
  // A negative seed turns the training noise off.
  inputs.push_back(int32Scalar("seed", -1));
  if (Status status =
          executor.bindInputs(inputs, "evaluation batch", /*allowExtra=*/true);
      !status)
    return status;
  if (Status status = executor.runForward(); !status)
    return status;
  return executor.outputs();
}

} // namespace mixer::train
