//===- Bf16Router.h - The bfloat16 router's arithmetic ----------*- C++ -*-===//
//
// The steps of a router with `router_dtype: "bfloat16"` after its product
// (docs/parameters.md): every step's result rounded to the nearest bfloat16,
// ties to even, sums accumulated in float32. Host and device code (the CPU
// and CUDA kernels) call these same functions, so both targets compute the
// same bits: only IEEE additions, multiplications, one division and fused
// multiply-adds written out, none left to the compiler's contraction.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_BF16ROUTER_H
#define MIXER_RUNTIME_SUPPORT_BF16ROUTER_H

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MIXER_HOST_DEVICE __host__ __device__
#else
#define MIXER_HOST_DEVICE
#endif

namespace mixer::bf16 {

/// The bits of a float.
MIXER_HOST_DEVICE inline uint32_t bitsOf(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

/// The float of some bits.
MIXER_HOST_DEVICE inline float floatOf(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

/// `x` rounded to the nearest bfloat16, ties to even, as a float; NaNs stay
/// NaNs (quieted), subnormals round like any other value.
MIXER_HOST_DEVICE inline float nearest(float x) {
  uint32_t bits = bitsOf(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return floatOf((bits | 0x00400000u) & 0xffff0000u);
  return floatOf((bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u);
}

/// exp(z) rounded to float, from a double evaluation whose error (below
/// 1e-16 relative) is far under a float's rounding step: Cody-Waite range
/// reduction by ln 2 and a degree-13 Taylor polynomial by fused
/// multiply-adds. The same bits on every target, unlike the libraries'
/// expf.
MIXER_HOST_DEVICE inline float exponential(float z) {
  if (z != z)
    return z;
  if (z > 89.0f)
    return INFINITY;
  if (z < -104.0f) // below half the smallest subnormal float
    return 0.0f;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kInvLn2 = 1.44269504088896338700e+00;
  double n = ::rint(static_cast<double>(z) * kInvLn2);
  double r = ::fma(-n, kLn2Hi, static_cast<double>(z));
  r = ::fma(-n, kLn2Lo, r);
  // 1 + r + r²/2! + ... + r¹³/13! by Horner's rule.
  double p = 1.0 / 6227020800;
  p = ::fma(p, r, 1.0 / 479001600);
  p = ::fma(p, r, 1.0 / 39916800);
  p = ::fma(p, r, 1.0 / 3628800);
  p = ::fma(p, r, 1.0 / 362880);
  p = ::fma(p, r, 1.0 / 40320);
  p = ::fma(p, r, 1.0 / 5040);
  p = ::fma(p, r, 1.0 / 720);
  p = ::fma(p, r, 1.0 / 120);
  p = ::fma(p, r, 1.0 / 24);
  p = ::fma(p, r, 1.0 / 6);
  p = ::fma(p, r, 1.0 / 2);
  p = ::fma(p, r, 1.0);
  p = ::fma(p, r, 1.0);
  // 2^n times p; n is within [-150, 129], so 2^n is a normal double.
  uint64_t scaleBits = static_cast<uint64_t>(static_cast<int64_t>(n) + 1023)
                       << 52;
  double scale;
#if defined(__CUDA_ARCH__)
  scale = __longlong_as_double(static_cast<long long>(scaleBits));
#else
  std::memcpy(&scale, &scaleBits, sizeof scale);
#endif
  double y = p * scale;
  // From halfway between the largest float and 2^128 on, float rounds to
  // infinity.
  constexpr double kOverflow = 0x1.ffffffp127;
  return y >= kOverflow ? INFINITY : static_cast<float>(y);
}

/// A router logit from its product `x · W` of bfloat16 operands
/// (accumulated in float32) and its bias: bf16(bf16(product) + bf16(bias)).
MIXER_HOST_DEVICE inline float routerLogit(float product, float bias) {
  return nearest(nearest(product) + nearest(bias));
}

/// The softmax of one row of `n` router logits, op by op in bfloat16:
/// z = bf16(l − max l), e = bf16(exp z), s = bf16(Σ e) summed in float32 in
/// index order, p = bf16(e · (1/s)) with 1/s in float32. `probs` may alias
/// `logits`.
MIXER_HOST_DEVICE inline void routerSoftmaxRow(const float *logits,
                                               float *probs, int64_t n) {
  float maximum = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    maximum = logits[i] > maximum ? logits[i] : maximum;
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    probs[i] = nearest(exponential(nearest(logits[i] - maximum)));
    sum += probs[i];
  }
  float inverse = 1.0f / nearest(sum);
  for (int64_t i = 0; i < n; ++i)
    probs[i] = nearest(probs[i] * inverse);
}

} // namespace mixer::bf16

#endif // MIXER_RUNTIME_SUPPORT_BF16ROUTER_H
