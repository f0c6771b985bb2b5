//===- ModelParser.h - Model JSON parser and validator ----------*- C++ -*-===//
//
// Reads a model description (docs/dsl.md), checks every rule and expands it
// into a ModelConfig. Each diagnostic reads
//   file:line:column: /json/pointer: reason
// with the position of the offending value (of the enclosing object for a
// missing key); several diagnostics are separated by newlines.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_FRONTEND_MODELPARSER_H
#define MIXER_FRONTEND_MODELPARSER_H

#include "frontend/ModelConfig.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <string>

namespace mixer {

/// Layer-placement rules of a `{"layout": L, "count": n}` placement.
enum class LayerLayout { Bottom, Middle, Mixed, Top };

/// Whether `layout` with `count` (0 <= count <= numLayers) selects `layer` of
/// a model with `numLayers` layers.
bool isLayoutLayer(LayerLayout layout, int64_t count, int64_t layer,
                   int64_t numLayers);

/// Parses and validates the model in `text`; `fileName` prefixes every
/// diagnostic.
Expected<ModelConfig> parseModelText(const std::string &text,
                                     const std::string &fileName);

/// Reads `path` and parses it with parseModelText.
Expected<ModelConfig> parseModelFile(const std::string &path);

/// A parallel compile of a model: dp replicas × ep expert shards (mixc --dp
/// --ep), the global batch and the sequence length (0: max_seq_length).
struct MeshRequest {
  int64_t dp = 1, ep = 1;
  int64_t batch = 1, seq = 0;
  bool training = false;
};

/// Checks that `config`, read from `path`, fits the mesh, naming the place in
/// the file (file:line:column: pointer: reason): `ep` > 1 needs MoE layers
/// whose num_experts it divides, and each rank's batch / (dp · ep) examples
/// must leave every expert's capacity within the tokens of its routing group.
/// The batch must divide into the world (the caller checks it: it is a flag).
Status checkMesh(const std::string &path, const ModelConfig &config,
                 const MeshRequest &mesh);

} // namespace mixer

#endif // MIXER_FRONTEND_MODELPARSER_H
