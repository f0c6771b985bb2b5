//===- ExecutorKernels.cu - Glue kernels of the CUDA executor -------------===//

#include "runtime/cuda/Activation.cuh"
#include "runtime/cuda/Common.cuh"
#include "runtime/cuda/ExecutorKernels.h"
#include "runtime/support/Bf16Router.h"

#include <cuda_runtime.h>

#include <cmath>
#include <string>
#include <type_traits>

namespace mixer::cuda {

using namespace detail;

namespace {

__global__ void __launch_bounds__(1)
    narrowToFloatKernel(const double *in, float *out) {
  *out = static_cast<float>(*in);
}

__global__ void __launch_bounds__(1)
    clipFactorKernel(const float *norm, double maxNorm, float *scale) {
  double total = *norm;
  *scale = total >= maxNorm ? static_cast<float>(maxNorm / total) : 1.0f;
}

/// y[i] = f(i) over n values, a grid-stride loop.
template <typename F>
__global__ void __launch_bounds__(kBlockThreads)
    elementwiseKernel(int64_t n, F f) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    f(i);
}

/// Runs f(i) for i in [0, n) and reports the launch as `kernel`.
template <typename F>
Status forEach(const char *kernel, int64_t n, cudaStream_t stream, F f) {
  if (Status s = requireNonNegative(kernel, "n", n); !s.ok() || n == 0)
    return s;
  elementwiseKernel<<<gridFor(n), kBlockThreads, 0, stream>>>(n, f);
  return launchStatus(kernel);
}

__global__ void __launch_bounds__(1)
    sumValuesKernel(const float *x, float *y, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i)
    sum += x[i];
  *y = static_cast<float>(sum);
}

__global__ void __launch_bounds__(1)
    squaredErrorKernel(const float *p, const float *t, float *loss, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    float error = p[i] - t[i];
    total += static_cast<double>(error) * error;
  }
  *loss = static_cast<float>(total);
}

/// The row's maximum, and the sum of exp(x - maximum) in index order
/// (written to `exps` when not null).
__device__ float2 rowExpSum(const float *row, int64_t n, float *exps) {
  float rowMax = -INFINITY;
  for (int64_t e = 0; e < n; ++e)
    rowMax = fmaxf(rowMax, row[e]);
  float sum = 0.0f;
  for (int64_t e = 0; e < n; ++e) {
    float v = expf(row[e] - rowMax);
    if (exps)
      exps[e] = v;
    sum += v;
  }
  return make_float2(rowMax, sum);
}

__global__ void __launch_bounds__(kBlockThreads)
    zLossRowsKernel(const float *logits, double *squares, int64_t numTokens,
                    int64_t experts) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       t < numTokens; t += int64_t(gridDim.x) * blockDim.x) {
    float2 stats = rowExpSum(logits + t * experts, experts, nullptr);
    double lse = stats.x + log(static_cast<double>(stats.y));
    squares[t] = lse * lse;
  }
}

/// The CPU's order: each block of 256 tokens summed in token order, then the
/// blocks in order.
__global__ void __launch_bounds__(1)
    zLossSumKernel(const double *squares, float *loss, int64_t numTokens) {
  double sum = 0.0;
  for (int64_t begin = 0; begin < numTokens; begin += 256) {
    double partial = 0.0;
    for (int64_t t = begin; t < min(numTokens, begin + 256); ++t)
      partial += squares[t];
    sum += partial;
  }
  *loss = static_cast<float>(sum / numTokens);
}

/// Whether expert e of `row` is among its k largest values, ties to the
/// lower index (cpu::loadBalancingLoss's top-k choices).
__device__ bool inTopK(const float *row, int64_t experts, int64_t e,
                       int64_t k) {
  int64_t ahead = 0;
  for (int64_t j = 0; j < experts; ++j)
    ahead += j < e ? row[j] >= row[e] : j > e && row[j] > row[e];
  return ahead < k;
}

