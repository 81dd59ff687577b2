// etcd_client_test — the etcd gateway client without etcd: base64 and prefix
// ranges, hostile or malformed gateway answers (errors, never a crash),
// gRPC error answers, endpoint failover, deadlines, auth tokens and the
// watch stream's framing and stop (issue 13). The real gateway is exercised
// by tests/integration/etcd_client_itest.cc.
#include "coord/etcd_client.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "answering_server.h"

using namespace stackflip;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// A loopback server whose routes each test writes.
struct Gateway {
  httplib::Server server;
  std::thread thread;
  int port = 0;

  void start() {
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(milliseconds(1));
  }
  ~Gateway() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// A loopback port nothing listens on (bound once, never listened on, closed).
std::string closed_endpoint() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

std::unique_ptr<EtcdClient> client_for(std::vector<std::string> endpoints,
                                       milliseconds timeout = milliseconds(1500),
                                       size_t max_body = size_t{64} << 20) {
  EtcdOptions o;
  o.endpoints = std::move(endpoints);
  o.request_timeout = timeout;
  o.max_body = max_body;
  auto c = EtcdClient::create(o);
  REQUIRE(c.ok());
  return std::move(*c);
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

TEST_CASE("base64 round trips every byte value at every length modulo 3") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t len :
       {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{254}, size_t{255}, size_t{256}}) {
    std::string bytes = all.substr(0, len);
    auto back = base64_decode(base64_encode(bytes));
    REQUIRE(back.ok());
    CHECK(*back == bytes);
  }
}

TEST_CASE("base64 decoding refuses characters outside the alphabet and bad padding") {
  for (const char* bad :
       {"Zm9", "Zm9v!", "Zg=a", "Z===", "=Zm9", "Zm9v\n", "Zg==Zg==", "-_8=", "Zm 9", "Zm9v===="}) {
    INFO(bad);
    CHECK_FALSE(base64_decode(bad).ok());
  }
  CHECK(*base64_decode("Zm9vYg==") == "foob");
}

TEST_CASE("prefix_range_end increments the last byte and drops trailing 0xff bytes") {
  CHECK(prefix_range_end("a/") == "a0");
  CHECK(prefix_range_end("a\xff") == "b");
  CHECK(prefix_range_end("a\xfe") == "a\xff");
  CHECK(prefix_range_end("\xff\xff") == std::string(1, '\0'));
  CHECK(prefix_range_end("") == std::string(1, '\0'));
}

TEST_CASE("a gateway range answer is read whole and the request says what was asked") {
  testing::Answering peer(
      R"({"header":{"revision":"7"},"kvs":[{"key":"Zm9v","value":"YmFy","create_revision":"3",)"
      R"("mod_revision":"4","version":"2","lease":"9"},{"key":"Zm9w"}],"count":"5","more":true})");
  auto c = client_for({peer.url()});
  EtcdRangeOptions o;
  o.prefix = true;
  o.limit = 2;
  o.newest_first = true;
  auto r = c->range("foo", o);
  REQUIRE(r.ok());
  CHECK(r->revision == 7);
  CHECK(r->count == 5);
  CHECK(r->more);
  REQUIRE(r->kvs.size() == 2);
  CHECK(r->kvs[0].key == "foo");
  CHECK(r->kvs[0].value == "bar");
  CHECK(r->kvs[0].create_revision == 3);
  CHECK(r->kvs[0].mod_revision == 4);
  CHECK(r->kvs[0].version == 2);
  CHECK(r->kvs[0].lease == 9);
  CHECK(r->kvs[1].key == "fop");
  CHECK(r->kvs[1].value.empty());  // absent = empty
  CHECK(r->kvs[1].version == 0);
  REQUIRE(peer.seen() == std::vector<std::string>{"/v3/kv/range"});
  std::string body = peer.bodies[0];
  CHECK(body.find(R"("key":"Zm9v")") != std::string::npos);
  CHECK(body.find(R"("range_end":"Zm9w")") != std::string::npos);
  CHECK(body.find(R"("limit":"2")") != std::string::npos);
  CHECK(body.find(R"("sort_order":"DESCEND")") != std::string::npos);
  CHECK(body.find(R"("sort_target":"CREATE")") != std::string::npos);
  CHECK(c->requests() == 1);
}

