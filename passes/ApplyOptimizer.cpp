//===- ApplyOptimizer.cpp - AdamW updates from the parameter gradients ----===//
//
// Turns the `grad/<parameter>` results of mixer-autodiff into one
// mixer.adamw per parameter at the end of @forward, with the moments as new
// state arguments and the updated values returned as in-place updates.
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

/// A parameter with the gradient autodiff computed for it and its moments.
struct Parameter {
  BlockArgument arg;
  StringRef name;
  Value grad;
  std::string mName, vName;
  Value m, v;
};

class OptimizerBuilder {
public:
  explicit OptimizerBuilder(func::FuncOp func)
      : func(func), builder(func.getContext()) {}

  LogicalResult run();

private:
  /// The f64 setting `name` of the function's `mixer.training`.
  FailureOr<FloatAttr> setting(DictionaryAttr settings, StringRef name);
  /// Appends a function argument with the given attributes.
  BlockArgument addArgument(Type type, Location loc,
                            ArrayRef<NamedAttribute> attrs);
  /// The model input `name` of type `type`, added when the function lacks
  /// it (the IR builder adds `step` when the forward pass has noise).
  FailureOr<Value> input(StringRef name, Type type);
  /// Appends a zero-initialised optimizer state argument named `name`.
  Value state(Type type, StringRef name);

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
    auto inputName =
        func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "mixer.input");
    if (!inputName || inputName.getValue() != name)
      continue;
    if (arg.getType() != type)
      return func.emitError() << "input '" << name << "' must have type "
                              << type << ", not " << arg.getType();
    return Value(arg);
  }
  return Value(addArgument(
      type, func.getLoc(),
      {builder.getNamedAttr("mixer.input", builder.getStringAttr(name))}));
}

Value OptimizerBuilder::state(Type type, StringRef name) {
  return addArgument(
      type, NameLoc::get(builder.getStringAttr(name)),
      {builder.getNamedAttr("mixer.state", builder.getStringAttr(name)),
       builder.getNamedAttr("mixer.init",
                            builder.getDictionaryAttr(builder.getNamedAttr(
                                "kind", builder.getStringAttr("zeros"))))});
}

LogicalResult OptimizerBuilder::run() {
  auto settings = func->getAttrOfType<DictionaryAttr>("mixer.training");
  if (!settings)
    return func.emitError("no optimizer settings (mixer.training) to apply");
  FailureOr<FloatAttr> b1 = setting(settings, "b1"),
                       b2 = setting(settings, "b2"),
                       eps = setting(settings, "eps"),
                       weightDecay = setting(settings, "weight_decay"),
                       maxNorm = setting(settings, "clip_grad_norm");
  if (failed(b1) || failed(b2) || failed(eps) || failed(weightDecay) ||
      failed(maxNorm))
    return failure();

  // Outputs stay, gradients feed the updates.
  auto names = func->getAttrOfType<ArrayAttr>("mixer.outputs");
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  if (!names || names.size() != ret.getNumOperands())
    return func.emitError("mixer.outputs must name every result");
  llvm::StringMap<Value> gradients;
  SmallVector<Value> results;
  SmallVector<Attribute> outputNames;
  for (auto [nameAttr, value] : llvm::zip(names, ret.getOperands())) {
    StringRef name = cast<StringAttr>(nameAttr).getValue();
    if (name.consume_front(kGradPrefix)) {
      gradients[name] = value;
      continue;
    }
    results.push_back(value);
    outputNames.push_back(nameAttr);
  }
  SmallVector<Parameter> params;
  for (BlockArgument arg : func.getArguments()) {
    auto name =
        func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "mixer.param");
    if (!name)
      continue;
    Value grad = gradients.lookup(name.getValue());
    if (!grad)
      return func.emitError()
             << "parameter '" << name.getValue() << "' has no gradient result '"
             << kGradPrefix << name.getValue() << "': run mixer-autodiff first";
    params.push_back({arg, name.getValue(), grad,
                      ("adam_m/" + name.getValue()).str(),
                      ("adam_v/" + name.getValue()).str(), Value(), Value()});
  }
  if (params.empty())
    return func.emitError("no parameters to update");

  auto f32Scalar = RankedTensorType::get({}, builder.getF32Type());
  auto i32Scalar = RankedTensorType::get({}, builder.getI32Type());
  FailureOr<Value> learningRate = input("learning_rate", f32Scalar);
  FailureOr<Value> step = input("step", i32Scalar);
  if (failed(learningRate) || failed(step))
    return failure();
  for (Parameter &param : params) {
    param.m = state(param.arg.getType(), param.mName);
    param.v = state(param.arg.getType(), param.vName);
  }

  builder.setInsertionPoint(ret);
  Value norm;
  if (maxNorm->getValueAsDouble() > 0) {
    SmallVector<Value> grads;
    for (const Parameter &param : params)
      grads.push_back(param.grad);
    norm = GlobalNormOp::create(builder, func.getLoc(), f32Scalar, grads);
  }
  SmallVector<DictionaryAttr> resultAttrs(results.size(),
                                          builder.getDictionaryAttr({}));
  auto update = [&](Value value, StringRef name) {
    results.push_back(value);
    resultAttrs.push_back(builder.getDictionaryAttr(
        builder.getNamedAttr("mixer.update", builder.getStringAttr(name))));
  };
  for (const Parameter &param : params) {
    auto adamw = AdamWOp::create(
        builder, param.arg.getLoc(), param.arg, param.m, param.v, param.grad,
        *learningRate, *step, norm, *b1, *b2, *eps, *weightDecay, *maxNorm);
    update(adamw.getNewParam(), param.name);
    update(adamw.getNewAdamM(), param.mName);
    update(adamw.getNewAdamV(), param.vName);
  }
  func::ReturnOp::create(builder, ret.getLoc(), results);
  ret.erase();
  func.setType(builder.getFunctionType(func.getArgumentTypes(),
                                       ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  func->setAttr("mixer.outputs", builder.getArrayAttr(outputNames));
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
