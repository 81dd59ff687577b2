// hostile_input_test — deep, oversized and escape-laden input from files,
// providers and configs is refused with a message, never a crash (issue 10,
// items 3 and 12).
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/diagnostics.h"
#include "config/loader.h"
#include "config/snapshot.h"
#include "config/yaml_doc.h"
#include "core/plan_json.h"
#include "drivers/cloud66_driver.h"
#include "drivers/command_driver.h"
#include "drivers/powerdns_driver.h"
#include "support/answering_server.h"

using namespace stackflip;
using stackflip::testing::Answering;

namespace {

std::string deep_brackets(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

std::unique_ptr<TrafficDriver> powerdns_traffic(const ProviderConfig& p, const GroupSpec& g) {
  return make_powerdns_traffic_driver(p, g, g.traffic.at(0));
}
std::unique_ptr<TrafficDriver> command_traffic(const ProviderConfig& p, const GroupSpec& g) {
  return make_command_traffic_driver(p, g, g.traffic.at(0));
}

GroupSpec dns_group(const std::string& zone) {
  GroupSpec g;
  g.name = "shop";
  g.active = "a";
  for (auto [name, addr] : {std::pair{"a", "10.0.0.1"}, {"b", "10.0.0.2"}}) {
    StackSpec s;
    s.name = name;
    s.provider = "x";
    s.address = addr;
    s.addresses = {addr};
    s.settings["stack_uid"] = std::string("uid-") + name;
    g.stacks[name] = s;
  }
  g.traffic.emplace_back();
  g.traffic[0].provider = "dns";
  g.traffic[0].settings = {{"zone", zone}, {"record", "shop.example.com."}};
  return g;
}

ProviderConfig powerdns(const std::string& url, const std::string& server_id = "localhost") {
  setenv("STACKFLIP_TEST_PDNS_KEY", "k", 1);
  ProviderConfig p;
  p.name = "dns";
  p.type = "powerdns";
  p.settings = {
      {"url", url}, {"api_key", "${env:STACKFLIP_TEST_PDNS_KEY}"}, {"server_id", server_id}};
  return p;
}

}  // namespace

// ---------------------------------------------------------------- PowerDNS

TEST_CASE(
    "issue 10: a PowerDNS answer of 200,000 opening brackets leaves the record unreachable, no "
    "crash") {
  Answering pdns(std::string(200000, '['));
  TrafficObs t = powerdns_traffic(powerdns(pdns.url()), dns_group("example.com."))->observe();
  CHECK_FALSE(t.reachable);
  CHECK(t.error.find("nesting deeper than 64 levels") != std::string::npos);
}

TEST_CASE("issue 10: a PowerDNS answer over 8 MiB leaves the record unreachable, naming the cap") {
  Answering pdns("{\"rrsets\": [], \"pad\": \"" + std::string(size_t{9} << 20, 'x') + "\"}");
  TrafficObs t = powerdns_traffic(powerdns(pdns.url()), dns_group("example.com."))->observe();
  CHECK_FALSE(t.reachable);
  CHECK(t.error.find("larger than the 8 MiB limit") != std::string::npos);
}

TEST_CASE("issue 10: server_id and zone are encoded into the PowerDNS path, never a '../'") {
  Answering pdns(R"({"rrsets": []})");
  powerdns_traffic(powerdns(pdns.url(), "../../x"), dns_group("a/b_c.example.com."))->observe();
  powerdns_traffic(powerdns(pdns.url()), dns_group("."))->observe();
  auto seen = pdns.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "/api/v1/servers/..%2F..%2Fx/zones/a=2Fb=5Fc.example.com.");
  CHECK(seen[1] == "/api/v1/servers/localhost/zones/=2E");
}

TEST_CASE("powerdns_zone_id is the API's own zone id") {
  CHECK(powerdns_zone_id("example.com.") == "example.com.");
  CHECK(powerdns_zone_id("example.com") == "example.com.");
  CHECK(powerdns_zone_id("0/26.2.0.192.in-addr.arpa.") == "0=2F26.2.0.192.in-addr.arpa.");
  CHECK(powerdns_zone_id("_x.example.") == "=5Fx.example.");
  CHECK(powerdns_zone_id(".") == "=2E");
  CHECK(powerdns_zone_id("..") == "=2E=2E");
  CHECK(powerdns_zone_id("../../servers") == "..=2F..=2Fservers.");
}

// ---------------------------------------------------------------- Cloud 66

