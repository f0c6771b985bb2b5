//===- KernelTableDenseNorm.cpp - Dense, norm and pointwise CUDA steps ----===//
//
// The factories of the CUDA kernel table for the DenseNorm family of
// Kernels.def: dense products, normalisation, embeddings and pointwise kernels.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

#include "runtime/cuda/Gemm.h"

#include <string>
#include <type_traits>

namespace mixer::cuda {

namespace {

/// Reads the activation `kind` of a pointwise step: gelu (the bias + GELU
/// kernels), gelu_erf or tanh.
bool pointwiseActivation(StepContext &c, Activation &kind) {
  kind = c.activation("kind");
  return c.check(kind == Activation::Gelu || kind == Activation::GeluErf ||
                     kind == Activation::Tanh,
                 "activation '" + c.stringAttr("kind") +
                     "' has no CUDA implementation yet (only gelu, gelu_erf "
                     "and tanh)");
}

Expected<DeviceStep> prepareLayerNorm(StepContext &c) {
  const Arg &x = c.in(0), &residual = c.in(1), &scale = c.in(2),
            &bias = c.in(3), &y = c.out(0);
  float eps;
  int64_t rows, cols;
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkLayerNorm(c, dtype, {&y}, {&scale, &bias}, eps, rows, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, r = residual.slot, s = scale.slot,
                     b = bias.slot, o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return layerNorm(as<T>(v[a]), as<T>(v[r]), as<float>(v[s]),
                       as<float>(v[b]), as<T>(v[o]), rows, cols, eps,
                       ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareLayerNormGrad(StepContext &c) {
  const Arg &x = c.in(0), &residual = c.in(1), &scale = c.in(2), &dy = c.in(3),
            &dx = c.out(0), &dscale = c.out(1), &dbias = c.out(2);
  float eps;
  int64_t rows, cols;
  DType dtype;
  if (!activationType(c, x, dtype) ||
      !exec::checkLayerNorm(c, dtype, {&dy, &dx}, {&scale, &dscale, &dbias},
                            eps, rows, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, r = residual.slot, s = scale.slot,
                     g = dy.slot, o = dx.slot, os = dscale.slot,
                     ob = dbias.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return layerNormBackward(as<T>(v[a]), as<T>(v[r]), as<float>(v[s]),
                               as<T>(v[g]), as<T>(v[o]), as<float>(v[os]),
                               as<float>(v[ob]), rows, cols, eps,
                               /*accumulate=*/false, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareActivation(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  DType dtype;
  Activation kind;
  int64_t rows, cols;
  if (!pointwiseActivation(c, kind) || !activationType(c, x, dtype) ||
      !exec::checkRows(c, x, dtype, {&y}, rows, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      T *in = as<T>(ctx.device[a]), *out = as<T>(ctx.device[o]);
      switch (kind) {
      case Activation::Gelu:
        return biasGelu(in, nullptr, out, rows, cols, ctx.stream);
      case Activation::GeluErf:
        return geluErfForward(in, out, rows * cols, ctx.stream);
      default:
        return tanhForward(in, out, rows * cols, ctx.stream);
      }
    });
  });
}

Expected<DeviceStep> prepareActivationGrad(StepContext &c) {
  const Arg &preact = c.in(0), &dy = c.in(1), &dx = c.out(0);
  DType dtype;
  Activation kind;
  int64_t rows, cols;
  if (!pointwiseActivation(c, kind) || !activationType(c, preact, dtype) ||
      !exec::checkRows(c, preact, dtype, {&dy, &dx}, rows, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, p = preact.slot, g = dy.slot, o = dx.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          switch (kind) {
          case Activation::Gelu:
            return biasGeluBackward(as<T>(v[p]), nullptr, as<T>(v[g]),
                                    as<T>(v[o]), nullptr, rows, cols,
                                    /*accumulate=*/false, ctx.stream);
          case Activation::GeluErf:
            return geluErfBackward(as<T>(v[p]), as<T>(v[g]), as<T>(v[o]),
                                   rows * cols, ctx.stream);
          default:
            return tanhBackward(as<T>(v[p]), as<T>(v[g]), as<T>(v[o]),
                                rows * cols, ctx.stream);
          }
        });
      });
}

Expected<DeviceStep> prepareSoftmax(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  DType dtype;
  int64_t rows, cols;
  // The bfloat16 router's softmax reads and writes fp32 values.
  if (c.boolAttr("bf16")) {
    if (!exec::checkRows(c, x, DType::F32, {&y}, rows, cols))
      return c.takeError();
    return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
      return routerSoftmaxBf16(as<float>(ctx.device[a]),
                               as<float>(ctx.device[o]), rows, cols,
                               ctx.stream);
    });
  }
  if (!activationType(c, x, dtype) ||
      !exec::checkRows(c, x, dtype, {&y}, rows, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return softmax(as<T>(ctx.device[a]), as<T>(ctx.device[o]), rows, cols,
                     ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareSoftmaxGrad(StepContext &c) {
  const Arg &y = c.in(0), &dy = c.in(1), &dx = c.out(0);
  DType dtype;
  int64_t rows, cols;
  if (!activationType(c, y, dtype) ||
      !exec::checkRows(c, y, dtype, {&dy, &dx}, rows, cols))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, p = y.slot, g = dy.slot, o = dx.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return softmaxBackward(as<T>(v[p]), as<T>(v[g]), as<T>(v[o]), rows,
                                 cols, ctx.stream);
        });
      });
}

/// The product of a dense step: y [m, n] = epilogue(x [m, k] · w + bias), w
/// [k, n] or, transposed, [n, k].
template <typename T, typename Out>
GemmProblem<T, Out>
denseProduct(const T *x, const T *w, Out *y, const float *bias, int64_t m,
             int64_t n, int64_t k, bool transpose, GemmEpilogue epilogue) {
  GemmProblem<T, Out> p;
  p.transB = transpose;
  p.m = m, p.n = n, p.k = k;
  p.a = x, p.lda = k;
  p.b = w, p.ldb = transpose ? k : n;
  p.c = y, p.ldc = n;
  p.epilogue = epilogue;
  p.bias = bias;
  return p;
}

Expected<DeviceStep> prepareDense(StepContext &c) {
  const Arg &x = c.in(0), &w = c.in(1), &bias = c.in(2), &y = c.out(0);
  bool transpose = c.boolAttr("transpose_w");
  const std::string &activation = c.stringAttr("activation");
  DType dtype;
  if (!activationType(c, x, dtype) || !c.minRank(x, dtype, 1) ||
      !c.rank(w, DType::F32, 2))
    return c.takeError();
  bool gelu = activation == "gelu";
  int64_t k = x.value->shape.back();
  int64_t n = transpose ? w.dim(0) : w.dim(1);
  std::vector<int64_t> outShape = x.value->shape;
  outShape.back() = n;
  if (!c.check(gelu || activation == "none",
               "activation '" + activation +
                   "' has no cuBLASLt epilogue (only none and gelu)") ||
      !c.check((transpose ? w.dim(1) : w.dim(0)) == k,
               w.role + " is " + exec::describe(w.value->shape, DType::F32) +
                   " but operand 0 (x) has " + std::to_string(k) +
                   " features") ||
      !c.shape(bias, DType::F32, {n}) ||
      // A bf16 plan mixes precisions around the router: its logits are F32,
      // and the gradient of its input is BF16 from F32 logit gradients.
      !c.shape(y, y.value->dtype == DType::BF16 ? DType::BF16 : DType::F32,
               outShape))
    return c.takeError();
  int64_t m = exec::leadingElements(*x.value);
  bool narrow = y.value->dtype == DType::BF16;
  GemmEpilogue epilogue = gelu         ? GemmEpilogue::Gelu
                          : bias.value ? GemmEpilogue::Bias
                                       : GemmEpilogue::None;
  if (dtype == DType::BF16) {
    // Tensor cores: bf16 x times the weight rounded to bf16 in the scratch
    // (the fp32 master stays), fp32 accumulation, a bf16 or fp32 y.
    int64_t scratch = c.scratch(bf16Floats(k * n));
    return DeviceStep([=, a = x.slot, b = w.slot, bb = bias.slot,
                       o = y.slot](const LaunchContext &ctx) -> Status {
      void *const *v = ctx.device;
      Bf16 *weight = as<Bf16>(v[scratch]);
      if (Status status =
              narrowToBf16(as<float>(v[b]), weight, k * n, ctx.stream);
          !status)
        return status;
      const Bf16 *input = as<Bf16>(v[a]);
      const float *biasValues = as<float>(v[bb]);
      if (narrow)
        return ctx.gemm->gemm(denseProduct(input, weight, as<Bf16>(v[o]),
                                           biasValues, m, n, k, transpose,
                                           epilogue));
      return ctx.gemm->gemm(denseProduct(input, weight, as<float>(v[o]),
                                         biasValues, m, n, k, transpose,
                                         epilogue));
    });
  }
  // An fp32 x: an fp32 product, rounded once into a bf16 y (the gradient of
  // the router's input from its F32 logit gradients).
  int64_t scratch = narrow ? c.scratch(m * n) : 0;
  return DeviceStep([=, a = x.slot, b = w.slot, bb = bias.slot,
                     o = y.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    float *out = narrow ? as<float>(v[scratch]) : as<float>(v[o]);
    if (Status status = ctx.gemm->gemm(
            denseProduct(as<float>(v[a]), as<float>(v[b]), out,
                         as<float>(v[bb]), m, n, k, transpose, epilogue));
        !status)
      return status;
    return narrow ? narrowToBf16(out, as<Bf16>(v[o]), m * n, ctx.stream)
                  : Status::success();
  });
}

Expected<DeviceStep> prepareDenseWeightGrad(StepContext &c) {
  const Arg &x = c.in(0), &dy = c.in(1), &dw = c.out(0);
  bool transpose = c.boolAttr("transpose_w");
  // x and dy each F32 or BF16: in a bf16 plan the router's logit gradients
  // are F32 and its input BF16.
  DType xType, dyType;
  if (!activationType(c, x, xType) || !c.minRank(x, xType, 1) ||
      !activationType(c, dy, dyType) || !c.minRank(dy, dyType, 1))
    return c.takeError();
  int64_t m = exec::leadingElements(*x.value), k = x.value->shape.back(),
          n = dy.value->shape.back();
  std::vector<int64_t> dyShape = x.value->shape;
  dyShape.back() = n;
  if (!c.shape(dy, dyType, dyShape) ||
      !c.shape(dw, DType::F32,
               transpose ? std::vector<int64_t>{n, k}
                         : std::vector<int64_t>{k, n}))
    return c.takeError();
  bool xBf16 = xType == DType::BF16, dyBf16 = dyType == DType::BF16;
  // dW [k, n] = x^T dy, or its transpose [n, k] = dy^T x.
  auto product = [=](const auto *xs, const auto *dys, float *out) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(xs)>>;
    GemmProblem<T, float> p;
    p.transA = true;
    p.m = transpose ? n : k, p.n = transpose ? k : n, p.k = m;
    p.a = transpose ? dys : xs, p.lda = transpose ? n : k;
    p.b = transpose ? xs : dys, p.ldb = transpose ? k : n;
    p.c = out, p.ldc = p.n;
    return p;
  };
  if (xBf16 && dyBf16)
    // Tensor cores: bf16 operands, the fp32 gradient accumulated in fp32.
    return DeviceStep([=, a = x.slot, g = dy.slot,
                       o = dw.slot](const LaunchContext &ctx) -> Status {
      void *const *v = ctx.device;
      return ctx.gemm->gemm(
          product(as<Bf16>(v[a]), as<Bf16>(v[g]), as<float>(v[o])));
    });
  // Mixed precisions (the router: bf16 input, F32 logit gradients) widen the
  // bf16 operand and run in fp32.
  int64_t dyOffset = xBf16 ? alignedFloats(m * k) : 0;
  int64_t scratch =
      xBf16 || dyBf16 ? c.scratch(dyOffset + (dyBf16 ? m * n : 0)) : 0;
  return DeviceStep([=, a = x.slot, g = dy.slot,
                     o = dw.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    float *work = xBf16 || dyBf16 ? as<float>(v[scratch]) : nullptr;
    Expected<const float *> xs = widened(xBf16, v[a], work, m * k, ctx.stream);
    if (!xs)
      return xs.takeStatus();
    Expected<const float *> dys =
        widened(dyBf16, v[g], work + dyOffset, m * n, ctx.stream);
    if (!dys)
      return dys.takeStatus();
    return ctx.gemm->gemm(product(*xs, *dys, as<float>(v[o])));
  });
}

Expected<DeviceStep> prepareReduceRows(StepContext &c) {
  const Arg &dy = c.in(0), &db = c.out(0);
  DType dtype;
  if (!activationType(c, dy, dtype) || !c.minRank(dy, dtype, 1) ||
      !c.shape(db, DType::F32, {dy.value->shape.back()}))
    return c.takeError();
  int64_t rows = exec::leadingElements(*dy.value),
          cols = dy.value->shape.back();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, g = dy.slot, o = db.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return columnSum(as<T>(ctx.device[g]), as<float>(ctx.device[o]), rows,
                       cols, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareEmbed(StepContext &c) {
  const Arg &ids = c.in(0), &typeIds = c.in(1), &word = c.in(2), &pos = c.in(3),
            &type = c.in(4), &y = c.out(0);
  DType dtype;
  if (!exec::checkEmbedding(c, ids, typeIds, word, pos, type) ||
      !activationType(c, y, dtype) ||
      !c.shape(y, dtype, {ids.dim(0), ids.dim(1), word.dim(1)}))
    return c.takeError();
  int64_t batch = ids.dim(0), seq = ids.dim(1), width = word.dim(1),
          vocab = word.dim(0), typeVocab = type.dim(0);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, i = ids.slot, t = typeIds.slot, w = word.slot,
                     p = pos.slot, tt = type.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return embedSum(as<int32_t>(v[i]), as<int32_t>(v[t]), as<float>(v[w]),
                      as<float>(v[p]), as<float>(v[tt]), as<T>(v[o]), batch,
                      seq, width, vocab, typeVocab, ctx.stream, ctx.idCheck(0),
                      ctx.idCheck(1));
    });
  });
}

