//===- SafetensorsTest.cpp - dtypes and the safetensors format ------------===//

#include "IOTestUtil.h"

#include "runtime/io/TensorFiles.h"

using namespace mixer::io;
using namespace mixer::io::test;
using mixer::Status;

namespace {

struct DTypeRow {
  DType dtype;
  const char *name;
  int64_t size;
};
/// The safetensors dtype names and element sizes.
const DTypeRow kDTypeRows[] = {
    {DType::Bool, "BOOL", 1},      {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},          {DType::F8E5M2, "F8_E5M2", 1},
    {DType::F8E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},        {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},      {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},        {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},        {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
};

TEST(DTypeTest, NamesAndSizes) {
  for (const DTypeRow &row : kDTypeRows) {
    EXPECT_EQ(dtypeSize(row.dtype), row.size) << row.name;
    EXPECT_STREQ(dtypeName(row.dtype), row.name);
    DType parsed = DType::Bool;
    ASSERT_TRUE(parseDTypeName(row.name, parsed)) << row.name;
    EXPECT_EQ(parsed, row.dtype) << row.name;
  }
  DType unchanged = DType::I64;
  EXPECT_FALSE(parseDTypeName("F33", unchanged));
  EXPECT_FALSE(parseDTypeName("f32", unchanged));
  EXPECT_EQ(unchanged, DType::I64);
}

TEST(DTypeTest, NumelAndFormatShape) {
  HostTensor t;
  EXPECT_EQ(t.numel(), 1);
  t.shape = {8, 512};
  EXPECT_EQ(t.numel(), 4096);
  t.shape = {3, 0, 2};
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(formatShape({8, 512}), "[8, 512]");
  EXPECT_EQ(formatShape({7}), "[7]");
  EXPECT_EQ(formatShape({}), "[]");
}

class SafetensorsTest : public TempDirTest {
protected:
  /// Writes a hand-made file: the header length, `header`, then `data`.
  std::string craft(const std::string &header, const std::string &data = "") {
    std::string path = file("crafted.safetensors");
    writeBytes(path, le<uint64_t>(header.size()) + header + data);
    return path;
  }
  /// Expects reading `path` to fail with a message containing `substring`.
  void expectError(const std::string &path, const std::string &substring) {
    auto result = readSafetensors(path);
    ASSERT_FALSE(result.ok()) << "expected an error containing: " << substring;
    EXPECT_NE(result.message().find(substring), std::string::npos)
        << result.message();
    EXPECT_EQ(result.message().rfind(path + ": ", 0), 0u) << result.message();
  }
};

TEST_F(SafetensorsTest, RoundTripsEveryDTypeWithMetadata) {
  std::vector<HostTensor> tensors;
  int seed = 0;
  for (const DTypeRow &row : kDTypeRows)
    tensors.push_back(patternTensor(std::string("encoder/") + row.name,
                                    row.dtype, {2, 3}, ++seed));
  tensors.push_back(patternTensor("scalar", DType::F32, {}, 40));
  tensors.push_back(patternTensor("empty", DType::F32, {0, 4}, 41));
  tensors.push_back(patternTensor("last", DType::I64, {5}, 42));
  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"step", "1200"}};
  std::string path = file("all.safetensors");
  ASSERT_TRUE(writeSafetensors(path, tensors, metadata).ok());

  std::map<std::string, std::string> readMetadata;
  auto read = readSafetensors(path, readMetadata);
  ASSERT_TRUE(read.ok()) << read.message();
  ASSERT_EQ(read->size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    expectSameTensor((*read)[i], tensors[i]);
  EXPECT_EQ(readMetadata, metadata);

  // The header is padded so that the data section starts 8-byte aligned.
  std::string bytes = readBytes(path);
  uint64_t headerBytes = 0;
  std::memcpy(&headerBytes, bytes.data(), 8);
  EXPECT_EQ(headerBytes % 8, 0u);
}

TEST_F(SafetensorsTest, WritesTheExpectedBytes) {
  std::string path = file("one.safetensors");
  std::vector<HostTensor> tensors = {
      makeTensor<float>("a", DType::F32, {2}, {1.0f, 2.0f})};
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(header.size(), 54u);
  ASSERT_TRUE(writeSafetensors(path, tensors).ok());
  EXPECT_EQ(readBytes(path), le<uint64_t>(56) + header + "  " + data);

  std::string withMetadata = R"({"__metadata__":{"k":"v"},)" + header.substr(1);
  ASSERT_EQ(withMetadata.size(), 79u);
  ASSERT_TRUE(writeSafetensors(path, tensors, {{"k", "v"}}).ok());
  EXPECT_EQ(readBytes(path), le<uint64_t>(80) + withMetadata + " " + data);
}

TEST_F(SafetensorsTest, ReadsTensorsInDataOrder) {
  // Header order differs from data order; an empty tensor shares offset 4.
  std::string path =
      craft(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
            R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},)"
            R"("e":{"dtype":"F64","shape":[0],"data_offsets":[4,4]}})",
            std::string("\x01\x00\xff\xff\x07\x09", 6));
  auto read = readSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.message();
  ASSERT_EQ(read->size(), 3u);
  EXPECT_EQ((*read)[0].name, "a");
  EXPECT_EQ((*read)[0].as<int16_t>()[0], 1);
  EXPECT_EQ((*read)[0].as<int16_t>()[1], -1);
  EXPECT_EQ((*read)[1].name, "e");
  EXPECT_TRUE((*read)[1].data.empty());
  EXPECT_EQ((*read)[2].name, "b");
  EXPECT_EQ((*read)[2].data, (std::vector<uint8_t>{7, 9}));
}

