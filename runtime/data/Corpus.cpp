//===- Corpus.cpp - Text corpora, stream positions, batch tensors ---------===//

#include "runtime/data/Corpus.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

namespace mixer::data {

namespace {

/// The JSON keys of DataPosition and the fields they hold.
constexpr std::pair<const char *, uint64_t DataPosition::*> kPositionFields[] =
    {{"epoch", &DataPosition::epoch},
     {"document", &DataPosition::document},
     {"line", &DataPosition::line},
     {"token", &DataPosition::token},
     {"counter", &DataPosition::counter}};

bool isBlank(const std::string &line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string::npos;
}

template <typename T> constexpr io::DType dtypeOf();
template <> constexpr io::DType dtypeOf<int32_t>() { return io::DType::I32; }
template <> constexpr io::DType dtypeOf<float>() { return io::DType::F32; }

} // namespace

nlohmann::json DataPosition::toJson() const {
  nlohmann::json json = nlohmann::json::object();
  for (auto [key, field] : kPositionFields)
    json[key] = this->*field;
  return json;
}

Expected<DataPosition> DataPosition::fromJson(const nlohmann::json &json,
                                              const std::string &where) {
  if (!json.is_object())
    return Status::error(where + ": the data position is not a JSON object");
  DataPosition position;
  for (auto [key, field] : kPositionFields) {
    auto it = json.find(key);
    if (it == json.end())
      return Status::error(where + ": the data position lacks '" +
                           std::string(key) + "'");
    if (!it->is_number_unsigned())
      return Status::error(where + ": the data position's '" +
                           std::string(key) +
                           "' is not a non-negative integer");
    position.*field = it->get<uint64_t>();
  }
  return position;
}

bool DataPosition::operator==(const DataPosition &other) const {
  return epoch == other.epoch && document == other.document &&
         line == other.line && token == other.token && counter == other.counter;
}

Expected<std::vector<Document>> readDocuments(const std::string &path,
                                              const Tokenizer &tokenizer) {
  std::ifstream in(path);
  if (!in)
    return Status::error(path +
                         ": cannot open the corpus: " + std::strerror(errno));
  std::vector<Document> documents(1);
  std::string line;
  for (int64_t lineNumber = 1; std::getline(in, line); ++lineNumber) {
    if (isBlank(line)) {
      if (!documents.back().empty())
        documents.emplace_back();
      continue;
    }
    auto ids = tokenizer.encode(line, path + ":" + std::to_string(lineNumber));
    if (!ids)
      return ids.takeStatus();
    if (!ids->empty())
      documents.back().push_back(std::move(*ids));
  }
  if (in.bad())
    return Status::error(path +
                         ": cannot read the corpus: " + std::strerror(errno));
  if (documents.back().empty())
    documents.pop_back();
  if (documents.empty())
    return Status::error(path + ": the corpus has no text");
  return documents;
}

template <typename T>
io::HostTensor makeTensor(const std::string &name,
                          const std::vector<int64_t> &shape,
                          const std::vector<T> &values) {
  io::HostTensor tensor;
  tensor.name = name;
  tensor.dtype = dtypeOf<T>();
  tensor.shape = shape;
  tensor.data.resize(values.size() * sizeof(T));
  std::memcpy(tensor.data.data(), values.data(), tensor.data.size());
  return tensor;
}

template io::HostTensor makeTensor(const std::string &,
                                   const std::vector<int64_t> &,
                                   const std::vector<int32_t> &);
template io::HostTensor makeTensor(const std::string &,
                                   const std::vector<int64_t> &,
                                   const std::vector<float> &);

} // namespace mixer::data
