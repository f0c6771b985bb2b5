//===- LowerToRuntime.cpp - mixer graph to runtime kernel calls -----------===//
//
// Walks each function once in program order: tensors become buffers, ops
// become calls of the runtime kernel table (docs/runtime.md).
//
//===----------------------------------------------------------------------===//

#include "dialects/mixer/VerifyUtils.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/TypeSwitch.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERLOWERTORUNTIME
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;
using mixer::Kernel;
using mixer::rt::AllocOp;
using mixer::rt::KernelOp;
using mixer::rt::NoneOp;
using mixer::rt::ViewOp;

namespace {

MemRefType bufferType(Type tensorType) {
  auto tensor = cast<RankedTensorType>(tensorType);
  return MemRefType::get(tensor.getShape(), tensor.getElementType());
}

/// Lowers one function body; `flops` accumulates the model's matmul flops.
class FunctionLowering {
public:
  FunctionLowering(func::FuncOp func) : func(func), builder(func) {}

  LogicalResult run();

private:
  Value lookup(Value tensor) { return buffers.lookup(tensor); }
  Value none() {
    if (!noneValue) {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&func.getBody().front());
      noneValue = NoneOp::create(builder, func.getLoc(),
                                 MemRefType::get({0}, builder.getF32Type()));
    }
    return noneValue;
  }
  Value optional(Value tensor) { return tensor ? lookup(tensor) : none(); }
  Value alloc(Location loc, Type tensorType) {
    return AllocOp::create(builder, loc, bufferType(tensorType), IntegerAttr());
  }
  /// Emits one kernel call writing fresh buffers of `resultTypes`.
  SmallVector<Value> call(Location loc, Kernel kernel, ValueRange operands,
                          TypeRange resultTypes,
                          ArrayRef<NamedAttribute> params = {}) {
    SmallVector<Value> results;
    for (Type type : resultTypes)
      results.push_back(alloc(loc, type));
    KernelOp::create(builder, loc, kernel, operands, results,
                     builder.getDictionaryAttr(params));
    return results;
  }
  /// Emits a kernel replacing `op`'s results.
  void replace(Operation *op, Kernel kernel, ValueRange operands,
               ArrayRef<NamedAttribute> params = {}) {
    SmallVector<Value> results =
        call(op->getLoc(), kernel, operands, op->getResultTypes(), params);
    for (auto [tensor, buffer] : llvm::zip(op->getResults(), results))
      buffers[tensor] = buffer;
  }
  NamedAttribute intAttr(StringRef name, int64_t value) {
    return builder.getNamedAttr(name, builder.getI64IntegerAttr(value));
  }
  NamedAttribute boolAttr(StringRef name, bool value) {
    return builder.getNamedAttr(name, builder.getBoolAttr(value));
  }

  LogicalResult lowerOp(Operation *op);
  /// Lowers an op that one kernel runs operand for operand.
  LogicalResult lowerKernelOp(KernelOpInterface op,
                              ArrayRef<NamedAttribute> defaults = {}) {
    return lowerToKernel(op, op.getKernel(), op.getKernelOperands(), defaults);
  }
  /// Replaces `op` by `kernel` reading `operands` (tensors, null where
  /// absent) with the op's attributes (kernelParams).
  LogicalResult lowerToKernel(Operation *op, Kernel kernel,
                              ArrayRef<Value> operands,
                              ArrayRef<NamedAttribute> defaults = {});
  /// The attributes of `kernel` that runs `op`: the op's attributes by name
  /// (renamed where a KernelOpInterface op says so), unit attributes as
  /// booleans (absent: false), enums as their strings, and `defaults` for
  /// those the op leaves out.
  FailureOr<DictionaryAttr> kernelParams(Operation *op, Kernel kernel,
                                         ArrayRef<NamedAttribute> defaults);
  LogicalResult lowerRoute(RouteOp op);
  LogicalResult lowerAdamW(AdamWOp op);
  LogicalResult lowerAccumulateGradient(AccumulateGradientOp op);
  /// The storage of `updated`, a function argument that `update` writes in
  /// place; fails if it is not one or is read after the update.
  FailureOr<Value> updatedStorage(Operation *update, Value updated);
  /// Appends the lowered form of one result of the function to `results`,
  /// or checks that an update result (`mixer.update`) was computed in place.
  LogicalResult lowerResult(unsigned index, Value value,
                            SmallVectorImpl<Value> &results,
                            SmallVectorImpl<DictionaryAttr> &resultAttrs);
  SmallVector<NamedAttribute> routingParams(Operation *op, Routing routing,
                                            int64_t groups, int64_t capacity,
                                            int64_t k, bool prioritized,
                                            int64_t tokens);

