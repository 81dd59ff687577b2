#include "gitops/state_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "temp_dir.h"

using namespace stackflip;

namespace {

struct TempDir : stackflip::testing::TempDir {
  TempDir() : stackflip::testing::TempDir("stackflip-journal") {}
};

Action action(ActionKind kind, const std::string& stack, const std::string& group = "shop") {
  Action a;
  a.group = group;
  a.kind = kind;
  a.stack = stack;
  if (kind == ActionKind::replication_wait) a.source = "primary";
  return a;
}

std::unique_ptr<StateStore> open_ok(const std::string& path) {
  auto j = StateStore::open(path);
  INFO((j.ok() ? std::string() : j.error().message));
  REQUIRE(j.ok());
  return std::move(*j);
}

RunRecord run(const std::string& result, const std::string& commit) {
  RunRecord r;
  r.started_at = "2026-11-26T18:00:00.000Z";
  r.finished_at = "2026-11-26T18:00:00.250Z";
  r.commit = commit;
  r.ref = "main";
  r.desired_digest = "d";
  r.plan_digest = "p";
  r.result = result;
  r.duration_ms = 250;
  r.actions = 7;
  return r;
}

}  // namespace

TEST_CASE("the journal shows each action's start and end, newest first") {
  TempDir dir;
  auto j = open_ok(dir.file("state.db"));
  auto a = j->begin(action(ActionKind::maintenance_on, "primary"), "3f1a9c0");
  REQUIRE(a.ok());
  REQUIRE(j->finish(*a, "ok", "", 12).ok());
  auto b = j->begin(action(ActionKind::replication_wait, "standby"), "3f1a9c0");
  REQUIRE(b.ok());
  REQUIRE(j->finish(*b, "timeout", "standby at 0/3000000, wanted 0/3000060", 5000).ok());

  auto h = j->history();
  REQUIRE(h.ok());
  REQUIRE(h->size() == 4);
  const auto& e = *h;
  CHECK(e[0].phase == "finished");
  CHECK(e[0].kind == "replication.wait");
  CHECK(e[0].source == "primary");
  CHECK(e[0].result == "timeout");
  CHECK(e[0].duration_ms == 5000);
  CHECK(e[0].start_id == *b);
  CHECK(e[1].phase == "started");
  CHECK(e[1].id == *b);
  CHECK_FALSE(e[1].open);
  CHECK(e[3].kind == "maintenance.on");
  CHECK(e[3].origin == "3f1a9c0");
  CHECK(e[3].time.size() == 24);  // 2026-11-26T18:00:00.123Z
  CHECK(e[3].time.back() == 'Z');

  CHECK(j->history(1)->size() == 1);
  CHECK(j->finish(*a, "ok", "", 1).message().find("already finished") != std::string::npos);
  CHECK(j->finish(9999, "ok", "", 1).message().find("no action with id 9999") != std::string::npos);
  CHECK_FALSE(j->finish(*b, "done", "", 1).ok());
}

TEST_CASE("an action begun but never finished stays visible as such after a restart") {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    auto j = open_ok(path);
    REQUIRE(j->begin(action(ActionKind::database_promote, "standby"), "config:abc").ok());
    // The process dies here: no finish().
  }
  auto j = open_ok(path);
  auto h = j->history();
  REQUIRE(h.ok());
  REQUIRE(h->size() == 1);
  CHECK((*h)[0].open);
  CHECK((*h)[0].origin == "config:abc");
  std::string table = render_history(*h);
  CHECK(table.find("database.promote") != std::string::npos);
  CHECK(table.find("started, no end recorded") != std::string::npos);
  CHECK(table.rfind("ID  ", 0) == 0);
}

