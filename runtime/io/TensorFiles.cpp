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

Expected<std::vector<HostTensor>> readTensorFile(const std::string &path) {
  std::string extension = extensionOf(path);
  if (extension == ".safetensors")
    return readSafetensors(path);
  if (extension == ".npz")
    return readNpz(path);
  if (extension != ".npy")
    return unknownExtension(path);
  auto tensor = readNpy(path);
  if (!tensor)
    return tensor.takeStatus();
  return std::vector<HostTensor>{std::move(*tensor)};
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
