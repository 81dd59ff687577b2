#include "gitops/state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <iterator>

#include "util/redact.h"

namespace stackflip {

namespace {

constexpr int kSchemaVersion = 2;

// Migrations, applied in order: kMigrations[i] takes user_version i to i+1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE actions (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  time        TEXT NOT NULL,
  grp         TEXT NOT NULL,
  kind        TEXT NOT NULL,
  stack       TEXT NOT NULL,
  source      TEXT NOT NULL DEFAULT '',
  origin      TEXT NOT NULL,
  phase       TEXT NOT NULL CHECK (phase IN ('started', 'finished')),
  result      TEXT NOT NULL DEFAULT '',
  error       TEXT NOT NULL DEFAULT '',
  duration_ms INTEGER NOT NULL DEFAULT 0,
  start_id    INTEGER REFERENCES actions(id)
);
CREATE UNIQUE INDEX actions_one_end ON actions(start_id) WHERE start_id IS NOT NULL;
CREATE INDEX actions_by_group ON actions(grp, id);
CREATE TABLE runs (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at     TEXT NOT NULL,
  finished_at    TEXT NOT NULL,
  commit_sha     TEXT NOT NULL,
  ref            TEXT NOT NULL,
  desired_digest TEXT NOT NULL,
  plan_digest    TEXT NOT NULL,
  result         TEXT NOT NULL
                 CHECK (result IN ('applied', 'no-changes', 'failed', 'blocked', 'invalid')),
  error          TEXT NOT NULL,
  duration_ms    INTEGER NOT NULL,
  actions        INTEGER NOT NULL
);
CREATE TABLE kv (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
)sql",
    // 2 (issue 13): a pass of an instance that leads none of the pending
    // work is "standby". SQLite cannot change a CHECK: the table is rebuilt.
    R"sql(
CREATE TABLE runs_v2 (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at     TEXT NOT NULL,
  finished_at    TEXT NOT NULL,
  commit_sha     TEXT NOT NULL,
  ref            TEXT NOT NULL,
  desired_digest TEXT NOT NULL,
  plan_digest    TEXT NOT NULL,
  result         TEXT NOT NULL
                 CHECK (result IN ('applied', 'no-changes', 'failed', 'blocked', 'invalid',
                                   'standby')),
  error          TEXT NOT NULL,
  duration_ms    INTEGER NOT NULL,
  actions        INTEGER NOT NULL
);
INSERT INTO runs_v2 SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

std::string now_rfc3339_ms() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

// A prepared statement, finalized on scope exit. Binds are 1-based.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &st_, nullptr); }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool prepared() const { return rc_ == SQLITE_OK; }
  // Text reaches the store only redacted (redact.h): errors quoted from
  // servers, snapshots, run records.
  Stmt& bind(int i, const std::string& raw) {
    const std::string v = redact(raw);
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  int step() { return sqlite3_step(st_); }
  std::string text(int col) const {
    const unsigned char* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(st_, col)))
             : std::string();
  }
  int64_t integer(int col) const { return sqlite3_column_int64(st_, col); }

 private:
  sqlite3_stmt* st_ = nullptr;
  int rc_ = SQLITE_OK;
};

// What the operator can check, by SQLite's primary result code.
std::string hint(int code) {
  switch (code & 0xff) {
    case SQLITE_READONLY:
      return " (the state store is read-only: stackflip must be able to write the file and its "
             "folder; check their owner and mode, chattr, and that the file system is mounted "
             "read-write)";
    case SQLITE_FULL:
      return " (the disk holding the state store is full)";
    case SQLITE_IOERR:
      return " (the disk refused a write or read: is it full, over a quota or failing?)";
    case SQLITE_NOTADB:
      return " (is it an SQLite database?)";
    default:
      return "";
  }
}

