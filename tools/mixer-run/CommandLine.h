//===- CommandLine.h - mixer-run's arguments and errors ---------*- C++ -*-===//
//
// The pieces every mixer-run command shares: parsed arguments, the two kinds
// of failure (usage errors exit with 2, run-time failures with 1) and flag
// value parsing.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TOOLS_MIXER_RUN_COMMANDLINE_H
#define MIXER_TOOLS_MIXER_RUN_COMMANDLINE_H

#include "runtime/support/Status.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

namespace mixer::run {

inline constexpr int kRuntimeFailure = 1;
inline constexpr int kUsageError = 2;

//===----------------------------------------------------------------------===//
// Command lines
//===----------------------------------------------------------------------===//

/// A flag a command accepts.
struct FlagSpec {
  const char *name;  ///< "--seed"
  const char *alias; ///< "-o", or null
  bool takesValue;
  bool repeatable;
};

/// A command's parsed arguments: the artifact and the flags given.
struct Args {
  std::string command;
  std::string artifact;
  std::map<std::string, std::vector<std::string>> flags;

  bool has(const std::string &flag) const { return flags.count(flag) != 0; }
  std::string get(const std::string &flag,
                  const std::string &fallback = "") const {
    auto it = flags.find(flag);
    return it == flags.end() ? fallback : it->second.back();
  }
};

/// Thrown for a usage error; main prints it and exits with 2.
struct UsageError {
  std::string message;
};

/// Thrown for a failure at run time; main prints it and exits with 1.
struct RuntimeFailure {
  std::string message;
};

/// Thrown on a rank of a parallel run whose failure another rank reports
/// (rank 0, when every rank fails alike). main exits silently and with
/// status 0: the reporting rank's status is the job's, and a rank that
/// failed first would have mpirun kill the reporting rank before it speaks.
struct ReportedElsewhere {};

template <typename T> T check(Expected<T> value) {
  if (!value)
    throw RuntimeFailure{value.message()};
  return std::move(*value);
}

inline void check(Status status) {
  if (!status.ok())
    throw RuntimeFailure{status.message()};
}

/// Parses a non-negative integer flag value.
inline uint64_t parseCount(const Args &args, const std::string &flag,
                           uint64_t fallback) {
  if (!args.has(flag))
    return fallback;
  std::string text = args.get(flag);
  char *end = nullptr;
  errno = 0;
  unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE)
    throw UsageError{flag + ": '" + text + "' is not a non-negative integer"};
  return value;
}

/// The lower-case extension of `path` including the dot, or "".
inline std::string extension(const std::string &path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return "";
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return ext;
}

/// Fails with a usage error unless `path` ends in one of `allowed`.
inline void checkExtension(const std::string &flag, const std::string &path,
                           std::initializer_list<const char *> allowed) {
  std::string ext = extension(path);
  std::string list;
  for (const char *candidate : allowed) {
    if (ext == candidate)
      return;
    list += (list.empty() ? "" : ", ") + std::string(candidate);
  }
  throw UsageError{flag + ": '" + path + "' must end in one of " + list};
}

/// "182.36 M" + unit for large counts, "512 " + unit for small ones.
inline std::string formatCount(double value, const char *unit) {
  char text[48];
  if (value >= 1e9)
    std::snprintf(text, sizeof(text), "%.2f G%s", value / 1e9, unit);
  else if (value >= 1e6)
    std::snprintf(text, sizeof(text), "%.2f M%s", value / 1e6, unit);
  else if (value >= 1e3)
    std::snprintf(text, sizeof(text), "%.2f k%s", value / 1e3, unit);
  else
    std::snprintf(text, sizeof(text), "%.0f %s", value, unit);
  return text;
}

} // namespace mixer::run

#endif // MIXER_TOOLS_MIXER_RUN_COMMANDLINE_H
