//===- Tensor.cpp - Element types and host tensors ------------------------===//

#include "runtime/io/Tensor.h"
#include "runtime/io/Detail.h"

#include <iterator>

namespace mixer::io {

namespace {

struct DTypeInfo {
  DType dtype;
  const char *name;
  int64_t size;
};

/// Indexed by the DType enumerator.
constexpr DTypeInfo kDTypes[] = {
    {DType::Bool, "BOOL", 1},      {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},          {DType::F8E5M2, "F8_E5M2", 1},
    {DType::F8E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},        {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},      {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},        {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},        {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
};

constexpr bool inEnumOrder() {
  for (size_t i = 0; i < std::size(kDTypes); ++i)
    if (static_cast<size_t>(kDTypes[i].dtype) != i)
      return false;
  return std::size(kDTypes) == static_cast<size_t>(DType::U64) + 1;
}
static_assert(inEnumOrder(), "kDTypes must list every DType in enum order");

const DTypeInfo &info(DType dtype) {
  return kDTypes[static_cast<size_t>(dtype)];
}

} // namespace

int64_t dtypeSize(DType dtype) { return info(dtype).size; }

const char *dtypeName(DType dtype) { return info(dtype).name; }

bool parseDTypeName(const std::string &name, DType &dtype) {
  for (const DTypeInfo &entry : kDTypes) {
    if (name == entry.name) {
      dtype = entry.dtype;
      return true;
    }
  }
  return false;
}

int64_t HostTensor::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

std::string formatShape(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

namespace detail {

bool byteSize(const std::vector<int64_t> &shape, DType dtype, int64_t &bytes) {
  bytes = dtypeSize(dtype);
  for (int64_t dim : shape)
    if (dim < 0 || __builtin_mul_overflow(bytes, dim, &bytes))
      return false;
  return true;
}

Status checkTensorForWrite(const std::string &path, const HostTensor &tensor) {
  int64_t bytes;
  if (!byteSize(tensor.shape, tensor.dtype, bytes))
    return fileError(path, "tensor '", tensor.name, "' has invalid shape ",
                     formatShape(tensor.shape));
  if (static_cast<uint64_t>(bytes) != tensor.data.size())
    return fileError(path, "tensor '", tensor.name, "' has ",
                     tensor.data.size(), " bytes of data but shape ",
                     formatShape(tensor.shape), " with dtype ",
                     dtypeName(tensor.dtype), " needs ", bytes);
  return Status::success();
}

} // namespace detail

} // namespace mixer::io
