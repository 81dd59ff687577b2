// digest.h — SHA-256 and HMAC-SHA256 (OpenSSL), hex-encoded (or base64).
#pragma once

#include <string>
#include <string_view>

namespace stackflip {

std::string sha256_hex(std::string_view data);
// Base64 of the raw digest, as a Content-Security-Policy hash source wants it.
std::string sha256_base64(std::string_view data);
std::string hmac_sha256_hex(std::string_view key, std::string_view data);
// Compares without an early exit, so the time taken does not reveal where
// two secrets differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace stackflip
