//===- ClassificationDataTest.cpp - fine-tuning examples from JSONL -------===//

#include "DataTestUtil.h"

#include "runtime/data/ClassificationData.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>

namespace mixer::data::test {
namespace {

using ::testing::HasSubstr;

class ClassificationDataTest : public ::testing::Test {
protected:
  void SetUp() override { tokenizer.emplace(loadTokenizer()); }

  /// Writes `lines` to a JSONL file named `name`.
  std::string write(const std::string &name, const std::string &lines) {
    std::string path = DataEnv::get().file(name);
    writeText(path, lines);
    return path;
  }

  Expected<ClassificationData> load(const std::string &path,
                                    int64_t numClasses) {
    return ClassificationData::load(path, *tokenizer, numClasses);
  }

  /// The message of a load that must fail.
  std::string error(const std::string &lines, int64_t numClasses = 2) {
    std::string path = write("bad.jsonl", lines);
    auto data = load(path, numClasses);
    EXPECT_FALSE(data.ok());
    return data.ok() ? "" : data.message();
  }

  std::optional<Tokenizer> tokenizer;
};

/// Row `r` of a [B, S] array.
std::vector<int32_t> row(const std::vector<int32_t> &values, int64_t r,
                         int64_t width) {
  return std::vector<int32_t>(values.begin() + r * width,
                              values.begin() + (r + 1) * width);
}

/// `ids` followed by `pad` up to `length`.
std::vector<int32_t> padded(std::vector<int32_t> ids, size_t length,
                            int32_t pad) {
  ids.resize(length, pad);
  return ids;
}

TEST_F(ClassificationDataTest, SingleTextBatchesPadTheLastBatch) {
  std::string path =
      write("single.jsonl", "{\"text\": \"the cat sat.\", \"label\": 1}\n"
                            "\n"
                            "{\"text\": \"a dog\", \"label\": 0}\n"
                            "{\"label\": 2, \"text\": \"old house\"}\n");
  auto data = load(path, 3);
  ASSERT_TRUE(data.ok()) << data.message();
  ASSERT_EQ(data->size(), 3);
  EXPECT_EQ(data->numBatches(2), 2);
  EXPECT_EQ(data->numBatches(3), 1);
  const int64_t seq = 12;

  ClassificationBatch first = data->batch(0, 2, seq);
  std::vector<int32_t> cat = DataEnv::get().ids("the cat sat.");
  std::vector<int32_t> expected{kCls};
  expected.insert(expected.end(), cat.begin(), cat.end());
  expected.push_back(kSep);
  EXPECT_EQ(row(first.inputIds, 0, seq), padded(expected, seq, kPad));
  EXPECT_EQ(row(first.typeIds, 0, seq), std::vector<int32_t>(seq, 0));
  EXPECT_EQ(first.classLabels, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(first.exampleWeights, (std::vector<float>{1, 1}));

  ClassificationBatch last = data->batch(1, 2, seq);
  std::vector<int32_t> house = DataEnv::get().ids("old house");
  expected = {kCls};
  expected.insert(expected.end(), house.begin(), house.end());
  expected.push_back(kSep);
  EXPECT_EQ(row(last.inputIds, 0, seq), padded(expected, seq, kPad));
  EXPECT_EQ(row(last.inputIds, 1, seq), std::vector<int32_t>(seq, kPad));
  EXPECT_EQ(row(last.typeIds, 1, seq), std::vector<int32_t>(seq, 0));
  EXPECT_EQ(last.classLabels, (std::vector<int32_t>{2, 0}));
  EXPECT_EQ(last.exampleWeights, (std::vector<float>{1, 0}));
}

TEST_F(ClassificationDataTest, PairsTakeTypeIdsFromTheSegment) {
  std::string path =
      write("pairs.jsonl", "{\"text_a\": \"quick fox\", \"text_b\": "
                           "\"lazy dog\", \"label\": 1}\n");
  auto data = load(path, 2);
  ASSERT_TRUE(data.ok()) << data.message();
  std::vector<int32_t> a = DataEnv::get().ids("quick fox");
  std::vector<int32_t> b = DataEnv::get().ids("lazy dog");
  std::vector<int32_t> ids{kCls}, types{0};
  ids.insert(ids.end(), a.begin(), a.end());
  ids.push_back(kSep);
  types.resize(ids.size(), 0);
  ids.insert(ids.end(), b.begin(), b.end());
  ids.push_back(kSep);
  types.resize(ids.size(), 1);
  const int64_t seq = 24;
  ClassificationBatch batch = data->batch(0, 1, seq);
  EXPECT_EQ(batch.inputIds, padded(ids, seq, kPad));
  EXPECT_EQ(batch.typeIds, padded(types, seq, 0));

  // Cut at S from the end: the tail, [SEP] included, is lost.
  int64_t cut = static_cast<int64_t>(a.size()) + 3;
  ClassificationBatch truncated = data->batch(0, 1, cut);
  EXPECT_EQ(truncated.inputIds,
            std::vector<int32_t>(ids.begin(), ids.begin() + cut));
  EXPECT_EQ(truncated.typeIds,
            std::vector<int32_t>(types.begin(), types.begin() + cut));
}

TEST_F(ClassificationDataTest, RegressionLabelsAreFloats) {
  std::string path =
      write("stsb.jsonl", "{\"text_a\": \"a\", \"text_b\": \"b\", \"label\": "
                          "3.25}\n{\"text_a\": \"c\", \"text_b\": \"d\", "
                          "\"label\": -1}\n");
  auto data = load(path, 1);
  ASSERT_TRUE(data.ok()) << data.message();
  EXPECT_TRUE(data->isRegression());
  ClassificationBatch batch = data->batch(0, 3, 8);
  EXPECT_EQ(batch.targets, (std::vector<float>{3.25f, -1.0f, 0.0f}));
  EXPECT_EQ(batch.exampleWeights, (std::vector<float>{1, 1, 0}));
  std::vector<io::HostTensor> tensors = batch.tensors();
  ASSERT_EQ(tensors.size(), 4u);
  EXPECT_EQ(tensors[2].name, "labels");
  EXPECT_EQ(tensors[2].dtype, io::DType::F32);
  EXPECT_EQ(tensors[2].as<float>()[0], 3.25f);
}

TEST_F(ClassificationDataTest, ClassificationTensors) {
  std::string path = write("two.jsonl", "{\"text\": \"a\", \"label\": 1}\n");
  auto data = load(path, 2);
  ASSERT_TRUE(data.ok()) << data.message();
  std::vector<io::HostTensor> tensors = data->batch(0, 2, 6).tensors();
  std::vector<std::string> names;
  for (const auto &tensor : tensors)
    names.push_back(tensor.name + " " + io::dtypeName(tensor.dtype) + " " +
                    io::formatShape(tensor.shape));
  EXPECT_EQ(names, (std::vector<std::string>{
                       "input_ids I32 [2, 6]", "type_ids I32 [2, 6]",
                       "labels I32 [2]", "example_weights F32 [2]"}));
  EXPECT_EQ(tensors[2].as<int32_t>()[0], 1);
}

TEST_F(ClassificationDataTest, EpochOrderIsASeededPermutation) {
  std::string lines;
  for (int i = 0; i < 20; ++i)
    lines += "{\"text\": \"cat\", \"label\": " + std::to_string(i % 2) + "}\n";
  auto data = load(write("many.jsonl", lines), 2);
  ASSERT_TRUE(data.ok()) << data.message();
  std::vector<int64_t> order = data->epochOrder(4, 0);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(20);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_EQ(order, data->epochOrder(4, 0));
  EXPECT_NE(order, data->epochOrder(4, 1));
  EXPECT_NE(order, data->epochOrder(5, 0));
  ClassificationBatch batch = data->batch(0, 4, 4, order);
  for (int r = 0; r < 4; ++r)
    EXPECT_EQ(batch.classLabels[r], order[r] % 2);
}

TEST_F(ClassificationDataTest, ErrorsNameFileLineAndProblem) {
  std::string path = DataEnv::get().file("bad.jsonl");
  EXPECT_THAT(error("{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", "),
              HasSubstr(path + ":2: bad JSON: "));
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": 1e400}\n"),
            path + ":1: bad JSON: number overflow parsing '1e400'");
  EXPECT_EQ(error("{\"text\": \"a\"}\n"), path + ":1: missing key 'label'");
  EXPECT_EQ(error("{\"sentence\": \"a\", \"label\": 0}\n"),
            path + ":1: missing key 'text' (or 'text_a' and 'text_b')");
  EXPECT_EQ(error("{\"text_a\": \"a\", \"label\": 0}\n"),
            path + ":1: missing key 'text_b'");
  EXPECT_EQ(error("{\"text\": 5, \"label\": 0}\n"),
            path + ":1: 'text' is not a string");
  EXPECT_EQ(error("[1, 2]\n"), path + ":1: the example is not a JSON object");
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": 0}\n"
                  "{\"text\": \"a\", \"label\": 2}\n"),
            path + ":2: label 2 is out of range for 2 classes");
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": -1}\n"),
            path + ":1: label -1 is out of range for 2 classes");
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": 1.5}\n"),
            path + ":1: label 1.5 is not an integer class index");
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": \"high\"}\n", 1),
            path + ":1: regression label \"high\" is not a number");
  EXPECT_EQ(error("\n\n"), path + ": no examples");
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": 0}\n", 0),
            path + ": n_classes 0 is not positive");
}

