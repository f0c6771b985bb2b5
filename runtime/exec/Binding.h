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
#include "runtime/io/TensorFiles.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::exec {

/// How messages name an entry of a plan's parameter and state tables.
inline constexpr char kParameterNoun[] = "parameter";
inline constexpr char kStateNoun[] = "state tensor";

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

/// A filter (io::TensorFilter) that reads only what binding `table` can use:
/// it refuses, from the header, a tensor larger than the entry of its name,
/// one with no entry that is larger than the largest entry (or leaves it out
/// unread when `allowExtra`), and a file whose kept tensors come to more than
/// twice the table's bytes. Smaller mismatches are read and then reported by
/// bindTable, all at once. `noun` and `source` as for bindTable.
io::TensorFilter tableFilter(const std::vector<ParamInfo> &table,
                             const std::string &source, bool allowExtra,
                             const std::string &noun);

/// tableFilter for the plan's parameters.
io::TensorFilter paramsFilter(const Plan &plan, const std::string &source,
                              bool allowExtra);

/// The filter of tableFilter for the plan's inputs (an int32 input may be
/// given as int64, twice its bytes), as bindInputBuffers reads them.
io::TensorFilter inputFilter(const Plan &plan, const std::string &source,
                             bool allowExtra);

/// The part of global tensors that world rank `worldRank` of a parallel plan
/// binds (docs/runtime.md, "Parallel plans"); files hold global tensors,
/// which tableFilter and inputFilter accept. A sharded parameter of its
/// global shape keeps slice j of axis 0, j the rank in its group (world rank
/// d·ep + j is rank j of expert group d and rank d of expert-data group j);
/// an input keeps the rank's rows [r·B/W, (r+1)·B/W) of the batch. Other
/// tensors stay as they are, for binding to judge.
void takeShards(const Plan &plan, std::vector<io::HostTensor> &params,
                std::vector<io::HostTensor> &inputs, int64_t worldRank);

/// takeShards for the tensors of one of the plan's tables (`plan.params`,
/// `plan.state`): each tensor of a sharded entry's global shape keeps the
/// rank's slice.
void takeTableShards(const Plan &plan, const std::vector<ParamInfo> &table,
                     std::vector<io::HostTensor> &tensors, int64_t worldRank);

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_BINDING_H
