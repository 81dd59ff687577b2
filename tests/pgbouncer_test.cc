// Issue 15 part 2: the pgbouncer traffic provider. The config names a
// PgBouncer admin console and a databases file; the host grants the file;
// the driver writes the one entry it manages and reads SHOW DATABASES. The
// driver against a real PgBouncer: tests/integration/pgbouncer_driver_itest.cc.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "closed_port.h"
#include "config/host_policy.h"
#include "config/loader.h"
#include "drivers/drivers.h"
#include "drivers/pgbouncer_admin.h"
#include "drivers/pgbouncer_driver.h"
#include "drivers/pgbouncer_entry.h"

using namespace stackflip;
using stackflip::testing::closed_port;

namespace {

const std::string kConfig =
    "apiVersion: stackflip/v1\n"                                                     // 1
    "providers:\n"                                                                   // 2
    "  db: {type: postgres}\n"                                                       // 3
    "  pgb:\n"                                                                       // 4
    "    type: pgbouncer\n"                                                          // 5
    "    admin_dsn: \"host=127.0.0.1 port=6432 user=sf dbname=pgbouncer\"\n"         // 6
    "    password: \"${env:PGB_PW}\"\n"                                              // 7
    "    databases_file: /etc/pgbouncer/stackflip.ini\n"                             // 8
    "groups:\n"                                                                      // 9
    "  shop:\n"                                                                      // 10
    "    active: primary\n"                                                          // 11
    "    stacks:\n"                                                                  // 12
    "      primary: {provider: db, dsn: \"host=10.0.0.5 port=5433 dbname=shop\"}\n"  // 13
    "      standby: {provider: db, dsn: \"host=10.0.0.6 dbname=shop\"}\n"            // 14
    "    traffic: {provider: pgb, database: shop}\n";                                // 15

std::string edit(std::string text, const std::string& find, const std::string& replace) {
  auto pos = text.find(find);
  REQUIRE(pos != std::string::npos);
  return text.replace(pos, find.size(), replace);
}

// "line:col: message" of the first error, "" when it loads.
std::string first_error(const std::string& text, const HostPolicy* policy = nullptr) {
  if (policy) install_host_policy(*policy);
  LoadResult r = load_desired_text("c.yaml", text);
  clear_host_policy();
  if (r.errors.empty()) return "";
  const auto& e = r.errors.front();
  return std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + ": " + e.message;
}

HostPolicy granting(std::vector<std::string> files) {
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PGB_PW}"] = {"postgres://127.0.0.1:6432"};
  p.pgbouncer_files = std::move(files);
  return p;
}

}  // namespace

TEST_CASE("pgbouncer config loads with the type table's defaults", "[pgbouncer]") {
  LoadResult r = load_desired_text("c.yaml", kConfig);
  REQUIRE(r.errors.empty());
  const ProviderConfig& p = r.desired->providers.at("pgb");
  CHECK(p.get("connect_timeout_ms") == "2000");
  CHECK(p.get("timeout_ms") == "5000");
  CHECK(p.get("pause_timeout_ms") == "5000");
  CHECK(provider_default("pgbouncer", "pause_timeout_ms") == "5000");
  const TrafficSpec& t = r.desired->groups.at("shop").traffic.at(0);
  CHECK(t.name == "PgBouncer database shop");
  CHECK(t.get("database") == "shop");
}

