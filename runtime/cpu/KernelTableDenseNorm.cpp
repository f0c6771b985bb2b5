//===- KernelTableDenseNorm.cpp - Dense and norm steps on the CPU ---------===//
//
// The factories of the CPU kernel table for the DenseNorm family of
// Kernels.def: dense, normalisation, pointwise and embedding kernels and their
// gradients.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {

namespace {

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

/// A dense step with bf16 products: the kernel and its packed weights.
struct DenseBf16Step {
  DenseBf16 kernel;
  AlignedBytes packed;
};

Expected<StepFunction> prepareDense(StepContext &c) {
  const Arg &x = c.in(0), &w = c.in(1), &bias = c.in(2), &y = c.out(0);
  bool transpose = c.boolAttr("transpose_w");
  Activation act = c.activation("activation");
  // Only a step with bf16 products reads or writes bf16 activations.
  bool bf16 = c.boolAttr("bf16");
  DType xType = bf16 ? activationType(x) : DType::F32;
  DType yType = bf16 ? activationType(y) : DType::F32;
  if (!c.minRank(x, xType, 1) || !c.rank(w, DType::F32, 2))
    return c.takeError();
  int64_t k = x.value->shape.back();
  int64_t n = transpose ? w.dim(0) : w.dim(1);
  std::vector<int64_t> outShape = x.value->shape;
  outShape.back() = n;
  if (!c.check(
          (transpose ? w.dim(1) : w.dim(0)) == k,
          w.role + " is " + exec::describe(w.value->shape, DType::F32) +
              " but operand 0 (x) has " + std::to_string(k) + " features" +
              (transpose ? " (transpose_w: w is [N, K])" : " (w is [K, N])")) ||
      !c.shape(bias, DType::F32, {n}) || !c.shape(y, yType, outShape))
    return c.takeError();
  int64_t m = leadingElements(*x.value);
  if (bf16) {
    DenseBf16 kernel(m, k, n, transpose, xType == DType::BF16,
                     yType == DType::BF16, bias.value != nullptr, act);
    int64_t bytes = kernel.packedBytes();
    auto step = std::make_shared<DenseBf16Step>(
        DenseBf16Step{std::move(kernel), AlignedBytes(bytes)});
    return StepFunction(
        [=, a = x.slot, bb = bias.slot, o = y.slot](ValuePointers v) {
          step->kernel.run(v[a], step->packed.get(), f32(v[bb]), v[o]);
        },
        [=, b = w.slot](ValuePointers v) {
          step->kernel.pack(f32(v[b]), step->packed.get());
        });
  }
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
  Activation act = c.activation("kind");
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
  bool bf16 = c.boolAttr("bf16");
  int64_t rows, cols;
  if (!checkRows(c, x, DType::F32, {&y}, rows, cols))
    return c.takeError();
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    (bf16 ? cpu::routerSoftmaxBf16 : cpu::softmax)(f32(v[a]), f32(v[o]), rows,
                                                   cols);
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

Expected<StepFunction> prepareActivationGrad(StepContext &c) {
  const Arg &preact = c.in(0), &dy = c.in(1), &dx = c.out(0);
  Activation act = c.activation("kind");
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

} // namespace

std::vector<KernelEntry> denseNormKernels() {
  return {
      {Kernel::Embed, prepareEmbed},
      {Kernel::Dense, prepareDense},
      {Kernel::LayerNorm, prepareLayerNorm},
      {Kernel::Activation, prepareActivation},
      {Kernel::Add, prepareAdd},
      {Kernel::Softmax, prepareSoftmax},
      {Kernel::RoundBf16, prepareRoundBf16},
      {Kernel::ActivationGrad, prepareActivationGrad},
      {Kernel::DenseWeightGrad, prepareDenseWeightGrad},
      {Kernel::ReduceRows, prepareReduceRows},
      {Kernel::LayerNormGrad, prepareLayerNormGrad},
      {Kernel::SoftmaxGrad, prepareSoftmaxGrad},
      {Kernel::EmbedGrad, prepareEmbedGrad},
  };
}

} // namespace mixer::cpu
