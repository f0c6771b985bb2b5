//===- FileTest.cpp - Whole-file reads and atomic writes ------------------===//

#include "IOTestUtil.h"

#include "runtime/io/TensorFiles.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <thread>

using namespace mixer::io;
using namespace mixer::io::test;
using mixer::Status;

namespace {

using FileTest = TempDirTest;

TEST_F(FileTest, WritesANewFileWithTheUsualPermissions) {
  mode_t previous = ::umask(022);
  Status s = writeFileAtomic(file("new.bin"), std::string("a\0b", 3));
  ::umask(previous);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(readBytes(file("new.bin")), std::string("a\0b", 3));
  struct stat st;
  ASSERT_EQ(::stat(file("new.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(listing(), (std::vector<std::string>{"new.bin"}));
}

TEST_F(FileTest, ReplacesAnExistingFileAtomically) {
  std::string path = file("model.safetensors");
  writeBytes(path, "old content");
  // A reader that opened the old file keeps seeing it whole: the new content
  // arrives as a new file renamed over the name, never by rewriting in place.
  int reader = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  ASSERT_TRUE(writeFileAtomic(path, "new").ok());
  char buffer[32] = {};
  ssize_t n = ::pread(reader, buffer, sizeof buffer, 0);
  ::close(reader);
  EXPECT_EQ(std::string(buffer, n > 0 ? n : 0), "old content");
  EXPECT_EQ(readBytes(path), "new");
  EXPECT_EQ(listing(), (std::vector<std::string>{"model.safetensors"}));
}

TEST_F(FileTest, WritesThroughAFifo) {
  // Renaming over the FIFO would replace the pipe with a file; the reader
  // gets the bytes and the FIFO stays.
  std::string fifo = file("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = readBytes(fifo); });
  Status s = writeFileAtomic(fifo, "through the pipe");
  reader.join();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(received, "through the pipe");
  struct stat st;
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(listing(), (std::vector<std::string>{"pipe"}));
}

TEST_F(FileTest, WritesThroughACharacterDevice) {
  // A null device of the test's own: writing to it must not replace it.
  std::string device = file("null");
  if (::mknod(device.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) != 0)
    GTEST_SKIP() << "cannot create a character device here (mknod needs "
                    "CAP_MKNOD): "
                 << std::strerror(errno);
  Status s = writeFileAtomic(device, "discarded");
  ASSERT_TRUE(s.ok()) << s.message();
  struct stat st;
  ASSERT_EQ(::lstat(device.c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, ::makedev(1, 3));
  EXPECT_EQ(listing(), (std::vector<std::string>{"null"}));
}

TEST_F(FileTest, ReplacesTheFileALinkLeadsTo) {
  std::string target = file("weights-v2.safetensors");
  std::string link = file("latest.safetensors");
  writeBytes(target, "old");
  ASSERT_EQ(::symlink("weights-v2.safetensors", link.c_str()), 0);
  ASSERT_TRUE(writeFileAtomic(link, "new").ok());
  struct stat st;
  ASSERT_EQ(::lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(readBytes(target), "new");
  EXPECT_EQ(listing(), (std::vector<std::string>{"latest.safetensors",
                                                 "weights-v2.safetensors"}));
}

TEST_F(FileTest, FailedWriteLeavesNoTemporaryFile) {
  // The target is a directory: the temporary is written, the rename fails.
  std::string target = file("occupied");
  ASSERT_TRUE(std::filesystem::create_directory(target));
  Status s = writeFileAtomic(target, "bytes");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind(target + ": cannot rename temporary file over "
                                       "the target: ",
                              0),
            0u)
      << s.message();
  EXPECT_EQ(listing(), (std::vector<std::string>{"occupied"}));

  std::string missing = file("no/such/dir/x.npz");
  s = writeFileAtomic(missing, "bytes");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind(missing + ": cannot create temporary file", 0),
            0u)
      << s.message();
  EXPECT_NE(s.message().find("No such file or directory"), std::string::npos);
}

TEST_F(FileTest, ReadFileReportsWhatIsWrong) {
  writeBytes(file("empty"), "");
  auto empty = readFile(file("empty"));
  ASSERT_TRUE(empty.ok()) << empty.message();
  EXPECT_EQ(*empty, "");

  writeBytes(file("data"), std::string("x\0y", 3));
  auto data = readFile(file("data"));
  ASSERT_TRUE(data.ok()) << data.message();
  EXPECT_EQ(*data, std::string("x\0y", 3));

  auto missing = readFile(file("absent"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.message(),
            file("absent") + ": cannot open: No such file or directory");
  auto directory = readFile(dir);
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.message(), dir + ": is not a regular file");
}

} // namespace
