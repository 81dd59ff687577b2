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
// `Error::timeout` is set when the request ran out of time. Any HTTP status
// is a successful transport and comes back in HttpResponse — callers decide
// what a non-2xx status means. Never put a secret into the URL: it appears
// in error messages. Secrets go into headers, which are never reported.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "result.h"

namespace stackflip {

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE, HEAD
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value
  std::string body;                                          // sent when non-empty
  std::chrono::milliseconds timeout{5000};                   // whole request
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order

  // First header with this name (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

struct HttpClientOptions {
  bool insecure = false;  // disable TLS verification (logs a warning)
  std::string ca_file;    // extra CA bundle (PEM); empty = system default
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs one request; see the header comment for the error contract.
  Result<HttpResponse> perform(const HttpRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `s` cut to at most `max` bytes with surrounding whitespace removed and
// newlines folded, for quoting response bodies in error messages.
std::string trim_for_message(const std::string& s, size_t max = 200);

}  // namespace stackflip
