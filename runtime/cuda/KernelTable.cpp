//===- KernelTable.cpp - Plan kernels bound to the CUDA kernels -----------===//

#include "runtime/cuda/KernelTable.h"

#include "runtime/cuda/ExecutorKernels.h"
#include "runtime/cuda/Gemm.h"
#include "runtime/exec/StepContext.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <type_traits>

namespace mixer::cuda {

namespace {

using exec::Arg;
using exec::DType;
using exec::StepContext;

template <typename T> T *as(void *p) { return static_cast<T *>(p); }

template <typename T> T hostValue(const LaunchContext &ctx, int64_t slot) {
  return *static_cast<const T *>(ctx.host[slot]);
}

/// Calls `launch` with a null pointer of the activation element type.
template <typename Launch> Status byPrecision(bool bf16, Launch &&launch) {
  return bf16 ? launch(static_cast<Bf16 *>(nullptr))
              : launch(static_cast<float *>(nullptr));
}

/// Reads the activation dtype of `arg`: F32 or BF16.
bool activationType(StepContext &c, const Arg &arg, DType &dtype) {
  dtype = arg.value->dtype;
  return c.check(dtype == DType::F32 || dtype == DType::BF16,
                 arg.role + " is " + exec::describe(arg.value->shape, dtype) +
                     " but the CUDA kernel needs F32 or BF16");
}

/// `arg`, a scalar the kernel takes as an argument, is a plan input (whose
/// host copy the executor keeps).
bool hostScalar(StepContext &c, const Arg &arg, DType dtype) {
  return c.shape(arg, dtype, {}) &&
         c.check(arg.value->storage == exec::StorageKind::Input,
                 arg.role + " must be a plan input: the CUDA kernel reads it "
                            "on the host");
}

/// The noise counter of a noise kernel (random_scale, attention), formed on
/// the host: the plan input step, or with gradient accumulation the result
/// of a noise_counter step, exec::noiseCounter of its inputs step and
/// micro_step.
struct HostCounter {
  int64_t step = 0;       ///< slot of input step
  int64_t microStep = -1; ///< slot of input micro_step; -1: the counter is step
  int64_t microSteps = 1;

  /// This run's counter. A noise_counter step runs before its readers and
  /// has checked micro_step.
  int32_t at(const LaunchContext &ctx) const {
    int32_t applied = hostValue<int32_t>(ctx, step);
    if (microStep < 0)
      return applied;
    return exec::noiseCounter(applied, microSteps,
                              hostValue<int32_t>(ctx, microStep));
  }
};

bool readNoiseCounter(StepContext &c, HostCounter &counter);

/// Reads `arg`, the counter operand of a noise kernel: an I32 scalar that is
/// a plan input or the result of a noise_counter step, whose inputs the
/// kernel reads on the host instead.
bool noiseCounterOf(StepContext &c, const Arg &arg, HostCounter &counter) {
  if (!c.shape(arg, DType::I32, {}))
    return false;
  if (arg.value->storage == exec::StorageKind::Input) {
    counter = HostCounter{arg.slot};
    return true;
  }
  const exec::Plan &plan = c.getPlan();
  int64_t index = c.producer(arg);
  if (index < 0 || plan.steps[index].kernel != Kernel::NoiseCounter)
    return c.fail(arg.role +
                  " must be a plan input or the result of a noise_counter "
                  "step: the CUDA kernel reads it on the host");
  int64_t scratchBytes = 0;
  StepContext source(plan, index, scratchBytes);
  if (!readNoiseCounter(source, counter))
    return c.fail(arg.role +
                  " comes from a noise_counter step the CUDA "
                  "kernel cannot read: " +
                  source.takeError().message());
  return true;
}

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

Status copyOf(const void *from, void *to, int64_t bytes, cudaStream_t stream) {
  cudaError_t error =
      cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, stream);
  if (error != cudaSuccess)
    return Status::error(std::string("copy failed: ") +
                         cudaGetErrorString(error));
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Normalisation, activations, softmax
//===----------------------------------------------------------------------===//

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
                                 ctx.stream);
    });
  });
}

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

Expected<DeviceStep> prepareRouteExpertsChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity;
  if (!exec::checkRouteExpertsChoose(c, groups, tokensPerGroup, capacity))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return DeviceStep([=, p = c.in(0).slot, t = c.out(0).slot, g = c.out(1).slot,
                     o = c.out(2).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    // The plan's probabilities: no softmax (no logits).
    return routeExpertsChoose(nullptr, as<float>(v[p]), as<int32_t>(v[t]),
                              as<float>(v[g]), as<int32_t>(v[o]), groups,
                              tokensPerGroup, experts, capacity, ctx.stream);
  });
}

Expected<DeviceStep> prepareRouteTokensChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity, k;
  bool prioritized;
  if (!exec::checkRouteTokensChoose(c, groups, tokensPerGroup, capacity, k,
                                    prioritized))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return DeviceStep([=, p = c.in(0).slot, t = c.out(0).slot, g = c.out(1).slot,
                     o = c.out(2).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routeTokensChoose(
        as<float>(v[p]), as<int32_t>(v[t]), as<float>(v[g]), as<int32_t>(v[o]),
        groups, tokensPerGroup, experts, k, capacity, prioritized, ctx.stream);
  });
}

Expected<DeviceStep> prepareRouteSigmoidTopK(StepContext &c) {
  const Arg &logits = c.in(0);
  int64_t k;
  if (!exec::checkRouteSigmoidTopK(c, k))
    return c.takeError();
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  return DeviceStep([=, p = logits.slot, t = c.out(0).slot, g = c.out(1).slot,
                     o = c.out(2).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routeSigmoidTopK(as<float>(v[p]), as<int32_t>(v[t]), as<float>(v[g]),
                            as<int32_t>(v[o]), tokens, experts, k, ctx.stream);
  });
}

//===----------------------------------------------------------------------===//
// Training noise and the optimizer
//===----------------------------------------------------------------------===//

Expected<DeviceStep> prepareRandomScale(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &step = c.in(2), &y = c.out(0);
  bool dropout;
  double rate;
  int64_t stream;
  DType dtype;
  HostCounter counter;
  if (!readRandomScale(c, dropout, rate, stream) ||
      !activationType(c, x, dtype) || !hostScalar(c, seed, DType::I32) ||
      !noiseCounterOf(c, step, counter) || !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel, bytes = x.value->bytes;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, a = x.slot, k = seed.slot, o = y.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        int32_t key = hostValue<int32_t>(ctx, k);
        // A negative seed evaluates: no noise.
        if (key < 0)
          return copyOf(v[a], v[o], bytes, ctx.stream);
        CounterKey draws{key, stream, counter.at(ctx)};
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return randomScale(as<T>(v[a]), as<T>(v[o]), n, dropout, rate, draws,
                             ctx.stream);
        });
      });
}

