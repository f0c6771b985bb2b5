//===- TextDataFuzzer.cpp - Fuzzes the training text readers --------------===//
//
// The input is a pre-training corpus for readDocuments or, built with
// MIXER_FUZZ_JSONL, a fine-tuning JSONL file for ClassificationData::load,
// read both for a classification head and a regression head; what loads
// must have finite labels, and its batches are built too. Both need a
// tokenizer: a small SentencePiece model trained at start-up on
// MIXER_FUZZ_TOKENIZER_CORPUS.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/ClassificationData.h"
#include "runtime/data/Corpus.h"
#include "runtime/data/Tokenizer.h"
#include "test/fuzz/FuzzSupport.h"

#include <sentencepiece_trainer.h>

#include <cmath>
#include <optional>

namespace {

using mixer::fuzz::fail;
namespace data = mixer::data;

std::optional<data::Tokenizer> tokenizer;

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  std::string prefix = mixer::fuzz::scratchPath("tokenizer");
  auto trained = sentencepiece::SentencePieceTrainer::Train(
      "--input=" MIXER_FUZZ_TOKENIZER_CORPUS " --model_prefix=" + prefix +
      " --vocab_size=200 --model_type=unigram --character_coverage=1.0"
      " --hard_vocab_limit=false --num_threads=1 --minloglevel=2"
      " --pad_id=3 --unk_id=0 --bos_id=1 --eos_id=2"
      " --user_defined_symbols=[CLS],[SEP],[MASK]");
  if (!trained.ok())
    fail("cannot train the tokenizer: " + trained.ToString());
  auto loaded = data::Tokenizer::load(prefix + ".model");
  if (!loaded)
    fail(loaded.message());
  tokenizer.emplace(std::move(*loaded));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
#ifdef MIXER_FUZZ_JSONL
  std::string path = mixer::fuzz::writeInput("examples.jsonl", bytes, size);
  for (int64_t numClasses : {3, 1}) {
    auto examples =
        data::ClassificationData::load(path, *tokenizer, numClasses);
    if (!examples) {
      mixer::fuzz::checkErrorNames(path, examples.message());
      continue;
    }
    for (const data::ClassificationExample &example : examples->all())
      if (!std::isfinite(example.label))
        fail("a loaded example has the label " + std::to_string(example.label));
    constexpr int64_t kBatchSize = 2, kSeqLength = 8;
    for (int64_t i = 0; i < examples->numBatches(kBatchSize); ++i)
      (void)examples->batch(i, kBatchSize, kSeqLength);
  }
#else
  std::string path = mixer::fuzz::writeInput("corpus.txt", bytes, size);
  auto documents = data::readDocuments(path, *tokenizer);
  if (!documents)
    mixer::fuzz::checkErrorNames(path, documents.message());
#endif
  return 0;
}
