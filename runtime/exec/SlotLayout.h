//===- SlotLayout.h - The pointer table every executor fills ----*- C++ -*-===//
//
// Every backend binds a prepared step to the values of a plan through one
// table of pointers: the data of every plan value, indexed by value id,
// followed by a null entry that absent operands refer to and the scratch
// buffer that the steps share, as they run one at a time.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_SLOTLAYOUT_H
#define MIXER_RUNTIME_EXEC_SLOTLAYOUT_H

#include "runtime/exec/Plan.h"

#include <cstddef>
#include <string>

namespace mixer::exec {

/// The pointer table of a plan, as a prepared step reads it.
using ValuePointers = void *const *;

/// The null entry absent operands refer to.
inline size_t absentSlot(const Plan &plan) { return plan.values.size(); }
/// The scratch buffer the steps share.
inline size_t scratchSlot(const Plan &plan) { return plan.values.size() + 1; }
/// Number of entries of the pointer table of `plan`.
inline size_t numSlots(const Plan &plan) { return plan.values.size() + 2; }

/// "<artifact>: steps[<index>] (<kernel>)", the prefix of every message about
/// a step.
inline std::string describeStep(const Plan &plan, size_t index) {
  return plan.path + ": steps[" + std::to_string(index) + "] (" +
         std::string(kernelName(plan.steps[index].kernel)) + ")";
}

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_SLOTLAYOUT_H