Expected<DeviceStep> prepareGlobalNorm(StepContext &c) {
  const Arg &norm = c.out(0);
  std::vector<std::pair<int64_t, int64_t>> tensors; // (slot, elements)
  for (size_t i = 0; i < c.numOperands(); ++i) {
    if (!c.minRank(c.in(i), DType::F32, 0))
      return c.takeError();
    tensors.emplace_back(c.in(i).slot, c.in(i).value->numel);
  }
  if (!c.shape(norm, DType::F32, {}))
    return c.takeError();
  // The double sum of squares, narrowed into the plan's F32 norm.
  int64_t sum = c.scratch(2);
  return DeviceStep([=, o = norm.slot](const LaunchContext &ctx) {
    std::vector<ConstValues> values;
    values.reserve(tensors.size());
    for (auto [slot, n] : tensors)
      values.emplace_back(as<float>(ctx.device[slot]), n);
    if (Status status =
            globalNorm(values, as<double>(ctx.device[sum]), ctx.stream);
        !status)
      return status;
    return narrowToFloat(as<double>(ctx.device[sum]), as<float>(ctx.device[o]),
                         ctx.stream);
  });
}

/// Reads the attribute micro_steps and checks the operand micro_step, when
/// present: an I32 plan input counting an update's micro-steps from 0.
bool readMicroSteps(StepContext &c, const Arg &microStep, int64_t &microSteps) {
  return exec::readMicroSteps(c, microSteps) &&
         (!microStep.value || hostScalar(c, microStep, DType::I32));
}

/// The host value of input micro_step at `slot`, checked against
/// `microSteps`.
Expected<int32_t> microStepOf(const LaunchContext &ctx, int64_t slot,
                              int64_t microSteps) {
  int32_t micro = hostValue<int32_t>(ctx, slot);
  if (Status valid = exec::checkMicroStep(micro, microSteps); !valid)
    return valid;
  return micro;
}

/// Checks the operands step and micro_step (plan inputs) and the result of
/// the noise_counter step `c` prepares; `counter` forms its value.
bool readNoiseCounter(StepContext &c, HostCounter &counter) {
  const Arg &step = c.in(0), &micro = c.in(1);
  if (!hostScalar(c, step, DType::I32) ||
      !readMicroSteps(c, micro, counter.microSteps) ||
      !c.shape(c.out(0), DType::I32, {}))
    return false;
  counter.step = step.slot, counter.microStep = micro.slot;
  return true;
}

Expected<DeviceStep> prepareNoiseCounter(StepContext &c) {
  HostCounter counter;
  if (!readNoiseCounter(c, counter))
    return c.takeError();
  return DeviceStep([=, o = c.out(0).slot](const LaunchContext &ctx) -> Status {
    Expected<int32_t> index =
        microStepOf(ctx, counter.microStep, counter.microSteps);
    if (!index)
      return index.takeStatus();
    return storeCounter(as<int32_t>(ctx.device[o]), counter.at(ctx),
                        ctx.stream);
  });
}

Expected<DeviceStep> prepareAccumulateGradient(StepContext &c) {
  const Arg &grad = c.in(0), &micro = c.in(1), &accum = c.out(0),
            &average = c.out(1);
  int64_t microSteps;
  if (!exec::checkAccumulateGradient(c, microSteps) ||
      !hostScalar(c, micro, DType::I32))
    return c.takeError();
  int64_t n = grad.value->numel;
  return DeviceStep([=, g = grad.slot, m = micro.slot, a = accum.slot,
                     o = average.slot](const LaunchContext &ctx) -> Status {
    Expected<int32_t> index = microStepOf(ctx, m, microSteps);
    if (!index)
      return index.takeStatus();
    void *const *v = ctx.device;
    return accumulateGradient(as<float>(v[a]), as<float>(v[g]), as<float>(v[o]),
                              n, *index, microSteps, ctx.stream);
  });
}

Expected<DeviceStep> prepareAdamW(StepContext &c) {
  const Arg &grad = c.in(0), &lr = c.in(1), &step = c.in(2), &norm = c.in(3),
            &micro = c.in(4);
  const Arg &param = c.out(0), &m = c.out(1), &v = c.out(2);
  AdamWConfig config;
  double maxNorm;
  int64_t microSteps;
  if (!checkAdamW(c, config, maxNorm, microSteps) ||
      !hostScalar(c, lr, DType::F32) || !hostScalar(c, step, DType::I32) ||
      (micro.value && !hostScalar(c, micro, DType::I32)))
    return c.takeError();
  int64_t n = param.value->numel;
  int64_t factor = c.scratch(1);
  return DeviceStep([=, g = grad.slot, l = lr.slot, s = step.slot,
                     gn = norm.slot, mi = micro.slot, p = param.slot,
                     ms = m.slot, vs = v.slot](const LaunchContext &ctx) {
    void *const *d = ctx.device;
    // Only the last micro-step of an update applies it.
    if (microSteps > 1) {
      Expected<int32_t> index = microStepOf(ctx, mi, microSteps);
      if (!index)
        return index.takeStatus();
      if (*index != microSteps - 1)
        return Status::success();
    }
    int32_t applied = hostValue<int32_t>(ctx, s);
    if (applied < 0)
      return Status::error("input 'step' is " + std::to_string(applied) +
                           "; it counts the updates applied before this one "
                           "and cannot be negative");
    const float *scale = nullptr;
    if (maxNorm > 0) {
      if (Status status = clipFactor(as<float>(d[gn]), maxNorm,
                                     as<float>(d[factor]), ctx.stream);
          !status)
        return status;
      scale = as<float>(d[factor]);
    }
    return adamwStep(as<float>(d[p]), as<float>(d[g]), as<float>(d[ms]),
                     as<float>(d[vs]), n, hostValue<float>(ctx, l),
                     int64_t(applied) + 1, config, scale, ctx.stream);
  });
}

//===----------------------------------------------------------------------===//
// Matrix products
//===----------------------------------------------------------------------===//

/// Floats of scratch from `offset` on, rounded up to 256 bytes (cuBLASLt's
/// preferred alignment).
int64_t alignedFloats(int64_t floats) { return (floats + 63) / 64 * 64; }

/// The fp32 view of an activation operand: the value itself in an fp32 step,
/// else its widened copy at `scratch` (bf16 is storage only, the product
/// runs on the widened values).
Expected<const float *> widened(bool bf16, void *value, float *scratch,
                                int64_t n, cudaStream_t stream) {
  if (!bf16)
    return static_cast<const float *>(value);
  if (Status status = widenBf16(as<Bf16>(value), scratch, n, stream); !status)
    return status;
  return static_cast<const float *>(scratch);
}

/// Floats of scratch holding `n` bf16 values, aligned as alignedFloats.
int64_t bf16Floats(int64_t n) { return alignedFloats((n + 1) / 2); }

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

