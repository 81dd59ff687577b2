// `stackflip init` (issue 17): the observations → config half, and the
// checks of the flags. The config must load with the real loader, plan "No
// changes" against the same observation when nothing is to be decided, and
// mean what it says whatever the servers and flags held.
#include "init.h"

#include <catch2/catch.hpp>

#include "builders.h"
#include "config/loader.h"
#include "core/planner.h"
#include "init_config.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

InitStack stack(const std::string& name, const std::string& host, StackObs obs) {
  InitStack s;
  s.name = name;
  s.dsn = "host=" + host + " port=5432 user=stackflip dbname=app";
  s.address = host;
  s.address_from = "the DSN's host";
  s.obs = std::move(obs);
  s.observed = true;
  return s;
}

TrafficObs record_holding(const std::string& content, std::optional<std::string> stack,
                          int ttl = 300) {
  TrafficObs t = traffic_at(stack, ttl);
  t.records.push_back({content, stack, false});
  t.content = content;
  return t;
}

// A converged pair: fra primary, ams its streaming replica in maintenance,
// the record at fra.
InitFacts pair() {
  InitFacts f;
  f.group = "shop";
  f.powerdns_url = "http://127.0.0.1:8081";
  f.api_key = "${env:PDNS_API_KEY}";
  f.record = "shop.example.com.";
  f.zone = "example.com.";
  f.stacks = {stack("fra", "10.0.0.5", primary(false)),
              stack("ams", "10.1.0.5", replica(true, "fra"))};
  f.traffic = record_holding("10.0.0.5", "fra");
  f.traffic_observed = true;
  f.observed_at = "2026-12-02T10:00:00Z";
  return f;
}

bool decided_about(const InitOutput& o, const std::string& words) {
  for (const auto& d : o.decide)
    if (d.find(words) != std::string::npos) return true;
  return false;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Loads the text as `validate` would, independently of write_init_config.
DesiredState reload(const InitOutput& o) {
  LoadResult r = load_desired_text("out.yaml", o.yaml);
  INFO(o.yaml);
  INFO(format_diagnostics(r.errors));
  REQUIRE(r.desired);
  return *r.desired;
}

}  // namespace

TEST_CASE("init adopts a converged pair: no decisions, and its first plan is No changes",
          "[init]") {
  InitFacts f = pair();
  InitOutput o = write_init_config(f);
  INFO(o.yaml);
  CHECK(o.decide.empty());
  CHECK(o.first_plan.empty());
  CHECK(o.yaml.rfind("# yaml-language-server: $schema=" + std::string(kInitSchemaUrl), 0) == 0);
  CHECK(o.yaml.find("DECIDE") == std::string::npos);
  DesiredState d = reload(o);
  const GroupSpec& g = d.groups.at("shop");
  CHECK(g.active == "fra");
  CHECK(g.stacks.at("ams").get("dsn") == "host=10.1.0.5 port=5432 user=stackflip dbname=app");
  CHECK(g.stacks.at("ams").address == "10.1.0.5");
  CHECK_FALSE(g.stacks.at("ams").maintenance.has_value());  // the default: on, as observed
  CHECK(g.traffic.at(0).get("zone") == "example.com.");
  CHECK(g.traffic.at(0).ttl == 300);  // as observed, so the plan changes no TTL
  CHECK(d.providers.at("dns").get("api_key") == "${env:PDNS_API_KEY}");
  Plan p = make_plan(d, init_observation(f));
  CHECK(p.empty());
  CHECK(p.skipped.empty());
  CHECK(p.blocked_groups.empty());
}

TEST_CASE("init states maintenance: false for a standby observed out of maintenance", "[init]") {
  InitFacts f = pair();
  f.stacks[1].obs = replica(false, "fra");
  InitOutput o = write_init_config(f);
  CHECK(o.decide.empty());
  CHECK(o.first_plan.empty());
  CHECK(reload(o).groups.at("shop").stacks.at("ams").maintenance == false);
}

