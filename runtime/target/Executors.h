//===- Executors.h - The executor for a plan's target -----------*- C++ -*-===//
//
// The one place that knows every backend: it picks the executor a plan's
// target names (runtime/cpu for `cpu`, runtime/cuda for `cuda`), so that
// tools and the training loop drive any plan through exec::PlanExecutor.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_TARGET_EXECUTORS_H
#define MIXER_RUNTIME_TARGET_EXECUTORS_H

#include "runtime/comm/Communicator.h"
#include "runtime/exec/Plan.h"
#include "runtime/exec/PlanExecutor.h"
#include "runtime/support/Status.h"

#include <memory>

namespace mixer::target {

/// Success when this machine can run `plan`'s target: a cuda plan needs a
/// build with CUDA and a usable device.
Status checkTargetAvailable(const exec::Plan &plan);

/// The executor of `plan`'s target, prepared: the CPU executor for `cpu`
/// plans, whose collectives run through `world` (null: one rank), the CUDA
/// executor for `cuda` plans. Fails when the target cannot run here, the
/// host memory cannot hold the plan, or a step is refused.
Expected<std::unique_ptr<exec::PlanExecutor>>
createExecutor(const exec::Plan &plan, comm::Communicator *world = nullptr);

} // namespace mixer::target

#endif // MIXER_RUNTIME_TARGET_EXECUTORS_H
