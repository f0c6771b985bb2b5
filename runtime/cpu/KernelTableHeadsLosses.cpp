//===- KernelTableHeadsLosses.cpp - Head and loss steps on the CPU --------===//
//
// The factories of the CPU kernel table for the HeadsLosses family of
// Kernels.def: task heads, losses and the scalar arithmetic around them.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {

namespace {

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

Expected<StepFunction> preparePool(StepContext &c) {
  const Arg &x = c.in(0), &ids = c.in(1), &y = c.out(0);
  PoolMode mode;
  bool normalize;
  int32_t padId;
  if (!checkPool(c, DType::F32, mode, normalize, padId))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  return StepFunction(
      [=, a = x.slot, t = ids.slot, o = y.slot](ValuePointers v) {
        cpu::pool(f32(v[a]), i32(v[t]), f32(v[o]), batch, seq, d, mode,
                  normalize, padId);
      });
}

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

} // namespace

std::vector<KernelEntry> headsLossesKernels() {
  return {
      {Kernel::TakePosition, prepareTakePosition},
      {Kernel::Pool, preparePool},
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
      {Kernel::TakePositionGrad, prepareTakePositionGrad},
      {Kernel::GatherPositionsGrad, prepareGatherPositionsGrad},
      {Kernel::SoftmaxCrossEntropyGrad, prepareSoftmaxCrossEntropyGrad},
  };
}

} // namespace mixer::cpu
