//===- Activation.cuh - GELU of the CUDA kernels ----------------*- CUDA
//-*-===//
//
// GELU is the tanh approximation, as every CPU kernel computes it
// (cpu::activation, cpu::activationBackward); the bias + GELU kernels and
// the grouped experts' epilogues share it.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_ACTIVATION_CUH
#define MIXER_RUNTIME_CUDA_ACTIVATION_CUH

#include <cuda_runtime.h>

namespace mixer::cuda::detail {

constexpr float kGeluC = 0.7978845608028654f; // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

/// GELU(x) = x / 2 (1 + tanh(c (x + a x^3))).
__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluC * (x + kGeluA * x * x * x)));
}

/// d/dx of GELU(x) = x * s with s = sigmoid(2u), u = c (x + a x^3):
/// s + 2 x s (1 - s) u', where 1 - s = e s with e = exp(-2u) does not cancel
/// (the CPU kernel's form).
__device__ __forceinline__ float geluDerivative(float x) {
  float x2 = x * x;
  float e = expf(-2.0f * kGeluC * (x + kGeluA * x * x2));
  float s = 1.0f / (1.0f + e);
  float du = kGeluC * (1.0f + 3.0f * kGeluA * x2);
  return s + 2.0f * x * s * (e * s) * du;
}

/// Exact GELU, x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2 (cpu::activation
/// with GeluErf).
__device__ __forceinline__ float geluErf(float x) {
  return 0.5f * x * erfcf(-0.7071067811865476f * x);
}

/// d/dx of x * Phi(x): Phi(x) + x phi(x).
__device__ __forceinline__ float geluErfDerivative(float x) {
  return 0.5f * erfcf(-0.7071067811865476f * x) +
         x * (0.3989422804014327f * expf(-0.5f * x * x));
}

} // namespace mixer::cuda::detail

#endif // MIXER_RUNTIME_CUDA_ACTIVATION_CUH
