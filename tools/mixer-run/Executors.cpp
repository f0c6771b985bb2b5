//===- Executors.cpp - The executor for a plan's target -------------------===//

#include "tools/mixer-run/Executors.h"

#include "tools/mixer-run/CommandLine.h"

#include "runtime/exec/Executor.h"

#ifdef MIXER_HAVE_CUDA
#include "runtime/cuda/Executor.h"
#endif

namespace mixer::run {

namespace {

/// Throws unless a CUDA device can run the cuda plan `plan`.
void requireDevice(const exec::Plan &plan) {
#ifdef MIXER_HAVE_CUDA
  if (Status status = cuda::checkDevice(); !status)
    throw RuntimeFailure{status.message() + " to run " + plan.path +
                         ", a cuda artifact"};
#else
  throw RuntimeFailure{"this mixer-run was built without CUDA and cannot run " +
                       plan.path + ", a cuda artifact"};
#endif
}

} // namespace

std::unique_ptr<exec::PlanExecutor> createExecutor(const exec::Plan &plan) {
  if (plan.target != "cuda")
    return std::make_unique<exec::Executor>(
        check(exec::Executor::create(plan)));
  requireDevice(plan);
#ifdef MIXER_HAVE_CUDA
  return check(cuda::Executor::create(plan));
#else
  return nullptr;
#endif
}

void requireCpuTarget(const exec::Plan &plan, const std::string &command) {
  if (plan.target == "cpu")
    return;
  requireDevice(plan);
  throw RuntimeFailure{command +
                       " runs cpu artifacts only so far (the CUDA "
                       "executor runs infer and bench); " +
                       plan.path + " is a " + plan.target + " artifact"};
}

} // namespace mixer::run
