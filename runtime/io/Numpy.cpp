//===- Numpy.cpp - .npy arrays and .npz archives --------------------------===//
//
// A .npy file is the magic "\x93NUMPY", a major and minor version byte, the
// header length (u16 in version 1.0, u32 in 2.0 and 3.0), the header (a Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n'), then the raw array data. An .npz is a
// ZIP archive of .npy members.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/Detail.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/io/Zip.h"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>

namespace mixer::io {

using detail::concat;
using detail::fileError;

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicBytes = 6;
/// numpy aligns the data of the arrays it writes to 64 bytes.
constexpr size_t kDataAlignment = 64;
/// How much of an .npz member is inflated to read its header first; numpy's
/// own reader refuses headers beyond 10,000 bytes.
constexpr size_t kHeaderReadAhead = 1 << 16;

/// The numpy spelling of each DType numpy has, as numpy writes it.
struct NpyType {
  DType dtype;
  const char *descr;
};
constexpr NpyType kNpyTypes[] = {
    {DType::Bool, "|b1"}, {DType::U8, "|u1"},  {DType::I8, "|i1"},
    {DType::I16, "<i2"},  {DType::U16, "<u2"}, {DType::F16, "<f2"},
    {DType::I32, "<i4"},  {DType::U32, "<u4"}, {DType::F32, "<f4"},
    {DType::F64, "<f8"},  {DType::I64, "<i8"}, {DType::U64, "<u8"},
};

struct NpyHeader {
  std::string descr;
  bool fortranOrder = false;
  std::vector<int64_t> shape;
};

/// Parses the header dict literal. parse() returns an empty string on
/// success, otherwise what went wrong and where.
class HeaderParser {
public:
  explicit HeaderParser(std::string_view text) : text(text) {}

  std::string parse(NpyHeader &header) {
    bool seenDescr = false, seenOrder = false, seenShape = false;
    if (!consume('{'))
      return expected("'{'");
    while (!consume('}')) {
      std::string key;
      if (!parseString(key))
        return expected("a quoted key or '}'");
      if (!consume(':'))
        return expected("':'");
      if (key == "descr") {
        if (consume('['))
          return "structured dtypes are not supported";
        if (!parseString(header.descr))
          return expected("a dtype string");
        seenDescr = true;
      } else if (key == "fortran_order") {
        if (!parseBool(header.fortranOrder))
          return expected("True or False");
        seenOrder = true;
      } else if (key == "shape") {
        if (!parseTuple(header.shape))
          return expected("a tuple of non-negative integers");
        seenShape = true;
      } else {
        return concat("unexpected key '", key, "'");
      }
      if (!consume(',') && !peekIs('}'))
        return expected("',' or '}'");
    }
    skipSpace();
    if (pos != text.size())
      return expected("only spaces after the dictionary");
    if (!seenDescr || !seenOrder || !seenShape)
      return concat(
          "missing key '",
          !seenDescr ? "descr" : (!seenOrder ? "fortran_order" : "shape"), "'");
    return "";
  }

private:
  void skipSpace() {
    while (pos < text.size() &&
           std::isspace(static_cast<unsigned char>(text[pos])))
      ++pos;
  }
  bool peekIs(char c) {
    skipSpace();
    return pos < text.size() && text[pos] == c;
  }
  bool consume(char c) {
    if (!peekIs(c))
      return false;
    ++pos;
    return true;
  }
  bool consumeWord(std::string_view word) {
    skipSpace();
    if (text.substr(pos, word.size()) != word)
      return false;
    pos += word.size();
    return true;
  }
  bool parseString(std::string &out) {
    skipSpace();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"'))
      return false;
    size_t close = text.find(text[pos], pos + 1);
    if (close == std::string_view::npos)
      return false;
    out = std::string(text.substr(pos + 1, close - pos - 1));
    pos = close + 1;
    return out.find('\\') == std::string::npos;
  }
  bool parseBool(bool &out) {
    out = consumeWord("True");
    return out || consumeWord("False");
  }
  bool parseTuple(std::vector<int64_t> &out) {
    if (!consume('('))
      return false;
    while (!consume(')')) {
      skipSpace();
      if (pos >= text.size() ||
          !std::isdigit(static_cast<unsigned char>(text[pos])))
        return false;
      int64_t value = 0;
      while (pos < text.size() &&
             std::isdigit(static_cast<unsigned char>(text[pos])))
        if (__builtin_mul_overflow(value, 10, &value) ||
            __builtin_add_overflow(value, text[pos++] - '0', &value))
          return false;
      consumeWord("L"); // Python 2 long suffix
      out.push_back(value);
      if (!consume(',') && !peekIs(')'))
        return false;
    }
    return true;
  }
  std::string expected(const char *what) {
    return concat("expected ", what, " at header offset ", pos);
  }