TEST_CASE("init with two primaries decides nothing itself: the record's primary, and a note",
          "[init]") {
  InitFacts f = pair();
  f.stacks[1].obs = primary(false);
  f.traffic = record_holding("10.1.0.5", "ams");
  InitOutput o = write_init_config(f);
  CHECK(o.active == "ams");
  CHECK(decided_about(o, "fra and ams are all primaries"));
  CHECK(o.yaml.find("    # DECIDE: fra and ams are all primaries") != std::string::npos);
  CHECK_FALSE(o.first_plan.empty());  // the fence of fra, listed for the summary
  CHECK(reload(o).groups.at("shop").active == "ams");
}

TEST_CASE("init with no primary takes the record's stack and says to find the latest data",
          "[init]") {
  InitFacts f = pair();
  f.stacks[0].obs = replica(false, std::nullopt);
  f.stacks[1].obs = replica(true, std::nullopt);
  f.traffic = record_holding("10.1.0.5", "ams");
  InitOutput o = write_init_config(f);
  CHECK(o.active == "ams");
  CHECK(decided_about(o, "no server was observed as primary"));
  reload(o);
}

TEST_CASE("init notes a replica streaming from a server that was not given", "[init]") {
  InitFacts f = pair();
  f.stacks[1].obs = replica(true, std::nullopt);
  f.stacks[1].obs.database->streaming = true;
  f.stacks[1].obs.error =
      "postgres stack ams: replicating from 10.9.9.9:5432, which is not the dsn host:port of any "
      "stack of group shop";
  InitOutput o = write_init_config(f);
  CHECK(o.active == "fra");
  CHECK(decided_about(o, "ams streams from a server that was not given"));
  CHECK(decided_about(o, "10.9.9.9:5432"));
  reload(o);
}

TEST_CASE("init notes a record that holds the address of no stack given", "[init]") {
  InitFacts f = pair();
  f.traffic = record_holding("203.0.113.7", std::nullopt);
  InitOutput o = write_init_config(f);
  CHECK(o.active == "fra");  // the databases decide
  CHECK(decided_about(o, "holds the address of no stack given"));
  CHECK(o.yaml.find("# observed: shop.example.com. A holds 203.0.113.7 (no stack given)") !=
        std::string::npos);
  reload(o);
}

TEST_CASE("init notes a record pointing at the replica, and the record that does not exist",
          "[init]") {
  InitFacts f = pair();
  f.traffic = record_holding("10.1.0.5", "ams");
  InitOutput o = write_init_config(f);
  CHECK(o.active == "fra");
  CHECK(decided_about(o, "points at ams, but fra is active"));
  f.traffic = TrafficObs{};
  o = write_init_config(f);
  CHECK(decided_about(o, "does not exist: the first plan creates it"));
  reload(o);
}

TEST_CASE("init notes an unreachable server and keeps it in the config", "[init]") {
  InitFacts f = pair();
  f.stacks[1].obs = StackObs{};
  f.stacks[1].obs.error = "connection to 10.1.0.5:5432 refused";
  InitOutput o = write_init_config(f);
  CHECK(o.active == "fra");
  CHECK(decided_about(o, "ams could not be observed (connection to 10.1.0.5:5432 refused)"));
  CHECK(reload(o).groups.at("shop").stacks.count("ams") == 1);
}

TEST_CASE("init notes a zone it could not find, and PowerDNS that did not answer", "[init]") {
  InitFacts f = pair();
  f.zone_problem = "PowerDNS serves no zone that holds shop.example.com.";
  f.traffic = TrafficObs{};
  f.traffic.reachable = false;
  f.traffic.error = "HTTP 404";
  InitOutput o = write_init_config(f);
  CHECK(decided_about(o, "zone example.com. is a guess"));
  CHECK(o.decide.size() == 1);  // the unreadable record is the same problem
  f.zone_problem.clear();
  f.traffic.error = "connection refused";
  o = write_init_config(f);
  CHECK(decided_about(o, "could not be read (connection refused)"));
  reload(o);
}

