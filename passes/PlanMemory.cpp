//===- PlanMemory.cpp - liveness-based arena placement --------------------===//

#include "passes/Passes.h"
#include "runtime/support/PlanFormat.h"

#include "mlir/IR/BuiltinOps.h"

#include <algorithm>

namespace mixer {
#define GEN_PASS_DEF_MIXRTPLANMEMORY
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using mixer::rt::AllocOp;
using mixer::rt::ViewOp;

namespace {

int64_t alignUp(int64_t bytes) {
  return (bytes + mixer::kArenaAlignment - 1) / mixer::kArenaAlignment *
         mixer::kArenaAlignment;
}

/// One arena buffer: its byte size and the program positions it is live in.
struct Interval {
  AllocOp alloc;
  int64_t bytes = 0;
  int64_t first = 0;
  int64_t last = 0;
  int64_t offset = 0;
};

/// The alloc a buffer value aliases (through views), or null.
AllocOp baseAlloc(Value value) {
  while (auto view = value.getDefiningOp<ViewOp>())
    value = view.getSource();
  return value.getDefiningOp<AllocOp>();
}

/// Computes live intervals in program order of the function's only block.
SmallVector<Interval> liveIntervals(func::FuncOp func) {
  SmallVector<Interval> intervals;
  DenseMap<Operation *, size_t> indexOf;
  int64_t position = 0;
  int64_t end =
      static_cast<int64_t>(func.getBody().front().getOperations().size());
  for (Operation &op : func.getBody().front()) {
    if (auto alloc = dyn_cast<AllocOp>(op)) {
      auto type = cast<MemRefType>(alloc.getType());
      int64_t bytes =
          alignUp(type.getNumElements() * type.getElementTypeBitWidth() / 8);
      indexOf[alloc] = intervals.size();
      intervals.push_back({alloc, bytes, position, position, 0});
    }
    // Returned buffers stay live to the end so outputs survive the run.
    int64_t usePosition = isa<func::ReturnOp>(op) ? end : position;
    for (Value operand : op.getOperands())
      if (AllocOp base = baseAlloc(operand))
        intervals[indexOf.lookup(base)].last =
            std::max(intervals[indexOf.lookup(base)].last, usePosition);
    ++position;
  }
  return intervals;
}

/// Greedy placement: largest buffers first, each at the lowest aligned offset
/// that does not collide with an already placed buffer live at the same time.
int64_t placeIntervals(SmallVectorImpl<Interval> &intervals) {
  SmallVector<Interval *> order;
  for (Interval &interval : intervals)
    order.push_back(&interval);
  llvm::stable_sort(order, [](const Interval *a, const Interval *b) {
    return a->bytes > b->bytes;
  });
  SmallVector<Interval *> placed;
  int64_t peak = 0;
  for (Interval *interval : order) {
    SmallVector<std::pair<int64_t, int64_t>> busy;
    for (Interval *other : placed)
      if (other->first <= interval->last && interval->first <= other->last)
        busy.push_back({other->offset, other->offset + other->bytes});
    llvm::sort(busy);
    int64_t offset = 0;
    for (auto [begin, finish] : busy) {
      if (offset + interval->bytes <= begin)
        break;
      offset = std::max(offset, finish);
    }
    interval->offset = offset;
    peak = std::max(peak, offset + interval->bytes);
    placed.push_back(interval);
  }
  return peak;
}

struct PlanMemoryPass : mixer::impl::MixrtPlanMemoryBase<PlanMemoryPass> {
  void runOnOperation() override {
    Builder builder(&getContext());
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (!func.getBody().hasOneBlock()) {
        func.emitError("memory planning needs a single-block function");
        return signalPassFailure();
      }
      SmallVector<Interval> intervals = liveIntervals(func);
      int64_t peak = placeIntervals(intervals);
      for (Interval &interval : intervals)
        interval.alloc.setOffsetAttr(
            builder.getI64IntegerAttr(interval.offset));
      func->setAttr(mixer::rt::kArenaBytesAttr,
                    builder.getI64IntegerAttr(peak));
    }
  }
};

} // namespace
