//===- KernelRegistry.cpp - Plan steps bound to CPU kernels ---------------===//

#include "runtime/exec/KernelRegistry.h"
#include "runtime/exec/StepContext.h"

#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"
#include "runtime/cpu/RandomScale.h"
#include "runtime/cpu/TransformerGradients.h"
#include "runtime/train/Optimizer.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <vector>

namespace mixer::exec {

namespace {

using io::DType;

float *f32(void *p) { return static_cast<float *>(p); }
int32_t *i32(void *p) { return static_cast<int32_t *>(p); }

struct KernelEntry {
  Kernel kernel;
  Expected<StepFunction> (*prepare)(StepContext &);
};

//===----------------------------------------------------------------------===//
// Dense, normalisation and pointwise kernels
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareEmbed(StepContext &c) {
  const Arg &ids = c.in(0), &typeIds = c.in(1), &word = c.in(2), &pos = c.in(3),
            &type = c.in(4), &y = c.out(0);
  if (!checkEmbedding(c, ids, typeIds, word, pos, type) ||
      !c.shape(y, DType::F32, {ids.dim(0), ids.dim(1), word.dim(1)}))
    return c.takeError();
  int64_t batch = ids.dim(0), seq = ids.dim(1), vocab = word.dim(0),
          width = word.dim(1), typeVocab = type.dim(0);
  return StepFunction([=, i = ids.slot, t = typeIds.slot, w = word.slot,
                       p = pos.slot, tt = type.slot,
                       o = y.slot](ValuePointers v) {
    cpu::embed(i32(v[i]), i32(v[t]), f32(v[w]), f32(v[p]), f32(v[tt]),
               f32(v[o]), batch, seq, width, vocab, typeVocab);
  });
}

Expected<StepFunction> prepareDense(StepContext &c) {
  const Arg &x = c.in(0), &w = c.in(1), &bias = c.in(2), &y = c.out(0);
  bool transpose = c.boolAttr("transpose_w");
  cpu::Activation act = c.activation("activation");
  if (!c.minRank(x, DType::F32, 1) || !c.rank(w, DType::F32, 2))
    return c.takeError();
  int64_t k = x.value->shape.back();
  int64_t n = transpose ? w.dim(0) : w.dim(1);
  std::vector<int64_t> outShape = x.value->shape;
  outShape.back() = n;
  if (!c.check(
          (transpose ? w.dim(1) : w.dim(0)) == k,
          w.role + " is " + describe(w.value->shape, DType::F32) +
              " but operand 0 (x) has " + std::to_string(k) + " features" +
              (transpose ? " (transpose_w: w is [N, K])" : " (w is [K, N])")) ||
      !c.shape(bias, DType::F32, {n}) || !c.shape(y, DType::F32, outShape))
    return c.takeError();
  int64_t m = leadingElements(*x.value);
  return StepFunction(
      [=, a = x.slot, b = w.slot, bb = bias.slot, o = y.slot](ValuePointers v) {
        cpu::dense(f32(v[a]), f32(v[b]), f32(v[bb]), f32(v[o]), m, k, n,
                   transpose, act);
      });
}

Expected<StepFunction> prepareLayerNorm(StepContext &c) {
  const Arg &x = c.in(0), &residual = c.in(1), &scale = c.in(2),
            &bias = c.in(3), &y = c.out(0);
  float eps;
  int64_t rows, cols;
  if (!checkLayerNorm(c, DType::F32, {&y}, {&scale, &bias}, eps, rows, cols))
    return c.takeError();
  return StepFunction([=, a = x.slot, r = residual.slot, s = scale.slot,
                       b = bias.slot, o = y.slot](ValuePointers v) {
    cpu::layerNorm(f32(v[a]), f32(v[r]), f32(v[s]), f32(v[b]), f32(v[o]), rows,
                   cols, eps);
  });
}

Expected<StepFunction> prepareActivation(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  cpu::Activation act = c.activation("kind");
  if (!c.minRank(x, DType::F32, 0) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    cpu::activation(f32(v[a]), f32(v[o]), n, act);
  });
}

Expected<StepFunction> prepareAdd(StepContext &c) {
  const Arg &a = c.in(0), &b = c.in(1), &y = c.out(0);
  if (!c.minRank(a, DType::F32, 0) || !c.shape(b, DType::F32, a.value->shape) ||
      !c.shape(y, DType::F32, a.value->shape))
    return c.takeError();
  int64_t n = a.value->numel;
  return StepFunction([=, l = a.slot, r = b.slot, o = y.slot](ValuePointers v) {
    cpu::add(f32(v[l]), f32(v[r]), f32(v[o]), n);
  });
}

Expected<StepFunction> prepareSoftmax(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  int64_t rows, cols;
  if (!checkRows(c, x, DType::F32, {&y}, rows, cols))
    return c.takeError();
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    cpu::softmax(f32(v[a]), f32(v[o]), rows, cols);
  });
}

Expected<StepFunction> prepareRoundBf16(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  if (!c.minRank(x, DType::F32, 0) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    cpu::roundToBf16(f32(v[a]), f32(v[o]), n);
  });
}

Expected<StepFunction> prepareTakePosition(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  int64_t index;
  if (!checkTakePosition(c, x, y, DType::F32, index))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    cpu::takePosition(f32(v[a]), f32(v[o]), batch, seq, d, index);
  });
}

