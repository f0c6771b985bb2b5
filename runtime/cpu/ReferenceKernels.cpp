//===- ReferenceKernels.cpp - Plain reference twins of the kernels --------===//

#include "runtime/cpu/ReferenceKernels.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

namespace mixer::cpu::reference {
namespace {

/// out[s, n] = sum_j a[s, j] * b[j, n] for double matrices.
std::vector<double> matmul(const std::vector<double> &a,
                           const std::vector<double> &b, int64_t rows,
                           int64_t inner, int64_t cols) {
  std::vector<double> out(rows * cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < inner; ++j)
      for (int64_t c = 0; c < cols; ++c)
        out[r * cols + c] += a[r * inner + j] * b[j * cols + c];
  return out;
}

/// Y[b] = left * X[b] * right in double, left [seq,seq], right [d,d].
void mixBothSides(const float *x, const std::vector<double> &left,
                  const std::vector<double> &right, float *y, int64_t batch,
                  int64_t seq, int64_t d) {
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<double> example(x + b * seq * d, x + (b + 1) * seq * d);
    std::vector<double> result =
        matmul(left, matmul(example, right, seq, d, d), seq, seq, d);
    for (int64_t i = 0; i < seq * d; ++i)
      y[b * seq * d + i] = static_cast<float>(result[i]);
  }
}

std::vector<double> toDouble(const float *p, int64_t n) {
  return std::vector<double>(p, p + n);
}

/// The experts with the k highest values, highest first, ties to the lower
/// index.
std::vector<int64_t> topKIndices(const float *values, int64_t n, int64_t k) {
  std::vector<int64_t> index(n);
  std::iota(index.begin(), index.end(), 0);
  std::stable_sort(index.begin(), index.end(),
                   [&](int64_t a, int64_t b) { return values[a] > values[b]; });
  index.resize(k);
  return index;
}

uint32_t bitsOf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float fromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

/// The real number a float bit pattern stands for, reading the pattern
/// just past the largest finite magnitude as 2^128 (rounding up to it means
/// overflow to infinity).
double magnitudeOf(uint32_t bits) {
  if ((bits & 0x7fffffffu) == 0x7f800000u)
    return std::ldexp(1.0, 128);
  return std::fabs(static_cast<double>(fromBits(bits)));
}

} // namespace

double applyActivation(double x, Activation act) {
  switch (act) {
  case Activation::None:
    return x;
  case Activation::Gelu:
    return 0.5 * x *
           (1.0 +
            std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  case Activation::Tanh:
    return std::tanh(x);
  case Activation::Relu:
    return x > 0.0 ? x : 0.0;
  case Activation::GeluErf:
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  }
  return x;
}

double activationDerivative(double x, Activation act) {
  switch (act) {
  case Activation::None:
    return 1.0;
  case Activation::Gelu: {
    // 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3).
    double c = std::sqrt(2.0 / M_PI);
    double t = std::tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) +
           0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
  }
  case Activation::Tanh: {
    double t = std::tanh(x);
    return 1.0 - t * t;
  }
  case Activation::Relu:
    return x > 0.0 ? 1.0 : 0.0;
  case Activation::GeluErf:
    // Phi(x) + x phi(x).
    return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) +
           x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
  }
  return 1.0;
}

void dense(const float *x, const float *w, const float *bias, float *y,
           int64_t m, int64_t k, int64_t n, bool transposeW, Activation act) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double sum = bias ? bias[c] : 0.0;
      for (int64_t j = 0; j < k; ++j)
        sum += static_cast<double>(x[r * k + j]) *
               (transposeW ? w[c * k + j] : w[j * n + c]);
      y[r * n + c] = static_cast<float>(applyActivation(sum, act));
    }
}

void batchedMatmul(const float *a, const float *b, float *y, int64_t batch,
                   int64_t m, int64_t k, int64_t n, int64_t strideA,
                   int64_t strideB, int64_t strideY) {
  for (int64_t i = 0; i < batch; ++i)
    reference::dense(a + i * strideA, b + i * strideB, nullptr, y + i * strideY,
                     m, k, n,
                     /*transposeW=*/false, Activation::None);
}

