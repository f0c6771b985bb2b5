//===- JsonLocator.cpp - Source positions of JSON values ------------------===//

#include "frontend/JsonLocator.h"
#include "runtime/support/Utf8.h"

#include <charconv>
#include <cstdint>
#include <unordered_set>

namespace mixer {

namespace {

bool isContinuationByte(unsigned char c) { return (c & 0xC0) == 0x80; }

/// Walks a text keeping line and column in step with the byte offset.
class Cursor {
public:
  explicit Cursor(std::string_view text) : text(text) {}

  bool atEnd() const { return loc.offset >= text.size(); }
  char peek() const { return atEnd() ? '\0' : text[loc.offset]; }
  const SourceLocation &location() const { return loc; }
  size_t offset() const { return loc.offset; }
  std::string_view slice(size_t begin) const {
    return text.substr(begin, loc.offset - begin);
  }

  void advance() {
    if (atEnd())
      return;
    unsigned char c = text[loc.offset++];
    if (c == '\n') {
      ++loc.line;
      loc.column = 1;
    } else if (!isContinuationByte(c)) {
      ++loc.column;
    }
  }

  void skipWhitespace() {
    while (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')
      advance();
  }

  /// Consumes `c` if it is next.
  bool consume(char c) {
    if (atEnd() || peek() != c)
      return false;
    advance();
    return true;
  }

private:
  std::string_view text;
  SourceLocation loc;
};

std::optional<uint32_t> readHex4(Cursor &cur) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    char c = cur.peek();
    uint32_t digit;
    if (c >= '0' && c <= '9')
      digit = c - '0';
    else if (c >= 'a' && c <= 'f')
      digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      digit = c - 'A' + 10;
    else
      return std::nullopt;
    value = value * 16 + digit;
    cur.advance();
  }
  return value;
}

/// Reads a string literal (the cursor is on its opening quote) and returns
/// its decoded contents, or nothing if the literal is malformed.
std::optional<std::string> readString(Cursor &cur) {
  if (!cur.consume('"'))
    return std::nullopt;
  std::string out;
  while (!cur.atEnd()) {
    char c = cur.peek();
    if (c == '"') {
      cur.advance();
      return out;
    }
    if (c != '\\') {
      out += c;
      cur.advance();
      continue;
    }
    cur.advance();
    char e = cur.peek();
    cur.advance();
    switch (e) {
    case '"':
    case '\\':
    case '/':
      out += e;
      break;
    case 'b':
      out += '\b';
      break;
    case 'f':
      out += '\f';
      break;
    case 'n':
      out += '\n';
      break;
    case 'r':
      out += '\r';
      break;
    case 't':
      out += '\t';
      break;
    case 'u': {
      std::optional<uint32_t> cp = readHex4(cur);
      if (!cp)
        return std::nullopt;
      // A high surrogate pairs with the low surrogate escape that follows.
      if (*cp >= 0xD800 && *cp < 0xDC00 && cur.consume('\\') &&
          cur.consume('u')) {
        std::optional<uint32_t> low = readHex4(cur);
        if (!low)
          return std::nullopt;
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
      }
      appendUtf8(out, *cp);
      break;
    }
    default:
      return std::nullopt;
    }
  }
  return std::nullopt;
}

/// Whether a number literal that std::from_chars found out of range is too
/// large (rather than too small) for a double: its decimal exponent is
/// positive.
bool isOverflow(std::string_view literal) {
  size_t i = literal.empty() || literal[0] != '-' ? 0 : 1;
  int64_t exponent = 0;
  bool seenNonZero = false, inFraction = false;
  int64_t integerDigits = 0, fractionZeros = 0;
  for (; i < literal.size(); ++i) {
    char c = literal[i];
    if (c == '.') {
      inFraction = true;
    } else if (c == 'e' || c == 'E') {
      ++i;
      bool negative = i < literal.size() && literal[i] == '-';
      if (i < literal.size() && (literal[i] == '-' || literal[i] == '+'))
        ++i;
      for (; i < literal.size() && exponent < 100000; ++i)
        exponent = exponent * 10 + (literal[i] - '0');
      if (negative)
        exponent = -exponent;
      break;
    } else if (!seenNonZero && c == '0') {
      if (inFraction)
        ++fractionZeros;
    } else {
      seenNonZero = true;
      if (!inFraction)
        ++integerDigits;
    }
  }
  // Decimal exponent of the first nonzero digit, plus one.
  int64_t leading = integerDigits > 0 ? integerDigits : -fractionZeros;
  return leading + exponent > 0;
}

/// Containers nested deeper than this are skipped whole: their inner values
/// are not indexed (a lookup finds the container), which keeps the index
/// linear in the text size. Models nest four levels deep.
constexpr size_t kMaxIndexedDepth = 64;

/// Skips the container that starts at the cursor, strings included.
void skipContainer(Cursor &cur) {
  size_t depth = 0;
  while (!cur.atEnd()) {
    char c = cur.peek();
    if (c == '"') {
      if (!readString(cur))
        return;
      continue;
    }
    cur.advance();
    if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return;
    }
  }
}

