//===- MemoryBudget.h - Host memory a plan needs ----------------*- C++ -*-===//
//
// A plan states every size it needs, so a run that cannot fit in the
// machine's memory is refused before anything is allocated, with the sizes
// named, rather than failing halfway or being killed by the kernel.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_MEMORYBUDGET_H
#define MIXER_RUNTIME_EXEC_MEMORYBUDGET_H

#include "runtime/exec/Plan.h"
#include "runtime/support/Status.h"

#include <cstdint>

namespace mixer::exec {

/// The machine's physical memory in bytes, or 0 when it cannot be read.
int64_t physicalMemoryBytes();

/// Fails when `parameterCopies` copies of the plan's parameters, its
/// optimizer state and, with `withArena`, its activation arena need more
/// than `availableBytes` (no check when it is 0); the message names the
/// sizes and the largest parameter.
Status checkHostMemory(const Plan &plan, int parameterCopies, bool withArena,
                       int64_t availableBytes = physicalMemoryBytes());

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_MEMORYBUDGET_H