void layerNorm(const float *x, const float *residual, const float *scale,
               const float *bias, float *y, int64_t rows, int64_t cols,
               float eps) {
  std::vector<double> v(cols);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0, sumSquares = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      v[c] = static_cast<double>(x[r * cols + c]) +
             (residual ? residual[r * cols + c] : 0.0f);
      sum += v[c];
      sumSquares += v[c] * v[c];
    }
    double mean = sum / cols;
    double variance = std::max(sumSquares / cols - mean * mean, 0.0);
    double rstd = 1.0 / std::sqrt(variance + eps);
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] =
          static_cast<float>((v[c] - mean) * rstd * scale[c] + bias[c]);
  }
}

void activation(const float *x, float *y, int64_t n, Activation act) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(applyActivation(x[i], act));
}

void add(const float *a, const float *b, float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = a[i] + b[i];
}

void roundToBf16(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i]) || std::isinf(x[i])) {
      y[i] = x[i];
      continue;
    }
    // The bfloat16 values around x: truncated (towards zero) and one step
    // further away from zero.
    uint32_t toward = bitsOf(x[i]) & 0xffff0000u;
    uint32_t away = toward + 0x10000u;
    double magnitude = std::fabs(static_cast<double>(x[i]));
    double below = magnitude - magnitudeOf(toward);
    double above = magnitudeOf(away) - magnitude;
    bool towardIsEven = (toward & 0x10000u) == 0;
    bool pickToward = below < above || (below == above && towardIsEven);
    y[i] = fromBits(pickToward ? toward : away);
  }
}

void softmax(const float *x, float *y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * cols;
    double rowMax = *std::max_element(row, row + cols);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c)
      sum += std::exp(row[c] - rowMax);
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] = static_cast<float>(std::exp(row[c] - rowMax) / sum);
  }
}

void takePosition(const float *x, float *y, int64_t batch, int64_t seq,
                  int64_t d, int64_t index) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < d; ++c)
      y[b * d + c] = x[(b * seq + index) * d + c];
}

void pool(const float *x, const int32_t *ids, float *y, int64_t batch,
          int64_t seq, int64_t d, PoolMode mode, bool normalize,
          int32_t padId) {
  std::vector<double> row(d);
  for (int64_t b = 0; b < batch; ++b) {
    std::fill(row.begin(), row.end(), 0.0);
    int64_t count = 0;
    for (int64_t s = 0; s < seq; ++s) {
      bool taken = mode == PoolMode::Cls ? s == 0 : ids[b * seq + s] != padId;
      if (!taken)
        continue;
      ++count;
      for (int64_t c = 0; c < d; ++c)
        row[c] += x[(b * seq + s) * d + c];
    }
    double divisor = std::max<double>(count, 1.0);
    double norm = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      row[c] /= divisor;
      norm += row[c] * row[c];
    }
    double scale = normalize ? 1.0 / std::max(std::sqrt(norm), 1e-12) : 1.0;
    for (int64_t c = 0; c < d; ++c)
      y[b * d + c] = static_cast<float>(row[c] * scale);
  }
}

void embed(const int32_t *ids, const int32_t *typeIds, const float *word,
           const float *pos, const float *type, float *y, int64_t batch,
           int64_t seq, int64_t dEmb, int64_t vocab, int64_t typeVocab) {
  auto check = [&](const int32_t *values, int64_t size, const char *tensor,
                   const char *what) {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < seq; ++s) {
        int32_t id = values[b * seq + s];
        if (id < 0 || id >= size)
          throw KernelError{std::string(tensor) + "[" + std::to_string(b) +
                            "," + std::to_string(s) +
                            "] = " + std::to_string(id) + " is outside the " +
                            what + " [0, " + std::to_string(size) + ")"};
      }
  };
  check(ids, vocab, "input_ids", "vocabulary");
  if (typeIds)
    check(typeIds, typeVocab, "type_ids", "type vocabulary");
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s) {
      int64_t token = b * seq + s;
      int64_t typeId = typeIds ? typeIds[token] : 0;
      for (int64_t c = 0; c < dEmb; ++c)
        y[token * dEmb + c] = static_cast<float>(
            static_cast<double>(word[ids[token] * dEmb + c]) +
            pos[s * dEmb + c] + type[typeId * dEmb + c]);
    }
}

void linearMix(const float *x, const float *ws, const float *wh, float *y,
               int64_t batch, int64_t seq, int64_t d) {
  mixBothSides(x, toDouble(ws, seq * seq), toDouble(wh, d * d), y, batch, seq,
               d);
}