  std::string_view text;
  size_t pos = 0;
};

/// Decodes the header of a .npy file of `total` bytes whose first
/// `available` bytes are at `bytes` (they must hold the whole header); `where`
/// names it in messages. The tensor comes back without data, which starts at
/// `dataOffset`.
Expected<HostTensor> parseNpyHeader(const std::string &where,
                                    const uint8_t *bytes, size_t available,
                                    size_t total, std::string name,
                                    size_t &dataOffset) {
  if (available < kMagicBytes + 2 ||
      std::memcmp(bytes, kMagic, kMagicBytes) != 0)
    return fileError(where, "not a .npy file (bad magic)");
  unsigned major = bytes[6], minor = bytes[7];
  if (major < 1 || major > 3 || minor != 0)
    return fileError(where, ".npy format version ", major, ".", minor,
                     " is not supported (supports 1.0, 2.0 and 3.0)");
  size_t prefix = kMagicBytes + 2 + (major == 1 ? 2 : 4);
  if (available < prefix)
    return fileError(where, "truncated: file has ", total,
                     " bytes, shorter than the ", prefix, "-byte preamble");
  size_t headerBytes = major == 1 ? detail::loadLE<uint16_t>(bytes + 8)
                                  : detail::loadLE<uint32_t>(bytes + 8);
  if (headerBytes > total - prefix)
    return fileError(where, "truncated: header length is ", headerBytes,
                     " bytes but only ", total - prefix, " bytes follow");
  if (headerBytes > available - prefix)
    return fileError(where, "header length ", headerBytes,
                     " bytes exceeds the limit of ", available - prefix,
                     " bytes");

  NpyHeader header;
  std::string error =
      HeaderParser(
          {reinterpret_cast<const char *>(bytes + prefix), headerBytes})
          .parse(header);
  if (!error.empty())
    return fileError(where, "malformed header: ", error);
  if (header.fortranOrder)
    return fileError(where, "Fortran-order arrays are not supported; save a "
                            "C-order array (numpy.ascontiguousarray)");

  HostTensor tensor;
  tensor.name = std::move(name);
  tensor.shape = std::move(header.shape);
  const std::string &descr = header.descr;
  const NpyType *type = nullptr;
  for (const NpyType &candidate : kNpyTypes)
    if (descr.size() == 3 && (descr[0] == '<' || descr[0] == '|') &&
        descr.compare(1, 2, candidate.descr + 1) == 0)
      type = &candidate;
  if (!type)
    return fileError(where, "dtype '", descr, "' is not supported",
                     !descr.empty() && descr[0] == '>'
                         ? " (big-endian)"
                         : " (supported: little-endian b1 u1 i1 i2 u2 f2 i4 "
                           "u4 f4 f8 i8 u8)");
  tensor.dtype = type->dtype;

  int64_t bytesNeeded;
  if (!detail::byteSize(tensor.shape, tensor.dtype, bytesNeeded))
    return fileError(where, "shape ", formatShape(tensor.shape),
                     " has a byte size that overflows");
  dataOffset = prefix + headerBytes;
  size_t dataBytes = total - dataOffset;
  if (dataBytes != static_cast<uint64_t>(bytesNeeded))
    return fileError(
        where,
        dataBytes < static_cast<uint64_t>(bytesNeeded) ? "truncated: "
                                                       : "trailing bytes: ",
        "shape ", formatShape(tensor.shape), " with dtype ", descr, " needs ",
        bytesNeeded, " bytes of data but ", dataBytes, " follow the header");
  return tensor;
}

/// Encodes a tensor as a version 1.0 .npy file.
Expected<std::string> formatNpy(const std::string &path,
                                const HostTensor &tensor) {
  const NpyType *type = nullptr;
  for (const NpyType &candidate : kNpyTypes)
    if (candidate.dtype == tensor.dtype)
      type = &candidate;
  if (!type)
    return fileError(path, "tensor '", tensor.name, "' has dtype ",
                     dtypeName(tensor.dtype), ", which numpy does not have");
  if (Status s = detail::checkTensorForWrite(path, tensor); !s)
    return s;

  // Python tuple syntax: "()", "(3,)", "(2, 3)".
  std::string shape = "(";
  for (size_t i = 0; i < tensor.shape.size(); ++i)
    shape += (i ? ", " : "") + std::to_string(tensor.shape[i]);
  shape += tensor.shape.size() == 1 ? ",)" : ")";
  std::string header =
      concat("{'descr': '", type->descr,
             "', 'fortran_order': False, 'shape': ", shape, ", }");
  // Pad so that the data starts aligned; the header ends with '\n'.
  size_t unpadded = kMagicBytes + 4 + header.size() + 1;
  header.append((kDataAlignment - unpadded % kDataAlignment) % kDataAlignment,
                ' ');
  header += '\n';
  if (header.size() > 0xFFFF)
    return fileError(path, "tensor '", tensor.name,
                     "' has too many dimensions for a .npy 1.0 header");

  std::string bytes(kMagic, kMagicBytes);
  bytes += '\x01';
  bytes += '\x00';
  detail::appendLE<uint16_t>(bytes, static_cast<uint16_t>(header.size()));
  bytes += header;
  bytes.append(tensor.data.begin(), tensor.data.end());
  return bytes;
}

constexpr std::string_view kNpySuffix = ".npy";

} // namespace

