#include "config/loader.h"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/embedded_schema.h"
#include "config/schema_check.h"
#include "config/yaml_doc.h"
#include "config_text.h"

using namespace stackflip;
using stackflip::testing::edit;

namespace {

const std::string kExamples = std::string(STACKFLIP_SOURCE_DIR) + "/examples/";

// A valid file; bad inputs below are edits of it. Line numbers matter.
const std::string kBase =
    "apiVersion: stackflip/v1\n"                                                               // 1
    "providers:\n"                                                                             // 2
    "  db: {type: postgres, password: \"${env:PGPASSWORD}\"}\n"                                // 3
    "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: \"${env:PDNS_KEY}\"}\n"  // 4
    "groups:\n"                                                                                // 5
    "  shop:\n"                                                                                // 6
    "    active: primary\n"                                                                    // 7
    "    stacks:\n"                                                                            // 8
    "      primary:\n"                                                                         // 9
    "        provider: db\n"                                                                   // 10
    "        dsn: \"host=10.0.0.5 user=stackflip dbname=postgres\"\n"                          // 11
    "        address: 10.0.0.5\n"                                                              // 12
    "      standby:\n"                                                                         // 13
    "        provider: db\n"                                                                   // 14
    "        dsn: \"host=10.0.0.6 user=stackflip dbname=postgres\"\n"                          // 15
    "        address: 10.0.0.6\n"                                                              // 16
    "    traffic:\n"                                                                           // 17
    "      provider: dns\n"                                                                    // 18
    "      zone: example.com.\n"                                                               // 19
    "      record: shop.example.com.\n";                                                       // 20

// A second group for ownership checks, appended after line 20.
const std::string kSecondGroup =
    "  shop2:\n"                                                     // 21
    "    active: a\n"                                                // 22
    "    stacks:\n"                                                  // 23
    "      a: {provider: db, dsn: \"host=a\", address: 10.0.1.1}\n"  // 24
    "      b: {provider: db, dsn: \"host=b\", address: 10.0.1.2}\n"  // 25
    "    traffic:\n"                                                 // 26
    "      provider: dns\n"                                          // 27
    "      zone: example.com.\n"                                     // 28
    "      record: shop.example.com.\n";                             // 29

// A second group whose stacks name the servers of group shop (issue 11).
const std::string kSecondGroupSameServers =
    "  blog:\n"                                                                       // 21
    "    active: b\n"                                                                 // 22
    "    stacks:\n"                                                                   // 23
    "      a: {provider: db, dsn: \"host=10.0.0.5\", address: 10.0.2.1}\n"            // 24
    "      b: {provider: db, dsn: \"host=10.0.0.6\", address: 10.0.2.2}\n"            // 25
    "    traffic: {provider: dns, zone: example.com., record: blog.example.com.}\n";  // 26

std::string dump(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += format_diagnostic(e) + "\n";
  return out;
}

struct BadCase {
  const char* scenario;
  std::string text;
  int line, column;
  const char* message;
};

std::vector<BadCase> bad_cases() {
  const std::string& b = kBase;
  return {
      {"YAML syntax error (unclosed flow mapping)",
       edit(b, "  db: {type: postgres, password: \"${env:PGPASSWORD}\"}", "  db: {type: postgres"),
       4, 6, "end of map flow not found"},
      {"tab used for indentation",
       edit(b, "        provider: db\n        dsn: \"host=10.0.0.5",
            "        provider: db\n\tdsn: \"host=10.0.0.5"),
       11, 1, "tab"},
      {"bad indentation",
       edit(b, "      record: shop.example.com.\n", "     record: shop.example.com.\n"), 20, 6,
       "end of map not found"},
      {"duplicate top-level key", b + "apiVersion: stackflip/v1\n", 21, 1,
       "duplicate key 'apiVersion'"},
      {"duplicate nested key",
       edit(b, "        address: 10.0.0.6\n", "        address: 10.0.0.6\n        provider: db\n"),
       17, 9, "duplicate key 'provider' (first at line 14:9)"},
      {"unknown top-level key", b + "stacks: {}\n", 21, 1,
       "unknown key 'stacks' in the top level (expected one of: apiVersion, groups, providers)"},
      {"unknown stack key points at the key",
       edit(b, "        address: 10.0.0.5\n", "        address: 10.0.0.5\n        colour: blue\n"),
       13, 9,
       "unknown key 'colour' in stack 'primary' (expected one of: address, bootstrap, "
       "control_command, data_directory, dsn, health, keep_old_data, maintenance, password, "
       "pg_rewind, provider, site)"},
      {"switch_ttl above the TTL (issue 15)", b + "      ttl: 30\n      switch_ttl: 60\n", 22, 19,
       "switch_ttl 60 is above the record's ttl 30: pre-lowering lowers the TTL before a switch; "
       "write at most 30"},
      {"switch_ttl above the default TTL", b + "      switch_ttl: 61\n", 21, 19,
       "switch_ttl 61 is above the record's ttl 60"},
      {"unknown traffic key offers the keys of its provider type", b + "      recrod_type: A\n", 21,
       7,
       "unknown key 'recrod_type' in 'traffic' of group 'shop' (expected one of: provider, record, "
       "record_type, switch_ttl, ttl, zone)"},
      {"missing apiVersion", edit(b, "apiVersion: stackflip/v1\n", "\n"), 2, 1,
       "missing required key 'apiVersion' in the top level"},
      {"wrong apiVersion", edit(b, "stackflip/v1", "stackflip/v2"), 1, 13,
       "expected 'stackflip/v1' for 'apiVersion', got 'stackflip/v2'"},
      {"missing groups", b.substr(0, b.find("groups:")), 1, 1,
       "missing required key 'groups' in the top level"},
      {"ttl given as a string", b + "      ttl: \"sixty\"\n", 21, 12,
       "expected an integer for 'ttl', got a string"},
      {"ttl out of range", b + "      ttl: 0\n", 21, 12, "'ttl' must be at least 1, got 0"},
      {"negative max_lag_bytes",
       edit(b, "    traffic:\n", "    replication: {max_lag_bytes: -1}\n    traffic:\n"), 17, 34,
       "'max_lag_bytes' must be at least 0, got -1"},
      {"active names an unknown stack", edit(b, "active: primary", "active: primray"), 7, 13,
       "active stack 'primray' is not a stack of group 'shop' (stacks: primary, standby)"},
      {"stack provider unknown",
       edit(b, "        provider: db\n        dsn: \"host=10.0.0.6",
            "        provider: dbx\n        dsn: \"host=10.0.0.6"),
       14, 19, "stack 'standby' uses unknown provider 'dbx' (declared: db, dns)"},
      {"traffic provider unknown", edit(b, "provider: dns", "provider: pdns"), 18, 17,
       "traffic of group 'shop' uses unknown provider 'pdns'"},
      {"traffic provider cannot hold traffic", edit(b, "provider: dns", "provider: db"), 18, 17,
       "provider 'db' is a postgres provider and cannot hold traffic"},
      {"stack provider cannot serve stacks",
       edit(b, "        provider: db\n        dsn: \"host=10.0.0.5",
            "        provider: dns\n        dsn: \"host=10.0.0.5"),
       10, 19, "provider 'dns' is a powerdns provider and cannot serve stack 'primary'"},
      {"replication from a stack that is not active",
       edit(b, "    traffic:\n", "    replication: {from: standby}\n    traffic:\n"), 17, 25,
       "replication flows from the active stack 'primary', not from 'standby'"},
      {"replication into the active stack",
       edit(b, "    traffic:\n", "    replication: {to: [standby, primary]}\n    traffic:\n"), 17,
       33, "replication into the active stack 'primary' is not possible"},
      {"replication to an unknown stack",
       edit(b, "    traffic:\n", "    replication: {to: [standbi]}\n    traffic:\n"), 17, 24,
       "replication target 'standbi' is not a stack of group 'shop'"},
      {"a stack listed twice in replication.to",
       edit(b, "    traffic:\n", "    replication: {to: [standby, standby]}\n    traffic:\n"), 17,
       33, "'standby' is listed twice in 'to'"},
      {"replication neither off nor a mapping",
       edit(b, "    traffic:\n", "    replication: on\n    traffic:\n"), 17, 18,
       "expected 'off' or a mapping for 'replication', got 'on'"},
      {"literal api_key", edit(b, "\"${env:PDNS_KEY}\"", "hunter2"), 4, 64,
       "a literal secret in 'api_key'; write ${env:NAME} or ${file:PATH}"},
      {"literal password on a provider", edit(b, "\"${env:PGPASSWORD}\"", "\"s3cret\""), 3, 34,
       "a literal secret in 'password'"},
      {"literal password on a stack",
       edit(b, "        address: 10.0.0.6\n",
            "        address: 10.0.0.6\n        password: s3cret\n"),
       17, 19, "a literal secret in 'password'"},
      {"password inside dsn", edit(b, "host=10.0.0.5 user", "host=10.0.0.5 password=s3cret user"),
       11, 14, "a password inside 'dsn'; put the password in 'password'"},
      {"password inside a URI dsn",
       edit(b, "\"host=10.0.0.5 user=stackflip dbname=postgres\"",
            "postgresql://u:s3cret@10.0.0.5/postgres"),
       11, 14, "a password inside 'dsn'"},
      {"record outside its zone", edit(b, "record: shop.example.com.", "record: shop.example.org."),
       20, 15, "record 'shop.example.org.' is not inside zone 'example.com.'"},
      {"zone without trailing dot", edit(b, "zone: example.com.", "zone: example.com"), 19, 13,
       "invalid 'zone' 'example.com': write a fully qualified name ending with '.'"},
      {"bad record_type", b + "      record_type: MX\n", 21, 20,
       "invalid 'record_type' 'MX': expected A, AAAA or CNAME"},
      {"two groups owning the same record", b + kSecondGroup, 29, 15,
       "record 'shop.example.com.' of provider 'dns' is already owned by group 'shop' "
       "(bad.yaml:20:15)"},
      {"key of another provider type on a stack",
       edit(b, "        address: 10.0.0.6\n",
            "        address: 10.0.0.6\n        stack_uid: abc\n"),
       17, 9, "key 'stack_uid' is not used by postgres stacks"},
      {"key of another provider type on a provider",
       edit(b, "{type: postgres,", "{type: postgres, url: \"http://x\","), 3, 24,
       "key 'url' is not used by postgres providers"},
      {"missing type-required provider key", edit(b, "url: \"http://127.0.0.1:8081\", ", ""), 4, 3,
       "powerdns provider 'dns' needs 'url'"},
      {"missing dsn on a postgres stack",
       edit(b, "        dsn: \"host=10.0.0.6 user=stackflip dbname=postgres\"\n", ""), 13, 7,
       "postgres stack 'standby' needs 'dsn'"},
      {"missing address with powerdns traffic", edit(b, "        address: 10.0.0.6\n", ""), 13, 7,
       "stack 'standby' needs 'address': traffic of group 'shop' goes through powerdns provider "
       "'dns'"},
      {"missing zone on powerdns traffic", edit(b, "      zone: example.com.\n", ""), 17, 5,
       "powerdns traffic of group 'shop' needs 'zone'"},
      {"a group with one stack",
       edit(b,
            "      standby:\n        provider: db\n        dsn: \"host=10.0.0.6 user=stackflip "
            "dbname=postgres\"\n        address: 10.0.0.6\n",
            ""),
       8, 5, "group 'shop' needs at least 2 stacks, has 1"},
      {"missing traffic", b.substr(0, b.find("    traffic:")), 6, 3,
       "missing required key 'traffic' in group 'shop'"},
      {"uppercase stack name", edit(b, "      standby:", "      Standby:"), 13, 7,
       "invalid stack name 'Standby': use lowercase letters"},
      {"uppercase group name", edit(b, "  shop:", "  Shop:"), 6, 3, "invalid group name 'Shop'"},
      {"unknown provider type", edit(b, "type: postgres", "type: mysql"), 3, 14,
       "expected one of postgres, powerdns, cloud66, command, pgbouncer for 'type', got 'mysql'"},
      {"maintenance is not a boolean",
       edit(b, "        address: 10.0.0.6\n",
            "        address: 10.0.0.6\n        maintenance: \"yes\"\n"),
       17, 22, "expected a boolean (true or false) for 'maintenance', got a string"},
      {"a stack that is not a mapping",
       edit(b,
            "      standby:\n        provider: db\n        dsn: \"host=10.0.0.6 user=stackflip "
            "dbname=postgres\"\n        address: 10.0.0.6\n",
            "      standby: db\n"),
       13, 16, "expected a mapping for stack 'standby', got a string"},
      {"empty file", "", 1, 1, "expected a mapping for the top level, got nothing (null)"},
      {"two YAML documents in one file", b + "---\napiVersion: stackflip/v1\n", 22, 1,
       "only one YAML document per file is allowed"},
      {"empty address", edit(b, "address: 10.0.0.6", "address:"), 16, 9,
       "expected a string or a list for 'address', got nothing (null)"},
      {"providers is a list",
       edit(b, "providers:\n  db:", "providers:\n  - db:").substr(0, 0) +
           "apiVersion: stackflip/v1\nproviders: [db]\ngroups: {}\n",
       2, 12, "expected a mapping for 'providers', got a list"},
  };
}

const std::string kCommandBase =
    "apiVersion: stackflip/v1\n"                            // 1
    "providers:\n"                                          // 2
    "  sh:\n"                                               // 3
    "    type: command\n"                                   // 4
    "    commands:\n"                                       // 5
    "      observe: [bin/stack, observe]\n"                 // 6
    "groups:\n"                                             // 7
    "  g:\n"                                                // 8
    "    active: a\n"                                       // 9
    "    stacks: {a: {provider: sh}, b: {provider: sh}}\n"  // 10
    "    traffic: {provider: sh}\n";                        // 11

const std::string kCloud66Base =
    "apiVersion: stackflip/v1\n"                                                            // 1
    "providers:\n"                                                                          // 2
    "  c66: {type: cloud66, token: \"${env:T}\"}\n"                                         // 3
    "groups:\n"                                                                             // 4
    "  g:\n"                                                                                // 5
    "    active: a\n"                                                                       // 6
    "    stacks: {a: {provider: c66, stack_uid: u1}, b: {provider: c66, stack_uid: u2}}\n"  // 7
    "    traffic: {provider: c66, failover_group: fg1}\n";                                  // 8

std::vector<BadCase> more_bad_cases() {
  return {
      {"command argv given as a string",
       edit(kCommandBase, "[bin/stack, observe]", "\"bin/stack observe\""), 6, 16,
       "expected a list for 'observe', got a string"},
      {"command argv empty", edit(kCommandBase, "[bin/stack, observe]", "[]"), 6, 16,
       "'observe' must not be an empty list"},
      {"unknown command operation", edit(kCommandBase, "      observe:", "      failover:"), 6, 7,
       "unknown key 'failover' in 'commands' of provider 'sh' (expected one of: maintenance_off, "
       "maintenance_on, observe,"},
      {"literal token", edit(kCloud66Base, "\"${env:T}\"", "abc123"), 3, 31,
       "a literal secret in 'token'"},
      {"missing stack_uid on a cloud66 stack", edit(kCloud66Base, ", stack_uid: u2", ""), 7, 49,
       "cloud66 stack 'b' needs 'stack_uid'"},
      {"dsn key on a cloud66 stack", edit(kCloud66Base, "stack_uid: u2}", "stack_uid: u2, dsn: x}"),
       7, 83, "key 'dsn' is not used by cloud66 stacks"},
      // Issue 11: one owner per database server.
      {"issue 11: two groups whose stacks name the same server", kBase + kSecondGroupSameServers,
       24, 30,
       "stack 'a' of group 'blog' names database server postgres://10.0.0.5:5432, which stack "
       "'primary' of "
       "group 'shop' already names (bad.yaml:11:14)"},
      {"issue 11: the second stack of the second group on the other server",
       kBase + kSecondGroupSameServers, 25, 30,
       "stack 'b' of group 'blog' names database server postgres://10.0.0.6:5432, which stack "
       "'standby' of "
       "group 'shop' already names (bad.yaml:15:14)"},
      {"issue 11: two stacks of one group on one server",
       edit(kBase, "host=10.0.0.6 user", "host=10.0.0.5 user"), 15, 14,
       "stack 'standby' of group 'shop' names database server postgres://10.0.0.5:5432, which "
       "stack 'primary' "
       "of group 'shop' already names (bad.yaml:11:14)"},
      {"issue 11: spellings that normalise equal (case, default port, URI form)",
       edit(edit(kBase, "host=10.0.0.5 user", "host=DB.Example.COM user"),
            "\"host=10.0.0.6 user=stackflip dbname=postgres\"",
            "\"postgresql://db.example.com:5432/postgres\""),
       15, 14,
       "names database server postgres://db.example.com:5432, which stack 'primary' of group "
       "'shop'"},
      {"issue 11: hostaddr is the server libpq reaches",
       edit(kBase, "host=10.0.0.6 user",
            "host=replica.example.com hostaddr=10.0.0.5 port=5432 user"),
       15, 14, "names database server postgres://10.0.0.5:5432, which stack 'primary'"},
      {"issue 11: a multi-host DSN overlapping another stack's server",
       kBase + edit(edit(kSecondGroupSameServers, "host=10.0.0.5",
                         "host=10.9.0.1,10.0.0.6 port=5433,5432"),
                    "host=10.0.0.6\"", "host=10.9.0.2\""),
       24, 30,
       "stack 'a' of group 'blog' names database server postgres://10.0.0.6:5432, which stack "
       "'standby'"},
      {"issue 11: two groups naming one Cloud 66 stack",
       kCloud66Base + "  h:\n    active: a\n    stacks: {a: {provider: c66, stack_uid: u1}, b: "
                      "{provider: c66, stack_uid: u4}}\n"
                      "    traffic: {provider: c66, failover_group: fg2}\n",
       11, 44,
       "stack 'a' of group 'h' names Cloud 66 stack 'u1', which stack 'a' of group 'g' already "
       "names (bad.yaml:7:44)"},
      {"issue 11: a Cloud 66 database_dsn naming a postgres stack's server",
       "apiVersion: stackflip/v1\nproviders:\n  c66: {type: cloud66, token: \"${env:T}\"}\n  db: "
       "{type: postgres}\n"
       "groups:\n"
       "  g:\n    active: a\n"
       "    stacks: {a: {provider: c66, stack_uid: u1, database_dsn: \"host=10.0.0.5\"}, b: "
       "{provider: c66, stack_uid: u2}}\n"
       "    traffic: {provider: c66, failover_group: fg1}\n"
       "  h:\n    active: a\n"
       "    stacks: {a: {provider: db, dsn: \"host=10.0.0.5 port=5432\", address: 10.0.0.5}, b: "
       "{provider: db, dsn: \"host=10.0.0.7\", address: 10.0.0.7}}\n"
       "    traffic: {provider: c66, failover_group: fg2}\n",
       12, 37,
       "stack 'a' of group 'h' names database server postgres://10.0.0.5:5432, which stack 'a' of "
       "group 'g' already names (bad.yaml:8:62)"},
      {"two groups owning the same failover group",
       kCloud66Base + "  h:\n    active: a\n    stacks: {a: {provider: c66, stack_uid: u3}, b: "
                      "{provider: c66, stack_uid: u4}}\n"
                      "    traffic: {provider: c66, failover_group: fg1}\n",
       12, 46, "failover group 'fg1' of provider 'c66' is already owned by group 'g'"},
  };
}

void check_bad(const BadCase& c) {
  INFO(c.scenario);
  LoadResult r = load_desired_text("bad.yaml", c.text);
  INFO(dump(r));
  if (std::getenv("STACKFLIP_DUMP_DIAGNOSTICS"))
    std::printf("# %s\n%s", c.scenario, dump(r).c_str());
  CHECK_FALSE(r.desired.has_value());
  REQUIRE(!r.errors.empty());
  bool found = false;
  for (const auto& e : r.errors)
    if (e.mark.line == c.line && e.mark.column == c.column &&
        e.message.find(c.message) != std::string::npos)
      found = true;
  CHECK(found);
}

}  // namespace

