//===- KernelTableMixing.cpp - Mixing steps on the CPU --------------------===//
//
// The factories of the CPU kernel table for the Mixing family of
// Kernels.def: linear, spectral and structured token mixing and their
// gradients.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {

namespace {

/// A linear_mix step with bf16 products: the kernel and its packed weights.
struct LinearMixBf16Step {
  LinearMixBf16 kernel;
  AlignedBytes packed;
};

Expected<StepFunction> prepareLinearMix(StepContext &c) {
  const Arg &x = c.in(0), &ws = c.in(1), &wh = c.in(2), &y = c.out(0);
  // Only a step with bf16 products reads or writes bf16 activations.
  if (c.boolAttr("bf16")) {
    DType xType = activationType(x), yType = activationType(y);
    if (!checkLinearMix(c, xType, {}) || !c.shape(y, yType, x.value->shape))
      return c.takeError();
    LinearMixBf16 kernel(x.dim(0), x.dim(1), x.dim(2), xType == DType::BF16,
                         yType == DType::BF16);
    int64_t bytes = kernel.packedBytes();
    int64_t scratch = c.scratch((kernel.scratchWords() + 1) / 2);
    auto step = std::make_shared<LinearMixBf16Step>(
        LinearMixBf16Step{std::move(kernel), AlignedBytes(bytes)});
    return StepFunction(
        [=, a = x.slot, o = y.slot](ValuePointers v) {
          step->kernel.run(v[a], step->packed.get(), v[o],
                           static_cast<uint16_t *>(v[scratch]));
        },
        [=, s = ws.slot, h = wh.slot](ValuePointers v) {
          step->kernel.pack(f32(v[s]), f32(v[h]), step->packed.get());
        });
  }
  if (!checkLinearMix(c, DType::F32, {&y}))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  int64_t scratch = c.scratch(batch * seq * d);
  return StepFunction(
      [=, a = x.slot, s = ws.slot, h = wh.slot, o = y.slot](ValuePointers v) {
        cpu::linearMix(f32(v[a]), f32(v[s]), f32(v[h]), f32(v[o]),
                       f32(v[scratch]), batch, seq, d);
      });
}

Expected<StepFunction> prepareSpectralMix(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  bool hartley = c.boolAttr("hartley");
  MixAlgorithm algorithm = c.algorithm("algorithm");
  if (!c.rank(x, DType::F32, 3) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  auto mix = std::make_shared<cpu::SpectralMix>(x.dim(0), x.dim(1), x.dim(2),
                                                hartley, algorithm);
  return StepFunction([mix, a = x.slot, o = y.slot](ValuePointers v) {
    mix->run(f32(v[a]), f32(v[o]));
  });
}

Expected<StepFunction> prepareStructuredMix(StepContext &c) {
  const Arg &x = c.in(0), &vs = c.in(1), &vh = c.in(2), &y = c.out(0);
  bool toeplitz;
  if (!checkStructuredMix(c, DType::F32, {&y}, toeplitz))
    return c.takeError();
  MixAlgorithm algorithm = c.algorithm("algorithm");
  int64_t seq = x.dim(1), d = x.dim(2);
  auto mix = std::make_shared<cpu::StructuredMix>(x.dim(0), seq, d, toeplitz,
                                                  algorithm);
  return StepFunction(
      [mix, a = x.slot, s = vs.slot, h = vh.slot, o = y.slot](ValuePointers v) {
        mix->run(f32(v[a]), f32(v[s]), f32(v[h]), f32(v[o]));
      });
}

Expected<StepFunction> prepareLinearMixGrad(StepContext &c) {
  const Arg &x = c.in(0), &ws = c.in(1), &wh = c.in(2), &dy = c.in(3),
            &dx = c.out(0), &dws = c.out(1), &dwh = c.out(2);
  if (!checkLinearMix(c, DType::F32, {&dy, &dx}) ||
      !c.shape(dws, DType::F32, ws.value->shape) ||
      !c.shape(dwh, DType::F32, wh.value->shape))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  int64_t scratch = c.scratch(batch * seq * d);
  return StepFunction([=, a = x.slot, s = ws.slot, h = wh.slot, g = dy.slot,
                       o = dx.slot, os = dws.slot,
                       oh = dwh.slot](ValuePointers v) {
    cpu::linearMixBackward(f32(v[a]), f32(v[s]), f32(v[h]), f32(v[g]),
                           f32(v[o]), f32(v[os]), f32(v[oh]), f32(v[scratch]),
                           batch, seq, d, /*accumulate=*/false);
  });
}

Expected<StepFunction> prepareStructuredMixGrad(StepContext &c) {
  const Arg &x = c.in(0), &vs = c.in(1), &vh = c.in(2), &dy = c.in(3),
            &dx = c.out(0), &dvs = c.out(1), &dvh = c.out(2);
  bool toeplitz;
  if (!checkStructuredMix(c, DType::F32, {&dy, &dx}, toeplitz) ||
      !c.shape(dvs, DType::F32, vs.value->shape) ||
      !c.shape(dvh, DType::F32, vh.value->shape))
    return c.takeError();
  int64_t seq = x.dim(1), d = x.dim(2);
  auto mix =
      std::make_shared<cpu::StructuredMixBackward>(x.dim(0), seq, d, toeplitz);
  return StepFunction([mix, a = x.slot, s = vs.slot, h = vh.slot, g = dy.slot,
                       o = dx.slot, os = dvs.slot,
                       oh = dvh.slot](ValuePointers v) {
    mix->run(f32(v[a]), f32(v[s]), f32(v[h]), f32(v[g]), f32(v[o]), f32(v[os]),
             f32(v[oh]), /*accumulate=*/false);
  });
}

} // namespace

std::vector<KernelEntry> mixingKernels() {
  return {
      {Kernel::LinearMix, prepareLinearMix},
      {Kernel::SpectralMix, prepareSpectralMix},
      {Kernel::StructuredMix, prepareStructuredMix},
      {Kernel::LinearMixGrad, prepareLinearMixGrad},
      {Kernel::StructuredMixGrad, prepareStructuredMixGrad},
  };
}

} // namespace mixer::cpu
