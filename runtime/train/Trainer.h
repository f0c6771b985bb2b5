//===- Trainer.h - The training loop over a training plan -------*- C++ -*-===//
//
// A training plan (mixc --train) runs one whole update per execution: the
// forward pass, the losses, the backward pass and AdamW on the parameters
// and optimizer state it holds in place; with gradient accumulation, one
// micro-step of an update per execution, k executions on consecutive
// micro-batches per update. The loop feeds it batches, the learning rate of
// the schedule, the step, the micro-step and the run's seed, logs the loss
// components, and saves checkpoints (between updates, where the
// accumulators are zero) that a later run resumes from exactly: every input
// of a step is a function of (checkpoint, seed, step, data position), so N
// steps, a resume and N more steps give the bits of 2N steps in one go.
//
// A parallel plan (mixc --dp --ep) runs one session per rank over the world
// communicator: every rank draws the same global batch and binds its rows,
// binds its shards of the global parameters and optimizer state, and joins
// the collectives of every save, where the expert slices are gathered so
// that rank 0 writes a checkpoint of global tensors, which resumes at any
// mesh. Rank 0 alone reports steps and writes metrics and checkpoints.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_TRAIN_TRAINER_H
#define MIXER_RUNTIME_TRAIN_TRAINER_H

#include "runtime/comm/Communicator.h"
#include "runtime/data/ClassificationData.h"
#include "runtime/data/LmStream.h"
#include "runtime/data/MlmBatcher.h"
#include "runtime/exec/PlanExecutor.h"
#include "runtime/train/LearningRate.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mixer::train {

/// A stream of training batches that can say where it stands and go back
/// there.
class BatchSource {
public:
  virtual ~BatchSource() = default;
  /// The next batch, as tensors named like the plan's inputs (tensors the
  /// plan does not take are ignored).
  virtual std::vector<io::HostTensor> next() = 0;
  /// Where the stream stands: the batch next() returns next.
  virtual nlohmann::json position() const = 0;
  virtual Status seek(const nlohmann::json &position) = 0;
  /// Tokens other than padding in the batch next() returned last.
  virtual int64_t lastTokens() const = 0;
};

/// MLM + NSP batches (spec section 11.3); unused prediction slots get label
/// -1, which the training plan's masks ignore.
std::unique_ptr<BatchSource> makeMlmSource(data::MlmBatcher batcher,
                                           int32_t padId);

/// Causal language-model batches: input_ids and the next tokens as labels
/// (LmStream windows, which are always full).
std::unique_ptr<BatchSource> makeLmSource(data::LmStream stream, int32_t padId);

/// Fine-tuning batches: epoch after epoch, the examples in the order
/// ClassificationData::epochOrder(seed, epoch) gives, in full batches and
/// full updates of `microSteps` batches (the examples of an epoch that do
/// not fill them are left out, so that every training example weighs the
/// same in an update and updates do not span epochs).
std::unique_ptr<BatchSource>
makeClassificationSource(const data::ClassificationData &data,
                         int64_t batchSize, int64_t seqLength, uint64_t seed,
                         int32_t padId, int64_t microSteps = 1);

/// What one update reports.
struct StepReport {
  int64_t step = 0; ///< updates applied, this one included
  double learningRate = 0;
  /// The loss and its components ("*_loss" outputs), in plan order; with
  /// gradient accumulation their means over the update's micro-batches.
  std::vector<std::pair<std::string, double>> metrics;
  double seconds = 0; ///< wall time of the update
  int64_t tokens = 0; ///< non-pad tokens of its batches
};

struct TrainOptions {
  int64_t steps = 0; ///< stop once this many updates are applied in total
  LearningRateSchedule schedule{};
  int32_t seed = 0;            ///< keys dropout and jitter; >= 0
  std::string checkpointDir;   ///< empty: no checkpoints
  int64_t checkpointEvery = 0; ///< also at the end; 0: only at the end
  int keepLast = 3;
  std::string metricsPath; ///< metrics.jsonl; empty: none
  /// Called after every update (progress display).
  std::function<void(const StepReport &)> onStep;
  /// Polled after every update; true ends the run early, after a
  /// checkpoint. The ranks of a parallel run stop when any of them is asked.
  std::function<bool()> stopRequested;
  /// A parallel run calls it when this rank alone failed (a step or a
  /// collective), while the other ranks may wait for it in a collective (the
  /// tool reports the rank and ends the job), then returns the failure.
  /// Other failures are the same on every rank (a non-finite loss, a batch
  /// that does not bind; a checkpoint that rank 0 cannot write, which the
  /// other ranks return as "rank 0 could not save ...").
  std::function<void(const Status &)> onRankFailure;
};

