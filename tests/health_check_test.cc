// Issue 14 item 1: a stack's application health check. The config names a
// URL; the host grants its origin; the active stack fails it on anything but
// a 2xx within the timeout, and then counts as failing for automatic
// failover and the outage notice, as an unreachable database does.
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "builders.h"
#include "config/host_policy.h"
#include "config/loader.h"
#include "config_text.h"
#include "core/auto_failover.h"
#include "core/observe.h"
#include "core/outage.h"
#include "drivers/health_probe.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

const std::string kConfig =
    "apiVersion: stackflip/v1\n"                                                               // 1
    "providers:\n"                                                                             // 2
    "  db: {type: postgres}\n"                                                                 // 3
    "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: \"${env:PDNS_KEY}\"}\n"  // 4
    "groups:\n"                                                                                // 5
    "  shop:\n"                                                                                // 6
    "    active: primary\n"                                                                    // 7
    "    stacks:\n"                                                                            // 8
    "      primary:\n"                                                                         // 9
    "        provider: db\n"                                                                   // 10
    "        dsn: \"host=10.0.0.5\"\n"                                                         // 11
    "        address: 10.0.0.5\n"                                                              // 12
    "        health: {url: \"https://fra.example.com/healthz\", timeout: 500ms}\n"             // 13
    "      standby: {provider: db, dsn: \"host=10.0.0.6\", address: 10.0.0.6}\n"               // 14
    "    traffic: {provider: dns, zone: example.com., record: shop.example.com.}\n";           // 15

HostPolicy policy_with(std::vector<std::string> health_urls) {
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PDNS_KEY}"] = {"http://127.0.0.1:8081"};
  p.health_urls = std::move(health_urls);
  return p;
}

