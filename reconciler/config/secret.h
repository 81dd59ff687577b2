// secret.h — `${env:NAME}` and `${file:PATH}` references.
//
// Secrets never appear literally in a config: the loader rejects a literal in
// a secret field, and drivers resolve references only when they connect, so
// validate and plan need no secrets. Which references a config may use, and
// where each may be sent, is the host's decision (host_policy.h). Every value
// resolved is remembered for redaction (util/redact.h, redact()), and never put into an
// error message.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace stackflip {

// A `${file:}` secret is a regular file of at most this many bytes.
constexpr size_t kMaxSecretFileBytes = 64 * 1024;

// Reads a regular file of at most `max_bytes`, opened without blocking (a
// FIFO or a device is refused, never waited on or read forever). Errors:
// "<path>: <strerror>", "<path> is not a regular file", "<path> is N bytes;
// at most M are read". For every file whose name comes from outside.
Result<std::string> read_regular_file(const std::string& path, size_t max_bytes);

// True when `value` is exactly one reference of either form.
bool is_secret_reference(const std::string& value);

// Resolves a reference: the environment variable's value, or the file's
// contents without a trailing newline (a regular file, opened without
// blocking so a FIFO cannot hang the caller, at most kMaxSecretFileBytes).
// Errors name the variable or path, never a value. A value that is not a
// reference is an error. Host-side references (flags such as --git-token)
// use this form.
Result<std::string> resolve_secret(const std::string& reference);

// Resolves a reference from a config, to be sent to `origins` (see
// host_policy.h for their form). When a host policy is installed the
// reference must be granted and bound to every origin; otherwise this is
// resolve_secret().
Result<std::string> resolve_secret_for(const std::string& reference,
                                       const std::vector<std::string>& origins);

}  // namespace stackflip
