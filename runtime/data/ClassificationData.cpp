//===- ClassificationData.cpp - Fine-tuning examples from JSONL -----------===//

#include "runtime/data/ClassificationData.h"

#include "runtime/data/Corpus.h"
#include "runtime/data/Random.h"
#include "runtime/io/JsonDepth.h"

#include <nlohmann/json.hpp>

#include <cassert>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

namespace mixer::data {

namespace {

using json = nlohmann::json;

/// The parser's explanation without its "[json.exception...] " prefix and,
/// for syntax errors, its "parse error at line 1, column N: " preamble: the
/// line and column are those of the JSONL line, reported by the caller.
std::string parseProblem(const json::exception &error) {
  std::string what = error.what();
  size_t bracket = what.find("] ");
  if (bracket != std::string::npos)
    what.erase(0, bracket + 2);
  size_t column = what.find("column ");
  size_t colon = column == std::string::npos ? column : what.find(": ", column);
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

/// Reads the label of one example; `where` is path:line.
Expected<float> readLabel(const json &object, int64_t numClasses,
                          const std::string &where) {
  auto it = object.find("label");
  if (it == object.end())
    return Status::error(where + ": missing key 'label'");
  const json &label = *it;
  if (numClasses == 1) {
    if (!label.is_number())
      return Status::error(where + ": regression label " + label.dump() +
                           " is not a number");
    // Converting a double beyond the float range is undefined; it would
    // make an infinite target.
    double target = label.get<double>();
    if (std::fabs(target) > std::numeric_limits<float>::max())
      return Status::error(where + ": regression label " + label.dump() +
                           " is beyond the range of 32-bit floats");
    return static_cast<float>(target);
  }
  if (!label.is_number_integer())
    return Status::error(where + ": label " + label.dump() +
                         " is not an integer class index");
  // An unsigned value above the int64 range would wrap to a negative index.
  bool inRange =
      label.is_number_unsigned()
          ? label.get<uint64_t>() < static_cast<uint64_t>(numClasses)
          : label.get<int64_t>() >= 0 && label.get<int64_t>() < numClasses;
  if (!inRange)
    return Status::error(where + ": label " + label.dump() +
                         " is out of range for " + std::to_string(numClasses) +
                         " classes");
  return static_cast<float>(label.get<int64_t>());
}

/// The texts of one example: "text", or "text_a" and "text_b".
Expected<std::vector<std::string>> readTexts(const json &object,
                                             const std::string &where) {
  auto text = [&](const char *key) -> Expected<std::string> {
    auto it = object.find(key);
    if (it == object.end())
      return Status::error(where + ": missing key '" + key + "'");
    if (!it->is_string())
      return Status::error(where + ": '" + key + "' is not a string");
    return it->get<std::string>();
  };
  std::vector<const char *> keys;
  if (object.contains("text"))
    keys = {"text"};
  else if (object.contains("text_a"))
    keys = {"text_a", "text_b"};
  else
    return Status::error(where +
                         ": missing key 'text' (or 'text_a' and 'text_b')");
  std::vector<std::string> texts;
  for (const char *key : keys) {
    auto value = text(key);
    if (!value)
      return value.takeStatus();
    texts.push_back(std::move(*value));
  }
  return texts;
}

} // namespace

std::vector<io::HostTensor> ClassificationBatch::tensors() const {
  std::vector<int64_t> tokens{batchSize, seqLength};
  return {makeTensor("input_ids", tokens, inputIds),
          makeTensor("type_ids", tokens, typeIds),
          regression ? makeTensor("labels", {batchSize}, targets)
                     : makeTensor("labels", {batchSize}, classLabels),
          makeTensor("example_weights", {batchSize}, exampleWeights)};
}

Expected<ClassificationData>
ClassificationData::load(const std::string &path, const Tokenizer &tokenizer,
                         int64_t numClasses) {
  if (numClasses < 1)
    return Status::error(path + ": n_classes " + std::to_string(numClasses) +
                         " is not positive");
  std::ifstream in(path);
  if (!in)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  ClassificationData data;
  data.ids = tokenizer.specialIds();
  data.numClasses = numClasses;
  std::string line;
  for (int64_t lineNumber = 1; std::getline(in, line); ++lineNumber) {
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    std::string where = path + ":" + std::to_string(lineNumber);
    if (Status s = io::checkJsonDepth(line, where + ": the example"); !s)
      return s;
    json object;
    try {
      object = json::parse(line);
    } catch (const json::exception &error) {
      // A number beyond the double range is an out_of_range error, not a
      // parse_error.
      return Status::error(where + ": bad JSON: " + parseProblem(error));
    }
    if (!object.is_object())
      return Status::error(where + ": the example is not a JSON object");
    auto texts = readTexts(object, where);
    if (!texts)
      return texts.takeStatus();
    auto label = readLabel(object, numClasses, where);
    if (!label)
      return label.takeStatus();
    ClassificationExample example;
    example.label = *label;
    for (const std::string &text : *texts) {
      auto segment = tokenizer.encode(text, where);
      if (!segment)
        return segment.takeStatus();
      example.segments.push_back(std::move(*segment));
    }
    data.examples.push_back(std::move(example));
  }
  if (in.bad())
    return Status::error(path + ": cannot read: " + std::strerror(errno));
  if (data.examples.empty())
    return Status::error(path + ": no examples");
  return data;
}

int64_t ClassificationData::numBatches(int64_t batchSize) const {
  return (size() + batchSize - 1) / batchSize;
}

ClassificationBatch
ClassificationData::batch(int64_t index, int64_t batchSize, int64_t seqLength,
                          const std::vector<int64_t> &order) const {
  assert(index >= 0 && index < numBatches(batchSize) && "batch out of range");
  assert((order.empty() || static_cast<int64_t>(order.size()) == size()) &&
         "order is not a permutation of the examples");
  ClassificationBatch batch;
  batch.batchSize = batchSize;
  batch.seqLength = seqLength;
  batch.regression = isRegression();
  batch.inputIds.assign(batchSize * seqLength, ids.pad);
  batch.typeIds.assign(batchSize * seqLength, 0);
  batch.classLabels.assign(batchSize, 0);
  batch.targets.assign(batchSize, 0.0f);
  batch.exampleWeights.assign(batchSize, 0.0f);
  for (int64_t row = 0; row < batchSize; ++row) {
    int64_t slot = index * batchSize + row;
    if (slot >= size())
      break;
    const ClassificationExample &example =
        examples[order.empty() ? slot : order[slot]];
    std::vector<int32_t> tokens{ids.cls}, types{0};
    for (size_t s = 0; s < example.segments.size(); ++s) {
      tokens.insert(tokens.end(), example.segments[s].begin(),
                    example.segments[s].end());
      tokens.push_back(ids.sep);
      types.resize(tokens.size(), static_cast<int32_t>(s));
    }
    size_t kept = std::min<size_t>(tokens.size(), seqLength);
    std::copy(tokens.begin(), tokens.begin() + kept,
              batch.inputIds.begin() + row * seqLength);
    std::copy(types.begin(), types.begin() + kept,
              batch.typeIds.begin() + row * seqLength);
    if (batch.regression)
      batch.targets[row] = example.label;
    else
      batch.classLabels[row] = static_cast<int32_t>(example.label);
    batch.exampleWeights[row] = 1.0f;
  }
  return batch;
}

std::vector<int64_t> ClassificationData::epochOrder(uint64_t seed,
                                                    uint64_t epoch) const {
  return permutation(size(), seed, DrawPurpose::ClassificationOrder, epoch);
}

} // namespace mixer::data
