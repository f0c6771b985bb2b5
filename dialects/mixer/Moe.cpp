//===- Moe.cpp - mixture-of-experts op verifiers --------------------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

/// Number of tokens of a [..., D] activation.
static int64_t numTokens(Value value) {
  ArrayRef<int64_t> shape = shapeOf(value);
  int64_t n = 1;
  for (int64_t d : shape.drop_back())
    n *= d;
  return n;
}

/// Checks the routing attributes against N tokens and E experts and returns
/// the number of slots of the assignment table in `slots`.
static LogicalResult verifyRouting(Operation *op, Routing routing,
                                   int64_t tokens, int64_t experts,
                                   int64_t groups, int64_t capacity, int64_t k,
                                   int64_t &slots) {
  if (routing == Routing::sigmoid_topk) {
    if (k > experts)
      return op->emitOpError()
             << "k = " << k << " exceeds the " << experts << " experts";
    slots = tokens * k;
    return success();
  }
  if (tokens % groups != 0)
    return op->emitOpError() << "num_groups = " << groups
                             << " does not divide the " << tokens << " tokens";
  int64_t perGroup = tokens / groups;
  if (capacity < 1 || capacity > perGroup)
    return op->emitOpError()
           << "expert capacity " << capacity << " must be in [1, " << perGroup
           << "] (tokens per group)";
  if (routing == Routing::tokens_choose && k > experts)
    return op->emitOpError()
           << "k = " << k << " exceeds the " << experts << " experts";
  slots = experts * groups * capacity;
  return success();
}

/// Checks the shapes of the assignment table (tokens, gates, offsets).
static LogicalResult verifyAssignments(Operation *op, Value tokens, Value gates,
                                       Value offsets, int64_t slots,
                                       int64_t experts) {
  if (failed(expectShape(op, tokens, {slots}, "tokens")) ||
      failed(expectShape(op, gates, {slots}, "gates")))
    return failure();
  return expectShape(op, offsets, {experts + 1}, "offsets");
}

/// Shared verifier of ops routing [N, E] scores into an assignment table.
template <typename RouterOp>
static LogicalResult verifyRouter(RouterOp op, Value scores) {
  if (failed(expectRank(op, scores, 2, "router scores")))
    return failure();
  int64_t tokens = shapeOf(scores)[0], experts = shapeOf(scores)[1];
  int64_t slots = 0;
  if (failed(verifyRouting(op, op.getRouting(), tokens, experts,
                           op.getNumGroups(), op.getCapacity(), op.getK(),
                           slots)))
    return failure();
  return verifyAssignments(op, op.getTokens(), op.getGates(), op.getOffsets(),
                           slots, experts);
}

LogicalResult MoeOp::verify() {
  if (getRouting() == Routing::sigmoid_topk)
    return emitOpError("sigmoid_topk routing belongs to mixer.sigma_moe");
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (in.size() < 2)
    return emitOpError("input must have rank >= 2");
  int64_t width = in.back();
  if (failed(expectRank(*this, getRouterKernel(), 2, "router_kernel")))
    return failure();
  int64_t experts = shapeOf(getRouterKernel())[1];
  if (failed(expectShape(*this, getRouterKernel(), {width, experts},
                         "router_kernel")) ||
      failed(expectShape(*this, getRouterBias(), {experts}, "router_bias")) ||
      failed(expectRank(*this, getW1(), 3, "w1")))
    return failure();
  int64_t hidden = shapeOf(getW1())[2];
  if (failed(expectShape(*this, getW1(), {experts, width, hidden}, "w1")) ||
      failed(expectShape(*this, getB1(), {experts, hidden}, "b1")) ||
      failed(expectShape(*this, getW2(), {experts, hidden, width}, "w2")) ||
      failed(expectShape(*this, getB2(), {experts, width}, "b2")))
    return failure();
  int64_t slots = 0;
  if (failed(verifyRouting(*this, getRouting(), numTokens(getInput()), experts,
                           getNumGroups(), getCapacity(), getK(), slots)) ||
      failed(verifyNoise()))
    return failure();
  // The z-loss, then the load-balancing loss of tokens_choose.
  size_t routerLosses = getRouting() == Routing::tokens_choose ? 2 : 1;
  if (!getLosses().empty() && getLosses().size() != routerLosses)
    return emitOpError() << "returns no router losses or exactly "
                         << routerLosses << " for "
                         << stringifyRouting(getRouting()) << " routing, not "
                         << getLosses().size();
  return expectShape(*this, getResult(), in, "result");
}

