// The powerdns TrafficDriver against the harness's real PowerDNS server.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <thread>

#include "closed_port.h"
#include "drivers/powerdns_driver.h"
#include "itest_env.h"

using namespace stackflip;
using itest::ms_since;
using stackflip::testing::closed_port;
using Clock = std::chrono::steady_clock;

namespace {

// What the authoritative server answers right now (dig +short).
std::string dig() {
  std::string cmd = "dig @127.0.0.1 -p " + itest::env("PDNS_PORT") + " " + itest::env("RECORD") +
                    " A +short +time=1 +tries=1 2>/dev/null";
  return itest::run(cmd);
}

}  // namespace

std::unique_ptr<TrafficDriver> pdns_traffic(const ProviderConfig& p, const GroupSpec& g) {
  return make_powerdns_traffic_driver(p, g, g.traffic.at(0));
}

TEST_CASE("powerdns observe finds the record pointing at the primary") {
  if (!itest::have_harness()) return;
  auto d = pdns_traffic(itest::pdns_provider(), itest::group());
  auto o = d->observe();
  INFO(o.error);
  REQUIRE(o.reachable);
  CHECK(o.target == std::optional<std::string>("primary"));
  CHECK(o.content == itest::env("PG1_HOST"));
  CHECK(o.ttl == 60);
}

TEST_CASE("powerdns switch points the record at the standby and DNS answers it") {
  if (!itest::have_harness()) return;
  GroupSpec g = itest::group();
  auto d = pdns_traffic(itest::pdns_provider(), g);
  REQUIRE(dig() == itest::env("PG1_HOST"));

  auto t = Clock::now();
  REQUIRE(d->switch_to("standby").message() == "");
  double patched = ms_since(t);
  std::string answer;
  for (int i = 0; i < 100 && (answer = dig()) != itest::env("PG2_HOST"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  itest::timing("traffic.switch (PATCH + verify)", patched);
  itest::timing("traffic.switch until dig answers the standby", ms_since(t));
  CHECK(answer == itest::env("PG2_HOST"));
  auto o = d->observe();
  CHECK(o.target == std::optional<std::string>("standby"));
  CHECK(o.ttl == 60);

  REQUIRE(d->switch_to("standby").ok());  // idempotent
  CHECK_FALSE(d->switch_to("nosuchstack").ok());

  REQUIRE(d->switch_to("primary").message() == "");
  CHECK(d->observe().target == std::optional<std::string>("primary"));
  CHECK(dig() == itest::env("PG1_HOST"));
}

TEST_CASE("powerdns with a wrong API key is unreachable with HTTP 401 and no key in the message") {
  if (!itest::have_harness()) return;
  setenv("ITEST_WRONG_PDNS_KEY", "wrong-key-0123456789", 1);
  auto d = pdns_traffic(itest::pdns_provider("${env:ITEST_WRONG_PDNS_KEY}"), itest::group());
  auto o = d->observe();
  CHECK_FALSE(o.reachable);
  CHECK(o.error.find("401") != std::string::npos);
  CHECK(o.error.find("wrong-key-0123456789") == std::string::npos);
  CHECK(o.error.find(itest::env("PDNS_API_KEY")) == std::string::npos);
  auto s = d->switch_to("standby");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("wrong-key-0123456789") == std::string::npos);
}

TEST_CASE("powerdns on a closed port is unreachable within the timeout") {
  if (!itest::have_harness()) return;
  auto url = "http://127.0.0.1:" + std::to_string(closed_port());
  auto d = pdns_traffic(itest::pdns_provider("${env:PDNS_API_KEY}", url), itest::group());
  auto t = Clock::now();
  auto o = d->observe();
  CHECK(ms_since(t) < 1500);
  CHECK_FALSE(o.reachable);
  CHECK(o.error.find(url) != std::string::npos);
  CHECK(o.error.find(itest::env("PDNS_API_KEY")) == std::string::npos);
}
