// state_store.h — stackflip's state store: an embedded SQLite file holding the
// action journal, the reconcile runs and a little key/value state.
//
// The journal is append-only: begin() writes a "started" row and commits it
// before the action runs; finish() appends a second, "finished" row pointing
// at the first (start_id) instead of updating it. So a crash between the two
// leaves the started row alone, and history shows it as "started, no end
// recorded" (JournalEntry::open). Every action applied is thus visible with
// the commit or config digest it came from (DESIGN.md invariant 5).
//
// Thread safety: one StateStore per process, shared by all threads; every method
// takes one mutex. Several processes (or several StateStore objects) may use the
// same file: it runs in WAL mode and waits up to 5 s for a lock
// (busy_timeout) before failing. Writes are synchronous=FULL, so a row that
// begin() returned for survives a power loss.
//
// Errors carry the SQLite message and the file path, and say what to check
// when the store is read-only or the disk is full. Values are always bound
// parameters, never spliced into SQL.
//
// Files: the database is created 0600 (SQLite gives its -wal and -shm files
// the same mode) whatever the umask, and an existing one readable by others
// is tightened to 0600.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/action_log.h"
#include "core/plan.h"
#include "util/result.h"

struct sqlite3;

namespace stackflip {

struct JournalEntry {
  int64_t id = 0;
  std::string time;  // RFC 3339 UTC with milliseconds, e.g. 2026-11-26T18:00:00.123Z
  std::string group, kind, stack, source;
  std::string origin;  // commit sha, "config:<digest>", or "self-fence: ..."
  std::string phase;   // "started" | "finished"
  std::string result;  // "" (started rows), "ok", "failed", "timeout", "interrupted"
  std::string error;   // failed: why; ok: its note, if any (action_log.h)
  int64_t duration_ms = 0;
  int64_t start_id = 0;  // finished rows: id of the started row they end
  bool open = false;     // started row with no finished row: still running, or the process died
  // With etcd (issue 13): the instance that applied it and its fencing token.
  std::string instance;
  int64_t token = 0;
};

// One reconcile pass of the GitOps loop.
struct RunRecord {
  std::string started_at, finished_at;  // RFC 3339 UTC
  std::string commit, ref, desired_digest, plan_digest;
  std::string result;  // "applied", "no-changes", "failed", "blocked", "invalid",
                       // "standby" (with etcd: the work found is another instance's)
  std::string error;
  int64_t duration_ms = 0;
  int actions = 0;
};

class StateStore : public ActionLog {
 public:
  using RunRecord = stackflip::RunRecord;

  // Opens `path`, creating the file and its schema when missing and migrating
  // an older schema (PRAGMA user_version). A missing directory, a file that
  // is not a database, a file stackflip may not write (read-only mode or
  // file system, immutable), or a schema newer than this binary are errors.
  static Result<std::unique_ptr<StateStore>> open(const std::string& path);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::string& path() const { return path_; }

  // Appends and commits the "started" row; returns its id for finish().
  Result<int64_t> begin(const Action& a, const std::string& origin) override;
  // Appends the "finished" row for begin()'s `id`. `result` is one of ok,
  // failed, timeout, interrupted. An unknown id or a second finish is an error.
  Status finish(int64_t id, const std::string& result, const std::string& error,
                int64_t duration_ms) override;
  // The last ok end of `kind` in `group`: how long ago, by this host's
  // clock, and its detail (traffic.wait reads when the TTL was lowered).
  std::optional<Finished> last_ok(const std::string& group, ActionKind kind) override;
  // Newest first, at most `limit` rows, only `group`'s when not empty, and
  // only rows older than `before_id` when it is not 0 (the next page).
  Result<std::vector<JournalEntry>> history(size_t limit = 100, const std::string& group = "",
                                            int64_t before_id = 0) const;
  // The rows of `group`'s last switch, oldest first: the newest
  // database.promote or traffic.switch and the actions of the same origin
  // within an hour of it (the status page cuts them to the one sequence;
  // at most 500 rows). Empty when the group never switched.
  Result<std::vector<JournalEntry>> last_switch(const std::string& group) const;

  Status record_run(const RunRecord& r);
  // Newest first, skipping the newest `offset` (the next page).
  Result<std::vector<RunRecord>> runs(size_t limit = 20, size_t offset = 0) const;
  // The latest run whose result is "applied" or "no-changes", if any.
  Result<std::optional<RunRecord>> last_good_run() const;

  // Small state (last observed snapshot, last commit seen); put() overwrites.
  Status put(const std::string& key, const std::string& value);
  Result<std::optional<std::string>> get(const std::string& key) const;

  // Tests: with `on`, every later write fails as on a read-only store
  // (SQLite's own error, PRAGMA query_only), while reads still work.
  Status refuse_writes_for_testing(bool on);

 private:
  StateStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Error sql_error(const std::string& what) const;

  const std::string path_;
  sqlite3* const db_;
  mutable std::mutex mu_;
};

// A table for `stackflip history`: one line per row, newest first; an open
// started row reads "started, no end recorded".
std::string render_history(const std::vector<JournalEntry>& entries);

}  // namespace stackflip
