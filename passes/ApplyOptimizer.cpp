//===- ApplyOptimizer.cpp - AdamW updates from the parameter gradients ----===//
//
// Turns the `grad/<parameter>` results of mixer-autodiff into one
// mixer.adamw per parameter at the end of @forward, with the moments as new
// state arguments and the updated values returned as in-place updates. With
// gradient accumulation each gradient first goes through a
// mixer.accumulate_gradient whose accumulator is state as well.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/StringMap.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERAPPLYOPTIMIZER
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

constexpr StringLiteral kGradPrefix = "grad/";

/// A parameter with the gradient autodiff computed for it, its moments and,
/// with gradient accumulation, its accumulator.
struct Parameter {
  BlockArgument arg;
  StringRef name;
  Value grad;
  std::string mName, vName, accumName;
  Value m, v, accum;
};

class OptimizerBuilder {
public:
  explicit OptimizerBuilder(func::FuncOp func)
      : func(func), builder(func.getContext()) {}

  LogicalResult run();

private:
  /// The f64 setting `name` of the function's `mixer.training`.
  FailureOr<FloatAttr> setting(DictionaryAttr settings, StringRef name);
  /// The micro-steps per update (`gradient_accumulation_steps`, an integer
  /// >= 1; 1 when absent).
  FailureOr<int64_t> microSteps(DictionaryAttr settings);
  /// Appends a function argument with the given attributes.
  BlockArgument addArgument(Type type, Location loc,
                            ArrayRef<NamedAttribute> attrs);
  /// The model input `name` of type `type`, added when the function lacks
  /// it (the IR builder adds `step` when the forward pass has noise).
  FailureOr<Value> input(StringRef name, Type type);
  /// Appends the zero-initialised optimizer state arguments of `params`
  /// (m, v and with accumulation the gradient sum of each) in one go:
  /// appending them one at a time would intern a new function type per
  /// argument, memory quadratic in the parameters.
  void addState(MutableArrayRef<Parameter> params, bool accumulate);
  /// The global norm of the update's gradients `grads` (one per parameter of
  /// `params`). On an expert-parallel mesh each rank holds a slice of the
  /// experts: the norm counts every rank's slice once.
  Value globalNorm(ArrayRef<Parameter> params, ArrayRef<Value> grads);

  func::FuncOp func;
  OpBuilder builder;
};

FailureOr<FloatAttr> OptimizerBuilder::setting(DictionaryAttr settings,
                                               StringRef name) {
  auto value = settings.getAs<FloatAttr>(name);
  if (!value)
    return func.emitError() << "mixer.training has no f64 '" << name << "'";
  return value;
}

FailureOr<int64_t> OptimizerBuilder::microSteps(DictionaryAttr settings) {
  constexpr StringLiteral kName = "gradient_accumulation_steps";
  Attribute value = settings.get(kName);
  if (!value)
    return 1;
  auto count = dyn_cast<IntegerAttr>(value);
  if (!count || count.getInt() < 1)
    return func.emitError()
           << "mixer.training '" << kName << "' must be an integer >= 1";
  return count.getInt();
}

BlockArgument OptimizerBuilder::addArgument(Type type, Location loc,
                                            ArrayRef<NamedAttribute> attrs) {
  unsigned index = func.getNumArguments();
  if (failed(func.insertArgument(index, type, builder.getDictionaryAttr(attrs),
                                 loc)))
    llvm_unreachable("appending a function argument cannot fail");
  return func.getArgument(index);
}

FailureOr<Value> OptimizerBuilder::input(StringRef name, Type type) {
  for (BlockArgument arg : func.getArguments()) {
    auto inputName = func.getArgAttrOfType<StringAttr>(
        arg.getArgNumber(), mixer::graph::kInputAttr);
    if (!inputName || inputName.getValue() != name)
      continue;
    if (arg.getType() != type)
      return func.emitError() << "input '" << name << "' must have type "
                              << type << ", not " << arg.getType();
    return Value(arg);
  }
  return Value(
      addArgument(type, func.getLoc(),
                  {builder.getNamedAttr(mixer::graph::kInputAttr,
                                        builder.getStringAttr(name))}));
}

