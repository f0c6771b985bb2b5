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

int64_t numElements(Value value) {
  return cast<ShapedType>(value.getType()).getNumElements();
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
  NamedAttribute attr(StringRef name, Attribute value) {
    return builder.getNamedAttr(name, value);
  }
  NamedAttribute intAttr(StringRef name, int64_t value) {
    return attr(name, builder.getI64IntegerAttr(value));
  }
  NamedAttribute boolAttr(StringRef name, bool value) {
    return attr(name, builder.getBoolAttr(value));
  }
  NamedAttribute strAttr(StringRef name, StringRef value) {
    return attr(name, builder.getStringAttr(value));
  }

  LogicalResult lowerOp(Operation *op);
  LogicalResult lowerRoute(RouteOp op);
  LogicalResult lowerAdamW(AdamWOp op);
  LogicalResult lowerAccumulateGradient(AccumulateGradientOp op);
  /// The storage of `updated`, a function argument that `update` writes in
  /// place; fails if it is not one or is read after the update.
  FailureOr<Value> updatedStorage(Operation *update, Value updated);
  /// The attributes of attention's probability dropout (rate 0 without).
  SmallVector<NamedAttribute> attentionDropout(std::optional<APFloat> rate,
                                               std::optional<uint64_t> stream);
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
    Type scoreType = op.getLogits().getType();
    if (op.getRouterBf16())
      scores = call(loc, Kernel::RoundBf16, {scores}, {scoreType})[0];
    scores = call(loc, Kernel::Softmax, {scores}, {scoreType})[0];
    if (op.getRouterBf16())
      scores = call(loc, Kernel::RoundBf16, {scores}, {scoreType})[0];
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
  KernelOp::create(
      builder, adamw.getLoc(), Kernel::AdamW,
      {lookup(adamw.getGrad()), lookup(adamw.getLearningRate()),
       lookup(adamw.getStep()), optional(adamw.getNorm()),
       optional(adamw.getMicroStep())},
      storage,
      builder.getDictionaryAttr(
          {attr("b1", adamw.getB1Attr()), attr("b2", adamw.getB2Attr()),
           attr("eps", adamw.getEpsAttr()),
           attr("weight_decay", adamw.getWeightDecayAttr()),
           attr("max_norm", adamw.getMaxNormAttr()),
           attr("micro_steps", adamw.getMicroStepsAttr())}));
  for (auto [result, buffer] : llvm::zip(adamw.getResults(), storage))
    buffers[result] = buffer;
  return success();
}

/// The accumulator is updated in place; the average is a fresh buffer.
LogicalResult
FunctionLowering::lowerAccumulateGradient(AccumulateGradientOp op) {
  FailureOr<Value> accumulator = updatedStorage(op, op.getAccumulator());
  if (failed(accumulator))
    return failure();
  Value average = alloc(op.getLoc(), op.getAverage().getType());
  KernelOp::create(
      builder, op.getLoc(), Kernel::AccumulateGradient,
      {lookup(op.getGrad()), lookup(op.getMicroStep())},
      {*accumulator, average},
      builder.getDictionaryAttr({attr("micro_steps", op.getMicroStepsAttr())}));
  buffers[op.getNewAccumulator()] = *accumulator;
  buffers[op.getAverage()] = average;
  return success();
}

SmallVector<NamedAttribute>
FunctionLowering::attentionDropout(std::optional<APFloat> rate,
                                   std::optional<uint64_t> stream) {
  return {attr("dropout_rate",
               builder.getF64FloatAttr(rate ? rate->convertToDouble() : 0.0)),
          intAttr("stream", stream.value_or(0))};
}