//===----------------------------------------------------------------------===//
// Mixing
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareLinearMix(StepContext &c) {
  const Arg &x = c.in(0), &ws = c.in(1), &wh = c.in(2), &y = c.out(0);
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
  cpu::MixAlgorithm algorithm = c.algorithm("algorithm");
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
  cpu::MixAlgorithm algorithm = c.algorithm("algorithm");
  int64_t seq = x.dim(1), d = x.dim(2);
  auto mix = std::make_shared<cpu::StructuredMix>(x.dim(0), seq, d, toeplitz,
                                                  algorithm);
  return StepFunction(
      [mix, a = x.slot, s = vs.slot, h = vh.slot, o = y.slot](ValuePointers v) {
        mix->run(f32(v[a]), f32(v[s]), f32(v[h]), f32(v[o]));
      });
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

/// Reads the attention attributes and checks q, k, v [B, S, H*Dh] and the
/// optional ids I32[B, S] (operands 0-3 of attention and attention_grad).
bool readAttention(StepContext &c, int64_t &heads, int64_t &headDim,
                   int32_t &pad, bool &causal) {
  const Arg &q = c.in(0);
  heads = c.intAttr("num_heads"), headDim = c.intAttr("head_dim");
  int64_t padId = c.intAttr("pad_id");
  causal = c.boolAttr("causal");
  if (!c.rank(q, DType::F32, 3))
    return false;
  if (!c.check(heads > 0 && headDim > 0 && heads * headDim == q.dim(2),
               q.role + " is " + describe(q.value->shape, DType::F32) +
                   " but num_heads " + std::to_string(heads) + " x head_dim " +
                   std::to_string(headDim) + " needs a last dimension of " +
                   std::to_string(heads * headDim)) ||
      !c.check(padId >= std::numeric_limits<int32_t>::min() &&
                   padId <= std::numeric_limits<int32_t>::max(),
               "attribute 'pad_id' " + std::to_string(padId) +
                   " does not fit in int32") ||
      !c.shape(c.in(1), DType::F32, q.value->shape) ||
      !c.shape(c.in(2), DType::F32, q.value->shape) ||
      !c.shape(c.in(3), DType::I32, {q.dim(0), q.dim(1)}))
    return false;
  pad = static_cast<int32_t>(padId);
  return true;
}

/// The probability dropout of attention and attention_grad: the attributes
/// dropout_rate (in [0, 1)) and stream, and the operands seed and step
/// (I32 scalars, present exactly when the rate is positive).
struct DropoutKey {
  double rate = 0;
  int64_t stream = 0;
  int64_t seed = -1, step = -1; ///< slots; -1 without dropout

  bool read(StepContext &c, const Arg &seedArg, const Arg &stepArg) {
    rate = c.realAttr("dropout_rate"), stream = c.intAttr("stream");
    bool noisy = rate > 0;
    if (!c.check(rate >= 0 && rate < 1, "attribute 'dropout_rate' " +
                                            std::to_string(rate) +
                                            " is outside [0, 1)") ||
        !c.check(bool(seedArg.value) == noisy && bool(stepArg.value) == noisy,
                 "the operands seed and step must be present exactly when "
                 "dropout_rate > 0") ||
        !c.shape(seedArg, DType::I32, {}) || !c.shape(stepArg, DType::I32, {}))
      return false;
    if (noisy) {
      seed = seedArg.slot;
      step = stepArg.slot;
    }
    return true;
  }

  /// This run's dropout: inactive without a rate or with a negative seed.
  cpu::AttentionDropout at(ValuePointers v) const {
    if (seed < 0)
      return {};
    return cpu::AttentionDropout::make(rate, *i32(v[seed]), stream,
                                       *i32(v[step]));
  }
};

Expected<StepFunction> prepareAttention(StepContext &c) {
  const Arg &q = c.in(0), &k = c.in(1), &val = c.in(2), &ids = c.in(3),
            &y = c.out(0);
  int64_t heads, headDim;
  int32_t pad;
  bool causal;
  DropoutKey dropout;
  if (!readAttention(c, heads, headDim, pad, causal) ||
      !dropout.read(c, c.in(4), c.in(5)) ||
      !c.shape(y, DType::F32, q.value->shape))
    return c.takeError();
  int64_t batch = q.dim(0), seq = q.dim(1);
  return StepFunction([=, a = q.slot, b = k.slot, cc = val.slot, i = ids.slot,
                       o = y.slot](ValuePointers v) {
    cpu::attention(f32(v[a]), f32(v[b]), f32(v[cc]), i32(v[i]), f32(v[o]),
                   batch, seq, heads, headDim, pad, causal, dropout.at(v));
  });
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareRouteExpertsChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity;
  if (!checkRouteExpertsChoose(c, groups, tokensPerGroup, capacity))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return StepFunction([=, p = c.in(0).slot, t = c.out(0).slot,
                       g = c.out(1).slot, o = c.out(2).slot](ValuePointers v) {
    cpu::routeExpertsChoose(f32(v[p]), i32(v[t]), f32(v[g]), i32(v[o]), groups,
                            tokensPerGroup, experts, capacity);
  });
}

Expected<StepFunction> prepareRouteTokensChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity, k;
  bool prioritized;
  if (!checkRouteTokensChoose(c, groups, tokensPerGroup, capacity, k,
                              prioritized))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return StepFunction([=, p = c.in(0).slot, t = c.out(0).slot,
                       g = c.out(1).slot, o = c.out(2).slot](ValuePointers v) {
    cpu::routeTokensChoose(f32(v[p]), i32(v[t]), f32(v[g]), i32(v[o]), groups,
                           tokensPerGroup, experts, k, capacity, prioritized);
  });
}