Error db_error(const std::string& path, sqlite3* db, const std::string& what) {
  if (!db) return Err("journal " + path + ": " + what + ": out of memory");
  return Err("journal " + path + ": " + what + ": " + sqlite3_errmsg(db) +
             hint(sqlite3_extended_errcode(db)));
}

Status exec(const std::string& path, sqlite3* db, const char* sql, const std::string& what) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return Err("journal " + path + ": " + what + ": " + m + hint(sqlite3_extended_errcode(db)));
  }
  return Status::Ok();
}

Result<int64_t> user_version(const std::string& path, sqlite3* db) {
  Stmt st(db, "PRAGMA user_version");
  if (!st.prepared() || st.step() != SQLITE_ROW)
    return db_error(path, db, "reading the schema version");
  return st.integer(0);
}

// Brings the schema to kSchemaVersion inside one write transaction, so two
// processes creating the same file at once do not both run the migrations.
Status migrate(const std::string& path, sqlite3* db) {
  auto v = user_version(path, db);
  if (!v.ok()) return v.status();
  if (*v == kSchemaVersion) return Status::Ok();
  if (*v > kSchemaVersion)
    return Err("journal " + path + ": schema version " + std::to_string(*v) +
               " is newer than this stackflip understands (" + std::to_string(kSchemaVersion) +
               "); upgrade stackflip");
  if (auto s = exec(path, db, "BEGIN IMMEDIATE", "starting the schema migration"); !s.ok())
    return s;
  v = user_version(path, db);  // another process may have migrated meanwhile
  Status result;
  if (!v.ok()) {
    result = v.status();
  } else {
    for (int64_t i = *v; i < kSchemaVersion && result.ok(); ++i) {
      result = exec(path, db, kMigrations[i],
                    "migrating the schema to version " + std::to_string(i + 1));
      if (result.ok()) {
        // PRAGMA takes no bound parameters; the value is our own constant.
        std::string pragma = "PRAGMA user_version = " + std::to_string(i + 1);
        result = exec(path, db, pragma.c_str(), "recording the schema version");
      }
    }
  }
  if (!result.ok()) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return result;
  }
  return exec(path, db, "COMMIT", "committing the schema migration");
}

bool one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return v == a; });
}

RunRecord read_run(const Stmt& st) {
  RunRecord r;
  r.started_at = st.text(0);
  r.finished_at = st.text(1);
  r.commit = st.text(2);
  r.ref = st.text(3);
  r.desired_digest = st.text(4);
  r.plan_digest = st.text(5);
  r.result = st.text(6);
  r.error = st.text(7);
  r.duration_ms = st.integer(8);
  r.actions = static_cast<int>(st.integer(9));
  return r;
}

constexpr const char* kRunColumns =
    "started_at, finished_at, commit_sha, ref, desired_digest, plan_digest, result, error, "
    "duration_ms, actions";

}  // namespace

Result<std::unique_ptr<StateStore>> StateStore::open(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::is_directory(parent, ec))
    return Err("journal " + path + ": directory " + parent.string() +
               " does not exist (create it, or choose another --state path)");
  // Created 0600 by us rather than by SQLite (0644 less the umask); SQLite
  // gives the -wal and -shm files the database file's mode.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
  } else if (struct stat sb;
             ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 077)) {
    (void)::chmod(path.c_str(), sb.st_mode & 0700);
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = db_error(path, db, "cannot open");
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<StateStore> j(new StateStore(path, db));
  sqlite3_busy_timeout(db, 5000);
  sqlite3_extended_result_codes(db, 1);
  // SQLite silently opens a file it may not write read-only; say so now
  // rather than fail on the first write with a misleading message.
  if (sqlite3_db_readonly(db, "main") == 1)
    return Err("journal " + path + ": cannot open for writing" + hint(SQLITE_READONLY));
  {
    Stmt wal(db, "PRAGMA journal_mode = WAL");
    if (!wal.prepared() || wal.step() != SQLITE_ROW)
      return db_error(path, db, "switching to WAL mode");
  }
  if (auto s = exec(path, db, "PRAGMA synchronous = FULL", "setting synchronous"); !s.ok())
    return s.error();
  if (auto s = migrate(path, db); !s.ok()) return s.error();
  return j;
}

