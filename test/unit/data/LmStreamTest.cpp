//===- LmStreamTest.cpp - causal language-model windows -------------------===//

#include "DataTestUtil.h"

#include "runtime/data/LmStream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mixer::data::test {
namespace {

class LmStreamTest : public ::testing::Test {
protected:
  void SetUp() override {
    tokenizer.emplace(loadTokenizer());
    documents = {{"the cat sat on the mat.", "a dog sings softly."},
                 {"far away hills."},
                 {"cold wind blows through trees.", "old house.",
                  "bright stars at night."}};
    path = DataEnv::get().file("lm.txt");
    // Blank lines at the ends and doubled blank lines separate nothing more.
    writeText(path, "\n" + corpusText(documents) + "\n\n");
    // The reference stream: each document's lines, then EOS.
    for (const auto &document : documents) {
      for (const std::string &line : document) {
        std::vector<int32_t> ids = DataEnv::get().ids(line);
        reference.insert(reference.end(), ids.begin(), ids.end());
      }
      reference.push_back(kEos);
    }
  }

  LmStream create(const LmOptions &options) {
    auto lm = LmStream::create(path, *tokenizer, options);
    if (!lm.ok()) {
      ADD_FAILURE() << lm.message();
      std::abort();
    }
    return std::move(*lm);
  }

  std::optional<Tokenizer> tokenizer;
  std::vector<std::vector<std::string>> documents;
  std::string path;
  std::vector<int32_t> reference;
};

TEST_F(LmStreamTest, ConcatenatesDocumentsWithEos) {
  EXPECT_EQ(create({1, 4}).tokens(), reference);
}

TEST_F(LmStreamTest, WindowsShiftLabelsByOneAndWrapAround) {
  const int64_t batch = 3, seq = 7;
  LmStream lm = create({batch, seq});
  size_t n = reference.size();
  // Enough windows to pass the end of the stream more than once.
  int batches = static_cast<int>(2 * n / (batch * (seq + 1))) + 2;
  for (int b = 0; b < batches; ++b) {
    LmBatch lmBatch = lm.next();
    for (int64_t r = 0; r < batch; ++r) {
      size_t start = static_cast<size_t>((b * batch + r) * (seq + 1));
      for (int64_t i = 0; i < seq; ++i) {
        EXPECT_EQ(lmBatch.inputIds[r * seq + i], reference[(start + i) % n])
            << "batch " << b << " row " << r << " token " << i;
        EXPECT_EQ(lmBatch.labels[r * seq + i], reference[(start + i + 1) % n])
            << "batch " << b << " row " << r << " label " << i;
      }
    }
  }
  uint64_t consumed = static_cast<uint64_t>(batches * batch * (seq + 1));
  EXPECT_EQ(lm.position().token, consumed % n);
  EXPECT_EQ(lm.position().epoch, consumed / n);
  EXPECT_EQ(lm.position().counter, static_cast<uint64_t>(batches * batch));
}

TEST_F(LmStreamTest, ResumesFromASerializedPosition) {
  LmOptions options{2, 5};
  LmStream continuous = create(options);
  std::vector<LmBatch> expected;
  for (int i = 0; i < 10; ++i)
    expected.push_back(continuous.next());
  LmStream interrupted = create(options);
  for (int i = 0; i < 5; ++i)
    interrupted.next();
  auto position = DataPosition::fromJson(
      nlohmann::json::parse(interrupted.position().toJson().dump()), "ckpt");
  ASSERT_TRUE(position.ok()) << position.message();
  LmStream resumed = create(options);
  ASSERT_TRUE(resumed.seek(*position).ok());
  for (int i = 5; i < 10; ++i) {
    LmBatch batch = resumed.next();
    EXPECT_EQ(batch.inputIds, expected[i].inputIds) << "batch " << i;
    EXPECT_EQ(batch.labels, expected[i].labels) << "batch " << i;
  }
  EXPECT_EQ(resumed.position(), continuous.position());
}

TEST_F(LmStreamTest, SeekRejectsOffsetsPastTheStream) {
  LmStream lm = create({1, 4});
  DataPosition position;
  position.token = reference.size();
  Status status = lm.seek(position);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "language-model data position: token " +
                                  std::to_string(reference.size()) +
                                  " is past the stream's " +
                                  std::to_string(reference.size()) + " tokens");
  DataPosition withDocument;
  withDocument.document = 1;
  EXPECT_FALSE(lm.seek(withDocument).ok());
}

TEST_F(LmStreamTest, TensorsAreNamedAndShaped) {
  std::vector<io::HostTensor> tensors = create({2, 3}).next().tensors();
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors[0].name, "input_ids");
  EXPECT_EQ(tensors[1].name, "labels");
  EXPECT_EQ(tensors[1].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensors[1].dtype, io::DType::I32);
}

} // namespace
} // namespace mixer::data::test