struct Frame {
  bool isObject;
  std::string pointer;
  size_t nextIndex = 0;
  std::unordered_set<std::string> keys;
};

} // namespace

SourceLocation locateOffset(std::string_view text, size_t offset) {
  Cursor cur(text);
  while (cur.offset() < offset && !cur.atEnd())
    cur.advance();
  return cur.location();
}

std::string escapePointerToken(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

JsonLocator::JsonLocator(std::string_view text) {
  Cursor cur(text);
  std::vector<Frame> stack;
  std::string pointer;
  std::optional<SourceLocation> keyLoc;

  // Each iteration reads one value at `pointer`, then the punctuation after
  // it up to the start of the next value.
  while (true) {
    cur.skipWhitespace();
    char c = cur.peek();
    // Stop at anything that cannot start a value, the end included.
    if (std::string_view("{[\"-0123456789tfn").find(c) ==
        std::string_view::npos)
      return;
    // A repeated key replaces the earlier value, as in the JSON parser.
    entries.insert_or_assign(pointer, Entry{cur.location(), keyLoc});
    bool opened = false;
    if ((c == '{' || c == '[') && stack.size() >= kMaxIndexedDepth) {
      skipContainer(cur);
    } else if (c == '{' || c == '[') {
      cur.advance();
      stack.push_back(Frame{c == '{', pointer, 0, {}});
      cur.skipWhitespace();
      opened = !cur.consume(c == '{' ? '}' : ']');
      if (!opened)
        stack.pop_back();
    } else if (c == '"') {
      if (!readString(cur))
        return;
    } else {
      SourceLocation start = cur.location();
      while (!cur.atEnd() && std::string_view(",]} \t\r\n").find(cur.peek()) ==
                                 std::string_view::npos)
        cur.advance();
      std::string_view literal = cur.slice(start.offset);
      double value;
      auto [end, ec] = std::from_chars(literal.data(),
                                       literal.data() + literal.size(), value);
      if (ec == std::errc::result_out_of_range && isOverflow(literal))
        overflows.push_back({pointer, std::string(literal), start});
    }

    // Move to the next value, closing finished containers on the way.
    bool expectKey = false;
    if (opened) {
      expectKey = stack.back().isObject;
    } else {
      while (true) {
        if (stack.empty())
          return;
        cur.skipWhitespace();
        Frame &top = stack.back();
        if (cur.consume(',')) {
          expectKey = top.isObject;
          break;
        }
        if (!cur.consume(top.isObject ? '}' : ']'))
          return;
        stack.pop_back();
      }
    }
    Frame &top = stack.back();
    if (!expectKey) {
      pointer = top.pointer + "/" + std::to_string(top.nextIndex++);
      keyLoc.reset();
      continue;
    }
    cur.skipWhitespace();
    SourceLocation keyStart = cur.location();
    std::optional<std::string> key = readString(cur);
    if (!key)
      return;
    cur.skipWhitespace();
    if (!cur.consume(':'))
      return;
    pointer = top.pointer + "/" + escapePointerToken(*key);
    keyLoc = keyStart;
    if (!top.keys.insert(*key).second)
      duplicates.push_back({pointer, *key, keyStart});
  }
}

const JsonLocator::Entry *JsonLocator::find(const std::string &pointer) const {
  auto it = entries.find(pointer);
  return it == entries.end() ? nullptr : &it->second;
}

SourceLocation JsonLocator::valueLocation(const std::string &pointer) const {
  std::string p = pointer;
  while (true) {
    if (const Entry *e = find(p))
      return e->value;
    size_t slash = p.rfind('/');
    if (slash == std::string::npos)
      return SourceLocation();
    p.resize(slash);
  }
}

SourceLocation JsonLocator::keyLocation(const std::string &pointer) const {
  if (const Entry *e = find(pointer))
    if (e->key)
      return *e->key;
  return valueLocation(pointer);
}

} // namespace mixer
