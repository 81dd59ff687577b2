// Issue 14: when the group's leader may fail over by itself, and the text of
// the commit it writes.
#include "core/auto_failover.h"

#include <catch2/catch.hpp>

#include "builders.h"
#include "config/failover_edit.h"
#include "config/loader.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

constexpr int64_t kT0 = 1'800'000'000'000;  // the outage began here (epoch ms)

GroupSpec auto_group(int witnesses = 1, uint64_t max_loss = 0) {
  GroupSpec g = make_group("primary");
  g.stacks["primary"].site = "fra";
  g.stacks["standby"].site = "ams";
  AutoFailoverSpec a;
  a.after_ms = 10'000;
  a.cooldown_ms = 30 * 60'000;
  a.max_data_loss_bytes = max_loss;
  a.witnesses = witnesses;
  g.auto_failover = a;
  return g;
}

GroupObs down(uint64_t written = 500, uint64_t replayed = 500) {
  GroupObs o;
  o.stacks["primary"] = unreachable(primary(false, written));
  o.stacks["standby"] = replica(true, "primary", replayed);
  o.traffic = traffic_at("primary");
  return o;
}

WitnessVerdict failing(const std::string& instance, const std::string& site, int64_t since) {
  return {instance, site, true, since, "T", "primary is unreachable"};
}
WitnessVerdict healthy(const std::string& instance, const std::string& site) {
  return {instance, site, false, 0, "", ""};
}

AutoFailoverInput alone(int64_t now, int64_t since = kT0) {
  AutoFailoverInput in;
  in.verdicts = {failing("vm", "vm", since)};
  in.now_ms = now;
  in.settled = true;
  in.decided_by = "stackflip on vm";
  in.decided_at = "2026-11-30T14:00:10Z";
  return in;
}

}  // namespace