/// Per (group, expert), a thread: how many of the group's tokens choose the
/// expert among their top k. The loss (`out` double) writes f * P, the
/// fraction of choices times the mean probability, the probabilities summed
/// in double in the CPU's blocks of 256 tokens; the gradient (`out` float)
/// float(dloss * experts / (groups * tokensPerGroup^2) * count).
template <typename Out>
__global__ void __launch_bounds__(kBlockThreads)
    loadBalancingKernel(const float *probs, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts, int64_t k,
                        const float *dloss, Out *out) {
  constexpr bool loss = std::is_same_v<Out, double>;
  int64_t pair = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pair >= groups * experts)
    return;
  int64_t g = pair / experts, e = pair % experts;
  const float *first = probs + g * tokensPerGroup * experts;
  int64_t count = 0;
  double probSum = 0.0;
  for (int64_t begin = 0; begin < tokensPerGroup; begin += 256) {
    double partial = 0.0;
    int64_t end = min(tokensPerGroup, begin + 256);
    for (int64_t t = begin; t < end; ++t) {
      const float *row = first + t * experts;
      count += inTopK(row, experts, e, k);
      if constexpr (loss)
        partial += row[e];
    }
    probSum += partial;
  }
  if constexpr (loss)
    out[pair] =
        static_cast<double>(count) / tokensPerGroup * probSum / tokensPerGroup;
  else
    out[pair] = static_cast<float>(
        static_cast<double>(*dloss) * experts /
        (static_cast<double>(groups) * tokensPerGroup * tokensPerGroup) *
        count);
}

/// The terms summed in (group, expert) order: mean times experts^2.
__global__ void __launch_bounds__(1)
    loadBalancingSumKernel(const double *terms, float *loss, int64_t pairs,
                           int64_t experts) {
  double sum = 0.0;
  for (int64_t i = 0; i < pairs; ++i)
    sum += terms[i];
  *loss = static_cast<float>(sum / pairs * experts * experts);
}

__global__ void __launch_bounds__(kBlockThreads)
    zLossGradKernel(const float *logits, const float *dloss, float *dlogits,
                    int64_t numTokens, int64_t experts) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       t < numTokens; t += int64_t(gridDim.x) * blockDim.x) {
    float *grad = dlogits + t * experts;
    float2 stats = rowExpSum(logits + t * experts, experts, grad);
    double lse = stats.x + log(static_cast<double>(stats.y));
    double scale = 2.0 * *dloss / numTokens;
    float factor = static_cast<float>(scale * lse / stats.y);
    for (int64_t e = 0; e < experts; ++e)
      grad[e] *= factor;
  }
}

template <typename D>
__global__ void __launch_bounds__(kBlockThreads)
    argmaxKernel(const D *x, int32_t *y, int64_t rows, int64_t cols) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    int64_t best = 0;
    float bestValue = load(x, r * cols);
    for (int64_t c = 1; c < cols; ++c) {
      float v = load(x, r * cols + c);
      if (bestValue < v) {
        best = c;
        bestValue = v;
      }
    }
    y[r] = static_cast<int32_t>(best);
  }
}

/// The pooled value of column c of example b (before normalisation).
template <typename D>
__device__ float pooledValue(const D *x, const int32_t *ids, int64_t b,
                             int64_t c, int64_t seq, int64_t d, PoolMode mode,
                             int32_t padId) {
  if (mode == PoolMode::Cls)
    return load(x, b * seq * d + c);
  float sum = 0.0f;
  int64_t count = 0;
  for (int64_t s = 0; s < seq; ++s)
    if (ids[b * seq + s] != padId) {
      sum += load(x, (b * seq + s) * d + c);
      ++count;
    }
  return sum / float(count > 0 ? count : 1);
}

/// One block per example: the pooled row, then its L2 norm over the block.
template <typename D>
__global__ void __launch_bounds__(kBlockThreads)
    poolKernel(const D *x, const int32_t *ids, D *y, int64_t seq, int64_t d,
               PoolMode mode, bool normalize, int32_t padId) {
  __shared__ float scratch[kBlockWarps];
  int64_t b = blockIdx.x;
  float squares = 0.0f;
  for (int64_t c = threadIdx.x; c < d; c += kBlockThreads) {
    float v = pooledValue(x, ids, b, c, seq, d, mode, padId);
    squares += v * v;
  }
  float total = blockSum(squares, scratch);
  float scale = normalize ? 1.0f / fmaxf(sqrtf(total), 1e-12f) : 1.0f;
  for (int64_t c = threadIdx.x; c < d; c += kBlockThreads)
    store(y, b * d + c, pooledValue(x, ids, b, c, seq, d, mode, padId) * scale);
}