StateStore::~StateStore() { sqlite3_close(db_); }

Error StateStore::sql_error(const std::string& what) const { return db_error(path_, db_, what); }

Result<int64_t> StateStore::begin(const Action& a, const std::string& origin) {
  std::lock_guard lock(mu_);
  Stmt st(db_,
          "INSERT INTO actions (time, grp, kind, stack, source, origin, phase) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'started')");
  if (!st.prepared()) return sql_error("preparing the start of an action");
  st.bind(1, now_rfc3339_ms()).bind(2, a.group).bind(3, std::string(to_string(a.kind)));
  st.bind(4, a.stack).bind(5, a.source).bind(6, origin);
  if (st.step() != SQLITE_DONE)
    return sql_error(std::string("recording the start of ") + to_string(a.kind) + " " + a.stack);
  return sqlite3_last_insert_rowid(db_);
}

Status StateStore::finish(int64_t id, const std::string& result, const std::string& error,
                          int64_t duration_ms) {
  if (!one_of(result, {"ok", "failed", "timeout", "interrupted"}))
    return Err("journal " + path_ + ": result \"" + result +
               "\" is not one of ok, failed, timeout, interrupted");
  std::lock_guard lock(mu_);
  {
    Stmt st(db_,
            "SELECT phase, EXISTS (SELECT 1 FROM actions WHERE start_id = ?1) "
            "FROM actions WHERE id = ?1");
    if (!st.prepared()) return sql_error("preparing the end of an action");
    st.bind(1, id);
    int rc = st.step();
    if (rc == SQLITE_DONE)
      return Err("journal " + path_ + ": no action with id " + std::to_string(id));
    if (rc != SQLITE_ROW) return sql_error("looking up action " + std::to_string(id));
    if (st.text(0) != "started")
      return Err("journal " + path_ + ": entry " + std::to_string(id) + " is not a started action");
    if (st.integer(1))
      return Err("journal " + path_ + ": action " + std::to_string(id) + " is already finished");
  }
  // The end row is committed without an fsync of its own (WAL,
  // synchronous NORMAL): the write-ahead log is appended in order, so the
  // next fsync'd commit (the next action's begin, the run's record) makes
  // it durable with everything before it. A process crash loses nothing
  // committed; a power loss at worst loses this end row, and the action
  // shows "started, no end recorded", as after any crash in the middle of a
  // step. The begin row, which safety invariant 5 needs before the action,
  // keeps its fsync. Measured in issue 15: 2 fsyncs a step before DNS moved.
  if (Status s = exec(path_, db_, "PRAGMA synchronous = NORMAL", "relaxing synchronous"); !s.ok())
    return s;
  struct Restore {
    const std::string& path;
    sqlite3* db;
    ~Restore() { (void)exec(path, db, "PRAGMA synchronous = FULL", "restoring synchronous"); }
  } restore{path_, db_};
  // Copies what the action was from its started row, so history needs no join.
  Stmt st(db_,
          "INSERT INTO actions (time, grp, kind, stack, source, origin, phase, result, error, "
          "duration_ms, start_id) "
          "SELECT ?1, grp, kind, stack, source, origin, 'finished', ?2, ?3, ?4, id "
          "FROM actions WHERE id = ?5");
  if (!st.prepared()) return sql_error("preparing the end of an action");
  st.bind(1, now_rfc3339_ms()).bind(2, result).bind(3, error).bind(4, duration_ms).bind(5, id);
  if (st.step() != SQLITE_DONE)
    return sql_error("recording the end of action " + std::to_string(id));
  return Status::Ok();
}

