//===- Gemm.h - GEMM plumbing shared by the CPU kernels ---------*- C++ -*-===//
//
// Every matrix product of the kernels goes through here: single-threaded
// oneDNN sgemm calls on a tile grid that depends on the shape alone, with the
// tiles spread over the OpenMP threads. Because no product is ever split
// differently for a different thread count, results are bitwise the same for
// any number of threads.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_GEMM_H
#define MIXER_RUNTIME_CPU_GEMM_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>

namespace mixer::cpu::detail {

/// One row-major product C = alpha * op(A) * op(B) + beta * C with op(A)
/// [m,k] and op(B) [k,n].
struct GemmArgs {
  bool transA = false;
  bool transB = false;
  int64_t m = 0, n = 0, k = 0;
  const float *a = nullptr;
  int64_t lda = 0;
  const float *b = nullptr;
  int64_t ldb = 0;
  float *c = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
};

/// Runs one product on the calling thread (oneDNN is held to one thread).
void gemm(const GemmArgs &args);

/// Called on each output tile right after its product: (batch index, first
/// row, rows, first column, columns).
using TileEpilogue =
    std::function<void(int64_t, int64_t, int64_t, int64_t, int64_t)>;

/// `batch` products; product i uses A + i*strideA, B + i*strideB and
/// C + i*strideC (a zero stride shares the operand). The products are cut into
/// tiles and the tiles run in parallel (serially inside a parallel region).
void parallelGemm(const GemmArgs &args, int64_t batch = 1, int64_t strideA = 0,
                  int64_t strideB = 0, int64_t strideC = 0,
                  const TileEpilogue &epilogue = nullptr);

/// y[r, c] = act(y[r, c] + bias[c]) over a [rows, cols] block with leading
/// dimension ldy; `bias` may be null.
void biasActivation(float *y, int64_t rows, int64_t cols, int64_t ldy,
                    const float *bias, Activation act);

/// One bf16 product C[m,n] = act(A[m,k] * W[k,n] + bias[n]) with fp32
/// accumulation: a oneDNN matmul primitive for fixed sizes, A bf16 with
/// leading dimension k, W bf16 in the layout the primitive prefers (packed
/// once by pack()), bias fp32, C fp32 or bf16 with leading dimension n. run()
/// executes on the calling thread. Errors throw KernelError.
class Bf16Product {
public:
  /// `layout`, when given, is a product with the same k and n whose packed
  /// weights this one reads.
  Bf16Product(int64_t m, int64_t k, int64_t n, bool cBf16, bool bias,
              Activation act, const Bf16Product *layout = nullptr);
  ~Bf16Product();
  Bf16Product(Bf16Product &&) noexcept;
  int64_t packedBytes() const;
  /// Converts W (fp32 [k,n], or [n,k] when `transposed`) into `packed`.
  void pack(const float *w, bool transposed, void *packed) const;
  void run(const uint16_t *a, const void *packed, const float *bias,
           void *c) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// The shape of a bf16 product of two activations, C[m,n] = alpha *
/// A[m,k] * op(B)[k,n] with fp32 accumulation: A bf16 with leading dimension
/// lda, B bf16 [k,n] with leading dimension ldb ([n,k] when `transB`), C
/// fp32 or bf16 with leading dimension ldc.
struct Bf16MatmulShape {
  int64_t m = 0, k = 0, n = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  bool transB = false;
  bool cBf16 = false;
  float alpha = 1.0f;
};

/// One bf16 product of activations (neither operand packed): a oneDNN
/// matmul primitive for fixed sizes and strides. run() executes on the
/// calling thread. Errors throw KernelError.
class Bf16Matmul {
public:
  explicit Bf16Matmul(const Bf16MatmulShape &shape);
  ~Bf16Matmul();
  Bf16Matmul(Bf16Matmul &&) noexcept;
  void run(const uint16_t *a, const uint16_t *b, void *c) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// Keeps the first exception thrown by a body run inside an OpenMP region
/// (exceptions must not leave the region) and rethrows it after the region.
class ExceptionCollector {
public:
  template <typename Body> void run(Body &&body) noexcept {
    try {
      body();
    } catch (...) {
#pragma omp critical(mixerCpuExceptionCollector)
      if (!first)
        first = std::current_exception();
    }
  }
  void rethrow() const {
    if (first)
      std::rethrow_exception(first);
  }

private:
  std::exception_ptr first;
};

} // namespace mixer::cpu::detail

#endif // MIXER_RUNTIME_CPU_GEMM_H