TEST_CASE("all three examples load without errors") {
  for (const char* name : {"selfhosted.yaml", "cloud66.yaml", "command.yaml"}) {
    INFO(name);
    LoadResult r = load_desired_file(kExamples + name);
    INFO(dump(r));
    REQUIRE(r.errors.empty());
    REQUIRE(r.desired.has_value());
    CHECK(r.desired->digest.size() == 64);
    CHECK(r.desired->source == kExamples + name);
  }
}

TEST_CASE("the self-hosted example is fully defaulted") {
  LoadResult r = load_desired_file(kExamples + "selfhosted.yaml");
  REQUIRE(r.desired);
  const DesiredState& d = *r.desired;
  REQUIRE(d.providers.at("db").type == "postgres");
  CHECK(d.providers.at("db").get("connect_timeout_ms") == "2000");
  CHECK(d.providers.at("db").get("password") == "${env:PGPASSWORD}");
  CHECK(d.providers.at("dns").get("server_id") == "localhost");
  CHECK(d.providers.at("dns").get("insecure") == "false");
  const GroupSpec& g = d.groups.at("shop");
  CHECK(g.active == "primary");
  CHECK(g.replication.enabled);
  CHECK(g.replication.from == "primary");
  CHECK(g.replication.to == std::vector<std::string>{"standby"});
  CHECK(g.replication.max_lag_bytes == 0);
  CHECK_FALSE(g.allow_data_loss);
  CHECK(g.traffic.at(0).ttl == 60);
  CHECK(g.traffic.at(0).get("zone") == "example.test.");
  CHECK(g.traffic.at(0).get("record_type") == "A");
  CHECK_FALSE(g.desired_maintenance("primary"));
  CHECK(g.desired_maintenance("standby"));
  CHECK(g.stacks.at("standby").address == "127.0.0.2");
  CHECK(g.stacks.at("standby").get("password") == "${env:PGPASSWORD}");  // from the provider
  CHECK(g.stacks.at("primary").get("dsn") ==
        "host=127.0.0.1 port=5432 user=stackflip dbname=postgres");
  CHECK(g.mark.line > 0);
}

