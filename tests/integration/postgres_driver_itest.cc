// The postgres StackDriver against the harness's two real PostgreSQL 15
// clusters. A separate libpq session plays the application.
#include <postgresql/libpq-fe.h>

#include <catch2/catch.hpp>
#include <memory>
#include <thread>

#include "core/provider_stats.h"
#include "drivers/postgres_driver.h"
#include "drivers/postgres_session.h"
#include "itest_env.h"
#include "util/deadline.h"

using namespace stackflip;
using itest::ms_since;
using SteadyClock = std::chrono::steady_clock;

namespace {

struct AppConn {
  explicit AppConn(const std::string& host) : c(PQconnectdb(itest::dsn(host).c_str())) {}
  ~AppConn() { PQfinish(c); }
  bool ok() const { return PQstatus(c) == CONNECTION_OK; }
  // Runs sql; returns "" on success, else the SQLSTATE (or "connection").
  std::string run(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    std::string state;
    auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      state = code ? code : "connection";
    }
    PQclear(r);
    return state;
  }
  // The first column of the first row of a query, or "" on error.
  std::string value(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    std::string v =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    return v;
  }
  PGconn* c;
};

struct Pair {
  GroupSpec group = itest::group();
  std::unique_ptr<StackDriver> primary =
      make_postgres_stack_driver(itest::pg_provider(), group, "primary");
  std::unique_ptr<StackDriver> standby =
      make_postgres_stack_driver(itest::pg_provider(), group, "standby");
};

// Polls until `replica` has replayed everything `source` has written.
void wait_caught_up(StackDriver& source, StackDriver& replica) {
  auto src = source.observe();
  REQUIRE(src.reachable);
  REQUIRE(src.database->lsn);
  auto deadline = SteadyClock::now() + std::chrono::seconds(10);
  for (auto step = std::chrono::milliseconds(1);; step = std::min(step * 2, decltype(step)(50))) {
    auto r = replica.observe();
    REQUIRE(r.reachable);
    if (r.database->lsn && *r.database->lsn >= *src.database->lsn) return;
    REQUIRE(SteadyClock::now() < deadline);
    std::this_thread::sleep_for(step);
  }
}

// Planned switchover from `from` to `to` (DESIGN.md steps 1-5 and 7),
// with the step timings printed.
void switchover(StackDriver& from, StackDriver& to, const StackSpec& to_spec,
                const std::string& label) {
  auto t = SteadyClock::now();
  REQUIRE(from.set_maintenance(true).message() == "");
  itest::timing((label + " maintenance.on").c_str(), ms_since(t));
  auto t_total = SteadyClock::now();
  wait_caught_up(from, to);
  REQUIRE(to.stop_replication().message() == "");
  auto stopped = to.observe();
  CHECK(stopped.database->role == Role::replica);
  CHECK_FALSE(stopped.database->upstream);  // replication stopped
  t = SteadyClock::now();
  REQUIRE(to.promote().message() == "");
  itest::timing((label + " database.promote (until writable)").c_str(), ms_since(t));
  REQUIRE(to.set_maintenance(false).message() == "");
  itest::timing((label + " wait+stop+promote+maintenance.off").c_str(), ms_since(t_total));
  t = SteadyClock::now();
  REQUIRE(from.start_replication(to_spec).message() == "");
  itest::timing((label + " replication.start (restart-as-standby)").c_str(), ms_since(t));
}

}  // namespace

TEST_CASE("postgres observe reports the primary and the replica streaming from it") {
  if (!itest::have_harness()) return;
  Pair p;
  auto a = p.primary->observe();
  INFO(a.error);
  REQUIRE(a.reachable);
  REQUIRE(a.database);
  CHECK(a.database->role == Role::primary);
  CHECK_FALSE(a.database->upstream);
  CHECK(a.database->lsn.value_or(0) > 0);
  CHECK(a.database->timeline.value_or(0) >= 1);
  CHECK(a.maintenance == false);

  auto b = p.standby->observe();
  INFO(b.error);
  REQUIRE(b.reachable);
  REQUIRE(b.database);
  CHECK(b.database->role == Role::replica);
  CHECK(b.database->upstream == std::optional<std::string>("primary"));
  CHECK(b.database->lsn.value_or(0) > 0);
  CHECK(b.database->timeline == a.database->timeline);
}

