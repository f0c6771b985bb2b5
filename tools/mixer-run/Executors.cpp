//===- Executors.cpp - The executor for a plan's target -------------------===//

#include "tools/mixer-run/Executors.h"

#include "tools/mixer-run/CommandLine.h"

#include "runtime/io/Container.h"
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
  std::unique_ptr<comm::Communicator> world = check(comm::createMpiWorld());
  // Every rank must run the same plan: the ranks compare the CRC-64 of the
  // plans they loaded (as the codec writes them back), and rank 0 names the
  // first rank that differs.
  std::string json = plan.toJson();
  uint64_t mine = io::crc64(json.data(), json.size());
  std::vector<uint64_t> all(world->size());
  check(world->allGather(&mine, all.data(), sizeof mine, "artifact check"));
  for (size_t rank = 1; rank < all.size(); ++rank) {
    if (all[rank] == all[0])
      continue;
    if (world->rank() != 0)
      throw ReportedElsewhere{};
    throw RuntimeFailure{"rank " + std::to_string(rank) +
                         " loaded another plan than rank 0's " + plan.path +
                         "; every rank must run the same artifact"};
  }
  return world;
#else
  throw RuntimeFailure{plan.path + " is a parallel plan; this mixer-run was "
                                   "built without MPI"};
#endif
}

} // namespace mixer::run
