//===- KernelTable.cpp - Plan kernels bound to the CUDA kernels -----------===//

#include "runtime/cuda/KernelTable.h"

#include "runtime/cuda/ExecutorKernels.h"
#include "runtime/exec/StepContext.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

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

/// Only GELU has a CUDA kernel so far (the bias + GELU epilogue kernel).
bool geluOnly(StepContext &c) {
  std::string kind;
  return c.attr("kind", kind) &&
         c.check(kind == "gelu", "activation '" + kind +
                                     "' has no CUDA implementation yet (only "
                                     "gelu)");
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
  double epsilon;
  DType dtype;
  if (!c.attr("epsilon", epsilon) || !activationType(c, x, dtype) ||
      !c.minRank(x, dtype, 1))
    return c.takeError();
  int64_t cols = x.value->shape.back();
  if (!c.shape(residual, dtype, x.value->shape) ||
      !c.shape(scale, DType::F32, {cols}) ||
      !c.shape(bias, DType::F32, {cols}) || !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  int64_t rows = exec::leadingElements(*x.value);
  float eps = static_cast<float>(epsilon);
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
  double epsilon;
  DType dtype;
  if (!c.attr("epsilon", epsilon) || !activationType(c, x, dtype) ||
      !c.minRank(x, dtype, 1))
    return c.takeError();
  int64_t cols = x.value->shape.back();
  if (!c.shape(residual, dtype, x.value->shape) ||
      !c.shape(scale, DType::F32, {cols}) ||
      !c.shape(dy, dtype, x.value->shape) ||
      !c.shape(dx, dtype, x.value->shape) ||
      !c.shape(dscale, DType::F32, {cols}) ||
      !c.shape(dbias, DType::F32, {cols}))
    return c.takeError();
  int64_t rows = exec::leadingElements(*x.value);
  float eps = static_cast<float>(epsilon);
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
  if (!geluOnly(c) || !activationType(c, x, dtype) || !c.minRank(x, dtype, 1) ||
      !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  int64_t rows = exec::leadingElements(*x.value), cols = x.value->shape.back();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, o = y.slot](const LaunchContext &ctx) {
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return biasGelu(as<T>(ctx.device[a]), nullptr, as<T>(ctx.device[o]), rows,
                      cols, ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareActivationGrad(StepContext &c) {
  const Arg &preact = c.in(0), &dy = c.in(1), &dx = c.out(0);
  DType dtype;
  if (!geluOnly(c) || !activationType(c, preact, dtype) ||
      !c.minRank(preact, dtype, 1) ||
      !c.shape(dy, dtype, preact.value->shape) ||
      !c.shape(dx, dtype, preact.value->shape))
    return c.takeError();
  int64_t rows = exec::leadingElements(*preact.value),
          cols = preact.value->shape.back();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, p = preact.slot, g = dy.slot, o = dx.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return biasGeluBackward(as<T>(v[p]), nullptr, as<T>(v[g]),
                                  as<T>(v[o]), nullptr, rows, cols,
                                  /*accumulate=*/false, ctx.stream);
        });
      });
}

