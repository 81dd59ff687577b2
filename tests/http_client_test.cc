// http_client_test — the HTTP client against a peer that answers too much,
// and requests that would carry injected headers (issue 10, items 2 and 3).
#include "sys/http_client.h"

#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

using namespace stackflip;

namespace {

// A loopback server with a few canned routes; counts the requests it got.
struct Peer {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<int> requests{0};

  Peer() {
    server.Get("/big", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      res.set_content(std::string(size_t{9} << 20, 'x'), "application/json");
    });
    server.Get("/small", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      res.set_content("0123456789", "text/plain");
    });
    server.Get("/chunked", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      res.set_chunked_content_provider("text/plain", [](size_t offset, httplib::DataSink& sink) {
        if (offset > (size_t{64} << 20)) return false;  // bounded: the client stops far earlier
        std::string chunk(1 << 16, 'y');
        sink.write(chunk.data(), chunk.size());
        return true;
      });
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Peer() {
    server.stop();
    thread.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

}  // namespace

TEST_CASE(
    "issue 10: a response body over the cap is an error naming the cap, not a truncated body") {
  Peer peer;
  HttpClient client;
  HttpRequest req;
  req.url = peer.url("/big");
  auto r = client.perform(req);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "GET " + req.url + ": the response body is larger than the 8 MiB limit; not read");

  req.url = peer.url("/chunked");
  r = client.perform(req);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("larger than the 8 MiB limit") != std::string::npos);

  req.url = peer.url("/small");
  req.max_body = 9;
  r = client.perform(req);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("larger than the 9 bytes limit") != std::string::npos);
  req.max_body = 10;
  r = client.perform(req);
  REQUIRE(r.ok());
  CHECK(r->body == "0123456789");
}

TEST_CASE(
    "issue 10: a header value with CR, LF or another control character is refused before sending") {
  Peer peer;
  HttpClient client;
  const std::string secret = "s3cret";
  for (std::string bad :
       {secret + "\r\nX-Injected: 1", secret + "\nX-Injected: 1", secret + "\r",
        secret + std::string(1, '\0') + "x", secret + "\x1b[0m", secret + "\x7f"}) {
    HttpRequest req;
    req.url = peer.url("/small");
    req.headers = {{"Accept", "application/json"}, {"X-API-Key", bad}};
    auto r = client.perform(req);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("refused to send header \"X-API-Key\"") != std::string::npos);
    CHECK(r.error().message.find(secret) == std::string::npos);  // never the value
  }
  CHECK(peer.requests == 0);
  HttpRequest ok;
  ok.url = peer.url("/small");
  ok.headers = {{"Authorization", "Bearer\tabc def"}};  // a TAB is allowed in a value
  CHECK(client.perform(ok).ok());
  CHECK(peer.requests == 1);
}

TEST_CASE("first_bad_header names the header, also for a bad name") {
  CHECK(first_bad_header({{"A", "1"}, {"B", "2"}}).empty());
  CHECK(first_bad_header({{"A", "1"}, {"B", "x\ny"}}) == "B");
  CHECK(first_bad_header({{"X-A\r\nB", "1"}}) == "X-A\r\nB");
  CHECK(first_bad_header({{"Bad Name", "1"}}) == "Bad Name");
}

TEST_CASE("issue 10: percent_encode_path_segment keeps a value inside one path segment") {
  CHECK(percent_encode_path_segment("localhost") == "localhost");
  CHECK(percent_encode_path_segment("a-b_c.d~e") == "a-b_c.d~e");
  CHECK(percent_encode_path_segment("../../x") == "..%2F..%2Fx");
  CHECK(percent_encode_path_segment("..") == "%2E%2E");
  CHECK(percent_encode_path_segment(".") == "%2E");
  CHECK(percent_encode_path_segment("a?b#c%d e") == "a%3Fb%23c%25d%20e");
  CHECK(percent_encode_path_segment("\xC3\xA9") == "%C3%A9");
}

TEST_CASE("trim_for_message escapes control characters of a quoted body") {
  CHECK(trim_for_message("  bad \x1b[31mred\r\nline  ") == "bad \\x1b[31mred  line");
  CHECK(trim_for_message(std::string(300, 'a')).size() == 203);
}