TEST_CASE("the command example keeps argv lists and free-form stack settings") {
  LoadResult r = load_desired_file(kExamples + "command.yaml");
  REQUIRE(r.desired);
  const ProviderConfig& p = r.desired->providers.at("scripts");
  CHECK(p.lists.at("observe") == std::vector<std::string>{"examples/command/stack.sh", "observe"});
  CHECK(p.get("timeout_ms") == "30000");
  const GroupSpec& g = r.desired->groups.at("billing");
  CHECK(g.traffic.at(0).ttl == 30);
  CHECK(g.stacks.at("green").get("host") == "10.0.2.10");
  CHECK(g.replication.to == std::vector<std::string>{"green"});
}

TEST_CASE("the cloud66 example defaults the API settings") {
  LoadResult r = load_desired_file(kExamples + "cloud66.yaml");
  REQUIRE(r.desired);
  const ProviderConfig& p = r.desired->providers.at("c66");
  CHECK(p.get("base_url") == "https://app.cloud66.com/api/3");
  CHECK(p.get("address_api") == "failover_groups");
  CHECK(p.get("action_timeout_ms") == "600000");
  CHECK(r.desired->groups.at("storefront").traffic.at(0).get("failover_group") == "fg-5c8c9a1e");
}

TEST_CASE("explicit replication, maintenance and replication off are kept") {
  std::string text = edit(kBase, "    traffic:\n",
                          "    replication: {from: primary, to: [standby], max_lag_bytes: 1024}\n"
                          "    allow_data_loss: true\n    traffic:\n");
  text = edit(text, "        address: 10.0.0.6\n",
              "        address: 10.0.0.6\n        maintenance: false\n");
  LoadResult r = load_desired_text("t.yaml", text);
  INFO(dump(r));
  REQUIRE(r.desired);
  const GroupSpec& g = r.desired->groups.at("shop");
  CHECK(g.replication.max_lag_bytes == 1024);
  CHECK(g.allow_data_loss);
  CHECK_FALSE(g.desired_maintenance("standby"));

  LoadResult off = load_desired_text(
      "t.yaml", edit(kBase, "    traffic:\n", "    replication: off\n    traffic:\n"));
  INFO(dump(off));
  REQUIRE(off.desired);
  CHECK_FALSE(off.desired->groups.at("shop").replication.enabled);
  CHECK_FALSE(off.desired->groups.at("shop").wants_replica("standby"));
}

