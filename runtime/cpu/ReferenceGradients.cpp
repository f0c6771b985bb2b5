//===- ReferenceGradients.cpp - Plain twins of the gradient kernels -------===//

#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace mixer::cpu::reference {
namespace {

/// y[i] = old (if accumulate) + sum[i], rounded once.
void store(const std::vector<double> &sum, float *y, bool accumulate) {
  for (size_t i = 0; i < sum.size(); ++i)
    y[i] = static_cast<float>((accumulate ? static_cast<double>(y[i]) : 0.0) +
                              sum[i]);
}

/// The same check and message as the optimized kernels.
void checkRange(const int32_t *keys, int64_t rows, int64_t cols, int64_t size,
                const char *tensor, const char *what) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      int32_t key = keys[r * cols + c];
      if (key < 0 || key >= size)
        throw KernelError{std::string(tensor) + "[" + std::to_string(r) + "," +
                          std::to_string(c) + "] = " + std::to_string(key) +
                          " is outside the " + what + " [0, " +
                          std::to_string(size) + ")"};
    }
}

} // namespace

void denseBackward(const float *x, const float *w, const float *dy, float *dx,
                   float *dw, float *db, int64_t m, int64_t k, int64_t n,
                   bool transposeW, bool accumulate) {
  auto weight = [&](int64_t j, int64_t c) -> double {
    return transposeW ? w[c * k + j] : w[j * n + c];
  };
  if (dx)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < k; ++j) {
        double sum = 0.0;
        for (int64_t c = 0; c < n; ++c)
          sum += static_cast<double>(dy[r * n + c]) * weight(j, c);
        dx[r * k + j] = static_cast<float>(sum);
      }
  if (dw) {
    // dL/dW[j,c] = sum_r x[r,j] dy[r,c], stored where W[j,c] is stored.
    std::vector<double> grad(k * n, 0.0);
    for (int64_t j = 0; j < k; ++j)
      for (int64_t c = 0; c < n; ++c) {
        double sum = 0.0;
        for (int64_t r = 0; r < m; ++r)
          sum += static_cast<double>(x[r * k + j]) * dy[r * n + c];
        grad[transposeW ? c * k + j : j * n + c] = sum;
      }
    store(grad, dw, accumulate);
  }
  if (db) {
    std::vector<double> grad(n, 0.0);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c)
        grad[c] += dy[r * n + c];
    store(grad, db, accumulate);
  }
}

void activationBackward(const float *preact, const float *dy, float *dx,
                        int64_t n, Activation act) {
  for (int64_t i = 0; i < n; ++i)
    dx[i] = static_cast<float>(dy[i] * activationDerivative(preact[i], act));
}

void activationBackwardFromOutput(const float *y, const float *dy, float *dx,
                                  int64_t n, Activation act) {
  if (act == Activation::Gelu || act == Activation::GeluErf)
    throw KernelError{"activation gradient from the output: gelu is not "
                      "invertible, keep its input instead"};
  for (int64_t i = 0; i < n; ++i) {
    double out = y[i];
    double derivative = act == Activation::Tanh   ? 1.0 - out * out
                        : act == Activation::Relu ? (out > 0.0 ? 1.0 : 0.0)
                                                  : 1.0;
    dx[i] = static_cast<float>(dy[i] * derivative);
  }
}

void layerNormBackward(const float *x, const float *residual,
                       const float *scale, const float *dy, float *dx,
                       float *dscale, float *dbias, int64_t rows, int64_t cols,
                       float eps, bool accumulate) {
  std::vector<double> gradScale(cols, 0.0), gradBias(cols, 0.0);
  std::vector<double> xhat(cols), g(cols);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0, sumSquares = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      double v = static_cast<double>(x[r * cols + c]) +
                 (residual ? residual[r * cols + c] : 0.0f);
      xhat[c] = v;
      sum += v;
      sumSquares += v * v;
    }
    double mean = sum / cols;
    double rstd =
        1.0 / std::sqrt(std::max(sumSquares / cols - mean * mean, 0.0) + eps);
    for (int64_t c = 0; c < cols; ++c) {
      xhat[c] = (xhat[c] - mean) * rstd;
      g[c] = static_cast<double>(dy[r * cols + c]) * scale[c];
      gradScale[c] += dy[r * cols + c] * xhat[c];
      gradBias[c] += dy[r * cols + c];
    }
    // dxhat_i / dv_j = rstd * (delta_ij - 1/cols - xhat_i xhat_j / cols).
    if (dx)
      for (int64_t j = 0; j < cols; ++j) {
        double sumJ = 0.0;
        for (int64_t i = 0; i < cols; ++i)
          sumJ +=
              g[i] * rstd *
              ((i == j ? 1.0 : 0.0) - 1.0 / cols - xhat[i] * xhat[j] / cols);
        dx[r * cols + j] = static_cast<float>(sumJ);
      }
  }
  if (dscale)
    store(gradScale, dscale, accumulate);
  if (dbias)
    store(gradBias, dbias, accumulate);
}

