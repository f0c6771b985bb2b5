//===- KernelTableTraining.cpp - Training steps on CUDA -------------------===//
//
// The factories of the CUDA kernel table for the Training family of
// Kernels.def: training noise, gradient accumulation and the optimizer update.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

#include <cmath>
#include <string>
#include <type_traits>

namespace mixer::cuda {

namespace {

Expected<DeviceStep> prepareRandomScale(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &y = c.out(0);
  bool dropout;
  double rate;
  int64_t stream;
  DType dtype;
  exec::NoiseCounter counter;
  if (!readRandomScale(c, dropout, rate, stream) ||
      !activationType(c, x, dtype) || !hostScalar(c, seed, DType::I32) ||
      !readNoiseCounter(c, c.in(2), c.in(3), counter) ||
      !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel, bytes = x.value->bytes;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, k = seed.slot,
                     o = y.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    int32_t key = hostValue<int32_t>(ctx, k);
    // A negative seed evaluates: no noise.
    if (key < 0)
      return copyOf(v[a], v[o], bytes, ctx.stream);
    Expected<int32_t> at = noiseCounterAt(counter, ctx);
    if (!at)
      return at.takeStatus();
    CounterKey draws{key, stream, *at};
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return randomScale(as<T>(v[a]), as<T>(v[o]), n, dropout, rate, draws,
                         ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareGlobalNorm(StepContext &c) {
  const Arg &norm = c.out(0);
  std::vector<std::pair<int64_t, int64_t>> tensors; // (slot, elements)
  for (size_t i = 0; i < c.numOperands(); ++i) {
    if (!c.minRank(c.in(i), DType::F32, 0))
      return c.takeError();
    tensors.emplace_back(c.in(i).slot, c.in(i).value->numel);
  }
  if (!c.shape(norm, DType::F32, {}))
    return c.takeError();
  // The double sum of squares, narrowed into the plan's F32 norm.
  int64_t sum = c.scratch(2);
  return DeviceStep([=, o = norm.slot](const LaunchContext &ctx) {
    std::vector<ConstValues> values;
    values.reserve(tensors.size());
    for (auto [slot, n] : tensors)
      values.emplace_back(as<float>(ctx.device[slot]), n);
    if (Status status =
            globalNorm(values, as<double>(ctx.device[sum]), ctx.stream);
        !status)
      return status;
    return narrowToFloat(as<double>(ctx.device[sum]), as<float>(ctx.device[o]),
                         ctx.stream);
  });
}

/// The host value of input micro_step at `slot`, checked against
/// `microSteps`.
Expected<int32_t> microStepOf(const LaunchContext &ctx, int64_t slot,
                              int64_t microSteps) {
  int32_t micro = hostValue<int32_t>(ctx, slot);
  if (Status valid = exec::checkMicroStep(micro, microSteps); !valid)
    return valid;
  return micro;
}

Expected<DeviceStep> prepareAccumulateGradient(StepContext &c) {
  const Arg &grad = c.in(0), &micro = c.in(1), &accum = c.out(0),
            &average = c.out(1);
  int64_t microSteps;
  if (!exec::checkAccumulateGradient(c, microSteps) ||
      !hostScalar(c, micro, DType::I32))
    return c.takeError();
  int64_t n = grad.value->numel;
  return DeviceStep([=, g = grad.slot, m = micro.slot, a = accum.slot,
                     o = average.slot](const LaunchContext &ctx) -> Status {
    Expected<int32_t> index = microStepOf(ctx, m, microSteps);
    if (!index)
      return index.takeStatus();
    void *const *v = ctx.device;
    return accumulateGradient(as<float>(v[a]), as<float>(v[g]), as<float>(v[o]),
                              n, *index, microSteps, ctx.stream);
  });
}

Expected<DeviceStep> prepareAdamW(StepContext &c) {
  const Arg &grad = c.in(0), &lr = c.in(1), &step = c.in(2), &norm = c.in(3),
            &micro = c.in(4);
  const Arg &param = c.out(0), &m = c.out(1), &v = c.out(2);
  AdamWConfig config;
  double maxNorm;
  int64_t microSteps;
  if (!checkAdamW(c, config, maxNorm, microSteps) ||
      !hostScalar(c, lr, DType::F32) || !hostScalar(c, step, DType::I32) ||
      (micro.value && !hostScalar(c, micro, DType::I32)))
    return c.takeError();
  int64_t n = param.value->numel;
  int64_t factor = c.scratch(1);
  return DeviceStep([=, g = grad.slot, l = lr.slot, s = step.slot,
                     gn = norm.slot, mi = micro.slot, p = param.slot,
                     ms = m.slot, vs = v.slot](const LaunchContext &ctx) {
    void *const *d = ctx.device;
    // Only the last micro-step of an update applies it.
    if (microSteps > 1) {
      Expected<int32_t> index = microStepOf(ctx, mi, microSteps);
      if (!index)
        return index.takeStatus();
      if (*index != microSteps - 1)
        return Status::success();
    }
    int32_t applied = hostValue<int32_t>(ctx, s);
    if (applied < 0)
      return Status::error("input 'step' is " + std::to_string(applied) +
                           "; it counts the updates applied before this one "
                           "and cannot be negative");
    const float *scale = nullptr;
    if (maxNorm > 0) {
      if (Status status = clipFactor(as<float>(d[gn]), maxNorm,
                                     as<float>(d[factor]), ctx.stream);
          !status)
        return status;
      scale = as<float>(d[factor]);
    }
    return adamwStep(as<float>(d[p]), as<float>(d[g]), as<float>(d[ms]),
                     as<float>(d[vs]), n, hostValue<float>(ctx, l),
                     int64_t(applied) + 1, config, scale, ctx.stream);
  });
}

Expected<DeviceStep> prepareDropExperts(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &y = c.out(0);
  double rate;
  int64_t stream;
  bool gradient;
  exec::NoiseCounter counter;
  if (!exec::readDropExperts(c, rate, stream, gradient) ||
      !c.rank(x, DType::F32, 2) || !hostScalar(c, seed, DType::I32) ||
      !readNoiseCounter(c, c.in(2), c.in(3), counter) ||
      !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel, bytes = x.value->bytes;
  // Dropped experts lose the top-k forward and pass no gradient back.
  float fill = gradient ? 0.0f : -INFINITY;
  return DeviceStep([=, a = x.slot, k = seed.slot,
                     o = y.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    int32_t key = hostValue<int32_t>(ctx, k);
    // A negative seed evaluates: every expert stays.
    if (key < 0)
      return copyOf(v[a], v[o], bytes, ctx.stream);
    Expected<int32_t> at = noiseCounterAt(counter, ctx);
    if (!at)
      return at.takeStatus();
    return dropExperts(as<float>(v[a]), as<float>(v[o]), n, rate, fill,
                       CounterKey{key, stream, *at}, ctx.stream);
  });
}

} // namespace

std::vector<TableEntry> trainingKernels() {
  return {
      {Kernel::RandomScale, prepareRandomScale},
      {Kernel::AccumulateGradient, prepareAccumulateGradient},
      {Kernel::GlobalNorm, prepareGlobalNorm},
      {Kernel::AdamW, prepareAdamW},
      {Kernel::DropExperts, prepareDropExperts},
  };
}

} // namespace mixer::cuda