TEST_CASE("each bad input is reported at its line and column with a specific message") {
  auto cases = bad_cases();
  for (auto& c : more_bad_cases()) cases.push_back(std::move(c));
  CHECK(cases.size() >= 30);
  for (const auto& c : cases) DYNAMIC_SECTION(c.scenario) {
      check_bad(c);
    }
}

TEST_CASE("a missing file is one diagnostic naming the path") {
  LoadResult r = load_desired_file("/nonexistent/stackflip.yaml");
  REQUIRE_FALSE(r.desired);
  REQUIRE(r.errors.size() == 1);
  CHECK(format_diagnostic(r.errors[0])
            .rfind("/nonexistent/stackflip.yaml:0:0: error: cannot read", 0) == 0);
}

TEST_CASE("literal secrets are never repeated in messages") {
  LoadResult r =
      load_desired_text("t.yaml", edit(kBase, "\"${env:PDNS_KEY}\"", "hunter2-very-secret"));
  REQUIRE_FALSE(r.errors.empty());
  CHECK(dump(r).find("hunter2") == std::string::npos);
  LoadResult dsn = load_desired_text(
      "t.yaml",
      edit(kBase, "user=stackflip dbname=postgres\"\n        address: 10.0.0.5",
           "user=stackflip password=hunter2 dbname=postgres\"\n        address: 10.0.0.5"));
  REQUIRE_FALSE(dsn.errors.empty());
  CHECK(dump(dsn).find("hunter2") == std::string::npos);
}