Expected<StepFunction> prepareRouteSigmoidTopK(StepContext &c) {
  const Arg &logits = c.in(0);
  int64_t k;
  if (!checkRouteSigmoidTopK(c, k))
    return c.takeError();
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  return StepFunction([=, p = logits.slot, t = c.out(0).slot, g = c.out(1).slot,
                       o = c.out(2).slot](ValuePointers v) {
    cpu::routeSigmoidTopK(f32(v[p]), i32(v[t]), f32(v[g]), i32(v[o]), tokens,
                          experts, k);
  });
}

Expected<StepFunction> prepareDispatch(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &y = c.out(0);
  if (!c.rank(x, DType::F32, 2) || !c.rank(tokens, DType::I32, 1))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1);
  if (!c.shape(y, DType::F32, {slots, d}))
    return c.takeError();
  return StepFunction(
      [=, a = x.slot, t = tokens.slot, o = y.slot](ValuePointers v) {
        cpu::dispatch(f32(v[a]), i32(v[t]), f32(v[o]), slots, numTokens, d);
      });
}

/// Refuses the gathered form of experts and experts_grad (operand 0 the
/// token rows), which only the CUDA plans use.
bool checkNotGathered(StepContext &c) {
  return c.check(!c.boolAttr("gather"),
                 "attribute 'gather' (the dispatch fused into the "
                 "experts, as cuda plans have it) has no CPU "
                 "implementation");
}

Expected<StepFunction> prepareExperts(StepContext &c) {
  const Arg &xd = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &b2 = c.in(6), &y = c.out(0);
  cpu::Activation act = c.activation("activation");
  if (!checkNotGathered(c) || !c.rank(xd, DType::F32, 2) ||
      !c.rank(offsets, DType::I32, 1) || !c.rank(w1, DType::F32, 3))
    return c.takeError();
  int64_t slots = xd.dim(0), d = xd.dim(1), experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(tokens, DType::I32, {slots}) ||
      !c.shape(offsets, DType::I32, {experts + 1}) ||
      !c.shape(w1, DType::F32, {experts, d, f}) ||
      !c.shape(b1, DType::F32, {experts, f}) ||
      !c.shape(w2, DType::F32, {experts, f, d}) ||
      !c.shape(b2, DType::F32, {experts, d}) ||
      !c.shape(y, DType::F32, {slots, d}))
    return c.takeError();
  return StepFunction([=, a = xd.slot, t = tokens.slot, o = offsets.slot,
                       k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, c2 = b2.slot,
                       r = y.slot](ValuePointers v) {
    cpu::experts(f32(v[a]), i32(v[t]), i32(v[o]), f32(v[k1]), f32(v[c1]),
                 f32(v[k2]), f32(v[c2]), f32(v[r]), experts, slots, d, f, act);
  });
}

Expected<StepFunction> prepareCombine(StepContext &c) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &gates = c.in(2), &y = c.out(0);
  if (!checkCombine(c, yd, tokens, &gates, y, DType::F32))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = y.dim(0);
  return StepFunction([=, a = yd.slot, t = tokens.slot, g = gates.slot,
                       o = y.slot](ValuePointers v) {
    cpu::combine(f32(v[a]), i32(v[t]), f32(v[g]), f32(v[o]), slots, numTokens,
                 d);
  });
}

//===----------------------------------------------------------------------===//
// Scalar arithmetic, losses and head plumbing (training)
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareFill(StepContext &c) {
  const Arg &y = c.out(0);
  double value = c.realAttr("value");
  if (!c.minRank(y, DType::F32, 0))
    return c.takeError();
  int64_t n = y.value->numel;
  float fillValue = static_cast<float>(value);
  return StepFunction([=, o = y.slot](ValuePointers v) {
    std::fill_n(f32(v[o]), n, fillValue);
  });
}

Expected<StepFunction> prepareBroadcast(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  if (!c.rank(x, DType::F32, 0) || !c.minRank(y, DType::F32, 0))
    return c.takeError();
  int64_t n = y.value->numel;
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    std::fill_n(f32(v[o]), n, *f32(v[a]));
  });
}

Expected<StepFunction> prepareReduceSum(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  if (!c.minRank(x, DType::F32, 0) || !c.shape(y, DType::F32, {}))
    return c.takeError();
  int64_t n = x.value->numel;
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    // One double accumulator in index order: the same sum for any threads.
    const float *in = f32(v[a]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i)
      sum += in[i];
    *f32(v[o]) = static_cast<float>(sum);
  });
}

/// Binds y = op(a, b) elementwise over operands and result of one shape.
template <typename Op>
Expected<StepFunction> prepareElementwise(StepContext &c, Op op) {
  const Arg &a = c.in(0), &b = c.in(1), &y = c.out(0);
  if (!c.minRank(a, DType::F32, 0) || !c.shape(b, DType::F32, a.value->shape) ||
      !c.shape(y, DType::F32, a.value->shape))
    return c.takeError();
  int64_t n = a.value->numel;
  return StepFunction([=, l = a.slot, r = b.slot, o = y.slot](ValuePointers v) {
    const float *left = f32(v[l]), *right = f32(v[r]);
    float *out = f32(v[o]);
    for (int64_t i = 0; i < n; ++i)
      out[i] = op(left[i], right[i]);
  });
}

Expected<StepFunction> prepareMultiply(StepContext &c) {
  return prepareElementwise(c, [](float a, float b) { return a * b; });
}

Expected<StepFunction> prepareDivide(StepContext &c) {
  return prepareElementwise(c, [](float a, float b) { return a / b; });
}

Expected<StepFunction> prepareScale(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  double factor = c.realAttr("factor");
  if (!c.minRank(x, DType::F32, 0) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  float f = static_cast<float>(factor);
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    const float *in = f32(v[a]);
    float *out = f32(v[o]);
    for (int64_t i = 0; i < n; ++i)
      out[i] = in[i] * f;
  });
}

