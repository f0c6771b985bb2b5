//===- Tensor.h - Host tensors read from and written to files ---*- C++ -*-===//
#ifndef MIXER_RUNTIME_IO_TENSOR_H
#define MIXER_RUNTIME_IO_TENSOR_H

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::io {

/// Element types of tensor files (the safetensors set).
enum class DType {
  Bool,
  U8,
  I8,
  F8E5M2,
  F8E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64
};

/// Size of one element in bytes.
int64_t dtypeSize(DType dtype);
/// The safetensors spelling ("F32", "I32", ...).
const char *dtypeName(DType dtype);
/// Parses a safetensors dtype name; false if unknown.
bool parseDTypeName(const std::string &name, DType &dtype);

/// A named, row-major, little-endian tensor held in host memory.
struct HostTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data; ///< numel * dtypeSize bytes

  int64_t numel() const;
  template <typename T> T *as() { return reinterpret_cast<T *>(data.data()); }
  template <typename T> const T *as() const {
    return reinterpret_cast<const T *>(data.data());
  }
};

/// "[8, 512]"-style rendering of a shape for messages.
std::string formatShape(const std::vector<int64_t> &shape);

} // namespace mixer::io

#endif // MIXER_RUNTIME_IO_TENSOR_H
