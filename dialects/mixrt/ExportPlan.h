//===- ExportPlan.h - planned mixrt module to an execution plan -*- C++ -*-===//

#ifndef MIXER_DIALECTS_MIXRT_EXPORTPLAN_H
#define MIXER_DIALECTS_MIXRT_EXPORTPLAN_H

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mixer {

namespace exec {
struct Plan;
} // namespace exec

/// What the plan records besides the module itself.
struct PlanInfo {
  std::string target = "cpu";
  /// The activation precision: fp32, or bf16 (activation values BF16).
  std::string precision = "fp32";
  std::string mode = "inference";
};

/// Fills `plan` (runtime/exec/Plan.h, whose Plan::toJson writes the JSON
/// execution plan of docs/runtime.md) from the planned `@forward` function
/// of `module` (after mixrt-plan-memory). Emits a diagnostic and fails on IR
/// the runtime cannot execute.
mlir::LogicalResult exportPlan(mlir::ModuleOp module, const PlanInfo &info,
                               exec::Plan &plan);

} // namespace mixer

#endif // MIXER_DIALECTS_MIXRT_EXPORTPLAN_H