LogicalResult MoeOp::verifyNoise() {
  if (bool(getJitterNoise()) != bool(getJitterStream()) ||
      bool(getExpertDropoutRate()) != bool(getExpertDropoutStream()))
    return emitOpError("a noise rate and its stream go together");
  bool noisy = getJitterNoise() || getExpertDropoutRate();
  if (bool(getSeed()) != noisy || bool(getStep()) != noisy)
    return emitOpError("takes the noise operands seed and step exactly when "
                       "it has jitter_noise or expert_dropout_rate");
  if (getJitterNoise() &&
      failed(expectNoiseRate(*this, getJitterNoise()->convertToDouble(),
                             "jitter_noise")))
    return failure();
  if (getExpertDropoutRate() &&
      failed(expectNoiseRate(*this, getExpertDropoutRate()->convertToDouble(),
                             "expert_dropout_rate")))
    return failure();
  if (getJitterStream() && getExpertDropoutStream() &&
      *getJitterStream() == *getExpertDropoutStream())
    return emitOpError("jitter and expert dropout need different streams");
  return success();
}

LogicalResult SigmaMoeOp::verify() {
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (in.size() < 2)
    return emitOpError("input must have rank >= 2");
  int64_t width = in.back();
  if (failed(expectRank(*this, getExpertSel(), 2, "expert_sel")) ||
      failed(expectRank(*this, getKeys(), 3, "keys")))
    return failure();
  int64_t experts = shapeOf(getExpertSel())[0];
  int64_t expertWidth = shapeOf(getKeys())[2];
  if (failed(
          expectShape(*this, getExpertSel(), {experts, width}, "expert_sel")) ||
      failed(expectShape(*this, getKeys(), {experts, width, expertWidth},
                         "keys")) ||
      failed(expectShape(*this, getValues(), {experts, expertWidth, width},
                         "values")))
    return failure();
  if (static_cast<int64_t>(getK()) > experts)
    return emitOpError() << "k = " << getK() << " exceeds the " << experts
                         << " experts";
  bool dropout = bool(getExpertDropoutRate());
  if (dropout != bool(getExpertDropoutStream()))
    return emitOpError("a noise rate and its stream go together");
  if (bool(getSeed()) != dropout || bool(getStep()) != dropout)
    return emitOpError("takes the noise operands seed and step exactly when "
                       "it has expert_dropout_rate");
  if (dropout &&
      failed(expectNoiseRate(*this, getExpertDropoutRate()->convertToDouble(),
                             "expert_dropout_rate")))
    return failure();
  if (getLosses().size() > 1)
    return emitOpError() << "returns at most one loss (the entropy "
                            "regulariser), not "
                         << getLosses().size();
  return expectShape(*this, getResult(), in, "result");
}

/// Router losses take the [tokens, experts] scores of a router.
template <typename LossOp>
static LogicalResult verifyRouterLoss(LossOp op, Value scores) {
  return expectRank(op, scores, 2, "router scores");
}

LogicalResult RouterZLossOp::verify() {
  return verifyRouterLoss(*this, getLogits());
}

LogicalResult EntropyRegularizerOp::verify() {
  if (getGroup() && *getGroup() != kWorldGroup)
    return emitOpError() << "group must be '" << kWorldGroup << "', got '"
                         << *getGroup() << "'";
  return verifyRouterLoss(*this, getLogits());
}

