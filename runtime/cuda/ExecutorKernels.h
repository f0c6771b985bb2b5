//===- ExecutorKernels.h - Glue kernels of the CUDA executor ----*- C++ -*-===//
//
// Small device kernels that adapt the plan's value types to the kernel
// library's (Kernels.h): the plan's norm is an F32 scalar where globalNorm
// writes a double, and the clipping factor comes from that F32 scalar as
// the CPU executor computes it. One thread each; they enqueue on `stream`.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_EXECUTORKERNELS_H
#define MIXER_RUNTIME_CUDA_EXECUTORKERNELS_H

#include "runtime/cuda/Kernels.h"

namespace mixer::cuda {

/// *out = float(*in) (round to nearest).
Status narrowToFloat(const double *in, float *out, cudaStream_t stream);

/// *scale = float(maxNorm / double(*norm)) when double(*norm) >= maxNorm,
/// else 1: the CPU adamw kernel's clipping factor, bit for bit.
Status clipFactor(const float *norm, double maxNorm, float *scale,
                  cudaStream_t stream);

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_EXECUTORKERNELS_H
