//===- KernelTableMixing.cpp - Token mixing steps on CUDA -----------------===//
//
// The factories of the CUDA kernel table for the Mixing family of Kernels.def:
// the token mixers (linear, spectral, structured) and their gradients.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

#include "runtime/cuda/Gemm.h"

#include <memory>

namespace mixer::cuda {

namespace {

/// The fp32 buffer a step computes activation `value` into: the value itself
/// in an fp32 step, else `scratch`, rounded into the value by `narrowed`.
float *resultBuffer(bool bf16, void *value, float *scratch) {
  return bf16 ? scratch : static_cast<float *>(value);
}

/// Block `index` of blocks of `size` floats in a bf16 step's scratch `work`;
/// null without scratch (an fp32 step that needs none).
float *blockOf(float *work, int64_t index, int64_t size) {
  return work ? work + index * size : nullptr;
}

/// Runs `mix(input, output)` in fp32 from activation `x` into activation `y`
/// (n values each): on them directly in an fp32 step; a bf16 step widens x
/// into block 0 of `work` (blocks of `block` floats) and rounds the result
/// from block 1 into y.
template <typename Mix>
Status inFp32(bool bf16, void *x, void *y, float *work, int64_t n,
              int64_t block, cudaStream_t stream, Mix &&mix) {
  Expected<const float *> input = widened(bf16, x, work, n, stream);
  if (!input)
    return input.takeStatus();
  float *out = resultBuffer(bf16, y, blockOf(work, 1, block));
  if (Status status = mix(*input, out); !status)
    return status;
  return narrowed(bf16, out, y, n, stream);
}

/// A bf16 linear mixing step's W_s [S, S] and W_h [D, D] rounded to bf16 in
/// the scratch, and the scratch after them.
struct Bf16MixingWeights {
  Bf16 *ws, *wh, *rest;
};

Expected<Bf16MixingWeights> narrowMixingWeights(const LaunchContext &ctx,
                                                void *ws, void *wh, Bf16 *work,
                                                int64_t seq, int64_t d) {
  // bf16Floats(n) floats hold 2 * bf16Floats(n) bf16 values.
  Bf16MixingWeights weights{work, work + 2 * bf16Floats(seq * seq), nullptr};
  weights.rest = weights.wh + 2 * bf16Floats(d * d);
  if (Status status =
          narrowToBf16(as<float>(ws), weights.ws, seq * seq, ctx.stream);
      !status)
    return status;
  if (Status status =
          narrowToBf16(as<float>(wh), weights.wh, d * d, ctx.stream);
      !status)
    return status;
  return weights;
}

/// Scratch floats of narrowMixingWeights.
int64_t mixingWeightFloats(int64_t seq, int64_t d) {
  return bf16Floats(seq * seq) + bf16Floats(d * d);
}

Expected<DeviceStep> prepareLinearMix(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) || !exec::checkLinearMix(c, dtype, {&y}))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  int64_t n = x.value->numel;
  bool bf16 = dtype == DType::BF16;
  // bf16: W_s and W_h rounded to bf16, then X W_h; fp32: X W_h.
  int64_t scratch = c.scratch(bf16 ? mixingWeightFloats(seq, d) + bf16Floats(n)
                                   : alignedFloats(n));
  return DeviceStep([=, a = x.slot, s = c.in(1).slot, h = c.in(2).slot,
                     o = y.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    if (!bf16)
      return twoSidedMix(*ctx.gemm, as<float>(v[a]), as<float>(v[s]),
                         as<float>(v[h]), /*transposeRight=*/false,
                         as<float>(v[o]), as<float>(v[scratch]), batch, seq, d);
    Expected<Bf16MixingWeights> w =
        narrowMixingWeights(ctx, v[s], v[h], as<Bf16>(v[scratch]), seq, d);
    if (!w)
      return w.takeStatus();
    return twoSidedMix(*ctx.gemm, as<Bf16>(v[a]), w->ws, w->wh,
                       /*transposeRight=*/false, as<Bf16>(v[o]), w->rest, batch,
                       seq, d);
  });
}

Expected<DeviceStep> prepareLinearMixGrad(StepContext &c) {
  const Arg &x = c.in(0), &dy = c.in(3), &dx = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkLinearMix(c, dtype, {&dy, &dx}) ||
      !c.shape(c.out(1), DType::F32, {x.dim(1), x.dim(1)}) ||
      !c.shape(c.out(2), DType::F32, {x.dim(2), x.dim(2)}))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  int64_t n = x.value->numel;
  bool bf16 = dtype == DType::BF16;
  // (bf16: W_s and W_h rounded to bf16), then X W_h, W_s X and W_s^T dY.
  int64_t block = bf16 ? bf16Floats(n) : alignedFloats(n);
  int64_t scratch =
      c.scratch((bf16 ? mixingWeightFloats(seq, d) : 0) + 3 * block);
  return DeviceStep([=, a = x.slot, s = c.in(1).slot, h = c.in(2).slot,
                     g = dy.slot, o = dx.slot, os = c.out(1).slot,
                     oh = c.out(2).slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    float *dws = as<float>(v[os]), *dwh = as<float>(v[oh]);
    if (!bf16) {
      float *work = as<float>(v[scratch]);
      return twoSidedMixBackward(
          *ctx.gemm, as<float>(v[a]), as<float>(v[s]), as<float>(v[h]),
          /*transposeRight=*/false, as<float>(v[g]), as<float>(v[o]), dws, dwh,
          work, work + block, work + 2 * block, batch, seq, d);
    }
    Expected<Bf16MixingWeights> w =
        narrowMixingWeights(ctx, v[s], v[h], as<Bf16>(v[scratch]), seq, d);
    if (!w)
      return w.takeStatus();
    // block floats hold 2 * block bf16 values.
    Bf16 *work = w->rest;
    return twoSidedMixBackward(*ctx.gemm, as<Bf16>(v[a]), w->ws, w->wh,
                               /*transposeRight=*/false, as<Bf16>(v[g]),
                               as<Bf16>(v[o]), dws, dwh, work, work + 2 * block,
                               work + 4 * block, batch, seq, d);
  });
}