void OptimizerBuilder::addState(MutableArrayRef<Parameter> params,
                                bool accumulate) {
  SmallVector<Type> types;
  SmallVector<DictionaryAttr> attrs;
  SmallVector<Location> locs;
  DictionaryAttr zeros = builder.getDictionaryAttr(
      builder.getNamedAttr("kind", builder.getStringAttr("zeros")));
  // The state of an expert slice is sliced as the parameter is.
  auto add = [&](const Parameter &param, StringRef name) {
    types.push_back(param.arg.getType());
    SmallVector<NamedAttribute> entry = {
        builder.getNamedAttr(mixer::graph::kStateAttr,
                             builder.getStringAttr(name)),
        builder.getNamedAttr(mixer::graph::kInitAttr, zeros)};
    if (Attribute shard = func.getArgAttr(param.arg.getArgNumber(),
                                          mixer::graph::kShardAttr))
      entry.push_back(builder.getNamedAttr(mixer::graph::kShardAttr, shard));
    attrs.push_back(builder.getDictionaryAttr(entry));
    locs.push_back(NameLoc::get(builder.getStringAttr(name)));
  };
  for (const Parameter &param : params) {
    add(param, param.mName);
    add(param, param.vName);
    if (accumulate)
      add(param, param.accumName);
  }
  unsigned next = func.getNumArguments();
  SmallVector<unsigned> atEnd(types.size(), next);
  if (failed(func.insertArguments(atEnd, types, attrs, locs)))
    llvm_unreachable("appending function arguments cannot fail");
  for (Parameter &param : params) {
    param.m = func.getArgument(next++);
    param.v = func.getArgument(next++);
    if (accumulate)
      param.accum = func.getArgument(next++);
  }
}

Value OptimizerBuilder::globalNorm(ArrayRef<Parameter> params,
                                   ArrayRef<Value> grads) {
  Location loc = func.getLoc();
  auto f32 = [&](ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, builder.getF32Type());
  };
  int64_t ep = meshOf(func).ep;
  SmallVector<Value> replicated, experts;
  for (auto [param, grad] : llvm::zip(params, grads))
    (func.getArgAttr(param.arg.getArgNumber(), kShardAttr) ? experts
                                                           : replicated)
        .push_back(grad);
  if (experts.empty())
    return GlobalNormOp::create(builder, loc, f32({}), grads);
  // The norm of this rank's expert slices, tiled ep times (a product with
  // ones, exact) and exchanged, gives every rank each slice's norm.
  Value local =
      ReshapeOp::create(builder, loc, f32({1, 1}),
                        GlobalNormOp::create(builder, loc, f32({}), experts));
  Value ones =
      FillOp::create(builder, loc, f32({1, ep}), builder.getF64FloatAttr(1.0));
  Value tiled = ReshapeOp::create(
      builder, loc, f32({ep}),
      DenseOp::create(builder, loc, f32({1, ep}), local, ones, Value()));
  replicated.push_back(AllToAllOp::create(builder, loc, tiled,
                                          builder.getStringAttr(kExpertGroup)));
  return GlobalNormOp::create(builder, loc, f32({}), replicated);
}