TEST_CASE("init turns any change of the first plan that no note explains into a decision",
          "[init]") {
  // A standby whose maintenance flag is unknown is not pinned: the planner
  // would fence it, which none of the notes above covers.
  InitFacts f = pair();
  f.stacks[1].obs.maintenance.reset();
  InitOutput o = write_init_config(f);
  REQUIRE(o.decide.size() == 1);
  CHECK(o.decide[0].find("would not be \"No changes\"") != std::string::npos);
  CHECK(o.yaml.find("maintenance.on ams") != std::string::npos);
  reload(o);
}

TEST_CASE("init's output means what it says whatever the observations and flags held", "[init]") {
  InitFacts f = pair();
  // A DSN with quotes, a backslash, a YAML comment and a newline (libpq's
  // quoting allows them in values), non-ASCII and an invalid byte.
  f.stacks[0].dsn = "host=10.0.0.5 application_name='a \\'b\" #c\nactive: x' dbname='caf\xc3\xa9'";
  f.stacks[1].dsn = std::string("host=10.1.0.5 dbname='\xe2\x80\xa8\xff'");
  // Values from the servers land in comments: none may end the comment.
  f.traffic.records[0].content = "10.0.0.5\nactive: ams\n# \r\x1b[31m";
  f.stacks[1].obs.error = "boom\nactive: ams";
  f.stacks[1].obs.database->upstream = std::nullopt;
  f.group = "null";
  f.schema = "x\ny: 1";
  InitOutput o = write_init_config(f);
  INFO(o.yaml);
  DesiredState d = reload(o);
  REQUIRE(d.groups.count("null") == 1);
  const GroupSpec& g = d.groups.at("null");
  CHECK(g.active == "fra");
  CHECK(g.stacks.at("fra").get("dsn") == f.stacks[0].dsn);
  CHECK(g.stacks.at("ams").get("dsn") == "host=10.1.0.5 dbname='\xe2\x80\xa8\xef\xbf\xbd'");
  bool printable_ascii = true;
  for (char c : o.yaml) printable_ascii = printable_ascii && (c == '\n' || (c >= 0x20 && c < 0x7f));
  CHECK(printable_ascii);
  CHECK(count(o.yaml, "\nactive:") == 0);
  CHECK(count(o.yaml, "\n    active:") == 1);
}

TEST_CASE("yaml_quote, comment_safe and yaml_name", "[init]") {
  CHECK(yaml_quote("a\"b\\c\n\t\x01") == "\"a\\\"b\\\\c\\n\\t\\x01\"");
  CHECK(yaml_quote("caf\xc3\xa9 \xf0\x9f\x98\x80") == "\"caf\\u00E9 \\U0001F600\"");
  CHECK(yaml_quote("\xc0\xaf") == "\"\\uFFFD\\uFFFD\"");  // overlong: two invalid bytes
  CHECK(comment_safe("a\nb\xc3\xa9", 100) == "a\\x0Ab\\xC3\\xA9");
  CHECK(comment_safe("abcdef", 3) == "abc...");
  CHECK(yaml_name("fra") == "fra");
  CHECK(yaml_name("db-1_a") == "db-1_a");
  for (const char* quoted : {"127-0-0-1", "null", "true", "no", "1e3", "0x10", "y"})
    CHECK(yaml_name(quoted) == "\"" + std::string(quoted) + "\"");
}

TEST_CASE("init names stacks after their hosts, uniquely, and the group after the record",
          "[init]") {
  CHECK(init_stack_name("db1.fra.example.com") == "db1");
  CHECK(init_stack_name("127.0.0.1") == "127-0-0-1");
  CHECK(init_stack_name("2001:db8::1") == "2001-db8-1");
  CHECK(init_stack_name("/var/run/postgresql") == "local");
  CHECK(init_stack_name("_Weird_Host.example") == "weird_host");
  InitRequest r;
  r.postgres = {"host=db.fra.example.com hostaddr=10.0.0.5",
                "host=db.ams.example.com hostaddr=10.1.0.5", "host=10.2.0.5"};
  r.powerdns_url = "http://127.0.0.1:8081";
  r.api_key = "${env:PDNS_API_KEY}";
  r.record = "Shop-EU.example.com";
  auto f = prepare_init(r);
  REQUIRE(f.ok());
  CHECK(f->stacks[0].name == "db");
  CHECK(f->stacks[1].name == "db-2");
  CHECK(f->stacks[2].name == "10-2-0-5");
  CHECK(f->stacks[0].address == "10.0.0.5");
  CHECK(f->stacks[0].address_from == "the DSN's hostaddr");
  CHECK(f->group == "shop-eu");
  CHECK(f->record == "Shop-EU.example.com.");
  CHECK(f->zone == "example.com.");
  CHECK_FALSE(f->zone_problem.empty());  // a guess, looked up later
}

