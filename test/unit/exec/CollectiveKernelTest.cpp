//===- CollectiveKernelTest.cpp - Collective steps on the CPU -------------===//
//
// Runs plans of one collective step on every rank of an in-process world of 2
// and 4 ranks and compares each rank's result with what a single process
// computes from every rank's inputs by plain loops.
//
//===----------------------------------------------------------------------===//

#include "PlanBuilder.h"

#include "runtime/comm/InProcess.h"
#include "runtime/cpu/Executor.h"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

namespace mixer::exec::test {
namespace {

constexpr int64_t kWidth = 3;

/// Rank `rank`'s rows [rows, kWidth]: distinct values that name rank, row
/// and column.
std::vector<float> rankRows(int rank, int64_t rows) {
  std::vector<float> values(rows * kWidth);
  for (int64_t i = 0; i < rows * kWidth; ++i)
    values[i] = 1000.0f * rank + static_cast<float>(i) + 0.25f;
  return values;
}

io::HostTensor floatTensor(const std::string &name,
                           const std::vector<int64_t> &shape,
                           const std::vector<float> &values) {
  io::HostTensor tensor = randomTensor(name, shape, 0);
  std::copy(values.begin(), values.end(), tensor.as<float>());
  return tensor;
}

/// Every rank's outputs, by rank, after running `plan` on `ranks` threads
/// with the inputs `inputsOf(rank)`.
std::vector<std::vector<io::HostTensor>>
runOnRanks(const PlanBuilder &b, int ranks,
           const std::function<std::vector<io::HostTensor>(int)> &inputsOf) {
  Expected<Plan> plan = Plan::parse(b.plan.dump(), "collective.mxa");
  EXPECT_TRUE(plan.ok()) << plan.message();
  std::vector<std::vector<io::HostTensor>> outputs(ranks);
  std::mutex failures;
  std::vector<std::string> messages;
  comm::runInProcess(ranks, comm::Options(), [&](comm::Communicator &world) {
    auto fail = [&](const Status &status) {
      std::lock_guard<std::mutex> lock(failures);
      messages.push_back(status.message());
    };
    Expected<cpu::Executor> executor = cpu::Executor::create(*plan, &world);
    if (!executor)
      return fail(executor.takeStatus());
    Status status = executor->bindParams({}, "weights");
    if (status)
      status = executor->bindInputs(inputsOf(world.rank()), "inputs");
    if (status)
      status = executor->run();
    if (!status)
      return fail(status);
    outputs[world.rank()] = executor->outputs();
  });
  for (const std::string &message : messages)
    ADD_FAILURE() << message;
  return outputs;
}

/// A plan on a 1 × `ranks` mesh.
PlanBuilder meshPlan(int ranks) {
  PlanBuilder b(/*batch=*/ranks);
  b.plan["mesh"] = {{"dp", 1}, {"ep", ranks}, {"world", ranks}};
  return b;
}

class CollectiveKernelTest : public ::testing::TestWithParam<int> {};

TEST_P(CollectiveKernelTest, AllToAllExchangesEqualBlocks) {
  int ranks = GetParam();
  int64_t perPeer = 2, rows = ranks * perPeer;
  PlanBuilder b = meshPlan(ranks);
  int64_t x = b.input("x", {rows, kWidth}, false, "F32");
  int64_t y = b.arena({rows, kWidth});
  b.step("all_to_all", {x}, {y}, {{"group", "ep"}});
  b.output("y", y);
  auto outputs = runOnRanks(b, ranks, [&](int rank) {
    return std::vector<io::HostTensor>{
        floatTensor("x", {rows, kWidth}, rankRows(rank, rows))};
  });
  for (int r = 0; r < ranks; ++r) {
    ASSERT_EQ(outputs[r].size(), 1u);
    const float *got = outputs[r][0].as<float>();
    // Block s of rank r's result is block r of rank s's input.
    for (int s = 0; s < ranks; ++s) {
      std::vector<float> sent = rankRows(s, rows);
      for (int64_t i = 0; i < perPeer * kWidth; ++i)
        EXPECT_EQ(got[s * perPeer * kWidth + i], sent[r * perPeer * kWidth + i])
            << "rank " << r << " block " << s;
    }
  }
}

TEST_P(CollectiveKernelTest, AllToAllVExchangesRaggedBlocks) {
  int ranks = GetParam();
  int64_t perPeer = 2, blocks = ranks * perPeer, rows = 3 * blocks,
          capacity = 3 * blocks + 2;
  // Rank r's block i holds (r + i) % 4 rows: zero-row blocks included.
  auto sizes = [&](int rank) {
    std::vector<int64_t> offsets = {0};
    for (int64_t i = 0; i < blocks; ++i)
      offsets.push_back(offsets.back() + (rank + i) % 4);
    return offsets;
  };
  PlanBuilder b = meshPlan(ranks);
  int64_t x = b.input("x", {rows, kWidth}, false, "F32");
  int64_t offsets = b.input("offsets", {blocks + 1});
  int64_t y = b.arena({capacity, kWidth});
  int64_t received = b.arena({blocks + 1}, "I32");
  b.step("all_to_all_v", {x, offsets}, {y, received}, {{"group", "ep"}});
  // Back with the received offsets, as the gradient goes.
  int64_t back = b.arena({rows, kWidth});
  int64_t again = b.arena({blocks + 1}, "I32");
  b.step("all_to_all_v", {y, received}, {back, again}, {{"group", "ep"}});
  b.output("y", y);
  b.output("received", received);
  b.output("back", back);
  auto outputs = runOnRanks(b, ranks, [&](int rank) {
    return std::vector<io::HostTensor>{
        floatTensor("x", {rows, kWidth}, rankRows(rank, rows)),
        intTensor("offsets", {blocks + 1}, sizes(rank))};
  });
  for (int r = 0; r < ranks; ++r) {
    ASSERT_EQ(outputs[r].size(), 3u);
    // The blocks r·b … r·b + b − 1 of every sender s, in sender order.
    std::vector<float> expected;
    std::vector<int64_t> expectedOffsets = {0};
    for (int s = 0; s < ranks; ++s) {
      std::vector<int64_t> off = sizes(s);
      std::vector<float> sent = rankRows(s, rows);
      for (int64_t i = r * perPeer; i < (r + 1) * perPeer; ++i) {
        expected.insert(expected.end(), sent.begin() + off[i] * kWidth,
                        sent.begin() + off[i + 1] * kWidth);
        expectedOffsets.push_back(expectedOffsets.back() + off[i + 1] - off[i]);
      }
    }
    expected.resize(capacity * kWidth, 0.0f);
    const float *got = outputs[r][0].as<float>();
    for (int64_t i = 0; i < capacity * kWidth; ++i)
      EXPECT_EQ(got[i], expected[i]) << "rank " << r << " element " << i;
    for (int64_t i = 0; i <= blocks; ++i)
      EXPECT_EQ(outputs[r][1].as<int32_t>()[i], expectedOffsets[i])
          << "rank " << r << " offset " << i;
    // Every sent row is back in its place; the rows no block holds are zero.
    std::vector<float> sent = rankRows(r, rows);
    int64_t used = sizes(r).back() * kWidth;
    for (int64_t i = 0; i < rows * kWidth; ++i)
      EXPECT_EQ(outputs[r][2].as<float>()[i], i < used ? sent[i] : 0.0f)
          << "rank " << r << " element " << i;
  }
}

TEST_P(CollectiveKernelTest, AllReduceSumsInRankOrder) {
  int ranks = GetParam();
  int64_t n = 7;
  PlanBuilder b = meshPlan(ranks);
  int64_t x = b.input("x", {n, kWidth}, false, "F32");
  int64_t y = b.arena({n, kWidth});
  b.step("all_reduce", {x}, {y}, {{"group", "world"}});
  b.output("y", y);
  auto inputOf = [&](int rank) {
    return randomTensor("x", {n, kWidth}, 17 + rank);
  };
  auto outputs = runOnRanks(b, ranks, [&](int rank) {
    return std::vector<io::HostTensor>{inputOf(rank)};
  });
  for (int64_t i = 0; i < n * kWidth; ++i) {
    float sum = 0.0f;
    for (int s = 0; s < ranks; ++s)
      sum += inputOf(s).as<float>()[i];
    for (int r = 0; r < ranks; ++r)
      EXPECT_EQ(outputs[r][0].as<float>()[i], sum) << "rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, CollectiveKernelTest, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return "W" + std::to_string(info.param);
                         });

/// Permutes with `permute_blocks` and back with the permuted offsets, as
/// the gradient does, on one rank.
TEST(PermuteBlocksKernelTest, ReordersBlocksAndInvertsWithPermutedOffsets) {
  int64_t outer = 3, inner = 2, rows = 14;
  std::vector<int64_t> offsets = {0, 2, 2, 5, 6, 9, 12};
  PlanBuilder b;
  int64_t x = b.input("x", {rows, kWidth}, false, "F32");
  int64_t off = b.input("offsets", {outer * inner + 1});
  int64_t y = b.arena({rows, kWidth}), permuted = b.arena({7}, "I32"),
          grouped = b.arena({inner + 1}, "I32");
  int64_t back = b.arena({rows, kWidth}), again = b.arena({7}, "I32"),
          regrouped = b.arena({outer + 1}, "I32");
  b.step("permute_blocks", {x, off}, {y, permuted, grouped},
         {{"outer", outer}, {"inner", inner}});
  b.step("permute_blocks", {y, permuted}, {back, again, regrouped},
         {{"outer", inner}, {"inner", outer}});
  b.output("y", y);
  b.output("permuted", permuted);
  b.output("grouped", grouped);
  b.output("back", back);
  b.output("again", again);
  auto outputs = runOnRanks(b, 1, [&](int) {
    return std::vector<io::HostTensor>{
        floatTensor("x", {rows, kWidth}, rankRows(0, rows)),
        intTensor("offsets", {outer * inner + 1}, offsets)};
  });
  ASSERT_EQ(outputs[0].size(), 5u);
  std::vector<float> in = rankRows(0, rows), expected;
  std::vector<int64_t> expectedPermuted = {0}, expectedGrouped;
  for (int64_t j = 0; j < inner; ++j) {
    expectedGrouped.push_back(expected.size() / kWidth);
    for (int64_t i = 0; i < outer; ++i) {
      int64_t block = i * inner + j;
      expected.insert(expected.end(), in.begin() + offsets[block] * kWidth,
                      in.begin() + offsets[block + 1] * kWidth);
      expectedPermuted.push_back(expected.size() / kWidth);
    }
  }
  expectedGrouped.push_back(expected.size() / kWidth);
  expected.resize(rows * kWidth, 0.0f);
  for (int64_t i = 0; i < rows * kWidth; ++i)
    EXPECT_EQ(outputs[0][0].as<float>()[i], expected[i]) << i;
  for (size_t i = 0; i < expectedPermuted.size(); ++i) {
    EXPECT_EQ(outputs[0][1].as<int32_t>()[i], expectedPermuted[i]) << i;
    EXPECT_EQ(outputs[0][4].as<int32_t>()[i], offsets[i]) << i;
  }
  for (size_t i = 0; i < expectedGrouped.size(); ++i)
    EXPECT_EQ(outputs[0][2].as<int32_t>()[i], expectedGrouped[i]) << i;
  // The inverse restores every block row and zeroes the rows past them.
  for (int64_t i = 0; i < rows * kWidth; ++i)
    EXPECT_EQ(outputs[0][3].as<float>()[i],
              i < offsets.back() * kWidth ? in[i] : 0.0f)
        << i;
}

TEST(CollectiveExecutorTest, RefusesAWorldOfAnotherSize) {
  PlanBuilder b = meshPlan(2);
  int64_t x = b.input("x", {4, kWidth}, false, "F32");
  int64_t y = b.arena({4, kWidth});
  b.step("all_to_all", {x}, {y}, {{"group", "ep"}});
  b.output("y", y);
  Expected<Plan> plan = Plan::parse(b.plan.dump(), "collective.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  Expected<cpu::Executor> executor = cpu::Executor::create(*plan);
  ASSERT_FALSE(executor.ok());
  EXPECT_EQ(executor.message(),
            "collective.mxa needs 2 ranks (dp 1 × ep 2); the world has 1");
}

} // namespace
} // namespace mixer::exec::test