TEST_F(ClassificationDataTest, RefusesLabelsOutsideTheirTypesRange) {
  std::string path = DataEnv::get().file("bad.jsonl");
  // Above the int64 range: named as written, not wrapped to -1.
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": 18446744073709551615}\n"),
            path + ":1: label 18446744073709551615 is out of range for 2 "
                   "classes");
  // Beyond the float range: no infinite regression target.
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": -1e39}\n", 1),
            path + ":1: regression label -1e+39 is beyond the range of 32-bit "
                   "floats");
  auto data = load(write("edge.jsonl", "{\"text\": \"a\", \"label\": "
                                       "3.4028234663852886e38}\n"),
                   1);
  ASSERT_TRUE(data.ok()) << data.message();
  EXPECT_EQ(data->all()[0].label, std::numeric_limits<float>::max());
}

TEST_F(ClassificationDataTest, RefusesExamplesNestedTooDeep) {
  // Printing the label for the message would recurse once per level and
  // exhaust the stack.
  std::string path = DataEnv::get().file("bad.jsonl");
  std::string nested = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(error("{\"text\": \"a\", \"label\": 0}\n"
                  "{\"text\": \"a\", \"label\": " +
                  nested + "}\n"),
            path + ":2: the example nests arrays and objects deeper than 256 "
                   "levels (at byte offset 278)");
}

} // namespace
} // namespace mixer::data::test
