//===- JsonLocatorTest.cpp - Source positions of JSON values --------------===//

#include "frontend/JsonLocator.h"

#include <gtest/gtest.h>

#include <string>

namespace mixer {
namespace {

std::string at(const SourceLocation &loc) {
  return std::to_string(loc.line) + ":" + std::to_string(loc.column);
}

TEST(JsonLocatorTest, ValuesAndKeys) {
  const char *text = "{\n"
                     "  \"a\": 1,\n"
                     "  \"b\": {\"c\": [10, {\"d\": null}], \"e\": \"x\"}\n"
                     "}";
  JsonLocator loc(text);
  EXPECT_EQ(at(loc.valueLocation("")), "1:1");
  EXPECT_EQ(at(loc.valueLocation("/a")), "2:8");
  EXPECT_EQ(at(loc.keyLocation("/a")), "2:3");
  EXPECT_EQ(at(loc.valueLocation("/b")), "3:8");
  EXPECT_EQ(at(loc.valueLocation("/b/c")), "3:14");
  EXPECT_EQ(at(loc.keyLocation("/b/c")), "3:9");
  EXPECT_EQ(at(loc.valueLocation("/b/c/0")), "3:15");
  EXPECT_EQ(at(loc.valueLocation("/b/c/1")), "3:19");
  EXPECT_EQ(at(loc.valueLocation("/b/c/1/d")), "3:25");
  EXPECT_EQ(at(loc.valueLocation("/b/e")), "3:38");
  // Array elements have no key: their value position stands in.
  EXPECT_EQ(at(loc.keyLocation("/b/c/0")), "3:15");
  EXPECT_EQ(loc.find("/b/c/2"), nullptr);
  EXPECT_TRUE(loc.duplicateKeys().empty());
}

TEST(JsonLocatorTest, MissingPointerFallsBackToAncestor) {
  JsonLocator loc("{\"a\": {\"b\": 1}}");
  EXPECT_EQ(at(loc.valueLocation("/a/zzz")), "1:7");
  EXPECT_EQ(at(loc.valueLocation("/x/y")), "1:1");
}

TEST(JsonLocatorTest, EscapedKeysBecomePointerTokens) {
  JsonLocator loc(R"({"a/b": 1, "m~n": 2, "\u00e9\n": 3, "\ud83d\ude00": 4})");
  EXPECT_EQ(at(loc.valueLocation("/a~1b")), "1:9");
  EXPECT_EQ(at(loc.valueLocation("/m~0n")), "1:19");
  ASSERT_NE(loc.find("/\xC3\xA9\n"), nullptr);
  EXPECT_EQ(at(loc.valueLocation("/\xC3\xA9\n")), "1:34");
  ASSERT_NE(loc.find("/\xF0\x9F\x98\x80"), nullptr);
  EXPECT_EQ(escapePointerToken("~/x"), "~0~1x");
}

TEST(JsonLocatorTest, ColumnsCountCharacters) {
  // "é" is two bytes but one column.
  JsonLocator loc("{\"s\": \"\xC3\xA9\xC3\xA9\", \"t\": 1}");
  EXPECT_EQ(at(loc.valueLocation("/t")), "1:18");
  EXPECT_EQ(loc.valueLocation("/t").offset, 19u);
  EXPECT_EQ(at(locateOffset("ab\ncd\xC3\xA9x", 7)), "2:4");
}

TEST(JsonLocatorTest, DuplicateKeys) {
  JsonLocator loc("{\"a\": 1,\n \"a\": {\"b\": 2}}");
  ASSERT_EQ(loc.duplicateKeys().size(), 1u);
  const JsonLocator::DuplicateKey &d = loc.duplicateKeys()[0];
  EXPECT_EQ(d.pointer, "/a");
  EXPECT_EQ(d.key, "a");
  EXPECT_EQ(at(d.location), "2:2");
  // The later value wins, as in the JSON parser.
  EXPECT_EQ(at(loc.valueLocation("/a")), "2:7");
  EXPECT_EQ(at(loc.valueLocation("/a/b")), "2:13");
}

TEST(JsonLocatorTest, NumberOverflow) {
  JsonLocator loc("{\"a\": [1e5, -2e999, 1e-999, 0.00001e315]}");
  ASSERT_EQ(loc.numberOverflows().size(), 2u);
  EXPECT_EQ(loc.numberOverflows()[0].pointer, "/a/1");
  EXPECT_EQ(loc.numberOverflows()[0].literal, "-2e999");
  EXPECT_EQ(at(loc.numberOverflows()[0].location), "1:13");
  EXPECT_EQ(loc.numberOverflows()[1].pointer, "/a/3");
}

TEST(JsonLocatorTest, StopsQuietlyOnMalformedText) {
  JsonLocator loc("{\"a\": [1, 2,, \"b\": ");
  EXPECT_EQ(at(loc.valueLocation("/a/1")), "1:11");
  EXPECT_EQ(loc.find("/a/2"), nullptr);
  JsonLocator empty("");
  EXPECT_EQ(empty.find(""), nullptr);
  JsonLocator unterminated("{\"a\": \"abc");
  EXPECT_EQ(at(unterminated.valueLocation("/a")), "1:7");
}

} // namespace
} // namespace mixer