void spectralMix(const float *x, float *y, int64_t batch, int64_t seq,
                 int64_t d, bool hartley) {
  using Complex = std::complex<double>;
  auto twiddle = [](int64_t j, int64_t k, int64_t n) {
    return std::polar(1.0, -2.0 * M_PI * static_cast<double>(j * k % n) / n);
  };
  std::vector<Complex> rows(seq * d);
  for (int64_t b = 0; b < batch; ++b) {
    const float *example = x + b * seq * d;
    // Transform along the hidden axis, then along the sequence axis.
    for (int64_t i = 0; i < seq; ++i)
      for (int64_t k = 0; k < d; ++k) {
        Complex sum = 0.0;
        for (int64_t j = 0; j < d; ++j)
          sum += static_cast<double>(example[i * d + j]) * twiddle(j, k, d);
        rows[i * d + k] = sum;
      }
    for (int64_t n = 0; n < seq; ++n)
      for (int64_t k = 0; k < d; ++k) {
        Complex sum = 0.0;
        for (int64_t i = 0; i < seq; ++i)
          sum += twiddle(n, i, seq) * rows[i * d + k];
        double value = hartley ? sum.real() - sum.imag() : sum.real();
        y[(b * seq + n) * d + k] = static_cast<float>(value);
      }
  }
}

void structuredMix(const float *x, const float *vs, const float *vh, float *y,
                   int64_t batch, int64_t seq, int64_t d, bool toeplitz) {
  std::vector<float> left(seq * seq), right(d * d);
  if (toeplitz) {
    toeplitzMatrix(vs, left.data(), seq);
    toeplitzMatrix(vh, right.data(), d);
  } else {
    circulantMatrix(vs, left.data(), seq);
    circulantMatrix(vh, right.data(), d);
  }
  // Y = L X R^T.
  std::vector<double> rightTransposed(d * d);
  for (int64_t r = 0; r < d; ++r)
    for (int64_t c = 0; c < d; ++c)
      rightTransposed[c * d + r] = right[r * d + c];
  mixBothSides(x, toDouble(left.data(), seq * seq), rightTransposed, y, batch,
               seq, d);
}

void circulantMatrix(const float *v, float *out, int64_t n) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      out[r * n + c] = v[((r - c) % n + n) % n];
}

void toeplitzMatrix(const float *t, float *out, int64_t n) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      out[r * n + c] = t[(n - 1) + c - r];
}

double attentionDropoutFactor(const AttentionDropout &dropout, uint64_t index) {
  if (!dropout.active())
    return 1.0;
  return dropout.uniforms.at(index) >= dropout.rate ? 1.0 / (1.0 - dropout.rate)
                                                    : 0.0;
}

void attention(const float *q, const float *k, const float *v,
               const int32_t *ids, float *out, int64_t batch, int64_t seq,
               int64_t heads, int64_t headDim, int32_t padId, bool causal,
               const AttentionDropout &dropout) {
  const double lowest = std::numeric_limits<float>::lowest();
  int64_t ld = heads * headDim;
  std::vector<double> logits(seq);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < seq; ++i) {
        auto at = [&](const float *t, int64_t token, int64_t c) {
          return static_cast<double>(
              t[(b * seq + token) * ld + h * headDim + c]);
        };
        for (int64_t j = 0; j < seq; ++j) {
          bool masked = (ids && (ids[b * seq + i] == padId ||
                                 ids[b * seq + j] == padId)) ||
                        (causal && j > i);
          double dot = 0.0;
          for (int64_t c = 0; c < headDim; ++c)
            dot += at(q, i, c) / std::sqrt(static_cast<double>(headDim)) *
                   at(k, j, c);
          logits[j] = masked ? lowest : dot;
        }
        double rowMax = *std::max_element(logits.begin(), logits.end());
        double sum = 0.0;
        for (double &l : logits) {
          l = std::exp(l - rowMax);
          sum += l;
        }
        // P' = P * mask / (1 - rate), element (b, h, i, j).
        for (int64_t j = 0; j < seq; ++j)
          logits[j] = logits[j] / sum *
                      attentionDropoutFactor(
                          dropout, ((b * heads + h) * seq + i) * seq + j);
        for (int64_t c = 0; c < headDim; ++c) {
          double value = 0.0;
          for (int64_t j = 0; j < seq; ++j)
            value += logits[j] * at(v, j, c);
          out[(b * seq + i) * ld + h * headDim + c] = static_cast<float>(value);
        }
      }
}

