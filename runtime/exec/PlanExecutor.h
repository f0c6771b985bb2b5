//===- PlanExecutor.h - What every executor of a plan offers ----*- C++ -*-===//
//
// The interface mixer-run drives for inference, benchmarks and training,
// whichever target the plan names: the CPU executor (Executor.h) and the CUDA
// executor (runtime/cuda/Executor.h) implement it. Binding checks tensors
// against the plan; run() executes every step (runForward() the forward part
// of a training plan); outputs(), copyParams() and copyState() copy results,
// parameters and optimizer state to the host. An observer set with
// setObserver() is told before and after every step a run executes (the
// profiler times steps with it).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_PLANEXECUTOR_H
#define MIXER_RUNTIME_EXEC_PLANEXECUTOR_H

#include "runtime/exec/Plan.h"
#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mixer::exec {

/// Told about every step of a run, in plan order.
class StepObserver {
public:
  virtual ~StepObserver() = default;
  /// Step `index` is about to be started.
  virtual void beforeStep(size_t index) = 0;
  /// Step `index` has completed; `deviceMilliseconds` is its time measured on
  /// the device, for executors that run steps asynchronously.
  virtual void afterStep(size_t index,
                         std::optional<double> deviceMilliseconds) = 0;
};

class PlanExecutor {
public:
  virtual ~PlanExecutor() = default;

  /// Tells `observer` (null: nobody) about every step of the runs that
  /// follow. An executor that replays captured work (CUDA graphs) runs the
  /// steps one at a time while an observer is set, and waits for each.
  void setObserver(StepObserver *observer) { stepObserver = observer; }

  virtual const Plan &getPlan() const = 0;

  /// Bytes of the scratch buffer the prepared steps share.
  virtual int64_t getScratchBytes() const = 0;

  /// Binds the parameters. Every plan parameter must be present with its
  /// exact shape and dtype F32; tensors the plan does not name are an error
  /// unless `allowExtra`. `source` (the weights file) prefixes the messages.
  virtual Status bindParams(std::vector<io::HostTensor> tensors,
                            const std::string &source, bool allowExtra) = 0;

  /// Binds the optimizer state of a training plan, as bindParams does the
  /// parameters.
  virtual Status bindState(std::vector<io::HostTensor> tensors,
                           const std::string &source, bool allowExtra) = 0;

  /// Binds the inputs. Shapes must match exactly; I32 inputs accept I32 and
  /// I64 (converted), F32 inputs F32. Optional inputs missing from `tensors`
  /// are zeros; tensors the plan does not name are an error unless
  /// `allowExtra`.
  virtual Status bindInputs(const std::vector<io::HostTensor> &tensors,
                            const std::string &source, bool allowExtra) = 0;

  /// Runs every step in order. A kernel failure names the step and kernel.
  virtual Status run() = 0;

  /// Runs only the steps up to the last one that writes an output: the
  /// forward pass and losses of a training plan, without its backward pass
  /// and update (evaluation).
  virtual Status runForward() = 0;

  /// Copies of the plan's outputs after run(), named as the plan says.
  virtual std::vector<io::HostTensor> outputs() const = 0;

  /// Copies of the bound parameters and optimizer state, in plan order, as
  /// a training plan's runs have left them (checkpoints).
  virtual Expected<std::vector<io::HostTensor>> copyParams() const = 0;
  virtual Expected<std::vector<io::HostTensor>> copyState() const = 0;

protected:
  StepObserver *stepObserver = nullptr;
};

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_PLANEXECUTOR_H
