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

#endif // MIXER_DIALECTS_MIXER_MIXERDIALECT_H