/// Rounds the fp32 `result` of a bf16 step into its activation `value`.
Status narrowed(bool bf16, const float *result, void *value, int64_t n,
                cudaStream_t stream) {
  return bf16 ? narrowToBf16(result, as<Bf16>(value), n, stream)
              : Status::success();
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

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

/// The attributes and operands shared by attention and attention_grad: q, k,
/// v [B, S, H*hd] (operands 0-2), ids I32[B, S]? (3), and the dropout's seed
/// and step (host scalars, present exactly when dropout_rate > 0).
struct AttentionStep {
  AttentionConfig config;
  double rate = 0;
  int64_t stream = 0;
  int64_t ids = 0, seed = -1;
  HostCounter counter;
  bool bf16 = false;

  bool read(StepContext &c, const Arg &seedArg, const Arg &stepArg) {
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
    if (noisy && (!hostScalar(c, seedArg, DType::I32) ||
                  !noiseCounterOf(c, stepArg, counter)))
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
  AttentionConfig at(const LaunchContext &ctx) const {
    AttentionConfig run = config;
    run.ids = as<int32_t>(ctx.device[ids]);
    int32_t key = seed < 0 ? -1 : hostValue<int32_t>(ctx, seed);
    if (key >= 0) {
      run.dropoutRate = rate;
      run.dropoutKey = {key, stream, counter.at(ctx)};
    }
    return run;
  }
};

Expected<DeviceStep> prepareAttention(StepContext &c) {
  AttentionStep attention;
  if (!attention.read(c, c.in(4), c.in(5)))
    return c.takeError();
  DType dtype = c.in(0).value->dtype;
  if (!c.shape(c.out(0), dtype, c.in(0).value->shape))
    return c.takeError();
  return DeviceStep([=, q = c.in(0).slot, k = c.in(1).slot, v = c.in(2).slot,
                     o = c.out(0).slot](const LaunchContext &ctx) {
    void *const *d = ctx.device;
    AttentionConfig config = attention.at(ctx);
    return byPrecision(attention.bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return cuda::attention(as<T>(d[q]), as<T>(d[k]), as<T>(d[v]), as<T>(d[o]),
                             nullptr, config, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareAttentionGrad(StepContext &c) {
  AttentionStep attention;
  if (!attention.read(c, c.in(5), c.in(6)))
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
                     ov = c.out(2).slot](const LaunchContext &ctx) {
    void *const *d = ctx.device;
    AttentionConfig config = attention.at(ctx);
    float *lse = as<float>(d[scratch]);
    return byPrecision(attention.bf16, [&](auto *tag) -> Status {
      using T = std::remove_pointer_t<decltype(tag)>;
      T *out = reinterpret_cast<T *>(lse + outOffset);
      if (Status status =
              cuda::attention(as<T>(d[qs]), as<T>(d[ks]), as<T>(d[vs]), out,
                              lse, config, ctx.stream);
          !status)
        return status;
      return attentionBackward(as<T>(d[qs]), as<T>(d[ks]), as<T>(d[vs]), out,
                               as<T>(d[g]), lse, as<T>(d[oq]), as<T>(d[ok]),
                               as<T>(d[ov]), config, ctx.stream);
    });
  });
}

//===----------------------------------------------------------------------===//
// Embeddings and the head's plumbing
//===----------------------------------------------------------------------===//

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
                      seq, width, vocab, typeVocab, ctx.stream);
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
                           as<int32_t>(v[scratch]), ctx.stream);
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
                             seq, d, count, ctx.stream);
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
                                     ctx.stream);
    });
  });
}

//===----------------------------------------------------------------------===//
// Elementwise arithmetic, scalars and losses
//===----------------------------------------------------------------------===//

/// y = op(a, b) over operands and result of one shape and activation dtype.
Expected<DeviceStep> prepareBinary(StepContext &c, BinaryOp op) {
  const Arg &a = c.in(0), &b = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, a, dtype) || !c.minRank(a, dtype, 0) ||
      !c.shape(b, dtype, a.value->shape) || !c.shape(y, dtype, a.value->shape))
    return c.takeError();
  int64_t n = a.value->numel;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, l = a.slot, r = b.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return binary(as<T>(v[l]), as<T>(v[r]), as<T>(v[o]), n, op, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareAdd(StepContext &c) {
  return prepareBinary(c, BinaryOp::Add);
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

Expected<DeviceStep> prepareRouterLogitsBf16(StepContext &c) {
  const Arg &products = c.in(0), &bias = c.in(1), &logits = c.out(0);
  if (!exec::checkRouterLogitsBf16(c))
    return c.takeError();
  int64_t rows = products.dim(0), cols = products.dim(1);
  return DeviceStep([=, p = products.slot, b = bias.slot,
                     o = logits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routerLogitsBf16(as<float>(v[p]), as<float>(v[b]), as<float>(v[o]),
                            rows, cols, ctx.stream);
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

Expected<DeviceStep> prepareRouterZLoss(StepContext &c) {
  const Arg &logits = c.in(0), &loss = c.out(0);
  if (!c.rank(logits, DType::F32, 2) || !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  // The squares of the row logsumexps, in double.
  int64_t scratch = c.scratch(2 * numTokens);
  return DeviceStep(
      [=, z = logits.slot, o = loss.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return routerZLoss(as<float>(v[z]), as<float>(v[o]), numTokens, experts,
                           as<double>(v[scratch]), ctx.stream);
      });
}

Expected<DeviceStep> prepareLoadBalancingLoss(StepContext &c) {
  const Arg &probs = c.in(0), &loss = c.out(0);
  int64_t groups, k;
  if (!exec::checkRouterScores(c, c.in(0)) ||
      !exec::checkLoadBalancing(c, c.in(0), groups, k) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  // The (group, expert) terms, in double.
  int64_t scratch = c.scratch(2 * groups * experts);
  return DeviceStep([=, p = probs.slot,
                     o = loss.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return loadBalancingLoss(as<float>(v[p]), as<float>(v[o]), groups, perGroup,
                             experts, k, as<double>(v[scratch]), ctx.stream);
  });
}

Expected<DeviceStep> prepareLoadBalancingLossGrad(StepContext &c) {
  const Arg &probs = c.in(0), &dloss = c.in(1), &dprobs = c.out(0);
  int64_t groups, k;
  if (!exec::checkRouterScores(c, c.in(0)) ||
      !exec::checkLoadBalancing(c, c.in(0), groups, k) ||
      !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dprobs, DType::F32, probs.value->shape))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  // The gradient row of every group.
  int64_t scratch = c.scratch(groups * experts);
  return DeviceStep([=, p = probs.slot, s = dloss.slot,
                     o = dprobs.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return loadBalancingLossGrad(as<float>(v[p]), as<float>(v[s]),
                                 as<float>(v[o]), groups, perGroup, experts, k,
                                 as<float>(v[scratch]), ctx.stream);
  });
}

Expected<DeviceStep> prepareRouterZLossGrad(StepContext &c) {
  const Arg &logits = c.in(0), &dloss = c.in(1), &dlogits = c.out(0);
  if (!c.rank(logits, DType::F32, 2) || !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dlogits, DType::F32, logits.value->shape))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  return DeviceStep([=, z = logits.slot, s = dloss.slot,
                     o = dlogits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routerZLossGrad(as<float>(v[z]), as<float>(v[s]), as<float>(v[o]),
                           numTokens, experts, ctx.stream);
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
      return softmaxCrossEntropyGrad(as<T>(v[z]), as<int32_t>(v[l]),
                                     as<float>(v[w]), as<float>(v[s]),
                                     as<T>(v[o]), rows, classes, ctx.stream);
    });
  });
}

//===----------------------------------------------------------------------===//
// Mixture of experts: the experts, gathers and scatters
//===----------------------------------------------------------------------===//

Expected<DeviceStep> prepareDispatch(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) || !c.rank(x, dtype, 2) ||
      !c.rank(tokens, DType::I32, 1))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1);
  if (!c.shape(y, dtype, {slots, d}))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, a = x.slot, t = tokens.slot, o = y.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return dispatchRows(as<T>(v[a]), as<int32_t>(v[t]), as<T>(v[o]),
                              slots, numTokens, d, ctx.stream);
        });
      });
}

