//===- PartitionExperts.cpp - MoE experts sharded over the ep ranks -------===//
//
// The per-rank program of a dp × ep mesh keeps E / ep experts per MoE layer:
// rank j of an expert group holds experts [j·E_l, (j+1)·E_l). A layer's slot
// rows are ordered by expert (dialects/mixer/MoeOps.td), so the rows of rank
// j's experts are one contiguous range: they go there with one all-to-all,
// are reordered from (sender, local expert) to (local expert, sender) for the
// experts, and go back the same way reversed.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "dialects/mixer/VerifyUtils.h"

#include "mlir/IR/Builders.h"

#include <algorithm>

namespace mixer {
#define GEN_PASS_DEF_MIXERPARTITIONEXPERTS
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// How the slot rows of a layer travel: equal blocks (capacity routings) or
/// ragged blocks into a worst-case buffer (σ-MoE), whose rows it returns.
struct Layout {
  bool ragged = false;
  int64_t receiveRows = 0;
};

/// The layout of `experts`, from the routing that made its offsets.
FailureOr<Layout> layoutOf(ExpertsOp experts, int64_t ep,
                           int64_t localExperts) {
  int64_t slots = shapeOf(experts.getInput())[0];
  Operation *router = experts.getOffsets().getDefiningOp();
  if (isa_and_nonnull<SelectExpertsOp>(router))
    return Layout{false, slots};
  auto route = dyn_cast_or_null<RouteOp>(router);
  if (!route)
    return experts.emitOpError(
        "has offsets from no routing: its experts cannot be sharded");
  if (route.getRouting() != Routing::sigmoid_topk)
    return Layout{false, slots};
  // A sender's token takes at most min(k, E_l) of one rank's experts.
  int64_t k = route.getK();
  return Layout{true, ep * (slots / k) * std::min(k, localExperts)};
}

/// Shards the expert parameters of `experts` and moves its rows to the ranks
/// that own their experts and back.
LogicalResult partition(ExpertsOp experts, func::FuncOp func, int64_t ep) {
  int64_t numExperts = shapeOf(experts.getW1())[0];
  if (numExperts % ep != 0)
    return experts.emitOpError()
           << "has " << numExperts << " experts, which do not divide into "
           << ep << " expert shards";
  int64_t localExperts = numExperts / ep;
  FailureOr<Layout> layout = layoutOf(experts, ep, localExperts);
  if (failed(layout))
    return failure();

  // The parameters become this rank's slices of axis 0.
  MLIRContext *context = experts.getContext();
  Builder b(context);
  auto shard = b.getDictionaryAttr(
      {b.getNamedAttr("axis", b.getI64IntegerAttr(0)),
       b.getNamedAttr("mesh_axis", b.getStringAttr(kExpertGroup))});
  for (Value weight :
       {experts.getW1(), experts.getB1(), experts.getW2(), experts.getB2()}) {
    if (!weight)
      continue;
    auto arg = dyn_cast<BlockArgument>(weight);
    if (!arg || arg.getOwner() != &func.getBody().front() ||
        !func.getArgAttr(arg.getArgNumber(), kParamAttr) || !arg.hasOneUse())
      return experts.emitOpError(
          "expert parameters must be parameters of the function that only "
          "this layer uses");
    SmallVector<int64_t> shape(shapeOf(arg));
    shape[0] = localExperts;
    arg.setType(RankedTensorType::get(shape, b.getF32Type()));
    func.setArgAttr(arg.getArgNumber(), kShardAttr, shard);
  }

  OpBuilder builder(experts);
  Location loc = experts.getLoc();
  StringAttr group = builder.getStringAttr(kExpertGroup);
  Value offsets = experts.getOffsets();
  auto rowsType = [&](Value rows, int64_t count) {
    auto type = cast<RankedTensorType>(rows.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = count;
    return RankedTensorType::get(shape, type.getElementType());
  };
  auto i32 = [&](int64_t size) {
    return RankedTensorType::get({size}, builder.getI32Type());
  };
  // Rows to the ranks of their experts: blocks (sender, local expert). With
  // equal blocks every rank's routing offsets also describe what it
  // receives.
  Value receivedOffsets = offsets;
  auto send = [&](Value rows) -> Value {
    if (!layout->ragged)
      return AllToAllOp::create(builder, loc, rows, group);
    auto exchange =
        AllToAllVOp::create(builder, loc, rowsType(rows, layout->receiveRows),
                            offsets.getType(), rows, offsets, group);
    receivedOffsets = exchange.getReceivedOffsets();
    return exchange.getResult();
  };
  auto permute = [&](Value rows, Value blockOffsets, int64_t outer,
                     int64_t inner) {
    return PermuteBlocksOp::create(
        builder, loc, rows.getType(), blockOffsets.getType(), i32(inner + 1),
        rows, blockOffsets, builder.getI64IntegerAttr(outer),
        builder.getI64IntegerAttr(inner));
  };
  Value rows = send(experts.getInput());
  Value tokens = send(experts.getTokens());
  auto byExpert = permute(rows, receivedOffsets, ep, localExperts);
  Value expertTokens =
      permute(tokens, receivedOffsets, ep, localExperts).getResult();
  // The local experts read the offsets permute_blocks forms at run time, not
  // a routing's: the grouped layout, whatever the routing was.
  auto local = ExpertsOp::create(
      builder, loc, byExpert.getResult().getType(), byExpert.getResult(),
      expertTokens, byExpert.getGroupOffsets(), experts.getW1(),
      experts.getB1(), experts.getW2(), experts.getB2(),
      experts.getActivationAttr(),
      ExpertLayoutAttr::get(context, ExpertLayout::grouped));
  // And back: blocks (local expert, sender) to (sender, local expert), then
  // each block to the rank it came from.
  Value bySender = permute(local.getResult(), byExpert.getPermutedOffsets(),
                           localExperts, ep)
                       .getResult();
  Value back =
      layout->ragged
          ? AllToAllVOp::create(builder, loc, experts.getResult().getType(),
                                offsets.getType(), bySender, receivedOffsets,
                                group)
                .getResult()
          : AllToAllOp::create(builder, loc, bySender, group).getResult();
  experts.getResult().replaceAllUsesWith(back);
  experts.erase();
  return success();
}

struct PartitionExpertsPass
    : mixer::impl::MixerPartitionExpertsBase<PartitionExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (dp < 1 || ep < 1) {
      module.emitError() << "the mesh needs dp >= 1 and ep >= 1, got dp " << dp
                         << ", ep " << ep;
      return signalPassFailure();
    }
    if (dp == 1 && ep == 1)
      return;
    Builder b(&getContext());
    module->setAttr(
        kMeshAttr,
        b.getDictionaryAttr({b.getNamedAttr("dp", b.getI64IntegerAttr(dp)),
                             b.getNamedAttr("ep", b.getI64IntegerAttr(ep))}));
    // σ-MoE's entropy regulariser is a mean over the whole batch: every
    // rank's tokens.
    module.walk([&](EntropyRegularizerOp regularizer) {
      regularizer.setGroup(kWorldGroup);
    });
    if (ep == 1)
      return;
    for (auto func : module.getOps<func::FuncOp>()) {
      SmallVector<ExpertsOp> layers(func.getOps<ExpertsOp>());
      for (ExpertsOp experts : layers)
        if (failed(partition(experts, func, ep)))
          return signalPassFailure();
      func.setType(FunctionType::get(&getContext(),
                                     func.getBody().getArgumentTypes(),
                                     func.getResultTypes()));
    }
  }
};

} // namespace