Expected<DeviceStep> prepareSoftmax(StepContext &c) {
  const Arg &x = c.in(0), &y = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) || !c.minRank(x, dtype, 1) ||
      !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  int64_t rows = exec::leadingElements(*x.value), cols = x.value->shape.back();
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
  if (!activationType(c, y, dtype) || !c.minRank(y, dtype, 1) ||
      !c.shape(dy, dtype, y.value->shape) ||
      !c.shape(dx, dtype, y.value->shape))
    return c.takeError();
  int64_t rows = exec::leadingElements(*y.value), cols = y.value->shape.back();
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
  if (!activationType(c, logits, dtype) || !c.rank(logits, dtype, 2) ||
      !c.shape(labels, DType::I32, {logits.dim(0)}) ||
      !c.shape(weights, DType::F32, {logits.dim(0)}) ||
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

Expected<DeviceStep> prepareRouteTokensChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity, k;
  bool prioritized;
  if (!exec::readGroups(c, groups, tokensPerGroup, capacity) ||
      !c.attr("k", k) || !c.attr("batch_prioritized", prioritized))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  if (!c.check(k >= 1 && k <= experts, "attribute 'k' is " + std::to_string(k) +
                                           " but must lie in [1, " +
                                           std::to_string(experts) +
                                           " experts]") ||
      !exec::checkAssignments(c, experts * groups * capacity, experts))
    return c.takeError();
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
  if (!c.attr("k", k) || !c.rank(logits, DType::F32, 2))
    return c.takeError();
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (!c.check(k >= 1 && k <= experts, "attribute 'k' is " + std::to_string(k) +
                                           " but must lie in [1, " +
                                           std::to_string(experts) +
                                           " experts]") ||
      !exec::checkAssignments(c, tokens * k, experts))
    return c.takeError();
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
  std::string kind;
  double rate;
  int64_t stream;
  DType dtype;
  if (!c.attr("kind", kind) || !c.attr("rate", rate) ||
      !c.attr("stream", stream) || !activationType(c, x, dtype) ||
      !hostScalar(c, seed, DType::I32) || !hostScalar(c, step, DType::I32) ||
      !c.shape(y, dtype, x.value->shape))
    return c.takeError();
  bool dropout = kind == "dropout";
  if (!c.check(dropout || kind == "jitter",
               "attribute 'kind' must be \"dropout\" or \"jitter\", not \"" +
                   kind + "\"") ||
      !c.check(dropout ? rate >= 0 && rate < 1 : rate >= 0 && rate <= 1,
               "attribute 'rate' " + std::to_string(rate) + " is outside " +
                   (dropout ? "[0, 1)" : "[0, 1]")))
    return c.takeError();
  int64_t n = x.value->numel, bytes = x.value->bytes;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, k = seed.slot, s = step.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    int32_t key = hostValue<int32_t>(ctx, k);
    // A negative seed evaluates: no noise.
    if (key < 0)
      return copyOf(v[a], v[o], bytes, ctx.stream);
    CounterKey counter{key, stream, hostValue<int32_t>(ctx, s)};
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return randomScale(as<T>(v[a]), as<T>(v[o]), n, dropout, rate, counter,
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
    std::vector<train::ConstValues> values;
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

Expected<DeviceStep> prepareAdamW(StepContext &c) {
  const Arg &grad = c.in(0), &lr = c.in(1), &step = c.in(2), &norm = c.in(3),
            &micro = c.in(4);
  const Arg &param = c.out(0), &m = c.out(1), &v = c.out(2);
  train::AdamWConfig config;
  double maxNorm;
  int64_t microSteps;
  if (!c.attr("micro_steps", microSteps) ||
      !c.check(microSteps == 1 && !micro.value,
               "gradient accumulation (micro_steps " +
                   std::to_string(microSteps) +
                   ") has no CUDA implementation yet") ||
      !c.attr("b1", config.b1) || !c.attr("b2", config.b2) ||
      !c.attr("eps", config.eps) ||
      !c.attr("weight_decay", config.weightDecay) ||
      !c.attr("max_norm", maxNorm) || !c.minRank(param, DType::F32, 0) ||
      !c.shape(grad, DType::F32, param.value->shape) ||
      !c.shape(m, DType::F32, param.value->shape) ||
      !c.shape(v, DType::F32, param.value->shape) ||
      !hostScalar(c, lr, DType::F32) || !hostScalar(c, step, DType::I32) ||
      !c.shape(norm, DType::F32, {}))
    return c.takeError();
  if (Status valid = train::validateAdamW(config); !valid)
    return c.fail(valid.message()), c.takeError();
  if (!c.check(maxNorm >= 0 && std::isfinite(maxNorm),
               "attribute 'max_norm' must be finite and non-negative") ||
      !c.check(maxNorm == 0 || norm.value,
               "clipping (max_norm > 0) needs the norm operand"))
    return c.takeError();
  int64_t n = param.value->numel;
  int64_t factor = c.scratch(1);
  return DeviceStep([=, g = grad.slot, l = lr.slot, s = step.slot,
                     gn = norm.slot, p = param.slot, ms = m.slot,
                     vs = v.slot](const LaunchContext &ctx) {
    void *const *d = ctx.device;
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

struct TableEntry {
  std::string_view name;
  Expected<DeviceStep> (*prepare)(StepContext &);
};

/// Every plan kernel with a CUDA implementation.
const TableEntry kTable[] = {
    {"layer_norm", prepareLayerNorm},
    {"layer_norm_grad", prepareLayerNormGrad},
    {"activation", prepareActivation},
    {"activation_grad", prepareActivationGrad},
    {"softmax", prepareSoftmax},
    {"softmax_grad", prepareSoftmaxGrad},
    {"softmax_cross_entropy", prepareSoftmaxCrossEntropy},
    {"route_tokens_choose", prepareRouteTokensChoose},
    {"route_sigmoid_topk", prepareRouteSigmoidTopK},
    {"random_scale", prepareRandomScale},
    {"global_norm", prepareGlobalNorm},
    {"adamw", prepareAdamW},
};

const TableEntry *findEntry(std::string_view kernel) {
  for (const TableEntry &entry : kTable)
    if (entry.name == kernel)
      return &entry;
  return nullptr;
}

} // namespace

std::vector<std::string_view> cudaKernelNames() {
  std::vector<std::string_view> names;
  for (const TableEntry &entry : kTable)
    names.push_back(entry.name);
  return names;
}

bool hasCudaKernel(std::string_view kernel) {
  return findEntry(kernel) != nullptr;
}

Status checkCudaKernels(const exec::Plan &plan) {
  std::vector<std::string> missing;
  size_t first = plan.steps.size(), count = 0;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const std::string &kernel = plan.steps[i].kernel;
    if (hasCudaKernel(kernel))
      continue;
    first = std::min(first, i);
    ++count;
    if (std::find(missing.begin(), missing.end(), kernel) == missing.end())
      missing.push_back(kernel);
  }
  if (missing.empty())
    return Status::success();
  std::string list;
  for (const std::string &kernel : missing)
    list += (list.empty() ? "" : ", ") + kernel;
  return Status::error(
      plan.path + ": cuda: kernel '" + plan.steps[first].kernel + "' of step " +
      std::to_string(first) + " has no CUDA implementation yet (" +
      std::to_string(count) + " of " + std::to_string(plan.steps.size()) +
      " steps lack one: " + list + ")");
}

Expected<DeviceStep> prepareDeviceStep(const exec::Plan &plan, size_t index,
                                       int64_t &scratchBytes) {
  const exec::Step &step = plan.steps[index];
  const TableEntry *entry = findEntry(step.kernel);
  std::optional<exec::KernelOperandNames> names =
      exec::kernelOperandNames(step.kernel);
  if (!entry || !names)
    return Status::error(plan.path + ": cuda: kernel '" + step.kernel +
                         "' of step " + std::to_string(index) +
                         " has no CUDA implementation yet");
  StepContext context(plan, index, *names, scratchBytes);
  if (!context.checkPresence())
    return context.takeError();
  return entry->prepare(context);
}

} // namespace mixer::cuda
