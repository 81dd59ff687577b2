// Issue 11, items 2-4: traffic observed whole (mixed rrsets), several
// traffic addresses per group (dual-stack included), and addresses checked
// against their record types before a switch can start.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/loader.h"
#include "config/snapshot.h"
#include "core/observe.h"
#include "core/planner.h"
#include "drivers/command_driver.h"
#include "drivers/powerdns_driver.h"
#include "support/answering_server.h"
#include "support/builders.h"
#include "support/fake_provider.h"
#include "util/address.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

const std::string kHead =
    "apiVersion: stackflip/v1\n"                                                               // 1
    "providers:\n"                                                                             // 2
    "  db: {type: postgres}\n"                                                                 // 3
    "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: \"${env:PDNS_KEY}\"}\n"  // 4
    "groups:\n"                                                                                // 5
    "  shop:\n"                                                                                // 6
    "    active: fra\n"                                                                        // 7
    "    stacks:\n"                                                                            // 8
    "      fra:\n"                                                                             // 9
    "        provider: db\n"                                                                   // 10
    "        dsn: \"host=10.0.0.5\"\n";                                                        // 11

std::string config(const std::string& fra_address, const std::string& ams_address,
                   const std::string& traffic) {
  return kHead + "        address: " + fra_address + "\n" +  // 12
         "      ams:\n"                                      // 13
         "        provider: db\n"                            // 14
         "        dsn: \"host=10.0.0.6\"\n"                  // 15
         "        address: " +
         ams_address + "\n" +         // 16
         "    traffic:\n" + traffic;  // 17, 18...
}

const std::string kOneRecord =
    "      provider: dns\n"
    "      zone: example.com.\n"
    "      record: shop.example.com.\n";