Expected<DeviceStep> prepareEmbedGrad(StepContext &c) {
  const Arg &ids = c.in(0), &typeIds = c.in(1), &dy = c.in(2),
            &dword = c.out(0), &dpos = c.out(1), &dtype = c.out(2);
  DType dyType;
  if (!exec::checkEmbedding(c, ids, typeIds, dword, dpos, dtype) ||
      !activationType(c, dy, dyType) ||
      !c.shape(dy, dyType, {ids.dim(0), ids.dim(1), dword.dim(1)}))
    return c.takeError();
  int64_t batch = ids.dim(0), seq = ids.dim(1), width = dword.dim(1),
          vocab = dword.dim(0), posRows = dpos.dim(1), typeVocab = dtype.dim(0);
  int64_t scratch =
      c.scratch(vocab + posRows + typeVocab + 3 + 3 * batch * seq);
  bool bf16 = dyType == DType::BF16;
  return DeviceStep([=, i = ids.slot, t = typeIds.slot, g = dy.slot,
                     w = dword.slot, p = dpos.slot,
                     tt = dtype.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return embedBackward(as<int32_t>(v[i]), as<int32_t>(v[t]), as<T>(v[g]),
                           as<float>(v[w]), as<float>(v[p]), as<float>(v[tt]),
                           batch, seq, width, vocab, posRows, typeVocab,
                           as<int32_t>(v[scratch]), ctx.stream, ctx.idCheck(0),
                           ctx.idCheck(1));
    });
  });
}

