//===- ExecutorTest.cpp - The CUDA executor's host-side decisions ---------===//
//
// What the CUDA executor decides on the host without a device: the message
// of an id outside its table that a kernel recorded in the executor's
// IdFault, naming the step, the operand, the element and the table.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Executor.h"

#include "test/unit/exec/PlanBuilder.h"

#include <gtest/gtest.h>

using namespace mixer;
using namespace mixer::exec::test;

namespace {

/// ids [2, 3] -> embed -> sum [2, 3, 4]; x [4, 4] and tokens [6] -> dispatch
/// -> xd [6, 4].
exec::Plan embedThenDispatch() {
  PlanBuilder b;
  b.plan["target"] = "cuda";
  b.plan["vocab_size"] = 10;
  int64_t ids = b.input("ids", {2, 3}), tokens = b.input("tokens", {6}),
          x = b.input("x", {4, 4}, false, "F32");
  int64_t word = b.param("word", {10, 4}), pos = b.param("pos", {1, 3, 4}),
          type = b.param("type", {1, 4});
  int64_t sum = b.arena({2, 3, 4}), xd = b.arena({6, 4});
  b.step("embed", {ids, -1, word, pos, type}, {sum});
  b.step("dispatch", {x, tokens}, {xd});
  b.output("sum", sum);
  b.output("xd", xd);
  Expected<exec::Plan> plan = exec::Plan::fromJson(b.plan.dump(), "ids.mxa");
  EXPECT_TRUE(plan.ok()) << plan.message();
  return plan.ok() ? *plan : exec::Plan();
}

cuda::IdFault fault(int32_t step, int32_t operand, int64_t position, int32_t id,
                    int64_t limit) {
  cuda::IdFault record{};
  record.step = step;
  record.operand = operand;
  record.position = position;
  record.id = id;
  record.limit = limit;
  return record;
}

TEST(CudaIdFaultTest, AClearRecordIsSuccess) {
  EXPECT_TRUE(cuda::idFaultStatus(embedThenDispatch(), cuda::IdFault{}).ok());
}

TEST(CudaIdFaultTest, NamesTheStepTheOperandAndTheElement) {
  exec::Plan plan = embedThenDispatch();
  // The record holds 1 + the step's index.
  EXPECT_EQ(cuda::idFaultStatus(plan, fault(1, 0, 4, 10, 10)).message(),
            "ids.mxa: steps[0] (embed): ids[1,1] = 10 is outside [0, 10)");
  EXPECT_EQ(cuda::idFaultStatus(plan, fault(1, 0, 2, -3, 10)).message(),
            "ids.mxa: steps[0] (embed): ids[0,2] = -3 is outside [0, 10)");
  EXPECT_EQ(cuda::idFaultStatus(plan, fault(2, 1, 5, 40, 4)).message(),
            "ids.mxa: steps[1] (dispatch): tokens[5] = 40 is outside [0, 4)");
}

TEST(CudaIdFaultTest, ARecordOutsideThePlanStillFails) {
  exec::Plan plan = embedThenDispatch();
  EXPECT_EQ(cuda::idFaultStatus(plan, fault(3, 0, 0, 7, 4)).message(),
            "ids.mxa: an id is outside its table");
  EXPECT_EQ(cuda::idFaultStatus(plan, fault(2, 5, 0, 7, 4)).message(),
            "ids.mxa: steps[1] (dispatch): an id is outside its table");
}

} // namespace