TEST_CASE("postgres observe of a server that is not there is unreachable, not a failure") {
  if (!itest::have_harness()) return;
  GroupSpec g = itest::group();
  g.stacks["primary"].settings["dsn"] = "host=127.0.0.1 port=1 user=nobody dbname=x";
  auto d = make_postgres_stack_driver(itest::pg_provider(), g, "primary");
  auto t = SteadyClock::now();
  auto o = d->observe();
  CHECK_FALSE(o.reachable);
  CHECK(o.error.find("127.0.0.1") != std::string::npos);
  CHECK(ms_since(t) < 3000);
  CHECK_FALSE(d->set_maintenance(true).ok());
}

TEST_CASE("issue 12: a login the server rejects is a configuration error, not unreachable") {
  if (!itest::have_harness()) return;
  GroupSpec g = itest::group();
  // The harness trusts loopback, so an unknown role is the rejection it can
  // show (SQLSTATE 28000, as a wrong password is 28P01).
  g.stacks["primary"].settings["dsn"] =
      "host=" + itest::env("PG1_HOST") + " port=" + itest::env("PG_PORT") +
      " user=stackflip_no_such_role" + " dbname=" + itest::env("PG_DB");
  auto d = make_postgres_stack_driver(itest::pg_provider(), g, "primary");
  auto o = d->observe();
  CHECK_FALSE(o.reachable);
  CHECK(o.error.find("authentication failed") != std::string::npos);
  Status s = d->set_maintenance(true);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().config);
  CHECK(s.error().permanent);
  CHECK_FALSE(s.error().timeout);
  CHECK(s.message().find("stackflip_no_such_role") != std::string::npos);
  // A server that is not there stays a plain (retryable) error.
  g.stacks["primary"].settings["dsn"] = "host=127.0.0.1 port=1 user=nobody dbname=x";
  auto gone = make_postgres_stack_driver(itest::pg_provider(), g, "primary");
  Status u = gone->set_maintenance(true);
  REQUIRE_FALSE(u.ok());
  CHECK_FALSE(u.error().config);
}

TEST_CASE("maintenance on refuses writes on the primary until it is turned off") {
  if (!itest::have_harness()) return;
  Pair p;
  const std::string host = itest::env("PG1_HOST");
  {
    AppConn app(host);
    REQUIRE(app.ok());
    REQUIRE(app.run("CREATE TABLE IF NOT EXISTS itest_writes (id serial PRIMARY KEY, v text)") ==
            "");
  }
  AppConn before(host);  // a session that was writing before the fence
  REQUIRE(before.run("INSERT INTO itest_writes (v) VALUES ('before')") == "");

  auto t = SteadyClock::now();
  REQUIRE(p.primary->set_maintenance(true).message() == "");
  itest::timing("maintenance.on (primary, incl. verify + terminate)", ms_since(t));
  REQUIRE(p.primary->set_maintenance(true).ok());  // idempotent
  CHECK(p.primary->observe().maintenance == true);

  CHECK(before.run("INSERT INTO itest_writes (v) VALUES ('old session')") != "");  // terminated
  {
    AppConn app(host);
    REQUIRE(app.ok());
    CHECK(app.run("INSERT INTO itest_writes (v) VALUES ('fenced')") == "25006");
    // A fenced server starts no autovacuum (WAL after a fork would need pg_rewind).
    CHECK(app.value("SHOW autovacuum") == "off");
  }

  REQUIRE(p.primary->set_maintenance(false).message() == "");
  CHECK(p.primary->observe().maintenance == false);
  AppConn app(host);
  CHECK(app.run("INSERT INTO itest_writes (v) VALUES ('after')") == "");
  CHECK(app.value("SHOW autovacuum") == "on");
}

TEST_CASE("maintenance on works on a replica") {
  if (!itest::have_harness()) return;
  Pair p;
  auto was = p.standby->observe().maintenance;
  REQUIRE(p.standby->set_maintenance(true).message() == "");
  auto o = p.standby->observe();
  CHECK(o.maintenance == true);
  CHECK(o.database->role == Role::replica);
  CHECK(o.database->upstream == std::optional<std::string>("primary"));
  REQUIRE(p.standby->set_maintenance(was.value_or(false)).message() == "");
}