/// Counting sort of the tokens by key (one thread): start[k] .. start[k + 1]
/// index the tokens with key k in `order`, in token order. Keys outside
/// [0, numKeys) are left out (and reported, as the key decides).
template <typename Key>
__global__ void __launch_bounds__(1)
    sortByKeyKernel(Key key, int64_t tokens, int64_t numKeys, int32_t *start,
                    int32_t *order) {
  for (int64_t k = 0; k <= numKeys; ++k)
    start[k] = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    int64_t k = key(t);
    if (key.valid(t, k, numKeys))
      ++start[k + 1];
  }
  for (int64_t k = 0; k < numKeys; ++k)
    start[k + 1] += start[k];
  // start[k] serves as the running position, then is restored.
  for (int64_t t = 0; t < tokens; ++t) {
    int64_t k = key(t);
    if (k >= 0 && k < numKeys)
      order[start[k]++] = static_cast<int32_t>(t);
  }
  for (int64_t k = numKeys; k > 0; --k)
    start[k] = start[k - 1];
  start[0] = 0;
}

/// out[k, c] = float(sum in double of src[order[i], c] over the tokens of
/// key k, in token order), one thread per (k, c).
template <typename D>
__global__ void __launch_bounds__(kBlockThreads)
    sumByKeyKernel(const int32_t *start, const int32_t *order, const D *src,
                   float *out, int64_t numKeys, int64_t d) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < numKeys * d; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t k = i / d, c = i % d;
    double sum = 0.0;
    for (int32_t j = start[k]; j < start[k + 1]; ++j)
      sum += load(src, int64_t(order[j]) * d + c);
    out[i] = static_cast<float>(sum);
  }
}

/// out[t, c] from the slots of token t in slot order (start/order of
/// sortByKeyKernel), each scaled by its gate (1 without gates).
template <typename D>
__global__ void __launch_bounds__(kBlockThreads)
    combineKernel(const int32_t *start, const int32_t *order, const D *yd,
                  const float *gates, D *out, int64_t numTokens, int64_t d) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < numTokens * d; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = i / d, c = i % d;
    float sum = 0.0f;
    for (int32_t j = start[t]; j < start[t + 1]; ++j) {
      int64_t slot = order[j];
      float term =
          __fmul_rn(gates ? gates[slot] : 1.0f, load(yd, slot * d + c));
      sum = j == start[t] ? term : __fadd_rn(sum, term);
    }
    store(out, i, sum);
  }
}

template <typename D>
__global__ void __launch_bounds__(kBlockThreads)
    gateDotKernel(const D *yd, const int32_t *tokens, const D *dout,
                  float *dgates, int64_t slots, int64_t numTokens, int64_t d,
                  IdCheck check) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < slots;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = tokens[i];
    float dot = 0.0f;
    if (t >= 0 && !idInRange(check, i, t, numTokens))
      dot = __int_as_float(0x7fc00000);
    else if (t >= 0)
      for (int64_t c = 0; c < d; ++c)
        dot += load(dout, t * d + c) * load(yd, i * d + c);
    dgates[i] = dot;
  }
}

/// The slots of expert e run from offsets[e] to offsets[e + 1], clamped to
/// [0, slots).
__global__ void __launch_bounds__(kBlockThreads)
    scatterGateKernel(const int32_t *tokens, const int32_t *offsets,
                      const float *dgates, float *dscores, int64_t numTokens,
                      int64_t experts, int64_t slots,
                      const float *sigmoidLogits, IdCheck check) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < experts;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t begin = max(int64_t(offsets[e]), int64_t(0));
    int64_t end = min(int64_t(offsets[e + 1]), slots);
    for (int64_t i = begin; i < end; ++i)
      if (tokens[i] >= 0 && idInRange(check, i, tokens[i], numTokens)) {
        int64_t at = int64_t(tokens[i]) * experts + e;
        float grad = dgates[i];
        if (sigmoidLogits) {
          float x = sigmoidLogits[at];
          grad *= 1.0f / (1.0f + expf(-x)) * (1.0f / (1.0f + expf(x)));
        }
        dscores[at] = grad;
      }
  }
}

/// The key of token t for sortByKeyKernel: its id, 0 without ids. An id
/// outside the keys is reported, except a negative one when negatives mark
/// empty slots.
struct IdKey {
  const int32_t *ids;
  IdCheck check;
  bool negativeEmpty;
  __device__ int64_t operator()(int64_t t) const { return ids ? ids[t] : 0; }
  __device__ bool valid(int64_t t, int64_t k, int64_t numKeys) const {
    return !(negativeEmpty && k < 0) && idInRange(check, t, k, numKeys);
  }
};
struct PositionKey {
  int64_t seq;
  __device__ int64_t operator()(int64_t t) const { return t % seq; }
  __device__ bool valid(int64_t, int64_t k, int64_t numKeys) const {
    return k < numKeys;
  }
};