/// combine (with gates) and dispatch_grad (without): the slot rows summed
/// into their tokens' rows.
Expected<DeviceStep> prepareCombineRows(StepContext &c, bool withGates) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, yd, dtype) ||
      !exec::checkCombine(c, yd, tokens, withGates ? &c.in(2) : nullptr, y,
                          dtype))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = y.dim(0);
  int64_t scratch = c.scratch(numTokens + 1 + slots);
  int64_t gates = withGates ? c.in(2).slot : -1;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, a = yd.slot, t = tokens.slot, o = y.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return combineRows(as<T>(v[a]), as<int32_t>(v[t]),
                             gates < 0 ? nullptr : as<float>(v[gates]),
                             as<T>(v[o]), slots, numTokens, d,
                             as<int32_t>(v[scratch]), ctx.stream);
        });
      });
}

Expected<DeviceStep> prepareCombine(StepContext &c) {
  return prepareCombineRows(c, /*withGates=*/true);
}
Expected<DeviceStep> prepareDispatchGrad(StepContext &c) {
  return prepareCombineRows(c, /*withGates=*/false);
}

Expected<DeviceStep> prepareCombineGrad(StepContext &c) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &gates = c.in(2), &dout = c.in(3),
            &dyd = c.out(0), &dgates = c.out(1);
  DType dtype;
  if (!activationType(c, yd, dtype) ||
      !exec::checkCombine(c, yd, tokens, &gates, dout, dtype) ||
      !c.shape(dyd, dtype, yd.value->shape) ||
      !c.shape(dgates, DType::F32, {yd.dim(0)}))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = dout.dim(0);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = yd.slot, t = tokens.slot, g = gates.slot,
                     go = dout.slot, o = dyd.slot,
                     og = dgates.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return combineBackward(as<T>(v[a]), as<int32_t>(v[t]), as<float>(v[g]),
                             as<T>(v[go]), as<T>(v[o]), as<float>(v[og]), slots,
                             numTokens, d, ctx.stream);
    });
  });
}

/// Reads the optional attribute `gather` of `experts` or `experts_grad` and
/// checks their rows x (`dtype`) and tokens I32[slots]: x is the slot rows
/// [slots, D], or, with `gather`, the token rows [T, D] (any T >= 1) that
/// the tokens index, the dispatch fused into the experts.
bool checkExpertRows(StepContext &c, bool &gather, DType &dtype) {
  const Arg &x = c.in(0), &tokens = c.in(1);
  gather = c.boolAttr("gather");
  if (!activationType(c, x, dtype) || !c.rank(x, dtype, 2) ||
      !c.rank(tokens, DType::I32, 1))
    return false;
  if (gather)
    return c.check(x.dim(0) >= 1,
                   x.role + " is " + exec::describe(x.value->shape, dtype) +
                       " but gathering experts need at least one token row");
  return c.shape(x, dtype, {tokens.dim(0), x.dim(1)});
}

/// Reads the activation (none or gelu) and `gather` of `experts` or
/// `experts_grad` and checks x (see checkExpertRows), tokens I32[slots],
/// offsets I32[E + 1] and the fp32 weights w1 [E, D, F], b1 [E, F], w2 [E,
/// F, D] of a capacity routing (every expert owns slots / E consecutive
/// slots).
bool checkExperts(StepContext &c, bool &gelu, bool &gather, DType &dtype) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5);
  const std::string &activation = c.stringAttr("activation");
  if (!checkExpertRows(c, gather, dtype) || !c.rank(w1, DType::F32, 3))
    return false;
  int64_t slots = tokens.dim(0), d = x.dim(1), experts = w1.dim(0),
          f = w1.dim(2);
  gelu = activation == "gelu";
  return c.check(gelu || activation == "none",
                 "activation '" + activation +
                     "' has no cuBLASLt epilogue (only none and gelu)") &&
         c.shape(offsets, DType::I32, {experts + 1}) &&
         c.shape(w1, DType::F32, {experts, d, f}) &&
         c.shape(b1, DType::F32, {experts, f}) &&
         c.shape(w2, DType::F32, {experts, f, d}) &&
         c.check(experts > 0 && slots % experts == 0,
                 std::to_string(slots) + " slots do not split evenly over " +
                     std::to_string(experts) + " experts");
}

/// Floats of scratch holding `n` activation values, bf16 or fp32, aligned as
/// alignedFloats.
int64_t activationFloats(bool bf16, int64_t n) {
  return bf16 ? bf16Floats(n) : alignedFloats(n);
}

/// Consecutive blocks of a step's scratch, each sized by activationFloats:
/// taken in the order the step's reservation adds them up.
class ScratchBlocks {
public:
  explicit ScratchBlocks(void *scratch) : next(static_cast<float *>(scratch)) {}

  /// The next block, holding `n` values of T.
  template <typename T> T *take(int64_t n) {
    T *block = reinterpret_cast<T *>(next);
    next += activationFloats(std::is_same_v<T, Bf16>, n);
    return block;
  }

private:
  float *next;
};

/// The weights w1 [E, D, F] and w2 [E, F, D] of capacity experts as their
/// products read them.
template <typename T> struct ExpertWeights { const T *up, *down; };

