// result.h — stackflip's one error model.
//
// Expected failures (bad input, an unreachable server, a refused action) are
// values: `Status` when there is nothing to return, `Result<T>` otherwise.
// The message is written for the operator: it says where (file:line:col, the
// HTTP status and body, the SQL error) and what was expected. Exceptions from
// libraries are caught where they arise and converted into these values; the
// only exception that crosses layers is `Fatal`, which `main` turns into a
// message and exit code 1.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace stackflip {

struct Error {
  std::string message;
  bool timeout = false;  // the operation did not finish in time (may be retried)
  // The provider refused for good: asking again cannot change the answer
  // (an HTTP 4xx other than 408/409/423/425/429, a Cloud 66 action that
  // finished unsuccessfully, a PostgreSQL privilege or feature error, a
  // command's documented refusal). apply does not retry it (apply.h).
  bool permanent = false;
  // The provider rejected our credentials or our configuration (HTTP 401 or
  // 403, a PostgreSQL authentication failure): only the operator can fix it,
  // on the host or in the config. It is an error (exit 1), named as such,
  // never "unreachable": exit 3 keeps its one meaning, blocked by a safety
  // guard. Implies `permanent`.
  bool config = false;
  // Not a failure: the operation stopped at a bound it was given and goes
  // on in a later call (traffic.wait under ApplyOptions::wait_slice). apply
  // reports it `interrupted` and does not retry it.
  bool deferred = false;
};

class Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT: implicit on purpose
  static Status Ok() { return {}; }
  bool ok() const { return ok_; }
  const Error& error() const { return error_; }
  const std::string& message() const { return error_.message; }

 private:
  Error error_;
  bool ok_ = true;
};

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT
  Result(Error e) : v_(std::move(e)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }
  Status status() const { return ok() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

inline Error Err(std::string message) { return Error{std::move(message), false}; }
inline Error Timeout(std::string message) { return Error{std::move(message), true}; }
inline Error Refused(std::string message) { return Error{std::move(message), false, true}; }
inline Error ConfigError(std::string message) {
  return Error{std::move(message), false, true, true};
}

// Thrown only to reach main(); carries the message and exit code.
struct Fatal : std::runtime_error {
  explicit Fatal(const std::string& m, int code = 1) : std::runtime_error(m), exit_code(code) {}
  int exit_code;
};

}  // namespace stackflip
