// Errors as values: library calls that can fail return Result<T> (or Status), which the caller
// cannot silently drop. Exceptions stay at the outer edge (main, config loading).
//
//   Result<Model> m = read_safetensors(path);
//   if (!m) return m.error();                                      // propagate
//   if (n == 0) return make_error(ErrorCode::invalid_argument, "n is 0");
//   if (s.error().code == ErrorCode::cancelled) ...                // decide by code, not text
//   use(m.value());
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace federa {

// What a caller should do about an error, in the spirit of absl::StatusCode. The message says
// what happened to a person; the code tells the program how to react.
enum class ErrorCode {
  unknown,              // no better code applies; treat like internal
  invalid_argument,     // the input is wrong whatever the state: do not retry as is
  failed_precondition,  // the system is not in a state for this: fix the state first
  not_found,            // a named thing (file, member, round) does not exist
  already_exists,       // creating something that is there already
  permission_denied,    // authenticated, but not allowed
  unauthenticated,      // no valid credentials
  resource_exhausted,   // a quota, limit or memory ran out: retry later or with less
  unavailable,          // transient (peer gone, network down): retry with backoff
  deadline_exceeded,    // a timeout passed before the work finished
  cancelled,            // the caller asked to stop (SIGTERM, stop())
  aborted,              // a concurrent change or protocol abort: retry the whole operation
  data_loss,            // unrecoverable corruption of stored state
  internal,             // a broken invariant: a bug
};

std::string_view error_code_name(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::unknown;
  std::string message;
};

inline Error make_error(std::string message) {
  return Error{ErrorCode::unknown, std::move(message)};
}
inline Error make_error(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}
  static Status success() { return Status(); }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  ErrorCode code() const { return error_.code; }
  const std::string& message() const { return error_.message; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace federa
