// Issue 17, item 3: a traffic record (and its zone) that does not exist is
// created pointing at the active stack, never taken for unreachable; what
// is at the name but not stackflip's (a CNAME, values of no stack beside
// others) is refused with a blocker naming it, never overwritten; a missing
// zone is a configuration error unless the provider says `create_zone`.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/snapshot.h"
#include "core/planner.h"
#include "drivers/powerdns_driver.h"
#include "support/builders.h"
#include "support/fake_powerdns.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

const std::string kZone = "example.test.";
const std::string kRecord = "shop.example.test.";

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

ProviderConfig pdns_provider(const std::string& url, bool create_zone = false) {
  setenv("STACKFLIP_TEST_PDNS_KEY", "k", 1);
  ProviderConfig p;
  p.name = "dns";
  p.type = "powerdns";
  p.settings = {{"url", url}, {"api_key", "${env:STACKFLIP_TEST_PDNS_KEY}"}};
  if (create_zone) p.settings["create_zone"] = "true";
  return p;
}

// The group of builders.h with its record's TTL at 45, so that a created
// record is seen to take the desired TTL, not the fake's default.
GroupSpec group_ttl45() {
  GroupSpec g = make_group("primary");
  g.traffic[0].ttl = 45;
  return g;
}

std::unique_ptr<TrafficDriver> driver(const FakePowerDns& pdns, const GroupSpec& g,
                                      bool create_zone = false) {
  return make_powerdns_traffic_driver(pdns_provider(pdns.url(), create_zone), g, g.traffic[0]);
}

// The builders' healthy pair: primary writable, standby streaming from it.
GroupObs healthy_with(TrafficObs t) {
  return GroupObs{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
                  combine_traffic({std::move(t)})};
}

TrafficObs absent_part(const std::string& what) {
  TrafficObs t;
  t.name = kRecord + " A";
  t.absent = what;
  return t;
}

}  // namespace

TEST_CASE(
    "issue 17: PowerDNS: a record that does not exist is absent, not unreachable, and the switch "
    "creates it with the desired TTL") {
  FakePowerDns pdns;
  pdns.set_rrset(kZone, "ns1.example.test.", "A", {"127.0.0.53"});  // the zone, without shop
  GroupSpec g = group_ttl45();
  auto d = driver(pdns, g);
  TrafficObs t = d->observe();
  INFO(t.error);
  CHECK(t.reachable);
  CHECK_FALSE(t.config_error);
  CHECK(t.absent == "record");
  CHECK_FALSE(t.target);
  CHECK(t.blocker.empty());
  CHECK(t.records.empty());

  REQUIRE(d->switch_to("primary").ok());
  CHECK(pdns.rrset(kZone, kRecord, "A") == std::vector<std::string>{"127.0.0.1"});
  CHECK(pdns.rrset_ttl(kZone, kRecord, "A") == 45);
  CHECK(pdns.posts() == 0);  // the zone exists: nothing else is created
  t = d->observe();
  CHECK(t.target == std::optional<std::string>("primary"));
  CHECK(t.absent.empty());
}

TEST_CASE(
    "issue 17: PowerDNS: a missing zone without create_zone is a configuration error naming the "
    "zone and the setting, and nothing is created") {
  FakePowerDns pdns;
  GroupSpec g = group_ttl45();
  auto d = driver(pdns, g);
  TrafficObs t = d->observe();
  CHECK_FALSE(t.reachable);
  CHECK(t.config_error);  // an error to fix (exit 1), not "unreachable"
  CHECK(t.absent.empty());
  CHECK(has(t.error, "zone example.test. does not exist on PowerDNS"));
  CHECK(has(t.error, "create it, or set `create_zone: true` on provider 'dns'"));
  CHECK_FALSE(d->switch_to("primary").ok());
  CHECK(pdns.posts() == 0);
  CHECK_FALSE(pdns.has_zone(kZone));
}