void softmaxBackward(const float *y, const float *dy, float *dx, int64_t rows,
                     int64_t cols) {
  // dx_j = sum_i dy_i dy_i/dx_j = sum_i dy_i y_i (delta_ij - y_j).
  for (int64_t r = 0; r < rows; ++r) {
    const float *yr = y + r * cols, *dyr = dy + r * cols;
    double dot = 0.0;
    for (int64_t i = 0; i < cols; ++i)
      dot += static_cast<double>(dyr[i]) * yr[i];
    for (int64_t j = 0; j < cols; ++j)
      dx[r * cols + j] =
          static_cast<float>(static_cast<double>(yr[j]) * (dyr[j] - dot));
  }
}

void embedBackward(const int32_t *ids, const int32_t *typeIds, const float *dy,
                   float *dword, float *dpos, float *dtype, int64_t batch,
                   int64_t seq, int64_t dEmb, int64_t vocab, int64_t posRows,
                   int64_t typeVocab, bool accumulate) {
  checkRange(ids, batch, seq, vocab, "input_ids", "vocabulary");
  if (typeIds)
    checkRange(typeIds, batch, seq, typeVocab, "type_ids", "type vocabulary");
  if (seq > posRows)
    throw KernelError{"embedding gradient: the position table has " +
                      std::to_string(posRows) + " rows, fewer than the " +
                      std::to_string(seq) + " positions"};
  std::vector<double> word(vocab * dEmb, 0.0), pos(posRows * dEmb, 0.0),
      type(typeVocab * dEmb, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s) {
      int64_t token = b * seq + s;
      int64_t typeId = typeIds ? typeIds[token] : 0;
      for (int64_t c = 0; c < dEmb; ++c) {
        double g = dy[token * dEmb + c];
        word[ids[token] * dEmb + c] += g;
        pos[s * dEmb + c] += g;
        type[typeId * dEmb + c] += g;
      }
    }
  if (dword)
    store(word, dword, accumulate);
  if (dpos)
    store(pos, dpos, accumulate);
  if (dtype)
    store(type, dtype, accumulate);
}

