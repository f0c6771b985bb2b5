//===- KernelTableFamilies.h - The CUDA kernel table by family -*- C++ -*-===//
//
// What the files of the CUDA kernel table share: the entry type, the host
// helpers the factories use, and the factories of each kernel family
// (KernelTable<Family>.cpp), which KernelTable.cpp joins into one table.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_KERNELTABLEFAMILIES_H
#define MIXER_RUNTIME_CUDA_KERNELTABLEFAMILIES_H

#include "runtime/cuda/ExecutorKernels.h"
#include "runtime/cuda/KernelTable.h"
#include "runtime/exec/StepContext.h"

#include <cuda_runtime.h>

#include <vector>

namespace mixer::cuda {

using exec::Arg;
using exec::DType;
using exec::StepContext;

/// `p` as a pointer to T.
template <typename T> T *as(void *p) { return static_cast<T *>(p); }

/// The host copy of the plan input at `slot`, a T.
template <typename T> T hostValue(const LaunchContext &ctx, int64_t slot) {
  return *static_cast<const T *>(ctx.host[slot]);
}

/// Calls `launch` with a null pointer of the activation element type.
template <typename Launch> Status byPrecision(bool bf16, Launch &&launch) {
  return bf16 ? launch(static_cast<Bf16 *>(nullptr))
              : launch(static_cast<float *>(nullptr));
}

/// Reads the activation dtype of `arg`: F32 or BF16.
bool activationType(StepContext &c, const Arg &arg, DType &dtype);

/// `arg`, a scalar the kernel takes as an argument, is a plan input (whose
/// host copy the executor keeps).
bool hostScalar(StepContext &c, const Arg &arg, DType dtype);

/// Reads the noise counter of a noise kernel from its operands `step` and
/// `micro` (exec::NoiseCounter): plan inputs, which the kernel reads on the
/// host.
bool readNoiseCounter(StepContext &c, const Arg &step, const Arg &micro,
                      exec::NoiseCounter &counter);

/// This run's counter of a noise kernel, formed on the host from its inputs.
Expected<int32_t> noiseCounterAt(const exec::NoiseCounter &counter,
                                 const LaunchContext &ctx);

Status copyOf(const void *from, void *to, int64_t bytes, cudaStream_t stream);

/// Floats of scratch from `offset` on, rounded up to 256 bytes (cuBLASLt's
/// preferred alignment).
int64_t alignedFloats(int64_t floats);

/// The fp32 view of an activation operand: the value itself in an fp32 step,
/// else its widened copy at `scratch` (bf16 is storage only, the product
/// runs on the widened values).
Expected<const float *> widened(bool bf16, void *value, float *scratch,
                                int64_t n, cudaStream_t stream);

/// Floats of scratch holding `n` bf16 values, aligned as alignedFloats.
int64_t bf16Floats(int64_t n);

/// Rounds the fp32 `result` of a bf16 step into its activation `value`.
Status narrowed(bool bf16, const float *result, void *value, int64_t n,
                cudaStream_t stream);

/// y = op(a, b) over operands and result of one shape and activation dtype.
Expected<DeviceStep> prepareBinary(StepContext &c, BinaryOp op);

/// A plan kernel with its factory.
struct TableEntry {
  Kernel kernel;
  Expected<DeviceStep> (*prepare)(StepContext &);
};

/// The factories of each family of Kernels.def.
std::vector<TableEntry> denseNormKernels();
std::vector<TableEntry> mixingKernels();
std::vector<TableEntry> attentionKernels();
std::vector<TableEntry> moeKernels();
std::vector<TableEntry> headsLossesKernels();
std::vector<TableEntry> trainingKernels();
std::vector<TableEntry> collectiveKernels();

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_KERNELTABLEFAMILIES_H
