//===- IOTestUtil.h - Shared helpers of the MixerIO tests -------*- C++ -*-===//

#ifndef MIXER_TEST_UNIT_IO_IOTESTUTIL_H
#define MIXER_TEST_UNIT_IO_IOTESTUTIL_H

#include "runtime/io/Tensor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace mixer::io::test {

/// A fresh directory, removed with its content at the end of the test.
class TempDirTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "mixer-io-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string file(const std::string &name) const {
    return (std::filesystem::path(dir) / name).string();
  }
  /// Names of every entry in the directory, sorted.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto &entry : std::filesystem::directory_iterator(dir))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string dir;
};

inline void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Little-endian bytes of an unsigned value, as the formats store integers.
template <typename T> std::string le(T value) {
  std::string bytes;
  for (size_t i = 0; i < sizeof(T); ++i)
    bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  return bytes;
}

/// A tensor whose data is the raw bytes of `values`.
template <typename T>
HostTensor makeTensor(const std::string &name, DType dtype,
                      std::vector<int64_t> shape,
                      const std::vector<T> &values) {
  HostTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.data.resize(values.size() * sizeof(T));
  std::memcpy(tensor.data.data(), values.data(), tensor.data.size());
  return tensor;
}

/// A tensor of `shape` filled with the bytes (seed + 7 i) mod 256.
inline HostTensor patternTensor(const std::string &name, DType dtype,
                                std::vector<int64_t> shape, int seed) {
  HostTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.data.resize(tensor.numel() * dtypeSize(dtype));
  for (size_t i = 0; i < tensor.data.size(); ++i)
    tensor.data[i] = static_cast<uint8_t>(seed + 7 * i);
  return tensor;
}

inline void expectSameTensor(const HostTensor &actual,
                             const HostTensor &expected) {
  EXPECT_EQ(actual.name, expected.name);
  EXPECT_EQ(actual.dtype, expected.dtype) << expected.name;
  EXPECT_EQ(actual.shape, expected.shape) << expected.name;
  EXPECT_EQ(actual.data, expected.data) << expected.name;
}

/// The Python interpreter with numpy the interoperability tests use.
inline constexpr const char *kPython = "/usr/bin/python3";

inline bool pythonWithNumpyAvailable() {
  std::string command =
      std::string(kPython) + " -c 'import numpy' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

/// Runs a Python script (written to `dir`) with `dir` as its argument; true
/// if it exits with status 0.
inline bool runPython(const std::string &dir, const std::string &script) {
  std::string path = dir + "/script.py";
  writeBytes(path, script);
  std::string command = std::string(kPython) + " " + path + " " + dir;
  return std::system(command.c_str()) == 0;
}

} // namespace mixer::io::test

#endif // MIXER_TEST_UNIT_IO_IOTESTUTIL_H
