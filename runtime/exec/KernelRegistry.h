//===- KernelRegistry.h - Plan steps bound to CPU kernels -------*- C++ -*-===//
//
// One factory per kernel of docs/runtime.md: it checks the step's operand and
// result dtypes and shapes and its attributes once, at load, constructs the
// kernel's state (FFT plans), reserves its scratch, and returns a callable
// that only reads value pointers and calls the kernel.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_KERNELREGISTRY_H
#define MIXER_RUNTIME_EXEC_KERNELREGISTRY_H

#include "runtime/exec/Plan.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

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

/// True if the registry implements `kernel` with the operand and result
/// counts of its entry in runtime/support/KernelSignatures.h.
bool isKernelImplemented(std::string_view kernel);

/// The names of a kernel's operands and results, for messages ("operand 2
/// (word)"): a trailing '?' marks an optional operand; a variadic kernel has
/// one operand name, ending in "...", that stands for all its operands.
struct KernelOperandNames {
  std::initializer_list<std::string_view> operands;
  std::initializer_list<std::string_view> results;
};

/// The operand and result names of `kernel` (every kernel of the plan
/// vocabulary has them), or nothing for an unknown kernel.
std::optional<KernelOperandNames> kernelOperandNames(std::string_view kernel);

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_KERNELREGISTRY_H
