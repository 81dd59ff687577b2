#include "gitops/endpoint_request.h"

#include <algorithm>
#include <cctype>

namespace stackflip {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits `head` into lines without their CRLF / LF; stops at the empty line.
std::vector<std::string_view> head_lines(std::string_view head) {
  std::vector<std::string_view> lines;
  while (!head.empty()) {
    size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    head.remove_prefix(nl + 1);
  }
  return lines;
}

HeadParse refuse(int status, std::string reason) {
  HeadParse p;
  p.status = status;
  p.reason = std::move(reason);
  return p;
}

}  // namespace

std::string EndpointRequest::header(std::string_view name) const {
  std::string key = lower(name);
  for (const auto& [k, v] : headers)
    if (k == key) return v;
  return "";
}

size_t find_head_end(std::string_view buffer) {
  for (size_t i = buffer.find('\n'); i != std::string_view::npos; i = buffer.find('\n', i + 1)) {
    if (i + 1 < buffer.size() && buffer[i + 1] == '\n') return i + 2;
    if (i + 2 < buffer.size() && buffer[i + 1] == '\r' && buffer[i + 2] == '\n') return i + 3;
  }
  return 0;
}

HeadParse parse_request_head(std::string_view head, size_t max_body, size_t max_headers) {
  auto lines = head_lines(head);
  if (lines.empty()) return refuse(400, "empty request");

  // Request line: METHOD SP TARGET SP HTTP/1.x
  std::string_view rl = lines[0];
  size_t sp1 = rl.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || rl.find(' ', sp2 + 1) != std::string_view::npos)
    return refuse(400, "malformed request line");
  std::string_view method = rl.substr(0, sp1), target = rl.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = rl.substr(sp2 + 1);
  if (!is_token(method)) return refuse(400, "malformed method");
  if (target.empty() || target.front() != '/' ||
      std::any_of(target.begin(), target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
    return refuse(400, "malformed request target");
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return refuse(505, "only HTTP/1.0 and HTTP/1.1 are served");

  HeadParse p;
  EndpointRequest& r = p.request;
  r.method = method;
  size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string_view::npos) r.query = target.substr(q + 1);
  r.keep_alive = version == "HTTP/1.1";

  if (lines.size() - 1 > max_headers) return refuse(431, "too many header lines");
  bool have_length = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') return refuse(400, "folded header line");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon)))
      return refuse(400, "malformed header line");
    std::string_view value = trim(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) {
          return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
        }))
      return refuse(400, "control character in a header value");
    std::string name = lower(line.substr(0, colon));
    if (name == "transfer-encoding")
      return refuse(411, "transfer-coded (chunked) bodies are refused; send Content-Length");
    if (name == "content-encoding" && lower(value) != "identity")
      return refuse(415, "compressed bodies are refused");
    if (name == "content-length") {
      if (value.empty() || value.size() > 19 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return refuse(400, "malformed Content-Length");
      size_t n = std::stoull(std::string(value));
      if (have_length && n != r.content_length) return refuse(400, "conflicting Content-Length");
      have_length = true;
      r.content_length = n;
    }
    if (name == "connection") {
      std::string v = lower(value);
      if (v.find("close") != std::string::npos) r.keep_alive = false;
    }
    if (name == "expect") {
      if (lower(value) != "100-continue") return refuse(417, "unsupported Expect");
      r.expect_continue = true;
    }
    r.headers.emplace_back(std::move(name), std::string(value));
  }
  if (r.content_length > max_body)
    return refuse(413, "request body over " + std::to_string(max_body) + " bytes");
  return p;
}

}  // namespace stackflip
