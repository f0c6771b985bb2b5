//===- Executor.h - Runs a cuda plan on a GPU -------------------*- C++ -*-===//
//
// The device counterpart of runtime/cpu/Executor.h. create() refuses a plan
// with a kernel that has no CUDA implementation (KernelTable.h) before it
// touches the device, then allocates the plan's arena, its scratch and one
// buffer per input on the device and prepares one step per plan step; the
// steps with device resources of their own (cuFFT plans, DFT matrices) make
// them last, before any graph capture.
// bindParams/bindState upload the tensors once; bindInputs keeps a host copy
// that run() uploads before the steps (scalar inputs such as seed, step and
// learning_rate are also read on the host as kernel arguments). run()
// enqueues every step on one stream, by default as a CUDA graph: the steps
// are captured once (cudaStreamBeginCapture ... cudaGraphInstantiate) and
// the graph replayed; a change of a scalar input re-captures the graph, as
// its kernel arguments change. runForward() keeps a graph of its own. While
// a step observer is set, the steps run one at a time without a graph,
// between two events whose elapsed time the observer receives.
// The kernels that index with ids read from device memory (token ids, labels,
// positions) skip an id outside its table and record the first one in the
// executor's IdFault (Kernels.h); a run zeroes it first and copies it back
// with the end of the run, and fails with the step, the operand and the id.
// copyParams/copyState copy the device tensors back to the host.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_EXECUTOR_H
#define MIXER_RUNTIME_CUDA_EXECUTOR_H

#include "runtime/cuda/Gemm.h"
#include "runtime/cuda/KernelTable.h"
#include "runtime/exec/PlanExecutor.h"

#include <memory>
#include <vector>

struct CUevent_st;
struct CUgraphExec_st;

namespace mixer::cuda {

/// Success when a CUDA device is usable; otherwise "no CUDA device
/// (cudaGetDeviceCount: <reason>)".
Status checkDevice();

/// Success when `fault` records no id (step 0); otherwise the error of the
/// step of `plan` it names: "<path>: steps[<i>] (<kernel>): <operand>[<index>]
/// = <id> is outside [0, <limit>)", the index in the operand's dimensions.
Status idFaultStatus(const exec::Plan &plan, const IdFault &fault);

struct ExecutorOptions {
  /// Replay the steps as a CUDA graph (off: launch them one by one).
  bool cudaGraph = true;
};

class Executor final : public exec::PlanExecutor {
public:
  /// Prepares a `cuda` plan on the current device.
  static Expected<std::unique_ptr<Executor>>
  create(const exec::Plan &plan, ExecutorOptions options = {});
  ~Executor() override;
  Executor(const Executor &) = delete;
  Executor &operator=(const Executor &) = delete;

  const exec::Plan &getPlan() const override { return plan; }
  int64_t getScratchBytes() const override { return scratchBytes; }
  Status bindParams(std::vector<io::HostTensor> tensors,
                    const std::string &source, bool allowExtra) override;
  Status bindState(std::vector<io::HostTensor> tensors,
                   const std::string &source, bool allowExtra) override;
  Status bindInputs(const std::vector<io::HostTensor> &tensors,
                    const std::string &source, bool allowExtra) override;
  Status run() override;
  Status runForward() override;
  std::vector<io::HostTensor> outputs() const override;
  Expected<std::vector<io::HostTensor>> copyParams() const override;
  Expected<std::vector<io::HostTensor>> copyState() const override;

private:
  /// An instantiated graph of the leading steps and the scalar inputs baked
  /// into its kernel arguments.
  struct CapturedGraph {
    CUgraphExec_st *exec = nullptr;
    std::vector<int32_t> scalars;
  };

  Executor() = default;

  /// Uploads `tensors` into fresh device buffers and points the values of
  /// `storage` at them.
  Status upload(const std::vector<io::HostTensor> &tensors,
                exec::StorageKind storage, std::vector<void *> &buffers);
  /// Copies `buffers`, bound to the entries of `table`, to the host.
  Expected<std::vector<io::HostTensor>>
  download(const std::vector<exec::ParamInfo> &table,
           const std::vector<void *> &buffers) const;
  /// Uploads the inputs and runs the first `count` steps, replaying
  /// `replay` when the executor uses graphs.
  Status runSteps(size_t count, CapturedGraph &replay);
  /// Enqueues the first `count` steps on the stream; the first failure
  /// names its step. With an observer, waits for each step and reports it.
  Status enqueueSteps(size_t count);
  /// Records the event before step `index` and tells the observer.
  Status beginObservedStep(size_t index);
  /// Waits for step `index` and tells the observer its device time.
  Status endObservedStep(size_t index);
  /// Captures the first `count` steps into `replay`: updates its instantiated
  /// graph in place when CUDA allows, else instantiates it.
  Status captureGraph(size_t count, CapturedGraph &replay);
  /// Destroys the captured graphs (they hold the bound addresses).
  void dropGraphs();
  /// The scalar inputs baked into a captured graph's kernel arguments.
  std::vector<int32_t> scalarInputs() const;
  Status cudaFailure(const std::string &what, int error) const;

  exec::Plan plan;
  ExecutorOptions options;
  cudaStream_t stream = nullptr;
  std::unique_ptr<GemmContext> gemm;
  /// Device allocations, freed at destruction.
  void *arena = nullptr;
  void *scratch = nullptr;
  int64_t scratchBytes = 0;
  /// The record of an id outside its table, and its pinned host copy.
  IdFault *idFault = nullptr;
  IdFault *hostIdFault = nullptr;
  std::vector<void *> inputBuffers, paramBuffers, stateBuffers;
  /// Host copies of the inputs (4-byte words, as the CPU executor's).
  std::vector<std::vector<int32_t>> hostInputs;
  /// Device and host address per value slot (LaunchContext).
  std::vector<void *> device;
  std::vector<const void *> host;
  std::vector<DeviceStep> steps;
  /// Number of leading steps runForward() runs.
  size_t forwardSteps = 0;
  CapturedGraph graph, forwardGraph;
  /// The events around an observed step, made at its first use.
  CUevent_st *stepStart = nullptr, *stepEnd = nullptr;
  bool paramsBound = false;
  bool stateBound = false;
  bool inputsBound = false;
};

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_EXECUTOR_H
