// endpoint.h — the HTTP/1.1 server behind `stackflip run`, built to keep
// answering while hostile clients hold connections.
//
// One thread runs a poll() loop over non-blocking sockets, so a connection
// that sends slowly, or not at all, costs a file descriptor and a small
// buffer but never a thread: /healthz answers while hundreds of slow-loris or
// idle sockets are open. Every resource has a bound (EndpointLimits):
//   - a request head over max_head bytes gets 431; a body over max_body 413,
//     decided from Content-Length before any of it is read; chunked bodies
//     411 (endpoint_request.h). The declared bodies of all open connections
//     together stay under max_buffered (503 beyond), so memory is bounded by
//     max_connections × max_head + max_buffered whatever clients send.
//   - a request must arrive whole within request_timeout of its first byte; a
//     kept-alive connection may idle idle_timeout and serve max_requests; a
//     response must be taken within write_timeout. Then the socket is closed.
//   - at max_connections the connection that has waited longest for a request
//     is closed to admit the new one.
// After an error answer the write side is shut and the rest of the input is
// drained briefly before closing, so the client reads the status, not a reset.
//
// Handlers run on the loop thread, so they must be quick (copy a prepared
// string under a lock; never block on the reconcile pass). Responses share
// their body (shared_ptr), so many readers of a large body cost one copy.
//
// Thread safety: handle() and listen() before start(); stop() from any thread
// (also called by the destructor).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gitops/endpoint_request.h"
#include "util/result.h"

namespace stackflip {

struct EndpointLimits {
  size_t max_head = 8192;
  size_t max_body = 1 << 20;
  size_t max_buffered = 8 << 20;
  size_t max_connections = 512;
  size_t max_requests = 100;  // per kept-alive connection
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{5000};
  std::chrono::milliseconds write_timeout{10000};
};

struct EndpointResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::shared_ptr<const std::string> body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra, e.g. WWW-Authenticate

  static EndpointResponse text(int status, std::string body);
  static EndpointResponse shared(std::shared_ptr<const std::string> body, std::string content_type);
};

using HttpHandler = std::function<EndpointResponse(const EndpointRequest&)>;

class HttpEndpoint {
 public:
  explicit HttpEndpoint(EndpointLimits limits = {});
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  // Serves `method` `path` (exact match; HEAD is served by the GET handler).
  // Another method on a known path gets 405, an unknown path 404.
  void handle(const std::string& method, const std::string& path, HttpHandler handler);

  // Binds and listens on "host:port" ("[::1]:port" for IPv6; port 0 picks a
  // free one). Errors name the address and the reason.
  Status listen(const std::string& address);
  int port() const { return port_; }

  void start();  // the loop thread
  void stop();   // closes every socket; idempotent

 private:
  EndpointResponse dispatch(const EndpointRequest& req) const;

  EndpointLimits limits_;
  std::map<std::string, std::map<std::string, HttpHandler>> routes_;  // path → method → handler
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace stackflip
