//===- Zip.cpp - The ZIP subset that .npz archives use --------------------===//

#include "runtime/io/Zip.h"
#include "runtime/io/Container.h"
#include "runtime/io/Detail.h"

#include <zlib.h>

namespace mixer::io::detail {

namespace {

constexpr uint32_t kLocalSignature = 0x04034b50;
constexpr uint32_t kCentralSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr size_t kLocalBytes = 30, kCentralBytes = 46, kEndBytes = 22;
constexpr size_t kZip64LocatorBytes = 20;
constexpr uint32_t kMax32 = 0xFFFFFFFF;
constexpr uint16_t kStored = 0, kDeflated = 8;
constexpr uint16_t kFlagEncrypted = 0x1, kFlagUtf8 = 0x800;
/// Deflate's largest expansion: a 258-byte match coded in 2 bits.
constexpr uint64_t kMaxDeflateRatio = 1032;

uint32_t crc32Of(const uint8_t *data, size_t size) {
  return static_cast<uint32_t>(::crc32_z(0, data, size));
}

/// Inflates the first `out.size()` bytes of a raw deflate stream whose whole
/// output is `total` bytes; when that is all of it, the stream must end there.
Status inflateMember(const std::string &path, const std::string &where,
                     const uint8_t *in, size_t inSize, size_t total,
                     std::vector<uint8_t> &out) {
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK)
    return fileError(path, where, ": cannot initialise zlib");
  bool whole = out.size() == total;
  uint8_t none = 0;
  stream.next_in = const_cast<Bytef *>(in);
  stream.avail_in = static_cast<uInt>(inSize);
  stream.next_out = out.empty() ? &none : out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&stream, whole ? Z_FINISH : Z_NO_FLUSH);
  std::string reason = stream.msg ? stream.msg : "incomplete stream";
  uint64_t produced = stream.total_out;
  bool outputFull = stream.avail_out == 0 && stream.avail_in > 0;
  inflateEnd(&stream);
  if (!whole && produced == out.size() && (rc == Z_OK || rc == Z_BUF_ERROR))
    return Status::success();
  if (rc == Z_BUF_ERROR && outputFull)
    return fileError(path, where, ": inflates to more than the ", total,
                     " bytes the central directory records");
  if (rc != Z_STREAM_END)
    return fileError(path, where, ": invalid deflate data (", reason, ")");
  if (produced != total)
    return fileError(path, where, ": inflates to ", produced,
                     " bytes but the central directory records ", total);
  return Status::success();
}

Status zip64Error(const std::string &path, const std::string &where) {
  return fileError(path, where, " uses ZIP64 records, which are not supported");
}

/// Locates the end of central directory record (it ends the file, followed
/// only by a comment of up to 64 KiB).
bool findEndRecord(const uint8_t *bytes, size_t size, size_t &end) {
  if (size < kEndBytes)
    return false;
  size_t lowest = size - kEndBytes > 0xFFFF ? size - kEndBytes - 0xFFFF : 0;
  for (size_t pos = size - kEndBytes + 1; pos-- > lowest;) {
    if (loadLE<uint32_t>(bytes + pos) == kEndSignature &&
        pos + kEndBytes + loadLE<uint16_t>(bytes + pos + 20) <= size) {
      end = pos;
      return true;
    }
  }
  return false;
}

/// One central directory entry, decoded.
struct CentralEntry {
  std::string name;
  uint16_t flags, method;
  uint32_t crc, compressedSize, size, localOffset;
};

} // namespace

