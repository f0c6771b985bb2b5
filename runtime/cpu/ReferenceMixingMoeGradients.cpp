//===- ReferenceMixingMoeGradients.cpp - Plain backward twins -------------===//

#include "runtime/cpu/ReferenceMixingMoeGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu::reference {
namespace {

using Matrix = std::vector<double>;

Matrix toMatrix(const float *p, int64_t n) { return Matrix(p, p + n); }

/// out[r, c] = sum_j a[r, j] * b[j, c].
Matrix matmul(const Matrix &a, const Matrix &b, int64_t rows, int64_t inner,
              int64_t cols) {
  Matrix out(rows * cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < inner; ++j)
      for (int64_t c = 0; c < cols; ++c)
        out[r * cols + c] += a[r * inner + j] * b[j * cols + c];
  return out;
}

Matrix transpose(const Matrix &a, int64_t rows, int64_t cols) {
  Matrix out(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[c * rows + r] = a[r * cols + c];
  return out;
}

/// out (+)= values, rounded to float.
void store(const Matrix &values, float *out, bool accumulate) {
  for (size_t i = 0; i < values.size(); ++i)
    out[i] = static_cast<float>(values[i] + (accumulate ? out[i] : 0.0));
}

/// Gradients of Y[b] = L X[b] R for explicit L [seq,seq], R [d,d]: dX
/// (written), dL and dR summed over the batch.
void twoSidedBackward(const float *x, const Matrix &left, const Matrix &right,
                      const float *dy, float *dx, Matrix &dLeft, Matrix &dRight,
                      int64_t batch, int64_t seq, int64_t d) {
  dLeft.assign(seq * seq, 0.0);
  dRight.assign(d * d, 0.0);
  Matrix leftT = transpose(left, seq, seq), rightT = transpose(right, d, d);
  for (int64_t b = 0; b < batch; ++b) {
    Matrix xb = toMatrix(x + b * seq * d, seq * d);
    Matrix g = toMatrix(dy + b * seq * d, seq * d);
    store(matmul(matmul(leftT, g, seq, seq, d), rightT, seq, d, d),
          dx + b * seq * d, false);
    // dL = dY (X R)^T, dR = (L X)^T dY.
    Matrix dl =
        matmul(g, transpose(matmul(xb, right, seq, d, d), seq, d), seq, d, seq);
    Matrix dr =
        matmul(transpose(matmul(left, xb, seq, seq, d), seq, d), g, d, seq, d);
    for (int64_t i = 0; i < seq * seq; ++i)
      dLeft[i] += dl[i];
    for (int64_t i = 0; i < d * d; ++i)
      dRight[i] += dr[i];
  }
}

/// Scatters the gradient of a circulant/Toeplitz matrix [n,n] onto the kernel
/// entry each matrix entry was read from.
Matrix kernelGradient(const Matrix &grad, int64_t n, bool toeplitz) {
  Matrix out(toeplitz ? 2 * n - 1 : n, 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      out[toeplitz ? (n - 1) + c - r : ((r - c) % n + n) % n] +=
          grad[r * n + c];
  return out;
}

} // namespace

void linearMixBackward(const float *x, const float *ws, const float *wh,
                       const float *dy, float *dx, float *dws, float *dwh,
                       int64_t batch, int64_t seq, int64_t d, bool accumulate) {
  Matrix dLeft, dRight;
  twoSidedBackward(x, toMatrix(ws, seq * seq), toMatrix(wh, d * d), dy, dx,
                   dLeft, dRight, batch, seq, d);
  store(dLeft, dws, accumulate);
  store(dRight, dwh, accumulate);
}

void spectralMixBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                         int64_t d, bool hartley) {
  // Forward: Y[n,k] = sum_{i,j} X[i,j] g(2 pi (n i / seq + k j / d)).
  auto kernel = [&](int64_t n, int64_t k, int64_t i, int64_t j) {
    double angle = 2.0 * M_PI *
                   (static_cast<double>(n * i % seq) / seq +
                    static_cast<double>(k * j % d) / d);
    return hartley ? std::cos(angle) + std::sin(angle) : std::cos(angle);
  };
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < seq; ++i)
      for (int64_t j = 0; j < d; ++j) {
        double sum = 0.0;
        for (int64_t n = 0; n < seq; ++n)
          for (int64_t k = 0; k < d; ++k)
            sum += dy[(b * seq + n) * d + k] * kernel(n, k, i, j);
        dx[(b * seq + i) * d + j] = static_cast<float>(sum);
      }
}

void structuredMixBackward(const float *x, const float *vs, const float *vh,
                           const float *dy, float *dx, float *dvs, float *dvh,
                           int64_t batch, int64_t seq, int64_t d, bool toeplitz,
                           bool accumulate) {
  std::vector<float> a(seq * seq), bMatrix(d * d);
  if (toeplitz) {
    toeplitzMatrix(vs, a.data(), seq);
    toeplitzMatrix(vh, bMatrix.data(), d);
  } else {
    circulantMatrix(vs, a.data(), seq);
    circulantMatrix(vh, bMatrix.data(), d);
  }
  // Y = A X B^T: the two-sided gradient with R = B^T, and dB = dR^T.
  Matrix dA, dRight;
  twoSidedBackward(x, toMatrix(a.data(), seq * seq),
                   transpose(toMatrix(bMatrix.data(), d * d), d, d), dy, dx, dA,
                   dRight, batch, seq, d);
  store(kernelGradient(dA, seq, toeplitz), dvs, accumulate);
  store(kernelGradient(transpose(dRight, d, d), d, toeplitz), dvh, accumulate);
}