void routeExpertsChoose(const float *probs, int32_t *tokens, float *gates,
                        int32_t *offsets, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts,
                        int64_t capacity) {
  std::vector<float> column(tokensPerGroup);
  for (int64_t e = 0; e < experts; ++e) {
    offsets[e] = static_cast<int32_t>(e * groups * capacity);
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t t = 0; t < tokensPerGroup; ++t)
        column[t] = probs[(g * tokensPerGroup + t) * experts + e];
      std::vector<int64_t> best =
          topKIndices(column.data(), tokensPerGroup, capacity);
      for (int64_t c = 0; c < capacity; ++c) {
        int64_t slot = (e * groups + g) * capacity + c;
        tokens[slot] = static_cast<int32_t>(g * tokensPerGroup + best[c]);
        gates[slot] = column[best[c]];
      }
    }
  }
  offsets[experts] = static_cast<int32_t>(experts * groups * capacity);
}

void routeTokensChoose(const float *probs, int32_t *tokens, float *gates,
                       int32_t *offsets, int64_t groups, int64_t tokensPerGroup,
                       int64_t experts, int64_t k, int64_t capacity,
                       bool batchPrioritized) {
  int64_t tpg = tokensPerGroup;
  for (int64_t e = 0; e <= experts; ++e)
    offsets[e] = static_cast<int32_t>(e * groups * capacity);
  std::fill(tokens, tokens + experts * groups * capacity, -1);
  std::fill(gates, gates + experts * groups * capacity, 0.0f);
  for (int64_t g = 0; g < groups; ++g) {
    const float *p = probs + g * tpg * experts;
    // gate, expert_index = top_k(probs, k).
    std::vector<std::vector<int64_t>> expertIndex(tpg);
    for (int64_t t = 0; t < tpg; ++t)
      expertIndex[t] = topKIndices(p + t * experts, experts, k);
    // Batch-prioritized routing visits tokens by descending top-1 gate.
    std::vector<int64_t> perm(tpg);
    std::iota(perm.begin(), perm.end(), 0);
    if (batchPrioritized)
      std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
        return p[a * experts + expertIndex[a][0]] >
               p[b * experts + expertIndex[b][0]];
      });
    // Flatten choices as [k, tokens] (all first choices first), one-hot them
    // and take the running count per expert: priority = cumsum * onehot - 1.
    int64_t flat = k * tpg;
    std::vector<int64_t> flatExpert(flat), flatToken(flat);
    for (int64_t r = 0; r < k; ++r)
      for (int64_t i = 0; i < tpg; ++i) {
        flatToken[r * tpg + i] = perm[i];
        flatExpert[r * tpg + i] = expertIndex[perm[i]][r];
      }
    std::vector<int64_t> cumsum(flat * experts, 0);
    for (int64_t j = 0; j < flat; ++j)
      for (int64_t e = 0; e < experts; ++e)
        cumsum[j * experts + e] = (j > 0 ? cumsum[(j - 1) * experts + e] : 0) +
                                  (flatExpert[j] == e ? 1 : 0);
    // priority[t][e]: max over the k choices, -1 where t did not pick e.
    std::vector<int64_t> priority(tpg * experts, -1);
    for (int64_t j = 0; j < flat; ++j) {
      int64_t e = flatExpert[j];
      int64_t &slot = priority[flatToken[j] * experts + e];
      slot = std::max(slot, cumsum[j * experts + e] - 1);
    }
    // dispatch = one_hot(priority, capacity); combine = probs * dispatch.
    for (int64_t t = 0; t < tpg; ++t)
      for (int64_t e = 0; e < experts; ++e) {
        int64_t c = priority[t * experts + e];
        if (c < 0 || c >= capacity)
          continue;
        int64_t slot = (e * groups + g) * capacity + c;
        tokens[slot] = static_cast<int32_t>(g * tpg + t);
        gates[slot] = p[t * experts + e];
      }
  }
}

