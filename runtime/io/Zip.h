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

/// Receives one member's name and uncompressed, CRC-checked bytes.
using ZipMemberFn = std::function<Status(const std::string &name,
                                         const uint8_t *data, size_t size)>;

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
