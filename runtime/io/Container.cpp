//===- Container.cpp - The versioned, checksummed artifact file -----------===//

#include "runtime/io/Container.h"
#include "runtime/io/Detail.h"
#include "runtime/io/TensorFiles.h"

#include <array>
#include <cstring>

namespace mixer::io {

using detail::fileError;

namespace {

constexpr char kMagic[] = "MIXERMXA";
constexpr size_t kMagicBytes = 8;
/// Magic, version and header length.
constexpr size_t kPrefixBytes = kMagicBytes + 4 + 8;
/// Payload length and checksum.
constexpr size_t kLengthAndChecksumBytes = 16;

/// Slicing-by-8 tables for the reflected ECMA-182 polynomial: table[k][b] is
/// the CRC contribution of byte b followed by k zero bytes.
struct Crc64Tables {
  std::array<std::array<uint64_t, 256>, 8> table{};
  constexpr Crc64Tables() {
    constexpr uint64_t kPolynomial = 0xC96C5795D7870F42ULL;
    for (uint64_t b = 0; b < 256; ++b) {
      uint64_t crc = b;
      for (int bit = 0; bit < 8; ++bit)
        crc = (crc & 1) ? (crc >> 1) ^ kPolynomial : crc >> 1;
      table[0][b] = crc;
    }
    for (size_t k = 1; k < 8; ++k)
      for (size_t b = 0; b < 256; ++b)
        table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xFF];
  }
};
constexpr Crc64Tables kCrc64;

} // namespace

std::string formatChecksum(uint64_t value) {
  static const char digits[] = "0123456789abcdef";
  std::string text = "0x";
  for (int shift = 60; shift >= 0; shift -= 4)
    text.push_back(digits[(value >> shift) & 0xF]);
  return text;
}

uint64_t crc64(const void *data, size_t size, uint64_t crc) {
  const auto &t = kCrc64.table;
  const uint8_t *p = static_cast<const uint8_t *>(data);
  crc = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    crc ^= detail::loadLE<uint64_t>(p);
    crc = t[7][crc & 0xFF] ^ t[6][(crc >> 8) & 0xFF] ^
          t[5][(crc >> 16) & 0xFF] ^ t[4][(crc >> 24) & 0xFF] ^
          t[3][(crc >> 32) & 0xFF] ^ t[2][(crc >> 40) & 0xFF] ^
          t[1][(crc >> 48) & 0xFF] ^ t[0][crc >> 56];
  }
  for (; size > 0; ++p, --size)
    crc = t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

Status writeContainer(const std::string &path, const Container &container) {
  nlohmann::ordered_json unused;
  if (Status s = detail::parseJson(
          path, "header", container.header.data(),
          container.header.data() + container.header.size(), unused);
      !s)
    return s;
  std::string bytes(kMagic, kMagicBytes);
  bytes.reserve(kPrefixBytes + container.header.size() +
                container.payload.size() + kLengthAndChecksumBytes);
  detail::appendLE<uint32_t>(bytes, kContainerVersion);
  detail::appendLE<uint64_t>(bytes, container.header.size());
  bytes += container.header;
  detail::appendLE<uint64_t>(bytes, container.payload.size());
  bytes += container.payload;
  detail::appendLE<uint64_t>(bytes, crc64(bytes.data(), bytes.size()));
  return writeFileAtomic(path, bytes);
}

Expected<Container> readContainer(const std::string &path) {
  auto file = detail::MappedFile::open(path);
  if (!file)
    return file.takeStatus();
  const uint8_t *bytes = file->data();
  uint64_t size = file->size();
  if (size >= kMagicBytes && std::memcmp(bytes, kMagic, kMagicBytes) != 0)
    return fileError(path, "not a mixer artifact (the file does not start "
                           "with \"MIXERMXA\")");
  if (size < kPrefixBytes)
    return fileError(path, "truncated: the file has ", size,
                     " bytes, fewer than the ", kPrefixBytes,
                     "-byte prefix (magic, version, header length)");
  uint32_t version = detail::loadLE<uint32_t>(bytes + kMagicBytes);
  if (version != kContainerVersion)
    return fileError(path, "container format version ", version,
                     " is not supported by this build (supports ",
                     kContainerVersion, ")");

  uint64_t headerBytes = detail::loadLE<uint64_t>(bytes + kMagicBytes + 4);
  uint64_t rest = size - kPrefixBytes;
  if (rest < kLengthAndChecksumBytes ||
      headerBytes > rest - kLengthAndChecksumBytes)
    return fileError(path, "truncated: header says ", headerBytes,
                     " bytes but the file has ", rest,
                     " bytes after the prefix, fewer than the header plus ",
                     kLengthAndChecksumBytes,
                     " bytes of payload length and checksum");
  const uint8_t *header = bytes + kPrefixBytes;
  uint64_t payloadBytes = detail::loadLE<uint64_t>(header + headerBytes);
  uint64_t room = rest - headerBytes - kLengthAndChecksumBytes;
  if (payloadBytes > room)
    return fileError(path, "truncated: payload says ", payloadBytes,
                     " bytes but the file has room for ", room);
  if (payloadBytes < room)
    return fileError(path, "the file has ", room - payloadBytes,
                     " bytes more than its header and payload lengths "
                     "account for");

  uint64_t stored = detail::loadLE<uint64_t>(bytes + size - 8);
  uint64_t computed = crc64(bytes, size - 8);
  if (stored != computed)
    return fileError(path, "checksum mismatch (stored ", formatChecksum(stored),
                     ", computed ", formatChecksum(computed),
                     "): the file is corrupt");

  const char *text = reinterpret_cast<const char *>(header);
  nlohmann::ordered_json unused;
  if (Status s =
          detail::parseJson(path, "header", text, text + headerBytes, unused);
      !s)
    return s;
  const char *payload = text + headerBytes + 8;
  return Container{std::string(text, headerBytes),
                   std::string(payload, payloadBytes)};
}

} // namespace mixer::io
