#include "util/redact.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <set>
#include <vector>

#include "util/strings.h"

namespace stackflip {

namespace {

constexpr std::string_view kMask = "***";

struct Registry {
  std::mutex mu;
  std::set<std::string> values;  // every form of every remembered value
};
Registry& registry() {
  static Registry r;
  return r;
}

std::string json_escaped(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool blank(char c) { return c == ' ' || c == '\t'; }

// Credential keys, lower case. A key matches anywhere (access_token, X-API-Key)
// but only when a separator follows.
constexpr std::string_view kKeys[] = {"password",      "passwd",      "pwd",        "secret",
                                      "api_key",       "api-key",     "apikey",     "token",
                                      "authorization", "private_key", "credential", "credentials"};

// Length of a separator at `i` in `lower` (`=`, `:`, `%3d`, `%3a`), else 0.
size_t separator_at(const std::string& lower, size_t i) {
  if (i >= lower.size()) return 0;
  if (lower[i] == '=' || lower[i] == ':') return 1;
  if (lower.compare(i, 3, "%3d") == 0 || lower.compare(i, 3, "%3a") == 0) return 3;
  return 0;
}

// Length of a quote at `j` with the backslashes that escape it (text quoted
// inside JSON inside JSON: \\\"), else 0.
size_t quote_prefix(std::string_view text, size_t j) {
  size_t k = j;
  while (k < text.size() && text[k] == '\\') ++k;
  return k < text.size() && (text[k] == '"' || text[k] == '\'') ? k + 1 - j : 0;
}

// End of the value starting at `j` (quoted, quoted with escaped quotes as
// JSON inside a JSON string writes it, or bare).
size_t value_end(std::string_view text, size_t j) {
  if (size_t q = quote_prefix(text, j); q > 1) {
    size_t close = text.find(text.substr(j, q), j + q);
    return close == std::string_view::npos ? text.size() : close + q;
  }
  if (j < text.size() && (text[j] == '"' || text[j] == '\'')) {
    char q = text[j];
    size_t k = j + 1;
    while (k < text.size() && text[k] != q) k += (text[k] == '\\' && q == '"') ? 2 : 1;
    return std::min(k + 1, text.size());
  }
  static constexpr std::string_view kStop = " \t\r\n&;,'\")]}><";
  size_t k = j;
  while (k < text.size() && kStop.find(text[k]) == std::string_view::npos) ++k;
  return k;
}

bool is_reference(std::string_view v) {
  if (!v.empty() && (v[0] == '"' || v[0] == '\'')) v.remove_prefix(1);
  return v.starts_with("${env:") || v.starts_with("${file:");
}

// Masks credential-shaped values; see the header.
std::string mask_patterns(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  auto mask_value_at = [&](size_t j) {  // copies text up to j, masks the value there
    out.append(text.substr(i, j - i));
    size_t end = value_end(text, j);
    std::string_view v = text.substr(j, end - j);
    if (is_reference(v) || v.empty()) {
      out.append(v);
    } else if (size_t q = quote_prefix(v, 0); q > 1) {
      out.append(v.substr(0, q));
      out.append(kMask);
      if (v.size() >= 2 * q && v.substr(v.size() - q) == v.substr(0, q)) out.append(v.substr(0, q));
    } else if (v[0] == '"' || v[0] == '\'') {
      out += v[0];
      out.append(kMask);
      if (v.size() > 1 && v.back() == v[0]) out += v[0];
    } else {
      out.append(kMask);
    }
    i = end;
  };
  while (i < text.size()) {
    // URL userinfo: scheme://user:pass@host
    if (lower.compare(i, 3, "://") == 0) {
      size_t start = i + 3;
      size_t at = std::string_view::npos;
      for (size_t k = start; k < text.size(); ++k) {
        char c = text[k];
        if (c == '@') {
          at = k;
          break;
        }
        if (c == '/' || c == '?' || c == '#' || std::isspace(static_cast<unsigned char>(c)) ||
            c == '"' || c == '\'')
          break;
      }
      if (at != std::string_view::npos) {
        size_t colon = text.find(':', start);
        out.append(text.substr(i, 3));
        if (colon != std::string_view::npos && colon < at) {
          out.append(text.substr(start, colon + 1 - start));
          out.append(kMask);
        } else {
          out.append(kMask);
        }
        out += '@';
        i = at + 1;
        continue;
      }
    }
    // Bearer / Basic <blank> value
    bool word_start = i == 0 || !std::isalnum(static_cast<unsigned char>(text[i - 1]));
    if (word_start) {
      size_t n = lower.compare(i, 6, "bearer") == 0 ? 6 : lower.compare(i, 5, "basic") == 0 ? 5 : 0;
      if (n && i + n < text.size() && blank(text[i + n])) {
        size_t j = i + n;
        while (j < text.size() && blank(text[j])) ++j;
        if (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) {
          mask_value_at(j);
          continue;
        }
      }
    }
    // key [quote] [blanks] separator [blanks] value
    size_t key_len = 0;
    for (std::string_view k : kKeys)
      if (lower.compare(i, k.size(), k) == 0) key_len = std::max(key_len, k.size());
    if (key_len) {
      size_t j = i + key_len;
      j += quote_prefix(text, j);
      while (j < text.size() && blank(text[j])) ++j;
      if (size_t sep = separator_at(lower, j)) {
        j += sep;
        while (j < text.size() && blank(text[j])) ++j;
        // "Authorization: Bearer x": the scheme word stays, its value goes.
        for (std::string_view scheme : {"bearer", "basic", "token"})
          if (lower.compare(j, scheme.size(), scheme) == 0 && j + scheme.size() < text.size() &&
              blank(text[j + scheme.size()])) {
            j += scheme.size();
            while (j < text.size() && blank(text[j])) ++j;
          }
        if (j < text.size() && text[j] != '\n' && text[j] != '\r') {
          mask_value_at(j);
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

}  // namespace

void remember_secret_value(std::string_view value) {
  if (value.size() < 4) return;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (std::string form :
       {std::string(value), url_encode(value, true), url_encode(value, false), json_escaped(value)})
    r.values.insert(std::move(form));
}

std::string redact(std::string_view text) {
  std::string s(text);
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    // Longest first, so a value that contains another is masked whole.
    std::vector<const std::string*> forms;
    for (const auto& v : r.values) forms.push_back(&v);
    std::sort(forms.begin(), forms.end(), [](auto* a, auto* b) { return a->size() > b->size(); });
    for (const std::string* v : forms)
      for (size_t at = s.find(*v); at != std::string::npos; at = s.find(*v, at + kMask.size()))
        s.replace(at, v->size(), kMask);
  }
  return mask_patterns(s);
}

}  // namespace stackflip
