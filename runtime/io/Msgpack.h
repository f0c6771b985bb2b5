//===- Msgpack.h - MessagePack values read and written ----------*- C++ -*-===//
//
// The MessagePack format (https://github.com/msgpack/msgpack/blob/master/
// spec.md), as Flax checkpoints use it. Reading parses a whole buffer into a
// tree of values whose strings, binaries and extension payloads point into
// the buffer (nothing is copied); every length is checked against the end of
// the buffer, nesting is bounded, and an error names the file and the byte
// offset. Writing appends the smallest encoding of each value to a string.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_IO_MSGPACK_H
#define MIXER_RUNTIME_IO_MSGPACK_H

#include "runtime/support/Status.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mixer::io {

/// One MessagePack value.
struct MsgpackValue {
  enum class Kind { Nil, Bool, Int, Float, Str, Bin, Array, Map, Ext };
  Kind kind = Kind::Nil;
  /// Where the value starts in the buffer.
  size_t offset = 0;
  bool boolean = false;
  /// Int: the value; `isUnsigned` when it was stored as a uint beyond the
  /// int64 range (then `unsignedValue` holds it).
  int64_t integer = 0;
  bool isUnsigned = false;
  uint64_t unsignedValue = 0;
  double real = 0;
  /// Ext: the application type code.
  int8_t extType = 0;
  /// Str, Bin, Ext: the bytes, inside the parsed buffer.
  const uint8_t *bytes = nullptr;
  size_t size = 0;
  std::vector<MsgpackValue> items;                            ///< Array
  std::vector<std::pair<MsgpackValue, MsgpackValue>> entries; ///< Map

  std::string_view text() const {
    return {reinterpret_cast<const char *>(bytes), size};
  }
  /// The entry of a Map whose key is the string `key`, or null.
  const MsgpackValue *find(std::string_view key) const;
};

/// The deepest nesting of arrays, maps and extension payloads accepted.
inline constexpr int kMsgpackMaxDepth = 64;

/// Parses exactly one value filling `data[0, size)`; `path` names the source
/// in messages ("PATH: byte N: ...").
Expected<MsgpackValue> parseMsgpack(const std::string &path,
                                    const uint8_t *data, size_t size);

/// Appends MessagePack encodings to a string.
class MsgpackWriter {
public:
  void nil();
  void integer(int64_t value);
  void str(std::string_view value);
  void bin(const uint8_t *data, size_t size);
  /// An array header; the `count` values follow.
  void array(size_t count);
  /// A map header; `count` key-value pairs follow.
  void map(size_t count);
  void ext(int8_t type, std::string_view payload);

  const std::string &bytes() const { return out; }
  std::string take() { return std::move(out); }

private:
  void header(uint8_t fix, uint8_t fixLimit, uint8_t code8, uint8_t code16,
              uint8_t code32, size_t count);
  void big(uint64_t value, int bytes);
  std::string out;
};

} // namespace mixer::io

#endif // MIXER_RUNTIME_IO_MSGPACK_H
