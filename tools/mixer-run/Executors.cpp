//===- Executors.cpp - The executor for a plan's target -------------------===//

#include "tools/mixer-run/Executors.h"

#include "tools/mixer-run/CommandLine.h"

#include "runtime/exec/Executor.h"
#include "runtime/exec/MemoryBudget.h"

#ifdef MIXER_HAVE_CUDA
#include "runtime/cuda/Executor.h"
#endif

namespace mixer::run {

void requireTarget(const exec::Plan &plan) {
  if (plan.target != "cuda")
    return;
#ifdef MIXER_HAVE_CUDA
  if (Status status = cuda::checkDevice(); !status)
    throw RuntimeFailure{status.message() + " to run " + plan.path +
                         ", a cuda artifact"};
#else
  throw RuntimeFailure{"this mixer-run was built without CUDA and cannot run " +
                       plan.path + ", a cuda artifact"};
#endif
}

std::unique_ptr<exec::PlanExecutor> createExecutor(const exec::Plan &plan) {
  // The parameters are bound from a host copy; a CPU plan's activations
  // live in host memory too.
  check(exec::checkHostMemory(plan, 1, plan.target != "cuda"));
  if (plan.target != "cuda")
    return std::make_unique<exec::Executor>(
        check(exec::Executor::create(plan)));
  requireTarget(plan);
#ifdef MIXER_HAVE_CUDA
  return check(cuda::Executor::create(plan));
#else
  return nullptr;
#endif
}

} // namespace mixer::run