TEST_CASE("init refuses secrets that are not references, without repeating them", "[init]") {
  InitRequest r;
  r.postgres = {"host=10.0.0.5 password=hunter22", "host=10.1.0.5"};
  r.powerdns_url = "http://127.0.0.1:8081";
  r.api_key = "${env:PDNS_API_KEY}";
  r.record = "shop.example.com.";
  auto f = prepare_init(r);
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().message.find("--postgres #1: the DSN holds a password") == 0);
  CHECK(f.error().message.find("hunter22") == std::string::npos);

  r.postgres[0] = "host=10.0.0.5 user=app password=${env:APP_PW}";
  f = prepare_init(r);
  REQUIRE(f.ok());
  CHECK(f->stacks[0].password == "${env:APP_PW}");
  CHECK(f->stacks[0].dsn == "user='app' host='10.0.0.5'");  // libpq's order

  r.api_key = "s3cr3t-key";
  f = prepare_init(r);
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().message.find("--api-key must be a secret reference") == 0);
  CHECK(f.error().message.find("s3cr3t") == std::string::npos);
  r.api_key = "${env:PDNS_API_KEY}";
  r.password = "plain";
  CHECK_FALSE(prepare_init(r).ok());
}

TEST_CASE("init refuses flags a config could not hold, naming the flag", "[init]") {
  InitRequest base;
  base.postgres = {"host=10.0.0.5", "host=10.1.0.5"};
  base.powerdns_url = "http://127.0.0.1:8081";
  base.api_key = "${env:PDNS_API_KEY}";
  base.record = "shop.example.com.";
  REQUIRE(prepare_init(base).ok());
  auto refused = [&](auto edit, const std::string& starts) {
    InitRequest r = base;
    edit(r);
    auto f = prepare_init(r);
    INFO(starts);
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().message.rfind(starts, 0) == 0);
  };
  refused([](InitRequest& r) { r.postgres.pop_back(); }, "--postgres: expected 2 to 16");
  refused([](InitRequest& r) { r.postgres[1] = "host=10.1.0.5 passfile=/root/.pgpass"; },
          "--postgres #2: the DSN keyword `passfile`");
  refused([](InitRequest& r) { r.postgres[1] = "host=db.example.com port=nope x"; },
          "--postgres #2: not a valid PostgreSQL connection string");
  refused([](InitRequest& r) { r.postgres[1] = "host=/var/run/postgresql"; },
          "--postgres #2: the DSN's host is neither");
  refused([](InitRequest& r) { r.names = {"fra", "Fra"}; }, "--name Fra (for --postgres #2)");
  refused([](InitRequest& r) { r.names = {"fra", "fra"}; }, "--name fra (for --postgres #2)");
  refused([](InitRequest& r) { r.names = {"fra"}; }, "--name: expected one per --postgres");
  refused(
      [](InitRequest& r) {
        r.addresses = {"10.0.0.5", "2001:db8::1"};
      },
      "--address 2001:db8::1 (for --postgres #2): expected an IPv4 address");
  refused([](InitRequest& r) { r.record = "shop example.com"; }, "--record shop example.com.");
  refused([](InitRequest& r) { r.zone = "example.org"; },
          "--record shop.example.com. is not inside --zone example.org.");
  refused([](InitRequest& r) { r.powerdns_url = "ftp://x"; }, "--powerdns ftp://x");
  refused([](InitRequest& r) { r.group = "Shop!"; }, "--group Shop!");
  refused([](InitRequest& r) { r.record_type = "MX"; }, "--record-type MX: expected A or AAAA");
}
