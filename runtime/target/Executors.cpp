//===- Executors.cpp - The executor for a plan's target -------------------===//

#include "runtime/target/Executors.h"

#include "runtime/cpu/Executor.h"
#include "runtime/exec/MemoryBudget.h"

#ifdef MIXER_HAVE_CUDA
#include "runtime/cuda/Executor.h"
#endif

namespace mixer::target {

Status checkTargetAvailable(const exec::Plan &plan) {
  if (plan.target != "cuda")
    return Status::success();
#ifdef MIXER_HAVE_CUDA
  if (Status status = cuda::checkDevice(); !status)
    return Status::error(status.message() + " to run " + plan.path +
                         ", a cuda artifact");
  return Status::success();
#else
  return Status::error("this runtime was built without CUDA and cannot run " +
                       plan.path + ", a cuda artifact");
#endif
}

Expected<std::unique_ptr<exec::PlanExecutor>>
createExecutor(const exec::Plan &plan, comm::Communicator *world) {
  // The parameters are bound from a host copy; a CPU plan's activations
  // live in host memory too.
  if (Status status = exec::checkHostMemory(plan, 1, plan.target != "cuda");
      !status)
    return status;
  if (plan.target != "cuda") {
    Expected<cpu::Executor> executor = cpu::Executor::create(plan, world);
    if (!executor)
      return executor.takeStatus();
    return std::unique_ptr<exec::PlanExecutor>(
        std::make_unique<cpu::Executor>(std::move(*executor)));
  }
  Status available = checkTargetAvailable(plan);
#ifdef MIXER_HAVE_CUDA
  if (!available)
    return available;
  Expected<std::unique_ptr<cuda::Executor>> executor =
      cuda::Executor::create(plan);
  if (!executor)
    return executor.takeStatus();
  return std::unique_ptr<exec::PlanExecutor>(std::move(*executor));
#else
  // Without the CUDA backend a cuda plan is never available.
  return available;
#endif
}

} // namespace mixer::target