Expected<DeviceStep> prepareAdd(StepContext &c) {
  return prepareBinary(c, BinaryOp::Add);
}

/// An fp32 x is rounded; a bf16 activation (the router's input in a bf16
/// plan) already holds bfloat16 values and is widened.
Expected<DeviceStep> prepareRoundBf16(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) || !c.minRank(x, dtype, 0) ||
      !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel;
  bool widen = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    float *out = as<float>(ctx.device[o]);
    return widen ? widenBf16(as<Bf16>(ctx.device[a]), out, n, ctx.stream)
                 : roundToBf16Values(as<float>(ctx.device[a]), out, n,
                                     ctx.stream);
  });
}

} // namespace

std::vector<TableEntry> denseNormKernels() {
  return {
      {Kernel::Embed, prepareEmbed},
      {Kernel::Dense, prepareDense},
      {Kernel::LayerNorm, prepareLayerNorm},
      {Kernel::LayerNormGrad, prepareLayerNormGrad},
      {Kernel::Activation, prepareActivation},
      {Kernel::Add, prepareAdd},
      {Kernel::Softmax, prepareSoftmax},
      {Kernel::RoundBf16, prepareRoundBf16},
      {Kernel::SoftmaxGrad, prepareSoftmaxGrad},
      {Kernel::ActivationGrad, prepareActivationGrad},
      {Kernel::DenseWeightGrad, prepareDenseWeightGrad},
      {Kernel::ReduceRows, prepareReduceRows},
      {Kernel::EmbedGrad, prepareEmbedGrad},
  };
}

} // namespace mixer::cuda