TEST_CASE(
    "issue 17: PowerDNS: with create_zone a missing zone is absent, and the switch creates zone "
    "and record") {
  FakePowerDns pdns;
  GroupSpec g = group_ttl45();
  auto d = driver(pdns, g, true);
  TrafficObs t = d->observe();
  INFO(t.error);
  CHECK(t.reachable);
  CHECK_FALSE(t.config_error);
  CHECK(t.absent == "zone");
  CHECK_FALSE(t.target);

  REQUIRE(d->switch_to("primary").ok());
  CHECK(pdns.has_zone(kZone));
  CHECK(pdns.posts() == 1);
  CHECK(pdns.rrset(kZone, kRecord, "A") == std::vector<std::string>{"127.0.0.1"});
  CHECK(pdns.rrset_ttl(kZone, kRecord, "A") == 45);
  CHECK(d->observe().target == std::optional<std::string>("primary"));

  // Later switches go straight to the PATCH: no further zone creation.
  REQUIRE(d->switch_to("standby").ok());
  CHECK(pdns.posts() == 1);
}

TEST_CASE(
    "issue 17: PowerDNS: a server_id the server does not know is a configuration error that "
    "says so, not a missing zone") {
  FakePowerDns pdns;
  GroupSpec g = group_ttl45();
  ProviderConfig p = pdns_provider(pdns.url(), true);
  p.settings["server_id"] = "nosuch";
  TrafficObs t = make_powerdns_traffic_driver(p, g, g.traffic[0])->observe();
  CHECK_FALSE(t.reachable);
  CHECK(t.config_error);
  CHECK(t.absent.empty());  // never created on a guess
  CHECK(has(t.error, "PowerDNS has no server \"nosuch\""));
}

TEST_CASE(
    "issue 17: PowerDNS: values of no stack beside others are a blocker naming them, never "
    "overwritten") {
  FakePowerDns pdns;
  GroupSpec g = group_ttl45();
  pdns.set_rrset(kZone, kRecord, "A", {"127.0.0.2", "203.0.113.9"});
  auto d = driver(pdns, g);
  TrafficObs t = d->observe();
  REQUIRE(t.reachable);
  CHECK(t.absent.empty());
  CHECK(has(t.blocker,
            "shop.example.test. A holds 203.0.113.9, which is no stack's address, beside "
            "127.0.0.2"));
  CHECK(has(t.blocker, "remove them by hand, or add them to a stack's `address`"));

  // The plan blocks the traffic step on it, and a switch that needs the
  // record holds the fence: nothing is written.
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, healthy_with(t), actions, skipped);
  REQUIRE(steps(actions) == std::vector<std::string>{"traffic.switch primary BLOCKED"});
  CHECK(has(actions[0].why_blocked, "203.0.113.9, which is no stack's address"));
  actions.clear();
  plan_group(make_group("standby"), healthy_with(t), actions, skipped);
  REQUIRE_FALSE(actions.empty());
  CHECK(steps(actions).front() == "maintenance.on primary BLOCKED");
  CHECK(pdns.patches(kZone) == 0);
  CHECK(pdns.rrset(kZone, kRecord, "A") == std::vector<std::string>{"127.0.0.2", "203.0.113.9"});

  // Two values of no stack: the same. One alone is replaced (a stack's
  // address changed in the config leaves one behind).
  pdns.set_rrset(kZone, kRecord, "A", {"203.0.113.9", "203.0.113.10"});
  CHECK(has(d->observe().blocker,
            "holds 203.0.113.9, 203.0.113.10, which are no stack's addresses, beside each other"));
  pdns.set_rrset(kZone, kRecord, "A", {"203.0.113.9"});
  t = d->observe();
  CHECK(t.blocker.empty());
  CHECK(t.absent.empty());
  REQUIRE(d->switch_to("primary").ok());
  CHECK(pdns.rrset(kZone, kRecord, "A") == std::vector<std::string>{"127.0.0.1"});
}

