//===- MixingBackward.cpp - Backward of the mixing sublayers --------------===//
//
// Linear and structured mixing share one two-sided backward of five GEMMs:
// two tall products over all batch*seq rows, one [seq,seq] product per
// example, and two batch reductions. The reduction over the batch of the
// sequence-side gradient runs inside each output tile in example order, so
// it never depends on the thread count. Spectral mixing is self-adjoint and
// reuses the forward object.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"

#include <algorithm>
#include <vector>

namespace mixer::cpu {
namespace {

/// Backward of Y[b] = L X[b] op(R) for L [seq,seq] and R [d,d] (op(R) = R^T
/// if `transposeRight`): writes dX, writes or adds (`accumulate`) dL and dR
/// (the gradient of R itself, not of op(R)). `scratch` holds batch*seq*d.
void twoSidedMixBackward(const float *x, const float *left, const float *right,
                         bool transposeRight, const float *dy, float *dx,
                         float *dLeft, float *dRight, float *scratch,
                         int64_t batch, int64_t seq, int64_t d,
                         bool accumulate) {
  float beta = accumulate ? 1.0f : 0.0f;

  // P = X op(R), then dL = sum_b dY[b] P[b]^T.
  detail::GemmArgs hidden;
  hidden.transB = transposeRight;
  hidden.m = batch * seq;
  hidden.n = d;
  hidden.k = d;
  hidden.a = x;
  hidden.lda = d;
  hidden.b = right;
  hidden.ldb = d;
  hidden.c = scratch;
  hidden.ldc = d;
  detail::parallelGemm(hidden);

  detail::GemmArgs seqGrad;
  seqGrad.transB = true;
  seqGrad.m = seq;
  seqGrad.n = seq;
  seqGrad.k = d;
  seqGrad.a = dy;
  seqGrad.lda = d;
  seqGrad.b = scratch;
  seqGrad.ldb = d;
  seqGrad.c = dLeft;
  seqGrad.ldc = seq;
  seqGrad.beta = beta;
  // Each tile takes the remaining examples in order while it is in cache.
  detail::parallelGemm(
      seqGrad, 1, 0, 0, 0,
      [&](int64_t, int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
        for (int64_t b = 1; b < batch; ++b) {
          detail::GemmArgs rest = seqGrad;
          rest.m = rows;
          rest.n = cols;
          rest.a = dy + b * seq * d + row0 * d;
          rest.b = scratch + b * seq * d + col0 * d;
          rest.c = dLeft + row0 * seq + col0;
          rest.beta = 1.0f;
          detail::gemm(rest);
        }
      });

  // G[b] = L^T dY[b], then dX = G op(R)^T.
  detail::GemmArgs tokens;
  tokens.transA = true;
  tokens.m = seq;
  tokens.n = d;
  tokens.k = seq;
  tokens.a = left;
  tokens.lda = seq;
  tokens.b = dy;
  tokens.ldb = d;
  tokens.c = scratch;
  tokens.ldc = d;
  detail::parallelGemm(tokens, batch, 0, seq * d, seq * d);

  detail::GemmArgs input;
  input.transB = !transposeRight;
  input.m = batch * seq;
  input.n = d;
  input.k = d;
  input.a = scratch;
  input.lda = d;
  input.b = right;
  input.ldb = d;
  input.c = dx;
  input.ldc = d;
  detail::parallelGemm(input);

  // d op(R) = sum_b X[b]^T G[b]: one product over all rows; dR = X^T G, or
  // its transpose G^T X when op(R) = R^T.
  detail::GemmArgs hiddenGrad;
  hiddenGrad.transA = true;
  hiddenGrad.m = d;
  hiddenGrad.n = d;
  hiddenGrad.k = batch * seq;
  hiddenGrad.a = transposeRight ? scratch : x;
  hiddenGrad.lda = d;
  hiddenGrad.b = transposeRight ? x : scratch;
  hiddenGrad.ldb = d;
  hiddenGrad.c = dRight;
  hiddenGrad.ldc = d;
  hiddenGrad.beta = beta;
  detail::parallelGemm(hiddenGrad);
}

/// Folds the gradient of a circulant or Toeplitz matrix [n,n] onto its kernel
/// vector: every matrix entry adds to the kernel entry it was built from.
/// Each kernel entry sums its diagonal in row order, in double.
void foldOntoKernel(const float *grad, float *kernel, int64_t n, bool toeplitz,
                    bool accumulate) {
  int64_t length = toeplitz ? 2 * n - 1 : n;
  for (int64_t j = 0; j < length; ++j) {
    double sum = accumulate ? kernel[j] : 0.0;
    if (toeplitz) {
      // Entries with c - r = j - (n - 1).
      int64_t shift = j - (n - 1);
      for (int64_t r = std::max<int64_t>(0, -shift); r < n && r + shift < n;
           ++r)
        sum += grad[r * n + r + shift];
    } else {
      // Entries with (r - c) mod n = j.
      for (int64_t r = 0; r < n; ++r)
        sum += grad[r * n + (r - j + n) % n];
    }
    kernel[j] = static_cast<float>(sum);
  }
}

} // namespace

void linearMixBackward(const float *x, const float *ws, const float *wh,
                       const float *dy, float *dx, float *dws, float *dwh,
                       float *scratch, int64_t batch, int64_t seq, int64_t d,
                       bool accumulate) {
  twoSidedMixBackward(x, ws, wh, /*transposeRight=*/false, dy, dx, dws, dwh,
                      scratch, batch, seq, d, accumulate);
}

void spectralMixBackward(SpectralMix &mix, const float *dy, float *dx) {
  mix.run(dy, dx);
}

struct StructuredMixBackward::Impl {
  int64_t batch, seq, d;
  bool toeplitz;
  std::vector<float> left, right, dLeft, dRight, scratch;
};

StructuredMixBackward::StructuredMixBackward(int64_t batch, int64_t seq,
                                             int64_t d, bool toeplitz)
    : impl(std::make_unique<Impl>(Impl{
          batch, seq, d, toeplitz, std::vector<float>(seq * seq),
          std::vector<float>(d * d), std::vector<float>(seq * seq),
          std::vector<float>(d * d), std::vector<float>(batch * seq * d)})) {}

StructuredMixBackward::~StructuredMixBackward() = default;

void StructuredMixBackward::run(const float *x, const float *vs,
                                const float *vh, const float *dy, float *dx,
                                float *dvs, float *dvh, bool accumulate) {
  Impl &s = *impl;
  if (s.toeplitz) {
    toeplitzMatrix(vs, s.left.data(), s.seq);
    toeplitzMatrix(vh, s.right.data(), s.d);
  } else {
    circulantMatrix(vs, s.left.data(), s.seq);
    circulantMatrix(vh, s.right.data(), s.d);
  }
  twoSidedMixBackward(x, s.left.data(), s.right.data(),
                      /*transposeRight=*/true, dy, dx, s.dLeft.data(),
                      s.dRight.data(), s.scratch.data(), s.batch, s.seq, s.d,
                      /*accumulate=*/false);
  foldOntoKernel(s.dLeft.data(), dvs, s.seq, s.toeplitz, accumulate);
  foldOntoKernel(s.dRight.data(), dvh, s.d, s.toeplitz, accumulate);
}

} // namespace mixer::cpu
