//===- MixerDialect.h - the mixer dialect -----------------------*- C++ -*-===//

#ifndef MIXER_DIALECTS_MIXER_MIXERDIALECT_H
#define MIXER_DIALECTS_MIXER_MIXERDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/mixer/GradientInterface.h.inc"
#include "dialects/mixer/KernelInterface.h"
#include "dialects/mixer/MixerDialect.h.inc"
#include "dialects/mixer/MixerEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/mixer/MixerAttrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/mixer/MixerOps.h.inc"

namespace mixer::graph {

/// The attributes of the model function's interface, which the IR builder
/// sets, the passes keep up to date and the plan exporter reads; the dialect
/// verifies their types wherever they are attached.
///
/// On arguments: what the argument is (exactly one of input, param, state),
/// its initialiser, whether an input file may omit it.
inline constexpr llvm::StringLiteral kInputAttr = "mixer.input";       // string
inline constexpr llvm::StringLiteral kParamAttr = "mixer.param";       // string
inline constexpr llvm::StringLiteral kStateAttr = "mixer.state";       // string
inline constexpr llvm::StringLiteral kInitAttr = "mixer.init";         // dict
inline constexpr llvm::StringLiteral kOptionalAttr = "mixer.optional"; // unit
/// On a parameter argument of a parallel program: the rank holds slice j of
/// `global_shape`'s `axis`, j its rank in the `mesh_axis` group.
inline constexpr llvm::StringLiteral kShardAttr = "mixer.shard"; // dict
/// On results: the parameter or state a result is the new value of.
inline constexpr llvm::StringLiteral kUpdateAttr = "mixer.update"; // string
/// On results of a parallel program: every rank returns the same value (a
/// sum over the ranks); a result with `mixer.shard` is the rank's slice of
/// axis 0 over the named group; any other result holds the rank's rows of
/// the batch.
inline constexpr llvm::StringLiteral kReplicatedAttr = "mixer.replicated"; // unit
/// On the function: result names, the training settings, and the model facts
/// the plan header carries.
inline constexpr llvm::StringLiteral kOutputsAttr = "mixer.outputs";   // [str]
inline constexpr llvm::StringLiteral kTrainingAttr = "mixer.training"; // dict
inline constexpr llvm::StringLiteral kModelAttr = "mixer.model";       // string
inline constexpr llvm::StringLiteral kBatchAttr = "mixer.batch";       // i64
inline constexpr llvm::StringLiteral kSeqAttr = "mixer.seq";           // i64
inline constexpr llvm::StringLiteral kPadIdAttr = "mixer.pad_id";      // i64
inline constexpr llvm::StringLiteral kVocabSizeAttr = "mixer.vocab_size"; // i64
inline constexpr llvm::StringLiteral kHeadsAttr = "mixer.heads"; // dict
/// On the module: the pipeline stage reached and the options it ran with.
inline constexpr llvm::StringLiteral kStageAttr = "mixer.stage"; // string
inline constexpr llvm::StringLiteral kPipelineOptionsAttr =
    "mixer.pipeline_options"; // string
/// On the module of a parallel program: its mesh, {dp = D, ep = E}.
inline constexpr llvm::StringLiteral kMeshAttr = "mixer.mesh"; // dict

/// The groups of a mesh, as collectives name them: every rank, the ranks that
/// share a replica's experts, and the ranks that hold the same experts.
inline constexpr llvm::StringLiteral kWorldGroup = "world";
inline constexpr llvm::StringLiteral kExpertGroup = "ep";
inline constexpr llvm::StringLiteral kExpertDataGroup = "edp";

/// A `dp × ep` mesh: world = dp · ep ranks.
struct Mesh {
  int64_t dp = 1, ep = 1;

  int64_t world() const { return dp * ep; }
  /// The ranks of the group `group` (world, ep or edp).
  int64_t groupSize(llvm::StringRef group) const;
};

/// The mesh recorded on the module holding `op`; one rank when none is.
Mesh meshOf(mlir::Operation *op);

} // namespace mixer::graph

#endif // MIXER_DIALECTS_MIXER_MIXERDIALECT_H