TEST_CASE("history can be limited to one group") {
  TempDir dir;
  auto j = open_ok(dir.file("state.db"));
  REQUIRE(j->begin(action(ActionKind::maintenance_on, "a", "shop"), "c1").ok());
  REQUIRE(j->begin(action(ActionKind::maintenance_on, "b", "blog"), "c1").ok());
  auto h = j->history(100, "blog");
  REQUIRE(h.ok());
  REQUIRE(h->size() == 1);
  CHECK((*h)[0].stack == "b");
  CHECK(render_history({}) == "No actions journaled yet.\n");
}

TEST_CASE("runs, the last good run and key/value state persist across reopening") {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    auto j = open_ok(path);
    auto none = j->last_good_run();
    REQUIRE(none.ok());
    CHECK_FALSE(none->has_value());
    REQUIRE(j->record_run(run("applied", "c1")).ok());
    REQUIRE(j->record_run(run("no-changes", "c2")).ok());
    REQUIRE(j->record_run(run("failed", "c3")).ok());
    REQUIRE(j->record_run(run("blocked", "c4")).ok());
    CHECK_FALSE(j->record_run(run("exploded", "c5")).ok());
    REQUIRE(j->put("last_commit", "c4").ok());
    REQUIRE(j->put("last_commit", "c5").ok());
  }
  auto j = open_ok(path);
  auto rs = j->runs(3);
  REQUIRE(rs.ok());
  REQUIRE(rs->size() == 3);
  CHECK((*rs)[0].commit == "c4");
  CHECK((*rs)[2].commit == "c2");
  CHECK((*rs)[0].actions == 7);
  CHECK((*rs)[0].duration_ms == 250);
  auto good = j->last_good_run();
  REQUIRE(good.ok());
  REQUIRE(good->has_value());
  CHECK((*good)->commit == "c2");
  CHECK((*good)->result == "no-changes");
  CHECK(j->get("last_commit")->value() == "c5");
  CHECK_FALSE(j->get("missing")->has_value());
}

TEST_CASE("two journals on one file append concurrently without lock errors") {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto j1 = open_ok(path);
  auto j2 = open_ok(path);
  constexpr int kPerThread = 100;
  auto work = [](StateStore* j, const std::string& group, std::vector<std::string>* errors) {
    for (int i = 0; i < kPerThread; ++i) {
      auto id = j->begin(action(ActionKind::maintenance_on, "s" + std::to_string(i), group), "c");
      if (!id.ok()) {
        errors->push_back(id.error().message);
        continue;
      }
      if (auto s = j->finish(*id, "ok", "", i); !s.ok()) errors->push_back(s.message());
      if (auto s = j->put("last_" + group, std::to_string(i)); !s.ok())
        errors->push_back(s.message());
    }
  };
  std::vector<std::string> e1, e2;
  std::thread t1(work, j1.get(), "shop", &e1);
  std::thread t2(work, j2.get(), "blog", &e2);
  t1.join();
  t2.join();
  CHECK(e1.empty());
  CHECK(e2.empty());
  auto h = j1->history(1000);
  REQUIRE(h.ok());
  CHECK(h->size() == 4 * kPerThread);
  for (const auto& e : *h) CHECK_FALSE(e.open);
}

TEST_CASE("a journal in a missing directory is a clear error") {
  TempDir dir;
  std::string path = dir.file("no/such/dir/state.db");
  auto j = StateStore::open(path);
  REQUIRE_FALSE(j.ok());
  CHECK(j.error().message.find(path) != std::string::npos);
  CHECK(j.error().message.find("does not exist") != std::string::npos);
}

TEST_CASE("a file that is not a journal is refused with SQLite's message") {
  TempDir dir;
  std::string path = dir.file("not-a-db");
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("this is not an sqlite database, just some text that is long enough.........\n", f);
  std::fclose(f);
  auto j = StateStore::open(path);
  REQUIRE_FALSE(j.ok());
  CHECK(j.error().message.find(path) != std::string::npos);
  CHECK(j.error().message.find("not a database") != std::string::npos);
}