// A local HTTP server whose /healthz answers `status` (and /slow after 3 s).
struct App {
  httplib::Server server;
  std::thread thread;
  std::atomic<int> status{200};
  std::atomic<int> requests{0};
  int port = 0;
  App() {
    server.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      res.status = status;
      // A healthy answer's big body is not read; an error page is (up to 64 KiB).
      res.set_content(status / 100 == 2 ? std::string(200'000, 'x') : "down", "text/plain");
      if (status == 302) res.set_header("Location", "/elsewhere");
    });
    server.Get("/elsewhere", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
    server.Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::seconds(3));
      res.set_content("late", "text/plain");
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~App() {
    server.stop();
    thread.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// Group shop: primary active, standby replicating from it, traffic at primary.
FakeWorld shop_world() {
  FakeWorld world;
  world.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
  world.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
  world.traffic["shop"].target = "primary";
  return world;
}

}  // namespace

TEST_CASE("health check: read from the config, timeout 2s by default", "[health]") {
  LoadResult r = load_desired_text("c.yaml", kConfig);
  REQUIRE(r.errors.empty());
  const StackSpec& p = r.desired->groups.at("shop").stacks.at("primary");
  REQUIRE(p.health);
  CHECK(p.health->url == "https://fra.example.com/healthz");
  CHECK(p.health->timeout_ms == 500);
  CHECK_FALSE(r.desired->groups.at("shop").stacks.at("standby").health);
  r = load_desired_text("c.yaml", edit(kConfig, ", timeout: 500ms", ""));
  REQUIRE(r.errors.empty());
  CHECK(r.desired->groups.at("shop").stacks.at("primary").health->timeout_ms == 2000);
}

TEST_CASE("health check: a bad URL or timeout is an error at its place", "[health]") {
  CHECK_THAT(first_error(edit(kConfig, "https://fra", "ftp://fra")),
             Catch::StartsWith("13:23: ") && Catch::Contains("http://... or https://"));
  CHECK_THAT(first_error(edit(kConfig, "https://fra", "https://u:pw@fra")),
             Catch::StartsWith("13:23: ") && Catch::Contains("must not carry credentials"));
  CHECK_THAT(first_error(edit(kConfig, "/healthz", "/healthz\\nX-Evil: 1")),
             Catch::StartsWith("13:23: ") && Catch::Contains("a space or a control character"));
  CHECK_THAT(first_error(edit(kConfig, "/healthz", "/health z")),
             Catch::StartsWith("13:23: ") && Catch::Contains("a space or a control character"));
  CHECK_THAT(first_error(edit(kConfig, "500ms", "31s")),
             Catch::StartsWith("13:67: ") && Catch::Contains("at most 30s"));
  CHECK_THAT(first_error(edit(kConfig, "500ms", "0s")),
             Catch::StartsWith("13:67: ") && Catch::Contains("longer than zero"));
  CHECK_THAT(first_error(edit(kConfig, "timeout: 500ms", "timeout: 1s, method: POST")),
             Catch::StartsWith("13:") && Catch::Contains("method"));
  CHECK_THAT(first_error(edit(kConfig, "{url: \"https://fra.example.com/healthz\", ", "{")),
             Catch::StartsWith("13:") && Catch::Contains("url"));
}

TEST_CASE("health check: the host grants the origin, or the config is refused", "[health]") {
  HostPolicy none = policy_with({});
  CHECK_THAT(
      first_error(kConfig, &none),
      Catch::StartsWith("13:23: health check of stack 'primary': this host does not allow "
                        "requests to https://fra.example.com:443 (host policy host.yaml; list the "
                        "origin under `health_urls:`)"));
  HostPolicy other = policy_with({"https://ams.example.com:443"});
  CHECK_FALSE(first_error(kConfig, &other).empty());
  HostPolicy granted = policy_with({"https://fra.example.com:443"});
  CHECK(first_error(kConfig, &granted).empty());

  // In the policy file: origins, normalized; anything else at its place.
  char tmpl[] = "/tmp/stackflip-health-XXXXXX";
  REQUIRE(::mkdtemp(tmpl));
  const std::string dir = tmpl, good = dir + "/good.yaml", bad = dir + "/bad.yaml";
  std::ofstream(good) << "health_urls: [\"HTTPS://Fra.Example.com\", \"http://10.0.0.5:8080/\"]\n";
  auto p = load_host_policy(good, nullptr);
  REQUIRE(p.ok());
  CHECK(p->health_urls ==
        std::vector<std::string>{"https://fra.example.com:443", "http://10.0.0.5:8080"});
  CHECK(p->health_allowed("https://fra.example.com:443"));
  CHECK_FALSE(p->health_allowed("https://fra.example.com:8443"));
  std::ofstream(bad) << "health_urls:\n  - https://fra.example.com\n  - postgres://10.0.0.5\n"
                        "  - https://fra.example.com/healthz\n";
  std::vector<Diagnostic> errors;
  CHECK_FALSE(load_host_policy(bad, &errors).ok());
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].mark.line == 3);
  CHECK_THAT(errors[0].message, Catch::Contains("http://host:port or https://host:port"));
  CHECK(errors[1].mark.line == 4);
  CHECK_THAT(errors[1].message, Catch::Contains("an origin has no path"));
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "health check over HTTP: 2xx healthy, and another status, a redirect, no answer in time or "
    "a closed port fail",
    "[health]") {
  App app;
  HealthSpec h{app.url("/healthz"), 1000};
  auto probe = make_http_health_probe(h);
  CHECK(probe->check().empty());  // 200 with a 200 KB body: not read
  app.status = 204;
  CHECK(probe->check().empty());
  app.status = 503;
  CHECK(probe->check() == "GET " + app.url("/healthz") + ": HTTP 503");
  app.status = 302;  // not followed
  CHECK(probe->check() == "GET " + app.url("/healthz") + ": HTTP 302");

  auto slow = make_http_health_probe({app.url("/slow"), 300});
  auto t0 = std::chrono::steady_clock::now();
  std::string why = slow->check();
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK_THAT(why, Catch::StartsWith("GET " + app.url("/slow") + ": "));
  CHECK(took < std::chrono::milliseconds(2000));

  int closed = app.port;
  {
    httplib::Server s;
    closed = s.bind_to_any_port("127.0.0.1");
  }  // bound, never listened, closed: refused
  auto gone = make_http_health_probe({"http://127.0.0.1:" + std::to_string(closed) + "/", 500});
  CHECK_THAT(gone->check(), Catch::StartsWith("GET http://127.0.0.1:" + std::to_string(closed)));
}

