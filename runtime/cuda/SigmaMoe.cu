//===- SigmaMoe.cu - Expert dropout and the entropy regulariser -----------===//
//
// The sigma-MoE router's training kernels. Expert dropout redraws the CPU's
// uniforms (Philox.cuh), one thread per counter block of four elements. The
// entropy regulariser follows cpu::entropyRegularizer's steps: the row
// logsumexps (one thread per token), the log of the batch mean of every
// softmax column (one block per expert: the column maximum, then the sum of
// the shifted exponentials in double in a fixed order), then the loss or the
// gradient rows. No atomics: results repeat bit for bit.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"
#include "runtime/cuda/Philox.cuh"

#include <cmath>

namespace mixer::cuda {
namespace {

using namespace detail;

__global__ void __launch_bounds__(kBlockThreads)
    dropExpertsKernel(const float *x, float *y, int64_t n, uint32_t dropBelow,
                      float fill, uint32_t seed, uint32_t stream,
                      uint32_t step) {
  forEachCounterBits<kBlockThreads>(
      n, seed, stream, step,
      [&](int64_t i, uint32_t bits) { y[i] = bits < dropBelow ? fill : x[i]; });
}

/// lse[t] = float(max + log(sum of expf(x - max))) of row t, kept in double
/// (the CPU keeps these logsumexps as floats).
__global__ void __launch_bounds__(kBlockThreads)
    rowLogSumExpKernel(const float *logits, double *lse, int64_t numTokens,
                       int64_t experts) {
  for (int64_t t = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x;
       t < numTokens; t += int64_t(gridDim.x) * kBlockThreads) {
    const float *row = logits + t * experts;
    float maximum = -INFINITY;
    for (int64_t e = 0; e < experts; ++e)
      maximum = fmaxf(maximum, row[e]);
    float sum = 0.0f;
    for (int64_t e = 0; e < experts; ++e)
      sum += expf(row[e] - maximum);
    lse[t] = static_cast<float>(maximum + log(static_cast<double>(sum)));
  }
}

/// lp[e] = log(mean_t softmax(logits[t])_e) for expert e = blockIdx.x:
/// m + log(sum_t exp(ls[t,e] - m)) - log(numTokens) over the log-softmax
/// ls = x - lse with m its column maximum.
__global__ void __launch_bounds__(kBlockThreads)
    logMeanSoftmaxKernel(const float *logits, const double *lse, double *lp,
                         int64_t numTokens, int64_t experts) {
  __shared__ float maxScratch[kBlockWarps];
  __shared__ double sumScratch[kBlockWarps];
  int64_t e = blockIdx.x;
  float maximum = -INFINITY;
  for (int64_t t = threadIdx.x; t < numTokens; t += kBlockThreads)
    maximum = fmaxf(maximum, logits[t * experts + e] - float(lse[t]));
  maximum = blockMax(maximum, maxScratch);
  double sum = 0.0;
  for (int64_t t = threadIdx.x; t < numTokens; t += kBlockThreads)
    sum += expf(logits[t * experts + e] - float(lse[t]) - maximum);
  sum = blockSum(sum, sumScratch);
  if (threadIdx.x == 0)
    lp[e] = maximum + log(sum) - log(static_cast<double>(numTokens));
}

/// *loss = float(sum_e exp(lp[e]) * lp[e]) in expert order.
__global__ void __launch_bounds__(kBlockThreads)
    negativeEntropyKernel(const double *lp, float *loss, int64_t experts) {
  if (threadIdx.x != 0)
    return;
  double sum = 0.0;
  for (int64_t e = 0; e < experts; ++e)
    sum += exp(lp[e]) * lp[e];
  *loss = static_cast<float>(sum);
}

/// dlogits[t] = dloss / numTokens * p * (lp - sum_e p lp) with p the row
/// softmax normalised by its double sum (cpu::entropyRegularizerGrad).
__global__ void __launch_bounds__(kBlockThreads)
    entropyGradKernel(const float *logits, const double *lp, const float *dloss,
                      float *dlogits, int64_t numTokens, int64_t experts) {
  double scale = static_cast<double>(*dloss) / numTokens;
  for (int64_t t = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x;
       t < numTokens; t += int64_t(gridDim.x) * kBlockThreads) {
    const float *row = logits + t * experts;
    float maximum = -INFINITY;
    for (int64_t e = 0; e < experts; ++e)
      maximum = fmaxf(maximum, row[e]);
    double sum = 0.0, weighted = 0.0;
    for (int64_t e = 0; e < experts; ++e) {
      float p = expf(row[e] - maximum);
      sum += p;
      weighted += p * lp[e];
    }
    double mean = weighted / sum;
    float *grad = dlogits + t * experts;
    for (int64_t e = 0; e < experts; ++e)
      grad[e] = static_cast<float>(scale * expf(row[e] - maximum) / sum *
                                   (lp[e] - mean));
  }
}

/// Checks the router logits of the regulariser: at least one token and
/// expert, and a grid of one block per expert.
Status checkLogits(const char *kernel, int64_t numTokens, int64_t experts) {
  if (numTokens < 1 || experts < 1 || experts > 0x7fffffff)
    return Status::error(std::string(kernel) + ": " +
                         std::to_string(numTokens) + " tokens and " +
                         std::to_string(experts) +
                         " experts, but at least one of each is needed");
  return Status::success();
}

/// The column statistics both regulariser kernels start from: lp in
/// scratch[numTokens .. numTokens + experts).
Status logMeanSoftmax(const char *kernel, const float *logits,
                      int64_t numTokens, int64_t experts, double *scratch,
                      cudaStream_t stream) {
  if (Status s = checkLogits(kernel, numTokens, experts); !s.ok())
    return s;
  rowLogSumExpKernel<<<gridFor(numTokens), kBlockThreads, 0, stream>>>(
      logits, scratch, numTokens, experts);
  logMeanSoftmaxKernel<<<static_cast<unsigned>(experts), kBlockThreads, 0,
                         stream>>>(logits, scratch, scratch + numTokens,
                                   numTokens, experts);
  return launchStatus(kernel);
}

} // namespace

Status dropExperts(const float *x, float *y, int64_t n, double rate, float fill,
                   CounterKey key, cudaStream_t stream) {
  const char *kernel = "drop_experts";
  if (Status s = requireNonNegative(kernel, "n", n); !s.ok())
    return s;
  if (!(rate >= 0.0 && rate < 1.0))
    return Status::error(std::string(kernel) + ": rate " +
                         std::to_string(rate) + " is outside [0, 1)");
  if (n == 0)
    return Status::success();
  // u = bits * 2^-24 < rate exactly when the integer bits < ceil(rate 2^24).
  auto dropBelow = static_cast<uint32_t>(std::ceil(rate * 0x1p24));
  dropExpertsKernel<<<gridFor((n + 3) / 4), kBlockThreads, 0, stream>>>(
      x, y, n, dropBelow, fill, static_cast<uint32_t>(key.seed),
      static_cast<uint32_t>(key.stream), static_cast<uint32_t>(key.step));
  return launchStatus(kernel);
}

Status entropyRegularizer(const float *logits, float *loss, int64_t numTokens,
                          int64_t experts, double *scratch,
                          cudaStream_t stream) {
  const char *kernel = "entropy_regularizer";
  if (Status s =
          logMeanSoftmax(kernel, logits, numTokens, experts, scratch, stream);
      !s.ok())
    return s;
  negativeEntropyKernel<<<1, kBlockThreads, 0, stream>>>(scratch + numTokens,
                                                         loss, experts);
  return launchStatus(kernel);
}

Status entropyRegularizerGrad(const float *logits, const float *dloss,
                              float *dlogits, int64_t numTokens,
                              int64_t experts, double *scratch,
                              cudaStream_t stream) {
  const char *kernel = "entropy_regularizer_grad";
  if (Status s =
          logMeanSoftmax(kernel, logits, numTokens, experts, scratch, stream);
      !s.ok())
    return s;
  entropyGradKernel<<<gridFor(numTokens), kBlockThreads, 0, stream>>>(
      logits, scratch + numTokens, dloss, dlogits, numTokens, experts);
  return launchStatus(kernel);
}

} // namespace mixer::cuda