/// The fp32 masters w1 and w2 (n values each) for products over T: the
/// masters themselves, or for bf16 activations the masters rounded to bf16
/// into the next two blocks of the scratch at every run.
template <typename T>
Expected<ExpertWeights<T>> expertWeights(void *w1, void *w2, int64_t n,
                                         ScratchBlocks &scratch,
                                         cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    return ExpertWeights<T>{as<float>(w1), as<float>(w2)};
  } else {
    Bf16 *up = scratch.take<Bf16>(n), *down = scratch.take<Bf16>(n);
    Status status = narrowToBf16(as<float>(w1), up, n, stream);
    if (!status || !(status = narrowToBf16(as<float>(w2), down, n, stream)))
      return status;
    return ExpertWeights<T>{up, down};
  }
}

/// Scratch floats of expertWeights.
int64_t expertWeightFloats(bool bf16, int64_t n) {
  return bf16 ? 2 * bf16Floats(n) : 0;
}

/// The first layer of every expert, rows slot rows each, as one strided
/// batch: out = xs w1[e] (+ b1[e]), then GELU when `epilogue` says so.
template <typename T>
GemmProblem<T> expertsUp(int64_t experts, int64_t rows, int64_t d, int64_t f,
                         const T *xs, const T *w1, const float *b1, T *out,
                         GemmEpilogue epilogue) {
  GemmProblem<T> up = packed(false, false, rows, f, d, xs, w1, out);
  up.batch = experts;
  up.strideA = rows * d, up.strideB = d * f, up.strideC = rows * f;
  up.epilogue = epilogue, up.bias = b1, up.strideBias = f;
  return up;
}

/// The slot rows xd [slots, d] of a capacity experts step: x itself, or with
/// `gather` its rows tokens[i] gathered by the dispatch kernel into
/// `gathered`.
template <typename T>
Expected<const T *> slotRows(bool gather, const T *x, const int32_t *tokens,
                             T *gathered, int64_t slots, int64_t numTokens,
                             int64_t d, cudaStream_t stream) {
  if (!gather)
    return x;
  if (Status status =
          dispatchRows(x, tokens, gathered, slots, numTokens, d, stream);
      !status)
    return status;
  return static_cast<const T *>(gathered);
}

/// The experts of a capacity routing (route_experts_choose or
/// route_tokens_choose: every expert owns the same number of consecutive
/// slots), one strided batch of products per layer over the slot rows
/// (gathered first when the step gathers). bf16 activations run on the
/// tensor cores with the weights rounded to bf16, the hidden layer in bf16.
/// The empty slots' rows are zeroed afterwards, as the CPU kernel leaves
/// them.
Expected<DeviceStep> prepareExperts(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &w1 = c.in(3), &b1 = c.in(4),
            &w2 = c.in(5), &b2 = c.in(6), &y = c.out(0);
  bool gelu, gather;
  DType dtype;
  if (!checkExperts(c, gelu, gather, dtype))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1),
          experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(b2, DType::F32, {experts, d}) || !c.shape(y, dtype, {slots, d}))
    return c.takeError();
  int64_t rows = slots / experts;
  bool bf16 = dtype == DType::BF16;
  // (bf16) w1 and w2 rounded to bf16, the hidden layer, then (gather) the
  // gathered xd.
  int64_t scratch = c.scratch(expertWeightFloats(bf16, experts * d * f) +
                              activationFloats(bf16, slots * f) +
                              (gather ? activationFloats(bf16, slots * d) : 0));
  GemmEpilogue first = gelu       ? GemmEpilogue::Gelu
                       : b1.value ? GemmEpilogue::Bias
                                  : GemmEpilogue::None;
  GemmEpilogue second = b2.value ? GemmEpilogue::Bias : GemmEpilogue::None;
  return DeviceStep([=, a = x.slot, t = tokens.slot, k1 = w1.slot, c1 = b1.slot,
                     k2 = w2.slot, c2 = b2.slot,
                     o = y.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) -> Status {
      using T = std::remove_pointer_t<decltype(tag)>;
      ScratchBlocks blocks(v[scratch]);
      Expected<ExpertWeights<T>> w =
          expertWeights<T>(v[k1], v[k2], experts * d * f, blocks, ctx.stream);
      if (!w)
        return w.takeStatus();
      T *hidden = blocks.take<T>(slots * f);
      const int32_t *slotTokens = as<int32_t>(v[t]);
      Expected<const T *> input =
          slotRows(gather, as<T>(v[a]), slotTokens,
                   gather ? blocks.take<T>(slots * d) : nullptr, slots,
                   numTokens, d, ctx.stream);
      if (!input)
        return input.takeStatus();
      T *out = as<T>(v[o]);
      // Per expert e: rows [e * rows, (e + 1) * rows).
      GemmProblem<T> up = expertsUp(experts, rows, d, f, *input, w->up,
                                    as<float>(v[c1]), hidden, first);
      GemmProblem<T> down =
          packed(false, false, rows, d, f, hidden, w->down, out);
      down.batch = experts;
      down.strideA = rows * f, down.strideB = f * d, down.strideC = rows * d;
      down.epilogue = second, down.bias = as<float>(v[c2]), down.strideBias = d;
      for (const GemmProblem<T> &product : {up, down})
        if (Status status = ctx.gemm->gemm(product); !status)
          return status;
      return zeroEmptySlots(slotTokens, out, slots, d, ctx.stream);
    });
  });
}

