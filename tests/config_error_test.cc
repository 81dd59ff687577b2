// config_error_test — a rejected credential is a configuration error, not an
// unreachable provider (issue 12, item 10): Cloud 66 and PowerDNS answering
// 401 or 403 mark the observation `config_error`, the plan names it
// ("configuration error", Plan::config_errors) instead of "unreachable", and
// the flag survives the snapshot and the plan file. Exit codes, /status and
// metrics of a pass are in gitops_test.cc; the CLI's in e2e.cloud66.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "config/snapshot.h"
#include "core/plan_json.h"
#include "core/planner.h"
#include "core/render.h"
#include "drivers/cloud66_driver.h"
#include "drivers/powerdns_driver.h"
#include "fake_cloud66.h"
#include "fake_powerdns.h"

using namespace stackflip;
using stackflip::testing::FakeCloud66;
using stackflip::testing::FakePowerDns;

namespace {

const char* kToken = "c66-secret-token-value";

// Cloud 66 serves both stacks and the failover group of "shop".
struct Cloud66World {
  FakeCloud66 fake{kToken};
  DesiredState desired;

  Cloud66World() {
    setenv("CLOUD66_TOKEN", kToken, 1);
    ProviderConfig p;
    p.name = "c66";
    p.type = "cloud66";
    p.settings = {{"token", "${env:CLOUD66_TOKEN}"},
                  {"base_url", fake.base_url()},
                  {"timeout_ms", "3000"},
                  {"action_timeout_ms", "3000"}};
    desired.providers["c66"] = p;
    fake.add_stack({"uid-a", "shop-eu", false});
    fake.add_stack({"uid-b", "shop-us", true});
    fake.add_group({"fg-1", "shop.example.com", "uid-a", "uid-b", 1, false});
    GroupSpec& g = desired.groups["shop"];
    g.name = "shop";
    g.active = "b";  // a switch is wanted: its steps are blocked by the error
    for (auto [name, uid] : {std::pair{"a", "uid-a"}, {"b", "uid-b"}}) {
      StackSpec s;
      s.name = name;
      s.provider = "c66";
      s.settings = {{"stack_uid", uid}};
      g.stacks[name] = s;
    }
    g.traffic.emplace_back();
    g.traffic[0].provider = "c66";
    g.traffic[0].name = "failover group fg-1";
    g.traffic[0].settings["failover_group"] = "fg-1";
  }
  const ProviderConfig& provider() const { return desired.providers.at("c66"); }
  const GroupSpec& group() const { return desired.groups.at("shop"); }

