// shared_reads_test — observation grows with zones and lists, not with
// addresses (issue 11, item 6): a PowerDNS zone and a Cloud 66 failover
// group list are read once per observation pass however many records or
// groups use them; apply's reads and verifications stay fresh; a change
// drops the shared copy.
#include <stdlib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/observe.h"
#include "core/provider_stats.h"
#include "drivers/drivers.h"
#include "drivers/powerdns_zone.h"
#include "fake_cloud66.h"
#include "fake_powerdns.h"
#include "gitops/metrics.h"

using namespace stackflip;
using stackflip::testing::FakeCloud66;
using stackflip::testing::FakePowerDns;

namespace {

const char* kZone = "example.test.";

// Stacks that are always up; traffic through the real factory, so the
// traffic drivers share what RealDriverFactory shares.
class RealTrafficFactory : public DriverFactory {
 public:
  class UpStack : public StackDriver {
   public:
    StackObs observe() override {
      StackObs s;
      s.reachable = true;
      s.maintenance = false;
      return s;
    }
    Status set_maintenance(bool) override { return Status::Ok(); }
    Status stop_replication() override { return Status::Ok(); }
    Status promote() override { return Status::Ok(); }
    Status start_replication(const StackSpec&) override { return Status::Ok(); }
  };
  Result<std::unique_ptr<StackDriver>> stack_driver(const DesiredState&, const GroupSpec&,
                                                    const std::string&) override {
    return std::unique_ptr<StackDriver>(std::make_unique<UpStack>());
  }
  Result<std::unique_ptr<TrafficDriver>> traffic_driver(const DesiredState& d, const GroupSpec& g,
                                                        const TrafficSpec& t) override {
    return real.traffic_driver(d, g, t);
  }
  RealDriverFactory real;
};

class NoSleepClock : public Clock {
 public:
  Duration now() override { return std::chrono::steady_clock::now().time_since_epoch(); }
  void sleep_for(Duration) override {}
  std::string rfc3339_now() override { return "2026-11-30T00:00:00Z"; }
};

std::string ip(int group, int stack) {
  return "10." + std::to_string(stack) + "." + std::to_string(group / 250) + "." +
         std::to_string(group % 250 + 1);
}

// `groups` groups g0.., each with stacks a (active, holding the records) and
// b, and `records` A records rN.gI.example.test. in one zone.
DesiredState dns_fleet(FakePowerDns& pdns, int groups, int records) {
  setenv("STACKFLIP_TEST_PDNS_KEY", "k", 1);
  DesiredState d;
  d.providers["dns"] =
      ProviderConfig{"dns",
                     "powerdns",
                     {{"url", pdns.url()}, {"api_key", "${env:STACKFLIP_TEST_PDNS_KEY}"}},
                     {},
                     {}};
  d.providers["db"] = ProviderConfig{"db", "fake", {}, {}, {}};
  for (int i = 0; i < groups; ++i) {
    GroupSpec g;
    g.name = "g" + std::to_string(i);
    g.active = "a";
    for (int s = 0; s < 2; ++s) {
      StackSpec st;
      st.name = s ? "b" : "a";
      st.provider = "db";
      st.address = ip(i, s);
      st.addresses = {st.address};
      g.stacks[st.name] = st;
    }
    for (int r = 0; r < records; ++r) {
      TrafficSpec t;
      t.provider = "dns";
      const std::string name = "r" + std::to_string(r) + "." + g.name + "." + kZone;
      t.settings = {{"zone", kZone}, {"record", name}};
      t.name = name + " A";
      g.traffic.push_back(t);
      pdns.set_rrset(kZone, name, "A", {ip(i, 0)});
    }
    d.groups[g.name] = g;
  }
  return d;
}

}  // namespace

