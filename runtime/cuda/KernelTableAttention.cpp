//===- KernelTableAttention.cpp - Attention steps on CUDA -----------------===//
//
// The factories of the CUDA kernel table for the Attention family of
// Kernels.def: attention and its gradient.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

#include <climits>
#include <string>
#include <type_traits>

namespace mixer::cuda {

namespace {

/// The attributes and operands shared by attention and attention_grad: q, k,
/// v [B, S, H*hd] (operands 0-2), ids I32[B, S]? (3), and the dropout's seed
/// and step (host scalars, present exactly when dropout_rate > 0) and
/// micro_step (see readNoiseCounter).
struct AttentionStep {
  AttentionConfig config;
  double rate = 0;
  int64_t stream = 0;
  int64_t ids = 0, seed = -1;
  exec::NoiseCounter counter;
  bool bf16 = false;

  bool read(StepContext &c, const Arg &seedArg, const Arg &stepArg,
            const Arg &microArg) {
    const Arg &q = c.in(0);
    int64_t heads = c.intAttr("num_heads"), headDim = c.intAttr("head_dim"),
            padId = c.intAttr("pad_id");
    bool causal = c.boolAttr("causal");
    rate = c.realAttr("dropout_rate"), stream = c.intAttr("stream");
    DType dtype;
    if (!activationType(c, q, dtype) || !c.rank(q, dtype, 3))
      return false;
    bool noisy = rate > 0;
    if (!c.check(heads > 0 && headDim > 0 && heads * headDim == q.dim(2),
                 q.role + " is " + exec::describe(q.value->shape, dtype) +
                     " but num_heads " + std::to_string(heads) +
                     " x head_dim " + std::to_string(headDim) +
                     " needs a last dimension of " +
                     std::to_string(heads * headDim)) ||
        !c.check(headDim <= kMaxAttentionHeadDim,
                 "head_dim " + std::to_string(headDim) +
                     " exceeds the CUDA kernel's " +
                     std::to_string(kMaxAttentionHeadDim)) ||
        !c.check(padId >= INT32_MIN && padId <= INT32_MAX,
                 "attribute 'pad_id' " + std::to_string(padId) +
                     " does not fit in int32") ||
        !c.check(rate >= 0 && rate < 1, "attribute 'dropout_rate' " +
                                            std::to_string(rate) +
                                            " is outside [0, 1)") ||
        !c.check(bool(seedArg.value) == noisy && bool(stepArg.value) == noisy,
                 "the operands seed and step must be present exactly when "
                 "dropout_rate > 0") ||
        !c.shape(c.in(1), dtype, q.value->shape) ||
        !c.shape(c.in(2), dtype, q.value->shape) ||
        !c.shape(c.in(3), DType::I32, {q.dim(0), q.dim(1)}))
      return false;
    if ((noisy && !hostScalar(c, seedArg, DType::I32)) ||
        !readNoiseCounter(c, stepArg, microArg, counter))
      return false;
    config.batch = q.dim(0), config.seq = q.dim(1), config.heads = heads;
    config.headDim = headDim;
    config.padId = static_cast<int32_t>(padId);
    config.causal = causal;
    ids = c.in(3).slot;
    if (noisy)
      seed = seedArg.slot;
    bf16 = dtype == DType::BF16;
    return true;
  }

  /// This run's configuration: no dropout without a rate or with a negative
  /// seed, as on the CPU.
  Expected<AttentionConfig> at(const LaunchContext &ctx) const {
    AttentionConfig run = config;
    run.ids = as<int32_t>(ctx.device[ids]);
    int32_t key = seed < 0 ? -1 : hostValue<int32_t>(ctx, seed);
    if (key >= 0) {
      Expected<int32_t> counterValue = noiseCounterAt(counter, ctx);
      if (!counterValue)
        return counterValue.takeStatus();
      run.dropoutRate = rate;
      run.dropoutKey = {key, stream, *counterValue};
    }
    return run;
  }
};

Expected<DeviceStep> prepareAttention(StepContext &c) {
  AttentionStep attention;
  if (!attention.read(c, c.in(4), c.in(5), c.in(6)))
    return c.takeError();
  DType dtype = c.in(0).value->dtype;
  if (!c.shape(c.out(0), dtype, c.in(0).value->shape))
    return c.takeError();
  return DeviceStep([=, q = c.in(0).slot, k = c.in(1).slot, v = c.in(2).slot,
                     o = c.out(0).slot](const LaunchContext &ctx) -> Status {
    void *const *d = ctx.device;
    Expected<AttentionConfig> config = attention.at(ctx);
    if (!config)
      return config.takeStatus();
    return byPrecision(attention.bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return cuda::attention(as<T>(d[q]), as<T>(d[k]), as<T>(d[v]), as<T>(d[o]),
                             nullptr, *config, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareAttentionGrad(StepContext &c) {
  AttentionStep attention;
  if (!attention.read(c, c.in(5), c.in(6), c.in(7)))
    return c.takeError();
  const Arg &q = c.in(0);
  DType dtype = q.value->dtype;
  if (!c.shape(c.in(4), dtype, q.value->shape) ||
      !c.shape(c.out(0), dtype, q.value->shape) ||
      !c.shape(c.out(1), dtype, q.value->shape) ||
      !c.shape(c.out(2), dtype, q.value->shape))
    return c.takeError();
  // The forward's output and row logsumexp, recomputed into the scratch.
  const AttentionConfig &shape = attention.config;
  int64_t outOffset = alignedFloats(shape.batch * shape.heads * shape.seq);
  int64_t scratch = c.scratch(outOffset + q.value->numel);
  return DeviceStep([=, qs = q.slot, ks = c.in(1).slot, vs = c.in(2).slot,
                     g = c.in(4).slot, oq = c.out(0).slot, ok = c.out(1).slot,
                     ov = c.out(2).slot](const LaunchContext &ctx) -> Status {
    void *const *d = ctx.device;
    Expected<AttentionConfig> config = attention.at(ctx);
    if (!config)
      return config.takeStatus();
    float *lse = as<float>(d[scratch]);
    return byPrecision(attention.bf16, [&](auto *tag) -> Status {
      using T = std::remove_pointer_t<decltype(tag)>;
      T *out = reinterpret_cast<T *>(lse + outOffset);
      if (Status status =
              cuda::attention(as<T>(d[qs]), as<T>(d[ks]), as<T>(d[vs]), out,
                              lse, *config, ctx.stream);
          !status)
        return status;
      return attentionBackward(as<T>(d[qs]), as<T>(d[ks]), as<T>(d[vs]), out,
                               as<T>(d[g]), lse, as<T>(d[oq]), as<T>(d[ok]),
                               as<T>(d[ov]), *config, ctx.stream);
    });
  });
}

} // namespace

std::vector<TableEntry> attentionKernels() {
  return {
      {Kernel::Attention, prepareAttention},
      {Kernel::AttentionGrad, prepareAttentionGrad},
  };
}

} // namespace mixer::cuda
