//===- Executor.h - Runs an execution plan on the CPU -----------*- C++ -*-===//
//
// create() allocates the plan's arena once, prepares one kernel callable per
// step (checking every shape, dtype and attribute) and resolves every value to
// a pointer; bindParams/bindInputs check the tensors against the plan and
// point the parameter and input values at them. run() then only calls the
// prepared kernels in order: no allocation, no lookups.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_EXECUTOR_H
#define MIXER_RUNTIME_CPU_EXECUTOR_H

#include "runtime/comm/Communicator.h"
#include "runtime/cpu/KernelTable.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/exec/Plan.h"
#include "runtime/exec/PlanExecutor.h"
#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mixer::cpu {

/// Unmaps the executor's anonymous memory mappings.
struct Unmapper {
  size_t size = 0;
  void operator()(uint8_t *memory) const;
};
using MappedMemory = std::unique_ptr<uint8_t, Unmapper>;

/// Runs `cpu` plans on the host.
class Executor final : public exec::PlanExecutor {
public:
  /// Prepares `plan` for execution (the executor keeps its own copy). Its
  /// collective steps run through `world`, whose size must be the plan
  /// mesh's world, and the groups the executor splits from it (collective
  /// over `world`: every rank creates its executor); without `world`, a
  /// one-rank world of the executor's own. A bf16 plan is refused unless
  /// `bf16Products` (by default, whether this CPU has them:
  /// cpu::hasBf16Products()).
  static Expected<Executor> create(const exec::Plan &plan,
                                   comm::Communicator *world = nullptr,
                                   bool bf16Products = hasBf16Products());

  const exec::Plan &getPlan() const override { return plan; }
  int64_t getScratchBytes() const override {
    return scratch.get_deleter().size;
  }

  /// Binds the parameters. Every plan parameter must be present with its
  /// exact shape and dtype F32; tensors the plan does not name are an error
  /// unless `allowExtra`. The tensors are kept, not copied, for the lifetime
  /// of the binding (move them in). `source` (the weights file) prefixes the
  /// messages.
  Status bindParams(std::vector<io::HostTensor> tensors,
                    const std::string &source,
                    bool allowExtra = false) override;

  /// Binds the optimizer state of a training plan, as bindParams does the
  /// parameters.
  Status bindState(std::vector<io::HostTensor> tensors,
                   const std::string &source, bool allowExtra = false) override;

  /// The bound parameters and optimizer state, in plan order; a training
  /// plan's run() updates them in place.
  const std::vector<io::HostTensor> &params() const { return paramTensors; }
  const std::vector<io::HostTensor> &state() const { return stateTensors; }

  /// Copies the inputs into the executor's input buffers. Shapes must match
  /// exactly; I32 inputs accept I32 and I64 (converted), F32 inputs F32.
  /// Optional inputs missing from `tensors` are zeros; tensors the plan does
  /// not name are an error unless `allowExtra`.
  Status bindInputs(const std::vector<io::HostTensor> &tensors,
                    const std::string &source,
                    bool allowExtra = false) override;

  /// Runs every step in order. A kernel failure names the step and kernel.
  Status run() override;

  /// Runs only the steps up to the last one that writes an output: the
  /// forward pass and losses of a training plan, without its backward pass
  /// and update (evaluation).
  Status runForward() override;

  /// Copies of the plan's outputs after run(), named as the plan says.
  std::vector<io::HostTensor> outputs() const override;

  /// Copies of params() and state().
  Expected<std::vector<io::HostTensor>> copyParams() const override {
    return paramTensors;
  }
  Expected<std::vector<io::HostTensor>> copyState() const override {
    return stateTensors;
  }

private:
  Executor() = default;

  exec::Plan plan;
  /// The one-rank world of an executor created without one, and the mesh's
  /// groups.
  std::unique_ptr<comm::Communicator> ownWorld;
  comm::MeshGroups meshGroups;
  Groups groups;
  MappedMemory arena;
  /// Scratch memory the steps share (linear mixing's intermediate product).
  MappedMemory scratch;
  /// One buffer of 4-byte words per plan input (I32 or F32), owned so that
  /// input pointers never change.
  std::vector<std::vector<int32_t>> inputBuffers;
  /// The bound parameters and optimizer state, in plan order.
  std::vector<io::HostTensor> paramTensors;
  std::vector<io::HostTensor> stateTensors;
  /// Data pointer per value id, then the null and scratch entries
  /// (runtime/exec/SlotLayout.h).
  std::vector<void *> pointers;
  std::vector<StepFunction> steps;
  /// Number of leading steps runForward() runs.
  size_t forwardSteps = 0;

  Status runSteps(size_t count);
  bool paramsBound = false;
  bool stateBound = false;
  bool inputsBound = false;
};

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_EXECUTOR_H
