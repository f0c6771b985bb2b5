//===- Safetensors.cpp - The safetensors format ---------------------------===//
//
// Layout: u64 little-endian header length N, N bytes of JSON header, then the
// data section. The header maps tensor names to {"dtype", "shape",
// "data_offsets": [begin, end]} (offsets relative to the data section), plus an
// optional "__metadata__" string map.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/Detail.h"
#include "runtime/io/TensorFiles.h"

#include <algorithm>
#include <limits>
#include <tuple>

namespace mixer::io {

using detail::concat;
using detail::fileError;
using Json = nlohmann::ordered_json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;
constexpr const char *kMetadataKey = "__metadata__";

/// A header entry: the tensor without its data, and where the data lies.
struct Entry {
  HostTensor tensor;
  uint64_t begin = 0, end = 0;
};

bool isNonNegativeInt(const Json &value) {
  return value.is_number_unsigned() &&
         value.get<uint64_t>() <=
             static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

Status parseMetadata(const std::string &path, const Json &value,
                     std::map<std::string, std::string> &metadata) {
  if (!value.is_object())
    return fileError(path,
                     "__metadata__ must be an object mapping strings "
                     "to strings, not ",
                     value.type_name());
  for (const auto &[key, item] : value.items()) {
    if (!item.is_string())
      return fileError(path, "__metadata__ entry '", key,
                       "' must be a string, not ", item.type_name());
    metadata[key] = item.get<std::string>();
  }
  return Status::success();
}

Status parseEntry(const std::string &path, const std::string &name,
                  const Json &value, Entry &entry) {
  std::string where = concat("tensor '", name, "'");
  if (!value.is_object())
    return fileError(path, where, " must be an object, not ",
                     value.type_name());
  entry.tensor.name = name;

  auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string())
    return fileError(path, where, " needs a string 'dtype'");
  if (!parseDTypeName(dtype->get<std::string>(), entry.tensor.dtype))
    return fileError(path, where, " has unknown dtype '",
                     dtype->get<std::string>(), "'");

  auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array() ||
      !std::all_of(shape->begin(), shape->end(), isNonNegativeInt))
    return fileError(path, where,
                     " needs a 'shape' array of non-negative integers");
  for (const Json &dim : *shape)
    entry.tensor.shape.push_back(dim.get<int64_t>());

  auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned() ||
      (*offsets)[0].get<uint64_t>() > (*offsets)[1].get<uint64_t>())
    return fileError(path, where,
                     " needs 'data_offsets' [begin, end] of non-negative "
                     "integers with begin <= end");
  entry.begin = (*offsets)[0].get<uint64_t>();
  entry.end = (*offsets)[1].get<uint64_t>();

  int64_t bytes;
  if (!detail::byteSize(entry.tensor.shape, entry.tensor.dtype, bytes))
    return fileError(path, where, " has shape ",
                     formatShape(entry.tensor.shape),
                     " whose byte size overflows");
  if (entry.end - entry.begin != static_cast<uint64_t>(bytes))
    return fileError(path, where, " has data_offsets [", entry.begin, ", ",
                     entry.end, "] but shape ", formatShape(entry.tensor.shape),
                     " with dtype ", dtypeName(entry.tensor.dtype), " needs ",
                     bytes, " bytes");
  return Status::success();
}