std::optional<ActionLog::Finished> StateStore::last_ok(const std::string& group, ActionKind kind) {
  std::lock_guard lock(mu_);
  // The journal's times are UTC with milliseconds ("…T12:00:00.123Z"),
  // which SQLite's julianday() reads; a row it cannot read answers nothing.
  Stmt st(db_,
          "SELECT CAST(ROUND((julianday('now') - julianday(time)) * 86400000.0) AS INTEGER), error "
          "FROM actions WHERE grp = ?1 AND kind = ?2 AND phase = 'finished' AND result = 'ok' "
          "AND julianday(time) IS NOT NULL ORDER BY id DESC LIMIT 1");
  if (!st.prepared()) return std::nullopt;
  st.bind(1, group).bind(2, std::string(to_string(kind)));
  if (st.step() != SQLITE_ROW) return std::nullopt;
  return Finished{std::max<int64_t>(st.integer(0), 0), st.text(1)};
}

namespace {

const char* kJournalColumns =
    "a.id, a.time, a.grp, a.kind, a.stack, a.source, a.origin, a.phase, a.result, a.error, "
    "a.duration_ms, COALESCE(a.start_id, 0), "
    "a.phase = 'started' AND NOT EXISTS (SELECT 1 FROM actions f WHERE f.start_id = a.id)";

JournalEntry read_entry(Stmt& st) {
  JournalEntry e;
  e.id = st.integer(0);
  e.time = st.text(1);
  e.group = st.text(2);
  e.kind = st.text(3);
  e.stack = st.text(4);
  e.source = st.text(5);
  e.origin = st.text(6);
  e.phase = st.text(7);
  e.result = st.text(8);
  e.error = st.text(9);
  e.duration_ms = st.integer(10);
  e.start_id = st.integer(11);
  e.open = st.integer(12) != 0;
  return e;
}

}  // namespace

Result<std::vector<JournalEntry>> StateStore::history(size_t limit, const std::string& group,
                                                      int64_t before_id) const {
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("SELECT ") + kJournalColumns +
                " FROM actions a WHERE (?1 = '' OR a.grp = ?1) AND (?3 = 0 OR a.id < ?3) "
                "ORDER BY a.id DESC LIMIT ?2")
                   .c_str());
  if (!st.prepared()) return sql_error("preparing the history query");
  st.bind(1, group).bind(2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  st.bind(3, before_id);
  std::vector<JournalEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(read_entry(st));
  if (rc != SQLITE_DONE) return sql_error("reading the history");
  return out;
}

Result<std::vector<JournalEntry>> StateStore::last_switch(const std::string& group) const {
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("WITH sw AS (SELECT time, origin FROM actions WHERE grp = ?1 AND "
                            "phase = 'started' AND kind IN ('database.promote', "
                            "'traffic.switch') ORDER BY id DESC LIMIT 1) SELECT ") +
                kJournalColumns +
                " FROM actions a, sw WHERE a.grp = ?1 AND a.origin = sw.origin AND "
                "julianday(a.time) BETWEEN julianday(sw.time) - 1.0 / 24 AND "
                "julianday(sw.time) + 1.0 / 24 ORDER BY a.id LIMIT 500")
                   .c_str());
  if (!st.prepared()) return sql_error("preparing the last switch query");
  st.bind(1, group);
  std::vector<JournalEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(read_entry(st));
  if (rc != SQLITE_DONE) return sql_error("reading the last switch");
  return out;
}

Status StateStore::record_run(const RunRecord& r) {
  if (!one_of(r.result, {"applied", "no-changes", "failed", "blocked", "invalid", "standby"}))
    return Err("journal " + path_ + ": run result \"" + r.result +
               "\" is not one of applied, no-changes, failed, blocked, invalid, standby");
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("INSERT INTO runs (") + kRunColumns +
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
                   .c_str());
  if (!st.prepared()) return sql_error("preparing to record a run");
  st.bind(1, r.started_at).bind(2, r.finished_at).bind(3, r.commit).bind(4, r.ref);
  st.bind(5, r.desired_digest).bind(6, r.plan_digest).bind(7, r.result).bind(8, r.error);
  st.bind(9, r.duration_ms).bind(10, static_cast<int64_t>(r.actions));
  if (st.step() != SQLITE_DONE) return sql_error("recording a run");
  return Status::Ok();
}