template <typename D> struct ColumnTerm {
  const D *dy;
  int64_t cols;
  __device__ float2 operator()(int64_t r, int64_t c) const {
    return make_float2(load(dy, r * cols + c), 0.0f);
  }
};

Status launched(const char *kernel) { return launchStatus(kernel); }

} // namespace

Status narrowToFloat(const double *in, float *out, cudaStream_t stream) {
  narrowToFloatKernel<<<1, 1, 0, stream>>>(in, out);
  return launched("narrowToFloat");
}

Status clipFactor(const float *norm, double maxNorm, float *scale,
                  cudaStream_t stream) {
  clipFactorKernel<<<1, 1, 0, stream>>>(norm, maxNorm, scale);
  return launched("clipFactor");
}

Status widenBf16(const Bf16 *x, float *y, int64_t n, cudaStream_t stream) {
  auto in = device(x);
  return forEach("widenBf16", n, stream,
                 [=] __device__(int64_t i) { y[i] = load(in, i); });
}

Status narrowToBf16(const float *x, Bf16 *y, int64_t n, cudaStream_t stream) {
  auto out = device(y);
  return forEach("narrowToBf16", n, stream,
                 [=] __device__(int64_t i) { store(out, i, x[i]); });
}

Status fillValues(float *y, int64_t n, float value, cudaStream_t stream) {
  return forEach("fill", n, stream,
                 [=] __device__(int64_t i) { y[i] = value; });
}

Status accumulateGradient(float *accum, const float *grad, float *average,
                          int64_t n, int64_t microStep, int64_t microSteps,
                          cudaStream_t stream) {
  float count = static_cast<float>(microSteps);
  bool last = microStep == microSteps - 1;
  return forEach("accumulate_gradient", n, stream, [=] __device__(int64_t i) {
    // __fdiv_rn: the correctly rounded quotient whatever the build flags.
    float sum = __fadd_rn(accum[i], grad[i]);
    average[i] = __fdiv_rn(sum, count);
    accum[i] = last ? 0.0f : sum;
  });
}

Status broadcastScalar(const float *x, float *y, int64_t n,
                       cudaStream_t stream) {
  return forEach("broadcast", n, stream,
                 [=] __device__(int64_t i) { y[i] = *x; });
}

Status sumValues(const float *x, float *y, int64_t n, cudaStream_t stream) {
  if (Status s = requireNonNegative("reduce_sum", "n", n); !s.ok())
    return s;
  sumValuesKernel<<<1, 1, 0, stream>>>(x, y, n);
  return launched("reduce_sum");
}

Status scaleValues(const float *x, float *y, int64_t n, float factor,
                   cudaStream_t stream) {
  return forEach("scale", n, stream,
                 [=] __device__(int64_t i) { y[i] = x[i] * factor; });
}

Status labelMask(const int32_t *labels, float *y, int64_t n,
                 cudaStream_t stream) {
  return forEach("label_mask", n, stream, [=] __device__(int64_t i) {
    y[i] = labels[i] >= 0 ? 1.0f : 0.0f;
  });
}

Status roundToBf16Values(const float *x, float *y, int64_t n,
                         cudaStream_t stream) {
  return forEach("round_bf16", n, stream,
                 [=] __device__(int64_t i) { y[i] = bf16::nearest(x[i]); });
}

Status routerLogitsBf16(const float *products, const float *bias, float *y,
                        int64_t rows, int64_t cols, cudaStream_t stream) {
  return forEach("router_logits_bf16", rows * cols, stream,
                 [=] __device__(int64_t i) {
                   y[i] = bf16::routerLogit(products[i], bias[i % cols]);
                 });
}

Status routerSoftmaxBf16(const float *x, float *y, int64_t rows, int64_t cols,
                         cudaStream_t stream) {
  return forEach("router_softmax_bf16", rows, stream,
                 [=] __device__(int64_t r) {
                   bf16::routerSoftmaxRow(x + r * cols, y + r * cols, cols);
                 });
}

Status squaredError(const float *prediction, const float *target, float *loss,
                    int64_t n, cudaStream_t stream) {
  if (Status s = requireNonNegative("squared_error", "n", n); !s.ok())
    return s;
  squaredErrorKernel<<<1, 1, 0, stream>>>(prediction, target, loss, n);
  return launched("squared_error");
}

