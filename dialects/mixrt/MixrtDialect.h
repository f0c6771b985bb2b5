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

#endif // MIXER_DIALECTS_MIXRT_MIXRTDIALECT_H
