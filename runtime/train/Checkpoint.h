//===- Checkpoint.h - Crash-safe training checkpoints -----------*- C++ -*-===//
//
// A checkpoint directory holds one subdirectory per saved step and a pointer
// to the one saved last:
//   <dir>/step_<N>/params.safetensors     the parameters, under the names of
//                                         the inference weights
//   <dir>/step_<N>/optimizer.safetensors  the optimizer state
//   <dir>/step_<N>/state.json             step, progress, the byte size
//                                         and CRC-64 of both tensor files,
//                                         and "record_crc64", the CRC-64 of
//                                         its compact JSON form without
//                                         that key
//   <dir>/latest                          "step_<N>": the one to resume from
// A save writes everything into <dir>/.step_<N>.tmp-<pid>, fsyncing every
// file, renames that directory to step_<N> in one step, fsyncs <dir>, and
// only then replaces `latest` atomically. A crash at any point therefore
// leaves `latest` naming a complete checkpoint; leftover temporary
// directories are never read and the next save removes them. A directory
// has one writer at a time.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_TRAIN_CHECKPOINT_H
#define MIXER_RUNTIME_TRAIN_CHECKPOINT_H

#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mixer::train {

/// Everything a training run needs to resume exactly where it stopped.
struct TrainingState {
  int64_t step = 0;                           ///< updates applied so far
  std::vector<io::HostTensor> params;         ///< named like inference weights
  std::vector<io::HostTensor> optimizerState; ///< e.g. the AdamW moments
  /// The rest of the run's position (RNG seed and counters, data position,
  /// tokens seen, model name, artifact checksum, ...), opaque to this module
  /// and restored exactly.
  nlohmann::json progress;
};

/// Saves `state` as <dir>/step_<state.step> (creating `dir` if needed,
/// replacing an existing checkpoint of the same step) and points `latest` at
/// it. Afterwards, of the steps up to state.step only the `keepLast` >= 1
/// newest are kept; newer steps (left by a run that was resumed from an
/// older checkpoint) are not touched.
Status saveCheckpoint(const std::string &dir, const TrainingState &state,
                      int keepLast = 3);

/// Loads the step `latest` names, or `step` when given; without `latest`
/// (a save interrupted before the first one was written), the newest intact
/// step. The sizes and CRC-64s that state.json records are checked before
/// the tensor files are parsed; a missing, truncated or corrupt checkpoint
/// is refused with a message naming the file and what is wrong, and naming
/// the newest older step that is intact, if any.
Expected<TrainingState> loadCheckpoint(const std::string &dir,
                                       std::optional<int64_t> step = {});

/// Removes what interrupted saves left in `dir` (temporary step
/// directories, temporary `latest` files); they are never read.
void removeInterruptedSaves(const std::string &dir);

/// The steps of the checkpoint directories in `dir`, ascending (whether
/// intact or not; temporary directories are not listed).
Expected<std::vector<int64_t>> listCheckpoints(const std::string &dir);

} // namespace mixer::train

#endif // MIXER_RUNTIME_TRAIN_CHECKPOINT_H