  func::FuncOp func;
  OpBuilder builder;
  DenseMap<Value, Value> buffers;
  Value noneValue;

public:
  double flops = 0;
};

SmallVector<NamedAttribute>
FunctionLowering::routingParams(Operation *op, Routing routing, int64_t groups,
                                int64_t capacity, int64_t k, bool prioritized,
                                int64_t tokens) {
  if (routing == Routing::sigmoid_topk)
    return {intAttr("k", k)};
  SmallVector<NamedAttribute> params = {
      intAttr("groups", groups), intAttr("tokens_per_group", tokens / groups),
      intAttr("capacity", capacity)};
  if (routing == Routing::tokens_choose) {
    params.push_back(intAttr("k", k));
    params.push_back(boolAttr("batch_prioritized", prioritized));
  }
  return params;
}

Kernel routeKernel(Routing routing) {
  switch (routing) {
  case Routing::experts_choose:
    return Kernel::RouteExpertsChoose;
  case Routing::tokens_choose:
    return Kernel::RouteTokensChoose;
  case Routing::sigmoid_topk:
    return Kernel::RouteSigmoidTopK;
  }
  llvm_unreachable("unknown routing");
}

/// The CPU router computes probabilities in a first kernel and selects in a
/// second; the fused op keeps both in one IR op for targets that fuse them.
LogicalResult FunctionLowering::lowerRoute(RouteOp op) {
  Location loc = op.getLoc();
  Value scores = lookup(op.getLogits());
  int64_t tokens = cast<ShapedType>(scores.getType()).getShape()[0];
  if (op.getRouting() != Routing::sigmoid_topk) {
    scores = call(loc, Kernel::Softmax, {scores}, {op.getLogits().getType()},
                  {boolAttr("bf16", op.getRouterBf16())})[0];
  }
  replace(op, routeKernel(op.getRouting()), {scores},
          routingParams(op, op.getRouting(), op.getNumGroups(),
                        op.getCapacity(), op.getK(), op.getBatchPrioritized(),
                        tokens));
  return success();
}

/// Fails unless `update` is the last op that reads `arg`, directly or
/// through reshapes: it overwrites the argument's storage.
LogicalResult checkLastReader(Operation *update, BlockArgument arg) {
  SmallVector<Value> aliases = {arg};
  while (!aliases.empty()) {
    Value alias = aliases.pop_back_val();
    for (Operation *user : alias.getUsers()) {
      if (user == update)
        continue;
      if (isa<ReshapeOp, ViewOp>(user)) {
        aliases.push_back(user->getResult(0));
        continue;
      }
      if (!user->isBeforeInBlock(update))
        return (update->emitOpError()
                << "cannot update argument " << arg.getArgNumber()
                << " in place: it is read after the update")
                   .attachNote(user->getLoc())
               << "read here";
    }
  }
  return success();
}

FailureOr<Value> FunctionLowering::updatedStorage(Operation *update,
                                                  Value updated) {
  auto arg = dyn_cast<BlockArgument>(updated);
  if (!arg)
    return update->emitOpError("can only update function arguments (the "
                               "parameters and optimizer state) in place");
  if (failed(checkLastReader(update, arg)))
    return failure();
  return lookup(arg);
}

/// The optimizer update writes the parameter and its moments where they are
/// stored, so its results take no buffers of their own.
LogicalResult FunctionLowering::lowerAdamW(AdamWOp adamw) {
  SmallVector<Value> storage;
  for (Value updated : {adamw.getParam(), adamw.getAdamM(), adamw.getAdamV()}) {
    FailureOr<Value> buffer = updatedStorage(adamw, updated);
    if (failed(buffer))
      return failure();
    storage.push_back(*buffer);
  }
  FailureOr<DictionaryAttr> params = kernelParams(adamw, Kernel::AdamW, {});
  if (failed(params))
    return failure();
  KernelOp::create(builder, adamw.getLoc(), Kernel::AdamW,
                   {lookup(adamw.getGrad()), lookup(adamw.getLearningRate()),
                    lookup(adamw.getStep()), optional(adamw.getNorm()),
                    optional(adamw.getMicroStep())},
                   storage, *params);
  for (auto [result, buffer] : llvm::zip(adamw.getResults(), storage))
    buffers[result] = buffer;
  return success();
}