TEST_F(SafetensorsTest, AcceptsAnEmptyFile) {
  auto read = readSafetensors(craft("{}        "));
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_TRUE(read->empty());
}

TEST_F(SafetensorsTest, RejectsAFileTooShort) {
  std::string path = file("short.safetensors");
  writeBytes(path, "abc");
  expectError(path, "file has 3 bytes, too short for the 8-byte header length");
}

TEST_F(SafetensorsTest, RejectsAHeaderLengthTooLarge) {
  std::string path = file("huge.safetensors");
  writeBytes(path, le<uint64_t>(100000001) + "{}");
  expectError(path, "header length 100000001 exceeds the limit of 100000000");
}

TEST_F(SafetensorsTest, RejectsAHeaderPastTheEndOfTheFile) {
  std::string path = file("cut.safetensors");
  writeBytes(path, le<uint64_t>(100) + "{}");
  expectError(path, "truncated: header length is 100 bytes but only 2 bytes");
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotJson) {
  expectError(craft("{not json}"), "header is not valid JSON");
  expectError(craft("{\"\xff\xfe\": 1}"), "UTF-8");
}

TEST_F(SafetensorsTest, RejectsWhatTheJsonParserWouldSkip) {
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expectError(craft("\xEF\xBB\xBF" + header, "abcd"),
              "header starts with a UTF-8 byte order mark");
  expectError(craft(header + std::string("\0\0", 2), "abcd"),
              "header has a NUL byte at offset " +
                  std::to_string(header.size()));
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotAnObject) {
  expectError(craft("[1, 2]"), "header must be a JSON object, not array");
}

TEST_F(SafetensorsTest, RejectsUnknownDType) {
  expectError(craft(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})",
                    "abcd"),
              "tensor 'w' has unknown dtype 'F33'");
}

TEST_F(SafetensorsTest, RejectsMalformedEntries) {
  expectError(craft(R"({"w":[1]})"), "tensor 'w' must be an object, not array");
  expectError(craft(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd"),
              "tensor 'w' needs a string 'dtype'");
  expectError(
      craft(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,4]}})", "a"),
      "tensor 'w' needs a 'shape' array of non-negative integers");
  expectError(
      craft(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[4,0]}})", "a"),
      "tensor 'w' needs 'data_offsets' [begin, end]");
  expectError(
      craft(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "a"),
      "tensor 'w' needs 'data_offsets' [begin, end]");
}

TEST_F(SafetensorsTest, RejectsOverlappingOffsets) {
  expectError(craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    std::string(12, 'x')),
              "tensor 'b' has data_offsets [4, 12] but the previous tensor "
              "'a' ends at 8: tensors overlap");
}

TEST_F(SafetensorsTest, RejectsGappedOffsets) {
  expectError(
      craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
            std::string(20, 'x')),
      "tensor 'b' has data_offsets [12, 20] but the previous tensor 'a' ends "
      "at 8: gap in the data section");
  expectError(
      craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(12, 'x')),
      "tensor 'a' has data_offsets [4, 12] but the data section starts at 0");
}

TEST_F(SafetensorsTest, RejectsADataSizeMismatch) {
  expectError(
      craft(R"({"encoder/pooler/kernel":{"dtype":"F32","shape":[4,8],)"
            R"("data_offsets":[0,80]}})",
            std::string(80, 'x')),
      "tensor 'encoder/pooler/kernel' has data_offsets [0, 80] but shape "
      "[4, 8] with dtype F32 needs 128 bytes");
}

TEST_F(SafetensorsTest, RejectsAByteSizeThatOverflows) {
  expectError(craft(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],)"
                    R"("data_offsets":[0,0]}})"),
              "tensor 'w' has shape [4611686018427387904, 4] whose byte size "
              "overflows");
}

TEST_F(SafetensorsTest, RejectsTrailingBytes) {
  expectError(
      craft(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "abc"),
      "the tensors cover 2 bytes of data but the data section has 3: 1 "
      "trailing bytes");
}

TEST_F(SafetensorsTest, RejectsTruncatedData) {
  expectError(
      craft(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "ab"),
      "truncated: the tensors need 4 bytes of data but the data "
      "section has 2");
}

TEST_F(SafetensorsTest, RejectsDuplicateNames) {
  expectError(craft(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                    R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                    "ab"),
              "header has the key 'a' twice");
}

TEST_F(SafetensorsTest, RejectsBadMetadata) {
  expectError(craft(R"({"__metadata__":{"k":1}})"),
              "__metadata__ entry 'k' must be a string, not number");
  expectError(craft(R"({"__metadata__":"v"})"),
              "__metadata__ must be an object mapping strings to strings, not "
              "string");
}

TEST_F(SafetensorsTest, ReportsAMissingFile) {
  expectError(file("absent.safetensors"), "cannot open: No such file");
}

TEST_F(SafetensorsTest, WriterRejectsInconsistentTensors) {
  std::string path = file("bad.safetensors");
  HostTensor shortData = patternTensor("w", DType::F32, {2, 2}, 0);
  shortData.data.pop_back();
  Status s = writeSafetensors(path, {shortData});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), path + ": tensor 'w' has 15 bytes of data but shape "
                                "[2, 2] with dtype F32 needs 16");

  s = writeSafetensors(path, {patternTensor("w", DType::U8, {1}, 0),
                              patternTensor("w", DType::U8, {1}, 1)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), path + ": tensor name 'w' is used twice");

  s = writeSafetensors(path,
                       {patternTensor("__metadata__", DType::U8, {1}, 0)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), path + ": tensor name '__metadata__' is reserved");
  EXPECT_FALSE(std::filesystem::exists(path));
}

} // namespace
