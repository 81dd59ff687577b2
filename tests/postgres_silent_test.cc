// The postgres driver against a server that never answers (issue 14): a
// socket that listens and never accepts. The kernel completes the
// handshake, libpq sends its first packet and waits for an answer that never
// comes, as from a host whose packets are dropped. No PostgreSQL needed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "builders.h"
#include "drivers/postgres_driver.h"
#include "drivers/postgres_session.h"
#include "util/deadline.h"

using namespace stackflip;
using SteadyClock = std::chrono::steady_clock;

namespace {

// A loopback port that listens and never answers; with `listening` false,
// a port bound but not listening, which refuses connections at once.
struct SilentServer {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  explicit SilentServer(bool listening = true) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (listening) REQUIRE(::listen(fd, 16) == 0);
    socklen_t n = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) == 0);
    port = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd); }
  std::string dsn() const {
    return "host=127.0.0.1 port=" + std::to_string(port) + " user=nobody dbname=x sslmode=disable";
  }
};

double ms_since(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

}  // namespace

TEST_CASE(
    "issue 14: a connection to a silent server stops at the operation deadline, to the "
    "millisecond") {
  SilentServer s;
  const auto start = SteadyClock::now();
  Result<PgConnection> c = Err("not run");
  {
    DeadlineScope scope([start] { return start + std::chrono::milliseconds(300); }, "given 300 ms");
    c = pg_connect({s.dsn(), ""}, {2000, 5000}, "primary", "test");
  }
  const double took = ms_since(start);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().timeout);
  CHECK_THAT(c.error().message, Catch::Contains("(stopped: given 300 ms)"));
  CHECK(took >= 250);
  CHECK(took < 1000);  // libpq's own connect_timeout waits 2 s at least
}

TEST_CASE("issue 14: observing a silent server is unreachable and timed out, within the deadline") {
  SilentServer s;
  ProviderConfig p{"db", "postgres", {{"connect_timeout_ms", "2000"}}, {}, {}};
  GroupSpec g = testing::make_group("primary");
  g.stacks["primary"].settings["dsn"] = s.dsn();
  auto d = make_postgres_stack_driver(p, g, "primary");
  const auto start = SteadyClock::now();
  StackObs o;
  {
    DeadlineScope scope([start] { return start + std::chrono::milliseconds(200); }, "given 200 ms");
    o = d->observe();
  }
  CHECK(ms_since(start) < 1000);
  CHECK_FALSE(o.reachable);
  CHECK(o.timed_out);
  CHECK_FALSE(o.config_error);
}

TEST_CASE(
    "issue 14: libpq's own connect timeout on a silent server is a timeout, a refusal is "
    "not") {
  SilentServer s;
  auto silent = pg_connect({s.dsn(), ""}, {1000, 5000}, "primary", "test");  // libpq: 2 s
  REQUIRE_FALSE(silent.ok());
  CHECK(silent.error().timeout);
  CHECK_THAT(silent.error().message, Catch::Contains("timeout expired"));
  SilentServer closed(/*listening=*/false);
  auto refused = pg_connect({closed.dsn(), ""}, {1000, 5000}, "primary", "test");
  REQUIRE_FALSE(refused.ok());
  CHECK_FALSE(refused.error().timeout);
}
