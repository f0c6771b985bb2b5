//===- DecomposeMoe.cpp - MoE into route, dispatch, experts, combine ------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERDECOMPOSEMOE
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

RankedTensorType tensorType(ArrayRef<int64_t> shape, Type element) {
  return RankedTensorType::get(shape, element);
}

/// The layer input flattened to [N, D] tokens.
Value flattenTokens(PatternRewriter &rewriter, Location loc, Value input) {
  auto type = cast<RankedTensorType>(input.getType());
  int64_t width = type.getShape().back();
  return ReshapeOp::create(
      rewriter, loc,
      tensorType({type.getNumElements() / width, width}, type.getElementType()),
      input);
}

/// Builds dispatch → experts → combine from an assignment table, whose slots
/// the routing lays out as `layout`, and reshapes the combined [N, D] rows
/// back to the layer's output type. `expertOutput`,
/// when given, rewrites the experts' [A, D] slot rows before they are
/// combined.
Value buildExpertPath(PatternRewriter &rewriter, Location loc, Value tokens2d,
                      Value slotTokens, Value gates, Value offsets, Value w1,
                      Value b1, Value w2, Value b2, Activation activation,
                      ExpertLayout layout, Type resultType,
                      llvm::function_ref<Value(Value)> expertOutput = nullptr) {
  auto rows = cast<RankedTensorType>(tokens2d.getType());
  int64_t slots = cast<RankedTensorType>(slotTokens.getType()).getShape()[0];
  auto slotRows =
      tensorType({slots, rows.getShape()[1]}, rows.getElementType());
  Value dispatched =
      DispatchOp::create(rewriter, loc, slotRows, tokens2d, slotTokens);
  Value expertOut = ExpertsOp::create(
      rewriter, loc, slotRows, dispatched, slotTokens, offsets, w1, b1, w2, b2,
      ActivationAttr::get(rewriter.getContext(), activation),
      ExpertLayoutAttr::get(rewriter.getContext(), layout));
  if (expertOutput)
    expertOut = expertOutput(expertOut);
  Value combined =
      CombineOp::create(rewriter, loc, rows, expertOut, slotTokens, gates);
  return ReshapeOp::create(rewriter, loc, resultType, combined);
}

/// Result types of a router: tokens i32[A], gates f32[A], offsets i32[E+1].
SmallVector<Type, 3> routerResultTypes(Builder &b, int64_t slots,
                                       int64_t experts) {
  return {tensorType({slots}, b.getI32Type()),
          tensorType({slots}, b.getF32Type()),
          tensorType({experts + 1}, b.getI32Type())};
}