TEST_CASE("malformed, mistyped, missing or huge gateway answers are errors, never a crash") {
  testing::Answering peer("{}");
  auto c = client_for({peer.url()}, milliseconds(1500), 4096);
  std::string deep(200, '[');
  const std::vector<std::string> range_bodies = {
      "",
      "not json",
      "[]",
      "\"text\"",
      "{\"kvs\":5}",
      "{\"kvs\":[5]}",
      "{\"kvs\":[{\"key\":\"!!\"}]}",
      "{\"kvs\":[{\"key\":\"Zm9v\",\"version\":\"1e3\"}]}",
      "{\"count\":\"12x\"}",
      "{\"count\":\"\"}",
      "{\"count\":\"99999999999999999999\"}",
      "{\"count\":1.5}",
      "{\"count\":true}",
      "{\"header\":[]}",
      "{\"header\":{\"revision\":{}}}",
      "{\"more\":\"yes\"}",
      "{\"kvs\":[{\"key\":\"Zm9v\"}]",
      deep,
      "{\"kvs\":[{\"key\":\"" + std::string(8000, 'A') + "\"}]}",
      "{\"error\":\"etcdserver: something\",\"code\":2}",
  };
  for (const auto& body : range_bodies) {
    INFO(body.substr(0, 80));
    peer.answer(body);
    auto r = c->range("foo");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("etcd range foo") != std::string::npos);
    CHECK(r.error().message.find(peer.url()) != std::string::npos);
  }
  // The other calls read their own shapes as strictly.
  peer.answer("{\"responses\":\"x\"}");
  CHECK_FALSE(c->txn({}, {}).ok());
  peer.answer("{\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":\"?\"}]}}]}");
  CHECK_FALSE(c->txn({}, {}).ok());
  peer.answer("{\"deleted\":[]}");
  CHECK_FALSE(c->remove("foo").ok());
  peer.answer("{\"TTL\":\"5\"}");
  CHECK_FALSE(c->grant(std::chrono::seconds(5)).ok());  // no ID
  peer.answer("{\"ID\":\"5\",\"TTL\":\"5\",\"error\":\"lease exists\"}");
  CHECK_FALSE(c->grant(std::chrono::seconds(5)).ok());
  peer.answer("{\"header\":{},\"ID\":\"5\",\"TTL\":\"5\"}");  // not wrapped in "result"
  CHECK_FALSE(c->keep_alive(5).ok());
  peer.answer("{\"result\":{\"TTL\":\"five\"}}");
  CHECK_FALSE(c->keep_alive(5).ok());
  peer.answer("{\"TTL\":[]}");
  CHECK_FALSE(c->time_to_live(5).ok());
  peer.answer("{\"header\":{\"revision\":\"-\"}}");
  CHECK_FALSE(c->put("k", "v").ok());
  // And a well-formed answer still reads after all that.
  peer.answer("{\"header\":{\"revision\":\"11\"}}");
  auto put = c->put("k", "v", 77);
  REQUIRE(put.ok());
  CHECK(*put == 11);
  CHECK(peer.bodies.back() == R"({"key":"aw==","value":"dg==","lease":"77"})");
}

TEST_CASE("keep-alive of a lease the member no longer has is an Error saying it expired") {
  // etcd 3.4 answers an unknown lease's keep-alive with 200 and no TTL.
  testing::Answering peer(R"({"result":{"header":{"revision":"2"},"ID":"123"}})");
  auto c = client_for({peer.url()});
  auto r = c->keep_alive(123);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("expired") != std::string::npos);
  peer.answer(R"({"result":{"header":{"revision":"2"},"ID":"123","TTL":"10"}})");
  auto ok = c->keep_alive(123);
  REQUIRE(ok.ok());
  CHECK(*ok == 10);
  peer.answer(R"({"header":{"revision":"2"},"ID":"123","TTL":"-1"})");
  CHECK(*c->time_to_live(123) == -1);
}

