//===- InProcessTest.cpp - Conformance of the in-process communicator -----===//

#include "ConformanceCases.h"

#include "runtime/comm/InProcess.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace mixer::comm::test {
namespace {

using ::testing::HasSubstr;

/// The world size is the parameter: 1 to 4 ranks.
class InProcessConformance : public ::testing::TestWithParam<int> {};

#define MIXER_IN_PROCESS_CASE(name, body)                                      \
  TEST_P(InProcessConformance, name) {                                         \
    runInProcess(GetParam(), conformanceOptions(), body);                      \
  }
MIXER_COMM_CASES(MIXER_IN_PROCESS_CASE)
#undef MIXER_IN_PROCESS_CASE

INSTANTIATE_TEST_SUITE_P(Ranks, InProcessConformance,
                         ::testing::Values(1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return "W" + std::to_string(info.param);
                         });

// A rank whose arguments are wrong fails before it communicates; its peers
// would wait for it until their deadline, so these run on one rank.
TEST(InProcessCommunicator, RefusesWrongArguments) {
  auto world = createInProcessWorld(1, conformanceOptions());
  Communicator &c = *world[0];
  int64_t rows = 3, received = 0;
  std::vector<uint8_t> send(12), recv(8);
  Status s = c.allToAllV(send.data(), &rows, recv.data(), 2, &received, 4,
                         "steps[3] (all_to_all_v)");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "steps[3] (all_to_all_v) (all_to_all_v, group "
                         "'world'): rank 0: receives 3 rows but the buffer "
                         "holds 2");

  world = createInProcessWorld(1, conformanceOptions());
  rows = -1;
  s = world[0]->allToAllV(send.data(), &rows, recv.data(), 2, &received, 4,
                          "counts");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("negative row count -1 for rank 0"));

  world = createInProcessWorld(1, conformanceOptions());
  float values[4] = {1, 2, 3, 4};
  s = world[0]->allReduceSum(values, values + 1, 2, io::DType::F32, "sum");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("send and receive buffers overlap"));

  world = createInProcessWorld(1, conformanceOptions());
  s = world[0]->broadcast(values, 4, 1, "broadcast");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(),
              HasSubstr("broadcast root 1 outside the group of 1"));

  world = createInProcessWorld(1, conformanceOptions());
  auto group = world[0]->split(-1, 0, "none", "split");
  ASSERT_FALSE(group.ok());
  EXPECT_THAT(group.message(), HasSubstr("negative split color -1"));

  world = createInProcessWorld(1, conformanceOptions());
  io::HostTensor tensor;
  tensor.shape = {2};
  tensor.data.resize(8);
  s = gatherParts(*world[0], tensor, 2, "parts");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "parts: cannot join 2 parts of a tensor of 1 "
                         "dimensions over 1 ranks");
  EXPECT_EQ(tensor.shape, std::vector<int64_t>{2});
}

TEST(Launch, ReadsTheLaunchersEnvironment) {
  for (const char *name :
       {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK"})
    unsetenv(name);
  EXPECT_FALSE(detectLaunch().has_value());
  setenv("PMI_SIZE", "4", 1);
  setenv("PMI_RANK", "2", 1);
  ASSERT_TRUE(detectLaunch().has_value());
  EXPECT_EQ(detectLaunch()->worldSize, 4);
  EXPECT_EQ(detectLaunch()->worldRank, 2);
  setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  setenv("OMPI_COMM_WORLD_RANK", "0", 1);
  EXPECT_EQ(detectLaunch()->worldSize, 3);
  setenv("OMPI_COMM_WORLD_RANK", "3", 1); // not a rank of the world
  EXPECT_EQ(detectLaunch()->worldSize, 4);
  for (const char *name :
       {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK"})
    unsetenv(name);
}

} // namespace
} // namespace mixer::comm::test
