//===- Detail.h - Helpers shared by readers and writers ---------*- C++ -*-===//
//
// Internal to MixerIO: a read-only view of a whole file, little-endian integer
// packing and the message formatting every reader uses.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_IO_DETAIL_H
#define MIXER_RUNTIME_IO_DETAIL_H

#include "runtime/io/Tensor.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/support/Status.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

namespace mixer::io::detail {

/// A whole file mapped read-only into memory (nothing is copied until a
/// reader takes the bytes it needs).
class MappedFile {
public:
  static Expected<MappedFile> open(const std::string &path);
  MappedFile(MappedFile &&other) noexcept;
  MappedFile &operator=(MappedFile &&other) = delete;
  MappedFile(const MappedFile &) = delete;
  ~MappedFile();

  const uint8_t *data() const { return bytes; }
  size_t size() const { return length; }

private:
  MappedFile() = default;
  const uint8_t *bytes = nullptr;
  size_t length = 0;
};

/// Concatenates the streamed form of every part.
template <typename... Ts> std::string concat(const Ts &...parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

/// An error "<path>: <parts...>".
template <typename... Ts>
Status fileError(const std::string &path, const Ts &...parts) {
  return Status::error(concat(path, ": ", parts...));
}

/// Parses `what` (e.g. "header"), the JSON text [begin, end), into `out`,
/// keeping key order; text nested deeper than kMaxJsonDepth is refused. With
/// `rejectDuplicateKeys`, a key repeated at the top level is an error naming it
/// (the parser would silently keep the last).
Status parseJson(const std::string &path, const char *what, const char *begin,
                 const char *end, nlohmann::ordered_json &out,
                 bool rejectDuplicateKeys = false);

/// The text of an errno value.
std::string errnoText(int err);

/// Reads a little-endian unsigned integer of sizeof(T) bytes.
template <typename T> T loadLE(const uint8_t *p) {
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    value |= static_cast<T>(p[i]) << (8 * i);
  return value;
}

/// Appends a little-endian unsigned integer of sizeof(T) bytes.
template <typename T> void appendLE(std::string &out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

/// The byte size of a tensor of `shape` and `dtype`; false if a dimension is
/// negative or the size overflows int64.
bool byteSize(const std::vector<int64_t> &shape, DType dtype, int64_t &bytes);

/// Checks that a tensor about to be written has a valid shape and exactly
/// the bytes its shape and dtype need.
Status checkTensorForWrite(const std::string &path, const HostTensor &tensor);

/// Whether `filter` (an empty one keeps everything) keeps `header`.
inline Expected<bool> keeps(const TensorFilter &filter,
                            const HostTensor &header) {
  return filter ? filter(header) : Expected<bool>(true);
}

/// Reads a .npy file as a list of the one tensor it holds, or none when
/// `filter` leaves it out.
Expected<std::vector<HostTensor>> readNpyFiltered(const std::string &path,
                                                  const TensorFilter &filter);

} // namespace mixer::io::detail

#endif // MIXER_RUNTIME_IO_DETAIL_H
