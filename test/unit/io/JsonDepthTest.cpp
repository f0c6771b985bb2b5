//===- JsonDepthTest.cpp - The bound on the nesting of JSON input ---------===//

#include "runtime/io/JsonDepth.h"

#include <gtest/gtest.h>

using namespace mixer::io;

namespace {

std::string nested(size_t depth, char open, char close) {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonDepthTest, AcceptsNestingUpToTheLimit) {
  EXPECT_TRUE(checkJsonDepth(nested(kMaxJsonDepth, '[', ']'), "x").ok());
  EXPECT_TRUE(checkJsonDepth("", "x").ok());
  // Levels that close again do not add up.
  std::string siblings = nested(kMaxJsonDepth, '[', ']');
  EXPECT_TRUE(
      checkJsonDepth("[" + siblings.substr(1) + "," + siblings.substr(1) + "]",
                     "x")
          .ok());
}

TEST(JsonDepthTest, RefusesTheFirstBracketBeyondTheLimit) {
  std::string text = "{\"a\": " + nested(kMaxJsonDepth, '[', ']') + "}";
  auto s = checkJsonDepth(text, "m.json: the header");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "m.json: the header nests arrays and objects deeper "
                         "than 256 levels (at byte offset 261)");
  EXPECT_FALSE(checkJsonDepth(nested(kMaxJsonDepth + 1, '{', '}'), "x").ok());
}

TEST(JsonDepthTest, IgnoresBracketsInStrings) {
  std::string text = "[\"" + nested(kMaxJsonDepth + 1, '[', '{') + "\"]";
  EXPECT_TRUE(checkJsonDepth(text, "x").ok());
  // An escaped quote does not end the string.
  std::string escaped = "[\"\\\"" + std::string(kMaxJsonDepth + 1, '[') + "\"]";
  EXPECT_TRUE(checkJsonDepth(escaped, "x").ok());
}

} // namespace
