//===- Executors.cpp - The executor for a plan's target -------------------===//

#include "tools/mixer-run/Executors.h"

#include "tools/mixer-run/CommandLine.h"

#include "runtime/target/Executors.h"

namespace mixer::run {

void requireTarget(const exec::Plan &plan) {
  check(target::checkTargetAvailable(plan));
}

std::unique_ptr<exec::PlanExecutor> createExecutor(const exec::Plan &plan,
                                                   comm::Communicator *world) {
  return check(target::createExecutor(plan, world));
}

} // namespace mixer::run
