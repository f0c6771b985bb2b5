//===- ExportPlan.h - planned mixrt module to an execution plan -*- C++ -*-===//

#ifndef MIXER_DIALECTS_MIXRT_EXPORTPLAN_H
#define MIXER_DIALECTS_MIXRT_EXPORTPLAN_H

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mixer {

/// What the plan records besides the module itself.
struct PlanInfo {
  std::string target = "cpu";
  /// The activation precision: fp32, or bf16 (activation values BF16).
  std::string precision = "fp32";
  std::string mode = "inference";
};

/// Serializes the planned `@forward` function of `module` (after
/// mixrt-plan-memory) into the JSON execution plan of docs/runtime.md.
/// Emits a diagnostic and fails on IR the runtime cannot execute.
mlir::FailureOr<std::string> exportPlan(mlir::ModuleOp module,
                                        const PlanInfo &info);

} // namespace mixer

#endif // MIXER_DIALECTS_MIXRT_EXPORTPLAN_H