TEST_CASE("several errors in different places are all reported, each at its own position") {
  std::string text = kBase;
  text = edit(text, "stackflip/v1", "stackflip/v0");  // 1:13
  text = edit(text, "\"${env:PDNS_KEY}\"", "plain");  // 4:64
  text = edit(text, "        address: 10.0.0.5\n",
              "        address: 10.0.0.5\n        colour: blue\n");  // 13:9
  text = edit(text, "active: primary", "active: nobody");            // 7:13
  text = edit(text, "zone: example.com.", "zone: example.com");      // 20:13
  text += "      ttl: -5\n";                                         // 22:12
  LoadResult r = load_desired_text("multi.yaml", text);
  INFO(dump(r));
  REQUIRE_FALSE(r.desired);
  std::vector<std::string> got;
  for (const auto& e : r.errors)
    got.push_back(std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column));
  CHECK(got == std::vector<std::string>{"1:13", "4:64", "7:13", "13:9", "20:13", "22:12"});
}

TEST_CASE("a group missing required keys still reports its other problems") {
  std::string text = kBase.substr(0, kBase.find("    traffic:"));
  text = edit(text, "    active: primary\n", "    actve: primary\n    allow_data_loss: \"yes\"\n");
  LoadResult r = load_desired_text("g.yaml", text);
  INFO(dump(r));
  REQUIRE_FALSE(r.desired);
  std::vector<std::string> got;
  for (const auto& e : r.errors)
    got.push_back(std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + " " +
                  e.message);
  CHECK(got ==
        std::vector<std::string>{
            "6:3 missing required key 'active' in group 'shop'",
            "6:3 missing required key 'traffic' in group 'shop'",
            "7:5 unknown key 'actve' in group 'shop' (expected one of: active, allow_data_loss, "
            "auto_failover, replication, stacks, traffic)",
            "8:22 expected a boolean (true or false) for 'allow_data_loss', got a string"});
}

