//===- MlmBatcherTest.cpp - pre-training batches (MLM + NSP) --------------===//
//
// The rules of spec 11.3 are checked example by example against values the
// test computes itself (from the formula, or from the corpus encoded by a
// separate SentencePiece processor); the 80/10/10 replacement split and the
// NSP label balance are checked statistically with bounds of about five
// standard deviations.
//
//===----------------------------------------------------------------------===//

#include "DataTestUtil.h"

#include "runtime/data/MlmBatcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>
#include <set>

namespace mixer::data::test {
namespace {

using ::testing::HasSubstr;

/// One example of a batch.
struct Row {
  std::vector<int32_t> ids, types, positions, lmIds;
  std::vector<float> weights;
  int32_t label;
};

Row rowOf(const MlmBatch &batch, int64_t r) {
  auto slice = [](const auto &values, int64_t row, int64_t width) {
    using T = typename std::decay_t<decltype(values)>::value_type;
    return std::vector<T>(values.begin() + row * width,
                          values.begin() + (row + 1) * width);
  };
  return {slice(batch.inputIds, r, batch.seqLength),
          slice(batch.typeIds, r, batch.seqLength),
          slice(batch.maskedLmPositions, r, batch.maxPredictions),
          slice(batch.maskedLmIds, r, batch.maxPredictions),
          slice(batch.maskedLmWeights, r, batch.maxPredictions),
          batch.nextSentenceLabels[r]};
}

/// The row's tokens before masking, without padding.
std::vector<int32_t> original(const Row &row) {
  std::vector<int32_t> tokens = row.ids;
  tokens.erase(std::find(tokens.begin(), tokens.end(), kPad), tokens.end());
  for (size_t j = 0; j < row.weights.size(); ++j)
    if (row.weights[j] == 1.0f)
      tokens[row.positions[j]] = row.lmIds[j];
  return tokens;
}

/// Segments A and B (in the order of the input) of an original row.
std::pair<std::vector<int32_t>, std::vector<int32_t>>
segments(const std::vector<int32_t> &tokens) {
  auto sep = std::find(tokens.begin(), tokens.end(), kSep);
  return {std::vector<int32_t>(tokens.begin() + 1, sep),
          std::vector<int32_t>(sep + 1, tokens.end() - 1)};
}

/// How masked positions were filled.
struct MaskCounts {
  int64_t masked = 0, random = 0, kept = 0;
  int64_t total() const { return masked + random + kept; }
};

/// The spec's number of predictions for n non-pad tokens, capped by the
/// n - 3 positions that hold neither [CLS] nor [SEP].
int64_t expectedPredictions(int64_t n, int64_t maxPredictions) {
  int64_t wanted = std::min<int64_t>(
      maxPredictions, std::max<int64_t>(1, static_cast<int64_t>(0.15 * n)));
  return std::min<int64_t>(wanted, n - 3);
}

/// Checks every rule of one example and tallies its replacements.
void checkRow(const Row &row, int64_t maxPredictions, MaskCounts &counts) {
  int64_t seq = static_cast<int64_t>(row.ids.size());
  int64_t n = std::find(row.ids.begin(), row.ids.end(), kPad) - row.ids.begin();
  ASSERT_GE(n, 5);
  for (int64_t i = n; i < seq; ++i) {
    ASSERT_EQ(row.ids[i], kPad) << "padding at " << i;
    ASSERT_EQ(row.types[i], 0) << "padding type at " << i;
  }
  ASSERT_EQ(row.ids[0], kCls);
  ASSERT_EQ(row.ids[n - 1], kSep);
  std::vector<int64_t> seps;
  for (int64_t i = 0; i < n; ++i) {
    if (row.ids[i] == kSep)
      seps.push_back(i);
    else if (i > 0 && row.ids[i] != kMask)
      ASSERT_GE(row.ids[i], 7) << "special token " << row.ids[i] << " at " << i;
  }
  ASSERT_EQ(seps.size(), 2u);
  ASSERT_GE(seps[0], 2) << "empty segment A";
  ASSERT_GE(seps[1] - seps[0], 2) << "empty segment B";
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(row.types[i], i <= seps[0] ? 0 : 1) << "type id at " << i;

  int64_t count = expectedPredictions(n, maxPredictions);
  for (int64_t j = 0; j < maxPredictions; ++j) {
    if (j >= count) {
      ASSERT_EQ(row.weights[j], 0.0f);
      ASSERT_EQ(row.positions[j], 0);
      ASSERT_EQ(row.lmIds[j], 0);
      continue;
    }
    ASSERT_EQ(row.weights[j], 1.0f);
    int32_t position = row.positions[j];
    ASSERT_GT(position, 0);
    ASSERT_LT(position, n - 1);
    ASSERT_NE(position, seps[0]);
    if (j > 0)
      ASSERT_GT(position, row.positions[j - 1]);
    ASSERT_GE(row.lmIds[j], 7) << "masked a special token";
    int32_t shown = row.ids[position];
    if (shown == kMask)
      ++counts.masked;
    else if (shown == row.lmIds[j])
      ++counts.kept;
    else
      ++counts.random;
  }
}

class MlmBatcherTest : public ::testing::Test {
protected:
  void SetUp() override { tokenizer.emplace(loadTokenizer()); }