Status routerZLoss(const float *logits, float *loss, int64_t numTokens,
                   int64_t experts, double *scratch, cudaStream_t stream) {
  const char *kernel = "router_z_loss";
  if (Status s = requireNonNegative(kernel, "tokens", numTokens); !s.ok())
    return s;
  if (numTokens > 0)
    zLossRowsKernel<<<gridFor(numTokens), kBlockThreads, 0, stream>>>(
        logits, scratch, numTokens, experts);
  zLossSumKernel<<<1, 1, 0, stream>>>(scratch, loss, numTokens);
  return launchStatus(kernel);
}

Status routerZLossGrad(const float *logits, const float *dloss, float *dlogits,
                       int64_t numTokens, int64_t experts,
                       cudaStream_t stream) {
  if (Status s = requireNonNegative("router_z_loss_grad", "tokens", numTokens);
      !s.ok() || numTokens == 0)
    return s;
  zLossGradKernel<<<gridFor(numTokens), kBlockThreads, 0, stream>>>(
      logits, dloss, dlogits, numTokens, experts);
  return launchStatus("router_z_loss_grad");
}

Status loadBalancingLoss(const float *probs, float *loss, int64_t groups,
                         int64_t tokensPerGroup, int64_t experts, int64_t k,
                         double *scratch, cudaStream_t stream) {
  const char *kernel = "load_balancing_loss";
  int64_t pairs = groups * experts;
  if (Status s = requireNonNegative(kernel, "pairs", pairs); !s.ok())
    return s;
  if (pairs > 0)
    loadBalancingKernel<<<gridFor(pairs), kBlockThreads, 0, stream>>>(
        probs, groups, tokensPerGroup, experts, k, nullptr, scratch);
  loadBalancingSumKernel<<<1, 1, 0, stream>>>(scratch, loss, pairs, experts);
  return launchStatus(kernel);
}

Status loadBalancingLossGrad(const float *probs, const float *dloss,
                             float *dprobs, int64_t groups,
                             int64_t tokensPerGroup, int64_t experts, int64_t k,
                             float *scratch, cudaStream_t stream) {
  const char *kernel = "load_balancing_loss_grad";
  int64_t pairs = groups * experts;
  if (Status s = requireNonNegative(kernel, "pairs", pairs);
      !s.ok() || pairs == 0)
    return s;
  loadBalancingKernel<<<gridFor(pairs), kBlockThreads, 0, stream>>>(
      probs, groups, tokensPerGroup, experts, k, dloss, scratch);
  if (Status s = launchStatus(kernel); !s.ok())
    return s;
  // Every token of a group gets its group's row.
  return forEach(kernel, groups * tokensPerGroup * experts, stream,
                 [=] __device__(int64_t i) {
                   int64_t t = i / experts, e = i % experts;
                   dprobs[i] = scratch[t / tokensPerGroup * experts + e];
                 });
}

template <typename T>
Status binary(const T *a, const T *b, T *y, int64_t n, BinaryOp op,
              cudaStream_t stream) {
  auto l = device(a), r = device(b);
  auto out = device(y);
  return forEach("binary", n, stream, [=] __device__(int64_t i) {
    float u = load(l, i), v = load(r, i);
    store(out, i,
          op == BinaryOp::Add        ? __fadd_rn(u, v)
          : op == BinaryOp::Multiply ? __fmul_rn(u, v)
                                     : __fdiv_rn(u, v));
  });
}

template <typename T>
Status tanhForward(const T *x, T *y, int64_t n, cudaStream_t stream) {
  auto in = device(x);
  auto out = device(y);
  return forEach("tanh", n, stream, [=] __device__(int64_t i) {
    store(out, i, tanhf(load(in, i)));
  });
}

template <typename T>
Status tanhBackward(const T *x, const T *dy, T *dx, int64_t n,
                    cudaStream_t stream) {
  auto in = device(x), g = device(dy);
  auto out = device(dx);
  return forEach("tanh_backward", n, stream, [=] __device__(int64_t i) {
    float e = expf(-2.0f * fabsf(load(in, i)));
    float denominator = 1.0f + e;
    store(out, i, load(g, i) * (4.0f * e / (denominator * denominator)));
  });
}

