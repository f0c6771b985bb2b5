//===- CudaTestUtil.h - Helpers of the GPU kernel tests ---------*- C++ -*-===//
//
// Device arrays, bf16 conversions and status checks; the random inputs and
// tolerance checks of the CPU kernel tests (test/unit/cpu/TestUtil.h).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_CUDA_CUDATESTUTIL_H
#define MIXER_TEST_UNIT_CUDA_CUDATESTUTIL_H

#include "runtime/cuda/Kernels.h"
#include "test/unit/cpu/TestUtil.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace mixer::cuda::test {

using cpu::test::expectBitwiseEqual;
using cpu::test::expectClose;
using cpu::test::gridFloats;
using cpu::test::kRelTol;
using cpu::test::randomFloats;

/// Tolerance of bf16 results against the fp32/double reference computed on
/// the same bf16-rounded inputs: bf16 keeps 8 significant bits, so the one
/// rounding of the output is within 2^-9 relative; 2^-7 leaves room for the
/// fp32 arithmetic before it.
constexpr double kBf16Tol = 1.0 / 128.0;

/// Throws on a CUDA error, naming the call.
inline void check(cudaError_t err, const char *what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " +
                             cudaGetErrorString(err));
}

/// Fails the test with the status message unless it is a success.
#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    ::mixer::Status status_ = (expr);                                          \
    ASSERT_TRUE(status_.ok()) << status_.message();                            \
  } while (0)

/// Waits for the device and checks for asynchronous errors.
inline void synchronize() {
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

/// A device copy of a host vector, read back with `read`.
template <typename T> class DeviceArray {
public:
  explicit DeviceArray(const std::vector<T> &host) : size(host.size()) {
    check(cudaMalloc(&data, std::max<size_t>(1, size) * sizeof(T)),
          "cudaMalloc");
    if (size)
      check(cudaMemcpy(data, host.data(), size * sizeof(T),
                       cudaMemcpyHostToDevice),
            "cudaMemcpy");
  }
  /// n copies of `fill`.
  explicit DeviceArray(size_t n, T fill = T())
      : DeviceArray(std::vector<T>(n, fill)) {}
  ~DeviceArray() { cudaFree(data); }
  DeviceArray(const DeviceArray &) = delete;
  DeviceArray &operator=(const DeviceArray &) = delete;

  T *get() const { return data; }
  std::vector<T> read() const {
    synchronize();
    std::vector<T> host(size);
    if (size)
      check(cudaMemcpy(host.data(), data, size * sizeof(T),
                       cudaMemcpyDeviceToHost),
            "cudaMemcpy");
    return host;
  }

private:
  T *data = nullptr;
  size_t size;
};

/// Rounds to the nearest bf16, ties to even (cpu::roundToBf16's rule).
inline Bf16 toBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return Bf16{
      static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16)};
}

inline float fromBf16(Bf16 value) {
  uint32_t bits = uint32_t(value.bits) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

inline std::vector<Bf16> toBf16(const std::vector<float> &values) {
  std::vector<Bf16> out;
  for (float v : values)
    out.push_back(toBf16(v));
  return out;
}

inline std::vector<float> fromBf16(const std::vector<Bf16> &values) {
  std::vector<float> out;
  for (Bf16 v : values)
    out.push_back(fromBf16(v));
  return out;
}

/// The values after a round trip through bf16 (the inputs a bf16 kernel sees).
inline std::vector<float> roundedToBf16(const std::vector<float> &values) {
  return fromBf16(toBf16(values));
}

} // namespace mixer::cuda::test

#endif // MIXER_TEST_UNIT_CUDA_CUDATESTUTIL_H
