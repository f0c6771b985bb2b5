//===- Detail.cpp - Helpers shared by the file readers and writers --------===//

#include "runtime/io/Detail.h"
#include "runtime/io/JsonDepth.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <set>
#include <string_view>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace mixer::io::detail {

std::string errnoText(int err) {
  return std::error_code(err, std::generic_category()).message();
}

Expected<MappedFile> MappedFile::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fileError(path, "cannot open: ", errnoText(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return fileError(path, "cannot stat: ", errnoText(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fileError(path, "is not a regular file");
  }
  MappedFile file;
  file.length = static_cast<size_t>(st.st_size);
  if (file.length > 0) {
    void *p = ::mmap(nullptr, file.length, PROT_READ,
                     MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return fileError(path, "cannot map: ", errnoText(err));
    }
    file.bytes = static_cast<const uint8_t *>(p);
  }
  ::close(fd);
  return Expected<MappedFile>(std::move(file));
}

MappedFile::MappedFile(MappedFile &&other) noexcept
    : bytes(other.bytes), length(other.length) {
  other.bytes = nullptr;
  other.length = 0;
}

MappedFile::~MappedFile() {
  if (bytes)
    ::munmap(const_cast<uint8_t *>(bytes), length);
}

namespace {

using Json = nlohmann::ordered_json;

/// Builds the document as the library's own DOM parser does and notes the
/// first key repeated at the top level. Its parse callback would do the
/// same, but then rescans an object's members each time one of them ends,
/// which is quadratic in the members (a plan's thousands of steps).
class DuplicateKeySax {
public:
  explicit DuplicateKeySax(Json &out) : dom(out) {}

  bool null() { return dom.null(); }
  bool boolean(bool value) { return dom.boolean(value); }
  bool number_integer(Json::number_integer_t value) {
    return dom.number_integer(value);
  }
  bool number_unsigned(Json::number_unsigned_t value) {
    return dom.number_unsigned(value);
  }
  bool number_float(Json::number_float_t value, const Json::string_t &text) {
    return dom.number_float(value, text);
  }
  bool string(Json::string_t &value) { return dom.string(value); }
  bool binary(Json::binary_t &value) { return dom.binary(value); }
  bool start_object(std::size_t members) {
    ++depth;
    return dom.start_object(members);
  }
  bool key(Json::string_t &name) {
    if (depth == 1 && duplicate.empty() && !seen.insert(name).second)
      duplicate = name;
    return dom.key(name);
  }
  bool end_object() {
    --depth;
    return dom.end_object();
  }
  bool start_array(std::size_t elements) {
    ++depth;
    return dom.start_array(elements);
  }
  bool end_array() {
    --depth;
    return dom.end_array();
  }
  template <typename Exception>
  bool parse_error(std::size_t position, const std::string &token,
                   const Exception &error) {
    return dom.parse_error(position, token, error);
  }

  std::string duplicate;

private:
  nlohmann::detail::json_sax_dom_parser<Json> dom;
  int depth = 0;
  std::set<std::string> seen;
};

} // namespace

Status parseJson(const std::string &path, const char *what, const char *begin,
                 const char *end, nlohmann::ordered_json &out,
                 bool rejectDuplicateKeys) {
  // The parser would skip a leading byte order mark and stop at a NUL byte,
  // accepting text that is not JSON.
  if (end - begin >= 3 && std::string_view(begin, 3) == "\xEF\xBB\xBF")
    return fileError(path, what,
                     " starts with a UTF-8 byte order mark, which JSON does "
                     "not allow");
  if (const char *nul = std::find(begin, end, '\0'); nul != end)
    return fileError(path, what, " has a NUL byte at offset ", nul - begin);
  if (Status s = checkJsonDepth(std::string_view(begin, end - begin),
                                concat(path, ": ", what));
      !s)
    return s;
  DuplicateKeySax sax(out);
  try {
    Json::sax_parse(begin, end, &sax);
  } catch (const Json::exception &e) {
    // Drop the "[json.exception.parse_error.101] " prefix.
    std::string reason = e.what();
    size_t bracket = reason.find("] ");
    if (bracket != std::string::npos)
      reason.erase(0, bracket + 2);
    return fileError(path, what, " is not valid JSON: ", reason);
  }
  if (rejectDuplicateKeys && !sax.duplicate.empty())
    return fileError(path, what, " has the key '", sax.duplicate, "' twice");
  return Status::success();
}

} // namespace mixer::io::detail
