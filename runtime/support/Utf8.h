//===- Utf8.h - Encoding code points as UTF-8 -------------------*- C++ -*-===//
//
// Header-only, shared by the model JSON reader and the WordPiece tokenizer.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_UTF8_H
#define MIXER_RUNTIME_SUPPORT_UTF8_H

#include <string>

namespace mixer {

/// Appends code point `cp` (at most 0x10FFFF) to `out` as UTF-8.
inline void appendUtf8(std::string &out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_UTF8_H
