//===- KernelRegistry.h - Plan steps bound to CPU kernels -------*- C++ -*-===//
//
// One factory per kernel of runtime/support/Kernels.def: it checks the step's
// operand and result dtypes and shapes and its attributes once, at load,
// constructs the kernel's state (FFT plans), reserves its scratch, and
// returns a callable that only reads value pointers and calls the kernel.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_KERNELREGISTRY_H
#define MIXER_RUNTIME_EXEC_KERNELREGISTRY_H

#include "runtime/exec/Plan.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mixer::exec {

/// The data pointer of every plan value, indexed by value id, followed by
/// a null entry (absentSlot) that absent operands refer to and the scratch
/// buffer (scratchSlot) that the steps share, as they run one at a time.
using ValuePointers = void *const *;

inline size_t absentSlot(const Plan &plan) { return plan.values.size(); }
inline size_t scratchSlot(const Plan &plan) { return plan.values.size() + 1; }
/// Number of entries of the pointer table of `plan`.
inline size_t numSlots(const Plan &plan) { return plan.values.size() + 2; }

/// A step bound to its shapes and attributes.
using StepFunction = std::function<void(ValuePointers)>;

/// "<artifact>: steps[<index>] (<kernel>)", the prefix of every message about
/// a step.
std::string describeStep(const Plan &plan, size_t index);

/// Checks step `index` of `plan` against its kernel and returns the callable.
/// Raises `scratchBytes` to the scratch the step needs.
Expected<StepFunction> prepareStep(const Plan &plan, size_t index,
                                   int64_t &scratchBytes);

/// The plan kernels the registry implements, in table order
/// (KernelRegistryTest checks that this is each kernel of Kernels.def once).
std::vector<Kernel> cpuKernels();

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_KERNELREGISTRY_H