LogicalResult LoadBalancingLossOp::verify() {
  if (failed(verifyRouterLoss(*this, getProbs())))
    return failure();
  int64_t tokens = shapeOf(getProbs())[0], experts = shapeOf(getProbs())[1];
  if (tokens % static_cast<int64_t>(getNumGroups()) != 0)
    return emitOpError() << "num_groups = " << getNumGroups()
                         << " does not divide the " << tokens << " tokens";
  if (static_cast<int64_t>(getK()) > experts)
    return emitOpError() << "k = " << getK() << " exceeds the " << experts
                         << " experts";
  return success();
}

LogicalResult RouterLogitsBf16Op::verify() {
  if (failed(expectRank(*this, getProducts(), 2, "products")))
    return failure();
  ArrayRef<int64_t> shape = shapeOf(getProducts());
  if (failed(expectShape(*this, getBias(), {shape[1]}, "bias")))
    return failure();
  return expectShape(*this, getResult(), shape, "result");
}

LogicalResult SelectExpertsOp::verify() {
  if (getRouting() == Routing::sigmoid_topk)
    return emitOpError("sigmoid_topk routes from logits: use mixer.route");
  return verifyRouter(*this, getProbs());
}

LogicalResult RouteOp::verify() { return verifyRouter(*this, getLogits()); }

LogicalResult DispatchOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectRank(*this, getTokens(), 1, "tokens")))
    return failure();
  return expectShape(*this, getResult(),
                     {shapeOf(getTokens())[0], shapeOf(getInput())[1]},
                     "result");
}

LogicalResult mixer::graph::expectExpertLayout(Operation *op, Value offsets,
                                               bool capacity) {
  if (!capacity)
    return success();
  Operation *router = offsets.getDefiningOp();
  if (isa_and_nonnull<SelectExpertsOp>(router))
    return success();
  if (auto route = dyn_cast_or_null<RouteOp>(router);
      route && route.getRouting() != Routing::sigmoid_topk)
    return success();
  return op->emitOpError("has the capacity layout but its offsets do not come "
                         "from a capacity routing (mixer.select_experts, or "
                         "mixer.route with experts_choose or tokens_choose)");
}

LogicalResult ExpertsOp::verify() {
  if (failed(expectExpertLayout(*this, getOffsets(),
                                getLayout() == ExpertLayout::capacity)) ||
      failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectRank(*this, getW1(), 3, "w1")) ||
      failed(expectRank(*this, getOffsets(), 1, "offsets")))
    return failure();
  ArrayRef<int64_t> w1 = shapeOf(getW1());
  int64_t experts = w1[0], width = w1[1], hidden = w1[2];
  int64_t slots = shapeOf(getInput())[0];
  if (failed(expectShape(*this, getInput(), {slots, width}, "input")) ||
      failed(expectShape(*this, getTokens(), {slots}, "tokens")) ||
      failed(expectShape(*this, getOffsets(), {experts + 1}, "offsets")) ||
      failed(expectShape(*this, getW2(), {experts, hidden, width}, "w2")))
    return failure();
  if (getB1() && failed(expectShape(*this, getB1(), {experts, hidden}, "b1")))
    return failure();
  if (getB2() && failed(expectShape(*this, getB2(), {experts, width}, "b2")))
    return failure();
  return expectShape(*this, getResult(), {slots, width}, "result");
}

double ExpertsOp::getFlops() {
  ArrayRef<int64_t> w1 = shapeOf(getW1());
  return 4.0 * shapeOf(getInput())[0] * w1[1] * w1[2];
}