/// The accumulator is updated in place; the average is a fresh buffer.
LogicalResult
FunctionLowering::lowerAccumulateGradient(AccumulateGradientOp op) {
  FailureOr<Value> accumulator = updatedStorage(op, op.getAccumulator());
  FailureOr<DictionaryAttr> params =
      kernelParams(op, Kernel::AccumulateGradient, {});
  if (failed(accumulator) || failed(params))
    return failure();
  Value average = alloc(op.getLoc(), op.getAverage().getType());
  KernelOp::create(builder, op.getLoc(), Kernel::AccumulateGradient,
                   {lookup(op.getGrad()), lookup(op.getMicroStep())},
                   {*accumulator, average}, *params);
  buffers[op.getNewAccumulator()] = *accumulator;
  buffers[op.getAverage()] = average;
  return success();
}

/// The string of an enum attribute, or nothing for another attribute.
std::optional<StringRef> stringifyEnumAttr(Attribute value) {
  return llvm::TypeSwitch<Attribute, std::optional<StringRef>>(value)
      .Case<ActivationAttr, MixAlgorithmAttr, NoiseKindAttr, PoolModeAttr,
            RoutingAttr>(
          [](auto attr) { return stringifyEnum(attr.getValue()); })
      .Default(std::nullopt);
}

FailureOr<DictionaryAttr>
FunctionLowering::kernelParams(Operation *op, Kernel kernel,
                               ArrayRef<NamedAttribute> defaults) {
  const mixer::KernelInfo &info = mixer::kernelInfo(kernel);
  auto kernelOp = dyn_cast<KernelOpInterface>(op);
  NamedAttrList params;
  for (StringAttr opName : op->getName().getAttributeNames()) {
    Attribute value = op->getAttr(opName);
    if (!value || opName == "operandSegmentSizes")
      continue;
    StringRef name =
        kernelOp ? kernelOp.getKernelAttributeName(opName) : opName.strref();
    const mixer::KernelAttribute *attribute = info.findAttribute(name);
    if (!attribute)
      return op->emitOpError()
             << "has the attribute '" << opName.strref() << "', which kernel '"
             << info.name << "' does not take";
    if (isa<UnitAttr>(value))
      value = builder.getBoolAttr(true);
    else if (std::optional<StringRef> string = stringifyEnumAttr(value))
      value = builder.getStringAttr(*string);
    params.set(name, value);
  }
  for (NamedAttribute fallback : defaults)
    if (!params.get(fallback.getName()))
      params.push_back(fallback);
  for (const mixer::KernelAttribute &attribute : info.attributes) {
    if (attribute.optional || params.get(attribute.name))
      continue;
    if (attribute.type != mixer::AttrType::Bool)
      return op->emitOpError()
             << "has no value for the attribute '" << attribute.name
             << "' of kernel '" << info.name << "'";
    params.set(attribute.name, builder.getBoolAttr(false));
  }
  return params.getDictionary(op->getContext());
}

LogicalResult
FunctionLowering::lowerToKernel(Operation *op, Kernel kernel,
                                ArrayRef<Value> operands,
                                ArrayRef<NamedAttribute> defaults) {
  FailureOr<DictionaryAttr> params = kernelParams(op, kernel, defaults);
  if (failed(params))
    return failure();
  SmallVector<Value> inputs;
  for (Value operand : operands)
    inputs.push_back(optional(operand));
  replace(op, kernel, inputs, params->getValue());
  return success();
}

