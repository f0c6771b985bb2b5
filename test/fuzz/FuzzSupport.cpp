//===- FuzzSupport.cpp - What the fuzz harnesses share --------------------===//

#include "test/fuzz/FuzzSupport.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace mixer::fuzz {

namespace {

/// Owns the scratch directory; its destructor runs when libFuzzer exits
/// normally (a crash leaves the directory for inspection).
struct ScratchDir {
  ScratchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "mixer-fuzz-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      fail("cannot create a scratch directory from " + pattern);
    path = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string path;
};

} // namespace

const std::string &scratchDir() {
  static ScratchDir dir;
  return dir.path;
}

std::string scratchPath(const std::string &name) {
  return (std::filesystem::path(scratchDir()) / name).string();
}

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush())
    fail("cannot write " + path);
}

std::string writeInput(const std::string &name, const uint8_t *data,
                       size_t size) {
  std::string path = scratchPath(name);
  writeBytes(path, std::string(reinterpret_cast<const char *>(data), size));
  return path;
}

void fail(const std::string &what) {
  std::fprintf(stderr, "==fuzz== %s\n", what.c_str());
  std::abort();
}

void checkErrorNames(const std::string &path, const std::string &message) {
  if (message.compare(0, path.size(), path) != 0)
    fail("the error does not start with the file " + path + ": " + message);
}

void offerSeed(const std::string &name, const std::string &bytes) {
  if (const char *dir = std::getenv("MIXER_FUZZ_SEED_DIR"))
    writeBytes((std::filesystem::path(dir) / name).string(), bytes);
}

} // namespace mixer::fuzz