  ObservedState observe() {
    ObservedState o;
    GroupObs& g = o.groups["shop"];
    for (const char* s : {"a", "b"})
      g.stacks[s] = make_cloud66_stack_driver(provider(), group(), s)->observe();
    g.traffic = combine_traffic(
        {make_cloud66_traffic_driver(provider(), group(), group().traffic[0])->observe()});
    return o;
  }
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE(
    "issue 12: Cloud 66 answering 401 is a configuration error in the observation and the plan, "
    "not unreachable") {
  Cloud66World w;
  setenv("CLOUD66_TOKEN", "wrong-token-value", 1);
  ObservedState o = w.observe();
  const StackObs& a = o.groups["shop"].stacks["a"];
  CHECK_FALSE(a.reachable);
  CHECK(a.config_error);
  CHECK(has(a.error, "Cloud 66 rejected the token from ${env:CLOUD66_TOKEN} (HTTP 401)"));
  CHECK(o.groups["shop"].traffic.config_error);

  Plan plan = make_plan(w.desired, o);
  REQUIRE(plan.config_errors.count("shop"));
  CHECK(has(plan.config_errors["shop"], "stack a: Cloud 66 rejected the token"));
  CHECK_FALSE(has(plan.config_errors["shop"], "wrong-token-value"));
  std::string text = render_text(plan, RenderOptions{});
  CHECK(has(text, "CONFIGURATION ERROR"));
  CHECK(has(text, "configuration error (Cloud 66 rejected the token"));
  CHECK_FALSE(has(text, "is unreachable"));
  for (const Action& act : plan.actions)
    if (act.blocked) CHECK_FALSE(has(act.why_blocked, "is unreachable"));
}

TEST_CASE("issue 12: Cloud 66 answering 403 is a configuration error too") {
  Cloud66World w;
  w.fake.error_next(1, 403);
  StackObs a = make_cloud66_stack_driver(w.provider(), w.group(), "a")->observe();
  CHECK_FALSE(a.reachable);
  CHECK(a.config_error);
  CHECK(has(a.error, "(HTTP 403)"));
  // A 500 is not: the provider may come back.
  w.fake.error_next(10, 500);
  StackObs b = make_cloud66_stack_driver(w.provider(), w.group(), "b")->observe();
  CHECK_FALSE(b.reachable);
  CHECK_FALSE(b.config_error);
}

TEST_CASE(
    "issue 12: PowerDNS answering 401 or 403 is a configuration error in the observation and the "
    "plan") {
  for (int status : {401, 403}) {
    INFO(status);
    FakePowerDns pdns;
    pdns.set_rrset("example.test.", "shop.example.test.", "A", {"10.0.0.1"});
    setenv("STACKFLIP_TEST_PDNS_KEY", "k-secret", 1);
    DesiredState d;
    d.providers["dns"] =
        ProviderConfig{"dns",
                       "powerdns",
                       {{"url", pdns.url()}, {"api_key", "${env:STACKFLIP_TEST_PDNS_KEY}"}},
                       {},
                       {}};
    GroupSpec& g = d.groups["shop"];
    g.name = "shop";
    g.active = "b";
    for (auto [name, ip] : {std::pair{"a", "10.0.0.1"}, {"b", "10.0.0.2"}}) {
      StackSpec s;
      s.name = name;
      s.provider = "db";
      s.address = ip;
      s.addresses = {ip};
      g.stacks[name] = s;
    }
    TrafficSpec t;
    t.provider = "dns";
    t.name = "shop.example.test. A";
    t.settings = {{"zone", "example.test."}, {"record", "shop.example.test."}};
    g.traffic.push_back(t);

    pdns.fail_gets(status);
    TrafficObs obs = make_powerdns_traffic_driver(d.providers["dns"], g, t)->observe();
    CHECK_FALSE(obs.reachable);
    CHECK(obs.config_error);
    CHECK(has(obs.error, "HTTP " + std::to_string(status)));
    CHECK(has(obs.error, "${env:STACKFLIP_TEST_PDNS_KEY} was rejected"));
    CHECK_FALSE(has(obs.error, "k-secret"));

    // b is a promoted primary; only the traffic switch is left, and the
    // error blocks it by name.
    ObservedState o;
    StackObs a, b;
    a.reachable = b.reachable = true;
    a.maintenance = true;
    a.database = DatabaseObs{Role::replica, std::string("b"), 100, 2, true, {}, {}};
    b.maintenance = false;
    b.database = DatabaseObs{Role::primary, std::nullopt, 100, 2, {}, {}, {}};
    o.groups["shop"].stacks = {{"a", a}, {"b", b}};
    o.groups["shop"].traffic = combine_traffic({obs});
    Plan plan = make_plan(d, o);
    REQUIRE(plan.config_errors.count("shop"));
    CHECK(has(plan.config_errors["shop"], "traffic shop.example.test. A: PowerDNS"));
    bool switch_named = false;
    for (const Action& act : plan.actions)
      if (act.kind == ActionKind::traffic_switch) {
        CHECK(act.blocked);
        CHECK(has(act.why_blocked, "configuration error"));
        CHECK_FALSE(has(act.why_blocked, "unreachable"));
        switch_named = true;
      }
    CHECK(switch_named);
  }
}

TEST_CASE("issue 12: config_error survives the observed snapshot and the plan file") {
  ObservedState o;
  o.observed_at = "2026-11-30T00:00:00Z";
  StackObs a;
  a.error = "Cloud 66 rejected the token from ${env:T} (HTTP 401): invalid";
  a.config_error = true;
  StackObs b;
  b.error = "connection refused";
  TrafficObs p1, p2;
  p1.name = "one";
  p1.reachable = false;
  p1.error = "PowerDNS: HTTP 403";
  p1.config_error = true;
  p2.name = "two";
  p2.target = "a";
  o.groups["shop"].stacks = {{"a", a}, {"b", b}};
  o.groups["shop"].traffic = combine_traffic({p1, p2});

  std::string json = snapshot_to_json(o, false);
  CHECK(has(json, "\"config_error\":true"));
  auto back = parse_snapshot("test", json);
  REQUIRE(back.ok());
  const GroupObs& g = back->groups.at("shop");
  CHECK(g.stacks.at("a").config_error);
  CHECK_FALSE(g.stacks.at("b").config_error);
  CHECK(g.traffic.config_error);
  REQUIRE(g.traffic.parts.size() == 2);
  CHECK(g.traffic.parts[0].config_error);
  CHECK_FALSE(g.traffic.parts[1].config_error);
  CHECK(snapshot_to_json(*back, false) == json);
  CHECK(config_error_of(g) == "stack a: " + a.error + "; traffic one: PowerDNS: HTTP 403");

  Plan plan;
  plan.config_errors["shop"] = config_error_of(g);
  std::string pj = plan_to_json(plan);
  CHECK(has(pj, "\"config_errors\""));
  auto read = plan_from_json(pj, "plan.json");
  REQUIRE(read.ok());
  CHECK(read->config_errors == plan.config_errors);
}
