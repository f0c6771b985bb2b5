//===- Status.h - Error values for the runtime ------------------*- C++ -*-===//
//
// The runtime reports every failure as a value: a Status or an Expected<T>
// whose message says what is wrong and where (file, tensor, byte offset). The
// tools print the message and exit non-zero.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_STATUS_H
#define MIXER_RUNTIME_SUPPORT_STATUS_H

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace mixer {

/// Success, or an error with a message.
class [[nodiscard]] Status {
public:
  static Status success() { return Status(); }
  static Status error(std::string message) {
    Status s;
    s.errorMessage = std::move(message);
    return s;
  }
  bool ok() const { return !errorMessage; }
  explicit operator bool() const { return ok(); }
  const std::string &message() const {
    assert(errorMessage && "message() of a successful status");
    return *errorMessage;
  }

private:
  std::optional<std::string> errorMessage;
};

/// A value of type T, or an error message.
template <typename T> class [[nodiscard]] Expected {
public:
  Expected(T value) : value(std::move(value)) {}
  Expected(Status status) : status(std::move(status)) {
    assert(!this->status.ok() && "Expected built from a successful status");
  }
  bool ok() const { return value.has_value(); }
  explicit operator bool() const { return ok(); }
  T &operator*() { return *value; }
  const T &operator*() const { return *value; }
  T *operator->() { return &*value; }
  const T *operator->() const { return &*value; }
  const std::string &message() const { return status.message(); }
  Status takeStatus() { return std::move(status); }

private:
  std::optional<T> value;
  Status status = Status::success();
};

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_STATUS_H
