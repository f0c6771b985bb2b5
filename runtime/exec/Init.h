//===- Init.h - Deterministic parameter initialisation ----------*- C++ -*-===//
//
// Parameters are drawn from a counter-based generator, Philox4x32-10, keyed
// by the seed and indexed by (parameter index, element): every value depends
// only on the seed, the parameter's index in the plan and its position, never
// on the order in which parameters are drawn or on the thread count.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_INIT_H
#define MIXER_RUNTIME_EXEC_INIT_H

#include "runtime/exec/Plan.h"
#include "runtime/io/Tensor.h"

#include "runtime/cpu/CounterRandom.h"

#include <array>
#include <cstdint>
#include <vector>

namespace mixer::exec {

using cpu::philox4x32;
using cpu::PhiloxCounter;
using cpu::PhiloxKey;

/// Fills `data` (the row-major tensor of `shape`) as `spec` says, with the
/// stream of parameter `index` under `seed`. Rows are the last axis
/// (normal_row_renorm).
void initTensor(const InitSpec &spec, uint64_t seed, uint64_t index,
                const std::vector<int64_t> &shape, float *data);

/// Draws parameter `index` of `plan`; a parameter sharded over the ranks of
/// a parallel plan is drawn whole (its `global_shape`), so every mesh and the
/// one-process plan draw the same tensors (exec::takeShards slices them).
io::HostTensor initParameter(const Plan &plan, size_t index, uint64_t seed);

/// Draws every parameter of `plan`, in plan order (global tensors).
std::vector<io::HostTensor> initParameters(const Plan &plan, uint64_t seed);

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_INIT_H
