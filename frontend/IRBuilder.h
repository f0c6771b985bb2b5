//===- IRBuilder.h - model description to mixer dialect ---------*- C++ -*-===//

#ifndef MIXER_FRONTEND_IRBUILDER_H
#define MIXER_FRONTEND_IRBUILDER_H

#include "frontend/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace mixer {

/// Static shapes and mode an artifact is compiled for.
struct BuildOptions {
  /// The global batch; the function's shapes hold batch / world examples.
  int64_t batch = 1;
  /// The ranks of a parallel compile (mixc --dp × --ep), each running the
  /// function on its share of the batch; `mixer.batch` records the global
  /// batch.
  int64_t world = 1;
  int64_t seq = 0;        ///< 0: the model's max_seq_length
  std::string sourcePath; ///< model file, for locations
  /// Emit the training losses (spec §9) as the output `loss` instead of the
  /// inference outputs, with the train capacity factors.
  bool training = false;
  /// Masked-LM predictions per example in training (P).
  int64_t maxPredictions = 80;
  /// With `training`: build the whole training step, i.e. also the dropout
  /// and router jitter of the model's `training` settings (inputs `seed` and
  /// `step`) and the optimizer settings `mixer-apply-optimizer` reads (the
  /// function's `mixer.training`). Without it the training graph is
  /// deterministic: the loss and nothing to update with.
  bool trainingStep = false;
  /// With `training` but not `trainingStep`: still emit the noise (inputs
  /// `seed` and `step`), so that gradients can be checked under one fixed
  /// draw.
  bool noise = false;
};

/// Builds `func.func @forward` in the mixer dialect: arguments are the inputs
/// (`mixer.input`) and the parameters (`mixer.param`, with their `mixer.init`
/// initialiser) in docs/parameters.md order; results are the outputs named by
/// the function's `mixer.outputs`. Emits a diagnostic and returns null when
/// the options do not fit the model (sequence length, MoE capacity).
mlir::OwningOpRef<mlir::ModuleOp> buildModelModule(mlir::MLIRContext &context,
                                                   const ModelConfig &config,
                                                   const BuildOptions &options);

} // namespace mixer

#endif // MIXER_FRONTEND_IRBUILDER_H