Expected<HostTensor> readNpy(const std::string &path) {
  auto tensors = detail::readNpyFiltered(path, {});
  if (!tensors)
    return tensors.takeStatus();
  return std::move(tensors->front());
}

Expected<std::vector<HostTensor>>
detail::readNpyFiltered(const std::string &path, const TensorFilter &filter) {
  auto file = detail::MappedFile::open(path);
  if (!file)
    return file.takeStatus();
  size_t dataOffset;
  auto tensor = parseNpyHeader(path, file->data(), file->size(), file->size(),
                               std::filesystem::path(path).stem().string(),
                               dataOffset);
  if (!tensor)
    return tensor.takeStatus();
  auto wanted = detail::keeps(filter, *tensor);
  if (!wanted)
    return wanted.takeStatus();
  std::vector<HostTensor> tensors;
  if (*wanted) {
    tensor->data.assign(file->data() + dataOffset,
                        file->data() + file->size());
    tensors.push_back(std::move(*tensor));
  }
  return tensors;
}

Status writeNpy(const std::string &path, const HostTensor &tensor) {
  auto bytes = formatNpy(path, tensor);
  if (!bytes)
    return bytes.takeStatus();
  return writeFileAtomic(path, *bytes);
}

Expected<std::vector<HostTensor>> readNpz(const std::string &path,
                                          const TensorFilter &filter) {
  auto file = detail::MappedFile::open(path);
  if (!file)
    return file.takeStatus();
  std::vector<HostTensor> tensors;
  std::set<std::string> names;
  Status status = detail::forEachZipMember(
      path, file->data(), file->size(), [&](const detail::ZipMember &member) {
        std::string where = concat(path, ": member '", member.name, "'");
        const std::string &memberName = member.name;
        if (memberName.size() <= kNpySuffix.size() ||
            memberName.compare(memberName.size() - kNpySuffix.size(),
                               kNpySuffix.size(), kNpySuffix) != 0)
          return Status::error(where + ": not a .npy array");
        std::string name =
            memberName.substr(0, memberName.size() - kNpySuffix.size());
        if (!names.insert(name).second)
          return Status::error(where + ": appears twice in the archive");
        // The header decides before the array is inflated: a small archive
        // can claim gigabytes.
        std::vector<uint8_t> bytes;
        if (Status s = member.read(kHeaderReadAhead, bytes); !s)
          return s;
        size_t dataOffset;
        auto tensor = parseNpyHeader(where, bytes.data(), bytes.size(),
                                     member.size, name, dataOffset);
        if (!tensor)
          return tensor.takeStatus();
        auto wanted = detail::keeps(filter, *tensor);
        if (!wanted)
          return wanted.takeStatus();
        if (!*wanted)
          return Status::success();
        if (Status s = member.read(member.size, bytes); !s)
          return s;
        bytes.erase(bytes.begin(), bytes.begin() + dataOffset);
        tensor->data = std::move(bytes);
        tensors.push_back(std::move(*tensor));
        return Status::success();
      });
  if (!status)
    return status;
  return tensors;
}

Status writeNpz(const std::string &path,
                const std::vector<HostTensor> &tensors) {
  std::vector<std::pair<std::string, std::string>> members;
  std::set<std::string> names;
  for (const HostTensor &tensor : tensors) {
    if (!names.insert(tensor.name).second)
      return fileError(path, "tensor name '", tensor.name, "' is used twice");
    auto bytes = formatNpy(path, tensor);
    if (!bytes)
      return bytes.takeStatus();
    members.emplace_back(tensor.name + std::string(kNpySuffix),
                         std::move(*bytes));
  }
  auto archive = detail::buildStoredZip(path, members);
  if (!archive)
    return archive.takeStatus();
  return writeFileAtomic(path, *archive);
}

} // namespace mixer::io
