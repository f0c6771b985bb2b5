//===- TrainCommands.h - mixer-run pretrain, finetune and eval --*- C++ -*-===//
//
// The commands that run training plans (mixc --train): pre-training on a
// text corpus, fine-tuning on a labelled JSONL set, and evaluation.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H
#define MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H

#include "tools/mixer-run/CommandLine.h"

#include "runtime/io/TensorFiles.h"

#include <string>
#include <vector>

namespace mixer::run {

int runPretrain(const Args &args);
int runFinetune(const Args &args);
int runEval(const Args &args);

/// The parameters of a weights file that `filter` keeps, or of a checkpoint:
/// the latest step of a checkpoint directory, or one step directory
/// (DIR/step_<N>).
std::vector<io::HostTensor> loadWeights(const std::string &path,
                                        const io::TensorFilter &filter = {});

} // namespace mixer::run

#endif // MIXER_TOOLS_MIXER_RUN_TRAINCOMMANDS_H