LogicalResult FunctionLowering::lowerOp(Operation *op) {
  if (auto counted = dyn_cast<FlopCountOpInterface>(op))
    flops += counted.getFlops();
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case<ReshapeOp>([&](ReshapeOp reshape) {
        buffers[reshape.getResult()] = ViewOp::create(
            builder, reshape.getLoc(), bufferType(reshape.getType()),
            lookup(reshape.getInput()));
        return success();
      })
      // The kernels of LayerNorm without a residual add take it absent.
      .Case<LayerNormOp>([&](LayerNormOp norm) {
        return lowerToKernel(
            norm, Kernel::LayerNorm,
            {norm.getInput(), Value(), norm.getScale(), norm.getBias()});
      })
      .Case<LayerNormGradOp>([&](LayerNormGradOp grad) {
        return lowerToKernel(
            grad, Kernel::LayerNormGrad,
            {grad.getInput(), Value(), grad.getScale(), grad.getResultGrad()});
      })
      .Case<SpectralMixOp, StructuredMixOp>([&](auto mix) -> LogicalResult {
        if (mix.getAlgorithm() == MixAlgorithm::automatic)
          return mix.emitOpError(
              "algorithm is still auto: run mixer-select-mixing-algorithm");
        return lowerKernelOp(mix);
      })
      // Attention without probability dropout has rate 0.
      .Case<AttentionOp, AttentionGradOp>([&](auto attention) {
        return lowerKernelOp(
            attention,
            {builder.getNamedAttr("dropout_rate", builder.getF64FloatAttr(0.0)),
             intAttr("stream", 0)});
      })
      .Case<SelectExpertsOp>([&](SelectExpertsOp select) {
        int64_t tokens = shapeOf(select.getProbs())[0];
        replace(select, routeKernel(select.getRouting()),
                {lookup(select.getProbs())},
                routingParams(select, select.getRouting(),
                              select.getNumGroups(), select.getCapacity(),
                              select.getK(), select.getBatchPrioritized(),
                              tokens));
        return success();
      })
      .Case<RouteOp>([&](RouteOp route) { return lowerRoute(route); })
      .Case<AccumulateGradientOp>(
          [&](AccumulateGradientOp op) { return lowerAccumulateGradient(op); })
      .Case<AdamWOp>([&](AdamWOp adamw) { return lowerAdamW(adamw); })
      .Case<MoeOp, SigmaMoeOp>([&](Operation *moe) {
        return moe->emitOpError("must be decomposed (mixer-decompose-moe) "
                                "before lowering to the runtime");
      })
      .Case<KernelOpInterface>(
          [&](KernelOpInterface op) { return lowerKernelOp(op); })
      .Default([&](Operation *other) {
        return other->emitOpError("has no runtime lowering");
      });
}

LogicalResult FunctionLowering::run() {
  Block &body = func.getBody().front();
  for (BlockArgument arg : body.getArguments()) {
    arg.setType(bufferType(arg.getType()));
    buffers[arg] = arg;
  }
  for (Operation &op : llvm::make_early_inc_range(body.without_terminator())) {
    builder.setInsertionPoint(&op);
    if (failed(lowerOp(&op)))
      return failure();
  }
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  SmallVector<Value> results;
  SmallVector<DictionaryAttr> resultAttrs;
  for (auto [index, value] : llvm::enumerate(ret.getOperands()))
    if (failed(lowerResult(index, value, results, resultAttrs)))
      return failure();
  builder.setInsertionPoint(ret);
  func::ReturnOp::create(builder, ret.getLoc(), results);
  ret.erase();
  // Erase the tensor ops bottom-up now that nothing reads them.
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body))) {
    if (op.getDialect() && isa<MixerDialect>(op.getDialect()))
      op.erase();
  }
  func.setType(FunctionType::get(func.getContext(), body.getArgumentTypes(),
                                 ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  return success();
}

LogicalResult
FunctionLowering::lowerResult(unsigned index, Value value,
                              SmallVectorImpl<Value> &results,
                              SmallVectorImpl<DictionaryAttr> &resultAttrs) {
  auto updated =
      func.getResultAttrOfType<StringAttr>(index, mixer::graph::kUpdateAttr);
  if (!updated) {
    results.push_back(lookup(value));
    DictionaryAttr attrs = func.getResultAttrDict(index);
    resultAttrs.push_back(attrs ? attrs : builder.getDictionaryAttr({}));
    return success();
  }
  // The update already sits in the storage of the argument it names.
  auto arg = dyn_cast<BlockArgument>(lookup(value));
  auto stored = [&](StringRef kind) {
    return arg && func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), kind) ==
                      updated;
  };
  if (stored(mixer::graph::kParamAttr) || stored(mixer::graph::kStateAttr))
    return success();
  return func.emitError() << "result " << index << " updates '"
                          << updated.getValue()
                          << "' but is not computed in its storage";
}

struct LowerToRuntimePass
    : mixer::impl::MixerLowerToRuntimeBase<LowerToRuntimePass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      FunctionLowering lowering(func);
      if (failed(lowering.run()))
        return signalPassFailure();
      func->setAttr(
          mixer::rt::kFlopsAttr,
          FloatAttr::get(Float64Type::get(&getContext()), lowering.flops));
    }
  }
};

} // namespace