TEST_CASE("a gRPC error answer is an Error carrying the member's message, not a failover") {
  Gateway first, second;
  std::atomic<int> second_calls{0};
  first.server.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    res.status = 503;
    res.set_content(
        R"({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14})",
        "application/json");
  });
  second.server.Post(".*", [&](const httplib::Request&, httplib::Response& res) {
    ++second_calls;
    res.set_content("{}", "application/json");
  });
  first.start();
  second.start();
  auto c = client_for({first.url(), second.url()});
  auto r = c->put("k", "v");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("etcdserver: no leader") != std::string::npos);
  CHECK(r.error().message.find(first.url()) != std::string::npos);
  CHECK_FALSE(r.error().timeout);
  CHECK(second_calls == 0);
  // A non-JSON error page (a proxy in front of the member) is an Error quoting it.
  Gateway proxy;
  proxy.server.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    res.status = 502;
    res.set_content("<html>bad gateway</html>", "text/html");
  });
  proxy.start();
  auto c2 = client_for({proxy.url()});
  auto r2 = c2->range("k");
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().message.find("HTTP 502") != std::string::npos);
}

TEST_CASE("endpoint failover: a closed first endpoint, an answering second, the call succeeds") {
  testing::Answering peer(R"({"header":{"revision":"3"},"deleted":"2"})");
  auto c = client_for({closed_endpoint(), peer.url()});
  CHECK(c->endpoint().empty());
  auto r = c->remove("x", true);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(*r == 2);
  CHECK(c->endpoint() == peer.url());
  CHECK(c->requests() == 2);  // the refused one counts: it was sent
  // The next call starts at the endpoint that answered.
  REQUIRE(c->remove("x").ok());
  CHECK(c->requests() == 3);
  CHECK(peer.seen().size() == 2);
}

TEST_CASE(
    "endpoint failover: a member that stops answering on a kept connection (a partition) gets "
    "its share of the deadline, and the next call starts at the member that answered") {
  std::atomic<int> calls{0};
  Gateway cut;  // answers once, then holds every request 3 s (as behind a cut link)
  cut.server.Post(".*", [&](const httplib::Request&, httplib::Response& res) {
    if (calls++ > 0) std::this_thread::sleep_for(milliseconds(3000));
    res.set_content(R"({"header":{"revision":"3"},"deleted":"1"})", "application/json");
  });
  cut.start();
  testing::Answering peer(R"({"header":{"revision":"3"},"deleted":"2"})");
  auto c = client_for({cut.url(), peer.url()}, milliseconds(1500));
  REQUIRE(c->remove("x").ok());
  CHECK(c->endpoint() == cut.url());
  auto start = Clock::now();
  auto r = c->remove("x");
  double took = ms_since(start);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(*r == 2);
  CHECK(took < 1200);  // 750 ms on the cut member, then the peer
  CHECK(c->endpoint() == peer.url());
  start = Clock::now();
  REQUIRE(c->remove("x").ok());
  CHECK(ms_since(start) < 500);  // straight to the peer
  CHECK(calls == 2);
}

TEST_CASE("no endpoint answering is an Error naming each, a slow member runs out the deadline") {
  auto dead = client_for({closed_endpoint(), closed_endpoint()});
  auto r = dead->range("k");
  REQUIRE_FALSE(r.ok());
  INFO(r.error().message);
  CHECK(r.error().message.find("no endpoint answered") != std::string::npos);
  CHECK_FALSE(r.error().timeout);

  Gateway slow;
  slow.server.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(milliseconds(700));
    res.set_content("{}", "application/json");
  });
  slow.start();
  auto c = client_for({slow.url()}, milliseconds(200));
  auto start = Clock::now();
  auto t = c->range("k");
  double took = ms_since(start);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().timeout);
  CHECK(took < 500);
}

