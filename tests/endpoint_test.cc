// The `stackflip run` HTTP endpoint (endpoint.h, endpoint_request.h) and its
// webhook and token checks (server.h), against hostile clients: issue 10
// items 4 (unbounded bodies), 5 (slow and idle connections), 9 (form-encoded
// GitHub pushes, GitLab) and 10 (bearer token). A real endpoint on a free
// loopback port; the client is a plain socket so the test decides every byte.
#include "gitops/endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <memory>
#include <vector>

#include "gitops/endpoint_request.h"
#include "gitops/server.h"
#include "util/digest.h"

using namespace stackflip;
using SteadyClock = std::chrono::steady_clock;

namespace {

// A blocking client socket with a receive timeout.
struct Client {
  int fd = -1;
  explicit Client(int port, int timeout_ms = 3000) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Client() {
    if (fd >= 0) ::close(fd);
  }
  bool send(const std::string& s) {
    return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Reads until `until` appears, the peer closes, or the timeout.
  std::string read(const std::string& until = "") {
    std::string got;
    char buf[4096];
    for (;;) {
      if (!until.empty() && got.find(until) != std::string::npos) return got;
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  // True when the peer closes the connection (EOF or a reset) after what it
  // still sends, within the receive timeout.
  bool closed() {
    char buf[4096];
    for (int i = 0; i < 256; ++i) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
    }
    return false;
  }
};

std::unique_ptr<HttpEndpoint> start_endpoint(EndpointLimits limits = {}) {
  auto e = std::make_unique<HttpEndpoint>(limits);
  e->handle("GET", "/healthz",
            [](const EndpointRequest&) { return EndpointResponse::text(200, "ok\n"); });
  e->handle("POST", "/echo", [](const EndpointRequest& r) {
    return EndpointResponse::text(200, std::to_string(r.body.size()) + "\n");
  });
  REQUIRE(e->listen("127.0.0.1:0").ok());
  e->start();
  return e;
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

const std::string kHealthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

double healthz_ms(int port) {
  auto t0 = SteadyClock::now();
  Client c(port, 2000);
  if (c.fd < 0 || !c.send(kHealthz)) return 1e9;
  if (status_of(c.read("ok\n")) != 200) return 1e9;
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
}

}  // namespace

TEST_CASE("issue 10: request heads are refused for chunked, compressed or oversized bodies") {
  const size_t mib = 1 << 20;
  auto status = [&](const std::string& head) { return parse_request_head(head, mib).status; };
  CHECK(status("POST /webhook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 411);
  CHECK(status("POST /webhook HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 411);
  CHECK(status("GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 411);
  CHECK(status("POST /webhook HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n") == 413);
  CHECK(status("POST /webhook HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n") == 400);
  CHECK(status("POST /webhook HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") == 400);
  CHECK(status("POST /webhook HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == 400);
  CHECK(status("POST /webhook HTTP/1.1\r\nContent-Encoding: gzip\r\n\r\n") == 415);
  CHECK(status("GET /healthz HTTP/2.0\r\n\r\n") == 505);
  CHECK(status("GET healthz HTTP/1.1\r\n\r\n") == 400);
  CHECK(status("GET /healthz HTTP/1.1\r\nX: a\rb\r\n\r\n") == 400);
  CHECK(status("GET /healthz HTTP/1.1\r\nX: a\r\n b\r\n\r\n") == 400);
  CHECK(status("GET /healthz HTTP/1.1\r\nExpect: 200-ok\r\n\r\n") == 417);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 65; ++i) many += "X" + std::to_string(i) + ": y\r\n";
  CHECK(status(many + "\r\n") == 431);

  HeadParse ok = parse_request_head(
      "POST /webhook?x=1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "content-length: 1048576\r\nX-Hub-Signature-256:  sha256=ab \r\n\r\n",
      mib);
  REQUIRE(ok.status == 0);
  CHECK(ok.request.path == "/webhook");
  CHECK(ok.request.query == "x=1");
  CHECK(ok.request.content_length == mib);
  CHECK(ok.request.header("x-hub-signature-256") == "sha256=ab");
  CHECK(ok.request.keep_alive);
  CHECK_FALSE(parse_request_head("GET / HTTP/1.0\r\n\r\n", mib).request.keep_alive);
  CHECK(find_head_end("GET / HTTP/1.1\r\nA: b\r\n\r\nBODY") == 24);
  CHECK(find_head_end("GET / HTTP/1.1\nA: b\n\nBODY") == 21);
  CHECK(find_head_end("GET / HTTP/1.1\r\nA: b\r\n") == 0);
}

TEST_CASE("issue 10: an endpoint answers 413 to a huge Content-Length before the body is sent") {
  auto e = start_endpoint();
  Client c(e->port());
  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 524288000\r\n\r\n"));
  auto t0 = SteadyClock::now();
  std::string r = c.read("\r\n\r\n");
  CHECK(status_of(r) == 413);
  CHECK(r.find("Connection: close") != std::string::npos);
  CHECK(SteadyClock::now() - t0 < std::chrono::seconds(1));
  CHECK(c.closed());
}

TEST_CASE("issue 10: an endpoint answers 411 to a chunked body and closes") {
  auto e = start_endpoint();
  Client c(e->port());
  REQUIRE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "100000\r\n" +
             std::string(4096, 'a')));
  CHECK(status_of(c.read("\r\n\r\n")) == 411);
  CHECK(c.closed());
}

TEST_CASE("issue 10: an endpoint reads bodies up to 1 MiB, on a kept-alive connection") {
  auto e = start_endpoint();
  Client c(e->port());
  std::string body(1 << 20, 'p');
  REQUIRE(c.send("POST /echo HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
                 "\r\n\r\n" + body));
  std::string r = c.read("1048576\n");
  CHECK(status_of(r) == 200);
  CHECK(r.find("Connection: keep-alive") != std::string::npos);
  REQUIRE(c.send(kHealthz));
  CHECK(status_of(c.read("ok\n")) == 200);
}

TEST_CASE("issue 10: a request head over 8 KB gets 431") {
  auto e = start_endpoint();
  Client c(e->port());
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nX: " + std::string(9000, 'h')));
  CHECK(status_of(c.read("\r\n\r\n")) == 431);
}

TEST_CASE("issue 10: slow-loris and idle connections do not delay /healthz") {
  auto e = start_endpoint();
  std::vector<std::unique_ptr<Client>> attackers;
  for (int i = 0; i < 200; ++i) {
    attackers.push_back(std::make_unique<Client>(e->port()));
    if (i % 2) attackers.back()->send("POST /echo HTTP/1.1\r\nContent-Length: 10\r\nX-Slow: ");
  }
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 1; i < attackers.size(); i += 2) attackers[i]->send("a");
    CHECK(healthz_ms(e->port()) < 1000);
  }
}

TEST_CASE("issue 10: a request must arrive whole within the request timeout") {
  EndpointLimits limits;
  limits.request_timeout = std::chrono::milliseconds(300);
  limits.idle_timeout = std::chrono::milliseconds(300);
  auto e = start_endpoint(limits);
  Client slow(e->port()), idle(e->port());
  REQUIRE(slow.send("GET /healthz HTTP/1.1\r\n"));
  auto t0 = SteadyClock::now();
  for (int i = 0; i < 10 && SteadyClock::now() - t0 < std::chrono::seconds(2); ++i) {
    slow.send("X: y\r\n");  // progress, but never the end of the head
    ::usleep(100000);
  }
  CHECK(slow.closed());
  CHECK(idle.closed());
  CHECK(SteadyClock::now() - t0 < std::chrono::seconds(3));
}

TEST_CASE("issue 10: connections over the limit evict the one waiting longest") {
  EndpointLimits limits;
  limits.max_connections = 4;
  auto e = start_endpoint(limits);
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(std::make_unique<Client>(e->port()));
  ::usleep(50000);
  CHECK(healthz_ms(e->port()) < 1000);
  CHECK(idle.front()->closed());
}

TEST_CASE("issue 10: a kept-alive connection serves at most max_requests") {
  EndpointLimits limits;
  limits.max_requests = 2;
  auto e = start_endpoint(limits);
  Client c(e->port());
  const std::string get = "GET /healthz HTTP/1.1\r\n\r\n";
  REQUIRE(c.send(get + get));  // pipelined
  std::string r = c.read("ok\nHTTP/1.1 200 OK");
  r += c.read();
  CHECK(r.find("Connection: keep-alive") != std::string::npos);
  CHECK(r.find("Connection: close") != std::string::npos);
  CHECK(c.closed());
}

TEST_CASE("issue 10: unknown paths get 404, wrong methods 405") {
  auto e = start_endpoint();
  Client a(e->port()), b(e->port());
  a.send("GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK(status_of(a.read()) == 404);
  b.send("POST /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK(status_of(b.read()) == 405);
}

TEST_CASE("issue 10: a form-encoded GitHub push over 8 KB is verified over its raw body") {
  RunSettings rs;
  rs.webhook_secret = "s3cret";
  EndpointRequest req;
  req.method = "POST";
  req.body = "payload=" + std::string(20000, '%');
  req.headers = {{"content-type", "application/x-www-form-urlencoded"},
                 {"x-hub-signature-256", "sha256=" + hmac_sha256_hex("s3cret", req.body)}};
  bool trigger = false;
  CHECK(answer_webhook(rs, req, &trigger).status == 202);
  CHECK(trigger);
  req.headers.pop_back();
  CHECK(answer_webhook(rs, req, &trigger).status == 401);
  CHECK_FALSE(trigger);
  req.headers.emplace_back("x-gitlab-token", "s3cret");  // not the GitLab token
  CHECK(answer_webhook(rs, req, &trigger).status == 401);
  CHECK_FALSE(trigger);
}

TEST_CASE("issue 10: a GitLab webhook is accepted with the right X-Gitlab-Token only") {
  RunSettings rs;
  rs.gitlab_token = "gl-token";
  EndpointRequest req;
  req.method = "POST";
  req.body = R"({"object_kind":"push"})";
  bool trigger = false;
  req.headers = {{"x-gitlab-token", "gl-token"}};
  CHECK(answer_webhook(rs, req, &trigger).status == 202);
  CHECK(trigger);
  for (std::string wrong : {"gl-toke", "gl-token2", "GL-TOKEN", " gl-token"}) {
    req.headers = {{"x-gitlab-token", wrong}};
    CHECK(answer_webhook(rs, req, &trigger).status == 401);
    CHECK_FALSE(trigger);
  }
  req.headers = {{"x-hub-signature-256", "sha256=" + hmac_sha256_hex("gl-token", req.body)}};
  CHECK(answer_webhook(rs, req, &trigger).status == 401);  // no GitHub secret configured
  CHECK(answer_webhook(RunSettings{}, req, &trigger).status == 404);
  CHECK_FALSE(gitlab_token_ok("", ""));
}

TEST_CASE("issue 10: the api token is a bearer token compared exactly") {
  CHECK(bearer_token_ok("", ""));  // no token configured: open
  CHECK(bearer_token_ok("t0k", "Bearer t0k"));
  CHECK(bearer_token_ok("t0k", "bearer t0k"));
  CHECK_FALSE(bearer_token_ok("t0k", ""));
  CHECK_FALSE(bearer_token_ok("t0k", "Bearer "));
  CHECK_FALSE(bearer_token_ok("t0k", "Bearer t0"));
  CHECK_FALSE(bearer_token_ok("t0k", "Bearer t0kk"));
  CHECK_FALSE(bearer_token_ok("t0k", "Basic t0k"));
  CHECK_FALSE(bearer_token_ok("t0k", "t0k"));
  CHECK_FALSE(bearer_token_ok("t0k", "Basics t0k"));
}
