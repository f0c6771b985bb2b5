//===- KernelTableCollectives.cpp - Collective steps on the CPU -----------===//
//
// The factories of the CPU kernel table for the Collective family of
// Kernels.def: the exchanges between the ranks of a parallel plan, through
// the communicator of the step's group, and the block permutation around
// them. Rows move as bytes, whatever their element type.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/ExpertTiles.h"
#include "runtime/cpu/Kernels.h"

#include <cstring>
#include <string>
#include <vector>

namespace mixer::cpu {

comm::Communicator *groupOf(StepContext &c, const Groups &groups) {
  const std::string &name = c.stringAttr("group");
  comm::Communicator *group = groups.find(name);
  if (!group)
    c.fail("collective over group '" + name +
           "' but the executor has no communicator");
  return group;
}

void throwIfFailed(const Status &status) {
  if (!status)
    throw KernelError{status.message()};
}

namespace {

/// `arg` holds rows of 4-byte elements (F32 or I32), at least one dimension.
bool rows(StepContext &c, const Arg &arg) {
  return c.check(!arg.value->shape.empty() && (arg.value->dtype == DType::F32 ||
                                               arg.value->dtype == DType::I32),
                 arg.role + " must be F32 or I32 rows, got " +
                     exec::describe(arg.value->shape, arg.value->dtype));
}

/// The bytes of one row of `arg` (4-byte elements).
size_t rowBytes(const Arg &arg) {
  size_t width = sizeof(float);
  for (size_t i = 1; i < arg.value->shape.size(); ++i)
    width *= arg.value->shape[i];
  return width;
}

/// `result` has the rows of `input`'s width and type.
bool sameRows(StepContext &c, const Arg &input, const Arg &result) {
  std::vector<int64_t> shape = input.value->shape;
  shape[0] = result.value->shape.empty() ? 0 : result.value->shape[0];
  return c.shape(result, input.value->dtype, shape);
}

Expected<StepFunction> prepareAllToAll(StepContext &c, const Groups &groups) {
  const Arg &x = c.in(0), &y = c.out(0);
  comm::Communicator *group = groupOf(c, groups);
  if (!group || !rows(c, x) || !c.shape(y, x.value->dtype, x.value->shape) ||
      !c.check(x.dim(0) % group->size() == 0,
               "the " + std::to_string(x.dim(0)) + " rows do not divide into " +
                   std::to_string(group->size()) + " ranks"))
    return c.takeError();
  size_t bytesPerPeer = x.value->bytes / group->size();
  std::string label = c.label();
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    throwIfFailed(group->allToAll(v[a], v[o], bytesPerPeer, label));
  });
}

Expected<StepFunction> prepareAllToAllV(StepContext &c, const Groups &groups) {
  const Arg &x = c.in(0), &offsets = c.in(1), &y = c.out(0),
            &received = c.out(1);
  comm::Communicator *group = groupOf(c, groups);
  if (!group || !rows(c, x) || !c.rank(offsets, DType::I32, 1) ||
      !sameRows(c, x, y) ||
      !c.shape(received, DType::I32, offsets.value->shape))
    return c.takeError();
  int64_t peers = group->size(), blocks = offsets.dim(0) - 1;
  if (!c.check(blocks >= peers && blocks % peers == 0,
               "the " + std::to_string(blocks) +
                   " blocks of the offsets do not divide into " +
                   std::to_string(peers) + " ranks"))
    return c.takeError();
  int64_t perPeer = blocks / peers, sendRows = x.dim(0), capacity = y.dim(0);
  size_t width = rowBytes(x);
  std::string label = c.label();
  return StepFunction([=, a = x.slot, f = offsets.slot, o = y.slot,
                       r = received.slot](ValuePointers v) {
    const int32_t *off = i32(v[f]);
    int32_t *got = i32(v[r]);
    detail::checkOffsets(off, blocks, sendRows, "all_to_all_v", "offset");
    // Each peer's block sizes first, then its rows.
    std::vector<int32_t> sizes(blocks), receivedSizes(blocks);
    for (int64_t i = 0; i < blocks; ++i)
      sizes[i] = off[i + 1] - off[i];
    throwIfFailed(group->allToAll(sizes.data(), receivedSizes.data(),
                                  perPeer * sizeof(int32_t), label));
    std::vector<int64_t> sendCounts(peers), receivedCounts(peers);
    for (int64_t p = 0; p < peers; ++p)
      sendCounts[p] = off[(p + 1) * perPeer] - off[p * perPeer];
    const uint8_t *send = static_cast<const uint8_t *>(v[a]) + off[0] * width;
    throwIfFailed(group->allToAllV(send, sendCounts.data(), v[o], capacity,
                                   receivedCounts.data(), width, label));
    got[0] = 0;
    for (int64_t i = 0; i < blocks; ++i)
      got[i + 1] = got[i] + receivedSizes[i];
  });
}

Expected<StepFunction> prepareAllReduce(StepContext &c, const Groups &groups) {
  const Arg &x = c.in(0), &y = c.out(0);
  comm::Communicator *group = groupOf(c, groups);
  if (!group || !c.minRank(x, DType::F32, 0) ||
      !c.shape(y, DType::F32, x.value->shape))
    return c.takeError();
  size_t count = x.value->numel;
  std::string label = c.label();
  return StepFunction([=, a = x.slot, o = y.slot](ValuePointers v) {
    throwIfFailed(group->allReduceSum(v[a], v[o], count, DType::F32, label));
  });
}

Expected<StepFunction> preparePermuteBlocks(StepContext &c) {
  const Arg &x = c.in(0), &offsets = c.in(1), &y = c.out(0),
            &permuted = c.out(1), &grouped = c.out(2);
  int64_t outer = c.intAttr("outer"), inner = c.intAttr("inner");
  if (!c.check(outer >= 1 && inner >= 1, "outer and inner must be positive") ||
      !rows(c, x) || !c.shape(y, x.value->dtype, x.value->shape) ||
      !c.shape(offsets, DType::I32, {outer * inner + 1}) ||
      !c.shape(permuted, DType::I32, {outer * inner + 1}) ||
      !c.shape(grouped, DType::I32, {inner + 1}))
    return c.takeError();
  int64_t numRows = x.dim(0);
  size_t width = rowBytes(x);
  return StepFunction([=, a = x.slot, f = offsets.slot, o = y.slot,
                       p = permuted.slot, g = grouped.slot](ValuePointers v) {
    const int32_t *off = i32(v[f]);
    detail::checkOffsets(off, outer * inner, numRows, "permute_blocks",
                         "offset");
    permuteBlocks(static_cast<const uint8_t *>(v[a]), off, outer, inner,
                  numRows, width, static_cast<uint8_t *>(v[o]), i32(v[p]),
                  i32(v[g]));
  });
}

} // namespace

std::vector<KernelEntry> collectiveKernels() {
  return {
      {Kernel::AllToAll, nullptr, prepareAllToAll},
      {Kernel::AllToAllV, nullptr, prepareAllToAllV},
      {Kernel::AllReduce, nullptr, prepareAllReduce},
      {Kernel::PermuteBlocks, preparePermuteBlocks},
  };
}

} // namespace mixer::cpu