TEST_CASE("planned switchover promotes the replica and re-attaches the old primary, and back") {
  if (!itest::have_harness()) return;
  Pair p;
  const std::string host1 = itest::env("PG1_HOST"), host2 = itest::env("PG2_HOST");
  {
    AppConn app(host1);
    REQUIRE(app.run("CREATE TABLE IF NOT EXISTS itest_switch (v text)") == "");
    REQUIRE(app.run("INSERT INTO itest_switch VALUES ('on primary')") == "");
  }

  switchover(*p.primary, *p.standby, p.group.stacks.at("standby"), "primary->standby");
  auto a = p.primary->observe();
  auto b = p.standby->observe();
  INFO(a.error << " / " << b.error);
  CHECK(b.database->role == Role::primary);
  CHECK(b.maintenance == false);
  CHECK(b.database->timeline.value_or(0) > 1);
  CHECK(a.database->role == Role::replica);
  CHECK(a.database->upstream == std::optional<std::string>("standby"));
  {
    AppConn app(host2);
    CHECK(app.run("INSERT INTO itest_switch VALUES ('on standby')") == "");
  }
  // Idempotent on the new roles.
  CHECK(p.standby->promote().ok());
  CHECK(p.standby->stop_replication().ok());
  CHECK(p.primary->start_replication(p.group.stacks.at("standby")).ok());

  // Back, so the other test cases find the harness as it started.
  switchover(*p.standby, *p.primary, p.group.stacks.at("primary"), "standby->primary");
  a = p.primary->observe();
  b = p.standby->observe();
  INFO(a.error << " / " << b.error);
  CHECK(a.database->role == Role::primary);
  CHECK(a.maintenance == false);
  CHECK(b.database->role == Role::replica);
  CHECK(b.database->upstream == std::optional<std::string>("primary"));
  REQUIRE(p.standby->set_maintenance(false).ok());
  AppConn app(host1);
  CHECK(app.run("INSERT INTO itest_switch VALUES ('back on primary')") == "");
}

TEST_CASE("issue 11: a postgres stack driver keeps one session to its server across passes") {
  if (!itest::have_harness()) return;
  const std::string server = "127.0.0.1:" + itest::env("PG_PORT");
  auto open = [&] {
    auto s = provider_stats().postgres_sessions;
    return s.count(server) ? s.at(server) : 0;
  };
  const int64_t before = open();
  {
    Pair p;
    for (int pass = 0; pass < 5; ++pass) REQUIRE(p.primary->observe().reachable);
    CHECK(open() == before + 1);
  }
  CHECK(open() == before);  // closed with the driver
}

TEST_CASE("issue 13: a statement still running at the operation deadline is cancelled") {
  if (!itest::have_harness()) return;
  const std::string host = itest::env("PG1_HOST");
  auto c = pg_connect({itest::dsn(host), ""}, {2000, 60000}, "primary", "itest");
  REQUIRE(c.ok());
  auto start = SteadyClock::now();
  Result<PgRows> r = Err("not run");
  {
    DeadlineScope scope([start] { return start + std::chrono::milliseconds(300); },
                        "the lease could expire");
    r = c->exec("SELECT pg_sleep(30)", "itest");
  }
  const double took = ms_since(start);
  itest::timing("statement cancelled at the deadline (ms from start, deadline 300)", took);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().timeout);
  CHECK_THAT(r.error().message, Catch::Contains("stopped: the lease could expire"));
  CHECK(took < 10000);  // not the statement's 30 s nor its 60 s timeout
  // Cancelled, not dropped: the session still works.
  CHECK(c->alive());
  auto one = c->exec("SELECT 1", "itest");
  REQUIRE(one.ok());
  // After the deadline nothing is sent, and no connection is made.
  DeadlineScope passed([start] { return start; }, "passed");
  auto after = c->exec("SELECT 1", "itest");
  REQUIRE_FALSE(after.ok());
  CHECK_THAT(after.error().message, Catch::Contains("not sent: stopped: passed"));
  auto c2 = pg_connect({itest::dsn(host), ""}, {2000, 60000}, "primary", "itest");
  REQUIRE_FALSE(c2.ok());
  CHECK_THAT(c2.error().message, Catch::Contains("not connected: stopped: passed"));
}
