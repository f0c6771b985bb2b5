//===- KernelTable.h - Plan kernels bound to the CUDA kernels ---*- C++ -*-===//
//
// The CUDA executor's counterpart of runtime/cpu/KernelTable.h: one
// factory per plan kernel that has a CUDA implementation, mapping the step
// onto a function of runtime/cuda/Kernels.h. A factory checks the step's
// dtypes (F32 or BF16 activations), shapes and attributes once, at load,
// without touching the device, and returns a callable that enqueues the
// kernel on the executor's stream. Every plan kernel of
// runtime/support/Kernels.def has an entry (KernelTableTest checks it).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_KERNELTABLE_H
#define MIXER_RUNTIME_CUDA_KERNELTABLE_H

#include "runtime/cuda/Kernels.h"
#include "runtime/exec/Plan.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace mixer::cuda {

class GemmContext;

/// What a prepared step reads when it enqueues its kernel. Both tables are
/// indexed like exec::ValuePointers (value ids, then the absent and scratch
/// slots).
struct LaunchContext {
  /// The device address of every value; null for an absent operand.
  void *const *device = nullptr;
  /// The host copy of every plan input (scalars such as seed, step and
  /// learning_rate are kernel arguments, read on the host); null elsewhere.
  const void *const *host = nullptr;
  cudaStream_t stream = nullptr;
  /// The matrix products of the executor's stream.
  GemmContext *gemm = nullptr;
  /// The executor's record of an id outside its table (null: none kept) and
  /// the index of the step being enqueued.
  IdFault *idFault = nullptr;
  size_t step = 0;

  /// The check of a kernel of this step that indexes with the ids of its
  /// operand `operand`.
  IdCheck idCheck(int32_t operand) const {
    return {idFault, static_cast<int32_t>(step + 1), operand};
  }
};

/// A step bound to its shapes and attributes: enqueues its work and reports
/// bad run-time inputs and launch failures. A step with device resources of
/// its own (cuFFT plans, constant matrices) also has a setup, which the
/// executor calls once it has a device and a stream, before the first launch
/// and outside graph capture.
class DeviceStep {
public:
  using Launch = std::function<Status(const LaunchContext &)>;

  DeviceStep(Launch launch, Launch setup = nullptr)
      : launch(std::move(launch)), setupDevice(std::move(setup)) {}

  /// Enqueues the step's work.
  Status operator()(const LaunchContext &context) const {
    return launch(context);
  }
  /// Makes the step's device resources; success for a step without any.
  Status setup(const LaunchContext &context) const {
    return setupDevice ? setupDevice(context) : Status::success();
  }

private:
  Launch launch, setupDevice;
};

/// The plan kernels with a CUDA implementation, in table order.
std::vector<Kernel> cudaKernels();

/// Checks step `index` of `plan` against its CUDA kernel and returns the
/// callable; raises `scratchBytes` to the device scratch the step needs.
Expected<DeviceStep> prepareDeviceStep(const exec::Plan &plan, size_t index,
                                       int64_t &scratchBytes);

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_KERNELTABLE_H