Result<std::vector<RunRecord>> StateStore::runs(size_t limit, size_t offset) const {
  std::lock_guard lock(mu_);
  Stmt st(db_,
          (std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY id DESC LIMIT ?1 OFFSET ?2")
              .c_str());
  if (!st.prepared()) return sql_error("preparing the runs query");
  st.bind(1, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  st.bind(2, static_cast<int64_t>(std::min<size_t>(offset, INT64_MAX)));
  std::vector<RunRecord> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(read_run(st));
  if (rc != SQLITE_DONE) return sql_error("reading the runs");
  return out;
}

Result<std::optional<RunRecord>> StateStore::last_good_run() const {
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("SELECT ") + kRunColumns +
                " FROM runs WHERE result IN ('applied', 'no-changes') ORDER BY id DESC LIMIT 1")
                   .c_str());
  if (!st.prepared()) return sql_error("preparing the last good run query");
  int rc = st.step();
  if (rc == SQLITE_ROW) return std::optional<RunRecord>(read_run(st));
  if (rc != SQLITE_DONE) return sql_error("reading the last good run");
  return std::optional<RunRecord>();
}

Status StateStore::put(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  Stmt st(
      db_,
      "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
  if (!st.prepared()) return sql_error("preparing to store \"" + key + "\"");
  st.bind(1, key).bind(2, value).bind(3, now_rfc3339_ms());
  if (st.step() != SQLITE_DONE) return sql_error("storing \"" + key + "\"");
  return Status::Ok();
}

Result<std::optional<std::string>> StateStore::get(const std::string& key) const {
  std::lock_guard lock(mu_);
  Stmt st(db_, "SELECT value FROM kv WHERE key = ?1");
  if (!st.prepared()) return sql_error("preparing to read \"" + key + "\"");
  st.bind(1, key);
  int rc = st.step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(st.text(0));
  if (rc != SQLITE_DONE) return sql_error("reading \"" + key + "\"");
  return std::optional<std::string>();
}

Status StateStore::refuse_writes_for_testing(bool on) {
  std::lock_guard lock(mu_);
  return exec(path_, db_, on ? "PRAGMA query_only = 1" : "PRAGMA query_only = 0",
              "setting query_only");
}

std::string render_history(const std::vector<JournalEntry>& entries) {
  if (entries.empty()) return "No actions journaled yet.\n";
  // The shared journal (etcd) names the instance and token of every action.
  bool shared = std::any_of(entries.begin(), entries.end(),
                            [](const JournalEntry& e) { return !e.instance.empty(); });
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TIME", "GROUP", "ACTION", "STACK", "STATUS", "DURATION", "ORIGIN", "DETAIL"}};
  if (shared) rows[0][0] = "INSTANCE", rows[0].insert(rows[0].begin() + 1, "TOKEN");
  for (const auto& e : entries) {
    std::string stack = e.source.empty() ? e.stack : e.stack + " from " + e.source;
    std::string status, duration;
    if (e.phase == "started") {
      status = e.open ? "started, no end recorded" : "started";
    } else {
      status = e.result.empty() ? "finished" : e.result;
      duration = std::to_string(e.duration_ms) + " ms";
    }
    std::string error = e.error;
    for (char& c : error)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    rows.push_back(
        {std::to_string(e.id), e.time, e.group, e.kind, stack, status, duration, e.origin, error});
    if (shared)
      rows.back()[0] = e.instance,
      rows.back().insert(rows.back().begin() + 1, std::to_string(e.token));
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace stackflip
