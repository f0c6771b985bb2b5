//===- KernelTableFamilies.h - The CPU kernel table by family ---*- C++ -*-===//
//
// What the files of the CPU kernel table share: the entry type, the pointer
// casts the prepared steps use, and the factories of each kernel family
// (KernelTable<Family>.cpp), which KernelTable.cpp joins into one table.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_KERNELTABLEFAMILIES_H
#define MIXER_RUNTIME_CPU_KERNELTABLEFAMILIES_H

#include "runtime/cpu/KernelTable.h"
#include "runtime/exec/StepContext.h"

#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace mixer::cpu {

using exec::Arg;
using exec::StepContext;
using exec::ValuePointers;
using io::DType;

inline float *f32(void *p) { return static_cast<float *>(p); }
inline int32_t *i32(void *p) { return static_cast<int32_t *>(p); }

/// This run's counter of a noise kernel (exec::NoiseCounter::at of the
/// step's inputs); throws KernelError for a micro-step outside the update.
int32_t noiseCounterAt(const exec::NoiseCounter &counter, ValuePointers v);

/// A step's own bytes, 64-byte aligned (packed bf16 weights).
class AlignedBytes {
public:
  explicit AlignedBytes(int64_t bytes)
      : memory(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64)) {
    if (!memory)
      throw std::bad_alloc();
  }
  void *get() const { return memory.get(); }

private:
  struct Free {
    void operator()(void *p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> memory;
};

/// The dtype of an activation operand of a kernel with bf16 products: BF16
/// where the plan stores it so, else F32.
inline DType activationType(const Arg &arg) {
  return arg.value && arg.value->dtype == DType::BF16 ? DType::BF16
                                                      : DType::F32;
}

/// The communicator of the step's `group`; fails the step when the executor
/// has none.
comm::Communicator *groupOf(StepContext &c, const Groups &groups);

/// Throws the message of a failed collective.
void throwIfFailed(const Status &status);

/// A plan kernel with its factory; a collective's factory also takes the
/// communicators.
struct KernelEntry {
  Kernel kernel;
  Expected<StepFunction> (*prepare)(StepContext &) = nullptr;
  Expected<StepFunction> (*prepareCollective)(StepContext &,
                                              const Groups &) = nullptr;
};

/// The factories of each family of Kernels.def.
std::vector<KernelEntry> denseNormKernels();
std::vector<KernelEntry> mixingKernels();
std::vector<KernelEntry> attentionKernels();
std::vector<KernelEntry> moeKernels();
std::vector<KernelEntry> headsLossesKernels();
std::vector<KernelEntry> trainingKernels();
std::vector<KernelEntry> collectiveKernels();

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_KERNELTABLEFAMILIES_H