TEST_CASE("health check over HTTP: an origin the host policy does not grant is never contacted",
          "[health]") {
  App app;
  app.status = 503;
  auto probe = make_http_health_probe({app.url("/healthz"), 1000});
  install_host_policy(policy_with({"http://127.0.0.1:1"}));
  CHECK(probe->check().empty());  // not checked: never "failing" for a refused origin
  CHECK(app.requests == 0);
  install_host_policy(policy_with({app.origin()}));
  CHECK(probe->check() == "GET " + app.url("/healthz") + ": HTTP 503");
  CHECK(app.requests == 1);
  clear_host_policy();
}

TEST_CASE(
    "health check: asked for the active stack only, by the group's observation only, "
    "while its database answers",
    "[health]") {
  FakeWorld world = shop_world();
  FakeDriverFactory factory(world);
  auto answer = std::make_shared<std::string>("GET https://fra/healthz: HTTP 503");
  std::vector<std::string> made;
  factory.make_health = [&](const StackSpec& s) {
    made.push_back(s.name);
    return std::make_unique<ScriptedHealthProbe>(answer);
  };
  GroupSpec g = make_group("primary");
  g.stacks["primary"].health = HealthSpec{"https://fra/healthz", 500};
  g.stacks["standby"].health = HealthSpec{"https://ams/healthz", 500};
  DesiredState d = make_desired({g});
  GroupDrivers drivers(d, d.groups.at("shop"), factory);
  CHECK(made == std::vector<std::string>{"primary"});
  GroupObs o = drivers.observe();
  CHECK(o.stacks.at("primary").reachable);
  CHECK(o.stacks.at("primary").health_error == *answer);
  CHECK(stack_failing(o.stacks.at("primary")));
  CHECK(o.stacks.at("standby").health_error.empty());
  CHECK(drivers.observe_stack("primary").health_error.empty());  // apply's verification
  *answer = "";
  CHECK_FALSE(stack_failing(drivers.observe().stacks.at("primary")));
  *answer = "GET https://fra/healthz: HTTP 503";
  world.stacks["shop"]["primary"].up = false;  // down: failing as unreachable, not asked
  o = drivers.observe();
  CHECK(o.stacks.at("primary").health_error.empty());
  CHECK(stack_failing(o.stacks.at("primary")));
}

