//===- JsonDepth.cpp - A bound on the nesting of JSON input ---------------===//

#include "runtime/io/JsonDepth.h"

namespace mixer::io {

Status checkJsonDepth(std::string_view text, const std::string &subject) {
  size_t depth = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        return Status::error(
            subject + " nests arrays and objects deeper than " +
            std::to_string(kMaxJsonDepth) + " levels (at byte offset " +
            std::to_string(i) + ")");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return Status::success();
}

} // namespace mixer::io
