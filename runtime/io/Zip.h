//===- Zip.h - The ZIP subset that .npz archives use ------------*- C++ -*-===//
//
// Internal to MixerIO. Reading handles stored and deflated members of a
// single-disk archive without ZIP64 records (numpy's ZIP64 extra fields in
// local headers are skipped, sizes come from the central directory); writing
// produces stored members only.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_IO_ZIP_H
#define MIXER_RUNTIME_IO_ZIP_H

#include "runtime/support/Status.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mixer::io::detail {

/// One member of an archive, handed out before its data is read, so that a
/// reader can look at a prefix (an array header) and refuse a member before
/// inflating all of it.
class ZipMember {
public:
  ZipMember(const std::string &path, std::string name, uint16_t method,
            uint32_t crc, const uint8_t *data, size_t compressedSize,
            size_t size)
      : path(path), name(std::move(name)), size(size), method(method),
        crc(crc), data(data), compressedSize(compressedSize) {}

  /// Fills `out` with the first min(`bytes`, size) uncompressed bytes; when
  /// that is all of them, also checks the CRC-32 and that the data ends there.
  Status read(size_t bytes, std::vector<uint8_t> &out) const;

  const std::string &path;
  const std::string name;
  /// The uncompressed size the central directory records.
  const size_t size;

private:
  uint16_t method;
  uint32_t crc;
  const uint8_t *data;
  size_t compressedSize;
};

/// Receives each member; stops the walk with an error.
using ZipMemberFn = std::function<Status(const ZipMember &member)>;

/// Calls `fn` for every member of the archive `bytes` (the content of `path`,
/// which messages name), in central directory order; stops at the first
/// error.
Status forEachZipMember(const std::string &path, const uint8_t *bytes,
                        size_t size, const ZipMemberFn &fn);

/// An archive of uncompressed members (name, bytes).
Expected<std::string>
buildStoredZip(const std::string &path,
               const std::vector<std::pair<std::string, std::string>> &members);

} // namespace mixer::io::detail

#endif // MIXER_RUNTIME_IO_ZIP_H
