//===- MixrtDialect.h - the runtime-level dialect ---------------*- C++ -*-===//

#ifndef MIXER_DIALECTS_MIXRT_MIXRTDIALECT_H
#define MIXER_DIALECTS_MIXRT_MIXRTDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "runtime/support/KernelVocabulary.h"

#include "dialects/mixrt/MixrtDialect.h.inc"

#define GET_OP_CLASSES
#include "dialects/mixrt/MixrtOps.h.inc"

namespace mixer::rt {

/// On the function, set by the lowering and the memory planner for the plan
/// header: the floating-point operations of one run (f64) and the arena's
/// size in bytes (i64).
inline constexpr llvm::StringLiteral kFlopsAttr = "mixrt.flops";
inline constexpr llvm::StringLiteral kArenaBytesAttr = "mixrt.arena_bytes";

} // namespace mixer::rt

#endif // MIXER_DIALECTS_MIXRT_MIXRTDIALECT_H
