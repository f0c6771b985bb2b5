//===- KernelTableHeadsLosses.cpp - Heads, losses and scalar steps on CUDA===//
//
// The factories of the CUDA kernel table for the HeadsLosses family of
// Kernels.def: task heads, losses and the scalar arithmetic around them.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

#include <type_traits>

namespace mixer::cuda {

namespace {

Expected<DeviceStep> prepareSoftmaxCrossEntropy(StepContext &c) {
  const Arg &logits = c.in(0), &labels = c.in(1), &weights = c.in(2),
            &loss = c.out(0);
  DType dtype;
  if (!activationType(c, logits, dtype) ||
      !exec::checkCrossEntropy(c, logits, labels, weights, dtype) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t rows = logits.dim(0), classes = logits.dim(1);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, z = logits.slot, l = labels.slot, w = weights.slot,
                     o = loss.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return softmaxCrossEntropy(as<T>(v[z]), as<int32_t>(v[l]),
                                 as<float>(v[w]), static_cast<T *>(nullptr),
                                 as<float>(v[o]), rows, classes, 1.0f,
                                 ctx.stream, ctx.idCheck(1));
    });
  });
}

Expected<DeviceStep> prepareTakePosition(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  int64_t index;
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkTakePosition(c, x, y, dtype, index))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return takePosition(as<T>(ctx.device[a]), as<T>(ctx.device[o]), batch,
                          seq, d, index, ctx.stream);
    });
  });
}

Expected<DeviceStep> preparePool(StepContext &c) {
  const Arg &x = c.in(0), &ids = c.in(1), &y = c.out(0);
  DType dtype;
  PoolMode mode;
  bool normalize;
  int32_t padId;
  if (!activationType(c, x, dtype) ||
      !exec::checkPool(c, dtype, mode, normalize, padId))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, a = x.slot, t = ids.slot, o = y.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return pool(as<T>(v[a]), as<int32_t>(v[t]), as<T>(v[o]), batch, seq,
                      d, mode, normalize, padId, ctx.stream);
        });
      });
}

Expected<DeviceStep> prepareTakePositionGrad(StepContext &c) {
  const Arg &dy = c.in(0), &dx = c.out(0);
  int64_t index;
  DType dtype;
  if (!activationType(c, dx, dtype) ||
      !exec::checkTakePosition(c, dx, dy, dtype, index))
    return c.takeError();
  int64_t batch = dx.dim(0), seq = dx.dim(1), d = dx.dim(2);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, g = dy.slot, o = dx.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return takePositionBackward(as<T>(ctx.device[g]), as<T>(ctx.device[o]),
                                  batch, seq, d, index, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareGatherPositions(StepContext &c) {
  const Arg &x = c.in(0), &positions = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkGather(c, x, positions, y, dtype))
    return c.takeError();
  int64_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2),
          count = positions.dim(1);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, p = positions.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return gatherPositions(as<T>(v[a]), as<int32_t>(v[p]), as<T>(v[o]), batch,
                             seq, d, count, ctx.stream, ctx.idCheck(1));
    });
  });
}

Expected<DeviceStep> prepareGatherPositionsGrad(StepContext &c) {
  const Arg &dy = c.in(0), &positions = c.in(1), &dx = c.out(0);
  DType dtype;
  if (!activationType(c, dx, dtype) ||
      !exec::checkGather(c, dx, positions, dy, dtype))
    return c.takeError();
  int64_t batch = dx.dim(0), seq = dx.dim(1), d = dx.dim(2),
          count = positions.dim(1);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, g = dy.slot, p = positions.slot,
                     o = dx.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return gatherPositionsBackward(as<T>(v[g]), as<int32_t>(v[p]),
                                     as<T>(v[o]), batch, seq, d, count,
                                     ctx.stream, ctx.idCheck(1));
    });
  });
}

Expected<DeviceStep> prepareMultiply(StepContext &c) {
  return prepareBinary(c, BinaryOp::Multiply);
}

Expected<DeviceStep> prepareDivide(StepContext &c) {
  return prepareBinary(c, BinaryOp::Divide);
}

