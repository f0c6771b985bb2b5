//===- LearningRate.h - Pre-training learning-rate schedule -----*- C++ -*-===//
//
// The schedule of the reference training recipe: constant * linear warm-up *
// linear decay, with the decay taken modulo 1 so that it restarts every
// totalSteps - warmupSteps steps past the warm-up.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_TRAIN_LEARNINGRATE_H
#define MIXER_RUNTIME_TRAIN_LEARNINGRATE_H

#include "runtime/support/Status.h"

#include <cstdint>

namespace mixer::train {

/// A warm-up then linear-decay schedule.
struct LearningRateSchedule {
  double base;         ///< peak learning rate, reached at the end of warm-up
  int64_t warmupSteps; ///< steps of linear warm-up from 0; 0 = none
  int64_t totalSteps;  ///< warm-up plus decay steps
};

/// Success when `schedule` has warmupSteps >= 0 and totalSteps >
/// warmupSteps (at least one decay step).
Status validateSchedule(const LearningRateSchedule &schedule);

/// The learning rate at `step` >= 0 of a valid schedule:
///   base * min(1, step / warmup) * (1 - frac(max(0, step - warmup) / decay))
/// with decay = totalSteps - warmupSteps and frac the fractional part, the
/// warm-up factor being 1 when warmupSteps is 0. Past totalSteps the decay
/// starts over: step = totalSteps gives base again.
double learningRate(const LearningRateSchedule &schedule, int64_t step);

/// The highest learning rate that the updates at steps [firstStep, lastStep)
/// of a valid schedule use (0 for an empty run): below `schedule.base` when
/// the run ends inside the warm-up or lies within one decay.
double highestLearningRate(const LearningRateSchedule &schedule,
                           int64_t firstStep, int64_t lastStep);

} // namespace mixer::train

#endif // MIXER_RUNTIME_TRAIN_LEARNINGRATE_H
