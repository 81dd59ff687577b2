// strings.h — the small text helpers every layer needs, written once.
//
// All are pure functions of their arguments. Text from configs, providers
// and clients is hostile: escape_control() and trim_for_message() are the
// ways to quote it in a message.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "util/result.h"

namespace stackflip {

// `s` without leading and trailing whitespace (isspace).
std::string trim(std::string_view s);

// `s` with ASCII letters in lower case (host names, DNS names, URL schemes).
std::string to_lower(std::string s);

// ASCII case-insensitive equality (host names, HTTP header names).
bool iequals(std::string_view a, std::string_view b);

// The whole of `text` as a decimal int, or `fallback` when it is empty, not a
// number, has trailing characters or does not fit.
int parse_int(std::string_view text, int fallback);

// The first 12 hex digits of a commit id, as messages show it.
std::string short_sha(std::string_view sha);

// `s` with every C0 control character and DEL written as \t, \n, \r or
// \xHH, and every C1 control character (U+0080..U+009F, which some terminals
// also obey) as \u0080..\u009f. Everything else, including other UTF-8, is
// kept. For any input text quoted in a message.
std::string escape_control(std::string_view s);

// `s` cut to at most `max` bytes with surrounding whitespace removed,
// newlines folded to spaces and other control characters escaped
// (escape_control), for quoting a peer's answer in an error message.
// Percent-encodes all but the unreserved characters of RFC 3986
// (A-Z a-z 0-9 - _ . ~), for a URL's query or path segment.
std::string url_encode(std::string_view v, bool upper_hex = true);

std::string trim_for_message(std::string_view s, size_t max = 200);

// "30s", "5m", "1h", "250ms", "2" (seconds), "1.5s". Errors (saying what
// was expected) for anything else or zero.
Result<std::chrono::milliseconds> parse_duration(const std::string& text);

}  // namespace stackflip