Expected<DeviceStep> prepareFill(StepContext &c) {
  const Arg &y = c.out(0);
  double value = c.realAttr("value");
  if (!c.minRank(y, DType::F32, 0))
    return c.takeError();
  int64_t n = y.value->numel;
  float fill = static_cast<float>(value);
  return DeviceStep([=, o = y.slot](const LaunchContext &ctx) {
    return fillValues(as<float>(ctx.device[o]), n, fill, ctx.stream);
  });
}

Expected<DeviceStep> prepareBroadcast(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  if (!c.rank(x, DType::F32, 0) || !c.minRank(y, DType::F32, 0))
    return c.takeError();
  int64_t n = y.value->numel;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return broadcastScalar(as<float>(ctx.device[a]), as<float>(ctx.device[o]),
                           n, ctx.stream);
  });
}

Expected<DeviceStep> prepareReduceSum(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  if (!c.minRank(x, DType::F32, 0) || !c.shape(y, DType::F32, {}))
    return c.takeError();
  int64_t n = x.value->numel;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return sumValues(as<float>(ctx.device[a]), as<float>(ctx.device[o]), n,
                     ctx.stream);
  });
}

Expected<DeviceStep> prepareScale(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  double factor = c.realAttr("factor");
  if (!c.minRank(x, DType::F32, 0) || !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  float f = static_cast<float>(factor);
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return scaleValues(as<float>(ctx.device[a]), as<float>(ctx.device[o]), n, f,
                       ctx.stream);
  });
}

Expected<DeviceStep> prepareLabelMask(StepContext &c) {
  const Arg &labels = c.in(0), &y = c.out(0);
  if (!c.minRank(labels, DType::I32, 0) ||
      !c.shape(y, DType::F32, labels.value->shape))
    return c.takeError();
  int64_t n = labels.value->numel;
  return DeviceStep([=, a = labels.slot, o = y.slot](const LaunchContext &ctx) {
    return labelMask(as<int32_t>(ctx.device[a]), as<float>(ctx.device[o]), n,
                     ctx.stream);
  });
}

Expected<DeviceStep> prepareSquaredError(StepContext &c) {
  const Arg &pred = c.in(0), &target = c.in(1), &loss = c.out(0);
  if (!c.minRank(pred, DType::F32, 0) ||
      !c.shape(target, DType::F32, pred.value->shape) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t n = pred.value->numel;
  return DeviceStep([=, p = pred.slot, t = target.slot,
                     o = loss.slot](const LaunchContext &ctx) {
    return squaredError(as<float>(ctx.device[p]), as<float>(ctx.device[t]),
                        as<float>(ctx.device[o]), n, ctx.stream);
  });
}

Expected<DeviceStep> prepareArgmax(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  DType dtype;
  int64_t n, cols;
  if (!activationType(c, x, dtype) || !exec::checkArgmax(c, dtype, n, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return argmaxRows(as<T>(ctx.device[a]), as<int32_t>(ctx.device[o]), n,
                        cols, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareSoftmaxCrossEntropyGrad(StepContext &c) {
  const Arg &logits = c.in(0), &labels = c.in(1), &dloss = c.in(2),
            &weights = c.in(3), &dlogits = c.out(0);
  DType dtype;
  if (!activationType(c, logits, dtype) ||
      !exec::checkCrossEntropy(c, logits, labels, weights, dtype) ||
      !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dlogits, dtype, logits.value->shape))
    return c.takeError();
  int64_t rows = logits.dim(0), classes = logits.dim(1);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, z = logits.slot, l = labels.slot, s = dloss.slot,
                     w = weights.slot,
                     o = dlogits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return softmaxCrossEntropyGrad(
          as<T>(v[z]), as<int32_t>(v[l]), as<float>(v[w]), as<float>(v[s]),
          as<T>(v[o]), rows, classes, ctx.stream, ctx.idCheck(1));
    });
  });
}

} // namespace

std::vector<TableEntry> headsLossesKernels() {
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

} // namespace mixer::cuda