std::string errors_of(const std::string& text) {
  LoadResult r = load_desired_text("t.yaml", text);
  std::string out;
  for (const auto& e : r.errors) out += format_diagnostic(e) + "\n";
  return out;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("address kinds: IPv4, IPv6, names and typos") {
  CHECK(address_kind("192.0.2.10") == AddressKind::ipv4);
  CHECK(address_kind("2001:db8::20") == AddressKind::ipv6);
  CHECK(address_kind("lb.example.com.") == AddressKind::name);
  CHECK(address_kind("lb.example.com") == AddressKind::name);
  CHECK(address_kind("10.0.0.256") == AddressKind::invalid);
  CHECK(address_kind("a..b") == AddressKind::invalid);
  CHECK(address_kind("has space") == AddressKind::invalid);
  CHECK(address_kind("") == AddressKind::invalid);
  CHECK(canonical_address("2001:DB8:0::20") == "2001:db8::20");
  CHECK(canonical_address("LB.Example.com") == "lb.example.com.");
}

TEST_CASE(
    "issue 11: an IPv6 address on the default A record is refused by validate, at the address") {
  std::string e = errors_of(config("192.0.2.10", "\"2001:db8::20\"", kOneRecord));
  INFO(e);
  CHECK(has(e,
            "t.yaml:16:18: error: address '2001:db8::20' is an IPv6 address, but no record of "
            "group 'shop' "
            "holds one (shop.example.com. A)"));
  CHECK(has(e, "record_type: AAAA, or [A, AAAA] for both families"));
}

TEST_CASE("issue 11: a host name on an A record, a typo and a CNAME with two names are refused") {
  CHECK(has(errors_of(config("192.0.2.10", "lb.example.net.", kOneRecord)),
            "t.yaml:16:18: error: address 'lb.example.net.' is a host name, but no record"));
  CHECK(has(errors_of(config("192.0.2.10", "10.0.0.256", kOneRecord)),
            "t.yaml:16:18: error: address '10.0.0.256' is neither an IP address nor a host name"));
  std::string cname = kOneRecord + "      record_type: CNAME\n";
  CHECK(errors_of(config("a.example.net.", "b.example.net.", cname)).empty());
  CHECK(has(errors_of(config("[a.example.net., c.example.net.]", "b.example.net.", cname)),
            "stack 'fra' has 2 host names, but the CNAME shop.example.com. holds one"));
}

TEST_CASE("issue 11: dual-stack: record_type A and AAAA needs both families on every stack") {
  std::string both = kOneRecord + "      record_type: [A, AAAA]\n";
  LoadResult ok = load_desired_text(
      "t.yaml", config("[192.0.2.10, \"2001:db8::10\"]", "[198.51.100.7, \"2001:db8::20\"]", both));
  INFO(errors_of(
      config("[192.0.2.10, \"2001:db8::10\"]", "[198.51.100.7, \"2001:db8::20\"]", both)));
  REQUIRE(ok.desired);
  const GroupSpec& g = ok.desired->groups.at("shop");
  REQUIRE(g.traffic.size() == 2);
  CHECK(g.traffic[0].name == "shop.example.com. A");
  CHECK(g.traffic[1].name == "shop.example.com. AAAA");
  CHECK(g.traffic[1].get("record_type") == "AAAA");
  CHECK(g.stacks.at("ams").addresses == std::vector<std::string>{"198.51.100.7", "2001:db8::20"});
  CHECK(g.stacks.at("ams").address == "198.51.100.7");

  std::string e = errors_of(config("[192.0.2.10, \"2001:db8::10\"]", "198.51.100.7", both));
  CHECK(has(e,
            "t.yaml:16:18: error: stack 'ams' has no address for record shop.example.com. AAAA "
            "(expected an IPv6 address)"));
}

TEST_CASE(
    "issue 11: a list of traffic addresses, a record listed twice or owned by two groups is "
    "refused") {
  std::string two =
      "      - {provider: dns, zone: example.com., record: shop.example.com.}\n"   // 18
      "      - {provider: dns, zone: example.net., record: shop.example.net.}\n";  // 19
  LoadResult ok = load_desired_text("t.yaml", config("192.0.2.10", "198.51.100.7", two));
  REQUIRE(ok.desired);
  REQUIRE(ok.desired->groups.at("shop").traffic.size() == 2);
  CHECK(ok.desired->groups.at("shop").traffic[1].get("zone") == "example.net.");
  CHECK(ok.desired->groups.at("shop").traffic[1].mark.line == 19);

  std::string twice =
      two + "      - {provider: dns, zone: example.com., record: Shop.example.com.}\n";  // 20
  CHECK(has(errors_of(config("192.0.2.10", "198.51.100.7", twice)),
            "t.yaml:20:53: error: record 'Shop.example.com.' (type A) is listed twice in the "
            "traffic of group 'shop' (first at t.yaml:18:53)"));

  std::string other_group =
      config("192.0.2.10", "198.51.100.7", two) +
      "  blog:\n"                                                                  // 20
      "    active: a\n"                                                            // 21
      "    stacks:\n"                                                              // 22
      "      a: {provider: db, dsn: \"host=10.0.1.1\", address: 10.0.1.1}\n"       // 23
      "      b: {provider: db, dsn: \"host=10.0.1.2\", address: 10.0.1.2}\n"       // 24
      "    traffic:\n"                                                             // 25
      "      - {provider: dns, zone: example.com., record: blog.example.com.}\n"   // 26
      "      - {provider: dns, zone: example.net., record: shop.example.net.}\n";  // 27
  CHECK(has(errors_of(other_group),
            "t.yaml:27:53: error: record 'shop.example.net.' of provider 'dns' is already "
            "owned by group 'shop' (t.yaml:19:53)"));

  std::string cname_and_a = two +
                            "      - {provider: dns, zone: example.com., record: "
                            "shop.example.com., record_type: CNAME}\n";
  CHECK(has(errors_of(config("192.0.2.10", "198.51.100.7", cname_and_a)),
            "cannot be a CNAME and hold other types"));
}

TEST_CASE("issue 11: an error inside a traffic list names the element") {
  std::string two =
      "      - {provider: dns, zone: example.com., record: shop.example.com.}\n"   // 18
      "      - {provider: dns, zone: example.net., recrod: shop.example.net.}\n";  // 19
  std::string e = errors_of(config("192.0.2.10", "198.51.100.7", two));
  INFO(e);
  CHECK(has(
      e,
      "t.yaml:19:45: error: unknown key 'recrod' in traffic #2 of group 'shop' (expected one of: "
      "provider, record, record_type, switch_ttl, ttl, zone)"));
  CHECK(has(errors_of(config("192.0.2.10", "198.51.100.7", "      []\n")),
            "must not be an empty list"));
}

TEST_CASE("issue 11: two stacks with one address are refused: traffic could not tell them apart") {
  CHECK(has(errors_of(config("192.0.2.10", "192.0.2.10", kOneRecord)),
            "t.yaml:16:18: error: address '192.0.2.10' is also stack 'fra''s"));
}

// ------------------------------------------------------------ planning

namespace {

TrafficObs part(const std::string& name, std::vector<TrafficRecord> records,
                std::optional<std::string> target, int ttl = 60) {
  TrafficObs t;
  t.name = name;
  t.records = std::move(records);
  t.target = std::move(target);
  t.ttl = ttl;
  for (const auto& r : t.records)
    if (!r.disabled) t.content += (t.content.empty() ? "" : ", ") + r.content;
  return t;
}

GroupSpec three_records() {
  GroupSpec g = make_group("primary");
  TrafficSpec t = g.traffic[0];
  g.traffic.clear();
  for (const char* r : {"a.example.test.", "b.example.test.", "c.example.test."}) {
    t.settings["record"] = r;
    t.name = std::string(r) + " A";
    g.traffic.push_back(t);
  }
  return g;
}

}  // namespace

TEST_CASE(
    "issue 11: a record holding both stacks' addresses is mixed, not converged, and the reason "
    "names the extra") {
  GroupSpec g = make_group("primary");
  GroupObs o{
      {{"primary", primary(false)}, {"standby", replica(true, "primary")}},
      combine_traffic({part("shop.example.test. A",
                            {{"127.0.0.1", "primary", false}, {"127.0.0.2", "standby", false}},
                            std::nullopt)})};
  CHECK_FALSE(o.traffic.target);
  CHECK(traffic_stacks(o.traffic) == std::vector<std::string>{"primary", "standby"});
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  REQUIRE(steps(actions) == std::vector<std::string>{"traffic.switch primary"});
  CHECK(has(actions[0].reason,
            "traffic is mixed: besides primary's address it holds 127.0.0.2 (standby)"));

  // A disabled value of the standby is not traffic: converged.
  o.traffic = combine_traffic(
      {part("shop.example.test. A",
            {{"127.0.0.1", "primary", false}, {"127.0.0.2", "standby", true}}, "primary")});
  actions.clear();
  plan_group(g, o, actions, skipped);
  CHECK(actions.empty());

  // A value of no stack beside the active one's.
  o.traffic = combine_traffic({part(
      "shop.example.test. A",
      {{"127.0.0.1", "primary", false}, {"203.0.113.9", std::nullopt, false}}, std::nullopt)});
  actions.clear();
  plan_group(g, o, actions, skipped);
  REQUIRE(actions.size() == 1);
  CHECK(has(actions[0].reason, "203.0.113.9 (no stack of the group)"));
}

TEST_CASE("issue 11: with three records, one left on the standby is drift that names it") {
  GroupSpec g = three_records();
  auto on = [](const char* r, const char* stack, const char* ip) {
    return part(std::string(r) + " A", {{ip, std::string(stack), false}}, std::string(stack));
  };
  GroupObs o{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
             combine_traffic({on("a.example.test.", "primary", "127.0.0.1"),
                              on("b.example.test.", "standby", "127.0.0.2"),
                              on("c.example.test.", "primary", "127.0.0.1")})};
  CHECK_FALSE(o.traffic.target);
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  REQUIRE(steps(actions) == std::vector<std::string>{"traffic.switch primary"});
  CHECK(has(actions[0].reason, "b.example.test. A points at standby"));
  CHECK_FALSE(has(actions[0].reason, "a.example.test."));

  // All three on the primary but one with another TTL: a TTL-only step.
  o.traffic = combine_traffic(
      {on("a.example.test.", "primary", "127.0.0.1"), on("b.example.test.", "primary", "127.0.0.1"),
       part("c.example.test. A", {{"127.0.0.1", "primary", false}}, "primary", 300)});
  actions.clear();
  plan_group(g, o, actions, skipped);
  REQUIRE(actions.size() == 1);
  CHECK(actions[0].reason == "c.example.test. A TTL is 300, desired 60");
}

TEST_CASE(
    "issue 11: a traffic address that cannot be switched blocks the fence, not the middle of the "
    "switch") {
  GroupSpec g = make_group("standby");
  TrafficObs t = part("shop.example.test. A", {{"127.0.0.1", "primary", false}}, "primary");
  t.blocker =
      "shop.example.test. holds a CNAME record, and PowerDNS keeps no A record beside a CNAME";
  GroupObs o{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
             combine_traffic({t})};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  REQUIRE_FALSE(actions.empty());
  CHECK(actions[0].kind == ActionKind::maintenance_on);
  CHECK(actions[0].blocked);
  CHECK(has(actions[0].why_blocked, "holds a CNAME record"));
  CHECK(has(actions[0].why_blocked, "the serving primary is not fenced"));
}

TEST_CASE("issue 11: the zone missing (traffic unreachable) blocks a switch before the fence") {
  GroupSpec g = make_group("standby");
  TrafficObs t;
  t.name = "shop.example.test. A";
  t.reachable = false;
  t.error =
      "PowerDNS http://127.0.0.1:8081/api/v1/servers/localhost/zones/example.test.: HTTP 404: Not "
      "Found";
  GroupObs o{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
             combine_traffic({t})};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  REQUIRE_FALSE(actions.empty());
  CHECK(actions[0].kind == ActionKind::maintenance_on);
  CHECK(actions[0].blocked);
  CHECK(has(actions[0].why_blocked, "HTTP 404"));
}

TEST_CASE("issue 11: records and per-address parts survive a snapshot round trip") {
  ObservedState obs;
  obs.observed_at = "2026-11-30T00:00:00Z";
  GroupObs g{
      {{"primary", primary(false)}, {"standby", replica(true, "primary")}},
      combine_traffic(
          {part("a.example.test. A", {{"127.0.0.1", "primary", false}}, "primary"),
           part("b.example.test. A",
                {{"127.0.0.1", "primary", false}, {"127.0.0.2", "standby", true}}, "primary")})};
  obs.groups["shop"] = g;
  std::string text = snapshot_to_json(obs);
  auto back = parse_snapshot("snap.json", text);
  INFO(text);
  REQUIRE(back.ok());
  const TrafficObs& t = back->groups.at("shop").traffic;
  REQUIRE(t.parts.size() == 2);
  CHECK(t.parts[1].records == g.traffic.parts[1].records);
  CHECK(t.parts[1].name == "b.example.test. A");
  CHECK(t.target == std::optional<std::string>("primary"));
  CHECK(snapshot_to_json(*back) == text);
}

TEST_CASE(
    "issue 11: GroupDrivers switches every address that is not on the stack, and only those") {
  GroupSpec g = three_records();
  DesiredState d = make_desired({g});
  FakeWorld world;
  world.stacks["shop"]["primary"] = FakeStack{};
  world.stacks["shop"]["standby"] = FakeStack{};
  world.traffic["shop"] = FakeTraffic{true, "standby", 60};
  FakeDriverFactory factory(world);
  GroupDrivers drivers(d, d.groups.at("shop"), factory);
  TrafficObs before = drivers.observe_traffic();
  CHECK(before.parts.size() == 3);
  CHECK(before.target == std::optional<std::string>("standby"));
  REQUIRE(drivers.switch_traffic("primary").ok());
  // The fake world has one traffic value per group: the first switch moves
  // it, the next two addresses already hold the primary and are skipped.
  int switches = 0;
  for (const auto& c : world.calls) switches += c.rfind("traffic.switch", 0) == 0;
  CHECK(switches == 1);
  CHECK(drivers.observe_traffic().target == std::optional<std::string>("primary"));
}

TEST_CASE(
    "issue 11: a command's traffic answer with two targets is mixed, an unknown one is refused") {
  GroupSpec g = make_group("primary");
  g.traffic[0].provider = "cmd";
  ProviderConfig p;
  p.name = "cmd";
  p.type = "command";
  auto observe = [&](const std::string& answer) {
    p.lists["observe_traffic"] = {"sh", "-c", "printf '%s' '" + answer + "'"};
    return make_command_traffic_driver(p, g, g.traffic[0])->observe();
  };
  TrafficObs both = observe(R"({"targets": ["primary", "standby"], "ttl": 60})");
  INFO(both.error);
  REQUIRE(both.reachable);
  CHECK_FALSE(both.target);
  CHECK(traffic_stacks(both) == std::vector<std::string>{"primary", "standby"});
  TrafficObs one = observe(R"({"targets": ["standby"]})");
  CHECK(one.target == std::optional<std::string>("standby"));
  TrafficObs plain = observe(R"({"target": "primary"})");
  CHECK(plain.target == std::optional<std::string>("primary"));
  CHECK(plain.records.size() == 1);
  TrafficObs bad = observe(R"({"targets": ["primary", "elsewhere"]})");
  CHECK_FALSE(bad.reachable);
  CHECK(has(bad.error, "expected stack names of group shop"));
  TrafficObs disagree = observe(R"({"target": "primary", "targets": ["standby"]})");
  CHECK_FALSE(disagree.reachable);
}

// ------------------------------------------------------------ PowerDNS

namespace {

ProviderConfig pdns_provider(const std::string& url) {
  setenv("STACKFLIP_TEST_PDNS_KEY", "k", 1);
  ProviderConfig p;
  p.name = "dns";
  p.type = "powerdns";
  p.settings = {{"url", url}, {"api_key", "${env:STACKFLIP_TEST_PDNS_KEY}"}};
  return p;
}

GroupSpec dual_stack() {
  GroupSpec g = make_group("primary");
  g.stacks["primary"].addresses = {"192.0.2.10", "2001:db8::10"};
  g.stacks["standby"].addresses = {"198.51.100.7", "2001:DB8:0::20"};
  return g;
}

std::string zone_with(const std::string& rrsets) {
  return R"({"name": "example.test.", "rrsets": [)" + rrsets + "]}";
}

}  // namespace

TEST_CASE("issue 11: PowerDNS: an rrset with both stacks' addresses is observed whole, as mixed") {
  stackflip::testing::Answering pdns(zone_with(
      R"({"name": "shop.example.test.", "type": "A", "ttl": 60, "records": [)"
      R"({"content": "192.0.2.10", "disabled": false}, {"content": "198.51.100.7", "disabled": false}]})"));
  GroupSpec g = dual_stack();
  TrafficObs t =
      make_powerdns_traffic_driver(pdns_provider(pdns.url()), g, g.traffic[0])->observe();
  INFO(t.error);
  REQUIRE(t.reachable);
  CHECK_FALSE(t.target);  // the old driver said "primary": the first record
  REQUIRE(t.records.size() == 2);
  CHECK(t.records[0].stack == std::optional<std::string>("primary"));
  CHECK(t.records[1].stack == std::optional<std::string>("standby"));
  CHECK(t.content == "192.0.2.10, 198.51.100.7");

  // The standby's value disabled: only the primary's is traffic.
  pdns.answer(zone_with(
      R"({"name": "shop.example.test.", "type": "A", "ttl": 60, "records": [)"
      R"({"content": "192.0.2.10", "disabled": false}, {"content": "198.51.100.7", "disabled": true}]})"));
  t = make_powerdns_traffic_driver(pdns_provider(pdns.url()), g, g.traffic[0])->observe();
  CHECK(t.target == std::optional<std::string>("primary"));
}

TEST_CASE(
    "issue 11: PowerDNS: AAAA values compare canonically, and a switch writes every address of the "
    "type") {
  stackflip::testing::Answering pdns(zone_with(
      R"({"name": "shop.example.test.", "type": "AAAA", "ttl": 60, "records": [{"content": "2001:db8::20", "disabled": false}]})"));
  GroupSpec g = dual_stack();
  g.traffic[0].settings["record_type"] = "AAAA";
  g.stacks["standby"].addresses.push_back("2001:db8::21");
  auto d = make_powerdns_traffic_driver(pdns_provider(pdns.url()), g, g.traffic[0]);
  TrafficObs t = d->observe();
  // One of the standby's two IPv6 addresses: not exactly the standby's.
  CHECK_FALSE(t.target);
  CHECK(t.records.at(0).stack == std::optional<std::string>("standby"));
  pdns.answer(zone_with(R"({"name": "shop.example.test.", "type": "AAAA", "ttl": 60, "records": [)"
                        R"({"content": "2001:db8::21"}, {"content": "2001:db8::20"}]})"));
  CHECK(d->observe().target == std::optional<std::string>("standby"));

  CHECK_FALSE(d->switch_to("primary").ok());  // the fake still answers the standby's
  REQUIRE_FALSE(pdns.bodies.empty());
  CHECK(has(pdns.bodies.back(), R"("type":"AAAA")"));
  CHECK(has(pdns.bodies.back(), R"("records":[{"content":"2001:db8::10","disabled":false}])"));
}

TEST_CASE("issue 11: PowerDNS: a CNAME at the record's name is a blocker, seen before any switch") {
  stackflip::testing::Answering pdns(zone_with(
      R"({"name": "shop.example.test.", "type": "CNAME", "ttl": 60, "records": [{"content": "elsewhere.example.net."}]})"));
  GroupSpec g = dual_stack();
  TrafficObs t =
      make_powerdns_traffic_driver(pdns_provider(pdns.url()), g, g.traffic[0])->observe();
  REQUIRE(t.reachable);
  CHECK(has(t.blocker, "holds a CNAME record, and PowerDNS keeps no A record beside a CNAME"));
  CHECK(pdns.methods == std::vector<std::string>{"GET"});
}

TEST_CASE(
    "issue 11: after the fence, the addresses that can be switched are, while another's zone is "
    "unreachable") {
  GroupSpec g = three_records();
  auto on = [](const char* r, const char* stack, const char* ip) {
    return part(std::string(r) + " A", {{ip, std::string(stack), false}}, std::string(stack));
  };
  TrafficObs gone;
  gone.name = "c.example.test. A";
  gone.reachable = false;
  gone.error = "HTTP 404: Not Found";
  // The switch is under way: the primary is promoted and open, the old one
  // fenced; one zone disappeared in between.
  GroupObs o{{{"primary", primary(false)}, {"standby", primary(true)}},
             combine_traffic({on("a.example.test.", "standby", "127.0.0.2"),
                              on("b.example.test.", "standby", "127.0.0.2"), gone})};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  REQUIRE_FALSE(actions.empty());
  CHECK(actions[0].kind == ActionKind::traffic_switch);
  CHECK_FALSE(actions[0].blocked);
  CHECK(has(actions[0].reason, "not switchable now: c.example.test. A: HTTP 404"));

  // Only the unreachable one is wrong: nothing can be switched, so blocked.
  o.traffic = combine_traffic({on("a.example.test.", "primary", "127.0.0.1"),
                               on("b.example.test.", "primary", "127.0.0.1"), gone});
  actions.clear();
  plan_group(g, o, actions, skipped);
  REQUIRE_FALSE(actions.empty());
  CHECK(actions[0].kind == ActionKind::traffic_switch);
  CHECK(actions[0].blocked);
}

TEST_CASE(
    "issue 11: GroupDrivers switches the other addresses when one fails, and names the failed "
    "one") {
  GroupSpec g = three_records();
  DesiredState d = make_desired({g});
  FakeWorld world;
  world.stacks["shop"]["primary"] = FakeStack{};
  world.stacks["shop"]["standby"] = FakeStack{};
  world.traffic["shop"] = FakeTraffic{true, "standby", 60};
  FakeDriverFactory factory(world);
  int made = 0;
  factory.wrap_traffic =
      [&](std::unique_ptr<TrafficDriver> inner) -> std::unique_ptr<TrafficDriver> {
    if (made++ != 0) return inner;
    struct Refusing : TrafficDriver {
      std::unique_ptr<TrafficDriver> inner;
      TrafficObs observe() override {
        TrafficObs t = inner->observe();
        t.target = "standby";  // this address never moves
        return t;
      }
      Status switch_to(const std::string&) override { return Err("HTTP 500: database is locked"); }
    };
    auto r = std::make_unique<Refusing>();
    r->inner = std::move(inner);
    return r;
  };
  GroupDrivers drivers(d, d.groups.at("shop"), factory);
  Status st = drivers.switch_traffic("primary");
  CHECK_FALSE(st.ok());
  CHECK(has(st.message(), "a.example.test. A: HTTP 500"));
  CHECK_FALSE(st.error().permanent);
  // The first address failed; the second was switched (the third then
  // already held the primary in the fake world, which has one value).
  CHECK(world.traffic["shop"].target == "primary");
}
