//===- FlaxCheckpoint.h - The original Sparse Mixer's checkpoints -*- C++
//-*-===//
//
// Reads and writes the Flax MessagePack checkpoints of the original Sparse
// Mixer code (released as sm_base.zip, fsm_base.zip, ...): a replicated
// checkpoint `replicated_checkpoint_<step>` holding every parameter except
// the experts' (left as empty arrays) and, per host, a shard file
// `shard-<p>-of-<n>_checkpoint_<step>` holding its devices' experts with a
// leading device axis. A state dict is a tree of string-keyed maps whose
// leaves are ndarrays: MessagePack extension 1 wrapping (shape, dtype name,
// row-major bytes). The original's tree differs from mixer's names and
// layouts in two places: routers live under
// `encoder/router_weights_<l>/DenseGeneral_0/`, and expert parameters carry
// the expert axis second ([D, E, F], [F, E], [F, E, D], [D, E]) where mixer
// has it first. docs/import.md has the mapping and the model description
// derived from the checkpoint and the original's configuration values.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CONVERT_FLAXCHECKPOINT_H
#define MIXER_RUNTIME_CONVERT_FLAXCHECKPOINT_H

#include "runtime/convert/ImportedModel.h"
#include "runtime/support/Status.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace mixer::convert {

/// Reads the checkpoint at `path` (a zip archive, a directory, or one
/// msgpack state dict), joins the shard files into the experts and maps the
/// tree to mixer. `config` holds the original's configuration values
/// (`configPath` names it in messages; an empty object takes the original's
/// defaults). Everything is checked before anything is returned.
Expected<ImportedModel> importFlaxCheckpoint(const std::string &path,
                                             const nlohmann::json &config,
                                             const std::string &configPath);

/// The original's variables {"params": tree} for mixer's parameters
/// `weights` (F32), as one msgpack state dict; `source` names the weights in
/// messages. Parameters the original has no counterpart for are refused.
Expected<std::string>
exportFlaxParams(const std::vector<io::HostTensor> &weights,
                 const std::string &source);

} // namespace mixer::convert

#endif // MIXER_RUNTIME_CONVERT_FLAXCHECKPOINT_H