TEST_CASE("pgbouncer config errors name their place", "[pgbouncer]") {
  CHECK_THAT(first_error(edit(kConfig, "    databases_file: /etc/pgbouncer/stackflip.ini\n", "")),
             Catch::StartsWith("4:3: ") && Catch::Contains("needs 'databases_file'"));
  CHECK_THAT(first_error(edit(kConfig, ", database: shop", "")),
             Catch::StartsWith("15:") && Catch::Contains("needs 'database'"));
  CHECK_THAT(first_error(edit(kConfig, "database: shop", "database: \"shop; KILL x\"")),
             Catch::StartsWith("15:") && Catch::Contains("letters, digits and '_'"));
  CHECK_THAT(first_error(edit(kConfig, "database: shop", "database: shop, record: x.")),
             Catch::StartsWith("15:") && Catch::Contains("'record' is not used by pgbouncer"));
  CHECK_THAT(first_error(edit(kConfig, "/etc/pgbouncer/stackflip.ini", "stackflip.ini")),
             Catch::StartsWith("8:") && Catch::Contains("absolute path"));
  CHECK_THAT(first_error(edit(kConfig, "\"${env:PGB_PW}\"", "hunter2")),
             Catch::StartsWith("7:") && Catch::Contains("${env:NAME}"));
  CHECK_THAT(first_error(edit(kConfig, "dbname=pgbouncer", "dbname=shop")),
             Catch::StartsWith("6:") && Catch::Contains("dbname=pgbouncer (not shop)"));
  CHECK_THAT(first_error(edit(kConfig, "dbname=pgbouncer", "dbname=pgbouncer password=x")),
             Catch::StartsWith("6:") && Catch::Contains("a password inside 'admin_dsn'"));
  CHECK_THAT(first_error(edit(kConfig, "dbname=pgbouncer", "dbname=pgbouncer passfile=/x")),
             Catch::StartsWith("6:") && Catch::Contains("'passfile' is not allowed"));
  // The stacks' servers are what the entry points at: one each.
  CHECK_THAT(first_error(edit(kConfig, "host=10.0.0.6 dbname", "host=10.0.0.6,10.0.0.7 dbname")),
             Catch::StartsWith("14:") && Catch::Contains("names 2 servers"));
  // pgbouncer serves traffic only; the traffic message lists it.
  CHECK_THAT(first_error(edit(kConfig, "primary: {provider: db", "primary: {provider: pgb")),
             Catch::StartsWith("13:") && Catch::Contains("cannot serve stack 'primary'"));
  CHECK_THAT(first_error(edit(kConfig, "{provider: pgb, database: shop}", "{provider: db}")),
             Catch::Contains("(use powerdns, cloud66, command or pgbouncer)"));
}

TEST_CASE("one pgbouncer databases file is one group's one address", "[pgbouncer]") {
  const std::string two_groups = kConfig +
                                 "  blog:\n"
                                 "    active: a\n"
                                 "    stacks:\n"
                                 "      a: {provider: db, dsn: \"host=10.0.1.5 dbname=blog\"}\n"
                                 "      b: {provider: db, dsn: \"host=10.0.1.6 dbname=blog\"}\n"
                                 "    traffic: {provider: pgb, database: blog}\n";
  CHECK_THAT(first_error(two_groups),
             Catch::Contains("PgBouncer databases_file '/etc/pgbouncer/stackflip.ini' of "
                             "provider 'pgb' is already owned by group"));
  CHECK_THAT(first_error(edit(kConfig, "    traffic: {provider: pgb, database: shop}\n",
                              "    traffic:\n"
                              "      - {provider: pgb, database: shop}\n"
                              "      - {provider: pgb, database: shop2}\n")),
             Catch::StartsWith("17:") && Catch::Contains("listed twice"));
}

