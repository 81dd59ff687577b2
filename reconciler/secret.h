// secret.h — `${env:NAME}` and `${file:PATH}` references.
//
// Secrets never appear literally in a config: the loader rejects a literal in
// a secret field, and drivers resolve references only when they connect, so
// validate and plan need no secrets. Resolved values must never be logged or
// put into error messages; `redact()` helps with strings that may hold them.
#pragma once

#include <string>

#include "result.h"

namespace stackflip {

// True when `value` is exactly one reference of either form.
bool is_secret_reference(const std::string& value);

// Resolves a reference: the environment variable's value, or the file's
// contents without a trailing newline. Errors name the variable or path,
// never a value. A value that is not a reference is an error.
Result<std::string> resolve_secret(const std::string& reference);

}  // namespace stackflip
