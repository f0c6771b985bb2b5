//===- ImportedModel.h - A checkpoint mapped to mixer -----------*- C++ -*-===//
//
// What the importers of runtime/convert produce and `mixer-run import`
// writes: the model description, the parameters under mixer's names and
// layouts, one line per mapped tensor and the files copied as they are.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CONVERT_IMPORTEDMODEL_H
#define MIXER_RUNTIME_CONVERT_IMPORTEDMODEL_H

#include "runtime/io/Tensor.h"

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace mixer::convert {

/// A checkpoint mapped to mixer: what `mixer-run import` writes.
struct ImportedModel {
  /// The model description (docs/dsl.md).
  nlohmann::ordered_json model;
  /// The parameters under mixer's names, in mixer's layouts.
  std::vector<io::HostTensor> weights;
  /// One line per mapped tensor: "source [shape] -> name [shape] (how)".
  std::vector<std::string> mapped;
  /// Files copied as they are: source path and the name in the output.
  std::vector<std::pair<std::string, std::string>> copied;
};

} // namespace mixer::convert

#endif // MIXER_RUNTIME_CONVERT_IMPORTEDMODEL_H