/// The gradient of `experts` (cpu::expertsBackwardRecompute): the
/// pre-activations P = xd w1 + b1 are recomputed, then per expert e, with the
/// empty slots' rows of dyd zeroed in a copy (the CPU kernel skips them),
///   dP = (dyd w2^T) * act'(P),  dxd = dP w1^T,
///   dw1 = xd^T dP,  dw2 = act(P)^T dyd,
/// each a strided batch over the experts; db1 and db2 are the column sums of
/// dP and dyd over each expert's rows. A gathering step gathers xd first;
/// dxd stays one row per slot. bf16 activations run on the tensor cores as
/// in `experts`, with P, dP and act(P) in bf16 and the weight gradients
/// accumulated into the fp32 results.
Expected<DeviceStep> prepareExpertsGrad(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &w1 = c.in(3), &b1 = c.in(4),
            &w2 = c.in(5), &dyd = c.in(6);
  bool gelu, gather;
  DType dtype;
  if (!checkExperts(c, gelu, gather, dtype))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1),
          experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(dyd, dtype, {slots, d}) ||
      !c.shape(c.out(0), dtype, {slots, d}) ||
      !c.shape(c.out(1), DType::F32, {experts, d, f}) ||
      !c.shape(c.out(2), DType::F32, {experts, f}) ||
      !c.shape(c.out(3), DType::F32, {experts, f, d}) ||
      !c.shape(c.out(4), DType::F32, {experts, d}))
    return c.takeError();
  int64_t rows = slots / experts;
  bool bf16 = dtype == DType::BF16;
  // (bf16) w1 and w2 rounded to bf16, P (then act(P)), dP, dyd with the
  // empty slots' rows zeroed, then (gather) the gathered xd.
  int64_t rowFloats = activationFloats(bf16, slots * d);
  int64_t scratch = c.scratch(expertWeightFloats(bf16, experts * d * f) +
                              2 * activationFloats(bf16, slots * f) +
                              rowFloats + (gather ? rowFloats : 0));
  GemmEpilogue first = b1.value ? GemmEpilogue::Bias : GemmEpilogue::None;
  return DeviceStep([=, a = x.slot, t = tokens.slot, k1 = w1.slot, c1 = b1.slot,
                     k2 = w2.slot, g = dyd.slot, r0 = c.out(0).slot,
                     r1 = c.out(1).slot, r2 = c.out(2).slot, r3 = c.out(3).slot,
                     r4 = c.out(4).slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) -> Status {
      using T = std::remove_pointer_t<decltype(tag)>;
      ScratchBlocks blocks(v[scratch]);
      Expected<ExpertWeights<T>> w =
          expertWeights<T>(v[k1], v[k2], experts * d * f, blocks, ctx.stream);
      if (!w)
        return w.takeStatus();
      T *preact = blocks.take<T>(slots * f),
        *dpreact = blocks.take<T>(slots * f), *dys = blocks.take<T>(slots * d);
      const int32_t *slotTokens = as<int32_t>(v[t]);
      Status status = copyOf(v[g], dys, slots * d * sizeof(T), ctx.stream);
      if (!status ||
          !(status = zeroEmptySlots(slotTokens, dys, slots, d, ctx.stream)))
        return status;
      Expected<const T *> input =
          slotRows(gather, as<T>(v[a]), slotTokens,
                   gather ? blocks.take<T>(slots * d) : nullptr, slots,
                   numTokens, d, ctx.stream);
      if (!input)
        return input.takeStatus();
      GemmProblem<T> up = expertsUp(experts, rows, d, f, *input, w->up,
                                    as<float>(v[c1]), preact, first);
      // dH = dyd w2^T [rows, f].
      GemmProblem<T> dh =
          packed(false, true, rows, f, d, dys, w->down, dpreact);
      dh.batch = experts;
      dh.strideA = rows * d, dh.strideB = f * d, dh.strideC = rows * f;
      for (const GemmProblem<T> &product : {up, dh})
        if (!(status = ctx.gemm->gemm(product)))
          return status;
      // dP = dH * GELU'(P), then P becomes H = GELU(P), both in place.
      if (gelu &&
          (!(status = biasGeluBackward(preact, nullptr, dpreact, dpreact,
                                       nullptr, slots, f, false, ctx.stream)) ||
           !(status = biasGelu(preact, nullptr, preact, slots, f, ctx.stream))))
        return status;
      // dxd = dP w1^T [rows, d].
      GemmProblem<T> dx =
          packed(false, true, rows, d, f, dpreact, w->up, as<T>(v[r0]));
      dx.batch = experts;
      dx.strideA = rows * f, dx.strideB = d * f, dx.strideC = rows * d;
      if (!(status = ctx.gemm->gemm(dx)))
        return status;
      // dw1 = xd^T dP [d, f], dw2 = H^T dyd [f, d], accumulated in fp32.
      GemmProblem<T, float> dw1 =
          packed(true, false, d, f, rows, *input, dpreact, as<float>(v[r1]));
      dw1.batch = experts;
      dw1.strideA = rows * d, dw1.strideB = rows * f, dw1.strideC = d * f;
      GemmProblem<T, float> dw2 =
          packed(true, false, f, d, rows, preact, dys, as<float>(v[r3]));
      dw2.batch = experts;
      dw2.strideA = rows * f, dw2.strideB = rows * d, dw2.strideC = f * d;
      for (const GemmProblem<T, float> &product : {dw1, dw2})
        if (!(status = ctx.gemm->gemm(product)))
          return status;
      for (int64_t e = 0; e < experts; ++e)
        if (!(status =
                  columnSum(dpreact + e * rows * f, as<float>(v[r2]) + e * f,
                            rows, f, ctx.stream)) ||
            !(status = columnSum(dys + e * rows * d, as<float>(v[r4]) + e * d,
                                 rows, d, ctx.stream)))
          return status;
      return Status::success();
    });
  });
}

Expected<DeviceStep> prepareScatterGateGrad(StepContext &c) {
  const Arg &tokens = c.in(0), &offsets = c.in(1), &dgates = c.in(2),
            &dscores = c.out(0);
  if (!exec::checkGateGrad(c, tokens, offsets, dgates, dscores))
    return c.takeError();
  int64_t numTokens = dscores.dim(0), experts = dscores.dim(1);
  return DeviceStep([=, t = tokens.slot, o = offsets.slot, g = dgates.slot,
                     r = dscores.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return scatterGateGrad(as<int32_t>(v[t]), as<int32_t>(v[o]),
                           as<float>(v[g]), as<float>(v[r]), numTokens, experts,
                           ctx.stream);
  });
}

//===----------------------------------------------------------------------===//
// Router training: expert dropout, the entropy regulariser, gate gradients
//===----------------------------------------------------------------------===//