template <typename T>
Status geluErfForward(const T *x, T *y, int64_t n, cudaStream_t stream) {
  auto in = device(x);
  auto out = device(y);
  return forEach("gelu_erf", n, stream, [=] __device__(int64_t i) {
    store(out, i, geluErf(load(in, i)));
  });
}

template <typename T>
Status geluErfBackward(const T *x, const T *dy, T *dx, int64_t n,
                       cudaStream_t stream) {
  auto in = device(x), g = device(dy);
  auto out = device(dx);
  return forEach("gelu_erf_backward", n, stream, [=] __device__(int64_t i) {
    store(out, i, load(g, i) * geluErfDerivative(load(in, i)));
  });
}

template <typename T>
Status pool(const T *x, const int32_t *ids, T *y, int64_t batch, int64_t seq,
            int64_t d, PoolMode mode, bool normalize, int32_t padId,
            cudaStream_t stream) {
  if (batch == 0 || d == 0)
    return Status::success();
  poolKernel<<<unsigned(batch), kBlockThreads, 0, stream>>>(
      device(x), ids, device(y), seq, d, mode, normalize, padId);
  return launched("pool");
}

template <typename T>
Status argmaxRows(const T *x, int32_t *y, int64_t rows, int64_t cols,
                  cudaStream_t stream) {
  if (Status s = requireNonNegative("argmax", "rows", rows); !s.ok())
    return s;
  if (cols <= 0)
    return Status::error("argmax: rows need at least one column");
  if (rows == 0)
    return Status::success();
  argmaxKernel<<<gridFor(rows), kBlockThreads, 0, stream>>>(device(x), y, rows,
                                                            cols);
  return launched("argmax");
}

template <typename T>
Status takePosition(const T *x, T *y, int64_t batch, int64_t seq, int64_t d,
                    int64_t index, cudaStream_t stream) {
  auto in = device(x);
  auto out = device(y);
  return forEach("take_position", batch * d, stream, [=] __device__(int64_t i) {
    int64_t b = i / d, c = i % d;
    out[i] = in[(b * seq + index) * d + c];
  });
}

template <typename T>
Status takePositionBackward(const T *dy, T *dx, int64_t batch, int64_t seq,
                            int64_t d, int64_t index, cudaStream_t stream) {
  auto in = device(dy);
  auto out = device(dx);
  return forEach("take_position_grad", batch * seq * d, stream,
                 [=] __device__(int64_t i) {
                   int64_t b = i / (seq * d), s = i / d % seq, c = i % d;
                   store(out, i, s == index ? load(in, b * d + c) : 0.0f);
                 });
}

template <typename T>
Status gatherPositions(const T *x, const int32_t *positions, T *y,
                       int64_t batch, int64_t seq, int64_t d, int64_t count,
                       cudaStream_t stream, IdCheck check) {
  auto in = device(x);
  auto out = device(y);
  return forEach("gather_positions", batch * count * d, stream,
                 [=] __device__(int64_t i) {
                   int64_t row = i / d, c = i % d;
                   int64_t p = positions[row];
                   store(out, i,
                         idInRange(check, row, p, seq)
                             ? load(in, (row / count * seq + p) * d + c)
                             : __int_as_float(0x7fc00000));
                 });
}

template <typename T>
Status gatherPositionsBackward(const T *dy, const int32_t *positions, T *dx,
                               int64_t batch, int64_t seq, int64_t d,
                               int64_t count, cudaStream_t stream,
                               IdCheck check) {
  auto in = device(dy);
  auto out = device(dx);
  return forEach("gather_positions_grad", batch * seq * d, stream,
                 [=] __device__(int64_t i) {
                   int64_t b = i / (seq * d), s = i / d % seq, c = i % d;
                   float sum = 0.0f;
                   for (int64_t p = 0; p < count; ++p) {
                     int64_t row = b * count + p;
                     // The first element of each example checks its rows.
                     if (s == 0 && c == 0)
                       idInRange(check, row, positions[row], seq);
                     if (positions[row] == s)
                       sum += load(in, row * d + c);
                   }
                   store(out, i, sum);
                 });
}

