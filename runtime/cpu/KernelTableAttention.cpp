//===- KernelTableAttention.cpp - Attention steps on the CPU --------------===//
//
// The factories of the CPU kernel table for the Attention family of
// Kernels.def: attention and its gradient.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {

namespace {

/// Reads the attention attributes and checks q, k, v [B, S, H*Dh] of dtypes
/// `types` and the optional ids I32[B, S] (operands 0-3 of attention and
/// attention_grad).
bool readAttention(StepContext &c, int64_t &heads, int64_t &headDim,
                   int32_t &pad, bool &causal,
                   std::array<DType, 3> types = {DType::F32, DType::F32,
                                                 DType::F32}) {
  const Arg &q = c.in(0);
  heads = c.intAttr("num_heads"), headDim = c.intAttr("head_dim");
  int64_t padId = c.intAttr("pad_id");
  causal = c.boolAttr("causal");
  if (!c.rank(q, types[0], 3))
    return false;
  if (!c.check(heads > 0 && headDim > 0 && heads * headDim == q.dim(2),
               q.role + " is " + exec::describe(q.value->shape, types[0]) +
                   " but num_heads " + std::to_string(heads) + " x head_dim " +
                   std::to_string(headDim) + " needs a last dimension of " +
                   std::to_string(heads * headDim)) ||
      !c.check(padId >= std::numeric_limits<int32_t>::min() &&
                   padId <= std::numeric_limits<int32_t>::max(),
               "attribute 'pad_id' " + std::to_string(padId) +
                   " does not fit in int32") ||
      !c.shape(c.in(1), types[1], q.value->shape) ||
      !c.shape(c.in(2), types[2], q.value->shape) ||
      !c.shape(c.in(3), DType::I32, {q.dim(0), q.dim(1)}))
    return false;
  pad = static_cast<int32_t>(padId);
  return true;
}

/// The probability dropout of attention and attention_grad: the attributes
/// dropout_rate (in [0, 1)) and stream, and the operands seed and step
/// (I32 scalars, present exactly when the rate is positive) and micro_step
/// (see exec::NoiseCounter).
struct DropoutKey {
  double rate = 0;
  int64_t stream = 0;
  int64_t seed = -1;  ///< slot; -1 without dropout
  uint64_t first = 0; ///< the global index of this rank's first probability
  exec::NoiseCounter counter;

  /// Reads the key of an attention step over `heads` heads whose operand 0
  /// is the queries [B, S, heads·head_dim].
  bool read(StepContext &c, int64_t heads, const Arg &seedArg,
            const Arg &stepArg, const Arg &microArg) {
    rate = c.realAttr("dropout_rate"), stream = c.intAttr("stream");
    int64_t batch = c.in(0).dim(0), seq = c.in(0).dim(1);
    first = c.firstNoiseElement(batch * heads * seq * seq);
    bool noisy = rate > 0;
    if (!c.check(rate >= 0 && rate < 1, "attribute 'dropout_rate' " +
                                            std::to_string(rate) +
                                            " is outside [0, 1)") ||
        !c.check(bool(seedArg.value) == noisy && bool(stepArg.value) == noisy,
                 "the operands seed and step must be present exactly when "
                 "dropout_rate > 0") ||
        !c.shape(seedArg, DType::I32, {}) ||
        !counter.read(c, stepArg, microArg))
      return false;
    if (noisy)
      seed = seedArg.slot;
    return true;
  }

  /// This run's dropout: inactive without a rate or with a negative seed.
  cpu::AttentionDropout at(ValuePointers v) const {
    if (seed < 0)
      return {};
    return cpu::AttentionDropout::make(rate, *i32(v[seed]), stream,
                                       noiseCounterAt(counter, v), first);
  }
};

Expected<StepFunction> prepareAttention(StepContext &c) {
  const Arg &q = c.in(0), &k = c.in(1), &val = c.in(2), &ids = c.in(3),
            &y = c.out(0);
  int64_t heads, headDim;
  int32_t pad;
  bool causal;
  DropoutKey dropout;
  // Only a step with bf16 products reads or writes bf16 activations.
  bool bf16 = c.boolAttr("bf16");
  auto typeOf = [&](const Arg &arg) {
    return bf16 ? activationType(arg) : DType::F32;
  };
  std::array<DType, 3> types = {typeOf(q), typeOf(k), typeOf(val)};
  if (!readAttention(c, heads, headDim, pad, causal, types) ||
      !dropout.read(c, heads, c.in(4), c.in(5), c.in(6)) ||
      !c.shape(y, typeOf(y), q.value->shape))
    return c.takeError();
  int64_t batch = q.dim(0), seq = q.dim(1);
  if (bf16) {
    auto kernel = std::make_shared<AttentionBf16>(
        batch, seq, heads, headDim, causal,
        std::array<bool, 3>{types[0] == DType::BF16, types[1] == DType::BF16,
                            types[2] == DType::BF16},
        typeOf(y) == DType::BF16);
    int64_t scratch = c.scratch((kernel->scratchWords() + 1) / 2);
    return StepFunction([=, a = q.slot, b = k.slot, cc = val.slot, i = ids.slot,
                         o = y.slot](ValuePointers v) {
      kernel->run(v[a], v[b], v[cc], i32(v[i]), v[o], pad, dropout.at(v),
                  static_cast<uint16_t *>(v[scratch]));
    });
  }
  return StepFunction([=, a = q.slot, b = k.slot, cc = val.slot, i = ids.slot,
                       o = y.slot](ValuePointers v) {
    cpu::attention(f32(v[a]), f32(v[b]), f32(v[cc]), i32(v[i]), f32(v[o]),
                   batch, seq, heads, headDim, pad, causal, dropout.at(v));
  });
}

Expected<StepFunction> prepareAttentionGrad(StepContext &c) {
  const Arg &q = c.in(0), &k = c.in(1), &val = c.in(2), &ids = c.in(3),
            &dout = c.in(4);
  int64_t heads, headDim;
  int32_t pad;
  bool causal;
  DropoutKey dropout;
  if (!readAttention(c, heads, headDim, pad, causal) ||
      !dropout.read(c, heads, c.in(5), c.in(6), c.in(7)) ||
      !c.shape(dout, DType::F32, q.value->shape) ||
      !c.shape(c.out(0), DType::F32, q.value->shape) ||
      !c.shape(c.out(1), DType::F32, q.value->shape) ||
      !c.shape(c.out(2), DType::F32, q.value->shape))
    return c.takeError();
  int64_t batch = q.dim(0), seq = q.dim(1);
  return StepFunction([=, a = q.slot, b = k.slot, cc = val.slot, i = ids.slot,
                       g = dout.slot, oq = c.out(0).slot, ok = c.out(1).slot,
                       ov = c.out(2).slot](ValuePointers v) {
    cpu::attentionBackward(f32(v[a]), f32(v[b]), f32(v[cc]), i32(v[i]),
                           f32(v[g]), f32(v[oq]), f32(v[ok]), f32(v[ov]), batch,
                           seq, heads, headDim, pad, causal, dropout.at(v));
  });
}

} // namespace

std::vector<KernelEntry> attentionKernels() {
  return {
      {Kernel::Attention, prepareAttention},
      {Kernel::AttentionGrad, prepareAttentionGrad},
  };
}

} // namespace mixer::cpu