LogicalResult FunctionLowering::lowerOp(Operation *op) {
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case<ReshapeOp>([&](ReshapeOp reshape) {
        buffers[reshape.getResult()] = ViewOp::create(
            builder, reshape.getLoc(), bufferType(reshape.getType()),
            lookup(reshape.getInput()));
        return success();
      })
      .Case<EmbedOp>([&](EmbedOp embed) {
        replace(embed, Kernel::Embed,
                {lookup(embed.getIds()), lookup(embed.getTypeIds()),
                 lookup(embed.getWord()), lookup(embed.getPosition()),
                 lookup(embed.getType())});
        return success();
      })
      .Case<DenseOp>([&](DenseOp dense) {
        int64_t n = cast<ShapedType>(dense.getType()).getShape().back();
        flops += 2.0 * numElements(dense.getInput()) * n;
        replace(
            dense, Kernel::Dense,
            {lookup(dense.getInput()), lookup(dense.getWeight()),
             optional(dense.getBias())},
            {strAttr("activation", stringifyActivation(dense.getActivation())),
             boolAttr("transpose_w", dense.getTransposeWeight())});
        return success();
      })
      .Case<LayerNormOp>([&](LayerNormOp norm) {
        replace(norm, Kernel::LayerNorm,
                {lookup(norm.getInput()), none(), lookup(norm.getScale()),
                 lookup(norm.getBias())},
                {attr("epsilon", norm.getEpsilonAttr())});
        return success();
      })
      .Case<AddLayerNormOp>([&](AddLayerNormOp norm) {
        replace(norm, Kernel::LayerNorm,
                {lookup(norm.getInput()), lookup(norm.getResidual()),
                 lookup(norm.getScale()), lookup(norm.getBias())},
                {attr("epsilon", norm.getEpsilonAttr())});
        return success();
      })
      .Case<ActivationOp>([&](ActivationOp activation) {
        replace(activation, Kernel::Activation, {lookup(activation.getInput())},
                {strAttr("kind", stringifyActivation(activation.getKind()))});
        return success();
      })
      .Case<AddOp>([&](AddOp add) {
        replace(add, Kernel::Add, {lookup(add.getLhs()), lookup(add.getRhs())});
        return success();
      })
      .Case<SoftmaxOp>([&](SoftmaxOp softmax) {
        replace(softmax, Kernel::Softmax, {lookup(softmax.getInput())});
        return success();
      })
      .Case<RoundBf16Op>([&](RoundBf16Op round) {
        replace(round, Kernel::RoundBf16, {lookup(round.getInput())});
        return success();
      })
      .Case<TakePositionOp>([&](TakePositionOp take) {
        replace(take, Kernel::TakePosition, {lookup(take.getInput())},
                {intAttr("index", take.getIndex())});
        return success();
      })
      .Case<LinearMixOp>([&](LinearMixOp mix) {
        ArrayRef<int64_t> shape = shapeOf(mix.getInput());
        flops +=
            2.0 * shape[0] *
            (shape[1] * shape[2] * shape[2] + shape[1] * shape[1] * shape[2]);
        replace(mix, Kernel::LinearMix,
                {lookup(mix.getInput()), lookup(mix.getSeqKernel()),
                 lookup(mix.getHiddenKernel())});
        return success();
      })
      .Case<SpectralMixOp>([&](SpectralMixOp mix) -> LogicalResult {
        if (mix.getAlgorithm() == MixAlgorithm::automatic)
          return mix.emitOpError(
              "algorithm is still auto: run mixer-select-mixing-algorithm");
        replace(
            mix, Kernel::SpectralMix, {lookup(mix.getInput())},
            {boolAttr("hartley", mix.getHartley()),
             strAttr("algorithm", stringifyMixAlgorithm(mix.getAlgorithm()))});
        return success();
      })
      .Case<StructuredMixOp>([&](StructuredMixOp mix) -> LogicalResult {
        if (mix.getAlgorithm() == MixAlgorithm::automatic)
          return mix.emitOpError(
              "algorithm is still auto: run mixer-select-mixing-algorithm");
        replace(
            mix, Kernel::StructuredMix,
            {lookup(mix.getInput()), lookup(mix.getSeqKernel()),
             lookup(mix.getHiddenKernel())},
            {boolAttr("toeplitz", mix.getToeplitz()),
             strAttr("algorithm", stringifyMixAlgorithm(mix.getAlgorithm()))});
        return success();
      })
      .Case<AttentionOp>([&](AttentionOp attention) {
        ArrayRef<int64_t> shape = shapeOf(attention.getQuery());
        flops += 4.0 * shape[0] * shape[1] * shape[1] * shape[2];
        SmallVector<NamedAttribute> params = {
            intAttr("num_heads", attention.getNumHeads()),
            intAttr("head_dim", attention.getHeadDim()),
            intAttr("pad_id", attention.getPadId()),
            boolAttr("causal", attention.getCausal())};
        params.append(attentionDropout(attention.getDropoutRate(),
                                       attention.getDropoutStream()));
        replace(attention, Kernel::Attention,
                {lookup(attention.getQuery()), lookup(attention.getKey()),
                 lookup(attention.getValue()), lookup(attention.getIds()),
                 optional(attention.getSeed()), optional(attention.getStep())},
                params);
        return success();
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
      .Case<DispatchOp>([&](DispatchOp dispatch) {
        replace(dispatch, Kernel::Dispatch,
                {lookup(dispatch.getInput()), lookup(dispatch.getTokens())});
        return success();
      })
      .Case<ExpertsOp>([&](ExpertsOp experts) {
        ArrayRef<int64_t> w1 = shapeOf(experts.getW1());
        flops += 4.0 * shapeOf(experts.getInput())[0] * w1[1] * w1[2];
        replace(experts, Kernel::Experts,
                {lookup(experts.getInput()), lookup(experts.getTokens()),
                 lookup(experts.getOffsets()), lookup(experts.getW1()),
                 optional(experts.getB1()), lookup(experts.getW2()),
                 optional(experts.getB2())},
                {strAttr("activation",
                         stringifyActivation(experts.getActivation()))});
        return success();
      })
      .Case<CombineOp>([&](CombineOp combine) {
        replace(combine, Kernel::Combine,
                {lookup(combine.getInput()), lookup(combine.getTokens()),
                 lookup(combine.getGates())});
        return success();
      })
      // Scalar arithmetic and losses.
      .Case<FillOp>([&](FillOp fill) {
        replace(fill, Kernel::Fill, {}, {attr("value", fill.getValueAttr())});
        return success();
      })
      .Case<BroadcastOp, ReduceSumOp, MultiplyOp, DivideOp, SoftmaxGradOp,
            ReduceRowsOp, DispatchGradOp, CombineGradOp, ScatterGateGradOp,
            GatherPositionsOp, GatherPositionsGradOp, SquaredErrorOp,
            EmbedGradOp, LabelMaskOp, GlobalNormOp, ArgmaxOp, RouterZLossOp,
            RouterZLossGradOp, EntropyRegularizerOp, EntropyRegularizerGradOp>(
          [&](Operation *op) {
            // Kernels named after the op, taking its operands in order.
            SmallVector<Value> operands;
            for (Value operand : op->getOperands())
              operands.push_back(lookup(operand));
            replace(op, mixer::findKernel(op->getName().stripDialect())->kernel,
                    operands);
            return success();
          })
      .Case<ScaleOp>([&](ScaleOp scale) {
        replace(scale, Kernel::Scale, {lookup(scale.getInput())},
                {attr("factor", scale.getFactorAttr())});
        return success();
      })
      .Case<LoadBalancingLossOp, LoadBalancingLossGradOp>([&](Operation *op) {
        SmallVector<Value> operands;
        for (Value operand : op->getOperands())
          operands.push_back(lookup(operand));
        replace(op, mixer::findKernel(op->getName().stripDialect())->kernel,
                operands,
                {attr("groups", op->getAttr("num_groups")),
                 attr("k", op->getAttr("k"))});
        return success();
      })
      .Case<SoftmaxCrossEntropyOp>([&](SoftmaxCrossEntropyOp loss) {
        replace(loss, Kernel::SoftmaxCrossEntropy,
                {lookup(loss.getLogits()), lookup(loss.getLabels()),
                 optional(loss.getWeights())});
        return success();
      })
      .Case<SoftmaxCrossEntropyGradOp>([&](SoftmaxCrossEntropyGradOp grad) {
        replace(grad, Kernel::SoftmaxCrossEntropyGrad,
                {lookup(grad.getLogits()), lookup(grad.getLabels()),
                 lookup(grad.getResultGrad()), optional(grad.getWeights())});
        return success();
      })
      // Backward kernels.
      .Case<ActivationGradOp>([&](ActivationGradOp grad) {
        replace(grad, Kernel::ActivationGrad,
                {lookup(grad.getPreactivation()), lookup(grad.getResultGrad())},
                {strAttr("kind", stringifyActivation(grad.getKind()))});
        return success();
      })
      .Case<DenseWeightGradOp>([&](DenseWeightGradOp grad) {
        flops += 2.0 * numElements(grad.getInput()) *
                 shapeOf(grad.getResultGrad()).back();
        replace(grad, Kernel::DenseWeightGrad,
                {lookup(grad.getInput()), lookup(grad.getResultGrad())},
                {boolAttr("transpose_w", grad.getTransposeWeight())});
        return success();
      })
      .Case<LayerNormGradOp>([&](LayerNormGradOp grad) {
        replace(grad, Kernel::LayerNormGrad,
                {lookup(grad.getInput()), none(), lookup(grad.getScale()),
                 lookup(grad.getResultGrad())},
                {attr("epsilon", grad.getEpsilonAttr())});
        return success();
      })
      .Case<TakePositionGradOp>([&](TakePositionGradOp grad) {
        replace(grad, Kernel::TakePositionGrad, {lookup(grad.getResultGrad())},
                {intAttr("index", grad.getIndex())});
        return success();
      })
      .Case<LinearMixGradOp>([&](LinearMixGradOp grad) {
        ArrayRef<int64_t> shape = shapeOf(grad.getInput());
        flops +=
            4.0 * shape[0] *
            (shape[1] * shape[2] * shape[2] + shape[1] * shape[1] * shape[2]);
        replace(grad, Kernel::LinearMixGrad,
                {lookup(grad.getInput()), lookup(grad.getSeqKernel()),
                 lookup(grad.getHiddenKernel()), lookup(grad.getResultGrad())});
        return success();
      })
      .Case<StructuredMixGradOp>([&](StructuredMixGradOp grad) {
        replace(grad, Kernel::StructuredMixGrad,
                {lookup(grad.getInput()), lookup(grad.getSeqKernel()),
                 lookup(grad.getHiddenKernel()), lookup(grad.getResultGrad())},
                {boolAttr("toeplitz", grad.getToeplitz())});
        return success();
      })
      .Case<AttentionGradOp>([&](AttentionGradOp grad) {
        ArrayRef<int64_t> shape = shapeOf(grad.getQuery());
        flops += 8.0 * shape[0] * shape[1] * shape[1] * shape[2];
        SmallVector<NamedAttribute> params = {
            intAttr("num_heads", grad.getNumHeads()),
            intAttr("head_dim", grad.getHeadDim()),
            intAttr("pad_id", grad.getPadId()),
            boolAttr("causal", grad.getCausal())};
        params.append(
            attentionDropout(grad.getDropoutRate(), grad.getDropoutStream()));
        replace(grad, Kernel::AttentionGrad,
                {lookup(grad.getQuery()), lookup(grad.getKey()),
                 lookup(grad.getValue()), lookup(grad.getIds()),
                 lookup(grad.getResultGrad()), optional(grad.getSeed()),
                 optional(grad.getStep())},
                params);
        return success();
      })
      .Case<ExpertsGradOp>([&](ExpertsGradOp grad) {
        ArrayRef<int64_t> w1 = shapeOf(grad.getW1());
        // The recomputed up-projection plus four backward products.
        flops += 10.0 * shapeOf(grad.getInput())[0] * w1[1] * w1[2];
        replace(
            grad, Kernel::ExpertsGrad,
            {lookup(grad.getInput()), lookup(grad.getTokens()),
             lookup(grad.getOffsets()), lookup(grad.getW1()),
             optional(grad.getB1()), lookup(grad.getW2()),
             lookup(grad.getResultGrad())},
            {strAttr("activation", stringifyActivation(grad.getActivation()))});
        return success();
      })
      .Case<RouteGradOp>([&](RouteGradOp grad) {
        replace(grad, Kernel::RouteGrad,
                {lookup(grad.getLogits()), lookup(grad.getTokens()),
                 lookup(grad.getOffsets()), lookup(grad.getGatesGrad())},
                {strAttr("routing", stringifyRouting(grad.getRouting()))});
        return success();
      })
      // The training step's noise and update.
      .Case<RandomScaleOp>([&](RandomScaleOp noise) {
        replace(noise, Kernel::RandomScale,
                {lookup(noise.getInput()), lookup(noise.getSeed()),
                 lookup(noise.getStep())},
                {strAttr("kind", stringifyNoiseKind(noise.getKind())),
                 attr("rate", noise.getRateAttr()),
                 attr("stream", noise.getStreamAttr())});
        return success();
      })
      .Case<DropExpertsOp>([&](DropExpertsOp drop) {
        replace(drop, Kernel::DropExperts,
                {lookup(drop.getInput()), lookup(drop.getSeed()),
                 lookup(drop.getStep())},
                {attr("rate", drop.getRateAttr()),
                 attr("stream", drop.getStreamAttr()),
                 boolAttr("gradient", drop.getGradient())});
        return success();
      })
      .Case<NoiseCounterOp>([&](NoiseCounterOp counter) {
        replace(counter, Kernel::NoiseCounter,
                {lookup(counter.getStep()), lookup(counter.getMicroStep())},
                {attr("micro_steps", counter.getMicroStepsAttr())});
        return success();
      })
      .Case<AccumulateGradientOp>(
          [&](AccumulateGradientOp op) { return lowerAccumulateGradient(op); })
      .Case<AdamWOp>([&](AdamWOp adamw) { return lowerAdamW(adamw); })
      .Case<MoeOp, SigmaMoeOp>([&](Operation *moe) {
        return moe->emitOpError("must be decomposed (mixer-decompose-moe) "
                                "before lowering to the runtime");
      })
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
  auto updated = func.getResultAttrOfType<StringAttr>(index, "mixer.update");
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
  if (stored("mixer.param") || stored("mixer.state"))
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
          "mixrt.flops",
          FloatAttr::get(Float64Type::get(&getContext()), lowering.flops));
    }
  }
};

} // namespace