Expected<StepFunction> prepareArgmax(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  int64_t n, cols;
  if (!checkArgmax(c, DType::F32, n, cols))
    return c.takeError();
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    const float *in = f32(v[a]);
    int32_t *out = i32(v[o]);
    // The first of equal maxima, as numpy and jnp.argmax pick.
    for (int64_t r = 0; r < n; ++r)
      out[r] = static_cast<int32_t>(
          std::max_element(in + r * cols, in + (r + 1) * cols) -
          (in + r * cols));
  });
}

Expected<StepFunction> prepareLabelMask(StepContext &c) {
  const Arg &labels = c.in(0), &y = c.out(0);
  if (!c.minRank(labels, DType::I32, 0) ||
      !c.shape(y, DType::F32, labels.value->shape))
    return c.takeError();
  int64_t n = labels.value->numel;
  return StepFunction([=, a = labels.slot, o = y.slot](ValuePointers v) {
    const int32_t *in = i32(v[a]);
    float *out = f32(v[o]);
    for (int64_t i = 0; i < n; ++i)
      out[i] = in[i] >= 0 ? 1.0f : 0.0f;
  });
}

Expected<StepFunction> prepareGatherPositions(StepContext &c) {
  const Arg &x = c.in(0), &positions = c.in(1), &y = c.out(0);
  if (!checkGather(c, x, positions, y, DType::F32))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2),
          count = positions.dim(1);
  return StepFunction(
      [=, a = x.slot, p = positions.slot, o = y.slot](ValuePointers v) {
        cpu::gatherRows(f32(v[a]), i32(v[p]), f32(v[o]), batch, seq, d, count);
      });
}

Expected<StepFunction> prepareGatherPositionsGrad(StepContext &c) {
  const Arg &dy = c.in(0), &positions = c.in(1), &dx = c.out(0);
  if (!checkGather(c, dx, positions, dy, DType::F32))
    return c.takeError();
  int64_t batch = dx.dim(0), seq = dx.dim(1), d = dx.dim(2),
          count = positions.dim(1);
  return StepFunction(
      [=, g = dy.slot, p = positions.slot, o = dx.slot](ValuePointers v) {
        cpu::gatherRowsBackward(f32(v[g]), i32(v[p]), f32(v[o]), batch, seq, d,
                                count, /*accumulate=*/false);
      });
}

Expected<StepFunction> prepareSoftmaxCrossEntropy(StepContext &c) {
  const Arg &logits = c.in(0), &labels = c.in(1), &weights = c.in(2),
            &loss = c.out(0);
  if (!checkCrossEntropy(c, logits, labels, weights, DType::F32) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t rows = logits.dim(0), classes = logits.dim(1);
  return StepFunction([=, z = logits.slot, l = labels.slot, w = weights.slot,
                       o = loss.slot](ValuePointers v) {
    *f32(v[o]) = cpu::softmaxCrossEntropy(f32(v[z]), i32(v[l]), f32(v[w]), rows,
                                          classes, nullptr, 1.0f);
  });
}

Expected<StepFunction> prepareSoftmaxCrossEntropyGrad(StepContext &c) {
  const Arg &logits = c.in(0), &labels = c.in(1), &dloss = c.in(2),
            &weights = c.in(3), &dlogits = c.out(0);
  if (!checkCrossEntropy(c, logits, labels, weights, DType::F32) ||
      !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dlogits, DType::F32, logits.value->shape))
    return c.takeError();
  int64_t rows = logits.dim(0), classes = logits.dim(1);
  return StepFunction([=, z = logits.slot, l = labels.slot, s = dloss.slot,
                       w = weights.slot, o = dlogits.slot](ValuePointers v) {
    cpu::softmaxCrossEntropy(f32(v[z]), i32(v[l]), f32(v[w]), rows, classes,
                             f32(v[o]), *f32(v[s]));
  });
}