Expected<DeviceStep> prepareDropExperts(StepContext &c) {
  const Arg &x = c.in(0), &seed = c.in(1), &step = c.in(2), &y = c.out(0);
  double rate;
  int64_t stream;
  bool gradient;
  HostCounter counter;
  if (!exec::readDropExperts(c, rate, stream, gradient) ||
      !c.rank(x, DType::F32, 2) || !hostScalar(c, seed, DType::I32) ||
      !noiseCounterOf(c, step, counter) ||
      !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  int64_t n = x.value->numel, bytes = x.value->bytes;
  // Dropped experts lose the top-k forward and pass no gradient back.
  float fill = gradient ? 0.0f : -INFINITY;
  return DeviceStep([=, a = x.slot, k = seed.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    int32_t key = hostValue<int32_t>(ctx, k);
    // A negative seed evaluates: every expert stays.
    if (key < 0)
      return copyOf(v[a], v[o], bytes, ctx.stream);
    return dropExperts(as<float>(v[a]), as<float>(v[o]), n, rate, fill,
                       CounterKey{key, stream, counter.at(ctx)}, ctx.stream);
  });
}

Expected<DeviceStep> prepareEntropyRegularizer(StepContext &c) {
  const Arg &logits = c.in(0), &loss = c.out(0);
  if (!exec::checkRouterScores(c, logits) || !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  // The row logsumexps and the column log-means, in double.
  int64_t scratch = c.scratch(2 * (numTokens + experts));
  return DeviceStep(
      [=, z = logits.slot, o = loss.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return entropyRegularizer(as<float>(v[z]), as<float>(v[o]), numTokens,
                                  experts, as<double>(v[scratch]), ctx.stream);
      });
}

Expected<DeviceStep> prepareEntropyRegularizerGrad(StepContext &c) {
  const Arg &logits = c.in(0), &dloss = c.in(1), &dlogits = c.out(0);
  if (!exec::checkRouterScores(c, logits) || !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dlogits, DType::F32, logits.value->shape))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  int64_t scratch = c.scratch(2 * (numTokens + experts));
  return DeviceStep([=, z = logits.slot, s = dloss.slot,
                     o = dlogits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return entropyRegularizerGrad(as<float>(v[z]), as<float>(v[s]),
                                  as<float>(v[o]), numTokens, experts,
                                  as<double>(v[scratch]), ctx.stream);
  });
}

/// The gradient of the router logits from the gate gradients: scattered to
/// their (token, expert) entries, times sigmoid' for sigmoid top-k routing;
/// the capacity routings gate with softmax probabilities, so their gradient
/// then goes back through the softmax, recomputed into the scratch.
Expected<DeviceStep> prepareRouteGrad(StepContext &c) {
  const Arg &logits = c.in(0), &tokens = c.in(1), &offsets = c.in(2),
            &dgates = c.in(3), &dlogits = c.out(0);
  Routing routing = exec::readRouting(c);
  if (!exec::checkGateGrad(c, tokens, offsets, dgates, dlogits) ||
      !c.shape(logits, DType::F32, dlogits.value->shape))
    return c.takeError();
  int64_t numTokens = dlogits.dim(0), experts = dlogits.dim(1);
  bool sigmoid = routing == Routing::SigmoidTopK;
  bool bf16 = c.boolAttr("router_bf16");
  int64_t scratch = sigmoid ? 0 : c.scratch(numTokens * experts);
  return DeviceStep([=, z = logits.slot, t = tokens.slot, o = offsets.slot,
                     g = dgates.slot,
                     r = dlogits.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    const float *scores = as<float>(v[z]);
    float *out = as<float>(v[r]);
    Status status = scatterGateGrad(as<int32_t>(v[t]), as<int32_t>(v[o]),
                                    as<float>(v[g]), out, numTokens, experts,
                                    ctx.stream, sigmoid ? scores : nullptr);
    if (!status || sigmoid)
      return status;
    float *probs = as<float>(v[scratch]);
    status =
        bf16 ? routerSoftmaxBf16(scores, probs, numTokens, experts, ctx.stream)
             : softmax(scores, probs, numTokens, experts, ctx.stream);
    if (!status)
      return status;
    return softmaxBackward(probs, out, out, numTokens, experts, ctx.stream);
  });
}

//===----------------------------------------------------------------------===//
// Grouped experts: any routing's offsets
//===----------------------------------------------------------------------===//

/// Reads the activation of grouped experts: none, relu or gelu.
bool expertActivation(StepContext &c, ExpertActivation &act) {
  Activation kind = c.activation("activation");
  act = kind == Activation::Relu   ? ExpertActivation::Relu
        : kind == Activation::Gelu ? ExpertActivation::Gelu
                                   : ExpertActivation::None;
  return c.check(kind == Activation::None || kind == Activation::Relu ||
                     kind == Activation::Gelu,
                 "activation '" + c.stringAttr("activation") +
                     "' has no grouped-experts epilogue (only none, relu and "
                     "gelu)");
}

/// Reads the activation and `gather` and checks x (see checkExpertRows),
/// tokens I32[slots], offsets I32[E + 1] and the fp32 weights w1 [E, D, F],
/// b1 [E, F], w2 [E, F, D] of `experts` or `experts_grad` on grouped
/// experts, which gather in their operand loads. The layout's device arrays
/// are set at launch.
bool checkGroupedExperts(StepContext &c, GroupedExperts &g, DType &dtype) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5);
  if (!expertActivation(c, g.activation) ||
      !checkExpertRows(c, g.gather, dtype) || !c.rank(w1, DType::F32, 3))
    return false;
  g.slots = tokens.dim(0), g.d = x.dim(1), g.experts = w1.dim(0),
  g.f = w1.dim(2), g.numTokens = x.dim(0);
  return c.shape(offsets, DType::I32, {g.experts + 1}) &&
         c.shape(w1, DType::F32, {g.experts, g.d, g.f}) &&
         c.shape(b1, DType::F32, {g.experts, g.f}) &&
         c.shape(w2, DType::F32, {g.experts, g.f, g.d}) &&
         c.check(g.d > 0 && g.f > 0,
                 w1.role + " is " +
                     exec::describe(w1.value->shape, DType::F32) +
                     " but the experts need at least "
                     "one input and one hidden unit");
}

/// The layout `g` over the device arrays of the step's tokens and offsets.
GroupedExperts grouped(GroupedExperts g, const LaunchContext &ctx,
                       int64_t tokens, int64_t offsets) {
  g.tokens = as<int32_t>(ctx.device[tokens]);
  g.offsets = as<int32_t>(ctx.device[offsets]);
  return g;
}

/// `experts` whose slot counts are known only on the device (sigma-MoE's
/// top-k routing): the grouped kernels, one launch per layer, gathering the
/// token rows in their loads when the step gathers.
Expected<DeviceStep> prepareGroupedExperts(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &b2 = c.in(6), &y = c.out(0);
  GroupedExperts g;
  DType dtype;
  if (!checkGroupedExperts(c, g, dtype) ||
      !c.shape(b2, DType::F32, {g.experts, g.d}) ||
      !c.shape(y, dtype, {g.slots, g.d}))
    return c.takeError();
  // The hidden layer.
  int64_t scratch = c.scratch(g.slots * g.f);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, t = tokens.slot, o = offsets.slot,
                     k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, c2 = b2.slot,
                     r = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return groupedExperts(as<T>(v[a]), as<float>(v[k1]), as<float>(v[c1]),
                            as<float>(v[k2]), as<float>(v[c2]), as<T>(v[r]),
                            as<float>(v[scratch]), grouped(g, ctx, t, o),
                            ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareGroupedExpertsGrad(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &dyd = c.in(6);
  GroupedExperts g;
  DType dtype;
  if (!checkGroupedExperts(c, g, dtype) ||
      !c.shape(dyd, dtype, {g.slots, g.d}) ||
      !c.shape(c.out(0), dtype, {g.slots, g.d}) ||
      !c.shape(c.out(1), DType::F32, {g.experts, g.d, g.f}) ||
      !c.shape(c.out(2), DType::F32, {g.experts, g.f}) ||
      !c.shape(c.out(3), DType::F32, {g.experts, g.f, g.d}) ||
      !c.shape(c.out(4), DType::F32, {g.experts, g.d}))
    return c.takeError();
  // The recomputed pre-activations P and their gradient dP.
  int64_t scratch = c.scratch(2 * g.slots * g.f);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, t = tokens.slot, o = offsets.slot,
                     k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, gy = dyd.slot,
                     r0 = c.out(0).slot, r1 = c.out(1).slot, r2 = c.out(2).slot,
                     r3 = c.out(3).slot,
                     r4 = c.out(4).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return groupedExpertsBackward(
          as<T>(v[a]), as<float>(v[k1]), as<float>(v[c1]), as<float>(v[k2]),
          as<T>(v[gy]), as<T>(v[r0]), as<float>(v[r1]), as<float>(v[r2]),
          as<float>(v[r3]), as<float>(v[r4]), as<float>(v[scratch]),
          grouped(g, ctx, t, o), ctx.stream);
    });
  });
}