  MlmBatcher create(const std::string &path, const MlmOptions &options) {
    auto batcher = MlmBatcher::create(path, *tokenizer, options);
    if (!batcher.ok()) {
      ADD_FAILURE() << batcher.message();
      std::abort();
    }
    return std::move(*batcher);
  }

  /// Documents of 1 to 6 lines of 3 to 14 words, then documents of
  /// one-word lines (whose examples have fewer than 7 tokens).
  std::string writeMixedCorpus() {
    std::mt19937 rng(11);
    std::vector<std::vector<std::string>> documents;
    for (int d = 0; d < 40; ++d) {
      std::vector<std::string> lines;
      for (int l = 0; l < 1 + d % 6; ++l)
        lines.push_back(sentence(rng, 3 + (d * 7 + l * 5) % 12));
      documents.push_back(lines);
    }
    for (int d = 0; d < 6; ++d)
      documents.push_back({"cat", "dog"});
    std::string path = DataEnv::get().file("mixed.txt");
    writeText(path, corpusText(documents));
    return path;
  }

  /// `count` documents of two distinct short lines.
  std::string
  writePairCorpus(int count, std::vector<std::vector<std::string>> &documents) {
    std::mt19937 rng(5);
    std::set<std::string> seen;
    while (static_cast<int>(documents.size()) < count) {
      std::string first = sentence(rng, 1 + rng() % 3);
      std::string second = sentence(rng, 1 + rng() % 3);
      if (first == second || !seen.insert(first).second ||
          !seen.insert(second).second)
        continue;
      documents.push_back({first, second});
    }
    std::string path = DataEnv::get().file("pairs.txt");
    writeText(path, corpusText(documents));
    return path;
  }