TEST_CASE("pgbouncer: the host grants the databases file and the password's servers",
          "[pgbouncer]") {
  HostPolicy none = granting({});
  CHECK_THAT(first_error(kConfig, &none),
             Catch::StartsWith("8:21: file /etc/pgbouncer/stackflip.ini may not be written by "
                               "stackflip on this host (host policy host.yaml; list it under "
                               "`pgbouncer_files:`)"));
  HostPolicy granted = granting({"/etc/pgbouncer/stackflip.ini"});
  CHECK(first_error(kConfig, &granted).empty());
  HostPolicy elsewhere = granted;
  elsewhere.secrets["${env:PGB_PW}"] = {"postgres://127.0.0.1:5432"};
  CHECK_THAT(first_error(kConfig, &elsewhere),
             Catch::StartsWith("7:") && Catch::Contains("may not be sent to "
                                                        "postgres://127.0.0.1:6432"));

  // In the policy file: exact absolute paths, one spelling each.
  char tmpl[] = "/tmp/stackflip-pgb-XXXXXX";
  REQUIRE(::mkdtemp(tmpl));
  const std::string dir = tmpl, good = dir + "/good.yaml", bad = dir + "/bad.yaml";
  std::ofstream(good) << "pgbouncer_files: [/etc/pgbouncer/stackflip.ini]\n";
  auto p = load_host_policy(good, nullptr);
  REQUIRE(p.ok());
  CHECK(p->pgbouncer_file_allowed("/etc/pgbouncer/stackflip.ini"));
  CHECK_FALSE(p->pgbouncer_file_allowed("/etc/pgbouncer/../pgbouncer/stackflip.ini"));
  std::ofstream(bad) << "pgbouncer_files:\n  - /etc/pgbouncer/ok.ini\n  - relative.ini\n"
                        "  - /etc/pgbouncer/../passwd\n  - /etc/pgbouncer/\n";
  std::vector<Diagnostic> errors;
  CHECK_FALSE(load_host_policy(bad, &errors).ok());
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].mark.line == 3);
  CHECK(errors[1].mark.line == 4);
  CHECK_THAT(errors[1].message, Catch::Contains("without '.', '..' or '//'"));
  CHECK(errors[2].mark.line == 5);
  std::filesystem::remove_all(dir);
}