Expected<StepFunction> prepareSquaredError(StepContext &c) {
  const Arg &pred = c.in(0), &target = c.in(1), &loss = c.out(0);
  if (!c.minRank(pred, DType::F32, 0) ||
      !c.shape(target, DType::F32, pred.value->shape) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t n = pred.value->numel;
  return StepFunction(
      [=, p = pred.slot, t = target.slot, o = loss.slot](ValuePointers v) {
        *f32(v[o]) = cpu::squaredError(f32(v[p]), f32(v[t]), n, nullptr, 1.0f);
      });
}

//===----------------------------------------------------------------------===//
// Router losses and their gradients
//===----------------------------------------------------------------------===//

/// The loss of a router loss kernel `loss(scores, tokens, experts)`.
template <float (*Loss)(const float *, int64_t, int64_t)>
Expected<StepFunction> prepareRouterLoss(StepContext &c) {
  const Arg &scores = c.in(0), &loss = c.out(0);
  if (!checkRouterScores(c, scores) || !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  return StepFunction([=, z = scores.slot, o = loss.slot](ValuePointers v) {
    *f32(v[o]) = Loss(f32(v[z]), tokens, experts);
  });
}

/// The gradient of a router loss kernel `grad(scores, tokens, experts,
/// dloss, dscores)`.
template <void (*Grad)(const float *, int64_t, int64_t, float, float *)>
Expected<StepFunction> prepareRouterLossGrad(StepContext &c) {
  const Arg &scores = c.in(0), &dloss = c.in(1), &dscores = c.out(0);
  if (!checkRouterScores(c, scores, &dscores) ||
      !c.shape(dloss, DType::F32, {}))
    return c.takeError();
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  return StepFunction(
      [=, z = scores.slot, s = dloss.slot, o = dscores.slot](ValuePointers v) {
        Grad(f32(v[z]), tokens, experts, *f32(v[s]), f32(v[o]));
      });
}

Expected<StepFunction> prepareLoadBalancingLoss(StepContext &c) {
  const Arg &probs = c.in(0), &loss = c.out(0);
  int64_t groups, k;
  if (!checkRouterScores(c, probs) ||
      !checkLoadBalancing(c, probs, groups, k) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  return StepFunction([=, p = probs.slot, o = loss.slot](ValuePointers v) {
    *f32(v[o]) =
        cpu::loadBalancingLoss(f32(v[p]), groups, perGroup, experts, k);
  });
}

Expected<StepFunction> prepareLoadBalancingLossGrad(StepContext &c) {
  const Arg &probs = c.in(0), &dloss = c.in(1), &dprobs = c.out(0);
  int64_t groups, k;
  if (!checkRouterScores(c, probs, &dprobs) ||
      !checkLoadBalancing(c, probs, groups, k) ||
      !c.shape(dloss, DType::F32, {}))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  return StepFunction(
      [=, p = probs.slot, s = dloss.slot, o = dprobs.slot](ValuePointers v) {
        cpu::loadBalancingLossGrad(f32(v[p]), groups, perGroup, experts, k,
                                   *f32(v[s]), f32(v[o]));
      });
}

//===----------------------------------------------------------------------===//
// Dense, normalisation and pointwise gradients
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareActivationGrad(StepContext &c) {
  const Arg &preact = c.in(0), &dy = c.in(1), &dx = c.out(0);
  cpu::Activation act = c.activation("kind");
  if (!c.minRank(preact, DType::F32, 0) ||
      !c.shape(dy, DType::F32, preact.value->shape) ||
      !c.shape(dx, DType::F32, preact.value->shape))
    return c.takeError();
  int64_t n = preact.value->numel;
  return StepFunction(
      [=, p = preact.slot, g = dy.slot, o = dx.slot](ValuePointers v) {
        cpu::activationBackward(f32(v[p]), f32(v[g]), f32(v[o]), n, act);
      });
}

Expected<StepFunction> prepareDenseWeightGrad(StepContext &c) {
  const Arg &x = c.in(0), &dy = c.in(1), &dw = c.out(0);
  bool transpose = c.boolAttr("transpose_w");
  if (!c.minRank(x, DType::F32, 1) || !c.minRank(dy, DType::F32, 1))
    return c.takeError();
  int64_t m = leadingElements(*x.value), k = x.value->shape.back(),
          n = dy.value->shape.back();
  std::vector<int64_t> dyShape = x.value->shape;
  dyShape.back() = n;
  if (!c.shape(dy, DType::F32, dyShape) ||
      !c.shape(dw, DType::F32,
               transpose ? std::vector<int64_t>{n, k}
                         : std::vector<int64_t>{k, n}))
    return c.takeError();
  return StepFunction(
      [=, a = x.slot, g = dy.slot, o = dw.slot](ValuePointers v) {
        cpu::denseBackward(f32(v[a]), nullptr, f32(v[g]), nullptr, f32(v[o]),
                           nullptr, m, k, n, transpose, /*accumulate=*/false);
      });
}

Expected<StepFunction> prepareReduceRows(StepContext &c) {
  const Arg &dy = c.in(0), &db = c.out(0);
  if (!c.minRank(dy, DType::F32, 1) ||
      !c.shape(db, DType::F32, {dy.value->shape.back()}))
    return c.takeError();
  int64_t m = leadingElements(*dy.value), n = dy.value->shape.back();
  return StepFunction([=, g = dy.slot, o = db.slot](ValuePointers v) {
    cpu::denseBackward(nullptr, nullptr, f32(v[g]), nullptr, nullptr, f32(v[o]),
                       m, 0, n, false, /*accumulate=*/false);
  });
}

Expected<StepFunction> prepareLayerNormGrad(StepContext &c) {
  const Arg &x = c.in(0), &residual = c.in(1), &scale = c.in(2), &dy = c.in(3),
            &dx = c.out(0), &dscale = c.out(1), &dbias = c.out(2);
  float eps;
  int64_t rows, cols;
  if (!checkLayerNorm(c, DType::F32, {&dy, &dx}, {&scale, &dscale, &dbias}, eps,
                      rows, cols))
    return c.takeError();
  return StepFunction([=, a = x.slot, r = residual.slot, s = scale.slot,
                       g = dy.slot, o = dx.slot, os = dscale.slot,
                       ob = dbias.slot](ValuePointers v) {
    cpu::layerNormBackward(f32(v[a]), f32(v[r]), f32(v[s]), f32(v[g]),
                           f32(v[o]), f32(v[os]), f32(v[ob]), rows, cols, eps,
                           /*accumulate=*/false);
  });
}

Expected<StepFunction> prepareSoftmaxGrad(StepContext &c) {
  const Arg &y = c.in(0), &dy = c.in(1), &dx = c.out(0);
  int64_t rows, cols;
  if (!checkRows(c, y, DType::F32, {&dy, &dx}, rows, cols))
    return c.takeError();
  return StepFunction(
      [=, p = y.slot, g = dy.slot, o = dx.slot](ValuePointers v) {
        cpu::softmaxBackward(f32(v[p]), f32(v[g]), f32(v[o]), rows, cols);
      });
}

Expected<StepFunction> prepareTakePositionGrad(StepContext &c) {
  const Arg &dy = c.in(0), &dx = c.out(0);
  int64_t index;
  if (!checkTakePosition(c, dx, dy, DType::F32, index))
    return c.takeError();
  int64_t batch = dx.dim(0), seq = dx.dim(1), d = dx.dim(2);
  return StepFunction([=, g = dy.slot, o = dx.slot](ValuePointers v) {
    const float *in = f32(v[g]);
    float *out = f32(v[o]);
    std::fill_n(out, batch * seq * d, 0.0f);
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(in + b * d, d, out + (b * seq + index) * d);
  });
}

//===----------------------------------------------------------------------===//
// Mixing gradients
//===----------------------------------------------------------------------===//

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

//===----------------------------------------------------------------------===//
// Embedding and attention gradients
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareEmbedGrad(StepContext &c) {
  const Arg &ids = c.in(0), &typeIds = c.in(1), &dy = c.in(2),
            &dword = c.out(0), &dpos = c.out(1), &dtype = c.out(2);
  if (!checkEmbedding(c, ids, typeIds, dword, dpos, dtype) ||
      !c.shape(dy, DType::F32, {ids.dim(0), ids.dim(1), dword.dim(1)}))
    return c.takeError();
  int64_t batch = ids.dim(0), seq = ids.dim(1), width = dword.dim(1),
          vocab = dword.dim(0), posRows = dpos.dim(1), typeVocab = dtype.dim(0);
  return StepFunction([=, i = ids.slot, t = typeIds.slot, g = dy.slot,
                       w = dword.slot, p = dpos.slot,
                       tt = dtype.slot](ValuePointers v) {
    cpu::embedBackward(i32(v[i]), i32(v[t]), f32(v[g]), f32(v[w]), f32(v[p]),
                       f32(v[tt]), batch, seq, width, vocab, posRows, typeVocab,
                       /*accumulate=*/false);
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
      !dropout.read(c, c.in(5), c.in(6)) ||
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

//===----------------------------------------------------------------------===//
// Mixture-of-experts gradients
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareDispatchGrad(StepContext &c) {
  const Arg &dxd = c.in(0), &tokens = c.in(1), &dx = c.out(0);
  if (!checkCombine(c, dxd, tokens, nullptr, dx, DType::F32))
    return c.takeError();
  int64_t slots = dxd.dim(0), d = dxd.dim(1), numTokens = dx.dim(0);
  return StepFunction([=, g = dxd.slot, t = tokens.slot,
                       o = dx.slot](ValuePointers v) {
    cpu::dispatchBackward(f32(v[g]), i32(v[t]), f32(v[o]), slots, numTokens, d);
  });
}

Expected<StepFunction> prepareCombineGrad(StepContext &c) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &gates = c.in(2), &dout = c.in(3),
            &dyd = c.out(0), &dgates = c.out(1);
  if (!checkCombine(c, yd, tokens, &gates, dout, DType::F32) ||
      !c.shape(dyd, DType::F32, yd.value->shape) ||
      !c.shape(dgates, DType::F32, {yd.dim(0)}))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = dout.dim(0);
  return StepFunction([=, a = yd.slot, t = tokens.slot, g = gates.slot,
                       go = dout.slot, o = dyd.slot,
                       og = dgates.slot](ValuePointers v) {
    cpu::combineBackward(f32(v[a]), i32(v[t]), f32(v[g]), f32(v[go]), f32(v[o]),
                         f32(v[og]), slots, numTokens, d);
  });
}

Expected<StepFunction> prepareExpertsGrad(StepContext &c) {
  const Arg &xd = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &dyd = c.in(6);
  cpu::Activation act = c.activation("activation");
  if (!checkNotGathered(c) || !c.rank(xd, DType::F32, 2) ||
      !c.rank(w1, DType::F32, 3))
    return c.takeError();
  int64_t slots = xd.dim(0), d = xd.dim(1), experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(tokens, DType::I32, {slots}) ||
      !c.shape(offsets, DType::I32, {experts + 1}) ||
      !c.shape(w1, DType::F32, {experts, d, f}) ||
      !c.shape(b1, DType::F32, {experts, f}) ||
      !c.shape(w2, DType::F32, {experts, f, d}) ||
      !c.shape(dyd, DType::F32, {slots, d}) ||
      !c.shape(c.out(0), DType::F32, {slots, d}) ||
      !c.shape(c.out(1), DType::F32, {experts, d, f}) ||
      !c.shape(c.out(2), DType::F32, {experts, f}) ||
      !c.shape(c.out(3), DType::F32, {experts, f, d}) ||
      !c.shape(c.out(4), DType::F32, {experts, d}))
    return c.takeError();
  // The plan keeps no pre-activations: the backward recomputes them per row
  // tile. Scratch: the backward's H and dP, 2 * slots * f.
  int64_t scratch = c.scratch(2 * slots * f);
  return StepFunction([=, a = xd.slot, t = tokens.slot, o = offsets.slot,
                       k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, g = dyd.slot,
                       r0 = c.out(0).slot, r1 = c.out(1).slot,
                       r2 = c.out(2).slot, r3 = c.out(3).slot,
                       r4 = c.out(4).slot](ValuePointers v) {
    cpu::expertsBackwardRecompute(
        f32(v[a]), i32(v[t]), i32(v[o]), f32(v[k1]), f32(v[c1]), f32(v[k2]),
        f32(v[g]), f32(v[r0]), f32(v[r1]), f32(v[r2]), f32(v[r3]), f32(v[r4]),
        f32(v[scratch]), experts, slots, d, f, act, /*accumulate=*/false);
  });
}

Expected<StepFunction> prepareScatterGateGrad(StepContext &c) {
  const Arg &tokens = c.in(0), &offsets = c.in(1), &dgates = c.in(2),
            &dscores = c.out(0);
  if (!checkGateGrad(c, tokens, offsets, dgates, dscores))
    return c.takeError();
  int64_t numTokens = dscores.dim(0), experts = dscores.dim(1);
  return StepFunction([=, t = tokens.slot, o = offsets.slot, g = dgates.slot,
                       r = dscores.slot](ValuePointers v) {
    cpu::routerGateBackward(cpu::Routing::ExpertsChoose, nullptr, i32(v[t]),
                            i32(v[o]), f32(v[g]), f32(v[r]), numTokens,
                            experts);
  });
}

Expected<StepFunction> prepareRouteGrad(StepContext &c) {
  const Arg &logits = c.in(0), &tokens = c.in(1), &offsets = c.in(2),
            &dgates = c.in(3), &dlogits = c.out(0);
  cpu::Routing routing = readRouting(c);
  if (!checkGateGrad(c, tokens, offsets, dgates, dlogits) ||
      !c.shape(logits, DType::F32, dlogits.value->shape))
    return c.takeError();
  int64_t numTokens = dlogits.dim(0), experts = dlogits.dim(1);
  // The capacity routings gate with softmax probabilities: their gradient
  // goes back through a softmax recomputed into the scratch.
  int64_t scratch =
      routing == cpu::Routing::SigmoidTopK ? 0 : c.scratch(numTokens * experts);
  return StepFunction([=, z = logits.slot, t = tokens.slot, o = offsets.slot,
                       g = dgates.slot, r = dlogits.slot](ValuePointers v) {
    float *out = f32(v[r]);
    cpu::routerGateBackward(routing, f32(v[z]), i32(v[t]), i32(v[o]), f32(v[g]),
                            out, numTokens, experts);
    if (routing == cpu::Routing::SigmoidTopK)
      return;
    float *probs = f32(v[scratch]);
    cpu::softmax(f32(v[z]), probs, numTokens, experts);
    cpu::softmaxBackward(probs, out, out, numTokens, experts);
  });
}

//===----------------------------------------------------------------------===//
// Optimizer update
//===----------------------------------------------------------------------===//

Expected<StepFunction> prepareRandomScale(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &step = c.in(2), &y = c.out(0);
  bool dropout;
  double rate;
  int64_t stream;
  if (!readRandomScale(c, dropout, rate, stream) ||
      !c.minRank(x, DType::F32, 0) || !c.shape(seed, DType::I32, {}) ||
      !c.shape(step, DType::I32, {}) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  return StepFunction([=, a = x.slot, k = seed.slot, s = step.slot,
                       o = y.slot](ValuePointers v) {
    int32_t key = *i32(v[k]);
    if (key < 0) {
      // A negative seed evaluates: no noise.
      std::copy_n(f32(v[a]), n, f32(v[o]));
      return;
    }
    cpu::randomScale(f32(v[a]), f32(v[o]), n, dropout, rate,
                     cpu::CounterUniforms(key, stream, *i32(v[s])));
  });
}

Expected<StepFunction> prepareDropExperts(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &step = c.in(2), &y = c.out(0);
  double rate;
  int64_t stream;
  bool gradient;
  if (!readDropExperts(c, rate, stream, gradient) ||
      !c.rank(x, DType::F32, 2) || !c.shape(seed, DType::I32, {}) ||
      !c.shape(step, DType::I32, {}) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  // Dropped experts lose the top-k forward and pass no gradient back.
  float fill = gradient ? 0.0f : -std::numeric_limits<float>::infinity();
  return StepFunction([=, a = x.slot, k = seed.slot, s = step.slot,
                       o = y.slot](ValuePointers v) {
    int32_t key = *i32(v[k]);
    if (key < 0) {
      // A negative seed evaluates: every expert stays.
      std::copy_n(f32(v[a]), n, f32(v[o]));
      return;
    }
    cpu::expertDropout(f32(v[a]), f32(v[o]), n, key, stream, *i32(v[s]), rate,
                       fill);
  });
}

/// Reads the attribute micro_steps and checks the operand micro_step, an I32
/// scalar counting the micro-steps of an update from 0.
bool readMicroSteps(StepContext &c, const Arg &microStep, int64_t &microSteps) {
  return exec::readMicroSteps(c, microSteps) &&
         c.shape(microStep, DType::I32, {});
}

/// The value of input `micro_step`, checked against `microSteps`.
int32_t microStepOf(ValuePointers v, int64_t slot, int64_t microSteps) {
  int32_t micro = *i32(v[slot]);
  if (Status valid = checkMicroStep(micro, microSteps); !valid)
    throw cpu::KernelError{valid.message()};
  return micro;
}

Expected<StepFunction> prepareNoiseCounter(StepContext &c) {
  const Arg &step = c.in(0), &micro = c.in(1), &y = c.out(0);
  int64_t microSteps;
  if (!c.shape(step, DType::I32, {}) || !readMicroSteps(c, micro, microSteps) ||
      !c.shape(y, DType::I32, {}))
    return c.takeError();
  return StepFunction(
      [=, s = step.slot, m = micro.slot, o = y.slot](ValuePointers v) {
        *i32(v[o]) =
            noiseCounter(*i32(v[s]), microSteps, microStepOf(v, m, microSteps));
      });
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
    train::accumulateGradient(f32(v[a]), f32(v[g]), f32(v[o]), n,
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
    std::vector<train::ConstValues> values;
    values.reserve(tensors.size());
    for (auto [slot, n] : tensors)
      values.emplace_back(f32(v[slot]), n);
    *f32(v[o]) = static_cast<float>(train::globalNorm(values));
  });
}

Expected<StepFunction> prepareAdamW(StepContext &c) {
  const Arg &grad = c.in(0), &lr = c.in(1), &step = c.in(2), &norm = c.in(3),
            &micro = c.in(4);
  const Arg &param = c.out(0), &m = c.out(1), &v = c.out(2);
  train::AdamWConfig config;
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
    train::adamwStep(f32(values[p]), f32(values[g]), f32(values[ms]),
                     f32(values[vs]), n, *f32(values[l]), int64_t(applied) + 1,
                     config, scale);
  });
}

/// Every plan kernel with its factory.
const KernelEntry kKernels[] = {
    {Kernel::Embed, prepareEmbed},
    {Kernel::Dense, prepareDense},
    {Kernel::LayerNorm, prepareLayerNorm},
    {Kernel::Activation, prepareActivation},
    {Kernel::Add, prepareAdd},
    {Kernel::Softmax, prepareSoftmax},
    {Kernel::RoundBf16, prepareRoundBf16},
    {Kernel::TakePosition, prepareTakePosition},
    {Kernel::LinearMix, prepareLinearMix},
    {Kernel::SpectralMix, prepareSpectralMix},
    {Kernel::StructuredMix, prepareStructuredMix},
    {Kernel::Attention, prepareAttention},
    {Kernel::RouteExpertsChoose, prepareRouteExpertsChoose},
    {Kernel::RouteTokensChoose, prepareRouteTokensChoose},
    {Kernel::RouteSigmoidTopK, prepareRouteSigmoidTopK},
    {Kernel::Dispatch, prepareDispatch},
    {Kernel::Experts, prepareExperts},
    {Kernel::Combine, prepareCombine},
    {Kernel::Fill, prepareFill},
    {Kernel::Broadcast, prepareBroadcast},
    {Kernel::ReduceSum, prepareReduceSum},
    {Kernel::Multiply, prepareMultiply},
    {Kernel::Divide, prepareDivide},
    {Kernel::Scale, prepareScale},
    {Kernel::LabelMask, prepareLabelMask},
    {Kernel::Argmax, prepareArgmax},
    {Kernel::GatherPositions, prepareGatherPositions},
    {Kernel::SoftmaxCrossEntropy, prepareSoftmaxCrossEntropy},
    {Kernel::SquaredError, prepareSquaredError},
    {Kernel::RouterZLoss, prepareRouterLoss<cpu::routerZLoss>},
    {Kernel::LoadBalancingLoss, prepareLoadBalancingLoss},
    {Kernel::EntropyRegularizer, prepareRouterLoss<cpu::entropyRegularizer>},
    {Kernel::ActivationGrad, prepareActivationGrad},
    {Kernel::DenseWeightGrad, prepareDenseWeightGrad},
    {Kernel::ReduceRows, prepareReduceRows},
    {Kernel::LayerNormGrad, prepareLayerNormGrad},
    {Kernel::SoftmaxGrad, prepareSoftmaxGrad},
    {Kernel::TakePositionGrad, prepareTakePositionGrad},
    {Kernel::LinearMixGrad, prepareLinearMixGrad},
    {Kernel::StructuredMixGrad, prepareStructuredMixGrad},
    {Kernel::EmbedGrad, prepareEmbedGrad},
    {Kernel::AttentionGrad, prepareAttentionGrad},
    {Kernel::DispatchGrad, prepareDispatchGrad},
    {Kernel::CombineGrad, prepareCombineGrad},
    {Kernel::ExpertsGrad, prepareExpertsGrad},
    {Kernel::ScatterGateGrad, prepareScatterGateGrad},
    {Kernel::RouteGrad, prepareRouteGrad},
    {Kernel::GatherPositionsGrad, prepareGatherPositionsGrad},
    {Kernel::SoftmaxCrossEntropyGrad, prepareSoftmaxCrossEntropyGrad},
    {Kernel::RouterZLossGrad, prepareRouterLossGrad<cpu::routerZLossGrad>},
    {Kernel::LoadBalancingLossGrad, prepareLoadBalancingLossGrad},
    {Kernel::EntropyRegularizerGrad,
     prepareRouterLossGrad<cpu::entropyRegularizerGrad>},
    {Kernel::RandomScale, prepareRandomScale},
    {Kernel::DropExperts, prepareDropExperts},
    {Kernel::NoiseCounter, prepareNoiseCounter},
    {Kernel::AccumulateGradient, prepareAccumulateGradient},
    {Kernel::GlobalNorm, prepareGlobalNorm},
    {Kernel::AdamW, prepareAdamW},
};

const KernelEntry *findEntry(Kernel kernel) {
  for (const KernelEntry &entry : kKernels)
    if (entry.kernel == kernel)
      return &entry;
  return nullptr;
}

} // namespace

std::string describeStep(const Plan &plan, size_t index) {
  return plan.path + ": steps[" + std::to_string(index) + "] (" +
         std::string(kernelName(plan.steps[index].kernel)) + ")";
}

Expected<StepFunction> prepareStep(const Plan &plan, size_t index,
                                   int64_t &scratchBytes) {
  const KernelEntry *entry = findEntry(plan.steps[index].kernel);
  std::string where = describeStep(plan, index);
  if (!entry)
    return Status::error(where + ": the CPU runtime has no such kernel");
  StepContext context(plan, index, scratchBytes);
  // Kernel state (FFT plans) is allocated here and may fail.
  try {
    return entry->prepare(context);
  } catch (const cpu::KernelError &error) {
    return Status::error(where + ": " + error.message);
  } catch (const std::bad_alloc &) {
    return Status::error(where + ": out of memory preparing the kernel");
  }
}

std::vector<Kernel> cpuKernels() {
  std::vector<Kernel> kernels;
  for (const KernelEntry &entry : kKernels)
    kernels.push_back(entry.kernel);
  return kernels;
}

} // namespace mixer::exec
