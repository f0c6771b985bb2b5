//===- TrainCommands.h - mixer-run pretrain, finetune and eval --*- C++ -*-===//
//
// The commands that run training plans (mixc --train): pre-training on a
// text corpus, fine-tuning on a labelled JSONL set, and evaluation.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H
#define MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H

#include "tools/mixer-run/CommandLine.h"

#include "runtime/exec/Plan.h"
#include "runtime/io/Tensor.h"

#include <vector>

namespace mixer::run {

int runPretrain(const Args &args);
int runFinetune(const Args &args);
int runEval(const Args &args);

/// A valid batch for a training plan (benchmarks): random token ids,
/// masked positions inside the sequence, labels 0, learning rate 0, step 0
/// and seed 0.
std::vector<io::HostTensor> syntheticTrainingInputs(const exec::Plan &plan);

} // namespace mixer::run

#endif // MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H
