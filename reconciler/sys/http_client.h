// http_client.h — a small blocking HTTP client over libcurl, for drivers.
//
// One HttpClient owns one curl easy handle, so consecutive requests to the
// same host reuse the TCP/TLS connection (the apply path makes several calls
// per step and must stay fast). Not thread-safe: use one client per driver;
// a driver is used from one thread at a time (provider.h).
//
// TLS peer and host verification is on by default. `ca_file` adds a CA
// bundle; `insecure` turns verification off and logs a warning (spdlog) once
// per client. Only http:// and https:// URLs are accepted.
//
// Errors are values: transport failures (refused, DNS, TLS, timeout) return
// an Error whose message names the method and URL and libcurl's reason;
// `Error::timeout` is set when the request ran out of time. A request's
// timeout is cut to the calling thread's operation deadline, and none is sent
// after it (util/deadline.h). Any HTTP status
// is a successful transport and comes back in HttpResponse — callers decide
// what a non-2xx status means. Never put a secret into the URL: it appears
// in error messages. Secrets go into headers, which are never reported.
//
// Hostile peers and configs (issue 10): a response body longer than
// HttpRequest::max_body (default kDefaultMaxHttpBody) stops the transfer and
// is an error naming the cap, never a truncated body. A header value holding
// CR, LF or any other control character (a secret read from a file with a
// newline in it would otherwise inject headers) is refused before anything
// is sent; the error names the header, never its value. Values put into URL
// paths go through percent_encode_path_segment().
//
// Streaming (stream()): for long-lived answers (etcd's watch), the body of a
// 2xx answer is handed to a callback chunk by chunk as it arrives instead of
// being collected. The callback is also called with an empty chunk at least
// every kStreamTickMs while the answer is idle (and while connecting), so a
// caller can stop a quiet stream promptly; returning false ends the transfer
// at once, which is not an error. The streamed bytes are the callback's to
// bound (no max_body on them); the body of a non-2xx answer is collected
// under max_body as perform() does and returned instead. The stream runs on
// curl's multi interface polled every tick (a progress callback alone is
// called only about once a second on an idle connection).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"
#include "util/strings.h"  // trim_for_message

namespace stackflip {

constexpr size_t kDefaultMaxHttpBody = size_t{8} << 20;  // 8 MiB
constexpr int kStreamTickMs = 50;                        // see stream()

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE, HEAD
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value
  std::string body;                                          // sent when non-empty
  std::chrono::milliseconds timeout{5000};                   // whole request
  size_t max_body = kDefaultMaxHttpBody;                     // response body cap, bytes
  // Cap on establishing the connection (TCP + TLS); 0 = `timeout`. Lets a
  // caller with several servers give up on a black-holed one early.
  std::chrono::milliseconds connect_timeout{0};
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order

  // First header with this name (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

struct HttpClientOptions {
  // Constructors rather than aggregate initialisation, so the drivers' brace
  // lists of the first two fields stay warning-free.
  HttpClientOptions() = default;
  HttpClientOptions(bool insecure_, std::string ca_file_, std::string cert_file_ = "",
                    std::string key_file_ = "")
      : insecure(insecure_),
        ca_file(std::move(ca_file_)),
        cert_file(std::move(cert_file_)),
        key_file(std::move(key_file_)) {}

  bool insecure = false;  // disable TLS verification (logs a warning)
  std::string ca_file;    // extra CA bundle (PEM); empty = system default
  // Client identity for mutual TLS (PEM files); empty = none.
  std::string cert_file, key_file;
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs one request; see the header comment for the error contract.
  Result<HttpResponse> perform(const HttpRequest& request);

  // Performs one request whose 2xx body is streamed to `on_data` (see the
  // header comment): the returned response has the status and headers, and
  // the body only of a non-2xx answer. `request.timeout` caps the whole
  // transfer (an Error with `timeout` set when it runs out). When `on_data`
  // returned false the call returns what it had (status 0 if the headers had
  // not arrived yet).
  Result<HttpResponse> stream(const HttpRequest& request,
                              const std::function<bool(std::string_view)>& on_data);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The name of the first header whose name or value holds a byte below 0x20
// (except TAB in a value) or DEL, or "" when all are clean.
std::string first_bad_header(const std::vector<std::pair<std::string, std::string>>& headers);

// `s` as one URL path segment: every byte but RFC 3986 unreserved characters
// (A-Z a-z 0-9 - . _ ~) percent-encoded, and "." / ".." encoded too, so no
// value can add, leave or climb a path segment.
std::string percent_encode_path_segment(const std::string& s);

// True for an HTTP status that refuses the request for good (issue 11): a
// 4xx other than 408 (request timeout), 409 (conflict with a state that may
// pass, e.g. a switch in progress), 423 (locked), 425 (too early) and 429
// (throttled). Drivers return such answers as Refused (result.h), which
// apply does not retry.
inline bool http_refusal(long status) {
  return status >= 400 && status < 500 && status != 408 && status != 409 && status != 423 &&
         status != 425 && status != 429;
}

}  // namespace stackflip