/// The `algorithm` of a spectral or structured mixing step.
MixAlgorithm mixAlgorithm(const StepContext &c) {
  return c.algorithm("algorithm") == mixer::MixAlgorithm::Fft
             ? MixAlgorithm::Fft
             : MixAlgorithm::Matmul;
}

Expected<DeviceStep> prepareSpectralMix(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  bool hartley = c.boolAttr("hartley");
  MixAlgorithm algorithm = mixAlgorithm(c);
  DType dtype;
  if (!activationType(c, x, dtype) || !c.rank(x, dtype, 3) ||
      !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel, block = alignedFloats(n);
  bool bf16 = dtype == DType::BF16;
  // (bf16) the widened x and the fp32 result.
  int64_t scratch = bf16 ? c.scratch(2 * block) : 0;
  auto mix = std::make_shared<SpectralMix>(x.dim(0), x.dim(1), x.dim(2),
                                           hartley, algorithm);
  return DeviceStep(
      [=, a = x.slot, o = y.slot](const LaunchContext &ctx) -> Status {
        void *const *v = ctx.device;
        float *work = bf16 ? as<float>(v[scratch]) : nullptr;
        return inFp32(bf16, v[a], v[o], work, n, block, ctx.stream,
                      [&](const float *in, float *out) {
                        return mix->run(in, out, *ctx.gemm);
                      });
      },
      [mix](const LaunchContext &ctx) { return mix->prepare(ctx.stream); });
}

Expected<DeviceStep> prepareStructuredMix(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  bool toeplitz;
  MixAlgorithm algorithm = mixAlgorithm(c);
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkStructuredMix(c, dtype, {&y}, toeplitz))
    return c.takeError();
  int64_t n = x.value->numel, block = alignedFloats(n);
  bool bf16 = dtype == DType::BF16;
  // (bf16) the widened x and the fp32 result.
  int64_t scratch = bf16 ? c.scratch(2 * block) : 0;
  auto mix = std::make_shared<StructuredMix>(x.dim(0), x.dim(1), x.dim(2),
                                             toeplitz, algorithm);
  return DeviceStep(
      [=, a = x.slot, s = c.in(1).slot, h = c.in(2).slot,
       o = y.slot](const LaunchContext &ctx) -> Status {
        void *const *v = ctx.device;
        float *work = bf16 ? as<float>(v[scratch]) : nullptr;
        return inFp32(bf16, v[a], v[o], work, n, block, ctx.stream,
                      [&](const float *in, float *out) {
                        return mix->run(in, as<float>(v[s]), as<float>(v[h]),
                                        out, *ctx.gemm);
                      });
      },
      [mix](const LaunchContext &) { return mix->prepare(); });
}

Expected<DeviceStep> prepareStructuredMixGrad(StepContext &c) {
  const Arg &x = c.in(0), &vs = c.in(1), &vh = c.in(2), &dy = c.in(3),
            &dx = c.out(0);
  bool toeplitz;
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkStructuredMix(c, dtype, {&dy, &dx}, toeplitz) ||
      !c.shape(c.out(1), DType::F32, vs.value->shape) ||
      !c.shape(c.out(2), DType::F32, vh.value->shape))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  int64_t n = x.value->numel, block = alignedFloats(n);
  bool bf16 = dtype == DType::BF16;
  // (bf16) the widened x and dy and the fp32 dx.
  int64_t scratch = bf16 ? c.scratch(3 * block) : 0;
  return DeviceStep([=, a = x.slot, s = vs.slot, h = vh.slot, g = dy.slot,
                     o = dx.slot, os = c.out(1).slot,
                     oh = c.out(2).slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    float *work = bf16 ? as<float>(v[scratch]) : nullptr;
    Expected<const float *> xs = widened(bf16, v[a], work, n, ctx.stream);
    if (!xs)
      return xs.takeStatus();
    Expected<const float *> gs =
        widened(bf16, v[g], blockOf(work, 1, block), n, ctx.stream);
    if (!gs)
      return gs.takeStatus();
    float *dxOut = resultBuffer(bf16, v[o], blockOf(work, 2, block));
    if (Status status = structuredMixBackward(
            *xs, as<float>(v[s]), as<float>(v[h]), *gs, dxOut, as<float>(v[os]),
            as<float>(v[oh]), batch, seq, d, toeplitz, *ctx.gemm);
        !status)
      return status;
    return narrowed(bf16, dxOut, v[o], n, ctx.stream);
  });
}

} // namespace

std::vector<TableEntry> mixingKernels() {
  return {
      {Kernel::LinearMix, prepareLinearMix},
      {Kernel::LinearMixGrad, prepareLinearMixGrad},
      {Kernel::SpectralMix, prepareSpectralMix},
      {Kernel::StructuredMix, prepareStructuredMix},
      {Kernel::StructuredMixGrad, prepareStructuredMixGrad},
  };
}

} // namespace mixer::cuda
