//===- HuggingFaceBert.h - Hugging Face BERT checkpoints --------*- C++ -*-===//
//
// Reads a BERT-family model directory in the Hugging Face layout
// (config.json, model.safetensors, vocab.txt; sentence-transformers'
// modules.json and 1_Pooling/config.json when present) and maps it to
// mixer's model JSON (docs/dsl.md) and parameter names and layouts
// (docs/parameters.md). Everything is checked before anything is returned:
// an unknown architecture key, a tensor missing or without a counterpart, a
// shape that contradicts config.json, a dtype other than F32 or a corrupt
// safetensors file is an error naming the file and the key or tensor.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CONVERT_HUGGINGFACEBERT_H
#define MIXER_RUNTIME_CONVERT_HUGGINGFACEBERT_H

#include "runtime/convert/ImportedModel.h"
#include "runtime/support/Status.h"

#include <string>

namespace mixer::convert {

/// Whether `dir` looks like a Hugging Face model directory (has config.json).
bool isHuggingFaceDirectory(const std::string &dir);

/// Reads and maps the Hugging Face BERT model directory `dir`.
Expected<ImportedModel> importHuggingFaceBert(const std::string &dir);

} // namespace mixer::convert

#endif // MIXER_RUNTIME_CONVERT_HUGGINGFACEBERT_H