TEST_CASE("issue 17: PowerDNS: the blocker of many foreign values is bounded") {
  FakePowerDns pdns;
  GroupSpec g = group_ttl45();
  std::vector<std::string> many;
  for (int i = 0; i < 900; ++i)
    many.push_back("10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".1");
  pdns.set_rrset(kZone, kRecord, "A", many);
  TrafficObs t = driver(pdns, g)->observe();
  CHECK(has(t.blocker, "and 895 more"));
  CHECK(t.blocker.size() < 600);
}

TEST_CASE("issue 17: PowerDNS: a CNAME at the name is a blocker that names its target") {
  FakePowerDns pdns;
  GroupSpec g = group_ttl45();
  pdns.set_rrset(kZone, kRecord, "CNAME", {"elsewhere.example.net."});
  TrafficObs t = driver(pdns, g)->observe();
  REQUIRE(t.reachable);
  CHECK(t.absent.empty());  // the name is taken: not absent
  CHECK(has(t.blocker,
            "shop.example.test. holds a CNAME record, and PowerDNS keeps no A record "
            "beside a CNAME (CNAME elsewhere.example.net.; remove it by hand"));
  CHECK(pdns.patches(kZone) == 0);
}

TEST_CASE(
    "issue 17: an absent record is planned as its creation at the active stack: no fence, no "
    "promotion, no switch") {
  GroupSpec g = make_group("primary");
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, healthy_with(absent_part("record")), actions, skipped);
  REQUIRE(steps(actions) == std::vector<std::string>{"traffic.switch primary"});
  CHECK(actions[0].reason ==
        "shop.example.test. A does not exist: create it pointing at primary with TTL 60 "
        "(`active: primary`)");
  CHECK(skipped.empty());

  actions.clear();
  plan_group(g, healthy_with(absent_part("zone")), actions, skipped);
  REQUIRE(steps(actions) == std::vector<std::string>{"traffic.switch primary"});
  CHECK(has(actions[0].reason,
            "shop.example.test. A does not exist, nor its zone: create both pointing at primary"));

  // Only the stack the commit names gets it, however the standby stands.
  GroupObs o = healthy_with(absent_part("record"));
  o.stacks["standby"] = primary(true);  // a fenced primary, say after an old failover
  actions.clear();
  plan_group(g, o, actions, skipped);
  REQUIRE_FALSE(actions.empty());
  CHECK(steps(actions).front() == "traffic.switch primary");
  for (const Action& a : actions) CHECK(a.kind != ActionKind::database_promote);
}

TEST_CASE(
    "issue 17: a missing zone without create_zone holds the fence of a switch and is a "
    "configuration error, not unreachable") {
  TrafficObs t;
  t.name = kRecord + " A";
  t.reachable = false;
  t.config_error = true;
  t.error =
      "zone example.test. does not exist on PowerDNS (...): create it, or set "
      "`create_zone: true` on provider 'dns' to let stackflip create it";
  DesiredState d = make_desired({make_group("standby")});
  ObservedState obs;
  obs.groups["shop"] = healthy_with(t);
  Plan plan = make_plan(d, obs);
  REQUIRE_FALSE(plan.actions.empty());
  CHECK(steps(plan.actions).front() == "maintenance.on primary BLOCKED");
  CHECK(has(plan.actions.front().why_blocked,
            "configuration error (shop.example.test. A: zone example.test. does not"));
  CHECK_FALSE(has(plan.actions.front().why_blocked, "unreachable"));
  REQUIRE(plan.config_errors.count("shop"));
  CHECK(has(plan.config_errors.at("shop"), "set `create_zone: true`"));
}

TEST_CASE(
    "issue 17: without database observation an absent record is no record of a promotion, and "
    "the block says so") {
  GroupSpec g = make_group("primary");
  GroupObs o = healthy_with(absent_part("record"));
  for (auto& [name, s] : o.stacks) s.database.reset();  // Cloud 66 without database_dsn
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  bool said = false;
  for (const Action& a : actions) {
    if (a.kind == ActionKind::database_promote) CHECK(a.blocked);
    said |= has(a.why_blocked,
                "the traffic record does not exist either, so nothing records "
                "whether primary was promoted");
  }
  CHECK(said);
}

TEST_CASE("issue 17: absent and attach_by_hand survive a snapshot") {
  ObservedState obs;
  obs.observed_at = "2026-12-01T00:00:00Z";
  GroupObs g = healthy_with(absent_part("zone"));
  g.stacks["standby"].attach_by_hand = "in the dashboard, do X";
  obs.groups["shop"] = g;
  auto back = parse_snapshot("s.json", snapshot_to_json(obs));
  REQUIRE(back.ok());
  CHECK(back->groups.at("shop").traffic.absent == "zone");
  CHECK(back->groups.at("shop").stacks.at("standby").attach_by_hand == "in the dashboard, do X");
}
