//===- KernelTable.h - Plan steps bound to CPU kernels ----------*- C++ -*-===//
//
// The CPU backend's kernel table: one factory per kernel of
// runtime/support/Kernels.def. A factory checks the step's operand and
// result dtypes and shapes and its attributes once, at load (through
// runtime/exec/StepContext.h), constructs the kernel's state (FFT plans),
// reserves its scratch, and returns a callable that only reads value pointers
// and calls the kernel. The factories live in one file per kernel family
// (KernelTable<Family>.cpp), beside the kernels they bind.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_KERNELTABLE_H
#define MIXER_RUNTIME_CPU_KERNELTABLE_H

#include "runtime/comm/Communicator.h"
#include "runtime/exec/Plan.h"
#include "runtime/exec/SlotLayout.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

namespace mixer::cpu {

/// A step bound to its shapes and attributes: the kernel call and, for steps
/// that keep converted copies of their weights (bf16 products), the
/// conversion, which the executor runs once the parameters are bound.
struct StepFunction {
  using Body = std::function<void(exec::ValuePointers)>;
  StepFunction(Body run, Body bindParams = nullptr)
      : run(std::move(run)), bindParams(std::move(bindParams)) {}
  void operator()(exec::ValuePointers values) const { run(values); }

  Body run;
  Body bindParams;
};

/// The communicators a plan's collective steps run through: the world and
/// the two groups of its mesh (comm::splitMesh).
struct Groups {
  comm::Communicator *world = nullptr, *ep = nullptr, *edp = nullptr;

  /// The group a step's `group` attribute names.
  comm::Communicator *find(std::string_view name) const {
    return name == "ep" ? ep : name == "edp" ? edp : world;
  }
};

/// Checks step `index` of `plan` against its kernel and returns the callable;
/// collective steps run through `groups`. Raises `scratchBytes` to the
/// scratch the step needs.
Expected<StepFunction> prepareStep(const exec::Plan &plan, size_t index,
                                   int64_t &scratchBytes,
                                   const Groups &groups = {});

/// The plan kernels the table implements, in table order
/// (CpuKernelTableTest checks that this is each kernel of Kernels.def once).
std::vector<Kernel> cpuKernels();

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_KERNELTABLE_H