TEST_CASE("issue 10: stack_uid and failover_group are percent-encoded into Cloud 66 paths") {
  Answering c66(R"({"response": []})");
  setenv("STACKFLIP_TEST_C66_TOKEN", "t", 1);
  ProviderConfig p;
  p.name = "c66";
  p.type = "cloud66";
  p.settings = {{"token", "${env:STACKFLIP_TEST_C66_TOKEN}"},
                {"base_url", c66.url()},
                {"timeout_ms", "2000"},
                {"action_timeout_ms", "500"}};
  GroupSpec g = dns_group("example.com.");
  g.stacks["a"].settings["stack_uid"] = "../failover_groups/x";
  g.traffic[0].settings["failover_group"] = "../../stacks/y";
  make_cloud66_stack_driver(p, g, "a")->observe();
  make_cloud66_stack_driver(p, g, "a")->set_maintenance(true);
  auto seen = c66.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "/stacks/..%2Ffailover_groups%2Fx.json");
  CHECK(seen[1] == "/stacks/..%2Ffailover_groups%2Fx/actions.json");
}

TEST_CASE("issue 10: a deep Cloud 66 answer is an error, no crash") {
  Answering c66("{\"response\": " + deep_brackets(200000) + "}");
  setenv("STACKFLIP_TEST_C66_TOKEN", "t", 1);
  ProviderConfig p;
  p.name = "c66";
  p.type = "cloud66";
  p.settings = {{"token", "${env:STACKFLIP_TEST_C66_TOKEN}"}, {"base_url", c66.url()}};
  StackObs s = make_cloud66_stack_driver(p, dns_group("example.com."), "a")->observe();
  CHECK_FALSE(s.reachable);
  CHECK(s.error.find("something other than its JSON envelope") != std::string::npos);
}

TEST_CASE("issue 10: a Cloud 66 token with a newline is never sent") {
  Answering c66(R"({"response": {"maintenance_mode": false}})");
  setenv("STACKFLIP_TEST_C66_TOKEN", "t\r\nX-Injected: 1", 1);
  ProviderConfig p;
  p.name = "c66";
  p.type = "cloud66";
  p.settings = {{"token", "${env:STACKFLIP_TEST_C66_TOKEN}"}, {"base_url", c66.url()}};
  StackObs s = make_cloud66_stack_driver(p, dns_group("example.com."), "a")->observe();
  CHECK_FALSE(s.reachable);
  CHECK(s.error.find("refused to send header \"Authorization\"") != std::string::npos);
  CHECK(s.error.find("X-Injected") == std::string::npos);
  CHECK(c66.seen().empty());
}

// ---------------------------------------------------------------- commands

TEST_CASE(
    "issue 10: a command printing 200,000 opening brackets leaves the stack unreachable, no "
    "crash") {
  ProviderConfig p;
  p.name = "cmd";
  p.lists["observe"] = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' '['"};
  StackObs s = make_command_stack_driver(p, dns_group("example.com."), "a")->observe();
  CHECK_FALSE(s.reachable);
  CHECK(s.error.find("observe command printed invalid JSON: nesting deeper than 64 levels") == 0);
  p.lists["observe_traffic"] = p.lists["observe"];
  TrafficObs t = command_traffic(p, dns_group("example.com."))->observe();
  CHECK_FALSE(t.reachable);
  CHECK(t.error.find("nesting deeper than 64 levels") != std::string::npos);
}

TEST_CASE("issue 10: a command answer over 1 MiB is an error, not a parsed prefix") {
  ProviderConfig p;
  p.name = "cmd";
  // A valid answer, then padding: parsing what fits under the cap would
  // succeed, so only the length check can refuse it.
  p.lists["observe"] = {"sh", "-c",
                        "printf '{\"reachable\": true}'; head -c 1048576 /dev/zero | tr '\\0' ' '"};
  StackObs s = make_command_stack_driver(p, dns_group("example.com."), "a")->observe();
  CHECK_FALSE(s.reachable);
  CHECK(s.error.find("printed more than 1 MiB on stdout") != std::string::npos);
  // An operation that answers nothing may print what it likes.
  p.lists["promote"] = p.lists["observe"];
  CHECK(make_command_stack_driver(p, dns_group("example.com."), "a")->promote().ok());
}

TEST_CASE("issue 10: key names from a command's answer are escaped in its error") {
  ProviderConfig p;
  p.name = "cmd";
  p.lists["observe"] = {"printf", "%s", "{\"reachable\": true, \"\\u001b[31mred\": 1}"};
  StackObs s = make_command_stack_driver(p, dns_group("example.com."), "a")->observe();
  CHECK_FALSE(s.reachable);
  CHECK(s.error.find('\x1b') == std::string::npos);
  CHECK(s.error.find("\\x1b[31mred: unknown field") != std::string::npos);
}

// ---------------------------------------------------------------- files

TEST_CASE("issue 10: a snapshot nested 200,000 deep is a file:line:col error") {
  auto r = parse_snapshot("deep.json", "{\"apiVersion\": \"stackflip/v1\",\n \"groups\": " +
                                           deep_brackets(200000) + "}");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "deep.json:2:75: error: nesting deeper than 64 levels (the limit for JSON input)");
}

