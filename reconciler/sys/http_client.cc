#include "sys/http_client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// curl_global_init is not thread-safe; drivers may be created concurrently.
void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Body {
  std::string text;
  size_t max = 0;
  bool over = false;
};

// Returning less than given makes libcurl stop with CURLE_WRITE_ERROR.
size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<Body*>(user);
  if (size * n > body->max - body->text.size()) {
    body->over = true;
    return 0;
  }
  body->text.append(data, size * n);
  return size * n;
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Response headers are capped too (libcurl bounds each line, not how many).
constexpr size_t kMaxHeaderBytes = size_t{256} << 10;

struct Headers {
  std::vector<std::pair<std::string, std::string>>* list;
  size_t bytes = 0;
  bool over = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* h = static_cast<Headers*>(user);
  if ((h->bytes += size * n) > kMaxHeaderBytes) {
    h->over = true;
    return 0;
  }
  auto* headers = h->list;
  std::string line(data, size * n);
  // A new status line (e.g. after "100 Continue") starts a new header block.
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string::npos)
    headers->emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  return size * n;
}

}  // namespace

std::string HttpResponse::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return "";
}

std::string first_bad_header(const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [name, value] : headers) {
    for (unsigned char c : name)
      if (is_control(c) || c == ':' || c == ' ') return name;
    for (unsigned char c : value)
      if (is_control(c) && c != '\t') return name;
  }
  return "";
}

std::string percent_encode_path_segment(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  const bool dots = s == "." || s == "..";
  std::string out;
  for (unsigned char c : s) {
    if (!dots && (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct HttpClient::Impl {
  HttpClientOptions options;
  CURL* easy = nullptr;
};

HttpClient::HttpClient(HttpClientOptions options) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  impl_->options = std::move(options);
  impl_->easy = curl_easy_init();
  if (impl_->options.insecure)
    spdlog::warn("TLS certificate verification is disabled (insecure: true) for an HTTP provider");
}

HttpClient::~HttpClient() {
  if (impl_->easy) curl_easy_cleanup(impl_->easy);
}

Result<HttpResponse> HttpClient::perform(const HttpRequest& request) {
  const std::string where = request.method + " " + request.url;
  CURL* c = impl_->easy;
  if (!c) return Err(where + ": cannot initialise libcurl");
  std::string bad = first_bad_header(request.headers);
  if (!bad.empty())
    return Err(where + ": refused to send header \"" + trim_for_message(bad, 64) +
               "\": its name or value holds a control character (CR, LF, ...)");
  // reset() clears options but keeps the connection cache: connections are
  // reused across requests of this client.
  curl_easy_reset(c);

  HttpResponse response;
  Body body;
  body.max = request.max_body;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  Headers received{&response.headers};
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &received);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "stackflip/" STACKFLIP_VERSION);

  if (impl_->options.insecure) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!impl_->options.ca_file.empty())
      curl_easy_setopt(c, CURLOPT_CAINFO, impl_->options.ca_file.c_str());
  }

  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.body.empty() ||
      (request.method != "GET" && request.method != "HEAD" && request.method != "DELETE")) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  }

  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers)
    headers = curl_slist_append(headers, (k + ": " + v).c_str());
  // No "Expect: 100-continue" round trip for small bodies.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);

  if (received.over)
    return Err(where + ": the response headers are larger than " +
               format_byte_size(kMaxHeaderBytes) + "; not read");
  if (body.over)
    return Err(where + ": the response body is larger than the " +
               format_byte_size(request.max_body) + " limit; not read");
  if (rc != CURLE_OK) {
    std::string reason = errbuf[0] ? trim(errbuf) : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT) return Timeout(where + ": timed out (" + reason + ")");
    return Err(where + ": " + reason);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  response.body = std::move(body.text);
  return response;
}

}  // namespace stackflip
