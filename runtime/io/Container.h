//===- Container.h - The versioned, checksummed artifact file ---*- C++ -*-===//
//
// Layout of a .mxa file (little-endian):
//   bytes 0..7    magic "MIXERMXA"
//   bytes 8..11   u32 container format version (kContainerVersion)
//   bytes 12..19  u64 length L of the header (UTF-8 JSON)
//   bytes 20..    the header
//   next 8 bytes  u64 length P of the binary payload, then P payload bytes
//   last 8 bytes  u64 CRC-64/XZ checksum of every preceding byte
// The reader checks the magic, the version (naming both the file's and the
// supported one), the lengths against the file size (truncation), the
// checksum (corruption) and that the header is valid JSON.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_IO_CONTAINER_H
#define MIXER_RUNTIME_IO_CONTAINER_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <string>

namespace mixer::io {

inline constexpr uint32_t kContainerVersion = 1;

struct Container {
  std::string header;  ///< JSON text
  std::string payload; ///< opaque bytes (may be empty)
};

/// Writes the container atomically.
Status writeContainer(const std::string &path, const Container &container);
/// Reads and validates a container.
Expected<Container> readContainer(const std::string &path);

/// CRC-64/XZ (ECMA-182 polynomial, reflected, init and xorout all ones).
uint64_t crc64(const void *data, size_t size, uint64_t crc = 0);

/// "0x995dc9bbdf1939fa": how checksums appear in files and messages.
std::string formatChecksum(uint64_t value);

} // namespace mixer::io

#endif // MIXER_RUNTIME_IO_CONTAINER_H
