// digest.h — SHA-256 and HMAC-SHA256 (OpenSSL), hex-encoded.
#pragma once

#include <string>
#include <string_view>

namespace stackflip {

std::string sha256_hex(std::string_view data);
std::string hmac_sha256_hex(std::string_view key, std::string_view data);
// Compares without an early exit, so the time taken does not reveal where
// two secrets differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace stackflip