TEST_CASE("YAML scalars follow the core schema, quoted scalars stay strings") {
  auto doc = parse_yaml_document(
      "s.yaml", "a: 60\nb: \"60\"\nc: true\nd: 'true'\ne: ~\nf: off\ng: 1.5\nh: -3\n");
  REQUIRE(doc.ok());
  const auto& j = doc->json;
  CHECK(j["a"].IsInt64());
  CHECK(j["b"].IsString());
  CHECK(j["c"].IsBool());
  CHECK(j["d"].IsString());
  CHECK(j["e"].IsNull());
  CHECK(std::string(j["f"].GetString()) == "off");
  CHECK(j["g"].IsDouble());
  CHECK(j["h"].GetInt64() == -3);
  CHECK(doc->mark_of("/b").line == 2);
  CHECK(doc->mark_of("/b").column == 4);
  CHECK(doc->key_mark_of("/b").column == 1);
  CHECK(doc->mark_of("/b/missing/deeper").line == 2);
  CHECK(doc->mark_of("not-a-pointer").line == 1);
}

TEST_CASE("JSON input, anchors and aliases parse") {
  auto json = parse_yaml_document("s.json", "{\"a\": [1, 2], \"b\": {\"c\": null}}");
  REQUIRE(json.ok());
  CHECK(json->json["a"].Size() == 2);
  auto alias = parse_yaml_document("s.yaml", "base: &b {x: 1}\nother: *b\n");
  REQUIRE(alias.ok());
  CHECK(alias->json["other"]["x"].GetInt64() == 1);
}

