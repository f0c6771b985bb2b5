//===- KernelTable.cpp - Plan steps bound to CPU kernels ------------------===//

#include "runtime/cpu/KernelTable.h"
#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/Kernels.h"

#include <new>
#include <vector>

namespace mixer::cpu {

namespace {

/// Every plan kernel with its factory, family by family.
const std::vector<KernelEntry> &kernelTable() {
  static const std::vector<KernelEntry> table = [] {
    std::vector<KernelEntry> entries;
    for (auto family :
         {denseNormKernels, mixingKernels, attentionKernels, moeKernels,
          headsLossesKernels, trainingKernels, collectiveKernels})
      for (const KernelEntry &entry : family())
        entries.push_back(entry);
    return entries;
  }();
  return table;
}

const KernelEntry *findEntry(Kernel kernel) {
  for (const KernelEntry &entry : kernelTable())
    if (entry.kernel == kernel)
      return &entry;
  return nullptr;
}

} // namespace

int32_t noiseCounterAt(const exec::NoiseCounter &counter, ValuePointers v) {
  Expected<int32_t> value =
      counter.at(*i32(v[counter.step]),
                 counter.microStep < 0 ? 0 : *i32(v[counter.microStep]));
  if (!value)
    throw KernelError{value.message()};
  return *value;
}

Expected<StepFunction> prepareStep(const exec::Plan &plan, size_t index,
                                   int64_t &scratchBytes,
                                   const Groups &groups) {
  const KernelEntry *entry = findEntry(plan.steps[index].kernel);
  std::string where = exec::describeStep(plan, index);
  if (!entry)
    return Status::error(where + ": the CPU runtime has no such kernel");
  StepContext context(plan, index, scratchBytes);
  if (groups.world)
    context.setWorld(groups.world->rank(), groups.world->size());
  // Kernel state (FFT plans) is allocated here and may fail.
  try {
    return entry->prepareCollective ? entry->prepareCollective(context, groups)
                                    : entry->prepare(context);
  } catch (const KernelError &error) {
    return Status::error(where + ": " + error.message);
  } catch (const std::bad_alloc &) {
    return Status::error(where + ": out of memory preparing the kernel");
  }
}

std::vector<Kernel> cpuKernels() {
  std::vector<Kernel> kernels;
  for (const KernelEntry &entry : kernelTable())
    kernels.push_back(entry.kernel);
  return kernels;
}

} // namespace mixer::cpu
