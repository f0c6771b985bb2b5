//===- TensorFileFuzzer.cpp - Fuzzes a tensor file reader -----------------===//
//
// Built once per format: MIXER_FUZZ_EXTENSION (".safetensors", ".npy" or
// ".npz") picks the reader through readTensorFile. A file that reads without
// error must write back in the same format and read back as the same tensors.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/TensorFiles.h"
#include "test/fuzz/FuzzSupport.h"

#include <filesystem>

namespace {

using mixer::fuzz::fail;

const std::string kFileName = std::string("input") + MIXER_FUZZ_EXTENSION;

void checkSameTensors(const std::vector<mixer::io::HostTensor> &read,
                      const std::vector<mixer::io::HostTensor> &reread) {
  if (read.size() != reread.size())
    fail("the written file reads back as " + std::to_string(reread.size()) +
         " tensors, not " + std::to_string(read.size()));
  for (size_t i = 0; i < read.size(); ++i)
    if (read[i].name != reread[i].name || read[i].dtype != reread[i].dtype ||
        read[i].shape != reread[i].shape || read[i].data != reread[i].data)
      fail("tensor " + std::to_string(i) + " '" + read[i].name +
           "' reads back differently from the written file");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string path = mixer::fuzz::writeInput(kFileName, data, size);
  auto tensors = mixer::io::readTensorFile(path);
  if (!tensors) {
    mixer::fuzz::checkErrorNames(path, tensors.message());
    return 0;
  }
  // The same file name in another directory: .npy names the tensor after it.
  static const std::string copyDir = [] {
    std::string dir = mixer::fuzz::scratchPath("copy");
    std::filesystem::create_directory(dir);
    return dir;
  }();
  std::string copy = (std::filesystem::path(copyDir) / kFileName).string();
  if (mixer::Status s = mixer::io::writeTensorFile(copy, *tensors); !s)
    fail("cannot write back what was read: " + s.message());
  auto reread = mixer::io::readTensorFile(copy);
  if (!reread)
    fail("cannot read back what was written: " + reread.message());
  checkSameTensors(*tensors, *reread);
  return 0;
}
