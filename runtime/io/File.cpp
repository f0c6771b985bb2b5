//===- File.cpp - Whole-file reads and atomic writes ----------------------===//

#include "runtime/io/Detail.h"
#include "runtime/io/TensorFiles.h"

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mixer::io {

namespace {

std::string parentDirectory(const std::string &path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

/// Writes all of `bytes`, resuming after short writes and interruptions.
bool writeAll(int fd, const std::string &bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

/// Writes `bytes` to an existing target that is not a regular file (a
/// character device, a FIFO, a socket), which renaming over would replace.
Status writeThrough(const std::string &path, const std::string &bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return detail::fileError(
        path, "cannot open for writing: ", detail::errnoText(errno));
  bool written = writeAll(fd, bytes);
  int err = errno;
  if (::close(fd) != 0 && written) {
    written = false;
    err = errno;
  }
  if (!written)
    return detail::fileError(path, "cannot write: ", detail::errnoText(err));
  return Status::success();
}

/// Writes `bytes` to a temporary file next to `path` and renames it over it.
Status writeByRename(const std::string &path, const std::string &bytes) {
  // The temporary lives next to the target so that rename() stays within one
  // file system and is atomic; pid and counter make its name unique.
  static std::atomic<unsigned> counter{0};
  std::string temp;
  int fd = -1;
  while (fd < 0) {
    temp = detail::concat(path, ".tmp.", ::getpid(), ".", counter++);
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      return detail::fileError(path, "cannot create temporary file '", temp,
                               "': ", detail::errnoText(errno));
  }
  auto fail = [&](const char *what) {
    int err = errno;
    if (fd >= 0)
      ::close(fd);
    ::unlink(temp.c_str());
    return detail::fileError(path, what, ": ", detail::errnoText(err));
  };
  if (!writeAll(fd, bytes))
    return fail("cannot write temporary file");
  if (::fsync(fd) != 0)
    return fail("cannot sync temporary file");
  int closed = ::close(fd);
  fd = -1;
  if (closed != 0)
    return fail("cannot close temporary file");
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail("cannot rename temporary file over the target");
  return syncDirectory(parentDirectory(path));
}

} // namespace

Status syncDirectory(const std::string &dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return detail::fileError(dir, "cannot open the directory to sync it: ",
                             detail::errnoText(errno));
  int synced = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (synced != 0)
    return detail::fileError(
        dir, "cannot sync the directory: ", detail::errnoText(err));
  return Status::success();
}

Expected<std::string> readFile(const std::string &path) {
  auto file = detail::MappedFile::open(path);
  if (!file)
    return file.takeStatus();
  return std::string(reinterpret_cast<const char *>(file->data()),
                     file->size());
}

Status writeFileAtomic(const std::string &path, const std::string &bytes) {
  struct stat target;
  if (::stat(path.c_str(), &target) != 0 || S_ISDIR(target.st_mode))
    return writeByRename(path, bytes);
  if (!S_ISREG(target.st_mode))
    return writeThrough(path, bytes);
  // A link to a regular file (such as /dev/stdout redirected to one) stays
  // a link: the file it leads to is replaced.
  struct stat link;
  if (::lstat(path.c_str(), &link) != 0 || !S_ISLNK(link.st_mode))
    return writeByRename(path, bytes);
  char resolved[PATH_MAX];
  if (!::realpath(path.c_str(), resolved))
    return detail::fileError(
        path, "cannot resolve the link: ", detail::errnoText(errno));
  return writeByRename(resolved, bytes);
}

} // namespace mixer::io