TEST_CASE("auth: the token is sent as Authorization and an invalid token re-authenticates once") {
  Gateway g;
  std::atomic<int> authentications{0};
  std::vector<std::string> seen_tokens;
  std::mutex mu;
  g.server.Post("/v3/auth/authenticate", [&](const httplib::Request& req, httplib::Response& res) {
    int n = ++authentications;
    CHECK(req.body == R"({"name":"root","password":"p\"w"})");
    res.set_content(R"({"header":{},"token":"tok)" + std::to_string(n) + "\"}", "application/json");
  });
  g.server.Post("/v3/kv/put", [&](const httplib::Request& req, httplib::Response& res) {
    std::string token = req.get_header_value("Authorization");
    {
      std::lock_guard<std::mutex> lock(mu);
      seen_tokens.push_back(token);
    }
    if (token != "tok2") {
      res.status = 401;
      res.set_content(R"({"error":"etcdserver: invalid auth token","code":16})",
                      "application/json");
      return;
    }
    res.set_content(R"({"header":{"revision":"4"}})", "application/json");
  });
  g.start();
  EtcdOptions o;
  o.endpoints = {g.url()};
  o.user = "root";
  o.password = "p\"w";
  auto c = EtcdClient::create(o);
  REQUIRE(c.ok());
  auto r = (*c)->put("k", "v");
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(*r == 4);
  CHECK(authentications == 2);
  CHECK(seen_tokens == std::vector<std::string>{"tok1", "tok2"});
  REQUIRE((*c)->put("k", "v").ok());  // the token is kept
  CHECK(authentications == 2);
}

namespace {

// A watch stream: the given pieces written with small pauses between them
// (so they arrive as separate chunks), then held open and idle until `done`.
struct WatchGateway {
  Gateway g;
  std::atomic<bool> done{false};
  std::atomic<bool> close_after{false};
  std::string request_body;

  explicit WatchGateway(std::vector<std::string> pieces) {
    g.server.Post("/v3/watch", [this, pieces](const httplib::Request& req, httplib::Response& res) {
      request_body = req.body;
      res.set_chunked_content_provider(
          "application/json",
          [this, pieces, i = size_t{0}](size_t, httplib::DataSink& sink) mutable {
            if (i < pieces.size()) {
              sink.write(pieces[i].data(), pieces[i].size());
              ++i;
              std::this_thread::sleep_for(milliseconds(15));
              return true;
            }
            if (close_after) {
              sink.done();
              return true;
            }
            for (int n = 0; n < 200 && !done; ++n) std::this_thread::sleep_for(milliseconds(10));
            return !done.load();
          });
    });
    g.start();
  }
  ~WatchGateway() { done = true; }
};

}  // namespace

