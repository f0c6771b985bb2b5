//===- MsgpackTest.cpp - MessagePack reading and writing ------------------===//

#include "runtime/io/Msgpack.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

using namespace mixer::io;
using Kind = MsgpackValue::Kind;

namespace {

std::vector<uint8_t> bytes(std::initializer_list<int> list) {
  std::vector<uint8_t> out;
  for (int b : list)
    out.push_back(static_cast<uint8_t>(b));
  return out;
}

/// Parses a copy of `data` kept alive for the whole test program (parsed
/// values point into their buffer).
mixer::Expected<MsgpackValue> parse(const std::vector<uint8_t> &data) {
  static std::deque<std::vector<uint8_t>> buffers;
  const std::vector<uint8_t> &kept = buffers.emplace_back(data);
  return parseMsgpack("x.msgpack", kept.data(), kept.size());
}

mixer::Expected<MsgpackValue> parse(const std::string &data) {
  return parse(std::vector<uint8_t>(data.begin(), data.end()));
}

// Encodings written out by hand from the format's specification.
TEST(MsgpackTest, ParsesTheSpecificationsEncodings) {
  auto v = parse(
      bytes({0x83, 0xa1, 'a',  0x01, 0xa1, 'b', 0xd0, 0x9c, 0xa1, 'c', 0x92,
             0xcb, 0x3f, 0xf8, 0,    0,    0,   0,    0,    0,    0xc3}));
  ASSERT_TRUE(v.ok()) << v.message();
  ASSERT_EQ(v->kind, Kind::Map);
  ASSERT_EQ(v->entries.size(), 3u);
  EXPECT_EQ(v->find("a")->integer, 1);
  EXPECT_EQ(v->find("b")->integer, -100);
  const MsgpackValue *c = v->find("c");
  ASSERT_EQ(c->kind, Kind::Array);
  EXPECT_EQ(c->items[0].real, 1.5);
  EXPECT_TRUE(c->items[1].boolean);
  EXPECT_EQ(v->find("d"), nullptr);

  auto big =
      parse(bytes({0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE(big->isUnsigned);
  EXPECT_EQ(big->unsignedValue, UINT64_MAX);
  auto negative = parse(bytes({0xf0}));
  EXPECT_EQ(negative->integer, -16);
  auto int32 = parse(bytes({0xd2, 0xff, 0xff, 0xff, 0xfe}));
  EXPECT_EQ(int32->integer, -2);
  auto float32 = parse(bytes({0xca, 0x3f, 0x80, 0, 0}));
  EXPECT_EQ(float32->real, 1.0);
  auto ext = parse(bytes({0xc7, 0x03, 0x01, 'x', 'y', 'z'}));
  ASSERT_EQ(ext->kind, Kind::Ext);
  EXPECT_EQ(ext->extType, 1);
  EXPECT_EQ(ext->text(), "xyz");
  auto fixext = parse(bytes({0xd5, 0x03, 0x10, 0x20}));
  EXPECT_EQ(fixext->extType, 3);
  EXPECT_EQ(fixext->size, 2u);
  auto bin = parse(bytes({0xc4, 0x02, 0x00, 0xff}));
  ASSERT_EQ(bin->kind, Kind::Bin);
  EXPECT_EQ(bin->size, 2u);
  EXPECT_EQ(bin->bytes[1], 0xff);
}

TEST(MsgpackTest, WriterUsesTheSmallestEncodingAndRoundTrips) {
  MsgpackWriter w;
  w.integer(5);
  EXPECT_EQ(w.bytes(), std::string("\x05", 1));
  MsgpackWriter tree;
  tree.map(2);
  tree.str("shape");
  tree.array(3);
  tree.integer(300);
  tree.integer(-200);
  tree.integer(int64_t(1) << 40);
  tree.str(std::string(40, 's'));
  std::string payload(300, 'p');
  tree.ext(1, payload);
  auto v = parse(tree.bytes());
  ASSERT_TRUE(v.ok()) << v.message();
  const MsgpackValue *shape = v->find("shape");
  ASSERT_NE(shape, nullptr);
  EXPECT_EQ(shape->items[0].integer, 300);
  EXPECT_EQ(shape->items[1].integer, -200);
  EXPECT_EQ(shape->items[2].integer, int64_t(1) << 40);
  const MsgpackValue *ext = v->find(std::string(40, 's'));
  ASSERT_NE(ext, nullptr);
  EXPECT_EQ(ext->extType, 1);
  EXPECT_EQ(ext->text(), payload);
  // 300 is uint16 (0xcd), -200 int16 (0xd1).
  EXPECT_NE(tree.bytes().find("\xcd\x01\x2c"), std::string::npos);
  EXPECT_NE(tree.bytes().find("\xd1\xff\x38"), std::string::npos);
  MsgpackWriter many;
  many.array(70000);
  for (int i = 0; i < 70000; ++i)
    many.nil();
  auto list = parse(many.bytes());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), 70000u);
}

TEST(MsgpackTest, RefusesTruncatedAndCorruptData) {
  auto str = parse(bytes({0x81, 0xa1, 'a', 0xd9, 0x10, 'x'}));
  ASSERT_FALSE(str.ok());
  EXPECT_EQ(str.message(), "x.msgpack: byte 3: truncated msgpack (a string of "
                           "16 bytes runs past the end at byte 6)");
  auto count = parse(bytes({0xdd, 0x7f, 0xff, 0xff, 0xff, 0xc0}));
  ASSERT_FALSE(count.ok());
  EXPECT_NE(count.message().find("an array of 2147483647 elements cannot fit"),
            std::string::npos);
  auto undefined = parse(bytes({0x91, 0xc1}));
  ASSERT_FALSE(undefined.ok());
  EXPECT_EQ(undefined.message(),
            "x.msgpack: byte 1: corrupt msgpack (type byte 0xc1 is not "
            "defined)");
  auto trailing = parse(bytes({0x01, 0x02}));
  ASSERT_FALSE(trailing.ok());
  EXPECT_EQ(trailing.message(),
            "x.msgpack: byte 1: corrupt msgpack (1 bytes follow the value)");
  auto empty = parse(std::vector<uint8_t>{});
  EXPECT_FALSE(empty.ok());
  auto number = parse(bytes({0xcb, 0x00}));
  ASSERT_FALSE(number.ok());
  EXPECT_NE(number.message().find("truncated msgpack"), std::string::npos);
  std::vector<uint8_t> deep(kMsgpackMaxDepth + 1, 0x91);
  deep.push_back(0xc0);
  auto nested = parse(deep);
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.message().find("nested deeper than 64 levels"),
            std::string::npos);
}

} // namespace
