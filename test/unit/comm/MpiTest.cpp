//===- MpiTest.cpp - Conformance of the MPI communicator ------------------===//
//
// Runs the conformance cases on MPI_COMM_WORLD; CTest starts it under
// mpirun with 2 and 4 ranks. Every rank runs every case; rank 0 prints the
// usual report and the others print only their failures.
//
//===----------------------------------------------------------------------===//

#include "ConformanceCases.h"

#include "runtime/comm/Mpi.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace mixer::comm::test {
namespace {

Communicator *world = nullptr;

#define MIXER_MPI_CASE(name, body)                                             \
  TEST(MpiConformance, name) { body(*world); }
MIXER_COMM_CASES(MIXER_MPI_CASE)
#undef MIXER_MPI_CASE

/// Prints the failed assertions of a rank other than 0, prefixed with it.
class RankFailures : public ::testing::EmptyTestEventListener {
public:
  explicit RankFailures(int rank) : rank(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult &result) override {
    if (result.failed())
      std::fprintf(stderr, "rank %d: %s:%d: %s\n", rank,
                   result.file_name() ? result.file_name() : "?",
                   result.line_number(), result.message());
  }

private:
  int rank;
};

} // namespace
} // namespace mixer::comm::test

int main(int argc, char **argv) {
  using namespace mixer::comm;
  ::testing::InitGoogleTest(&argc, argv);
  auto created = createMpiWorld(test::conformanceOptions());
  if (!created) {
    std::fprintf(stderr, "MixerCommMpiTest: %s\n", created.message().c_str());
    return 1;
  }
  std::unique_ptr<Communicator> world = std::move(*created);
  test::world = world.get();
  if (world->rank() != 0) {
    auto &listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new test::RankFailures(world->rank()));
  }
  int result = RUN_ALL_TESTS();
  test::world = nullptr;
  return result;
}