TEST_CASE("issue 11: 60 records of one zone in 20 groups cost one zone GET per observation pass") {
  FakePowerDns pdns;
  DesiredState d = dns_fleet(pdns, 20, 3);
  RealTrafficFactory factory;
  Fleet fleet = make_fleet(d, factory);
  NoSleepClock clock;

  ObservedState o = observe_all(d, fleet, clock, 8);
  CHECK(pdns.gets(kZone) == 1);
  for (const auto& [name, g] : o.groups) {
    INFO(name);
    CHECK(g.traffic.reachable);
    CHECK(g.traffic.target == std::optional<std::string>("a"));
    CHECK(g.traffic.parts.size() == 3);
  }
  observe_all(d, fleet, clock, 8);
  CHECK(pdns.gets(kZone) == 2);  // a new pass reads again
}

TEST_CASE(
    "issue 11: a zone that cannot be read costs one GET per pass, every record of it unreachable") {
  FakePowerDns pdns;
  DesiredState d = dns_fleet(pdns, 10, 2);
  pdns.fail_gets(500);
  RealTrafficFactory factory;
  Fleet fleet = make_fleet(d, factory);
  NoSleepClock clock;
  ObservedState o = observe_all(d, fleet, clock, 4);
  CHECK(pdns.gets(kZone) == 1);
  for (const auto& [name, g] : o.groups) {
    CHECK_FALSE(g.traffic.reachable);
    CHECK(g.traffic.error.find("HTTP 500") != std::string::npos);
  }
}

TEST_CASE(
    "issue 11: readers of one pass that arrive while the zone is being fetched wait for that GET") {
  FakePowerDns pdns;
  pdns.set_rrset(kZone, "shop.example.test.", "A", {"10.0.0.1"});
  pdns.set_get_delay(std::chrono::milliseconds(150));
  setenv("STACKFLIP_TEST_PDNS_KEY", "k", 1);
  PowerDnsZones zones(
      ProviderConfig{"dns",
                     "powerdns",
                     {{"url", pdns.url()}, {"api_key", "${env:STACKFLIP_TEST_PDNS_KEY}"}},
                     {},
                     {}});
  const ObservePass pass = ObservePass::begin();
  std::vector<std::thread> readers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i)
    readers.emplace_back([&] {
      auto z = zones.read(kZone, pass);
      if (z.ok() && (*z)->by_name.count("shop.example.test.")) ++ok;
    });
  for (auto& t : readers) t.join();
  CHECK(ok == 6);
  CHECK(pdns.gets(kZone) == 1);
  CHECK(zones.requests() == 1);
}

TEST_CASE(
    "issue 11: a switch drops the zone's shared copy, and apply's reads and verification are "
    "fresh") {
  FakePowerDns pdns;
  DesiredState d = dns_fleet(pdns, 3, 2);
  RealTrafficFactory factory;
  Fleet fleet = make_fleet(d, factory);
  NoSleepClock clock;
  observe_all(d, fleet, clock, 8);
  REQUIRE(pdns.gets(kZone) == 1);

  // Outside a pass (apply re-observing before a step) every read is fresh.
  fleet.at("g0")->observe();
  CHECK(pdns.gets(kZone) == 3);  // one per record of g0

  // switch_traffic: a fresh read of each record before switching it, a
  // PATCH, and a fresh read verifying it.
  REQUIRE(fleet.at("g1")->switch_traffic("b").ok());
  CHECK(pdns.patches(kZone) == 2);
  CHECK(pdns.gets(kZone) == 3 + 2 * 2);
  CHECK(pdns.rrset(kZone, "r0.g1.example.test.", "A") == std::vector<std::string>{ip(1, 1)});

  // Within one pass, a PATCH made by another group makes later readers of
  // that pass fetch again instead of serving the copy from before it.
  PowerDnsZones zones(d.providers.at("dns"));
  const ObservePass pass = ObservePass::begin();
  REQUIRE(zones.read(kZone, pass).ok());
  REQUIRE(zones.read(kZone, pass).ok());
  CHECK(zones.requests() == 1);
  const std::string body =
      R"({"rrsets": [{"name": "r0.g2.example.test.", "type": "A", "ttl": 60, "changetype": "REPLACE",)"
      R"( "records": [{"content": "10.9.9.9", "disabled": false}]}]})";
  REQUIRE(zones.patch(kZone, body).ok());
  auto after = zones.read(kZone, pass);
  REQUIRE(after.ok());
  CHECK(zones.requests() == 3);
  CHECK((*after)->by_name.at("r0.g2.example.test.").front().records.front().content == "10.9.9.9");
}