LogicalResult OptimizerBuilder::run() {
  auto settings =
      func->getAttrOfType<DictionaryAttr>(mixer::graph::kTrainingAttr);
  if (!settings)
    return func.emitError("no optimizer settings (mixer.training) to apply");
  FailureOr<FloatAttr> b1 = setting(settings, "b1"),
                       b2 = setting(settings, "b2"),
                       eps = setting(settings, "eps"),
                       weightDecay = setting(settings, "weight_decay"),
                       maxNorm = setting(settings, "clip_grad_norm");
  FailureOr<int64_t> micro = microSteps(settings);
  if (failed(b1) || failed(b2) || failed(eps) || failed(weightDecay) ||
      failed(maxNorm) || failed(micro))
    return failure();
  bool accumulate = *micro > 1;

  // Outputs stay, gradients feed the updates.
  auto names = func->getAttrOfType<ArrayAttr>(mixer::graph::kOutputsAttr);
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  if (!names || names.size() != ret.getNumOperands())
    return func.emitError("mixer.outputs must name every result");
  llvm::StringMap<Value> gradients;
  SmallVector<Value> results;
  SmallVector<Attribute> outputNames;
  SmallVector<DictionaryAttr> keptAttrs;
  for (auto [index, nameAttr, value] :
       llvm::enumerate(names, ret.getOperands())) {
    StringRef name = cast<StringAttr>(nameAttr).getValue();
    if (name.consume_front(kGradPrefix)) {
      gradients[name] = value;
      continue;
    }
    results.push_back(value);
    outputNames.push_back(nameAttr);
    DictionaryAttr attrs = func.getResultAttrDict(index);
    keptAttrs.push_back(attrs ? attrs : builder.getDictionaryAttr({}));
  }
  SmallVector<Parameter> params;
  for (BlockArgument arg : func.getArguments()) {
    auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                  mixer::graph::kParamAttr);
    if (!name)
      continue;
    Value grad = gradients.lookup(name.getValue());
    if (!grad)
      return func.emitError()
             << "parameter '" << name.getValue() << "' has no gradient result '"
             << kGradPrefix << name.getValue() << "': run mixer-autodiff first";
    params.push_back(
        {arg, name.getValue(), grad, ("adam_m/" + name.getValue()).str(),
         ("adam_v/" + name.getValue()).str(),
         ("grad_accum/" + name.getValue()).str(), Value(), Value(), Value()});
  }
  if (params.empty())
    return func.emitError("no parameters to update");

  auto f32Scalar = RankedTensorType::get({}, builder.getF32Type());
  auto i32Scalar = RankedTensorType::get({}, builder.getI32Type());
  FailureOr<Value> learningRate = input("learning_rate", f32Scalar);
  FailureOr<Value> step = input("step", i32Scalar);
  FailureOr<Value> microStep =
      accumulate ? input("micro_step", i32Scalar) : FailureOr<Value>(Value());
  if (failed(learningRate) || failed(step) || failed(microStep))
    return failure();
  addState(params, accumulate);

  builder.setInsertionPoint(ret);
  SmallVector<DictionaryAttr> resultAttrs = keptAttrs;
  auto update = [&](Value value, StringRef name) {
    results.push_back(value);
    resultAttrs.push_back(builder.getDictionaryAttr(builder.getNamedAttr(
        mixer::graph::kUpdateAttr, builder.getStringAttr(name))));
  };
  // The gradient of the update: this micro-batch's, or the mean over the
  // update's micro-batches, which clipping then measures.
  SmallVector<Value> grads;
  SmallVector<Value> accumulators;
  for (const Parameter &param : params) {
    if (!accumulate) {
      grads.push_back(param.grad);
      continue;
    }
    auto sum = AccumulateGradientOp::create(builder, param.arg.getLoc(),
                                            param.accum, param.grad, *microStep,
                                            builder.getI64IntegerAttr(*micro));
    accumulators.push_back(sum.getNewAccumulator());
    grads.push_back(sum.getAverage());
  }
  Value norm;
  if (maxNorm->getValueAsDouble() > 0)
    norm = globalNorm(params, grads);
  for (auto [index, param] : llvm::enumerate(params)) {
    auto adamw = AdamWOp::create(
        builder, param.arg.getLoc(), param.arg, param.m, param.v, grads[index],
        *learningRate, *step, norm, *microStep, *b1, *b2, *eps, *weightDecay,
        *maxNorm, builder.getI64IntegerAttr(*micro));
    update(adamw.getNewParam(), param.name);
    update(adamw.getNewAdamM(), param.mName);
    update(adamw.getNewAdamV(), param.vName);
    if (accumulate)
      update(accumulators[index], param.accumName);
  }
  func::ReturnOp::create(builder, ret.getLoc(), results);
  ret.erase();
  func.setType(builder.getFunctionType(func.getArgumentTypes(),
                                       ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  func->setAttr(mixer::graph::kOutputsAttr, builder.getArrayAttr(outputNames));
  return success();
}

struct ApplyOptimizerPass
    : mixer::impl::MixerApplyOptimizerBase<ApplyOptimizerPass> {
  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      getOperation().emitError("no @forward function to optimize");
      return signalPassFailure();
    }
    if (failed(OptimizerBuilder(func).run()))
      signalPassFailure();
  }
};

} // namespace
