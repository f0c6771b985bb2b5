//===- Common.cuh - Shared pieces of the CUDA kernels -----------*- CUDA
//-*-===//
//
// Storage conversions (fp32 / bf16), deterministic block reductions, the
// fixed-order column sums of the parameter gradients, order-preserving float
// keys and the launch helpers every kernel family uses.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_COMMON_CUH
#define MIXER_RUNTIME_CUDA_COMMON_CUH

#include "runtime/cuda/Kernels.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

namespace mixer::cuda::detail {

/// Threads of the row kernels (one block per row) and of the elementwise
/// kernels. Every kernel declares its block size in __launch_bounds__ so that
/// ptxas keeps it within the register budget (runtime/cuda/register-budgets).
constexpr int kBlockThreads = 256;
/// Warps of a kBlockThreads block.
constexpr int kBlockWarps = kBlockThreads / 32;

//===----------------------------------------------------------------------===//
// Storage types
//===----------------------------------------------------------------------===//

/// The device type behind a host storage type (Bf16 -> __nv_bfloat16).
template <typename T> struct DeviceStorage { using type = T; };
template <> struct DeviceStorage<Bf16> { using type = __nv_bfloat16; };
static_assert(sizeof(Bf16) == sizeof(__nv_bfloat16) &&
                  alignof(Bf16) == alignof(__nv_bfloat16),
              "Bf16 must be layout-compatible with __nv_bfloat16");

/// Reinterprets a host storage pointer as its device type.
template <typename T> auto device(T *p) {
  using Plain = std::remove_const_t<T>;
  using D = typename DeviceStorage<Plain>::type;
  if constexpr (std::is_const_v<T>)
    return reinterpret_cast<const D *>(p);
  else
    return reinterpret_cast<D *>(p);
}

__device__ __forceinline__ float load(const float *p, int64_t i) {
  return p[i];
}
__device__ __forceinline__ float load(const __nv_bfloat16 *p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void store(float *p, int64_t i, float v) {
  p[i] = v;
}
/// Rounds to the nearest bf16, ties to even (as cpu::roundToBf16).
__device__ __forceinline__ void store(__nv_bfloat16 *p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

//===----------------------------------------------------------------------===//
// Ids read from device buffers
//===----------------------------------------------------------------------===//

/// Whether `id`, element `position` of the operand `check` names, lies in
/// [0, limit). If not, the first such id of the run (the first step's, by
/// atomicCAS on IdFault::step) is recorded for the executor; the caller must
/// not use it.
__device__ __forceinline__ bool
idInRange(const IdCheck &check, int64_t position, int64_t id, int64_t limit) {
  if (id >= 0 && id < limit)
    return true;
  if (check.fault && atomicCAS(&check.fault->step, 0, check.step) == 0) {
    check.fault->position = position;
    check.fault->limit = limit;
    check.fault->operand = check.operand;
    check.fault->id = static_cast<int32_t>(id);
  }
  return false;
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

template <typename T> __device__ __forceinline__ T warpSum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/// Sum over a kBlockThreads block, the same value in every thread. The order
/// is fixed (butterfly within warps, then warps in index order), so the
/// result does not depend on scheduling. `scratch` holds kBlockWarps values
/// and may be reused after the call.
template <typename T> __device__ __forceinline__ T blockSum(T v, T *scratch) {
  v = warpSum(v);
  int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0)
    scratch[warp] = v;
  __syncthreads();
  T total = scratch[0];
  for (int w = 1; w < kBlockWarps; ++w)
    total += scratch[w];
  __syncthreads();
  return total;
}

/// Maximum over a kBlockThreads block, as blockSum.
__device__ __forceinline__ float blockMax(float v, float *scratch) {
  v = warpMax(v);
  int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0)
    scratch[warp] = v;
  __syncthreads();
  float total = scratch[0];
  for (int w = 1; w < kBlockWarps; ++w)
    total = fmaxf(total, scratch[w]);
  __syncthreads();
  return total;
}

//===----------------------------------------------------------------------===//
// Order-preserving keys
//===----------------------------------------------------------------------===//

/// Maps a float to an unsigned integer with the same order (-0 as +0), as
/// the CPU routing does.
__device__ __forceinline__ uint32_t orderedBits(float value) {
  uint32_t bits = __float_as_uint(value == 0.0f ? 0.0f : value);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

/// The inverse of orderedBits.
__device__ __forceinline__ float fromOrderedBits(uint32_t bits) {
  return __uint_as_float(bits & 0x80000000u ? bits & 0x7fffffffu : ~bits);
}

/// A 64-bit key ordering first by value, then by lower index: larger keys are
/// larger values, and among equal values lower indices.
__device__ __forceinline__ uint64_t rankKey(float value, uint32_t index) {
  return uint64_t(orderedBits(value)) << 32 | (0xffffffffu - index);
}
__device__ __forceinline__ uint32_t rankKeyIndex(uint64_t key) {
  return 0xffffffffu - static_cast<uint32_t>(key);
}

//===----------------------------------------------------------------------===//
// Column sums of parameter gradients
//===----------------------------------------------------------------------===//

/// Rows per block of the column partial sums, and threads per column.
constexpr int kColumnRows = 256;
constexpr int kColumnLanes = 8;

/// partial[rowBlock, s, c] = sum over the block's rows of term(r, c).{x,y}
/// (s = 0, 1). Block (32 columns) x (kColumnLanes rows); each thread adds its
/// rows in order, then the lanes are added in order: a fixed summation order.
template <typename Term>
__global__ void __launch_bounds__(32 * kColumnLanes)
    columnPartialsKernel(Term term, float *partial, int64_t rows,
                         int64_t cols) {
  __shared__ float2 lanes[kColumnLanes][32];
  int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  int64_t begin = int64_t(blockIdx.y) * kColumnRows;
  int64_t end = min(rows, begin + kColumnRows);
  float2 sum = make_float2(0.0f, 0.0f);
  if (c < cols)
    for (int64_t r = begin + threadIdx.y; r < end; r += kColumnLanes) {
      float2 t = term(r, c);
      sum.x += t.x;
      sum.y += t.y;
    }
  lanes[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols)
    return;
  for (int l = 1; l < kColumnLanes; ++l) {
    sum.x += lanes[l][threadIdx.x].x;
    sum.y += lanes[l][threadIdx.x].y;
  }
  float *out = partial + int64_t(blockIdx.y) * 2 * cols;
  out[c] = sum.x;
  out[cols + c] = sum.y;
}

/// Adds the row blocks' partial sums in block order into out0 / out1 (either
/// may be null), overwriting or accumulating.
__global__ void __launch_bounds__(kBlockThreads)
    columnFinishKernel(const float *partial, int64_t rowBlocks, int64_t cols,
                       float *out0, float *out1, bool accumulate);

/// Temporary device memory from the stream-ordered pool, freed on the same
/// stream when it goes out of scope.
class StreamBuffer {
public:
  StreamBuffer(size_t bytes, cudaStream_t stream);
  ~StreamBuffer();
  StreamBuffer(const StreamBuffer &) = delete;
  StreamBuffer &operator=(const StreamBuffer &) = delete;
  /// The allocation error, empty on success.
  const std::string &error() const { return failure; }
  template <typename T> T *as() const { return static_cast<T *>(data); }

private:
  void *data = nullptr;
  cudaStream_t stream;
  std::string failure;
};

/// Column sums of term(r, c) over [rows, cols] into out0 (.x) and out1 (.y),
/// deterministic (row blocks of kColumnRows, then in block order). Either
/// output may be null.
template <typename Term>
Status columnSums(const char *kernel, Term term, int64_t rows, int64_t cols,
                  float *out0, float *out1, bool accumulate,
                  cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Launch helpers
//===----------------------------------------------------------------------===//

/// The status after a launch: cudaGetLastError, named by kernel.
Status launchStatus(const char *kernel);

/// Fails unless `value` >= 0, naming kernel and argument.
Status requireNonNegative(const char *kernel, const char *what, int64_t value);

/// Blocks of kBlockThreads covering n threads, capped for grid-stride loops.
inline unsigned gridFor(int64_t n) {
  int64_t blocks = (n + kBlockThreads - 1) / kBlockThreads;
  return static_cast<unsigned>(
      blocks < 1 ? 1 : (blocks > 65535 * 32 ? 65535 * 32 : blocks));
}

/// Makes `bytes` of dynamic shared memory available to `kernel`, or fails
/// naming the kernel and what needed them.
Status allowSharedMemory(const void *kernel, size_t bytes, const char *name,
                         const std::string &what);

template <typename Term>
Status columnSums(const char *kernel, Term term, int64_t rows, int64_t cols,
                  float *out0, float *out1, bool accumulate,
                  cudaStream_t stream) {
  if ((!out0 && !out1) || cols == 0)
    return Status::success();
  int64_t rowBlocks = (rows + kColumnRows - 1) / kColumnRows;
  if (rowBlocks > 65535)
    return Status::error(std::string(kernel) + ": " + std::to_string(rows) +
                         " rows exceed the column-sum limit of " +
                         std::to_string(65535 * kColumnRows));
  if (rowBlocks == 0) {
    if (accumulate)
      return Status::success();
    for (float *out : {out0, out1})
      if (out &&
          cudaMemsetAsync(out, 0, cols * sizeof(float), stream) != cudaSuccess)
        return launchStatus(kernel);
    return Status::success();
  }
  StreamBuffer partial(rowBlocks * 2 * cols * sizeof(float), stream);
  if (!partial.error().empty())
    return Status::error(std::string(kernel) + ": " + partial.error());
  dim3 grid(static_cast<unsigned>((cols + 31) / 32),
            static_cast<unsigned>(rowBlocks));
  columnPartialsKernel<<<grid, dim3(32, kColumnLanes), 0, stream>>>(
      term, partial.as<float>(), rows, cols);
  columnFinishKernel<<<gridFor(cols), kBlockThreads, 0, stream>>>(
      partial.as<float>(), rowBlocks, cols, out0, out1, accumulate);
  return launchStatus(kernel);
}

} // namespace mixer::cuda::detail

#endif // MIXER_RUNTIME_CUDA_COMMON_CUH
