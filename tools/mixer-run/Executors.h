//===- Executors.h - The executor for a plan's target -----------*- C++ -*-===//

#ifndef MIXER_TOOLS_MIXER_RUN_EXECUTORS_H
#define MIXER_TOOLS_MIXER_RUN_EXECUTORS_H

#include "runtime/comm/Communicator.h"
#include "runtime/exec/PlanExecutor.h"

#include <memory>
#include <string>

namespace mixer::run {

/// The executor of `plan`'s target (target::createExecutor). Throws a
/// RuntimeFailure with one line when the target cannot run here (no CUDA
/// device, a build without CUDA) or the plan cannot be prepared.
/// A parallel plan's collectives run through `world`.
std::unique_ptr<exec::PlanExecutor>
createExecutor(const exec::Plan &plan, comm::Communicator *world = nullptr);

/// The MPI world of a parallel plan (null for a one-process plan), whose
/// size the command line's check has matched to the plan's mesh. Throws a
/// RuntimeFailure when this mixer-run was built without MPI.
std::unique_ptr<comm::Communicator> parallelWorld(const exec::Plan &plan);

/// Throws a RuntimeFailure with one line unless this machine can run
/// `plan`'s target (target::checkTargetAvailable).
/// Commands call it before they read their data, so that the reason comes
/// first.
void requireTarget(const exec::Plan &plan);

} // namespace mixer::run

#endif // MIXER_TOOLS_MIXER_RUN_EXECUTORS_H