void combineBackward(const float *yd, const int32_t *tokens, const float *gates,
                     const float *dout, float *dyd, float *dgates,
                     int64_t slots, int64_t numTokens, int64_t d) {
  for (int64_t i = 0; i < slots; ++i) {
    double dot = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      double upstream = tokens[i] < 0 ? 0.0 : dout[tokens[i] * d + c];
      dyd[i * d + c] = static_cast<float>(gates[i] * upstream);
      dot += upstream * yd[i * d + c];
    }
    dgates[i] = static_cast<float>(dot);
  }
}

void expertsForwardTraining(const float *xd, const int32_t *tokens,
                            const int32_t *offsets, const float *w1,
                            const float *b1, const float *w2, const float *b2,
                            float *yd, float *hiddenPreact, int64_t numExperts,
                            int64_t slots, int64_t d, int64_t f,
                            Activation act) {
  reference::experts(xd, tokens, offsets, w1, b1, w2, b2, yd, numExperts, slots,
                     d, f, act);
  std::fill(hiddenPreact, hiddenPreact + slots * f, 0.0f);
  for (int64_t e = 0; e < numExperts; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      if (tokens[i] < 0)
        continue;
      for (int64_t j = 0; j < f; ++j) {
        double sum = b1 ? b1[e * f + j] : 0.0;
        for (int64_t c = 0; c < d; ++c)
          sum += static_cast<double>(xd[i * d + c]) * w1[(e * d + c) * f + j];
        hiddenPreact[i * f + j] = static_cast<float>(sum);
      }
    }
}

void expertsBackward(const float *xd, const int32_t *tokens,
                     const int32_t *offsets, const float *w1, const float *w2,
                     const float *hiddenPreact, const float *dyd, float *dxd,
                     float *dw1, float *db1, float *dw2, float *db2,
                     int64_t numExperts, int64_t slots, int64_t d, int64_t f,
                     Activation act, bool accumulate) {
  Matrix gw1(numExperts * d * f, 0.0), gb1(numExperts * f, 0.0);
  Matrix gw2(numExperts * f * d, 0.0), gb2(numExperts * d, 0.0);
  std::fill(dxd, dxd + slots * d, 0.0f);
  std::vector<double> dPreact(f);
  for (int64_t e = 0; e < numExperts; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      if (tokens[i] < 0)
        continue;
      // y = act(p) w2 + b2 with p = x w1 + b1.
      for (int64_t j = 0; j < f; ++j) {
        double p = hiddenPreact[i * f + j];
        double dh = 0.0;
        for (int64_t c = 0; c < d; ++c) {
          double g = dyd[i * d + c];
          gw2[(e * f + j) * d + c] += applyActivation(p, act) * g;
          dh += g * w2[(e * f + j) * d + c];
        }
        dPreact[j] = dh * activationDerivative(p, act);
        gb1[e * f + j] += dPreact[j];
      }
      for (int64_t c = 0; c < d; ++c) {
        gb2[e * d + c] += dyd[i * d + c];
        double dx = 0.0;
        for (int64_t j = 0; j < f; ++j) {
          gw1[(e * d + c) * f + j] += xd[i * d + c] * dPreact[j];
          dx += dPreact[j] * w1[(e * d + c) * f + j];
        }
        dxd[i * d + c] = static_cast<float>(dx);
      }
    }
  store(gw1, dw1, accumulate);
  store(gw2, dw2, accumulate);
  if (db1)
    store(gb1, db1, accumulate);
  if (db2)
    store(gb2, db2, accumulate);
}

void dispatchBackward(const float *dxd, const int32_t *tokens, float *dx,
                      int64_t slots, int64_t numTokens, int64_t d) {
  Matrix sums(numTokens * d, 0.0);
  for (int64_t i = 0; i < slots; ++i)
    if (tokens[i] >= 0)
      for (int64_t c = 0; c < d; ++c)
        sums[tokens[i] * d + c] += dxd[i * d + c];
  store(sums, dx, false);
}

void routerGateBackward(Routing routing, const float *logits,
                        const int32_t *tokens, const int32_t *offsets,
                        const float *dgates, float *dscores, int64_t numTokens,
                        int64_t experts) {
  Matrix grad(numTokens * experts, 0.0);
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      if (tokens[i] < 0)
        continue;
      int64_t at = tokens[i] * experts + e;
      double derivative = 1.0;
      if (routing == Routing::SigmoidTopK) {
        double s = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[at])));
        derivative = s * (1.0 - s);
      }
      grad[at] += dgates[i] * derivative;
    }
  store(grad, dscores, false);
}

} // namespace mixer::cpu::reference