LogicalResult CombineOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectRank(*this, getResult(), 2, "result")))
    return failure();
  int64_t slots = shapeOf(getInput())[0];
  if (failed(expectShape(*this, getTokens(), {slots}, "tokens")) ||
      failed(expectShape(*this, getGates(), {slots}, "gates")))
    return failure();
  if (shapeOf(getResult())[1] != shapeOf(getInput())[1])
    return emitOpError("result width must equal the input width");
  return success();
}

//===----------------------------------------------------------------------===//
// Gradients: through the gates, with the assignment table held constant.
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::buildGradients(OpBuilder &builder,
                                         ValueRange resultGrads,
                                         SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(DispatchGradOp::create(
      builder, getLoc(), getInput().getType(), resultGrads[0], getTokens()));
  operandGrads.push_back(Value());
  return success();
}

LogicalResult CombineOp::buildGradients(OpBuilder &builder,
                                        ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  auto grads = CombineGradOp::create(builder, getLoc(), getInput().getType(),
                                     getGates().getType(), getInput(),
                                     getTokens(), getGates(), resultGrads[0]);
  operandGrads.append({grads.getInputGrad(), Value(), grads.getGatesGrad()});
  return success();
}

LogicalResult ExpertsOp::buildGradients(OpBuilder &builder,
                                        ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  ArrayRef<int64_t> w1 = shapeOf(getW1());
  auto f32 = [&](ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, builder.getF32Type());
  };
  auto grads = ExpertsGradOp::create(
      builder, getLoc(), getInput().getType(), getW1().getType(),
      f32({w1[0], w1[2]}), getW2().getType(), f32({w1[0], w1[1]}), getInput(),
      getTokens(), getOffsets(), getW1(), getB1(), getW2(), resultGrads[0],
      getActivationAttr(), getLayoutAttr());
  operandGrads.append(
      {grads.getInputGrad(), Value(), Value(), grads.getW1Grad()});
  if (getB1())
    operandGrads.push_back(grads.getB1Grad());
  operandGrads.push_back(grads.getW2Grad());
  if (getB2())
    operandGrads.push_back(grads.getB2Grad());
  return success();
}

LogicalResult
SelectExpertsOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                SmallVectorImpl<Value> &operandGrads) {
  Value gatesGrad = resultGrads[1];
  operandGrads.push_back(
      gatesGrad
          ? ScatterGateGradOp::create(builder, getLoc(), getProbs().getType(),
                                      getTokens(), getOffsets(), gatesGrad)
                .getResult()
          : Value());
  return success();
}

/// The roundings pass gradients straight through; the bias gets the sum over
/// tokens.
LogicalResult
RouterLogitsBf16Op::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                   SmallVectorImpl<Value> &operandGrads) {
  Value grad = resultGrads[0];
  operandGrads.push_back(grad);
  operandGrads.push_back(
      ReduceRowsOp::create(builder, getLoc(), getBias().getType(), grad));
  return success();
}

LogicalResult
RouterZLossOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                              SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(RouterZLossGradOp::create(
      builder, getLoc(), getLogits().getType(), getLogits(), resultGrads[0]));
  return success();
}

LogicalResult
EntropyRegularizerOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                     SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(EntropyRegularizerGradOp::create(
      builder, getLoc(), getLogits().getType(), getLogits(), resultGrads[0],
      getGroupAttr()));
  return success();
}

LogicalResult
LoadBalancingLossOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(LoadBalancingLossGradOp::create(
      builder, getLoc(), getProbs().getType(), getProbs(), resultGrads[0],
      getNumGroupsAttr(), getKAttr()));
  return success();
}

LogicalResult RouteOp::buildGradients(OpBuilder &builder,
                                      ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  Value gatesGrad = resultGrads[1];
  operandGrads.push_back(
      gatesGrad ? RouteGradOp::create(builder, getLoc(), getLogits().getType(),
                                      getLogits(), getTokens(), getOffsets(),
                                      gatesGrad, getRoutingAttr(),
                                      getRouterBf16Attr())
                      .getResult()
                : Value());
  return success();
}
