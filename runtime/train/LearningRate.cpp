//===- LearningRate.cpp - Pre-training learning-rate schedule -------------===//

#include "runtime/train/LearningRate.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <string>

namespace mixer::train {

Status validateSchedule(const LearningRateSchedule &schedule) {
  if (schedule.warmupSteps < 0)
    return Status::error("learning-rate schedule: warmup_steps " +
                         std::to_string(schedule.warmupSteps) + " is negative");
  if (schedule.totalSteps <= schedule.warmupSteps)
    return Status::error("learning-rate schedule: total_steps " +
                         std::to_string(schedule.totalSteps) +
                         " leaves no decay step after warmup_steps " +
                         std::to_string(schedule.warmupSteps));
  return Status::success();
}

double learningRate(const LearningRateSchedule &schedule, int64_t step) {
  assert(validateSchedule(schedule).ok() && step >= 0 &&
         "learningRate of an invalid schedule or a negative step");
  // No warm-up factor without warm-up steps, rather than 0 / 0 at step 0.
  double warmup = 1.0;
  if (schedule.warmupSteps > 0)
    warmup = std::min(1.0, static_cast<double>(step) / schedule.warmupSteps);
  double decaySteps =
      static_cast<double>(schedule.totalSteps - schedule.warmupSteps);
  double progress =
      std::max<int64_t>(0, step - schedule.warmupSteps) / decaySteps;
  return schedule.base * warmup * (1.0 - std::fmod(progress, 1.0));
}

double highestLearningRate(const LearningRateSchedule &schedule,
                           int64_t firstStep, int64_t lastStep) {
  if (lastStep <= firstStep)
    return 0.0;
  // The warm-up rises to the peak at step warmupSteps.
  if (lastStep <= schedule.warmupSteps)
    return learningRate(schedule, lastStep - 1);
  if (firstStep <= schedule.warmupSteps)
    return schedule.base;
  // Past the warm-up the rate falls, back to the peak at each restart.
  int64_t decaySteps = schedule.totalSteps - schedule.warmupSteps;
  int64_t sinceRestart = (firstStep - schedule.warmupSteps) % decaySteps;
  int64_t nextRestart = firstStep + (decaySteps - sinceRestart) % decaySteps;
  return nextRestart < lastStep ? schedule.base
                                : learningRate(schedule, firstStep);
}

} // namespace mixer::train
