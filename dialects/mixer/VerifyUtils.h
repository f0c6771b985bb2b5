//===- VerifyUtils.h - shared checks of the op verifiers --------*- C++ -*-===//

#ifndef MIXER_DIALECTS_MIXER_VERIFYUTILS_H
#define MIXER_DIALECTS_MIXER_VERIFYUTILS_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/ArrayRef.h"

#include <optional>

namespace mixer::graph {

/// Shape of a ranked tensor value.
inline llvm::ArrayRef<int64_t> shapeOf(mlir::Value value) {
  return mlir::cast<mlir::RankedTensorType>(value.getType()).getShape();
}

/// Fails with "<what> must have shape [a, b] but has [c, d]" unless `value`
/// has exactly `expected`.
mlir::LogicalResult expectShape(mlir::Operation *op, mlir::Value value,
                                llvm::ArrayRef<int64_t> expected,
                                llvm::StringRef what);

/// Fails unless `value` has the given rank.
mlir::LogicalResult expectRank(mlir::Operation *op, mlir::Value value,
                               int64_t rank, llvm::StringRef what);

/// Fails unless `rate`, the rate of a dropout or jitter noise named `what`,
/// lies in [0, 1).
mlir::LogicalResult expectNoiseRate(mlir::Operation *op, double rate,
                                    llvm::StringRef what);

/// Checks the probability dropout of mixer.attention and its gradient: a
/// rate in [0, 1) and its stream go together, and the noise operands `seed`
/// and `step` are present exactly when they do.
mlir::LogicalResult expectAttentionDropout(mlir::Operation *op,
                                           mlir::Value seed, mlir::Value step,
                                           std::optional<llvm::APFloat> rate,
                                           std::optional<uint64_t> stream);

/// Checks the layout of mixer.experts and its gradient: a capacity layout
/// (`capacity`) reads the offsets of a capacity routing, mixer.select_experts
/// or mixer.route with experts_choose or tokens_choose.
mlir::LogicalResult expectExpertLayout(mlir::Operation *op, mlir::Value offsets,
                                       bool capacity);

} // namespace mixer::graph

#endif // MIXER_DIALECTS_MIXER_VERIFYUTILS_H
