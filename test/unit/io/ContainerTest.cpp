//===- ContainerTest.cpp - The artifact container and CRC-64 --------------===//

#include "IOTestUtil.h"

#include "runtime/io/Container.h"
#include "runtime/io/JsonDepth.h"

#include <cstdio>

using namespace mixer::io;
using namespace mixer::io::test;
using mixer::Status;

namespace {

/// Bit-at-a-time CRC-64/XZ, the plain definition.
uint64_t referenceCrc64(const std::string &bytes) {
  uint64_t crc = ~0ULL;
  for (unsigned char c : bytes) {
    crc ^= c;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc >> 1) ^ (0xC96C5795D7870F42ULL & (0 - (crc & 1)));
  }
  return ~crc;
}

std::string hex(uint64_t value) {
  char text[19];
  std::snprintf(text, sizeof text, "0x%016llx",
                static_cast<unsigned long long>(value));
  return text;
}

/// The container layout, assembled independently of the writer.
std::string containerBytes(uint32_t version, const std::string &header,
                           const std::string &payload) {
  std::string bytes = "MIXERMXA" + le<uint32_t>(version) +
                      le<uint64_t>(header.size()) + header +
                      le<uint64_t>(payload.size()) + payload;
  return bytes + le<uint64_t>(referenceCrc64(bytes));
}

const std::string kHeader = R"({"format_version": 1, "steps": []})";
const std::string kPayload("\x00\x01\xff payload \x00", 13);

TEST(Crc64Test, MatchesTheCheckValue) {
  EXPECT_EQ(crc64("123456789", 9), 0x995DC9BBDF1939FAULL);
  EXPECT_EQ(crc64("", 0), 0u);
  // Chaining: the CRC of a prefix continues over the rest.
  EXPECT_EQ(crc64("56789", 5, crc64("1234", 4)), 0x995DC9BBDF1939FAULL);
}

TEST(Crc64Test, MatchesTheBitwiseDefinitionAtEveryLength) {
  std::string bytes;
  for (int i = 0; i < 100; ++i)
    bytes.push_back(static_cast<char>(i * 37 + 11));
  for (size_t length = 0; length <= bytes.size(); ++length)
    EXPECT_EQ(crc64(bytes.data(), length),
              referenceCrc64(bytes.substr(0, length)))
        << "length " << length;
}

class ContainerTest : public TempDirTest {
protected:
  std::string path;
  void SetUp() override {
    TempDirTest::SetUp();
    path = file("sm.mxa");
  }
  void expectError(const std::string &bytes, const std::string &substring) {
    writeBytes(path, bytes);
    auto result = readContainer(path);
    ASSERT_FALSE(result.ok()) << "expected an error containing: " << substring;
    EXPECT_NE(result.message().find(substring), std::string::npos)
        << result.message();
    EXPECT_EQ(result.message().rfind(path + ": ", 0), 0u) << result.message();
  }
};

TEST_F(ContainerTest, RoundTripsWithTheDocumentedLayout) {
  ASSERT_TRUE(writeContainer(path, {kHeader, kPayload}).ok());
  EXPECT_EQ(readBytes(path), containerBytes(1, kHeader, kPayload));
  auto read = readContainer(path);
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_EQ(read->header, kHeader);
  EXPECT_EQ(read->payload, kPayload);

  ASSERT_TRUE(writeContainer(path, {"{}", ""}).ok());
  read = readContainer(path);
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_EQ(read->header, "{}");
  EXPECT_EQ(read->payload, "");
}

TEST_F(ContainerTest, RejectsWrongMagic) {
  std::string bytes = containerBytes(1, kHeader, kPayload);
  bytes[7] = 'B';
  expectError(bytes, "not a mixer artifact (the file does not start with "
                     "\"MIXERMXA\")");
}

TEST_F(ContainerTest, RejectsAnUnsupportedVersion) {
  writeBytes(path, containerBytes(2, kHeader, kPayload));
  auto read = readContainer(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.message(), path + ": container format version 2 is not "
                                   "supported by this build (supports 1)");
}

TEST_F(ContainerTest, RejectsTruncatedFiles) {
  std::string bytes = containerBytes(1, kHeader, kPayload);
  size_t payloadLength = 20 + kHeader.size();
  for (size_t cut : {size_t(0), size_t(5), size_t(12), size_t(19), size_t(20),
                     size_t(30), payloadLength + 4, payloadLength + 8,
                     bytes.size() - 9, bytes.size() - 1})
    expectError(bytes.substr(0, cut), "truncated");

  expectError(bytes.substr(0, 12), "truncated: the file has 12 bytes, fewer "
                                   "than the 20-byte prefix");
  expectError(bytes.substr(0, 30), "truncated: header says 34 bytes but the "
                                   "file has 10 bytes after the prefix");
  expectError(bytes.substr(0, bytes.size() - 1),
              "truncated: payload says 13 bytes but the file has room for 12");
}

TEST_F(ContainerTest, RejectsTrailingBytes) {
  expectError(containerBytes(1, kHeader, kPayload) + "zz",
              "the file has 2 bytes more than its header and payload lengths "
              "account for");
}

TEST_F(ContainerTest, DetectsAFlippedByte) {
  std::string good = containerBytes(1, kHeader, kPayload);
  size_t payloadStart = 20 + kHeader.size() + 8;
  for (size_t at :
       {size_t(25), payloadStart, good.size() - 9, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x10;
    expectError(bad, "checksum mismatch (stored ");
  }
  std::string bad = good;
  bad[payloadStart] ^= 0x10;
  writeBytes(path, bad);
  auto read = readContainer(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.message(),
            path + ": checksum mismatch (stored " +
                hex(referenceCrc64(good.substr(0, good.size() - 8))) +
                ", computed " +
                hex(referenceCrc64(bad.substr(0, bad.size() - 8))) +
                "): the file is corrupt");
}

TEST_F(ContainerTest, RejectsAHeaderNestedTooDeep) {
  // The plan reader prints and copies JSON values recursively.
  std::string deep = R"({"steps": )" + std::string(kMaxJsonDepth, '[') +
                     std::string(kMaxJsonDepth, ']') + "}";
  expectError(containerBytes(1, deep, ""),
              "header nests arrays and objects deeper than 256 levels (at "
              "byte offset 265)");
  Status s = writeContainer(path, {deep, ""});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), path + ": header nests arrays and objects deeper "
                                "than 256 levels (at byte offset 265)");
}

TEST_F(ContainerTest, RejectsAHeaderThatIsNotJson) {
  expectError(containerBytes(1, "{\"steps\": [", kPayload),
              "header is not valid JSON");
  Status s = writeContainer(path, {"not json", ""});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path + ": header is not valid JSON"),
            std::string::npos)
      << s.message();
}

} // namespace
