//===- Msgpack.cpp - MessagePack values read and written ------------------===//

#include "runtime/io/Msgpack.h"

#include <cstring>

namespace mixer::io {

const MsgpackValue *MsgpackValue::find(std::string_view key) const {
  for (const auto &[k, v] : entries)
    if (k.kind == Kind::Str && k.text() == key)
      return &v;
  return nullptr;
}

namespace {

/// A recursive-descent parser over one buffer.
class Parser {
public:
  Parser(const std::string &path, const uint8_t *data, size_t size)
      : path(path), data(data), size(size) {}

  Status parse(MsgpackValue &value, int depth);
  size_t position() const { return pos; }

  Status error(size_t at, const std::string &what) const {
    return Status::error(path + ": byte " + std::to_string(at) + ": " + what);
  }

private:
  /// Reads an n-byte big-endian unsigned integer.
  Status readUnsigned(int n, uint64_t &out, size_t start) {
    if (size - pos < static_cast<size_t>(n))
      return error(start, "truncated msgpack (the value needs " +
                              std::to_string(n) + " more bytes at byte " +
                              std::to_string(pos) + ", the data ends at " +
                              std::to_string(size) + ")");
    out = 0;
    for (int i = 0; i < n; ++i)
      out = out << 8 | data[pos++];
    return Status::success();
  }
  /// Takes `length` bytes as the payload of `value`.
  Status payload(MsgpackValue &value, uint64_t length, const char *what) {
    if (length > size - pos)
      return error(value.offset, std::string("truncated msgpack (") + what +
                                     " of " + std::to_string(length) +
                                     " bytes runs past the end at byte " +
                                     std::to_string(size) + ")");
    value.bytes = data + pos;
    value.size = static_cast<size_t>(length);
    pos += value.size;
    return Status::success();
  }
  Status elements(MsgpackValue &value, uint64_t count, bool map, int depth);

  const std::string &path;
  const uint8_t *data;
  size_t size;
  size_t pos = 0;
};

Status Parser::elements(MsgpackValue &value, uint64_t count, bool map,
                        int depth) {
  // Every element takes at least one byte: a count beyond the rest of the
  // buffer is refused before anything is reserved for it.
  uint64_t minBytes = map ? 2 * count : count;
  if (count > size || minBytes > size - pos)
    return error(value.offset, std::string("truncated msgpack (") +
                                   (map ? "a map" : "an array") + " of " +
                                   std::to_string(count) +
                                   " elements cannot fit in the " +
                                   std::to_string(size - pos) + " bytes left)");
  if (depth >= kMsgpackMaxDepth)
    return error(value.offset, "msgpack nested deeper than " +
                                   std::to_string(kMsgpackMaxDepth) +
                                   " levels");
  value.kind = map ? MsgpackValue::Kind::Map : MsgpackValue::Kind::Array;
  if (map)
    value.entries.resize(count);
  else
    value.items.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    if (map) {
      if (Status s = parse(value.entries[i].first, depth + 1); !s.ok())
        return s;
      if (Status s = parse(value.entries[i].second, depth + 1); !s.ok())
        return s;
    } else if (Status s = parse(value.items[i], depth + 1); !s.ok()) {
      return s;
    }
  }
  return Status::success();
}

Status Parser::parse(MsgpackValue &value, int depth) {
  using Kind = MsgpackValue::Kind;
  value.offset = pos;
  if (pos >= size)
    return error(pos, "truncated msgpack (a value was expected, the data "
                      "ends here)");
  uint8_t code = data[pos++];
  uint64_t n = 0;
  auto sized = [&](int bytes, Kind kind, const char *what) {
    if (Status s = readUnsigned(bytes, n, value.offset); !s.ok())
      return s;
    value.kind = kind;
    return payload(value, n, what);
  };
  if (code <= 0x7f || code >= 0xe0) {
    value.kind = Kind::Int;
    value.integer = static_cast<int8_t>(code);
    if (code <= 0x7f)
      value.integer = code;
    return Status::success();
  }
  if ((code & 0xf0) == 0x80)
    return elements(value, code & 0x0f, /*map=*/true, depth);
  if ((code & 0xf0) == 0x90)
    return elements(value, code & 0x0f, /*map=*/false, depth);
  if ((code & 0xe0) == 0xa0) {
    value.kind = Kind::Str;
    return payload(value, code & 0x1f, "a string");
  }
  switch (code) {
  case 0xc0:
    value.kind = Kind::Nil;
    return Status::success();
  case 0xc2:
  case 0xc3:
    value.kind = Kind::Bool;
    value.boolean = code == 0xc3;
    return Status::success();
  case 0xc4:
  case 0xc5:
  case 0xc6:
    return sized(1 << (code - 0xc4), Kind::Bin, "a binary");
  case 0xd9:
  case 0xda:
  case 0xdb:
    return sized(1 << (code - 0xd9), Kind::Str, "a string");
  case 0xc7:
  case 0xc8:
  case 0xc9:
  case 0xd4:
  case 0xd5:
  case 0xd6:
  case 0xd7:
  case 0xd8: {
    uint64_t length = 0;
    if (code <= 0xc9) {
      if (Status s = readUnsigned(1 << (code - 0xc7), length, value.offset);
          !s.ok())
        return s;
    } else {
      length = uint64_t(1) << (code - 0xd4);
    }
    uint64_t type = 0;
    if (Status s = readUnsigned(1, type, value.offset); !s.ok())
      return s;
    value.kind = Kind::Ext;
    value.extType = static_cast<int8_t>(type);
    return payload(value, length, "an extension");
  }
  case 0xca:
  case 0xcb: {
    if (Status s = readUnsigned(code == 0xca ? 4 : 8, n, value.offset); !s.ok())
      return s;
    value.kind = Kind::Float;
    if (code == 0xca) {
      uint32_t bits = static_cast<uint32_t>(n);
      float f;
      std::memcpy(&f, &bits, 4);
      value.real = f;
    } else {
      std::memcpy(&value.real, &n, 8);
    }
    return Status::success();
  }
  case 0xcc:
  case 0xcd:
  case 0xce:
  case 0xcf:
    if (Status s = readUnsigned(1 << (code - 0xcc), n, value.offset); !s.ok())
      return s;
    value.kind = Kind::Int;
    value.integer = static_cast<int64_t>(n);
    value.isUnsigned = n > static_cast<uint64_t>(INT64_MAX);
    value.unsignedValue = n;
    return Status::success();
  case 0xd0:
  case 0xd1:
  case 0xd2:
  case 0xd3: {
    int bytes = 1 << (code - 0xd0);
    if (Status s = readUnsigned(bytes, n, value.offset); !s.ok())
      return s;
    value.kind = Kind::Int;
    // Sign-extend the n-byte two's complement value.
    int shift = 64 - 8 * bytes;
    value.integer = static_cast<int64_t>(n << shift) >> shift;
    return Status::success();
  }
  case 0xdc:
  case 0xdd:
  case 0xde:
  case 0xdf: {
    bool map = code >= 0xde;
    if (Status s = readUnsigned((code & 1) ? 4 : 2, n, value.offset); !s.ok())
      return s;
    return elements(value, n, map, depth);
  }
  default: {
    static const char *hex = "0123456789abcdef";
    return error(value.offset, std::string("corrupt msgpack (type byte 0x") +
                                   hex[code >> 4] + hex[code & 15] +
                                   " is not defined)");
  }
  }
}

} // namespace

