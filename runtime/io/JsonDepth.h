//===- JsonDepth.h - A bound on the nesting of JSON input -------*- C++ -*-===//
//
// nlohmann::json parses without recursion, but copies, compares and prints
// values recursively: a document of a few hundred KiB of '[' exhausts the
// stack there. The readers of JSON input check its nesting first; no file of
// the project nests deeper than a few levels.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_IO_JSONDEPTH_H
#define MIXER_RUNTIME_IO_JSONDEPTH_H

#include "runtime/support/Status.h"

#include <cstddef>
#include <string>
#include <string_view>

namespace mixer::io {

/// The deepest nesting of arrays and objects a reader accepts.
inline constexpr size_t kMaxJsonDepth = 256;

/// Fails when `text` nests arrays and objects deeper than kMaxJsonDepth, with
/// the message "<subject> nests arrays and objects deeper than 256 levels (at
/// byte offset N)". Brackets inside strings do not count; whether `text` is
/// JSON at all is left to the parser.
Status checkJsonDepth(std::string_view text, const std::string &subject);

} // namespace mixer::io

#endif // MIXER_RUNTIME_IO_JSONDEPTH_H