namespace {
// Read-only for this process: chattr +i as root (a mode does not stop root),
// chmod 0444 otherwise. False when neither is possible here.
bool make_read_only(const std::string& path) {
  if (::geteuid() != 0) return ::chmod(path.c_str(), 0444) == 0;
  std::string cmd = "chattr +i '" + path + "' 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}
void undo_read_only(const std::string& path) {
  if (::geteuid() == 0) (void)!std::system(("chattr -i '" + path + "' 2>/dev/null").c_str());
  ::chmod(path.c_str(), 0600);
}
}  // namespace

TEST_CASE("issue 10: a read-only state store is named as such, not as a non-SQLite file") {
  TempDir dir;
  std::string path = dir.file("state.db");
  open_ok(path)->put("k", "v");
  if (!make_read_only(path)) {
    WARN("cannot make a file read-only here (no chattr); skipped");
    return;
  }
  auto j = StateStore::open(path);
  undo_read_only(path);
  REQUIRE_FALSE(j.ok());
  INFO(j.error().message);
  CHECK(j.error().message.find(path) != std::string::npos);
  CHECK(j.error().message.find("read-only") != std::string::npos);
  CHECK(j.error().message.find("is it an SQLite database") == std::string::npos);
}

TEST_CASE("issue 10: a store whose writes fail says read-only on each write, reads still work") {
  TempDir dir;
  auto j = open_ok(dir.file("state.db"));
  REQUIRE(j->put("k", "v").ok());
  REQUIRE(j->refuse_writes_for_testing(true).ok());
  Status s = j->put("k", "w");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("read-only") != std::string::npos);
  CHECK_FALSE(j->record_run(run("applied", "abc")).ok());
  CHECK(**j->get("k") == "v");
}

TEST_CASE("issue 10: the state store is 0600 whatever the umask, an older 0644 one is tightened") {
  TempDir dir;
  mode_t old = ::umask(022);
  std::string fresh = dir.file("fresh.db"), older = dir.file("older.db");
  auto j = open_ok(fresh);  // kept open: its -wal and -shm files exist
  REQUIRE(j->put("k", "v").ok());
  FILE* f = std::fopen(older.c_str(), "w");
  std::fclose(f);
  ::chmod(older.c_str(), 0644);
  open_ok(older)->put("k", "v");
  ::umask(old);
  for (const std::string& p : {fresh, fresh + "-wal", fresh + "-shm", older}) {
    struct stat sb;
    INFO(p);
    REQUIRE(::stat(p.c_str(), &sb) == 0);
    CHECK((sb.st_mode & 0777) == 0600);
  }
}

TEST_CASE("issue 13: a version 1 store is migrated, its runs kept, and a standby pass recorded") {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    // The runs table as version 1 made it, with one run.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const char* v1 = R"sql(
CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
  commit_sha TEXT NOT NULL, ref TEXT NOT NULL, desired_digest TEXT NOT NULL,
  plan_digest TEXT NOT NULL,
  result TEXT NOT NULL CHECK (result IN ('applied', 'no-changes', 'failed', 'blocked', 'invalid')),
  error TEXT NOT NULL, duration_ms INTEGER NOT NULL, actions INTEGER NOT NULL);
INSERT INTO runs VALUES (41, 'a', 'b', 'c1', 'main', 'd', 'p', 'applied', '', 5, 1);
PRAGMA user_version = 1;
)sql";
    REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO runs VALUES (42, 'a', 'b', 'c1', 'main', 'd', 'p', "
                       "'standby', '', 5, 1)",
                       nullptr, nullptr, nullptr) != SQLITE_OK);  // what version 1 refused
    sqlite3_close(db);
  }
  auto j = open_ok(path);
  REQUIRE(j->record_run(run("standby", "c2")).ok());
  auto rs = j->runs(5);
  REQUIRE(rs.ok());
  REQUIRE(rs->size() == 2);
  CHECK((*rs)[0].result == "standby");
  CHECK((*rs)[1].commit == "c1");
  CHECK((*rs)[1].result == "applied");
  CHECK_FALSE(j->record_run(run("exploded", "c3")).ok());
}