TEST_CASE("watch reads messages cut anywhere, sees PUT and DELETE, and returns soon after stop") {
  // Braces and an escaped quote inside a string must not end a message.
  std::string created = R"({"result":{"header":{"revision":"4"},"created":true,"x":"}\"{]"}})";
  std::string put =
      R"({"result":{"header":{"revision":"7"},"events":[{"kv":{"key":"Zm9v","value":"e30=",)"
      R"("create_revision":"5","mod_revision":"5","version":"1","lease":"12"}}]}})";
  std::string del =
      R"({"result":{"header":{"revision":"8"},"events":[{"type":"DELETE","kv":{"key":"Zm9v",)"
      R"("mod_revision":"6"}}]}})";
  // Split inside a string, right after a brace and between messages.
  std::string all = created + "\n" + put + "\n" + del + "\n";
  size_t a = created.size() + 10, b = created.size() + put.size() + 3;
  WatchGateway w({all.substr(0, 7), all.substr(7, a - 7), all.substr(a, b - a), all.substr(b)});
  auto c = client_for({closed_endpoint(), w.g.url()});
  std::atomic<bool> stop{false};
  std::vector<EtcdWatchEvent> events;
  std::vector<int64_t> revisions;
  Clock::time_point stopped_at;
  Status result;
  std::thread watcher([&] {
    result = c->watch(
        "foo", true, 5,
        [&](const std::vector<EtcdWatchEvent>& batch, int64_t revision) {
          events.insert(events.end(), batch.begin(), batch.end());
          revisions.push_back(revision);
          return true;
        },
        stop, std::chrono::seconds(10));
  });
  auto start = Clock::now();
  while (events.size() < 2 && ms_since(start) < 3000) std::this_thread::sleep_for(milliseconds(5));
  std::this_thread::sleep_for(milliseconds(100));  // the stream is idle now
  stopped_at = Clock::now();
  stop = true;
  watcher.join();
  double took = ms_since(stopped_at);
  CHECK(result.ok());
  CHECK(took < 200);
  REQUIRE(events.size() == 2);
  CHECK_FALSE(events[0].removed);
  CHECK(events[0].kv.key == "foo");
  CHECK(events[0].kv.value == "{}");
  CHECK(events[0].kv.lease == 12);
  CHECK(events[1].removed);
  CHECK(events[1].kv.mod_revision == 6);
  // The events' revisions, not the headers' (see etcd_client.h).
  CHECK(revisions == std::vector<int64_t>{5, 6});
  CHECK(w.request_body ==
        R"({"create_request":{"key":"Zm9v","range_end":"Zm9w","start_revision":"5"}})");
  CHECK(c->endpoint() == w.g.url());
}

TEST_CASE("watch ends with an Error on a compacted revision, a malformed or oversized message") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"result":{"header":{},"canceled":true,"compact_revision":"9"}})", "compacted"},
      {R"({"result":{"events":[{"type":"BOOM","kv":{}}]}})", "unknown event type"},
      {R"({"result":{"events":[{"kv":{"key":"***"}}]}})", "base64"},
      {R"({"result":{"events":[{}]}})", "without \"kv\""},
      {R"({"error":"etcdserver: mvcc: required revision is a future revision","code":11})",
       "future revision"},
      {R"({"result":{"events":"x"}})", "not an array"},
      {"]", "between messages"},
      {"{\"result\":{\"header\":{\"x\":\"" + std::string(5000, 'y') + "\"}}}", "limit"},
      {R"({"result":{"created":true}})", "ended the stream"},
      // Never closed: the message cap stops it, not the end of the stream.
      {"{\"result\":{\"x\":\"" + std::string(5000, 'y'), "a message is larger than"},
  };
  for (const auto& [body, expect] : cases) {
    INFO(body.substr(0, 80));
    WatchGateway w({body});
    w.close_after = true;
    auto c = client_for({w.g.url()}, milliseconds(1500), 4096);
    std::atomic<bool> stop{false};
    int batches = 0;
    Status s = c->watch(
        "foo", false, 3,
        [&](const std::vector<EtcdWatchEvent>&, int64_t) {
          ++batches;
          return true;
        },
        stop, std::chrono::seconds(5));
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find(expect) != std::string::npos);
    CHECK(batches == 0);
  }
}

TEST_CASE("watch returns when max_time passes or on_events says stop") {
  std::string put = R"({"result":{"events":[{"kv":{"key":"Zm9v","mod_revision":"8"}}]}})";
  {
    WatchGateway w({put});
    auto c = client_for({w.g.url()});
    std::atomic<bool> stop{false};
    auto start = Clock::now();
    Status s = c->watch(
        "foo", false, 0, [](const std::vector<EtcdWatchEvent>&, int64_t) { return false; }, stop,
        std::chrono::seconds(5));
    CHECK(s.ok());
    CHECK(ms_since(start) < 1000);
  }
  {
    WatchGateway w({});
    auto c = client_for({w.g.url()});
    std::atomic<bool> stop{false};
    auto start = Clock::now();
    Status s = c->watch(
        "foo", false, 0, [](const std::vector<EtcdWatchEvent>&, int64_t) { return true; }, stop,
        milliseconds(300));
    double took = ms_since(start);
    CHECK(s.ok());
    CHECK(took >= 290);
    CHECK(took < 800);
  }
}
