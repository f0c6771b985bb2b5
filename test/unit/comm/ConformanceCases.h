//===- ConformanceCases.h - What every communicator must do -----*- C++ -*-===//
//
// The bodies of the communicator conformance tests. Each runs on every rank
// of a world of any size (1-4 in the tests) and checks its rank's results
// against plain loops; InProcessTest.cpp runs them on threads, MpiTest.cpp
// under mpirun. The list is written once, in MIXER_COMM_CASES.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_COMM_CONFORMANCECASES_H
#define MIXER_TEST_UNIT_COMM_CONFORMANCECASES_H

#include "runtime/comm/Communicator.h"

namespace mixer::comm::test {

/// The options the conformance worlds start with: a deadline that a loaded
/// machine does not reach, the real chunk limit.
Options conformanceOptions();

void checkRankAndSize(Communicator &world);
void checkEqualAllToAll(Communicator &world);
void checkRaggedAllToAll(Communicator &world);
void checkRaggedOneSender(Communicator &world);
void checkAllReduce(Communicator &world);
void checkGatherBroadcastBarrier(Communicator &world);
void checkGatherParts(Communicator &world);
void checkMeshGroups(Communicator &world);
void checkChunking(Communicator &world);
void checkDeadline(Communicator &world);

/// X(test name, body) for every case.
#define MIXER_COMM_CASES(X)                                                    \
  X(RankAndSize, checkRankAndSize)                                             \
  X(EqualAllToAll, checkEqualAllToAll)                                         \
  X(RaggedAllToAll, checkRaggedAllToAll)                                       \
  X(RaggedOneSender, checkRaggedOneSender)                                     \
  X(AllReduceEveryDType, checkAllReduce)                                       \
  X(GatherBroadcastBarrier, checkGatherBroadcastBarrier)                       \
  X(GatherParts, checkGatherParts)                                             \
  X(MeshGroups, checkMeshGroups)                                               \
  X(Chunking, checkChunking)                                                   \
  X(Deadline, checkDeadline)

} // namespace mixer::comm::test

#endif // MIXER_TEST_UNIT_COMM_CONFORMANCECASES_H
