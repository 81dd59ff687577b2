// The pgbouncer TrafficDriver against the harness's real PgBouncer 1.18
// (scripts/harness.sh: transaction pooling, entry PGB_DATABASE in
// PGB_DATABASES_FILE, admin console by password). Clients are psql through
// PgBouncer. Each case leaves the entry pointing at pg1 and not paused.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "closed_port.h"
#include "config/host_policy.h"
#include "drivers/pgbouncer_driver.h"
#include "itest_env.h"
#include "util/deadline.h"

using namespace stackflip;
using itest::env;
using itest::ms_since;
using itest::run;
using stackflip::testing::closed_port;
using Clock = std::chrono::steady_clock;

namespace {

bool have_pgbouncer() { return itest::have_harness() && !env("PGB_PORT").empty(); }

ProviderConfig pgb_provider(const std::string& port = env("PGB_PORT")) {
  ProviderConfig p;
  p.name = "pgb";
  p.type = "pgbouncer";
  p.settings["admin_dsn"] =
      "host=127.0.0.1 port=" + port + " user=" + env("PGB_ADMIN_USER") + " dbname=pgbouncer";
  p.settings["password"] = "${env:PGB_ADMIN_PASSWORD}";
  p.settings["databases_file"] = env("PGB_DATABASES_FILE");
  p.settings["connect_timeout_ms"] = "2000";
  p.settings["timeout_ms"] = "5000";
  p.settings["pause_timeout_ms"] = "1500";
  return p;
}

GroupSpec pgb_group() {
  GroupSpec g = itest::group();
  g.traffic.clear();
  TrafficSpec t;
  t.provider = "pgb";
  t.settings["database"] = env("PGB_DATABASE");
  t.name = "PgBouncer database " + env("PGB_DATABASE");
  g.traffic.push_back(t);
  return g;
}

std::unique_ptr<TrafficDriver> driver(const ProviderConfig& p = pgb_provider()) {
  GroupSpec g = pgb_group();
  return make_pgbouncer_traffic_driver(p, g, g.traffic.at(0));
}

std::string client_dsn() {
  return "host=127.0.0.1 port=" + env("PGB_PORT") + " user=" + env("PG_USER") +
         " dbname=" + env("PGB_DATABASE");
}

// One query through PgBouncer, as a client: its answer or psql's error.
std::string client(const std::string& sql) {
  return run("PGCONNECT_TIMEOUT=5 " + env("PG_BIN") + "/psql -X -qAt '" + client_dsn() + "' -c \"" +
             sql + "\" 2>&1");
}

// A command on the admin console, as an operator would send it.
std::string admin(const std::string& sql) {
  return run("PGPASSWORD=" + env("PGB_ADMIN_PASSWORD") + " " + env("PG_BIN") + "/psql -X -qAt '" +
             env("PGB_ADMIN_DSN") + "' -c \"" + sql + "\" 2>&1");
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A client holding a transaction open through PgBouncer for `seconds`
// (psql in the background); its output in `out`.
void hold_transaction(double seconds, const std::string& out) {
  // The subshell backgrounds psql: system() returns at once, 0 unless no shell ran.
  REQUIRE(std::system(("(PGCONNECT_TIMEOUT=5 " + env("PG_BIN") + "/psql -X -qAt '" + client_dsn() +
                       "' -c 'BEGIN' -c 'SELECT pg_sleep(" + std::to_string(seconds) +
                       ")' -c 'COMMIT' >" + out + " 2>&1 &)")
                          .c_str()) == 0);
  // Until PgBouncer has given it a server connection (SHOW POOLS sv_active).
  const std::string busy = "PGPASSWORD=" + env("PGB_ADMIN_PASSWORD") + " " + env("PG_BIN") +
                           "/psql -X -qA '" + env("PGB_ADMIN_DSN") +
                           "' -c 'SHOW POOLS' 2>/dev/null | awk -F'|' 'NR == 1 {for (i = 1; i <= "
                           "NF; i++) if ($i == \"sv_active\") c = i} $1 == \"" +
                           env("PGB_DATABASE") + "\" {print $c}'";
  for (int i = 0; i < 500; ++i) {
    if (run(busy) == "1") return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("the held transaction never got a server connection");
}

// Back to the harness's start: entry at pg1, not paused.
void restore() {
  auto d = driver();
  CHECK(d->resume().message() == "");
  CHECK(d->switch_to("primary").message() == "");
}

}  // namespace

TEST_CASE("pgbouncer observe finds the entry pointing at the primary") {
  if (!have_pgbouncer()) return;
  auto o = driver()->observe();
  INFO(o.error);
  REQUIRE(o.reachable);
  CHECK(o.target == std::optional<std::string>("primary"));
  CHECK(o.content == env("PG1_HOST") + ":" + env("PG_PORT"));
  REQUIRE(o.records.size() == 1);
  CHECK(o.records[0].stack == std::optional<std::string>("primary"));
  CHECK(o.paused == std::optional<bool>(false));
  CHECK_FALSE(o.ttl);
  CHECK(o.name == "PgBouncer database " + env("PGB_DATABASE"));
}

TEST_CASE("pgbouncer switch rewrites the file, reloads, and clients reach the standby") {
  if (!have_pgbouncer()) return;
  auto d = driver();
  REQUIRE(client("SELECT inet_server_addr()") == env("PG1_HOST"));

  auto t = Clock::now();
  REQUIRE(d->switch_to("standby").message() == "");
  itest::timing("pgbouncer traffic.switch (write + RELOAD + verify)", ms_since(t));
  const std::string file = read(env("PGB_DATABASES_FILE"));
  CHECK_THAT(file, Catch::StartsWith("; Written by stackflip"));
  CHECK_THAT(file,
             Catch::EndsWith("[databases]\n" + env("PGB_DATABASE") + " = host=" + env("PG2_HOST") +
                             " port=" + env("PG_PORT") + " dbname=" + env("PG_DB") + "\n"));
  // Still PgBouncer's to read: the owner and mode of the file it replaced.
  namespace fs = std::filesystem;
  CHECK((fs::status(env("PGB_DATABASES_FILE")).permissions() & fs::perms::others_read) !=
        fs::perms::none);
  CHECK(client("SELECT inet_server_addr()") == env("PG2_HOST"));
  auto o = d->observe();
  CHECK(o.target == std::optional<std::string>("standby"));

  // Idempotent: nothing to write or reload, the file untouched.
  const auto mtime = fs::last_write_time(env("PGB_DATABASES_FILE"));
  CHECK(d->switch_to("standby").message() == "");
  CHECK(fs::last_write_time(env("PGB_DATABASES_FILE")) == mtime);
  restore();
  CHECK(client("SELECT inet_server_addr()") == env("PG1_HOST"));
}

TEST_CASE("pgbouncer pause waits for an open transaction, then holds clients until resume") {
  if (!have_pgbouncer()) return;
  auto d = driver();
  const std::string held = env("HARNESS_DIR") + "/pgb-held.out";
  hold_transaction(0.6, held);
  auto t = Clock::now();
  REQUIRE(d->pause().message() == "");
  const double waited = ms_since(t);
  itest::timing("pgbouncer PAUSE with a 0.6 s transaction open", waited);
  CHECK(waited > 200);  // it waited for the COMMIT
  CHECK(d->observe().paused == std::optional<bool>(true));
  CHECK(d->pause().message() == "");  // pausing a paused database succeeds

  // A client now waits, and gets its answer once resumed: a pause, no error.
  const std::string waiting = env("HARNESS_DIR") + "/pgb-waiting.out";
  REQUIRE(std::system(("(" + env("PG_BIN") + "/psql -X -qAt '" + client_dsn() +
                       "' -c 'SELECT 42' >" + waiting + " 2>&1 &)")
                          .c_str()) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(read(waiting).empty());
  REQUIRE(d->resume().message() == "");
  for (int i = 0; i < 200 && read(waiting).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(read(waiting) == "42\n");
  CHECK(d->observe().paused == std::optional<bool>(false));
  CHECK(d->resume().message() == "");  // resuming a running database succeeds
  CHECK_THAT(read(held), !Catch::Contains("ERROR"));
}

TEST_CASE("pgbouncer pause that outlasts pause_timeout_ms resumes and fails saying why") {
  if (!have_pgbouncer()) return;
  auto d = driver();  // pause_timeout_ms 1500
  const std::string held = env("HARNESS_DIR") + "/pgb-long.out";
  hold_transaction(4, held);
  auto t = Clock::now();
  Status s = d->pause();
  const double took = ms_since(t);
  itest::timing("pgbouncer PAUSE given up (pause_timeout_ms 1500)", took);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().permanent);
  CHECK(s.error().timeout);
  CHECK_THAT(s.message(), Catch::Contains("did not return within"));
  CHECK_THAT(s.message(), Catch::Contains("1 server connection still busy in transaction pooling"));
  CHECK_THAT(s.message(), Catch::Contains("a transaction still running"));
  CHECK_THAT(s.message(), Catch::Contains("RESUME " + env("PGB_DATABASE") + " sent"));
  CHECK(took < 3000);
  // Resumed: clients are served at once, the long transaction goes on.
  CHECK(d->observe().paused == std::optional<bool>(false));
  t = Clock::now();
  CHECK(client("SELECT 7") == "7");
  CHECK(ms_since(t) < 1500);
  for (int i = 0; i < 600 && read(held).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_THAT(read(held), !Catch::Contains("ERROR"));
}

TEST_CASE("pgbouncer pause cut by the operation deadline is undone too") {
  if (!have_pgbouncer()) return;
  auto d = driver();
  hold_transaction(3, env("HARNESS_DIR") + "/pgb-cut.out");
  Status s;
  {
    DeadlineScope scope([t = Clock::now() + std::chrono::milliseconds(400)] { return t; },
                        "the lease ends");
    s = d->pause();
  }
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.message(), Catch::Contains("stopped: the lease ends"));
  CHECK_THAT(s.message(), Catch::Contains("sent: clients go on"));
  CHECK(d->observe().paused == std::optional<bool>(false));
  CHECK(client("SELECT 8") == "8");
}

TEST_CASE("pgbouncer observe sees a hand-edited file and a hand RELOAD; switch corrects both") {
  if (!have_pgbouncer()) return;
  auto d = driver();
  const std::string path = env("PGB_DATABASES_FILE");
  const std::string standby_entry = "[databases]\n" + env("PGB_DATABASE") +
                                    " = host=" + env("PG2_HOST") + " port=" + env("PG_PORT") +
                                    " dbname=" + env("PG_DB") + "\n";
  { std::ofstream(path) << standby_entry; }
  auto o = d->observe();  // written, not loaded: mixed
  CHECK_FALSE(o.target);
  REQUIRE(o.records.size() == 2);
  CHECK(o.records[1].stack == std::optional<std::string>("standby"));
  CHECK_THAT(o.content, Catch::Contains("in databases_file, not loaded"));
  CHECK(admin("RELOAD") == "");
  o = d->observe();  // loaded: the standby
  CHECK(o.target == std::optional<std::string>("standby"));
  REQUIRE(d->switch_to("primary").message() == "");
  CHECK(d->observe().target == std::optional<std::string>("primary"));

  // An entry of no stack, and a DISABLEd one: no target; switch corrects.
  { std::ofstream(path) << "[databases]\n" + env("PGB_DATABASE") + " = host=127.0.0.9\n"; }
  CHECK(admin("RELOAD") == "");
  o = d->observe();
  CHECK_FALSE(o.target);
  REQUIRE(o.records.size() == 1);
  CHECK_FALSE(o.records[0].stack);
  CHECK(admin("DISABLE " + env("PGB_DATABASE")) == "");
  o = d->observe();
  CHECK(o.records.at(0).disabled);
  CHECK_THAT(o.content, Catch::Contains("(disabled)"));
  REQUIRE(d->switch_to("primary").message() == "");
  o = d->observe();
  CHECK(o.target == std::optional<std::string>("primary"));
  CHECK_FALSE(o.records.at(0).disabled);
  CHECK(client("SELECT 1") == "1");

  // Removed by hand: no record, content says so.
  { std::ofstream(path) << "[databases]\n"; }
  CHECK(admin("RELOAD") == "");
  o = d->observe();
  CHECK(o.reachable);
  CHECK_FALSE(o.target);
  CHECK(o.records.empty());
  CHECK_THAT(o.content, Catch::Contains("no database " + env("PGB_DATABASE") + " in PgBouncer"));
  CHECK_FALSE(o.paused);  // nothing to hold: no pause is planned for it
  CHECK(d->pause().message() == "");   // nothing to hold
  CHECK(d->resume().message() == "");  // nothing to let go
  restore();
}

TEST_CASE("pgbouncer switch refuses a file the host does not grant, and a link") {
  if (!have_pgbouncer()) return;
  auto d = driver();
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PGB_ADMIN_PASSWORD}"] = {"postgres://127.0.0.1:" + env("PGB_PORT")};
  install_host_policy(p);
  Status s = d->switch_to("standby");
  clear_host_policy();
  CHECK(s.error().config);
  CHECK_THAT(s.message(), Catch::Contains("list it under `pgbouncer_files:`"));
  CHECK(d->observe().target == std::optional<std::string>("primary"));

  // A link planted at the name is never followed or replaced.
  const std::string path = env("PGB_DATABASES_FILE");
  const std::string target = env("HARNESS_DIR") + "/pgb-link-target";
  { std::ofstream(target) << "untouched\n"; }
  // (The file is moved aside and back: it keeps PgBouncer's owner and mode.)
  std::filesystem::rename(path, path + ".saved");
  std::filesystem::create_symlink(target, path);
  s = d->switch_to("standby");
  CHECK_THAT(s.message(), Catch::Contains("symbolic link: refused"));
  CHECK(read(target) == "untouched\n");
  std::filesystem::remove(path);
  std::filesystem::rename(path + ".saved", path);
  restore();
}

TEST_CASE("pgbouncer unreachable and a wrong password are states, not crashes") {
  if (!have_pgbouncer()) return;
  auto o = driver(pgb_provider(std::to_string(closed_port())))->observe();
  CHECK_FALSE(o.reachable);
  CHECK_FALSE(o.config_error);
  CHECK_THAT(o.error, Catch::Contains("Connection refused"));
  CHECK_FALSE(o.paused);

  ProviderConfig wrong = pgb_provider();
  ::setenv("PGB_WRONG_PASSWORD", "not-the-password", 1);
  wrong.settings["password"] = "${env:PGB_WRONG_PASSWORD}";
  o = driver(wrong)->observe();
  CHECK_FALSE(o.reachable);
  CHECK(o.config_error);
  CHECK_THAT(o.error, Catch::Contains("authentication failed"));
  CHECK_THAT(o.error, !Catch::Contains("not-the-password"));
  ::unsetenv("PGB_WRONG_PASSWORD");
}

TEST_CASE("pgbouncer driver reopens its admin connection after PgBouncer restarts") {
  if (!have_pgbouncer()) return;
  auto d = driver();
  REQUIRE(d->observe().reachable);  // the kept admin connection is open
  const std::string harness = std::string(STACKFLIP_SOURCE_DIR) + "/scripts/harness.sh ";
  REQUIRE(std::system((harness + "stop-pgb " + env("HARNESS_DIR")).c_str()) == 0);
  auto o = d->observe();
  CHECK_FALSE(o.reachable);
  CHECK_FALSE(o.paused);
  REQUIRE(std::system((harness + "start-pgb " + env("HARNESS_DIR")).c_str()) == 0);
  o = d->observe();
  INFO(o.error);
  CHECK(o.target == std::optional<std::string>("primary"));

  // And when the kept connection dies under it: the next call reopens once.
  REQUIRE(d->observe().reachable);
  REQUIRE(std::system((harness + "stop-pgb " + env("HARNESS_DIR") + " && " + harness +
                       "start-pgb " + env("HARNESS_DIR"))
                          .c_str()) == 0);
  o = d->observe();
  INFO(o.error);
  CHECK(o.target == std::optional<std::string>("primary"));
}