TEST_CASE("duplicate keys make parse_yaml_document fail with every position") {
  auto doc = parse_yaml_document("d.yaml", "a: 1\nb: {x: 1, x: 2}\na: 3\n");
  REQUIRE_FALSE(doc.ok());
  CHECK(doc.error().message ==
        "d.yaml:2:11: error: duplicate key 'x' (first at line 2:5)\n"
        "d.yaml:3:1: error: duplicate key 'a' (first at line 1:1)");
}

TEST_CASE("the embedded schema accepts the examples on its own") {
  auto doc = parse_yaml_document("x.yaml", kBase);
  REQUIRE(doc.ok());
  CHECK(check_against_schema(*doc, embedded_schema("stackflip")).empty());
}

namespace {
void expect_documented(const rapidjson::Value& node, const rapidjson::Document& root,
                       const std::string& path) {
  if (!node.IsObject()) return;
  if (auto props = node.FindMember("properties");
      props != node.MemberEnd() && props->value.IsObject()) {
    for (const auto& p : props->value.GetObject()) {
      const rapidjson::Value* target = &p.value;
      if (auto ref = p.value.FindMember("$ref"); ref != p.value.MemberEnd())
        target =
            rapidjson::Pointer(std::string(ref->value.GetString()).substr(1).c_str()).Get(root);
      REQUIRE(target);
      INFO(path + "/properties/" + p.name.GetString());
      CHECK((p.value.HasMember("description") || target->HasMember("description")));
      CHECK((p.value.HasMember("examples") || target->HasMember("examples")));
    }
  }
  for (const auto& m : node.GetObject())
    expect_documented(m.value, root, path + "/" + m.name.GetString());
}
}  // namespace