struct DecomposeCapacityMoe : OpRewritePattern<MoeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MoeOp moe,
                                PatternRewriter &rewriter) const override {
    Location loc = moe.getLoc();
    Value tokens2d = flattenTokens(rewriter, loc, moe.getInput());
    int64_t numTokens =
        cast<RankedTensorType>(tokens2d.getType()).getShape()[0];
    int64_t experts =
        cast<RankedTensorType>(moe.getRouterBias().getType()).getShape()[0];
    auto scoreType = tensorType({numTokens, experts}, rewriter.getF32Type());

    // Training noise of the MoE layer, keyed by the layer's own streams.
    auto noise = [&](Value x, NoiseKind kind, FloatAttr rate,
                     IntegerAttr stream, int64_t blocks) -> Value {
      return RandomScaleOp::create(rewriter, loc, x, moe.getSeed(),
                                   moe.getStep(),
                                   NoiseKindAttr::get(getContext(), kind), rate,
                                   stream,
                                   blocks > 1
                                       ? rewriter.getI64IntegerAttr(blocks)
                                       : IntegerAttr());
    };
    // Jitter perturbs the routing decision only: the experts still see the
    // unperturbed tokens.
    Value routerInput = tokens2d;
    if (moe.getJitterNoise())
      routerInput = noise(tokens2d, NoiseKind::jitter, moe.getJitterNoiseAttr(),
                          moe.getJitterStreamAttr(), /*blocks=*/1);
    Value scores;
    if (moe.getRouterBf16()) {
      // bfloat16 operands, their products accumulated in float32, then the
      // logits rounded step by step (docs/parameters.md).
      Value products = DenseOp::create(
          rewriter, loc, scoreType,
          RoundBf16Op::create(rewriter, loc, routerInput),
          RoundBf16Op::create(rewriter, loc, moe.getRouterKernel()), Value());
      scores = RouterLogitsBf16Op::create(rewriter, loc, scoreType, products,
                                          moe.getRouterBias());
    } else {
      scores = DenseOp::create(rewriter, loc, scoreType, routerInput,
                               moe.getRouterKernel(), moe.getRouterBias());
    }
    // The router losses of a training step: the z-loss of the logits as the
    // router computed them, the load balance of its probabilities.
    SmallVector<Value> losses;
    if (!moe.getLosses().empty())
      losses.push_back(RouterZLossOp::create(rewriter, loc, scores));
    auto softmax = SoftmaxOp::create(rewriter, loc, scores);
    softmax.setBf16(moe.getRouterBf16());
    scores = softmax;
    if (moe.getLosses().size() == 2)
      losses.push_back(LoadBalancingLossOp::create(
          rewriter, loc, scores, moe.getNumGroupsAttr(), moe.getKAttr()));

    int64_t slots = experts * moe.getNumGroups() * moe.getCapacity();
    auto select = SelectExpertsOp::create(
        rewriter, loc, routerResultTypes(rewriter, slots, experts), scores,
        moe.getRoutingAttr(), moe.getNumGroupsAttr(), moe.getCapacityAttr(),
        moe.getKAttr(), moe.getBatchPrioritizedAttr(), moe.getRouterBf16Attr());
    // Expert dropout acts on each expert's output rows, as the reference's
    // per-expert feed-forward does, before the gates mix them. The slots are
    // ordered by expert, then group: on a mesh a rank's are its groups'
    // share of every expert's.
    auto expertDropout = [&](Value rows) {
      return noise(rows, NoiseKind::dropout, moe.getExpertDropoutRateAttr(),
                   moe.getExpertDropoutStreamAttr(), experts);
    };
    Value result = buildExpertPath(
        rewriter, loc, tokens2d, select.getTokens(), select.getGates(),
        select.getOffsets(), moe.getW1(), moe.getB1(), moe.getW2(), moe.getB2(),
        Activation::gelu, ExpertLayout::capacity, moe.getResult().getType(),
        moe.getExpertDropoutRate()
            ? llvm::function_ref<Value(Value)>(expertDropout)
            : nullptr);
    losses.insert(losses.begin(), result);
    rewriter.replaceOp(moe, losses);
    return success();
  }
};

struct DecomposeSigmaMoe : OpRewritePattern<SigmaMoeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SigmaMoeOp moe,
                                PatternRewriter &rewriter) const override {
    Location loc = moe.getLoc();
    Value tokens2d = flattenTokens(rewriter, loc, moe.getInput());
    int64_t numTokens =
        cast<RankedTensorType>(tokens2d.getType()).getShape()[0];
    int64_t experts =
        cast<RankedTensorType>(moe.getExpertSel().getType()).getShape()[0];
    auto logitsType = tensorType({numTokens, experts}, rewriter.getF32Type());
    auto dense = DenseOp::create(rewriter, loc, logitsType, tokens2d,
                                 moe.getExpertSel(), Value());
    dense.setTransposeWeight(true);
    Value logits = dense;
    // The regulariser sees the raw logits, before any expert is dropped.
    SmallVector<Value> results = {Value()};
    if (!moe.getLosses().empty())
      results.push_back(EntropyRegularizerOp::create(rewriter, loc, logits));
    if (moe.getExpertDropoutRate())
      logits =
          DropExpertsOp::create(rewriter, loc, logits, moe.getSeed(),
                                moe.getStep(), moe.getExpertDropoutRateAttr(),
                                moe.getExpertDropoutStreamAttr(), UnitAttr());

    auto route = RouteOp::create(
        rewriter, loc,
        routerResultTypes(rewriter, numTokens * moe.getK(), experts), logits,
        RoutingAttr::get(getContext(), Routing::sigmoid_topk),
        rewriter.getI64IntegerAttr(1), rewriter.getI64IntegerAttr(0),
        moe.getKAttr(), UnitAttr(), UnitAttr());
    results[0] = buildExpertPath(
        rewriter, loc, tokens2d, route.getTokens(), route.getGates(),
        route.getOffsets(), moe.getKeys(), Value(), moe.getValues(), Value(),
        Activation::relu, ExpertLayout::grouped, moe.getResult().getType());
    rewriter.replaceOp(moe, results);
    return success();
  }
};

struct DecomposeMoePass : mixer::impl::MixerDecomposeMoeBase<DecomposeMoePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DecomposeCapacityMoe, DecomposeSigmaMoe>(&getContext());
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(
            applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      getOperation().emitWarning("MoE decomposition did not converge");
  }
};

} // namespace
