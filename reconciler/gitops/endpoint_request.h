// endpoint_request.h — a strict parser for the head of an HTTP/1.1 request, as
// `stackflip run` serves it (endpoint.h).
//
// The endpoint faces untrusted clients, so the parser accepts only what the
// endpoint needs and turns everything else into the status to answer before
// the connection is closed: no chunked or otherwise transfer-coded bodies
// (411: every client we serve, GitHub and GitLab included, sends
// Content-Length), no compressed bodies (415), a body over the limit (413)
// is refused from its Content-Length alone, before a byte of it is read.
// Pure functions; no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stackflip {

struct EndpointRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query string
  std::string query;   // after '?', undecoded; empty when none
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  size_t content_length = 0;
  bool keep_alive = true;        // HTTP/1.1 unless "Connection: close"; HTTP/1.0 never
  bool expect_continue = false;  // "Expect: 100-continue"
  std::string body;              // exactly content_length bytes once read
  std::string remote;            // peer address, for logs

  // The first value of header `name` (any case), "" when absent.
  std::string header(std::string_view name) const;
};

// Outcome of parse_request_head: status 0 and the request, or the status to
// answer (400, 411, 413, 415, 417, 431, 505) with a one-line reason.
struct HeadParse {
  int status = 0;
  std::string reason;
  EndpointRequest request;
};

// `head` is the request line and headers up to and including the empty line.
// Bodies over `max_body` bytes are refused (413); more than `max_headers`
// header lines are refused (431).
HeadParse parse_request_head(std::string_view head, size_t max_body, size_t max_headers = 64);

// Where the head ends in `buffer` (the offset just past the empty line), or
// 0 when it has not arrived yet. Accepts CRLF and bare LF line ends.
size_t find_head_end(std::string_view buffer);

}  // namespace stackflip
