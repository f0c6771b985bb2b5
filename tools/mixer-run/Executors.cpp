//===- Executors.cpp - The executor for a plan's target -------------------===//

#include "tools/mixer-run/Executors.h"

#include "tools/mixer-run/CommandLine.h"

#include "runtime/target/Executors.h"
#ifdef MIXER_HAVE_MPI
#include "runtime/comm/Mpi.h"
#endif

namespace mixer::run {

void requireTarget(const exec::Plan &plan) {
  check(target::checkTargetAvailable(plan));
}

std::unique_ptr<exec::PlanExecutor> createExecutor(const exec::Plan &plan,
                                                   comm::Communicator *world) {
  return check(target::createExecutor(plan, world));
}

std::unique_ptr<comm::Communicator> parallelWorld(const exec::Plan &plan) {
  if (plan.mesh.world() == 1)
    return nullptr;
#ifdef MIXER_HAVE_MPI
  return check(comm::createMpiWorld());
#else
  throw RuntimeFailure{plan.path + " is a parallel plan; this mixer-run was "
                                   "built without MPI"};
#endif
}

} // namespace mixer::run
