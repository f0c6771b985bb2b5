//===- JsonLocator.h - Source positions of JSON values ----------*- C++ -*-===//
//
// nlohmann::json keeps no source positions, so the model parser scans the
// text once more and records where every value (and every object key) starts,
// indexed by JSON pointer. Diagnostics then name file:line:column.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_FRONTEND_JSONLOCATOR_H
#define MIXER_FRONTEND_JSONLOCATOR_H

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mixer {

/// A position in a text: byte offset plus 1-based line and column. Columns
/// count characters (Unicode code points), not bytes.
struct SourceLocation {
  size_t offset = 0;
  unsigned line = 1;
  unsigned column = 1;
};

/// Computes the location of byte `offset` in `text` (clamped to its end).
SourceLocation locateOffset(std::string_view text, size_t offset);

/// Escapes one object key as a JSON pointer reference token (RFC 6901).
std::string escapePointerToken(std::string_view key);

/// Maps every JSON pointer of a document to the position of its value and,
/// for object members, of its key.
class JsonLocator {
public:
  /// Where a value starts, and where its key starts when it is an object
  /// member.
  struct Entry {
    SourceLocation value;
    std::optional<SourceLocation> key;
  };

  /// An object key that occurs a second time in the same object.
  struct DuplicateKey {
    std::string pointer;
    std::string key;
    SourceLocation location; ///< of the repeated key
  };

  /// A number literal too large for a double.
  struct NumberOverflow {
    std::string pointer;
    std::string literal;
    SourceLocation location;
  };

  /// Scans `text`. The scan is meant for text that parses as JSON; on
  /// malformed text it stops at the first unexpected character and keeps what
  /// it recorded up to there.
  explicit JsonLocator(std::string_view text);

  /// The entry of `pointer`, if the document has that value.
  const Entry *find(const std::string &pointer) const;

  /// Location of the value at `pointer`; when the document lacks it, the
  /// location of its nearest existing ancestor (the root at worst).
  SourceLocation valueLocation(const std::string &pointer) const;

  /// Location of the key of the member at `pointer`, or of its value when it
  /// has no key (array elements, the root).
  SourceLocation keyLocation(const std::string &pointer) const;

  /// Repeated keys, in document order.
  const std::vector<DuplicateKey> &duplicateKeys() const { return duplicates; }

  /// Number literals whose magnitude overflows a double, in document order.
  const std::vector<NumberOverflow> &numberOverflows() const {
    return overflows;
  }

private:
  std::unordered_map<std::string, Entry> entries;
  std::vector<DuplicateKey> duplicates;
  std::vector<NumberOverflow> overflows;
};

} // namespace mixer

#endif // MIXER_FRONTEND_JSONLOCATOR_H
