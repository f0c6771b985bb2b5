//===- PlanMemory.cpp - liveness-based arena placement --------------------===//

#include "passes/Passes.h"
#include "runtime/support/PlanFormat.h"

#include "mlir/IR/BuiltinOps.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

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

/// What a run of placed buffers, in ascending (offset, end) order, tells the
/// first-fit search: their first and last offsets and largest end, an upper
/// bound on the gaps between them (an offset minus the largest end before
/// it), and the bounds of their live positions.
struct RunSummary {
  int64_t begin, lastBegin, finish, gap;
  int64_t minFirst, maxFirst, minLast, maxLast;

  /// The run `a` then `b`: b's gaps only shrink when a's ends come before
  /// them.
  static RunSummary join(const RunSummary &a, const RunSummary &b) {
    return {a.begin,
            b.lastBegin,
            std::max(a.finish, b.finish),
            std::max({a.gap, b.gap, b.begin - a.finish}),
            std::min(a.minFirst, b.minFirst),
            std::max(a.maxFirst, b.maxFirst),
            std::min(a.minLast, b.minLast),
            std::max(a.maxLast, b.maxLast)};
  }
};

/// The placed buffers ordered by (offset, end) in a treap whose nodes sum up
/// their subtrees, so that the first-fit search skips a whole run of buffers
/// it would step over one by one (all live with the candidate, no gap that
/// holds it) or that cannot matter (none live with it, or none reaching above
/// it). The search stays exact: the same offsets as a scan of every placed
/// buffer.
class PlacedBuffers {
public:
  explicit PlacedBuffers(size_t capacity) { nodes.reserve(capacity); }

  /// The lowest offset at which `bytes` fit among the placed buffers live
  /// somewhere in [first, last]: the walk over those buffers sorted by
  /// (offset, end) that moves the candidate past each one it overlaps and
  /// stops before the first one that begins at or after the candidate's end.
  int64_t firstFit(int64_t first, int64_t last, int64_t bytes) const {
    int64_t offset = 0;
    walk(root, first, last, bytes, offset);
    return offset;
  }

  /// Adds the buffer [begin, finish) live in [first, last].
  void insert(int64_t begin, int64_t finish, int64_t first, int64_t last) {
    int node = static_cast<int>(nodes.size());
    RunSummary self{begin, begin, finish, kNoGap, first, first, last, last};
    nodes.push_back({self, self, priorityOf(node), -1, -1});
    auto [below, above] = split(root, begin, finish);
    root = merge(merge(below, node), above);
  }

private:
  static constexpr int64_t kNoGap = std::numeric_limits<int64_t>::min();

  struct Node {
    /// The node's own buffer, and the summary of its subtree.
    RunSummary self, run;
    uint64_t priority;
    int left, right;
  };

  /// A fixed pseudo-random priority (splitmix64): the same tree every run.
  static uint64_t priorityOf(int node) {
    uint64_t z = (static_cast<uint64_t>(node) + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  void update(int node) {
    Node &n = nodes[node];
    n.run = n.self;
    if (n.left >= 0)
      n.run = RunSummary::join(nodes[n.left].run, n.run);
    if (n.right >= 0)
      n.run = RunSummary::join(n.run, nodes[n.right].run);
  }

  /// Splits `tree` into the buffers ordered before (begin, finish) and the
  /// others.
  std::pair<int, int> split(int tree, int64_t begin, int64_t finish) {
    if (tree < 0)
      return {-1, -1};
    const RunSummary &self = nodes[tree].self;
    if (std::make_pair(self.begin, self.finish) <
        std::make_pair(begin, finish)) {
      auto [below, above] = split(nodes[tree].right, begin, finish);
      nodes[tree].right = below;
      update(tree);
      return {tree, above};
    }
    auto [below, above] = split(nodes[tree].left, begin, finish);
    nodes[tree].left = above;
    update(tree);
    return {below, tree};
  }

  int merge(int a, int b) {
    if (a < 0 || b < 0)
      return a < 0 ? b : a;
    if (nodes[a].priority > nodes[b].priority) {
      nodes[a].right = merge(nodes[a].right, b);
      update(a);
      return a;
    }
    nodes[b].left = merge(a, nodes[b].left);
    update(b);
    return b;
  }

  /// Moves `offset` past the buffers of `tree` live in [first, last] that
  /// `bytes` at `offset` would overlap; true once the search may stop.
  bool walk(int tree, int64_t first, int64_t last, int64_t bytes,
            int64_t &offset) const {
    if (tree < 0)
      return false;
    const Node &n = nodes[tree];
    const RunSummary &run = n.run;
    // Every buffer from here on begins at or after the candidate's end.
    if (offset + bytes <= run.begin)
      return true;
    // None of them is live with the candidate, or none would move it: each
    // ends at or below it and begins below its end.
    if (run.minFirst > last || run.maxLast < first ||
        (run.finish <= offset && run.lastBegin < offset + bytes))
      return false;
    // All of them are live with it, and it cannot stop among them: no gap
    // between them holds it, or all begin below its end.
    if (run.maxFirst <= last && run.minLast >= first &&
        (run.gap < bytes || run.lastBegin < offset + bytes)) {
      offset = std::max(offset, run.finish);
      return false;
    }
    if (walk(n.left, first, last, bytes, offset))
      return true;
    if (offset + bytes <= n.self.begin)
      return true;
    if (n.self.minFirst <= last && first <= n.self.maxLast)
      offset = std::max(offset, n.self.finish);
    return walk(n.right, first, last, bytes, offset);
  }

  std::vector<Node> nodes;
  int root = -1;
};

/// Greedy placement: largest buffers first, each at the lowest aligned offset
/// that does not collide with an already placed buffer live at the same time.
int64_t placeIntervals(SmallVectorImpl<Interval> &intervals) {
  SmallVector<Interval *> order;
  for (Interval &interval : intervals)
    order.push_back(&interval);
  llvm::stable_sort(order, [](const Interval *a, const Interval *b) {
    return a->bytes > b->bytes;
  });
  PlacedBuffers placed(order.size());
  int64_t peak = 0;
  for (Interval *interval : order) {
    int64_t offset =
        placed.firstFit(interval->first, interval->last, interval->bytes);
    interval->offset = offset;
    peak = std::max(peak, offset + interval->bytes);
    placed.insert(offset, offset + interval->bytes, interval->first,
                  interval->last);
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
