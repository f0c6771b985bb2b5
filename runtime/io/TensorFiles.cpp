//===- TensorFiles.cpp - Tensor files chosen by extension -----------------===//

#include "runtime/io/TensorFiles.h"
#include "runtime/io/Detail.h"

#include <filesystem>

namespace mixer::io {

namespace {

std::string extensionOf(const std::string &path) {
  return std::filesystem::path(path).extension().string();
}

Status unknownExtension(const std::string &path) {
  return detail::fileError(path, "unknown tensor file extension '",
                           extensionOf(path),
                           "' (expected .safetensors, .npz or .npy)");
}

} // namespace

Expected<std::vector<HostTensor>> readTensorFile(const std::string &path,
                                                 const TensorFilter &filter) {
  std::string extension = extensionOf(path);
  if (extension == ".safetensors")
    return readSafetensors(path, filter);
  if (extension == ".npz")
    return readNpz(path, filter);
  if (extension != ".npy")
    return unknownExtension(path);
  return detail::readNpyFiltered(path, filter);
}

Status writeTensorFile(const std::string &path,
                       const std::vector<HostTensor> &tensors) {
  std::string extension = extensionOf(path);
  if (extension == ".safetensors")
    return writeSafetensors(path, tensors);
  if (extension == ".npz")
    return writeNpz(path, tensors);
  if (extension != ".npy")
    return unknownExtension(path);
  if (tensors.size() != 1)
    return detail::fileError(path, "a .npy file holds exactly one tensor, not ",
                             tensors.size());
  return writeNpy(path, tensors.front());
}

} // namespace mixer::io