TEST_CASE(
    "health check that never passed since the config was adopted (a typo in its URL): the "
    "notice says so, automatic failover leaves it to a person",
    "[health]") {
  FakeWorld world = shop_world();
  FakeDriverFactory factory(world);
  auto answer = std::make_shared<std::string>("GET https://fra/helthz: HTTP 404");
  factory.make_health = [&](const StackSpec&) {
    return std::make_unique<ScriptedHealthProbe>(answer);
  };
  GroupSpec g = make_group("primary");
  g.stacks["primary"].health = HealthSpec{"https://fra/helthz", 500};
  g.stacks["primary"].site = "fra";
  g.stacks["standby"].site = "ams";
  AutoFailoverSpec a;
  a.after_ms = 10'000;
  a.witnesses = 1;
  g.auto_failover = a;
  DesiredState d = make_desired({g});
  AutoFailoverInput in;
  in.verdicts = {{"fra-1", "ams", true, 1000, "T", "health check: HTTP 404"}};
  in.now_ms = 60'000;
  in.settled = true;
  in.decided_by = "fra-1";
  in.decided_at = "T";

  auto drivers = std::make_unique<GroupDrivers>(d, d.groups.at("shop"), factory);
  for (int pass = 0; pass < 3; ++pass) {
    GroupObs o = drivers->observe();
    const StackObs& p = o.stacks.at("primary");
    CHECK(stack_failing(p));  // the notice still leads with it
    CHECK(p.health_never_passed);
    auto advice = advise_outage(d.groups.at("shop"), o, "T", "fra-1");
    REQUIRE(advice);
    CHECK_THAT(advice->fact, Catch::Contains("(the check has not passed since this config was "
                                             "adopted: is its URL right?)"));
    AutoFailoverDecision dec = decide_auto_failover(d.groups.at("shop"), o, in);
    INFO(dec.why);
    CHECK_FALSE(dec.go);
    CHECK(dec.person_decides);
    CHECK_THAT(dec.why, Catch::StartsWith("the health check of primary has not passed once since "
                                          "this config was adopted (GET https://fra/helthz: HTTP "
                                          "404)"));
  }
  // Once it passed, a failure is an outage, also with the same drivers later.
  *answer = "";
  CHECK_FALSE(drivers->observe().stacks.at("primary").health_never_passed);
  *answer = "GET https://fra/helthz: HTTP 503";
  GroupObs o = drivers->observe();
  CHECK_FALSE(o.stacks.at("primary").health_never_passed);
  CHECK(decide_auto_failover(d.groups.at("shop"), o, in).go);
  // New drivers (a new config adopted): unproven again until it passes.
  drivers = std::make_unique<GroupDrivers>(d, d.groups.at("shop"), factory);
  CHECK(drivers->observe().stacks.at("primary").health_never_passed);
}

TEST_CASE(
    "health check failing while the database answers: the notice says so, and automatic "
    "failover is a planned switch, without allow_data_loss",
    "[health]") {
  GroupSpec g = make_group("primary");
  g.stacks["primary"].site = "fra";
  g.stacks["standby"].site = "ams";
  AutoFailoverSpec a;
  a.after_ms = 10'000;
  a.witnesses = 1;
  g.auto_failover = a;
  GroupObs o;
  o.stacks["primary"] = primary(false, 500);
  o.stacks["primary"].health_error = "GET https://fra/healthz: HTTP 503";
  o.stacks["standby"] = replica(true, "primary", 500);
  o.traffic = traffic_at("primary");

  auto advice = advise_outage(g, o, "2026-11-30T14:00:00Z", "fra-1");
  REQUIRE(advice);
  INFO(advice->fact << "\n" << advice->decision);
  CHECK_THAT(advice->fact,
             Catch::StartsWith("active stack primary of group shop failing since "
                               "2026-11-30T14:00:00Z (seen by fra-1): its health check fails "
                               "(GET https://fra/healthz: HTTP 503); its database answers; last "
                               "known lag 0 bytes: standby standby caught up"));
  CHECK_THAT(advice->decision, Catch::StartsWith("to fail over, commit `active: standby` for group "
                                                 "shop"));

  AutoFailoverInput in;
  in.verdicts = {
      {"fra-1", "ams", true, 1000, "T", "health check: GET https://fra/healthz: HTTP 503"}};
  in.now_ms = 11'000;
  in.settled = true;
  in.decided_by = "fra-1";
  in.decided_at = "T";
  AutoFailoverDecision d = decide_auto_failover(g, o, in);
  INFO(d.why << d.evidence);
  REQUIRE(d.go);
  CHECK(d.to == "standby");
  CHECK_FALSE(d.allow_data_loss);  // the old primary answers: the planner verifies the catch-up
  CHECK_THAT(d.evidence, Catch::Contains("health check: GET https://fra/healthz: HTTP 503"));

  o.stacks["primary"].health_error.clear();  // healthy again: nothing to say or do
  CHECK_FALSE(advise_outage(g, o, "T", "fra-1"));
  CHECK_FALSE(decide_auto_failover(g, o, in).go);
}
