//===- Gemm.h - Matrix products of the CUDA runtime -------------*- C++ -*-===//
//
// Row-major matrix products through cuBLASLt, with the epilogues a dense layer
// and its gradient need (bias, GELU, the GELU input kept for the backward, the
// GELU derivative and the bias gradients) and strided batches (the sequence
// mixing W_s * X[b] of every example, the products of every expert).
//
// Layouts: every matrix is row-major with a leading dimension (the distance
// between rows, in elements), as in the CPU kernels (runtime/cpu/Gemm.h). A
// row-major [r, c] matrix is the column-major [c, r] matrix with the same
// leading dimension, so the row-major C = op(A) op(B) is computed as the
// column-major C^T = op(B)^T op(A)^T: cuBLASLt's A is our B, its B our A, its
// m our n. Vectors that cuBLASLt indexes by the rows of its D are therefore
// indexed by the columns of our C (bias[n], the bias gradients).
//
// Precision: fp32 products run in fp32 (CUBLAS_COMPUTE_32F, no TF32 unless
// asked for); bf16 products read bf16 on the tensor cores, accumulate in fp32
// and write bf16, or fp32 (weight gradients, the router's logits). Biases and
// bias gradients are fp32 in every case.
//
// Determinism: a context chooses one algorithm per problem (shape, layouts,
// epilogue and the alignment of every pointer) and keeps it, with a fixed
// workspace, so a product repeats bit for bit on the same device.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_GEMM_H
#define MIXER_RUNTIME_CUDA_GEMM_H

#include "runtime/cuda/Kernels.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mixer::cuda {

/// What happens to R = alpha * op(A) op(B) + beta * C before the store to C.
enum class GemmEpilogue : int32_t {
  /// C = R.
  None,
  /// C = R + bias[n] (bias required).
  Bias,
  /// C = GELU(R + bias[n]), GELU the tanh approximation (bias may be null).
  Gelu,
  /// As Gelu, and aux = R + bias[n], the GELU input (the forward of a dense
  /// layer in training).
  GeluAux,
  /// C = R * GELU'(aux) with aux the GELU input GeluAux stored, and
  /// biasGrad[n] = sum over the rows of C if biasGrad is not null (the
  /// gradient of the first layer of an MLP from the second's weights).
  DGelu,
  /// C = R and biasGrad[n] = sum over k of op(B)[k, n] (the weight gradient
  /// X^T dY with the bias gradient, the column sums of dY). Needs B
  /// untransposed.
  BiasGradB,
};

/// One row-major product C = epilogue(alpha * op(A) op(B) + beta * C), op(A)
/// [m, k] and op(B) [k, n], repeated over `batch` matrices: product i reads
/// A + i*strideA, B + i*strideB, C + i*strideC (a stride of 0 shares the
/// operand, e.g. W_s for every example), and the bias, the bias gradient and
/// aux at i*strideBias and i*strideAux. T, the type of A and B, is float or
/// Bf16; Out, the type of C and aux, is T or, for Bf16 operands, float.
template <typename T, typename Out = T> struct GemmProblem {
  bool transA = false;
  bool transB = false;
  int64_t m = 0, n = 0, k = 0;
  const T *a = nullptr;
  int64_t lda = 0;
  const T *b = nullptr;
  int64_t ldb = 0;
  Out *c = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  int64_t batch = 1;
  int64_t strideA = 0, strideB = 0, strideC = 0;
  GemmEpilogue epilogue = GemmEpilogue::None;
  /// [n] fp32: added by Bias, Gelu and GeluAux.
  const float *bias = nullptr;
  /// [n] fp32: overwritten by DGelu and BiasGradB (not scaled by beta).
  float *biasGrad = nullptr;
  int64_t strideBias = 0;
  /// [m, n] with leading dimension ldAux (a multiple of 8, at least n):
  /// written by GeluAux, read by DGelu.
  Out *aux = nullptr;
  int64_t ldAux = 0;
  int64_t strideAux = 0;
  /// fp32 only: let the product round its inputs to TF32 on tensor cores
  /// (faster, about 10 significant bits per input).
  bool allowTf32 = false;
};

/// A product of packed row-major matrices: C [m, n] = op(A) op(B) + beta C.
template <typename T, typename Out>
GemmProblem<T, Out> packed(bool transA, bool transB, int64_t m, int64_t n,
                           int64_t k, const T *a, const T *b, Out *c,
                           float beta = 0.0f) {
  GemmProblem<T, Out> p;
  p.transA = transA, p.transB = transB;
  p.m = m, p.n = n, p.k = k;
  p.a = a, p.lda = transA ? m : k;
  p.b = b, p.ldb = transB ? k : n;
  p.c = c, p.ldc = n;
  p.beta = beta;
  return p;
}

/// The same product for every example: C[e] = op(A) op(B[e]) with A shared
/// and B[e], C[e] packed one after the other.
template <typename Problem> Problem sharedLeft(Problem p, int64_t batch) {
  p.batch = batch;
  p.strideB = p.k * p.n;
  p.strideC = p.m * p.n;
  return p;
}

/// The cuBLASLt handle, workspace and chosen algorithms of one stream. The
/// handle and the workspace are created by the first product, so creating a
/// context touches no device. Not thread-safe: one context per stream, used
/// by one host thread at a time.
class GemmContext {
public:
  /// cuBLASLt's recommended workspace on Hopper.
  static constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;

  explicit GemmContext(cudaStream_t stream,
                       size_t workspaceBytes = kDefaultWorkspaceBytes);
  ~GemmContext();
  GemmContext(const GemmContext &) = delete;
  GemmContext &operator=(const GemmContext &) = delete;

  /// Creates the handle and the workspace now rather than at the first
  /// product (which may be inside a graph capture).
  Status prepare();

  /// Enqueues the product on the context's stream. Bad arguments are
  /// reported before anything is enqueued; a problem cuBLASLt has no
  /// algorithm for is an error naming the epilogue and shape.
  Status gemm(const GemmProblem<float> &problem);
  Status gemm(const GemmProblem<Bf16> &problem);
  Status gemm(const GemmProblem<Bf16, float> &problem);

  cudaStream_t stream() const;

  struct State;

private:
  std::unique_ptr<State> state;
};

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_GEMM_H