void attentionBackward(const float *q, const float *k, const float *v,
                       const int32_t *ids, const float *dout, float *dq,
                       float *dk, float *dv, int64_t batch, int64_t seq,
                       int64_t heads, int64_t headDim, int32_t padId,
                       bool causal, const AttentionDropout &dropout) {
  const double lowest = std::numeric_limits<float>::lowest();
  const double scale = 1.0 / std::sqrt(static_cast<double>(headDim));
  int64_t ld = heads * headDim;
  std::vector<double> probs(seq * seq), gq(seq * headDim), gk(seq * headDim),
      gv(seq * headDim), factors(seq);
  std::vector<char> masked(seq * seq);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      auto index = [&](int64_t token, int64_t c) {
        return (b * seq + token) * ld + h * headDim + c;
      };
      auto at = [&](const float *t, int64_t token, int64_t c) {
        return static_cast<double>(t[index(token, c)]);
      };
      std::fill(gq.begin(), gq.end(), 0.0);
      std::fill(gk.begin(), gk.end(), 0.0);
      std::fill(gv.begin(), gv.end(), 0.0);
      for (int64_t i = 0; i < seq; ++i) {
        double *p = probs.data() + i * seq;
        for (int64_t j = 0; j < seq; ++j) {
          masked[i * seq + j] = (ids && (ids[b * seq + i] == padId ||
                                         ids[b * seq + j] == padId)) ||
                                (causal && j > i);
          double dot = 0.0;
          for (int64_t c = 0; c < headDim; ++c)
            dot += at(q, i, c) * scale * at(k, j, c);
          p[j] = masked[i * seq + j] ? lowest : dot;
        }
        double rowMax = *std::max_element(p, p + seq);
        double sum = 0.0;
        for (int64_t j = 0; j < seq; ++j)
          sum += p[j] = std::exp(p[j] - rowMax);
        for (int64_t j = 0; j < seq; ++j) {
          p[j] /= sum;
          factors[j] = attentionDropoutFactor(
              dropout, ((b * heads + h) * seq + i) * seq + j);
        }
        // out_i = sum_j P'_ij v_j with P' = P * factor, and the softmax
        // correction dO_i . out_i = sum_j P_ij dP_ij.
        double correction = 0.0;
        for (int64_t c = 0; c < headDim; ++c) {
          double out = 0.0;
          for (int64_t j = 0; j < seq; ++j)
            out += p[j] * factors[j] * at(v, j, c);
          correction += at(dout, i, c) * out;
        }
        for (int64_t j = 0; j < seq; ++j) {
          // dP_ij = factor_j * dO_i . v_j.
          double dp = 0.0;
          for (int64_t c = 0; c < headDim; ++c) {
            dp += at(dout, i, c) * at(v, j, c);
            gv[j * headDim + c] += p[j] * factors[j] * at(dout, i, c);
          }
          dp *= factors[j];
          double ds = masked[i * seq + j] ? 0.0 : p[j] * (dp - correction);
          for (int64_t c = 0; c < headDim; ++c) {
            gq[i * headDim + c] += ds * scale * at(k, j, c);
            gk[j * headDim + c] += ds * scale * at(q, i, c);
          }
        }
      }
      for (int64_t t = 0; t < seq; ++t)
        for (int64_t c = 0; c < headDim; ++c) {
          if (dq)
            dq[index(t, c)] = static_cast<float>(gq[t * headDim + c]);
          if (dk)
            dk[index(t, c)] = static_cast<float>(gk[t * headDim + c]);
          if (dv)
            dv[index(t, c)] = static_cast<float>(gv[t * headDim + c]);
        }
    }
}

float softmaxCrossEntropy(const float *logits, const int32_t *labels,
                          const float *weights, int64_t rows, int64_t classes,
                          float *dlogits, float lossScale) {
  for (int64_t r = 0; r < rows; ++r)
    if (labels[r] < -1 || labels[r] >= classes)
      throw KernelError{"cross-entropy: labels[" + std::to_string(r) +
                        "] = " + std::to_string(labels[r]) +
                        " is outside the classes [0, " +
                        std::to_string(classes) + ") and not -1 (ignored)"};
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = logits + r * classes;
    int32_t label = labels[r];
    double weight = label == -1 ? 0.0 : weights ? weights[r] : 1.0;
    double rowMax = *std::max_element(row, row + classes);
    double sum = 0.0;
    for (int64_t c = 0; c < classes; ++c)
      sum += std::exp(row[c] - rowMax);
    double logSumExp = rowMax + std::log(sum);
    if (label != -1)
      total += weight * (logSumExp - row[label]);
    if (dlogits)
      for (int64_t c = 0; c < classes; ++c)
        dlogits[r * classes + c] = static_cast<float>(
            lossScale * weight *
            (std::exp(row[c] - logSumExp) - (c == label ? 1.0 : 0.0)));
  }
  return static_cast<float>(total);
}

float squaredError(const float *pred, const float *target, int64_t rows,
                   float *dpred, float lossScale) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    double error = static_cast<double>(pred[r]) - target[r];
    total += error * error;
    if (dpred)
      dpred[r] = static_cast<float>(lossScale * 2.0 * error);
  }
  return static_cast<float>(total);
}

void gatherRows(const float *x, const int32_t *positions, float *y,
                int64_t batch, int64_t seq, int64_t d, int64_t numPositions) {
  checkRange(positions, batch, numPositions, seq, "positions", "sequence");
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < numPositions; ++p)
      for (int64_t c = 0; c < d; ++c)
        y[(b * numPositions + p) * d + c] =
            x[(b * seq + positions[b * numPositions + p]) * d + c];
}

void gatherRowsBackward(const float *dy, const int32_t *positions, float *dx,
                        int64_t batch, int64_t seq, int64_t d,
                        int64_t numPositions, bool accumulate) {
  checkRange(positions, batch, numPositions, seq, "positions", "sequence");
  std::vector<double> grad(batch * seq * d, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < numPositions; ++p)
      for (int64_t c = 0; c < d; ++c)
        grad[(b * seq + positions[b * numPositions + p]) * d + c] +=
            dy[(b * numPositions + p) * d + c];
  store(grad, dx, accumulate);
}

} // namespace mixer::cpu::reference
