//===- Simd.h - Portable vector math for the CPU kernels --------*- C++ -*-===//
//
// Sixteen-lane float vectors (GCC/Clang vector extensions, lowered to AVX-512,
// AVX2 or SSE by -march=native) and the transcendental functions the kernels
// need. The functions are branch-free lane-wise polynomials, so a value gets
// the same result whether it sits in a full vector or in a partial tail.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_SIMD_H
#define MIXER_RUNTIME_CPU_SIMD_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>
#include <cstring>

namespace mixer::cpu::simd {

/// Lanes per vector.
constexpr int64_t kLanes = 16;

typedef float VecF __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VecI __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef uint32_t VecU __attribute__((vector_size(kLanes * sizeof(uint32_t))));

inline VecF splat(float value) { return VecF{} + value; }

inline VecF load(const float *p) {
  VecF v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store(float *p, VecF v) { std::memcpy(p, &v, sizeof(v)); }

/// Loads the first `n` (< kLanes) values; the other lanes get `fill`.
inline VecF loadPartial(const float *p, int64_t n, float fill = 0.0f) {
  VecF v = splat(fill);
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}

/// Stores the first `n` (< kLanes) lanes.
inline void storePartial(float *p, VecF v, int64_t n) {
  std::memcpy(p, &v, n * sizeof(float));
}

inline VecF min(VecF a, VecF b) { return a < b ? a : b; }
inline VecF max(VecF a, VecF b) { return a > b ? a : b; }

/// Sum of the lanes, in a fixed pairwise order.
inline float reduceAdd(VecF v) {
  float lanes[kLanes];
  std::memcpy(lanes, &v, sizeof(v));
  for (int64_t width = kLanes / 2; width > 0; width /= 2)
    for (int64_t i = 0; i < width; ++i)
      lanes[i] += lanes[i + width];
  return lanes[0];
}

inline float reduceMax(VecF v) {
  float lanes[kLanes];
  std::memcpy(lanes, &v, sizeof(v));
  float m = lanes[0];
  for (int64_t i = 1; i < kLanes; ++i)
    m = lanes[i] > m ? lanes[i] : m;
  return m;
}

/// exp(x) within a few ulp for x <= 88; inputs below the smallest normal
/// result give exactly 0, inputs above 88 are clamped to 88.
inline VecF exp(VecF x) {
  const VecF lowest = splat(-87.33654f);
  VecF xc = min(max(x, lowest), splat(88.0f));
  // x = n*ln2 + r with |r| <= ln2/2; n rounded to nearest by the 1.5*2^23
  // trick.
  const VecF shifter = splat(12582912.0f);
  VecF n = (xc * 1.44269504088896341f + shifter) - shifter;
  VecF r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // Minimax polynomial of exp on [-ln2/2, ln2/2].
  VecF p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  VecI bits = (__builtin_convertvector(n, VecI) + 127) << 23;
  VecF result = p * (VecF)bits;
  return x < lowest ? splat(0.0f) : result;
}

/// tanh(x): the odd Taylor series up to x^19 for |x| < 0.625 (truncation below
/// 1e-8 relative) and (1 - e) / (1 + e) with e = exp(-2|x|) elsewhere.
inline VecF tanh(VecF x) {
  VecF ax = x < 0.0f ? -x : x;
  VecF x2 = x * x;
  VecF s = splat(-443861162.0f / 1856156927625.0f);
  s = s * x2 + 6404582.0f / 10854718875.0f;
  s = s * x2 + -929569.0f / 638512875.0f;
  s = s * x2 + 21844.0f / 6081075.0f;
  s = s * x2 + -1382.0f / 155925.0f;
  s = s * x2 + 62.0f / 2835.0f;
  s = s * x2 + -17.0f / 315.0f;
  s = s * x2 + 2.0f / 15.0f;
  s = s * x2 + -1.0f / 3.0f;
  VecF small = x + x * x2 * s;
  VecF e = exp(-2.0f * ax);
  VecF large = (1.0f - e) / (1.0f + e);
  large = x < 0.0f ? -large : large;
  return ax < 0.625f ? small : large;
}

/// GELU, tanh approximation, as x * sigmoid(2u) with
/// u = sqrt(2/pi) (x + 0.044715 x^3), which equals 0.5 x (1 + tanh(u)) and
/// does not cancel for negative x.
inline VecF gelu(VecF x) {
  VecF u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp(-2.0f * u));
}

inline VecF relu(VecF x) { return x > 0.0f ? x : splat(0.0f); }

/// erfc(z) with relative error below 1.2e-7 everywhere (the Chebyshev fit of
/// Numerical Recipes, erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + |z| / 2),
/// and 2 - erfc(-z) for z < 0).
inline VecF erfc(VecF z) {
  VecF az = z < 0.0f ? -z : z;
  VecF t = 1.0f / (1.0f + 0.5f * az);
  VecF p = splat(0.17087277f);
  p = p * t + -0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t + -1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t + -0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t + -1.26551223f;
  VecF y = t * exp(p - az * az);
  return z < 0.0f ? 2.0f - y : y;
}

/// The standard normal distribution function Phi(x) = erfc(-x / sqrt 2) / 2,
/// accurate relative to itself for negative x too.
inline VecF normalCdf(VecF x) { return 0.5f * erfc(-0.7071067811865476f * x); }

/// Exact GELU: x * Phi(x).
inline VecF geluErf(VecF x) { return x * normalCdf(x); }

/// d/dx of x * Phi(x): Phi(x) + x phi(x).
inline VecF geluErfDerivative(VecF x) {
  return normalCdf(x) + x * (0.3989422804014327f * exp(-0.5f * x * x));
}

/// Applies `act` lane-wise.
inline VecF activate(VecF x, Activation act) {
  switch (act) {
  case Activation::None:
    return x;
  case Activation::Gelu:
    return gelu(x);
  case Activation::Tanh:
    return tanh(x);
  case Activation::Relu:
    return relu(x);
  case Activation::GeluErf:
    return geluErf(x);
  }
  return x;
}

/// Calls `body(offset, count)` over [0, n) in chunks of kLanes; the last chunk
/// may be partial (count < kLanes).
template <typename Body> inline void forChunks(int64_t n, Body &&body) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    body(i, kLanes);
  if (i < n)
    body(i, n - i);
}