/// A training plan's executor (either target's) with its parameters,
/// optimizer state and step.
class TrainingSession {
public:
  /// Starts at step 0 from `params` with zero optimizer state on
  /// `executor`, whose plan must be a training plan (mixc --train).
  /// `params` are global tensors; a rank of a parallel plan (`world`, the
  /// communicator its executor runs on) binds its shards of them.
  static Expected<TrainingSession>
  start(std::unique_ptr<exec::PlanExecutor> executor,
        std::vector<io::HostTensor> params, const std::string &source,
        comm::Communicator *world = nullptr);

  /// Continues on `executor` from the latest checkpoint in `dir` (or from
  /// `step` when given): parameters, optimizer state and step, and moves
  /// `data` to the saved position. What interrupted saves left in `dir` is
  /// removed first. The checkpoint must come from a plan with the same
  /// parameters (at any mesh); `seed` receives the run's seed. Every rank of
  /// a parallel plan reads the checkpoint and binds its shards.
  static Expected<TrainingSession>
  resume(std::unique_ptr<exec::PlanExecutor> executor, const std::string &dir,
         std::optional<int64_t> step, BatchSource &data, int32_t &seed,
         comm::Communicator *world = nullptr);

  /// Applies updates until options.steps are applied (or a stop request),
  /// saving checkpoints and appending one line per update to the metrics
  /// file (lines past the current step, left by an interrupted run, are
  /// dropped first). A non-finite loss stops the run with an error naming
  /// the step.
  Status train(BatchSource &data, const TrainOptions &options);

  int64_t step() const { return applied; }
  const exec::PlanExecutor &executor() const { return *runner; }
  /// For evaluation between updates (evaluateBatch).
  exec::PlanExecutor &executor() { return *runner; }

private:
  TrainingSession(std::unique_ptr<exec::PlanExecutor> runner, int64_t applied,
                  comm::Communicator *world)
      : runner(std::move(runner)), applied(applied), world(world) {}

  /// Saves a checkpoint of global tensors: every rank joins the gathers,
  /// rank 0 writes, and the others wait for its outcome.
  Status save(const TrainOptions &options, const BatchSource &data);
  /// Writes `params` and `optimizerState` (global) as the current step.
  Status writeCheckpoint(const TrainOptions &options, const BatchSource &data,
                         std::vector<io::HostTensor> params,
                         std::vector<io::HostTensor> optimizerState) const;
  /// Whether this process reports and writes: one-process runs and rank 0.
  bool leads() const { return !world || world->rank() == 0; }
  /// The global tensors of the session's `table` (its parameters or state)
  /// from this rank's `tensors`: expert slices joined over the first expert
  /// group.
  Status gatherTable(const std::vector<exec::ParamInfo> &table,
                     std::vector<io::HostTensor> &tensors);
  /// Returns `failure`, of this rank alone, after telling
  /// options.onRankFailure in a parallel run.
  Status alone(const TrainOptions &options, Status failure) const;
  /// Whether any rank's `flag` is set (the flag itself without a world).
  Expected<bool> anyRank(bool flag, const std::string &step);

  std::unique_ptr<exec::PlanExecutor> runner;
  int64_t applied = 0;
  comm::Communicator *world = nullptr; ///< null: one process
};

/// Zero tensors for every entry of the plan's optimizer state table.
std::vector<io::HostTensor> zeroOptimizerState(const exec::Plan &plan);

/// Binds `inputs` with the evaluation settings (no dropout, learning rate,
/// step and micro-step 0) and runs the forward part of a training plan;
/// returns its outputs.
Expected<std::vector<io::HostTensor>>
evaluateBatch(exec::PlanExecutor &executor, std::vector<io::HostTensor> inputs);

} // namespace mixer::train

#endif // MIXER_RUNTIME_TRAIN_TRAINER_H