void routeSigmoidTopK(const float *logits, int32_t *tokens, float *gates,
                      int32_t *offsets, int64_t numTokens, int64_t experts,
                      int64_t k) {
  std::vector<std::tuple<int64_t, int64_t, float>> entries;
  std::vector<float> rowGates(experts);
  for (int64_t t = 0; t < numTokens; ++t) {
    for (int64_t e = 0; e < experts; ++e)
      rowGates[e] = 1.0f / (1.0f + std::exp(-logits[t * experts + e]));
    for (int64_t e : topKIndices(rowGates.data(), experts, k))
      entries.emplace_back(e, t, rowGates[e]);
  }
  std::sort(entries.begin(), entries.end());
  for (int64_t e = 0; e <= experts; ++e)
    offsets[e] = static_cast<int32_t>(
        std::count_if(entries.begin(), entries.end(), [&](const auto &entry) {
          return std::get<0>(entry) < e;
        }));
  for (size_t i = 0; i < entries.size(); ++i) {
    tokens[i] = static_cast<int32_t>(std::get<1>(entries[i]));
    gates[i] = std::get<2>(entries[i]);
  }
}

void dispatch(const float *x, const int32_t *tokens, float *xd, int64_t slots,
              int64_t /*numTokens*/, int64_t d) {
  for (int64_t i = 0; i < slots; ++i)
    for (int64_t c = 0; c < d; ++c)
      xd[i * d + c] = tokens[i] < 0 ? 0.0f : x[tokens[i] * d + c];
}

void experts(const float *xd, const int32_t *tokens, const int32_t *offsets,
             const float *w1, const float *b1, const float *w2, const float *b2,
             float *yd, int64_t numExperts, int64_t slots, int64_t d, int64_t f,
             Activation act) {
  std::fill(yd, yd + slots * d, 0.0f);
  std::vector<double> hidden(f);
  for (int64_t e = 0; e < numExperts; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      if (tokens[i] < 0)
        continue;
      for (int64_t j = 0; j < f; ++j) {
        double sum = b1 ? b1[e * f + j] : 0.0;
        for (int64_t c = 0; c < d; ++c)
          sum += static_cast<double>(xd[i * d + c]) * w1[(e * d + c) * f + j];
        hidden[j] = applyActivation(sum, act);
      }
      for (int64_t c = 0; c < d; ++c) {
        double sum = b2 ? b2[e * d + c] : 0.0;
        for (int64_t j = 0; j < f; ++j)
          sum += hidden[j] * w2[(e * f + j) * d + c];
        yd[i * d + c] = static_cast<float>(sum);
      }
    }
}

void combine(const float *yd, const int32_t *tokens, const float *gates,
             float *out, int64_t slots, int64_t numTokens, int64_t d) {
  std::vector<double> sums(numTokens * d, 0.0);
  for (int64_t i = 0; i < slots; ++i) {
    if (tokens[i] < 0)
      continue;
    for (int64_t c = 0; c < d; ++c)
      sums[tokens[i] * d + c] += static_cast<double>(gates[i]) * yd[i * d + c];
  }
  for (int64_t i = 0; i < numTokens * d; ++i)
    out[i] = static_cast<float>(sums[i]);
}

float routerZLoss(const float *logits, int64_t numTokens, int64_t experts) {
  double sum = 0.0;
  for (int64_t t = 0; t < numTokens; ++t) {
    const float *row = logits + t * experts;
    double rowMax = *std::max_element(row, row + experts);
    double exps = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      exps += std::exp(row[e] - rowMax);
    double logSumExp = rowMax + std::log(exps);
    sum += logSumExp * logSumExp;
  }
  return static_cast<float>(sum / numTokens);
}

float loadBalancingLoss(const float *probs, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts, int64_t k) {
  int64_t tpg = tokensPerGroup;
  // mask[t,e] = max over the k choices of one_hot(choice, experts).
  std::vector<double> mask(groups * tpg * experts, 0.0);
  for (int64_t t = 0; t < groups * tpg; ++t)
    for (int64_t e : topKIndices(probs + t * experts, experts, k))
      mask[t * experts + e] = 1.0;
  // f[g,e] and P[g,e]: means over the tokens of the group.
  std::vector<double> f(groups * experts, 0.0), p(groups * experts, 0.0);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t t = 0; t < tpg; ++t)
      for (int64_t e = 0; e < experts; ++e) {
        int64_t at = (g * tpg + t) * experts + e;
        f[g * experts + e] += mask[at] / tpg;
        p[g * experts + e] += static_cast<double>(probs[at]) / tpg;
      }
  double meanFP = 0.0;
  for (int64_t i = 0; i < groups * experts; ++i)
    meanFP += f[i] * p[i] / (groups * experts);
  return static_cast<float>(meanFP * experts * experts);
}

} // namespace mixer::cpu::reference