TEST_CASE("auto failover: none without auto_failover, none while the active stack answers") {
  GroupSpec g = make_group("primary");
  CHECK_FALSE(decide_auto_failover(g, down(), alone(kT0 + 60'000)).go);
  CHECK(decide_auto_failover(g, down(), alone(kT0 + 60'000)).why.empty());
  GroupSpec a = auto_group();
  GroupObs up = down();
  up.stacks["primary"] = primary(false, 500);
  auto d = decide_auto_failover(a, up, alone(kT0 + 60'000));
  CHECK_FALSE(d.go);
  CHECK_FALSE(d.person_decides);
}

TEST_CASE("auto failover: alone (witnesses: 1), only after `after` of continuous failure") {
  GroupSpec g = auto_group();
  auto early = decide_auto_failover(g, down(), alone(kT0 + 9'999));
  CHECK_FALSE(early.go);
  CHECK_FALSE(early.person_decides);  // not yet: it may still come back
  CHECK(early.why == "0 of 1 witnesses saw primary failing for 10s (1 needed)");
  auto d = decide_auto_failover(g, down(), alone(kT0 + 10'000));
  REQUIRE(d.go);
  CHECK(d.to == "standby");
  // The old primary cannot be reached to verify its position: the planner
  // needs allow_data_loss, and the policy allows the last known lag 0.
  CHECK(d.allow_data_loss);
  CHECK(d.subject == "stackflip: fail over group shop from primary to standby");
  INFO(d.evidence);
  CHECK_THAT(d.evidence, Catch::Contains("vm (site vm): failing since T: primary is unreachable"));
  CHECK_THAT(d.evidence, Catch::Contains("primary wrote up to 0/1F4, standby replayed up to "
                                         "0/1F4; lag 0 bytes."));
  CHECK_THAT(d.evidence, Catch::Contains("max_data_loss_bytes 0, cooldown 30m, witnesses: 1"));
  CHECK_THAT(d.evidence, Catch::Contains("allow_data_loss: true because primary cannot be reached"));
}

TEST_CASE("auto failover: without etcd it needs an explicit witnesses: 1") {
  GroupSpec g = auto_group(0);
  auto d = decide_auto_failover(g, down(), alone(kT0 + 60'000));
  CHECK_FALSE(d.go);
  CHECK(d.person_decides);
  CHECK_THAT(d.why, Catch::Contains("needs `witnesses: 1`"));
}

TEST_CASE("auto failover: with etcd, a majority of the live instances, one outside the site") {
  GroupSpec g = auto_group(0);
  AutoFailoverInput in = alone(kT0 + 20'000);
  in.coordinated = true;
  in.live_instances = 3;
  // One of three: not a majority.
  in.verdicts = {failing("fra-1", "fra", kT0), healthy("ams-1", "ams"), healthy("wit-1", "wit")};
  CHECK_FALSE(decide_auto_failover(g, down(), in).go);
  // Two of three, but both in the failing site (say fra has two instances).
  in.verdicts = {failing("fra-1", "fra", kT0), failing("fra-2", "fra", kT0), healthy("ams-1", "ams")};
  auto same_site = decide_auto_failover(g, down(), in);
  CHECK_FALSE(same_site.go);
  CHECK_THAT(same_site.why, Catch::Contains("one outside it is needed"));
  // Two of three with one outside fra, but one has not seen it for `after`.
  in.verdicts = {failing("fra-1", "fra", kT0), failing("ams-1", "ams", kT0 + 15'000),
                 healthy("wit-1", "wit")};
  CHECK_FALSE(decide_auto_failover(g, down(), in).go);
  in.now_ms = kT0 + 25'000;
  auto d = decide_auto_failover(g, down(), in);
  REQUIRE(d.go);
  CHECK_THAT(d.evidence, Catch::Contains("Witnesses (2 of 3 live instances agree)"));
  CHECK_THAT(d.evidence, Catch::Contains("wit-1 (site wit): healthy"));
  // A witness that has seen it failing for less than `after` is listed, not counted.
  in.verdicts.push_back(failing("par-1", "par", kT0 + 20'000));
  in.live_instances = 4;
  in.verdicts.push_back(failing("lon-1", "lon", kT0));
  in.live_instances = 5;
  d = decide_auto_failover(g, down(), in);
  REQUIRE(d.go);
  CHECK_THAT(d.evidence, Catch::Contains("Witnesses (3 of 5 live instances agree)"));
  CHECK_THAT(d.evidence, Catch::Contains("par-1 (site par): failing since T (less than 10s, not "
                                         "counted): primary is unreachable"));
  // `witnesses: 4` raises the bar above the majority.
  g.auto_failover->witnesses = 4;
  CHECK_FALSE(decide_auto_failover(g, down(), in).go);
}

TEST_CASE("auto failover: never in a switch, never twice within the cooldown") {
  GroupSpec g = auto_group();
  AutoFailoverInput in = alone(kT0 + 60'000);
  in.settled = false;
  auto d = decide_auto_failover(g, down(), in);
  CHECK_FALSE(d.go);
  CHECK(d.person_decides);
  CHECK_THAT(d.why, Catch::Contains("not converged"));
  in.settled = true;
  in.last_auto_failover_ms = in.now_ms - 29 * 60'000;
  d = decide_auto_failover(g, down(), in);
  CHECK_FALSE(d.go);
  CHECK(d.why == "an automatic failover of group shop ran 29m ago, within its cooldown of 30m: a "
                 "person decides");
  in.last_auto_failover_ms = in.now_ms - 30 * 60'000;
  CHECK(decide_auto_failover(g, down(), in).go);
}

TEST_CASE("auto failover: never beyond max_data_loss_bytes, never on an unknown lag") {
  auto d = decide_auto_failover(auto_group(1, 0), down(900, 400), alone(kT0 + 60'000));
  CHECK_FALSE(d.go);
  CHECK(d.person_decides);
  CHECK(d.why == "the last known lag of standby is 500 bytes, above max_data_loss_bytes 0: a "
                 "person decides");
  CHECK(decide_auto_failover(auto_group(1, 500), down(900, 400), alone(kT0 + 60'000)).go);
  GroupObs never = down();
  never.stacks["primary"] = unreachable(StackObs{});
  d = decide_auto_failover(auto_group(1, 1u << 30), never, alone(kT0 + 60'000));
  CHECK_FALSE(d.go);
  CHECK_THAT(d.why, Catch::Contains("unknown"));
  // No replica to take over.
  GroupObs none = down();
  none.stacks["standby"] = unreachable(replica(true, "primary", 500));
  d = decide_auto_failover(auto_group(), none, alone(kT0 + 60'000));
  CHECK_FALSE(d.go);
  CHECK_THAT(d.why, Catch::StartsWith("no standby can take over"));
}

TEST_CASE("auto failover: durations are written as the config writes them") {
  CHECK(format_duration_ms(10'000) == "10s");
  CHECK(format_duration_ms(30 * 60'000) == "30m");
  CHECK(format_duration_ms(5'400'000) == "1h30m");
  CHECK(format_duration_ms(250) == "250ms");
}

// ------------------------------------------------------------ the commit's text

namespace {

const char* kConfig = R"(# the shop, two sites
apiVersion: stackflip/v1
providers:
  db: {type: postgres}
  dns: {type: powerdns, url: "http://127.0.0.1:8081", api_key: "${env:PDNS_KEY}", server_id: localhost}
groups:
  shop:
    active: primary   # fra is home
    auto_failover:
      after: 10s
      witnesses: 1
    stacks:
      primary: {provider: db, dsn: "host=127.0.0.1 port=5432", address: 127.0.0.1, site: fra}
      standby: {provider: db, dsn: "host=127.0.0.1 port=5433", address: 127.0.0.2, site: ams}
    traffic: {provider: dns, zone: example.com., record: shop.example.com.}
  blog:
    active: primary
    stacks:
      primary: {provider: db, dsn: "host=127.0.0.1 port=5434", address: 127.0.0.3}
      standby: {provider: db, dsn: "host=127.0.0.1 port=5435", address: 127.0.0.4}
    traffic: {provider: dns, zone: example.com., record: blog.example.com.}
)";

}  // namespace

TEST_CASE("failover edit: flips one group's active:, adds allow_data_loss under it, nothing else") {
  REQUIRE(load_desired_text("s.yaml", kConfig).desired);
  auto out = edit_failover("s.yaml", kConfig, "shop", "standby", true);
  REQUIRE(out.ok());
  std::string want = kConfig;
  want.replace(want.find("active: primary   # fra"), 15, "active: standby");
  want.insert(want.find("    auto_failover:"), "    allow_data_loss: true\n");
  CHECK(*out == want);
  auto plain = edit_failover("s.yaml", kConfig, "shop", "standby", false);
  REQUIRE(plain.ok());
  CHECK(plain->find("allow_data_loss") == std::string::npos);
  CHECK(plain->find("blog:\n    active: primary") != std::string::npos);
}

TEST_CASE("failover edit: quoted values, an existing allow_data_loss, and what it refuses") {
  std::string text = kConfig;
  text.replace(text.find("active: primary   #"), 15, "active: \"primary\"");
  text.insert(text.find("    auto_failover:"), "    allow_data_loss: false\n");
  auto out = edit_failover("s.yaml", text, "shop", "standby", true);
  REQUIRE(out.ok());
  CHECK(out->find("active: standby") != std::string::npos);
  CHECK(out->find("allow_data_loss: true\n") != std::string::npos);
  CHECK(out->find("allow_data_loss: false") == std::string::npos);
  // A flow mapping has no line for a new key: refused, a person writes it.
  std::string flow = kConfig;
  const size_t b = flow.find("  blog:\n");
  flow = flow.substr(0, b) +
         "  blog: {active: primary, stacks: {primary: {provider: db, dsn: \"host=127.0.0.1 "
         "port=5434\", address: 127.0.0.3}, standby: {provider: db, dsn: \"host=127.0.0.1 "
         "port=5435\", address: 127.0.0.4}}, traffic: {provider: dns, zone: example.com., "
         "record: blog.example.com.}}\n";
  REQUIRE(load_desired_text("s.yaml", flow).desired);
  auto refused = edit_failover("s.yaml", flow, "blog", "standby", true);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message, Catch::Contains("by hand"));
  // Without a new key the flow mapping is edited in place.
  auto in_place = edit_failover("s.yaml", flow, "blog", "standby", false);
  REQUIRE(in_place.ok());
  CHECK(in_place->find("blog: {active: standby, stacks:") != std::string::npos);
  CHECK_FALSE(edit_failover("s.yaml", kConfig, "nope", "standby", false).ok());
  // An active: whose new value would not load (no such stack) is refused.
  CHECK_FALSE(edit_failover("s.yaml", kConfig, "shop", "elsewhere", false).ok());
}

TEST_CASE("auto_failover config: durations, defaults, and what is refused where") {
  std::string text = kConfig;
  auto r = load_desired_text("s.yaml", text);
  REQUIRE(r.desired);
  const auto& a = r.desired->groups.at("shop").auto_failover;
  REQUIRE(a);
  CHECK(a->after_ms == 10'000);
  CHECK(a->cooldown_ms == 30 * 60'000);  // default
  CHECK(a->max_data_loss_bytes == 0);
  CHECK(a->witnesses == 1);
  CHECK_FALSE(r.desired->groups.at("blog").auto_failover);
  auto errors = [](const std::string& t) {
    std::string out;
    for (const auto& e : load_desired_text("s.yaml", t).errors) out += format_diagnostic(e) + "\n";
    return out;
  };
  std::string zero = text;
  zero.replace(zero.find("after: 10s"), 10, "after: 0s");
  CHECK_THAT(errors(zero), Catch::Contains("s.yaml:10:14: error: 'after' must be longer than zero"));
  std::string word = text;
  word.replace(word.find("after: 10s"), 10, "after: soon");
  CHECK_THAT(errors(word), Catch::Contains("s.yaml:10:14: error:"));
  std::string off = text;
  off.insert(off.find("    stacks:\n      primary: {provider: db, dsn: \"host=127.0.0.1 port=5432\""),
             "    replication: off\n");
  CHECK_THAT(errors(off), Catch::Contains("s.yaml:9:5: error: auto_failover needs replication"));
}