TEST_CASE("issue 10: the iterative duplicate-key check finds a key twice deep in a snapshot") {
  // Valid but for the second "role", so only the duplicate-key check sends
  // it to the reading with marks, which names the key.
  auto r = parse_snapshot(
      "dup.json",
      R"({"apiVersion": "stackflip/v1", "groups": {"shop": {"stacks": {)"
      R"("primary": {"reachable": true, "database": {"role": "primary", "upstream": null}},)"
      R"("standby": {"reachable": true, "database": {"role": "replica", "role": "primary",)"
      R"( "upstream": "primary"}}}, "traffic": {"target": "primary"}}}})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("duplicate key 'role'") != std::string::npos);
}

TEST_CASE("issue 10: a plan file nested 200,000 deep is an error with its offset") {
  auto r = plan_from_json("{\"apiVersion\": " + deep_brackets(200000) + "}", "deep-plan.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "deep-plan.json: offset 78: not valid JSON: nesting deeper than 64 levels (the limit for "
        "JSON input)");
}

TEST_CASE("issue 10: a 10,000-deep YAML flow sequence is one file:line:col error") {
  auto r = parse_yaml_document("deep.yaml", "a:\n  b: " + deep_brackets(10000) + "\n");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "deep.yaml:2:260: error: nesting is too deep (more than 64 levels); the file is not read "
        "further");
}

// ---------------------------------------------------------------- configs

TEST_CASE("issue 10: ids that go into URL paths are validated by pattern") {
  const std::string base =
      "apiVersion: stackflip/v1\n"
      "providers:\n"
      "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: \"${env:K}\", server_id: "
      "SID}\n"
      "  c66: {type: cloud66, token: \"${env:T}\"}\n"
      "groups:\n"
      "  shop:\n"
      "    active: a\n"
      "    stacks:\n"
      "      a: {provider: c66, stack_uid: UID}\n"
      "      b: {provider: c66, stack_uid: abc123}\n"
      "    traffic: {provider: c66, failover_group: FG}\n";
  auto with = [&](std::string sid, std::string uid, std::string fg) {
    std::string t = base;
    t.replace(t.find("SID"), 3, sid);
    t.replace(t.find("UID"), 3, uid);
    t.replace(t.find("FG"), 2, fg);
    std::string out;
    for (const auto& e : load_desired_text("ids.yaml", t).errors)
      out += format_diagnostic(e) + "\n";
    return out;
  };
  CHECK(with("localhost", "5999b763474b0eafa5fafb64bff0ba80", "fg-5c8c9a1e") == "");
  CHECK(with("\"../../x\"", "abc", "fg").find("ids.yaml:3:") == 0);
  CHECK(with("\"../../x\"", "abc", "fg").find("invalid 'server_id' '../../x'") !=
        std::string::npos);
  CHECK(with("localhost", "\"../x\"", "fg").find("ids.yaml:9:") == 0);
  CHECK(with("localhost", "\"..\"", "fg").find("invalid 'stack_uid'") != std::string::npos);
  CHECK(with("localhost", "abc", "\"a/b\"").find("ids.yaml:11:") == 0);
  CHECK(with("localhost", "abc", "\"a?b\"").find("invalid 'failover_group'") != std::string::npos);
}

TEST_CASE("issue 10: a key name with an ESC character is escaped in diagnostics") {
  LoadResult r =
      load_desired_text("esc.yaml", "apiVersion: stackflip/v1\n\"x\x1b]0;owned\x07\x1b[31m\": 1\n");
  REQUIRE_FALSE(r.errors.empty());
  std::string out = format_diagnostics(r.errors);
  CHECK(out.find('\x1b') == std::string::npos);
  CHECK(out.find('\x07') == std::string::npos);
  CHECK(out.find("'x\\x1b]0;owned\\x07\\x1b[31m'") != std::string::npos);
}

TEST_CASE("escape_control writes C0, DEL and C1 controls visibly and keeps other text") {
  CHECK(escape_control("plain é ✓") == "plain é ✓");
  CHECK(escape_control("a\tb\nc\rd") == "a\\tb\\nc\\rd");
  CHECK(escape_control(std::string("\0\x1b\x7f", 3)) == "\\x00\\x1b\\x7f");
  CHECK(escape_control("\xC2\x9B"
                       "31m") == "\\u009b31m");
  CHECK(escape_control("\xC2\xA0") == "\xC2\xA0");  // NBSP is not a control
}
