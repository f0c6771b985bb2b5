//===- DataTestUtil.h - Shared helpers of the MixerData tests ---*- C++ -*-===//
//
// The tests train a small SentencePiece model once per process on generated
// English-like sentences and write their corpora into a per-process
// temporary directory. Expected token ids come from a separate
// SentencePieceProcessor over the same model, not from the code under test.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_DATA_DATATESTUTIL_H
#define MIXER_TEST_UNIT_DATA_DATATESTUTIL_H

#include "runtime/data/Tokenizer.h"

#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace mixer::data::test {

/// The ids the test tokenizer is trained with.
constexpr int32_t kUnk = 0, kBos = 1, kEos = 2, kPad = 3;
/// User-defined symbols follow the reserved ids in the order given.
constexpr int32_t kCls = 4, kSep = 5, kMask = 6;

/// Words of the generated sentences.
inline const std::vector<std::string> &words() {
  static const std::vector<std::string> list = {
      "the",    "a",      "cat",   "dog",     "sat",   "on",      "mat",
      "river",  "stone",  "light", "morning", "over",  "under",   "quick",
      "brown",  "fox",    "jumps", "lazy",    "bird",  "sings",   "softly",
      "garden", "window", "old",   "house",   "green", "hills",   "far",
      "away",   "people", "walk",  "slowly",  "along", "road",    "bright",
      "stars",  "night",  "cold",  "wind",    "blows", "through", "trees"};
  return list;
}

/// A sentence of `count` words drawn from `rng`.
inline std::string sentence(std::mt19937 &rng, int count) {
  std::uniform_int_distribution<size_t> pick(0, words().size() - 1);
  std::string text;
  for (int i = 0; i < count; ++i)
    text += (i ? " " : "") + words()[pick(rng)];
  return text + ".";
}

/// Writes `text` to `path`.
inline void writeText(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

/// Documents as corpus text: one line each, blank lines between documents.
inline std::string
corpusText(const std::vector<std::vector<std::string>> &documents) {
  std::string text;
  for (const auto &document : documents) {
    for (const std::string &line : document)
      text += line + "\n";
    text += "\n";
  }
  return text;
}

/// A per-process directory with a trained tokenizer, removed at exit.
class DataEnv {
public:
  static const DataEnv &get() {
    static DataEnv env;
    return env;
  }

  std::string file(const std::string &name) const {
    return (std::filesystem::path(dir) / name).string();
  }

  /// Trains a unigram model on a generated corpus into dir/name.model.
  /// `extra` adds or overrides trainer flags.
  std::string train(const std::string &name, const std::string &extra) const {
    std::string prefix = file(name);
    std::string args = "--input=" + file("train.txt") +
                       " --model_prefix=" + prefix +
                       " --vocab_size=120 --model_type=unigram"
                       " --character_coverage=1.0 --hard_vocab_limit=false"
                       " --num_threads=1 --minloglevel=2 " +
                       extra;
    auto status = sentencepiece::SentencePieceTrainer::Train(args);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return prefix + ".model";
  }

  std::string dir;
  std::string modelPath; ///< pad 3, unk 0, bos 1, eos 2, [CLS] [SEP] [MASK]
  sentencepiece::SentencePieceProcessor reference;

  /// The reference ids of `text`.
  std::vector<int32_t> ids(const std::string &text) const {
    std::vector<int> pieces;
    EXPECT_TRUE(reference.Encode(text, &pieces).ok());
    return std::vector<int32_t>(pieces.begin(), pieces.end());
  }

  ~DataEnv() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

private:
  DataEnv() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "mixer-data-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      std::abort();
    dir = pattern;
    std::mt19937 rng(7);
    std::string text;
    for (int i = 0; i < 600; ++i)
      text += sentence(rng, 3 + i % 9) + "\n";
    writeText(file("train.txt"), text);
    modelPath = train("tokenizer", "--pad_id=3 --unk_id=0 --bos_id=1 "
                                   "--eos_id=2 --user_defined_symbols="
                                   "[CLS],[SEP],[MASK]");
    if (!reference.Load(modelPath).ok())
      std::abort();
  }
};

/// The test tokenizer, loaded by the code under test.
inline Tokenizer loadTokenizer() {
  auto tokenizer = Tokenizer::load(DataEnv::get().modelPath);
  if (!tokenizer.ok()) {
    ADD_FAILURE() << tokenizer.message();
    std::abort();
  }
  return std::move(*tokenizer);
}

} // namespace mixer::data::test

#endif // MIXER_TEST_UNIT_DATA_DATATESTUTIL_H