TEST_CASE("issue 11: the Cloud 66 failover group list is read once per pass for every group") {
  const char* token = "c66-shared-list-token";
  setenv("CLOUD66_TOKEN_SHARED", token, 1);
  FakeCloud66 fake{token};
  fake.set_per_page(4);  // 10 failover groups: 3 pages
  DesiredState d;
  d.providers["c66"] = ProviderConfig{"c66",
                                      "cloud66",
                                      {{"token", "${env:CLOUD66_TOKEN_SHARED}"},
                                       {"base_url", fake.base_url()},
                                       {"timeout_ms", "3000"},
                                       {"action_timeout_ms", "3000"}},
                                      {},
                                      {}};
  for (int i = 0; i < 10; ++i) {
    const std::string n = std::to_string(i);
    fake.add_stack({"uid-a" + n, "a" + n, false});
    fake.add_stack({"uid-b" + n, "b" + n, false});
    fake.add_group({"fg-" + n, "g" + n + ".example.com", "uid-a" + n, "uid-b" + n, 1, false});
    GroupSpec g;
    g.name = "g" + n;
    g.active = "a";
    for (const char* s : {"a", "b"}) {
      StackSpec st;
      st.name = s;
      st.provider = "c66";
      st.settings = {{"stack_uid", std::string("uid-") + s + n}};
      g.stacks[s] = st;
    }
    TrafficSpec t;
    t.provider = "c66";
    t.settings = {{"failover_group", "fg-" + n}};
    t.name = "failover group fg-" + n;
    g.traffic = {t};
    d.groups[g.name] = g;
  }
  RealTrafficFactory factory;
  Fleet fleet = make_fleet(d, factory);
  NoSleepClock clock;
  auto list_gets = [&] {
    int n = 0;
    for (const auto& r : fake.requests())
      if (r.method == "GET" && r.path.rfind("/failover_groups.json", 0) == 0) ++n;
    return n;
  };

  ObservedState o = observe_all(d, fleet, clock, 8);
  CHECK(list_gets() == 3);
  for (const auto& [name, g] : o.groups) {
    INFO(name);
    CHECK(g.traffic.target == std::optional<std::string>("a"));
  }
  observe_all(d, fleet, clock, 8);
  CHECK(list_gets() == 6);

  // A switch reads fresh (not from the pass's copy) and drops the copy.
  fake.clear_requests();
  REQUIRE(fleet.at("g9")->switch_traffic("b").ok());
  CHECK(fake.group("fg-9").current_stack == 2);
  CHECK(list_gets() >= 3);  // before the switch and its verification, each paging to fg-9
  o = observe_all(d, fleet, clock, 8);
  CHECK(o.groups.at("g9").traffic.target == std::optional<std::string>("b"));
  CHECK(o.groups.at("g0").traffic.target == std::optional<std::string>("a"));
}

TEST_CASE("issue 11: /metrics shows observation time, provider requests and PostgreSQL sessions") {
  FakePowerDns pdns;
  DesiredState d = dns_fleet(pdns, 2, 1);
  RealTrafficFactory factory;
  Fleet fleet = make_fleet(d, factory);
  NoSleepClock clock;
  const uint64_t before = provider_requests("powerdns");
  observe_all(d, fleet, clock, 8);
  CHECK(provider_requests("powerdns") == before + 1);
  postgres_session_opened("db.test:5432");
  Metrics m;
  const std::string text = m.prometheus();
  postgres_session_closed("db.test:5432");
  CHECK(text.find("# TYPE stackflip_observe_duration_seconds histogram") != std::string::npos);
  CHECK(text.find("stackflip_observe_duration_seconds_count ") != std::string::npos);
  CHECK(text.find("stackflip_observe_last_duration_seconds ") != std::string::npos);
  CHECK(text.find("stackflip_provider_requests_total{provider=\"dns\",kind=\"powerdns\",method="
                  "\"GET\"} ") != std::string::npos);
  CHECK(text.find("stackflip_postgres_sessions{server=\"db.test:5432\"} 1") != std::string::npos);
}