  std::optional<Tokenizer> tokenizer;
};

TEST_F(MlmBatcherTest, MaskingRulesAndReplacementSplit) {
  std::string path = writeMixedCorpus();
  MlmBatcher batcher = create(path, {16, 64, 80, 0.15, 1});
  MaskCounts counts;
  int64_t shortExamples = 0;
  for (int b = 0; b < 200; ++b) {
    MlmBatch batch = batcher.next();
    for (int64_t r = 0; r < batch.batchSize; ++r) {
      Row row = rowOf(batch, r);
      ASSERT_NO_FATAL_FAILURE(checkRow(row, 80, counts)) << "batch " << b;
      if (std::count(row.ids.begin(), row.ids.end(), kPad) > 64 - 7)
        ++shortExamples;
    }
  }
  // The documents of one-word lines exercise max(1, ...).
  EXPECT_GT(shortExamples, 0);
  ASSERT_GT(counts.total(), 10000);
  double total = static_cast<double>(counts.total());
  EXPECT_NEAR(counts.masked / total, 0.8, 0.025);
  EXPECT_NEAR(counts.random / total, 0.1, 0.02);
  EXPECT_NEAR(counts.kept / total, 0.1, 0.02);
}

TEST_F(MlmBatcherTest, PredictionsCappedByMaxPredictions) {
  std::string path = writeMixedCorpus();
  MlmBatcher batcher = create(path, {8, 64, 3, 0.15, 2});
  MaskCounts counts;
  int64_t capped = 0;
  for (int b = 0; b < 10; ++b) {
    MlmBatch batch = batcher.next();
    for (int64_t r = 0; r < batch.batchSize; ++r) {
      Row row = rowOf(batch, r);
      ASSERT_NO_FATAL_FAILURE(checkRow(row, 3, counts));
      capped += std::count(row.weights.begin(), row.weights.end(), 1.0f) == 3;
    }
  }
  EXPECT_GT(capped, 40);
}

TEST_F(MlmBatcherTest, PairsAreWholeDocumentsInEitherOrder) {
  std::vector<std::vector<std::string>> documents;
  std::string path = writePairCorpus(40, documents);
  // Each document fits, so every example is one document: A = its first
  // line, B = its second, swapped when the label is 0.
  std::map<std::vector<int32_t>, std::pair<int, int>> lineOf;
  for (int d = 0; d < 40; ++d)
    for (int l = 0; l < 2; ++l)
      lineOf[DataEnv::get().ids(documents[d][l])] = {d, l};
  MlmBatcher batcher = create(path, {8, 32, 80, 0.15, 3});
  int64_t originalOrder = 0, examples = 0;
  std::vector<int> firstEpoch;
  for (int b = 0; b < 250; ++b) {
    MlmBatch batch = batcher.next();
    for (int64_t r = 0; r < batch.batchSize; ++r, ++examples) {
      Row row = rowOf(batch, r);
      auto [a, bSegment] = segments(original(row));
      ASSERT_TRUE(lineOf.count(a) && lineOf.count(bSegment))
          << "example " << examples << " is not two corpus lines";
      auto [docA, lineA] = lineOf[a];
      auto [docB, lineB] = lineOf[bSegment];
      ASSERT_EQ(docA, docB);
      if (row.label == 1) {
        EXPECT_EQ(lineA, 0);
        EXPECT_EQ(lineB, 1);
        ++originalOrder;
      } else {
        ASSERT_EQ(row.label, 0);
        EXPECT_EQ(lineA, 1);
        EXPECT_EQ(lineB, 0);
      }
      if (examples < 40)
        firstEpoch.push_back(docA);
    }
  }
  EXPECT_NEAR(static_cast<double>(originalOrder) / examples, 0.5, 0.04);
  // The first epoch visits every document once, not in file order.
  std::vector<int> sorted = firstEpoch;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> fileOrder(40);
  std::iota(fileOrder.begin(), fileOrder.end(), 0);
  EXPECT_EQ(sorted, fileOrder);
  EXPECT_NE(firstEpoch, fileOrder);
  EXPECT_GE(batcher.position().epoch, 49u);
}

/// Expected lengths of A and B after trimming the longer one (B on a tie)
/// until they fit `budget`: when one trim suffices the shorter is intact,
/// otherwise the two end level with A one longer on an odd budget.
std::pair<size_t, size_t> trimmedLengths(size_t a, size_t b, size_t budget) {
  if (a + b <= budget)
    return {a, b};
  size_t excess = a + b - budget;
  if (a >= b + excess)
    return {a - excess, b};
  if (b >= a + excess)
    return {a, b - excess};
  return {(budget + 1) / 2, budget / 2};
}

TEST_F(MlmBatcherTest, TruncationTrimsTheLongerSegmentFromTheEnd) {
  // Two-line documents whose lines each fit in S - 3 = 13 tokens but not
  // together, so the run takes both lines and must be trimmed.
  std::mt19937 rng(9);
  std::vector<std::vector<std::string>> documents;
  std::map<std::vector<int32_t>, std::pair<int, int>> lineOf;
  while (documents.size() < 12) {
    std::string first = sentence(rng, 2 + rng() % 6);
    std::string second = sentence(rng, 2 + rng() % 6);
    size_t la = DataEnv::get().ids(first).size();
    size_t lb = DataEnv::get().ids(second).size();
    if (la > 12 || lb > 12 || la + lb <= 13 || first == second)
      continue;
    documents.push_back({first, second});
  }
  std::string path = DataEnv::get().file("long-pairs.txt");
  writeText(path, corpusText(documents));
  MlmBatcher batcher = create(path, {6, 16, 80, 0.15, 4});
  int64_t bothTrimmed = 0, oneTrimmed = 0;
  for (int b = 0; b < 10; ++b) {
    MlmBatch batch = batcher.next();
    for (int64_t r = 0; r < batch.batchSize; ++r) {
      Row row = rowOf(batch, r);
      auto [a, bSegment] = segments(original(row));
      if (row.label == 0)
        std::swap(a, bSegment);
      bool matched = false;
      for (const auto &document : documents) {
        std::vector<int32_t> first = DataEnv::get().ids(document[0]);
        std::vector<int32_t> second = DataEnv::get().ids(document[1]);
        auto [la, lb] = trimmedLengths(first.size(), second.size(), 13);
        first.resize(la);
        second.resize(lb);
        if (first == a && second == bSegment) {
          matched = true;
          bool trimmedA = la < DataEnv::get().ids(document[0]).size();
          bool trimmedB = lb < DataEnv::get().ids(document[1]).size();
          (trimmedA && trimmedB ? bothTrimmed : oneTrimmed)++;
        }
      }
      EXPECT_TRUE(matched) << "batch " << b << " row " << r;
    }
  }
  EXPECT_GT(bothTrimmed, 0);
  EXPECT_GT(oneTrimmed, 0);
}

TEST_F(MlmBatcherTest, SingleLineRunsSplitInsideTheLine) {
  std::mt19937 rng(13);
  std::vector<std::vector<int32_t>> lines;
  std::vector<std::vector<std::string>> documents;
  for (int d = 0; d < 10; ++d) {
    documents.push_back({sentence(rng, 4 + d % 4)});
    lines.push_back(DataEnv::get().ids(documents.back()[0]));
  }
  std::string path = DataEnv::get().file("single-lines.txt");
  writeText(path, corpusText(documents));
  MlmBatcher batcher = create(path, {5, 48, 80, 0.15, 5});
  std::set<size_t> cuts;
  for (int b = 0; b < 20; ++b) {
    MlmBatch batch = batcher.next();
    for (int64_t r = 0; r < batch.batchSize; ++r) {
      Row row = rowOf(batch, r);
      auto [a, bSegment] = segments(original(row));
      if (row.label == 0)
        std::swap(a, bSegment);
      std::vector<int32_t> joined = a;
      joined.insert(joined.end(), bSegment.begin(), bSegment.end());
      EXPECT_NE(std::find(lines.begin(), lines.end(), joined), lines.end());
      cuts.insert(a.size());
    }
  }
  EXPECT_GT(cuts.size(), 3u) << "the cut point does not vary";
}

std::vector<MlmBatch> take(MlmBatcher &batcher, int count) {
  std::vector<MlmBatch> batches;
  for (int i = 0; i < count; ++i)
    batches.push_back(batcher.next());
  return batches;
}

void expectSameBatch(const MlmBatch &x, const MlmBatch &y, int index) {
  EXPECT_EQ(x.inputIds, y.inputIds) << "batch " << index;
  EXPECT_EQ(x.typeIds, y.typeIds) << "batch " << index;
  EXPECT_EQ(x.maskedLmPositions, y.maskedLmPositions) << "batch " << index;
  EXPECT_EQ(x.maskedLmIds, y.maskedLmIds) << "batch " << index;
  EXPECT_EQ(x.maskedLmWeights, y.maskedLmWeights) << "batch " << index;
  EXPECT_EQ(x.nextSentenceLabels, y.nextSentenceLabels) << "batch " << index;
}

TEST_F(MlmBatcherTest, DeterministicInTheSeed) {
  std::string path = writeMixedCorpus();
  MlmBatcher first = create(path, {4, 32, 10, 0.15, 21});
  MlmBatcher second = create(path, {4, 32, 10, 0.15, 21});
  MlmBatcher other = create(path, {4, 32, 10, 0.15, 22});
  std::vector<MlmBatch> a = take(first, 5), b = take(second, 5),
                        c = take(other, 5);
  for (int i = 0; i < 5; ++i) {
    expectSameBatch(a[i], b[i], i);
    EXPECT_NE(a[i].inputIds, c[i].inputIds) << "batch " << i;
  }
}

TEST_F(MlmBatcherTest, ResumesFromASerializedPosition) {
  // A small corpus, so that the ten batches cross epoch boundaries.
  std::vector<std::vector<std::string>> documents;
  std::string path = writePairCorpus(7, documents);
  MlmOptions options{4, 24, 6, 0.15, 8};
  MlmBatcher continuous = create(path, options);
  std::vector<MlmBatch> expected = take(continuous, 10);

  MlmBatcher interrupted = create(path, options);
  take(interrupted, 5);
  std::string saved = interrupted.position().toJson().dump();
  auto position =
      DataPosition::fromJson(nlohmann::json::parse(saved), "ckpt.json");
  ASSERT_TRUE(position.ok()) << position.message();
  EXPECT_EQ(*position, interrupted.position());
  EXPECT_EQ(position->counter, 20u);

  MlmBatcher resumed = create(path, options);
  ASSERT_TRUE(resumed.seek(*position).ok());
  std::vector<MlmBatch> rest = take(resumed, 5);
  for (int i = 0; i < 5; ++i)
    expectSameBatch(rest[i], expected[5 + i], 5 + i);
  EXPECT_EQ(resumed.position(), continuous.position());
  EXPECT_GE(continuous.position().epoch, 5u);
}

TEST_F(MlmBatcherTest, PositionJsonErrors) {
  auto missing = DataPosition::fromJson(
      nlohmann::json::parse(R"({"epoch": 1, "document": 2, "line": 0,
                                "counter": 4})"),
      "ckpt.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.message(), "ckpt.json: the data position lacks 'token'");
  auto negative = DataPosition::fromJson(
      nlohmann::json::parse(R"({"epoch": -1, "document": 2, "line": 0,
                                "token": 0, "counter": 4})"),
      "ckpt.json");
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.message(), "ckpt.json: the data position's 'epoch' is "
                                "not a non-negative integer");
  auto notObject = DataPosition::fromJson(nlohmann::json::array(), "c.json");
  ASSERT_FALSE(notObject.ok());
  EXPECT_EQ(notObject.message(),
            "c.json: the data position is not a JSON object");
}

