//===- KernelTable.cpp - Plan kernels bound to the CUDA kernels -----------===//
//
// The CUDA kernel table, joined from the factories of each kernel family
// (KernelTable<Family>.cpp), and the host helpers they share.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTable.h"
#include "runtime/cuda/KernelTableFamilies.h"

#include <string>
#include <vector>

namespace mixer::cuda {

bool activationType(StepContext &c, const Arg &arg, DType &dtype) {
  dtype = arg.value->dtype;
  return c.check(dtype == DType::F32 || dtype == DType::BF16,
                 arg.role + " is " + exec::describe(arg.value->shape, dtype) +
                     " but the CUDA kernel needs F32 or BF16");
}

bool hostScalar(StepContext &c, const Arg &arg, DType dtype) {
  return c.shape(arg, dtype, {}) &&
         c.check(arg.value->storage == exec::StorageKind::Input,
                 arg.role + " must be a plan input: the CUDA kernel reads it "
                            "on the host");
}

bool readNoiseCounter(StepContext &c, const Arg &step, const Arg &micro,
                      exec::NoiseCounter &counter) {
  return counter.read(c, step, micro) &&
         (!step.value || hostScalar(c, step, DType::I32)) &&
         (!micro.value || hostScalar(c, micro, DType::I32));
}

Expected<int32_t> noiseCounterAt(const exec::NoiseCounter &counter,
                                 const LaunchContext &ctx) {
  return counter.at(
      hostValue<int32_t>(ctx, counter.step),
      counter.microStep < 0 ? 0 : hostValue<int32_t>(ctx, counter.microStep));
}

Status copyOf(const void *from, void *to, int64_t bytes, cudaStream_t stream) {
  cudaError_t error =
      cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, stream);
  if (error != cudaSuccess)
    return Status::error(std::string("copy failed: ") +
                         cudaGetErrorString(error));
  return Status::success();
}

int64_t alignedFloats(int64_t floats) { return (floats + 63) / 64 * 64; }

Expected<const float *> widened(bool bf16, void *value, float *scratch,
                                int64_t n, cudaStream_t stream) {
  if (!bf16)
    return static_cast<const float *>(value);
  if (Status status = widenBf16(as<Bf16>(value), scratch, n, stream); !status)
    return status;
  return static_cast<const float *>(scratch);
}

int64_t bf16Floats(int64_t n) { return alignedFloats((n + 1) / 2); }

Status narrowed(bool bf16, const float *result, void *value, int64_t n,
                cudaStream_t stream) {
  return bf16 ? narrowToBf16(result, as<Bf16>(value), n, stream)
              : Status::success();
}

Expected<DeviceStep> prepareBinary(StepContext &c, BinaryOp op) {
  const Arg &a = c.in(0), &b = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, a, dtype) || !c.minRank(a, dtype, 0) ||
      !c.shape(b, dtype, a.value->shape) || !c.shape(y, dtype, a.value->shape))
    return c.takeError();
  int64_t n = a.value->numel;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, l = a.slot, r = b.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return binary(as<T>(v[l]), as<T>(v[r]), as<T>(v[o]), n, op, ctx.stream);
    });
  });
}

namespace {

/// Every plan kernel with a CUDA implementation, family by family.
const std::vector<TableEntry> &kernelTable() {
  static const std::vector<TableEntry> table = [] {
    std::vector<TableEntry> entries;
    for (auto family :
         {denseNormKernels, mixingKernels, attentionKernels, moeKernels,
          headsLossesKernels, trainingKernels, collectiveKernels})
      for (const TableEntry &entry : family())
        entries.push_back(entry);
    return entries;
  }();
  return table;
}

const TableEntry *findEntry(Kernel kernel) {
  for (const TableEntry &entry : kernelTable())
    if (entry.kernel == kernel)
      return &entry;
  return nullptr;
}

} // namespace

std::vector<Kernel> cudaKernels() {
  std::vector<Kernel> kernels;
  for (const TableEntry &entry : kernelTable())
    kernels.push_back(entry.kernel);
  return kernels;
}

Expected<DeviceStep> prepareDeviceStep(const exec::Plan &plan, size_t index,
                                       int64_t &scratchBytes) {
  const exec::Step &step = plan.steps[index];
  const TableEntry *entry = findEntry(step.kernel);
  if (!entry)
    return Status::error(plan.path + ": cuda: kernel '" +
                         std::string(kernelName(step.kernel)) + "' of step " +
                         std::to_string(index) +
                         " has no CUDA implementation yet");
  StepContext context(plan, index, scratchBytes);
  return entry->prepare(context);
}

} // namespace mixer::cuda