Status forEachZipMember(const std::string &path, const uint8_t *bytes,
                        size_t size, const ZipMemberFn &fn) {
  size_t end;
  if (!findEndRecord(bytes, size, end))
    return fileError(path, "not a ZIP archive (no end of central directory "
                           "record)");
  const uint8_t *record = bytes + end;
  if (end >= kZip64LocatorBytes &&
      loadLE<uint32_t>(record - kZip64LocatorBytes) == kZip64LocatorSignature)
    return zip64Error(path, "the archive");
  uint16_t disk = loadLE<uint16_t>(record + 4);
  uint16_t directoryDisk = loadLE<uint16_t>(record + 6);
  uint16_t diskCount = loadLE<uint16_t>(record + 8);
  uint16_t count = loadLE<uint16_t>(record + 10);
  uint32_t directorySize = loadLE<uint32_t>(record + 12);
  uint32_t directoryOffset = loadLE<uint32_t>(record + 16);
  if (count == 0xFFFF || directorySize == kMax32 || directoryOffset == kMax32)
    return zip64Error(path, "the archive");
  if (disk != 0 || directoryDisk != 0)
    return fileError(path, "multi-disk ZIP archives are not supported");
  if (diskCount != count)
    return fileError(path, "the end record counts ", diskCount,
                     " entries on its disk but ", count,
                     " in all, in a single-disk archive");
  if (directoryOffset > end || directorySize > end - directoryOffset)
    return fileError(path, "central directory (", directorySize,
                     " bytes at offset ", directoryOffset,
                     ") overlaps the end record at offset ", end);

  size_t pos = directoryOffset, directoryEnd = pos + directorySize;
  for (uint16_t i = 0; i < count; ++i) {
    const uint8_t *entry = bytes + pos;
    if (directoryEnd - pos < kCentralBytes ||
        loadLE<uint32_t>(entry) != kCentralSignature)
      return fileError(path, "central directory entry ", i, " at offset ", pos,
                       " is malformed");
    size_t nameBytes = loadLE<uint16_t>(entry + 28);
    size_t entryBytes = kCentralBytes + nameBytes +
                        loadLE<uint16_t>(entry + 30) +
                        loadLE<uint16_t>(entry + 32);
    if (directoryEnd - pos < entryBytes)
      return fileError(path, "central directory entry ", i, " at offset ", pos,
                       " runs past the end of the directory");
    CentralEntry member{
        std::string(reinterpret_cast<const char *>(entry + kCentralBytes),
                    nameBytes),
        loadLE<uint16_t>(entry + 8),
        loadLE<uint16_t>(entry + 10),
        loadLE<uint32_t>(entry + 16),
        loadLE<uint32_t>(entry + 20),
        loadLE<uint32_t>(entry + 24),
        loadLE<uint32_t>(entry + 42)};
    pos += entryBytes;

    std::string where = concat("member '", member.name, "'");
    if (member.flags & kFlagEncrypted)
      return fileError(path, where, " is encrypted");
    if (member.compressedSize == kMax32 || member.size == kMax32 ||
        member.localOffset == kMax32)
      return zip64Error(path, where);
    if (size < kLocalBytes || member.localOffset > size - kLocalBytes ||
        loadLE<uint32_t>(bytes + member.localOffset) != kLocalSignature)
      return fileError(path, where, ": no local header at offset ",
                       member.localOffset);
    const uint8_t *local = bytes + member.localOffset;
    // The local header's own sizes may be ZIP64 placeholders (numpy writes
    // them so); only its name and extra field lengths matter here.
    size_t dataOffset = member.localOffset + kLocalBytes +
                        loadLE<uint16_t>(local + 26) +
                        loadLE<uint16_t>(local + 28);
    if (dataOffset > size || member.compressedSize > size - dataOffset)
      return fileError(path, where, ": ", member.compressedSize,
                       " bytes of data at offset ", dataOffset,
                       " run past the end of the file");

    if (member.method == kDeflated) {
      // The recorded size is only a claim: checked against what the data
      // can inflate to before any output is allocated.
      if (member.size > member.compressedSize * kMaxDeflateRatio)
        return fileError(path, where, ": ", member.compressedSize,
                         " bytes of deflate data cannot inflate to the ",
                         member.size, " bytes the central directory records");
    } else if (member.method != kStored) {
      return fileError(path, where, " uses compression method ", member.method,
                       "; only stored (0) and deflate (8) are supported");
    } else if (member.compressedSize != member.size) {
      return fileError(path, where, " is stored but its sizes differ (",
                       member.compressedSize, " and ", member.size, ")");
    }
    if (Status s = fn(ZipMember(path, std::move(member.name), member.method,
                                member.crc, bytes + dataOffset,
                                member.compressedSize, member.size));
        !s)
      return s;
  }
  return Status::success();
}