TEST_F(MlmBatcherTest, SeekRejectsPositionsOutsideTheCorpus) {
  std::vector<std::vector<std::string>> documents;
  std::string path = writePairCorpus(7, documents);
  MlmBatcher batcher = create(path, {2, 24, 6, 0.15, 8});
  DataPosition pastEnd;
  pastEnd.document = 8;
  Status status = batcher.seek(pastEnd);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "pre-training data position: document 8 is "
                              "past the corpus's 7 documents");
  DataPosition pastLine;
  pastLine.line = 2;
  status = batcher.seek(pastLine);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "pre-training data position: line 2 is past "
                              "the 2 lines of document 0");
  DataPosition withToken;
  withToken.token = 3;
  EXPECT_FALSE(batcher.seek(withToken).ok());
}

TEST_F(MlmBatcherTest, RejectsBadOptionsAndUnpairableCorpora) {
  std::string path = writeMixedCorpus();
  auto tooShort = MlmBatcher::create(path, *tokenizer, {2, 4, 80, 0.15, 0});
  ASSERT_FALSE(tooShort.ok());
  EXPECT_EQ(tooShort.message(),
            path + ": pre-training batches: sequence length 4 is below 5");
  std::string single = DataEnv::get().file("single-tokens.txt");
  writeText(single, "a\n\na\n");
  ASSERT_EQ(DataEnv::get().ids("a").size(), 1u);
  auto unpairable = MlmBatcher::create(single, *tokenizer, {2, 8, 80, 0.15, 0});
  ASSERT_FALSE(unpairable.ok());
  EXPECT_EQ(unpairable.message(), single + ": no document of the corpus has "
                                           "the two tokens a sentence pair "
                                           "needs");
  auto absent = MlmBatcher::create(DataEnv::get().file("absent.txt"),
                                   *tokenizer, {2, 8, 80, 0.15, 0});
  ASSERT_FALSE(absent.ok());
  EXPECT_THAT(absent.message(), HasSubstr("absent.txt: cannot open"));
}

TEST_F(MlmBatcherTest, TensorsAreNamedAndShaped) {
  std::string path = writeMixedCorpus();
  MlmBatcher batcher = create(path, {3, 20, 4, 0.15, 0});
  std::vector<io::HostTensor> tensors = batcher.next().tensors();
  std::vector<std::string> names;
  for (const auto &tensor : tensors)
    names.push_back(tensor.name + " " + io::dtypeName(tensor.dtype) + " " +
                    io::formatShape(tensor.shape));
  EXPECT_EQ(names, (std::vector<std::string>{"input_ids I32 [3, 20]",
                                             "type_ids I32 [3, 20]",
                                             "masked_lm_positions I32 [3, 4]",
                                             "masked_lm_ids I32 [3, 4]",
                                             "masked_lm_weights F32 [3, 4]",
                                             "next_sentence_labels I32 [3]"}));
}

} // namespace
} // namespace mixer::data::test
