#include "util/strings.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <regex>

namespace stackflip {

namespace {
bool space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
}  // namespace

std::string trim(std::string_view s) {
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  return std::string(s);
}

std::string to_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int parse_int(std::string_view text, int fallback) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  return text.empty() || ec != std::errc() || end != text.data() + text.size() ? fallback : v;
}

std::string short_sha(std::string_view sha) { return std::string(sha.substr(0, 12)); }

std::string escape_control(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      const auto c1 = static_cast<unsigned char>(s[++i]);
      out += "\\u00";
      out += kHex[c1 >> 4];
      out += kHex[c1 & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string trim_for_message(std::string_view s, size_t max) {
  std::string out = trim(s);
  std::replace(out.begin(), out.end(), '\n', ' ');
  std::replace(out.begin(), out.end(), '\r', ' ');
  bool cut = out.size() > max;
  if (cut) out.resize(max);
  // A body is the peer's text: no raw control characters into logs or terminals.
  return escape_control(out) + (cut ? "..." : "");
}

Result<std::chrono::milliseconds> parse_duration(const std::string& text) {
  static const std::regex re(R"(^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$)");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    return Err("invalid duration \"" + text + "\" (expected e.g. 250ms, 30s, 5m, 1h)");
  double v = std::stod(m[1]);
  std::string unit = m[2];
  double ms = unit == "ms" ? v : unit == "m" ? v * 60000 : unit == "h" ? v * 3600000 : v * 1000;
  if (ms < 1) return Err("duration \"" + text + "\" is too short");
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::string url_encode(std::string_view v, bool upper_hex) {
  const char* hex = upper_hex ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace stackflip
