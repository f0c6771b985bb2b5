//===- TrainCommands.h - mixer-run pretrain, finetune and eval --*- C++ -*-===//
//
// The commands that run training plans (mixc --train): pre-training on a
// text corpus, fine-tuning on a labelled JSONL set, and evaluation.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H
#define MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H

#include "tools/mixer-run/CommandLine.h"

namespace mixer::run {

int runPretrain(const Args &args);
int runFinetune(const Args &args);
int runEval(const Args &args);

} // namespace mixer::run

#endif // MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H
