//===- Binding.h - What every executor shares about a plan ------*- C++ -*-===//
//
// Matching named host tensors (weights, optimizer state, inputs) to the
// tables of a plan with messages that list every problem, and the forward
// prefix of a training plan. The CPU executor and the CUDA executor both
// bind through these, so both accept and refuse the same files.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_BINDING_H
#define MIXER_RUNTIME_EXEC_BINDING_H

#include "runtime/exec/Plan.h"
#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::exec {

/// Matches `tensors` to the entries of `table` by name, checking dtype and
/// shape; on success `bound` holds them in table order. `noun` names an
/// entry in messages ("parameter", "state tensor"); `source` (the file)
/// prefixes every problem.
Status bindTable(const std::vector<ParamInfo> &table,
                 std::vector<io::HostTensor> tensors, const std::string &source,
                 bool allowExtra, const std::string &noun,
                 std::vector<io::HostTensor> &bound);

/// Copies `tensors` into one buffer of 4-byte words per plan input
/// (`buffers`, sized by the plan): shapes must match exactly; I32 inputs
/// accept I32 and I64 (converted with a range check), F32 inputs F32;
/// missing optional inputs are zeros.
Status bindInputBuffers(const Plan &plan,
                        const std::vector<io::HostTensor> &tensors,
                        const std::string &source, bool allowExtra,
                        std::vector<std::vector<int32_t>> &buffers);

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_BINDING_H