TEST_CASE("pgbouncer databases file: the one entry under a header, read back", "[pgbouncer]") {
  const PgBouncerEntry e{"127.0.0.2", "5432", "shop"};
  const std::string text = pgbouncer_databases_file("shop", e);
  CHECK_THAT(text, Catch::StartsWith("; Written by stackflip"));
  CHECK_THAT(text, Catch::EndsWith("\n[databases]\nshop = host=127.0.0.2 port=5432 dbname=shop\n"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  CHECK(parse_pgbouncer_databases_file(text, "shop") == e);
  CHECK_FALSE(parse_pgbouncer_databases_file(text, "blog"));

  // A hand-written file: other sections, comments, quotes, defaults.
  const std::string hand =
      "; by hand\n"
      "[pgbouncer]\n"
      "shop = host=10.9.9.9\n"
      "[Databases]\n"
      "# a comment\n"
      "blog = host=10.0.0.7 port=6000\n"
      "  shop  =  dbname='my db' host = '10.0.0.8'  \n"
      "shop = host=10.0.0.9\n";
  CHECK(parse_pgbouncer_databases_file(hand, "shop") ==
        PgBouncerEntry{"10.0.0.8", "5432", "my db"});
  CHECK(parse_pgbouncer_databases_file(hand, "blog") == PgBouncerEntry{"10.0.0.7", "6000", "blog"});
  CHECK_FALSE(parse_pgbouncer_databases_file("shop = host=1.2.3.4\n", "shop"));

  CHECK(pgbouncer_entry_text(e, "shop") == "127.0.0.2:5432");
  CHECK(pgbouncer_entry_text({"::1", "5432", "other"}, "shop") == "[::1]:5432/other");
}

TEST_CASE("pgbouncer entry of a stack: its dsn's one server", "[pgbouncer]") {
  StackSpec s;
  s.name = "primary";
  s.settings["dsn"] = "host=DB.example.com port=5433 user=x dbname=y";
  auto e = pgbouncer_entry_of(s, "shop");
  REQUIRE(e.ok());
  CHECK(*e == PgBouncerEntry{"db.example.com", "5433", "shop"});
  s.settings["dsn"] = "postgresql://[2001:db8::5]:5432/shop";
  REQUIRE(pgbouncer_entry_of(s, "shop").ok());
  CHECK(pgbouncer_entry_of(s, "shop")->host == "2001:db8::5");
  s.settings["dsn"] = "host=10.0.0.5,10.0.0.6";
  CHECK_THAT(pgbouncer_entry_of(s, "shop").error().message, Catch::Contains("names 2 servers"));
  s.settings["dsn"] = "host='10.0.0.5\nadmin_users=x'";
  CHECK_THAT(pgbouncer_entry_of(s, "shop").error().message,
             Catch::Contains("cannot be written into a PgBouncer entry"));
  s.settings.erase("dsn");
  CHECK_THAT(pgbouncer_entry_of(s, "shop").error().message, Catch::Contains("has no dsn"));
  s.settings["database_dsn"] = "host=10.0.0.7";  // a Cloud 66 stack's database
  CHECK(pgbouncer_entry_of(s, "shop")->host == "10.0.0.7");
}

TEST_CASE("SHOW DATABASES: the row of the database, paused and disabled", "[pgbouncer]") {
  const std::vector<std::string> columns = {"name",
                                            "host",
                                            "port",
                                            "database",
                                            "force_user",
                                            "pool_size",
                                            "min_pool_size",
                                            "reserve_pool",
                                            "pool_mode",
                                            "max_connections",
                                            "current_connections",
                                            "paused",
                                            "disabled"};
  using Row = std::vector<std::optional<std::string>>;
  auto row = [](const char* name, std::optional<std::string> host, const char* paused,
                const char* disabled) {
    return Row{name, host,         "6432", name, std::nullopt, "20",    "0",
               "0",  std::nullopt, "0",    "0",  paused,       disabled};
  };
  const std::vector<Row> rows = {row("pgbouncer", std::nullopt, "0", "0"),
                                 row("shop", "127.0.0.2", "1", "0"),
                                 row("blog", "10.0.0.1", "0", "1")};
  auto shop = find_pgbouncer_row(columns, rows, "shop");
  REQUIRE(shop.ok());
  REQUIRE(*shop);
  CHECK((*shop)->entry == PgBouncerEntry{"127.0.0.2", "6432", "shop"});
  CHECK((*shop)->paused);
  CHECK_FALSE((*shop)->disabled);
  CHECK((*find_pgbouncer_row(columns, rows, "blog"))->disabled);
  CHECK((*find_pgbouncer_row(columns, rows, "pgbouncer"))->entry.host.empty());
  CHECK_FALSE(*find_pgbouncer_row(columns, rows, "nope"));
  // Not PgBouncer's admin console (a PostgreSQL server answering SHOW ...).
  auto wrong = find_pgbouncer_row({"databases"}, {}, "shop");
  CHECK_THAT(wrong.error().message, Catch::Contains("dbname=pgbouncer"));
}

TEST_CASE("pgbouncer unreachable is a state, without the password", "[pgbouncer]") {
  ::setenv("PGB_TEST_PW", "s3cret-value", 1);
  LoadResult r = load_desired_text(
      "c.yaml", edit(edit(kConfig, "port=6432", "port=" + std::to_string(closed_port())), "PGB_PW",
                     "PGB_TEST_PW"));
  REQUIRE(r.errors.empty());
  const GroupSpec& g = r.desired->groups.at("shop");
  RealDriverFactory factory;
  auto d = factory.traffic_driver(*r.desired, g, g.traffic.at(0));
  REQUIRE(d.ok());
  TrafficObs o = (*d)->observe();
  CHECK_FALSE(o.reachable);
  CHECK_FALSE(o.config_error);
  CHECK_THAT(o.error, Catch::StartsWith("PgBouncer pgb at 127.0.0.1:"));
  CHECK_THAT(o.error, !Catch::Contains("s3cret"));
  CHECK_FALSE(o.paused);
  CHECK_FALSE((*d)->pause().ok());
  CHECK_FALSE((*d)->switch_to("standby").ok());
  CHECK_THAT((*d)->lower_ttl(5).error().message, Catch::Contains("no TTL"));
  CHECK((*d)->pools());

  // The host binds the password elsewhere: refused before any connection.
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PGB_TEST_PW}"] = {"postgres://10.9.9.9:6432"};
  install_host_policy(p);
  o = (*d)->observe();
  clear_host_policy();
  CHECK(o.config_error);
  CHECK_THAT(o.error, Catch::Contains("may not be sent to"));
  ::unsetenv("PGB_TEST_PW");
}