Expected<MsgpackValue> parseMsgpack(const std::string &path,
                                    const uint8_t *data, size_t size) {
  Parser parser(path, data, size);
  MsgpackValue value;
  if (Status s = parser.parse(value, 0); !s.ok())
    return s;
  if (parser.position() != size)
    return parser.error(parser.position(),
                        "corrupt msgpack (" +
                            std::to_string(size - parser.position()) +
                            " bytes follow the value)");
  return value;
}

void MsgpackWriter::big(uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i)
    out.push_back(static_cast<char>(value >> (8 * i) & 0xff));
}

void MsgpackWriter::header(uint8_t fix, uint8_t fixLimit, uint8_t code8,
                           uint8_t code16, uint8_t code32, size_t count) {
  if (count < fixLimit) {
    out.push_back(static_cast<char>(fix | count));
  } else if (code8 && count <= 0xff) {
    out.push_back(static_cast<char>(code8));
    big(count, 1);
  } else if (count <= 0xffff) {
    out.push_back(static_cast<char>(code16));
    big(count, 2);
  } else {
    out.push_back(static_cast<char>(code32));
    big(count, 4);
  }
}

void MsgpackWriter::nil() { out.push_back(static_cast<char>(0xc0)); }

void MsgpackWriter::integer(int64_t value) {
  if (value >= -32 && value <= 0x7f) {
    out.push_back(static_cast<char>(value));
    return;
  }
  // uint8..uint64 (0xcc..0xcf) for positive values, int8..int64
  // (0xd0..0xd3) for negative ones.
  int log = 3;
  if (value > 0)
    log = value <= 0xff           ? 0
          : value <= 0xffff       ? 1
          : value <= 0xffffffffLL ? 2
                                  : 3;
  else
    log = value >= INT8_MIN    ? 0
          : value >= INT16_MIN ? 1
          : value >= INT32_MIN ? 2
                               : 3;
  out.push_back(static_cast<char>((value > 0 ? 0xcc : 0xd0) + log));
  big(static_cast<uint64_t>(value), 1 << log);
}

void MsgpackWriter::str(std::string_view value) {
  header(0xa0, 32, 0xd9, 0xda, 0xdb, value.size());
  out.append(value);
}

void MsgpackWriter::bin(const uint8_t *data, size_t size) {
  header(0, 0, 0xc4, 0xc5, 0xc6, size);
  out.append(reinterpret_cast<const char *>(data), size);
}

void MsgpackWriter::array(size_t count) {
  header(0x90, 16, 0, 0xdc, 0xdd, count);
}

void MsgpackWriter::map(size_t count) {
  header(0x80, 16, 0, 0xde, 0xdf, count);
}

void MsgpackWriter::ext(int8_t type, std::string_view payload) {
  size_t n = payload.size();
  uint8_t fixed = n == 1    ? 0xd4
                  : n == 2  ? 0xd5
                  : n == 4  ? 0xd6
                  : n == 8  ? 0xd7
                  : n == 16 ? 0xd8
                            : 0;
  if (fixed)
    out.push_back(static_cast<char>(fixed));
  else
    header(0, 0, 0xc7, 0xc8, 0xc9, n);
  out.push_back(static_cast<char>(type));
  out.append(payload);
}

} // namespace mixer::io