struct TableEntry {
  Kernel kernel;
  Expected<DeviceStep> (*prepare)(StepContext &);
};

/// Collectives need a communicator on device buffers, which the CUDA
/// executor does not hold yet: parallel plans run on the CPU.
Expected<DeviceStep> prepareCollective(StepContext &c) {
  c.fail("the CUDA executor runs no collectives yet (parallel plans need "
         "--target cpu)");
  return c.takeError();
}

/// Every plan kernel with a CUDA implementation.
const TableEntry kTable[] = {
    {Kernel::Embed, prepareEmbed},
    {Kernel::Dense, prepareDense},
    {Kernel::LayerNorm, prepareLayerNorm},
    {Kernel::LayerNormGrad, prepareLayerNormGrad},
    {Kernel::Activation, prepareActivation},
    {Kernel::Add, prepareAdd},
    {Kernel::Softmax, prepareSoftmax},
    {Kernel::RoundBf16, prepareRoundBf16},
    {Kernel::RouterLogitsBf16, prepareRouterLogitsBf16},
    {Kernel::TakePosition, prepareTakePosition},
    {Kernel::Pool, preparePool},
    {Kernel::LinearMix, prepareLinearMix},
    {Kernel::Attention, prepareAttention},
    {Kernel::SoftmaxGrad, prepareSoftmaxGrad},
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
    {Kernel::RouterZLoss, prepareRouterZLoss},
    {Kernel::ActivationGrad, prepareActivationGrad},
    {Kernel::DenseWeightGrad, prepareDenseWeightGrad},
    {Kernel::ReduceRows, prepareReduceRows},
    {Kernel::TakePositionGrad, prepareTakePositionGrad},
    {Kernel::LinearMixGrad, prepareLinearMixGrad},
    {Kernel::EmbedGrad, prepareEmbedGrad},
    {Kernel::AttentionGrad, prepareAttentionGrad},
    {Kernel::GatherPositionsGrad, prepareGatherPositionsGrad},
    {Kernel::SoftmaxCrossEntropyGrad, prepareSoftmaxCrossEntropyGrad},
    {Kernel::RouterZLossGrad, prepareRouterZLossGrad},
    {Kernel::LoadBalancingLoss, prepareLoadBalancingLoss},
    {Kernel::LoadBalancingLossGrad, prepareLoadBalancingLossGrad},
    {Kernel::Dispatch, prepareDispatch},
    {Kernel::Experts, prepareExperts},
    {Kernel::ExpertsGrad, prepareExpertsGrad},
    {Kernel::Combine, prepareCombine},
    {Kernel::DispatchGrad, prepareDispatchGrad},
    {Kernel::CombineGrad, prepareCombineGrad},
    {Kernel::ScatterGateGrad, prepareScatterGateGrad},
    {Kernel::RouteExpertsChoose, prepareRouteExpertsChoose},
    {Kernel::RouteTokensChoose, prepareRouteTokensChoose},
    {Kernel::RouteSigmoidTopK, prepareRouteSigmoidTopK},
    {Kernel::RandomScale, prepareRandomScale},
    {Kernel::NoiseCounter, prepareNoiseCounter},
    {Kernel::AccumulateGradient, prepareAccumulateGradient},
    {Kernel::GlobalNorm, prepareGlobalNorm},
    {Kernel::AdamW, prepareAdamW},
    {Kernel::DropExperts, prepareDropExperts},
    {Kernel::EntropyRegularizer, prepareEntropyRegularizer},
    {Kernel::EntropyRegularizerGrad, prepareEntropyRegularizerGrad},
    {Kernel::RouteGrad, prepareRouteGrad},
    {Kernel::SpectralMix, prepareSpectralMix},
    {Kernel::StructuredMix, prepareStructuredMix},
    {Kernel::StructuredMixGrad, prepareStructuredMixGrad},
    {Kernel::AllToAll, prepareCollective},
    {Kernel::AllToAllV, prepareCollective},
    {Kernel::AllReduce, prepareCollective},
    {Kernel::PermuteBlocks, prepareCollective},
};

const TableEntry *findEntry(Kernel kernel) {
  for (const TableEntry &entry : kTable)
    if (entry.kernel == kernel)
      return &entry;
  return nullptr;
}

/// Whether the offsets of experts step `index` come from a capacity routing
/// (route_experts_choose or route_tokens_choose: every expert owns the same
/// number of slots), whose experts run as strided cuBLASLt batches; any other
/// offsets (sigma-MoE's top-k routing, a plan input) take the grouped
/// kernels.
bool capacityLayout(const exec::Plan &plan, size_t index) {
  int64_t offsets = plan.steps[index].operands[2];
  for (size_t i = 0; i < index; ++i) {
    const exec::Step &step = plan.steps[i];
    if (std::find(step.results.begin(), step.results.end(), offsets) !=
        step.results.end())
      return step.kernel == Kernel::RouteExpertsChoose ||
             step.kernel == Kernel::RouteTokensChoose;
  }
  return false;
}

} // namespace

std::vector<Kernel> cudaKernels() {
  std::vector<Kernel> kernels;
  for (const TableEntry &entry : kTable)
    kernels.push_back(entry.kernel);
  return kernels;
}

Expected<DeviceStep> prepareDeviceStep(const exec::Plan &plan, size_t index,
                                       int64_t &scratchBytes) {
  const exec::Step &step = plan.steps[index];
  const TableEntry *entry = findEntry(step.kernel);
  if (!entry)
    return Status::error(plan.path + ": cuda: kernel '" +
                         std::string(kernelName(step.kernel)) + "' of step " +
                         std::to_string(index) +
                         " has no CUDA implementation yet");
  StepContext context(plan, index, scratchBytes);
  if ((step.kernel == Kernel::Experts || step.kernel == Kernel::ExpertsGrad) &&
      !capacityLayout(plan, index))
    return step.kernel == Kernel::Experts ? prepareGroupedExperts(context)
                                          : prepareGroupedExpertsGrad(context);
  return entry->prepare(context);
}

} // namespace mixer::cuda
