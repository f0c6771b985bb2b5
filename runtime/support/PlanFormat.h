//===- PlanFormat.h - Constants of the plan format -------------*- C++ -*-===//
//
// What the compiler that writes plans and the runtime that reads them must
// agree on beyond the kernel vocabulary: the format version and the arena
// alignment. Header-only, below both (docs/runtime.md, "Artifact").
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_PLANFORMAT_H
#define MIXER_RUNTIME_SUPPORT_PLANFORMAT_H

#include <cstdint>

namespace mixer {

/// The plan format mixc writes and the runtime executes; artifacts of any
/// other version are refused with a message naming both versions. Version 2
/// added forward_steps and heads; version 3 the mesh, shards and collective
/// bytes of parallel plans, the experts' `layout` and the noise kernels'
/// `micro_step` operand (the noise_counter kernel is gone).
inline constexpr int64_t kPlanFormatVersion = 3;

/// The alignment of every arena slice (and of the arena itself), for
/// full-width vector loads.
inline constexpr int64_t kArenaAlignment = 64;

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_PLANFORMAT_H