TEST_CASE("every key in the schema has a description and examples for editors") {
  rapidjson::Document schema;
  std::string_view text = embedded_schema("stackflip");
  schema.Parse(text.data(), text.size());
  REQUIRE_FALSE(schema.HasParseError());
  expect_documented(schema, schema, "");
}

TEST_CASE("stackflip validate exits 1 and prints file:line:col for each bad input") {
  auto cases = bad_cases();
  for (auto& c : more_bad_cases()) cases.push_back(std::move(c));
  char dir_template[] = "/tmp/stackflip-validate.XXXXXX";
  REQUIRE(mkdtemp(dir_template));
  const std::string dir = dir_template, file = dir + "/bad.yaml", out = dir + "/out.txt";
  for (const auto& c : cases) {
    INFO(c.scenario);
    {
      std::FILE* f = std::fopen(file.c_str(), "wb");
      std::fputs(c.text.c_str(), f);
      std::fclose(f);
    }
    std::string cmd = std::string(STACKFLIP_BINARY) + " validate " + file + " >" + out + " 2>&1";
    int status = std::system(cmd.c_str());
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    std::string text;
    if (std::FILE* f = std::fopen(out.c_str(), "rb")) {
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
      std::fclose(f);
    }
    INFO(text);
    const std::string where =
        file + ":" + std::to_string(c.line) + ":" + std::to_string(c.column) + ": error: ";
    CHECK(text.find(where) != std::string::npos);
    // A message naming another place names it in this file.
    std::string message = c.message;
    if (size_t p = message.find("(bad.yaml:"); p != std::string::npos)
      message.replace(p + 1, 8, file);
    CHECK(text.find(message) != std::string::npos);
  }
  std::remove(file.c_str());
  std::remove(out.c_str());
  rmdir(dir.c_str());
}

TEST_CASE(
    "stackflip validate checks several files in one call, each error on its own line (issue 12)") {
  auto cases = bad_cases();
  for (auto& c : more_bad_cases()) cases.push_back(std::move(c));
  REQUIRE(cases.size() > 5);
  char dir_template[] = "/tmp/stackflip-validate-many.XXXXXX";
  REQUIRE(mkdtemp(dir_template));
  const std::string dir = dir_template, out = dir + "/out.txt";
  std::vector<std::string> files;
  std::string cmd = std::string(STACKFLIP_BINARY) + " validate";
  for (size_t i = 0; i < cases.size(); ++i) {
    files.push_back(dir + "/bad-" + std::to_string(i) + ".yaml");
    std::FILE* f = std::fopen(files.back().c_str(), "wb");
    REQUIRE(f);
    std::fputs(cases[i].text.c_str(), f);
    std::fclose(f);
    cmd += " " + files.back();
  }
  int status = std::system((cmd + " >" + out + " 2>&1").c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  std::string text;
  if (std::FILE* f = std::fopen(out.c_str(), "rb")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO(cases[i].scenario);
    const std::string where = files[i] + ":" + std::to_string(cases[i].line) + ":" +
                              std::to_string(cases[i].column) + ": error: ";
    size_t at = text.find(where);
    REQUIRE(at != std::string::npos);
    // At the start of a line: not glued to the end of the previous file's errors.
    CHECK((at == 0 || text[at - 1] == '\n'));
  }
  CHECK((!text.empty() && text.back() == '\n'));
  for (const auto& f : files) std::remove(f.c_str());
  std::remove(out.c_str());
  rmdir(dir.c_str());
}