template <typename T>
Status embedSum(const int32_t *ids, const int32_t *typeIds, const float *word,
                const float *pos, const float *type, T *y, int64_t batch,
                int64_t seq, int64_t d, int64_t vocab, int64_t typeVocab,
                cudaStream_t stream, IdCheck idsCheck, IdCheck typeIdsCheck) {
  auto out = device(y);
  return forEach("embed", batch * seq * d, stream, [=] __device__(int64_t i) {
    int64_t t = i / d, c = i % d;
    int64_t id = ids[t], typeId = typeIds ? typeIds[t] : 0;
    bool known = idInRange(idsCheck, t, id, vocab);
    known = idInRange(typeIdsCheck, t, typeId, typeVocab) && known;
    float v =
        known ? word[id * d + c] + pos[t % seq * d + c] + type[typeId * d + c]
              : __int_as_float(0x7fc00000);
    store(out, i, v);
  });
}

template <typename T>
Status embedBackward(const int32_t *ids, const int32_t *typeIds, const T *dy,
                     float *dword, float *dpos, float *dtype, int64_t batch,
                     int64_t seq, int64_t d, int64_t vocab, int64_t posRows,
                     int64_t typeVocab, int32_t *scratch, cudaStream_t stream,
                     IdCheck idsCheck, IdCheck typeIdsCheck) {
  const char *kernel = "embed_grad";
  int64_t tokens = batch * seq;
  auto src = device(dy);
  // One table after the other, each with its own start and order arrays.
  auto table = [&](auto key, int64_t numKeys, float *out) -> Status {
    if (!out || numKeys * d == 0)
      return Status::success();
    int32_t *start = scratch, *order = scratch + numKeys + 1;
    scratch = order + tokens;
    sortByKeyKernel<<<1, 1, 0, stream>>>(key, tokens, numKeys, start, order);
    sumByKeyKernel<<<gridFor(numKeys * d), kBlockThreads, 0, stream>>>(
        start, order, src, out, numKeys, d);
    return launchStatus(kernel);
  };
  if (Status s = table(IdKey{ids, idsCheck, false}, vocab, dword); !s.ok())
    return s;
  if (Status s = table(PositionKey{seq}, posRows, dpos); !s.ok())
    return s;
  return table(IdKey{typeIds, typeIdsCheck, false}, typeVocab, dtype);
}

template <typename T>
Status zeroEmptySlots(const int32_t *tokens, T *rows, int64_t slots, int64_t d,
                      cudaStream_t stream) {
  auto out = device(rows);
  return forEach("experts", slots * d, stream, [=] __device__(int64_t i) {
    if (tokens[i / d] < 0)
      store(out, i, 0.0f);
  });
}

template <typename T>
Status dispatchRows(const T *x, const int32_t *tokens, T *xd, int64_t slots,
                    int64_t numTokens, int64_t d, cudaStream_t stream,
                    IdCheck check) {
  auto in = device(x);
  auto out = device(xd);
  return forEach("dispatch", slots * d, stream, [=] __device__(int64_t i) {
    int64_t t = tokens[i / d];
    store(out, i,
          t < 0                                   ? 0.0f
          : idInRange(check, i / d, t, numTokens) ? load(in, t * d + i % d)
                                                  : __int_as_float(0x7fc00000));
  });
}

template <typename T>
Status combineRows(const T *yd, const int32_t *tokens, const float *gates,
                   T *out, int64_t slots, int64_t numTokens, int64_t d,
                   int32_t *scratch, cudaStream_t stream, IdCheck check) {
  const char *kernel = "combine";
  if (Status s = requireNonNegative(kernel, "tokens", numTokens);
      !s.ok() || numTokens * d == 0)
    return s;
  int32_t *start = scratch, *order = scratch + numTokens + 1;
  sortByKeyKernel<<<1, 1, 0, stream>>>(IdKey{tokens, check, true}, slots,
                                       numTokens, start, order);
  combineKernel<<<gridFor(numTokens * d), kBlockThreads, 0, stream>>>(
      start, order, device(yd), gates, device(out), numTokens, d);
  return launchStatus(kernel);
}

template <typename T>
Status combineBackward(const T *yd, const int32_t *tokens, const float *gates,
                       const T *dout, T *dyd, float *dgates, int64_t slots,
                       int64_t numTokens, int64_t d, cudaStream_t stream,
                       IdCheck check) {
  auto upstream = device(dout);
  auto out = device(dyd);
  if (Status s =
          forEach("combine_grad", slots * d, stream,
                  [=] __device__(int64_t i) {
                    int64_t slot = i / d, t = tokens[slot];
                    store(out, i,
                          t < 0 ? 0.0f
                          : idInRange(check, slot, t, numTokens)
                              ? load(upstream, t * d + i % d) * gates[slot]
                              : __int_as_float(0x7fc00000));
                  });
      !s.ok() || slots == 0)
    return s;
  gateDotKernel<<<gridFor(slots), kBlockThreads, 0, stream>>>(
      device(yd), tokens, upstream, dgates, slots, numTokens, d, check);
  return launchStatus("combine_grad");
}

