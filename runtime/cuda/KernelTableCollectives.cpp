//===- KernelTableCollectives.cpp - CUDA collective kernels ---------------===//
//
// The Collective family of the CUDA kernel table. Collectives need a
// communicator on device buffers, which the CUDA executor does not hold yet:
// its factories refuse them, and parallel plans run on the CPU.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

namespace mixer::cuda {

namespace {

Expected<DeviceStep> prepareCollective(StepContext &c) {
  c.fail("the CUDA executor runs no collectives yet (parallel plans need "
         "--target cpu)");
  return c.takeError();
}

} // namespace

std::vector<TableEntry> collectiveKernels() {
  return {
      {Kernel::AllToAll, prepareCollective},
      {Kernel::AllToAllV, prepareCollective},
      {Kernel::AllReduce, prepareCollective},
      {Kernel::PermuteBlocks, prepareCollective},
  };
}

} // namespace mixer::cuda