/// Checks that the entries, in data order, tile [0, dataBytes) exactly.
Status checkLayout(const std::string &path, const std::vector<Entry> &entries,
                   uint64_t dataBytes) {
  uint64_t covered = 0;
  const Entry *previous = nullptr;
  for (const Entry &entry : entries) {
    if (entry.begin != covered) {
      std::string before =
          previous ? concat("the previous tensor '", previous->tensor.name,
                            "' ends at ", covered)
                   : std::string("the data section starts at 0");
      return fileError(path, "tensor '", entry.tensor.name,
                       "' has data_offsets [", entry.begin, ", ", entry.end,
                       "] but ", before,
                       entry.begin > covered ? ": gap in the data section"
                                             : ": tensors overlap");
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered < dataBytes)
    return fileError(path, "the tensors cover ", covered,
                     " bytes of data but the data section has ", dataBytes,
                     ": ", dataBytes - covered, " trailing bytes");
  if (covered > dataBytes)
    return fileError(path, "truncated: the tensors need ", covered,
                     " bytes of data but the data section has ", dataBytes);
  return Status::success();
}

Expected<std::vector<HostTensor>>
readSafetensorsImpl(const std::string &path,
                    std::map<std::string, std::string> &metadata,
                    const TensorFilter &filter) {
  auto file = detail::MappedFile::open(path);
  if (!file)
    return file.takeStatus();
  const uint8_t *bytes = file->data();
  uint64_t size = file->size();
  if (size < 8)
    return fileError(path, "file has ", size,
                     " bytes, too short for the 8-byte header length");
  uint64_t headerBytes = detail::loadLE<uint64_t>(bytes);
  if (headerBytes > kMaxHeaderBytes)
    return fileError(path, "header length ", headerBytes,
                     " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (headerBytes > size - 8)
    return fileError(path, "truncated: header length is ", headerBytes,
                     " bytes but only ", size - 8,
                     " bytes follow the length field");

  Json header;
  const char *text = reinterpret_cast<const char *>(bytes + 8);
  if (Status s = detail::parseJson(path, "header", text, text + headerBytes,
                                   header, /*rejectDuplicateKeys=*/true);
      !s)
    return s;
  if (!header.is_object())
    return fileError(path, "header must be a JSON object, not ",
                     header.type_name());

  std::vector<Entry> entries;
  for (const auto &[name, value] : header.items()) {
    if (name == kMetadataKey) {
      if (Status s = parseMetadata(path, value, metadata); !s)
        return s;
      continue;
    }
    if (Status s = parseEntry(path, name, value, entries.emplace_back()); !s)
      return s;
  }
  // File order is data order; stable so that empty tensors sharing an offset
  // keep their header order.
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry &a, const Entry &b) {
                     return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
                   });
  if (Status s = checkLayout(path, entries, size - 8 - headerBytes); !s)
    return s;

  const uint8_t *data = bytes + 8 + headerBytes;
  std::vector<HostTensor> tensors;
  tensors.reserve(entries.size());
  for (Entry &entry : entries) {
    auto wanted = detail::keeps(filter, entry.tensor);
    if (!wanted)
      return wanted.takeStatus();
    if (!*wanted)
      continue;
    entry.tensor.data.assign(data + entry.begin, data + entry.end);
    tensors.push_back(std::move(entry.tensor));
  }
  return tensors;
}

} // namespace

Expected<std::vector<HostTensor>>
readSafetensors(const std::string &path,
                std::map<std::string, std::string> &metadata) {
  metadata.clear();
  return readSafetensorsImpl(path, metadata, {});
}

Expected<std::vector<HostTensor>> readSafetensors(const std::string &path,
                                                  const TensorFilter &filter) {
  std::map<std::string, std::string> metadata;
  return readSafetensorsImpl(path, metadata, filter);
}

Status writeSafetensors(const std::string &path,
                        const std::vector<HostTensor> &tensors,
                        const std::map<std::string, std::string> &metadata) {
  Json header = Json::object();
  if (!metadata.empty())
    header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const HostTensor &tensor : tensors) {
    if (Status s = detail::checkTensorForWrite(path, tensor); !s)
      return s;
    if (tensor.name == kMetadataKey || header.contains(tensor.name))
      return fileError(path, "tensor name '", tensor.name,
                       tensor.name == kMetadataKey ? "' is reserved"
                                                   : "' is used twice");
    uint64_t end = offset + tensor.data.size();
    header[tensor.name] = {{"dtype", dtypeName(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception &) {
    return fileError(path, "a tensor name or metadata string is not UTF-8");
  }
  // Pad with spaces so that the data section starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string bytes;
  bytes.reserve(8 + text.size() + offset);
  detail::appendLE<uint64_t>(bytes, text.size());
  bytes += text;
  for (const HostTensor &tensor : tensors)
    bytes.append(tensor.data.begin(), tensor.data.end());
  return writeFileAtomic(path, bytes);
}

} // namespace mixer::io
