//===- Detail.cpp - Helpers shared by the file readers and writers --------===//

#include "runtime/io/Detail.h"

#include <cerrno>
#include <fcntl.h>
#include <set>
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

Status parseJson(const std::string &path, const char *what, const char *begin,
                 const char *end, nlohmann::ordered_json &out,
                 bool rejectDuplicateKeys) {
  using Json = nlohmann::ordered_json;
  std::string duplicate;
  std::set<std::string> seen;
  Json::parser_callback_t callback = [&](int depth, Json::parse_event_t event,
                                         Json &parsed) {
    if (rejectDuplicateKeys && depth == 1 &&
        event == Json::parse_event_t::key && duplicate.empty() &&
        !seen.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    out = Json::parse(begin, end, callback);
  } catch (const Json::exception &e) {
    // Drop the "[json.exception.parse_error.101] " prefix.
    std::string reason = e.what();
    size_t bracket = reason.find("] ");
    if (bracket != std::string::npos)
      reason.erase(0, bracket + 2);
    return fileError(path, what, " is not valid JSON: ", reason);
  }
  if (!duplicate.empty())
    return fileError(path, what, " has the key '", duplicate, "' twice");
  return Status::success();
}

} // namespace mixer::io::detail