/// Loads a full or partial chunk.
inline VecF loadChunk(const float *p, int64_t count, float fill = 0.0f) {
  return count == kLanes ? load(p) : loadPartial(p, count, fill);
}

/// v with the lanes from `count` on set to zero.
inline VecF keepFirst(VecF v, int64_t count) {
  if (count == kLanes)
    return v;
  VecF kept = splat(0.0f);
  std::memcpy(&kept, &v, count * sizeof(float));
  return kept;
}

/// Stores a full or partial chunk.
inline void storeChunk(float *p, VecF v, int64_t count) {
  if (count == kLanes)
    store(p, v);
  else
    storePartial(p, v, count);
}

/// y = exp(x - max(x)) over a row of n values (y may alias x); returns the
/// sum of y. This is a softmax before its normalisation.
inline float exponentiateRow(const float *x, float *y, int64_t n) {
  VecF maxima = splat(-__builtin_inff());
  forChunks(n, [&](int64_t i, int64_t count) {
    maxima = max(maxima, loadChunk(x + i, count, -__builtin_inff()));
  });
  float rowMax = reduceMax(maxima);
  VecF sum = splat(0.0f);
  forChunks(n, [&](int64_t i, int64_t count) {
    // Tail lanes load as -inf so that they add exp(-inf) = 0 to the sum.
    VecF e = exp(loadChunk(x + i, count, -__builtin_inff()) - rowMax);
    storeChunk(y + i, e, count);
    sum += e;
  });
  return reduceAdd(sum);
}

/// y[i] = x[i] * factor over n values (y may alias x).
inline void scaleRow(const float *x, float *y, int64_t n, float factor) {
  forChunks(n, [&](int64_t i, int64_t count) {
    storeChunk(y + i, loadChunk(x + i, count) * factor, count);
  });
}

} // namespace mixer::cpu::simd

#endif // MIXER_RUNTIME_CPU_SIMD_H
