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

} // namespace mixer

#endif // MIXER_FRONTEND_MODELPARSER_H
