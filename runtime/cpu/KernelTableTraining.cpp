//===- KernelTableTraining.cpp - Training steps on the CPU ----------------===//
//
// The factories of the CPU kernel table for the Training family of
// Kernels.def: training noise, gradient accumulation and the optimizer update.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Optimizer.h"
#include "runtime/cpu/RandomScale.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {

namespace {

Expected<StepFunction> prepareRandomScale(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &y = c.out(0);
  bool dropout;
  double rate;
  int64_t stream;
  exec::NoiseCounter counter;
  if (!readRandomScale(c, dropout, rate, stream) ||
      !c.minRank(x, DType::F32, 0) || !c.shape(seed, DType::I32, {}) ||
      !counter.read(c, c.in(2), c.in(3)) ||
      !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel, blocks = c.intAttr("blocks", 1);
  if (!c.check(blocks > 0 && n % blocks == 0,
               "attribute 'blocks' " + std::to_string(blocks) +
                   " does not divide the " + std::to_string(n) +
                   " elements of " + x.role))
    return c.takeError();
  int64_t block = n / blocks;
  std::vector<uint64_t> firsts(blocks);
  for (int64_t b = 0; b < blocks; ++b)
    firsts[b] = c.firstNoiseElement(block, b);
  return StepFunction(
      [=, a = x.slot, k = seed.slot, o = y.slot](ValuePointers v) {
        int32_t key = *i32(v[k]);
        if (key < 0) {
          // A negative seed evaluates: no noise.
          std::copy_n(f32(v[a]), n, f32(v[o]));
          return;
        }
        int32_t step = noiseCounterAt(counter, v);
        for (int64_t b = 0; b < blocks; ++b)
          cpu::randomScale(f32(v[a]) + b * block, f32(v[o]) + b * block, block,
                           dropout, rate,
                           cpu::CounterUniforms(key, stream, step, firsts[b]));
      });
}

Expected<StepFunction> prepareDropExperts(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &y = c.out(0);
  double rate;
  int64_t stream;
  bool gradient;
  exec::NoiseCounter counter;
  if (!readDropExperts(c, rate, stream, gradient) ||
      !c.rank(x, DType::F32, 2) || !c.shape(seed, DType::I32, {}) ||
      !counter.read(c, c.in(2), c.in(3)) ||
      !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  uint64_t first = c.firstNoiseElement(n);
  // Dropped experts lose the top-k forward and pass no gradient back.
  float fill = gradient ? 0.0f : -std::numeric_limits<float>::infinity();
  return StepFunction(
      [=, a = x.slot, k = seed.slot, o = y.slot](ValuePointers v) {
        int32_t key = *i32(v[k]);
        if (key < 0) {
          // A negative seed evaluates: every expert stays.
          std::copy_n(f32(v[a]), n, f32(v[o]));
          return;
        }
        cpu::expertDropout(f32(v[a]), f32(v[o]), n, key, stream,
                           noiseCounterAt(counter, v), rate, fill, first);
      });
}

/// The value of input `micro_step`, checked against `microSteps`.
int32_t microStepOf(ValuePointers v, int64_t slot, int64_t microSteps) {
  int32_t micro = *i32(v[slot]);
  if (Status valid = exec::checkMicroStep(micro, microSteps); !valid)
    throw cpu::KernelError{valid.message()};
  return micro;
}

Expected<StepFunction> prepareAccumulateGradient(StepContext &c) {
  const Arg &grad = c.in(0), &micro = c.in(1), &accum = c.out(0),
            &average = c.out(1);
  int64_t microSteps;
  if (!checkAccumulateGradient(c, microSteps) ||
      !c.shape(micro, DType::I32, {}))
    return c.takeError();
  int64_t n = grad.value->numel;
  return StepFunction([=, g = grad.slot, m = micro.slot, a = accum.slot,
                       o = average.slot](ValuePointers v) {
    cpu::accumulateGradient(f32(v[a]), f32(v[g]), f32(v[o]), n,
                            microStepOf(v, m, microSteps), microSteps);
  });
}

Expected<StepFunction> prepareGlobalNorm(StepContext &c) {
  const Arg &norm = c.out(0);
  std::vector<std::pair<int64_t, int64_t>> tensors; // (slot, elements)
  for (size_t i = 0; i < c.numOperands(); ++i) {
    if (!c.minRank(c.in(i), DType::F32, 0))
      return c.takeError();
    tensors.emplace_back(c.in(i).slot, c.in(i).value->numel);
  }
  if (!c.shape(norm, DType::F32, {}))
    return c.takeError();
  return StepFunction([=, o = norm.slot](ValuePointers v) {
    std::vector<ConstValues> values;
    values.reserve(tensors.size());
    for (auto [slot, n] : tensors)
      values.emplace_back(f32(v[slot]), n);
    *f32(v[o]) = static_cast<float>(cpu::globalNorm(values));
  });
}

Expected<StepFunction> prepareAdamW(StepContext &c) {
  const Arg &grad = c.in(0), &lr = c.in(1), &step = c.in(2), &norm = c.in(3),
            &micro = c.in(4);
  const Arg &param = c.out(0), &m = c.out(1), &v = c.out(2);
  AdamWConfig config;
  double maxNorm;
  int64_t microSteps;
  if (!checkAdamW(c, config, maxNorm, microSteps) ||
      !c.shape(lr, DType::F32, {}) || !c.shape(step, DType::I32, {}) ||
      (micro.value && !c.shape(micro, DType::I32, {})))
    return c.takeError();
  int64_t n = param.value->numel;
  return StepFunction([=, g = grad.slot, l = lr.slot, s = step.slot,
                       gn = norm.slot, mi = micro.slot, p = param.slot,
                       ms = m.slot, vs = v.slot](ValuePointers values) {
    // Only the last micro-step of an update applies it.
    if (microSteps > 1 && microStepOf(values, mi, microSteps) != microSteps - 1)
      return;
    int32_t applied = *i32(values[s]);
    if (applied < 0)
      throw cpu::KernelError{"input 'step' is " + std::to_string(applied) +
                             "; it counts the updates applied before this "
                             "one and cannot be negative"};
    float scale = 1.0f;
    if (maxNorm > 0) {
      double total = *f32(values[gn]);
      if (total >= maxNorm)
        scale = static_cast<float>(maxNorm / total);
    }
    cpu::adamwStep(f32(values[p]), f32(values[g]), f32(values[ms]),
                   f32(values[vs]), n, *f32(values[l]), int64_t(applied) + 1,
                   config, scale);
  });
}

} // namespace

std::vector<KernelEntry> trainingKernels() {
  return {
      {Kernel::RandomScale, prepareRandomScale},
      {Kernel::DropExperts, prepareDropExperts},
      {Kernel::AccumulateGradient, prepareAccumulateGradient},
      {Kernel::GlobalNorm, prepareGlobalNorm},
      {Kernel::AdamW, prepareAdamW},
  };
}

} // namespace mixer::cpu