Status ZipMember::read(size_t bytes, std::vector<uint8_t> &out) const {
  std::string where = concat("member '", name, "'");
  out.resize(std::min(bytes, size));
  if (method == kDeflated) {
    if (Status s = inflateMember(path, where, data, compressedSize, size, out);
        !s)
      return s;
  } else {
    out.assign(data, data + out.size());
  }
  if (out.size() < size)
    return Status::success();
  uint32_t computed = crc32Of(out.data(), out.size());
  if (computed != crc)
    return fileError(path, where, ": CRC-32 mismatch (stored ",
                     formatChecksum(crc), ", computed ",
                     formatChecksum(computed), "): the archive is corrupt");
  return Status::success();
}

Expected<std::string> buildStoredZip(
    const std::string &path,
    const std::vector<std::pair<std::string, std::string>> &members) {
  std::string archive, directory;
  auto tooLarge = [&] {
    return fileError(path, "too large for a ZIP archive without ZIP64 ",
                     "(over 4 GiB or 65535 members)");
  };
  if (members.size() >= 0xFFFF)
    return tooLarge();
  for (const auto &member : members) {
    const std::string &name = member.first, &data = member.second;
    if (archive.size() >= kMax32 || data.size() >= kMax32 ||
        name.size() > 0xFFFF)
      return tooLarge();
    uint32_t offset = static_cast<uint32_t>(archive.size());
    uint32_t crc =
        crc32Of(reinterpret_cast<const uint8_t *>(data.data()), data.size());
    uint16_t flags = 0;
    for (char c : name)
      if (static_cast<unsigned char>(c) >= 0x80)
        flags = kFlagUtf8;
    // The fields local headers and directory entries share, from "version
    // needed" to the extra field length. Times are fixed (1980-01-01) so that
    // equal tensors give equal archives.
    auto appendCommon = [&](std::string &out) {
      appendLE<uint16_t>(out, 20);
      appendLE<uint16_t>(out, flags);
      appendLE<uint16_t>(out, kStored);
      appendLE<uint16_t>(out, 0);
      appendLE<uint16_t>(out, (1 << 5) | 1);
      appendLE<uint32_t>(out, crc);
      appendLE<uint32_t>(out, static_cast<uint32_t>(data.size()));
      appendLE<uint32_t>(out, static_cast<uint32_t>(data.size()));
      appendLE<uint16_t>(out, static_cast<uint16_t>(name.size()));
      appendLE<uint16_t>(out, 0);
    };
    appendLE<uint32_t>(archive, kLocalSignature);
    appendCommon(archive);
    archive += name;
    archive += data;

    appendLE<uint32_t>(directory, kCentralSignature);
    appendLE<uint16_t>(directory, 20); // made by: version 2.0
    appendCommon(directory);
    appendLE<uint16_t>(directory, 0); // comment length
    appendLE<uint16_t>(directory, 0); // disk
    appendLE<uint16_t>(directory, 0); // internal attributes
    appendLE<uint32_t>(directory, 0); // external attributes
    appendLE<uint32_t>(directory, offset);
    directory += name;
  }
  if (archive.size() >= kMax32 || directory.size() >= kMax32)
    return tooLarge();
  uint16_t count = static_cast<uint16_t>(members.size());
  uint32_t directoryOffset = static_cast<uint32_t>(archive.size());
  archive += directory;
  appendLE<uint32_t>(archive, kEndSignature);
  appendLE<uint16_t>(archive, 0);
  appendLE<uint16_t>(archive, 0);
  appendLE<uint16_t>(archive, count);
  appendLE<uint16_t>(archive, count);
  appendLE<uint32_t>(archive, static_cast<uint32_t>(directory.size()));
  appendLE<uint32_t>(archive, directoryOffset);
  appendLE<uint16_t>(archive, 0);
  return archive;
}

} // namespace mixer::io::detail