Status scatterGateGrad(const int32_t *tokens, const int32_t *offsets,
                       const float *dgates, float *dscores, int64_t slots,
                       int64_t numTokens, int64_t experts, cudaStream_t stream,
                       const float *sigmoidLogits, IdCheck check) {
  const char *kernel = "scatter_gate_grad";
  if (numTokens * experts == 0)
    return Status::success();
  if (cudaMemsetAsync(dscores, 0, numTokens * experts * sizeof(float),
                      stream) != cudaSuccess)
    return launchStatus(kernel);
  scatterGateKernel<<<gridFor(experts), kBlockThreads, 0, stream>>>(
      tokens, offsets, dgates, dscores, numTokens, experts, slots,
      sigmoidLogits, check);
  return launchStatus(kernel);
}

template <typename T>
Status columnSum(const T *dy, float *db, int64_t rows, int64_t cols,
                 cudaStream_t stream) {
  return columnSums(
      "reduce_rows",
      ColumnTerm<typename DeviceStorage<T>::type>{device(dy), cols}, rows, cols,
      db, nullptr, /*accumulate=*/false, stream);
}

#define MIXER_INSTANTIATE(T)                                                   \
  template Status binary(const T *, const T *, T *, int64_t, BinaryOp,         \
                         cudaStream_t);                                        \
  template Status tanhForward(const T *, T *, int64_t, cudaStream_t);          \
  template Status tanhBackward(const T *, const T *, T *, int64_t,             \
                               cudaStream_t);                                  \
  template Status geluErfForward(const T *, T *, int64_t, cudaStream_t);       \
  template Status geluErfBackward(const T *, const T *, T *, int64_t,          \
                                  cudaStream_t);                               \
  template Status pool(const T *, const int32_t *, T *, int64_t, int64_t,      \
                       int64_t, PoolMode, bool, int32_t, cudaStream_t);        \
  template Status argmaxRows(const T *, int32_t *, int64_t, int64_t,           \
                             cudaStream_t);                                    \
  template Status takePosition(const T *, T *, int64_t, int64_t, int64_t,      \
                               int64_t, cudaStream_t);                         \
  template Status takePositionBackward(const T *, T *, int64_t, int64_t,       \
                                       int64_t, int64_t, cudaStream_t);        \
  template Status gatherPositions(const T *, const int32_t *, T *, int64_t,    \
                                  int64_t, int64_t, int64_t, cudaStream_t,     \
                                  IdCheck);                                    \
  template Status gatherPositionsBackward(const T *, const int32_t *, T *,     \
                                          int64_t, int64_t, int64_t, int64_t,  \
                                          cudaStream_t, IdCheck);              \
  template Status embedSum(const int32_t *, const int32_t *, const float *,    \
                           const float *, const float *, T *, int64_t,         \
                           int64_t, int64_t, int64_t, int64_t, cudaStream_t,   \
                           IdCheck, IdCheck);                                  \
  template Status embedBackward(const int32_t *, const int32_t *, const T *,   \
                                float *, float *, float *, int64_t, int64_t,   \
                                int64_t, int64_t, int64_t, int64_t, int32_t *, \
                                cudaStream_t, IdCheck, IdCheck);               \
  template Status columnSum(const T *, float *, int64_t, int64_t,              \
                            cudaStream_t);                                     \
  template Status zeroEmptySlots(const int32_t *, T *, int64_t, int64_t,       \
                                 cudaStream_t);                                \
  template Status dispatchRows(const T *, const int32_t *, T *, int64_t,       \
                               int64_t, int64_t, cudaStream_t, IdCheck);       \
  template Status combineRows(const T *, const int32_t *, const float *, T *,  \
                              int64_t, int64_t, int64_t, int32_t *,            \
                              cudaStream_t, IdCheck);                          \
  template Status combineBackward(const T *, const int32_t *, const float *,   \
                                  const T *, T *, float *, int64_t, int64_t,   \
                                  int64_t, cudaStream_t, IdCheck);
MIXER_INSTANTIATE(float)
MIXER_INSTANTIATE(Bf16)
#undef MIXER_INSTANTIATE

} // namespace mixer::cuda
