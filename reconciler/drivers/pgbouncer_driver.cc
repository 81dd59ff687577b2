#include "drivers/pgbouncer_driver.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

#include "config/conninfo.h"
#include "config/host_policy.h"
#include "config/secret.h"
#include "drivers/pgbouncer_admin.h"
#include "drivers/pgbouncer_entry.h"
#include "util/deadline.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using Ms = std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

// A databases file is one short section; anything longer is not ours.
constexpr size_t kMaxDatabasesFile = 64 * 1024;

// `e` with `prefix` before its message, its kind (timeout, config) kept.
Error prefixed(const std::string& prefix, Error e) {
  e.message = prefix + e.message;
  return e;
}

// A PgBouncer database name written unquoted in an admin command and in the
// file (the schema's pattern; checked again here).
bool plain_name(const std::string& s, bool dots) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
          (dots && (c == '.' || c == '-'))))
      return false;
  return true;
}

int setting_ms(const ProviderConfig& p, const char* key, int fallback) {
  return std::max(1, parse_int(p.get(key), fallback));
}

class PgBouncerTrafficDriver : public TrafficDriver {
 public:
  PgBouncerTrafficDriver(const ProviderConfig& p, const GroupSpec& group, const TrafficSpec& t)
      : group_(group.name),
        dsn_(p.get("admin_dsn")),
        password_ref_(p.get("password")),
        file_(p.get("databases_file")),
        database_(t.get("database")),
        dbname_(t.get("dbname", t.get("database"))),
        name_(t.name.empty() ? "PgBouncer database " + t.get("database") : t.name),
        connect_ms_(setting_ms(p, "connect_timeout_ms", 2000)),
        command_ms_(setting_ms(p, "timeout_ms", 5000)),
        pause_ms_(setting_ms(p, "pause_timeout_ms", 5000)) {
    std::string server = "?";
    if (auto c = parse_dsn(dsn_); c.ok() && !c->endpoints.empty()) {
      endpoints_ = c->endpoints;
      server = endpoints_.front().substr(std::string("postgres://").size());
    }
    where_ = "PgBouncer " + p.name + " at " + server;
    if (!plain_name(database_, false) || !plain_name(dbname_, true))
      bad_names_ = "database '" + escape_control(database_) + "' / dbname '" +
                   escape_control(dbname_) +
                   "': letters, digits and '_' (dbname also '.' and '-') only";
    for (const auto& [sname, s] : group.stacks) {
      auto e = pgbouncer_entry_of(s, dbname_);
      if (e.ok())
        entries_[sname] = *e;
      else
        entry_errors_[sname] = e.error().message;
    }
  }

  TrafficObs observe() override {
    TrafficObs obs;
    obs.name = name_;
    if (!bad_names_.empty()) {
      obs.reachable = false;
      obs.error = bad_names_;
      obs.config_error = true;
      return obs;
    }
    auto row = show_row();
    if (!row.ok()) {
      obs.reachable = false;
      obs.error = row.error().message;
      obs.config_error = row.error().config;
      return obs;
    }
    // A missing entry has nothing to hold: no `paused`, so no pause is
    // planned for it (and a pause of it succeeds, doing nothing).
    std::optional<PgBouncerEntry> loaded;
    if (*row) {
      const PgBouncerRow& r = **row;
      loaded = r.entry;
      obs.paused = r.paused;
      obs.records.push_back(
          {pgbouncer_entry_text(r.entry, dbname_), owner_of(r.entry), r.disabled});
      obs.content = obs.records.back().content + (r.disabled ? " (disabled)" : "");
    }
    // What the next RELOAD would load, when it is not what is loaded.
    std::string pending;
    auto text = read_regular_file(file_, kMaxDatabasesFile);
    if (!text.ok()) {
      pending = "databases_file: " + text.error().message;
      obs.records.push_back({pending, std::nullopt, false});
    } else if (auto in_file = parse_pgbouncer_databases_file(*text, database_); !in_file) {
      if (loaded) {
        pending = "databases_file " + file_ + " has no entry " + database_;
        obs.records.push_back({pending, std::nullopt, false});
      }
    } else if (!loaded || !same_pgbouncer_entry(*in_file, *loaded)) {
      pending = pgbouncer_entry_text(*in_file, dbname_) + " in databases_file, not loaded";
      obs.records.push_back({pending, owner_of(*in_file), false});
    }
    if (!loaded) obs.content = "no database " + database_ + " in PgBouncer";
    if (!pending.empty()) obs.content += "; " + pending;
    if (loaded && pending.empty() && !(*row)->disabled) obs.target = obs.records.front().stack;
    return obs;
  }

  Status switch_to(const std::string& stack) override {
    const std::string step = "traffic.switch: " + name_;
    if (!entries_.count(stack)) {
      auto err = entry_errors_.find(stack);
      return Refused(step + ": " +
                     (err != entry_errors_.end()
                          ? err->second
                          : "stack " + stack + " is not in group " + group_));
    }
    const PgBouncerEntry& want = entries_.at(stack);
    auto row = show_row();
    if (!row.ok()) return prefixed(step + ": ", row.error());
    const bool loaded_ok = *row && same_pgbouncer_entry((*row)->entry, want);
    auto text = read_regular_file(file_, kMaxDatabasesFile);
    std::optional<PgBouncerEntry> in_file;
    if (text.ok()) in_file = parse_pgbouncer_databases_file(*text, database_);
    const bool file_ok = in_file && same_pgbouncer_entry(*in_file, want);
    if (!file_ok) {
      if (const HostPolicy* p = host_policy(); p && !p->pgbouncer_file_allowed(file_))
        return ConfigError(step + ": this host does not allow writing " + file_ + " (" +
                           p->describe() + "; list it under `pgbouncer_files:`)");
      if (Status s =
              replace_pgbouncer_databases_file(file_, pgbouncer_databases_file(database_, want));
          !s.ok())
        return Err(step + ": " + s.message());
    }
    if (!file_ok || !loaded_ok) {
      if (auto r = command("RELOAD", command_ms_); !r.ok()) return prefixed(step + ": ", r.error());
      row = show_row();
      if (!row.ok()) return prefixed(step + ": after RELOAD: ", row.error());
    }
    if (*row && (*row)->disabled) {
      if (auto r = command("ENABLE " + database_, command_ms_); !r.ok())
        return prefixed(step + ": ", r.error());
      row = show_row();
      if (!row.ok()) return prefixed(step + ": after ENABLE: ", row.error());
    }
    const std::string cause =
        " after RELOAD: it did not load " + file_ +
        " (a configuration PgBouncer cannot load leaves the previous one in force; its log "
        "says why)";
    if (!*row) return Err(step + ": PgBouncer has no database " + database_ + cause);
    if (!same_pgbouncer_entry((*row)->entry, want))
      return Err(step + ": PgBouncer still forwards " + database_ + " to " +
                 pgbouncer_entry_text((*row)->entry, dbname_) + ", not " +
                 pgbouncer_entry_text(want, dbname_) + "," + cause);
    if ((*row)->disabled) return Err(step + ": " + database_ + " is still disabled after ENABLE");
    return Status::Ok();
  }

  bool pools() const override { return true; }

  Status pause() override {
    const std::string sql = "PAUSE " + database_;
    const Steady::time_point start = Steady::now();
    auto r = command(sql, pause_ms_);
    if (r.ok() || no_such_database(r.error())) return Status::Ok();
    if (!conn_.cut()) return prefixed("traffic.pause: ", r.error());
    // The PAUSE is still waiting in PgBouncer (its connection is closed):
    // undo it, whatever the deadline says (a pool left paused holds every
    // client), and say what it waited for.
    const long long waited = std::chrono::duration_cast<Ms>(Steady::now() - start).count();
    std::string message =
        "traffic.pause: " + sql + " did not return within " + std::to_string(waited) + " ms";
    if (std::string cut = deadline_reason(); waited + 5 < pause_ms_ && !cut.empty())
      message += " (" + cut + ")";
    std::string busy = busy_report();
    auto resumed = command("RESUME " + database_, command_ms_, /*honour_deadline=*/false);
    if (resumed.ok() || not_paused(resumed.error()))
      message += busy + "; RESUME " + database_ + " sent: clients go on as before";
    else
      message += busy + "; and RESUME failed: " + resumed.error().message +
                 ": clients stay held until `RESUME " + database_ +
                 "` is sent on the admin console";
    return Error{message, /*timeout=*/true, /*permanent=*/true};
  }

  Status resume() override {
    auto r = command("RESUME " + database_, command_ms_);
    if (r.ok() || no_such_database(r.error())) return Status::Ok();
    if (!not_paused(r.error())) return prefixed("traffic.resume: ", r.error());
    auto row = show_row();  // "not paused": confirm, and succeed
    if (row.ok() && (!*row || !(*row)->paused)) return Status::Ok();
    return Err("traffic.resume: " + r.error().message);
  }

 private:
  static bool no_such_database(const Error& e) {
    return e.message.find("no such database") != std::string::npos;
  }
  static bool not_paused(const Error& e) {
    return e.message.find("is not paused") != std::string::npos;
  }

  std::optional<std::string> owner_of(const PgBouncerEntry& e) const {
    for (const auto& [sname, want] : entries_)
      if (same_pgbouncer_entry(e, want)) return sname;
    return std::nullopt;
  }

  Status connect(bool honour) {
    std::optional<std::string> password;
    if (!password_ref_.empty()) {
      auto pw = resolve_secret_for(password_ref_, endpoints_);
      if (!pw.ok()) return ConfigError(where_ + " password: " + pw.error().message);
      password = *pw;
    }
    return conn_.open(dsn_, password, Ms(connect_ms_), honour, where_);
  }

  // Runs `sql` on the kept admin connection, connecting first; once more on
  // a fresh connection when the kept one turns out lost.
  Result<PgBouncerAnswer> command(const std::string& sql, int limit_ms,
                                  bool honour_deadline = true) {
    if (!bad_names_.empty()) return ConfigError(where_ + ": " + bad_names_);
    for (int attempt = 0;; ++attempt) {
      const bool fresh = !conn_.alive();
      if (fresh)
        if (Status s = connect(honour_deadline); !s.ok()) return s.error();
      auto r = conn_.exec(sql, Ms(limit_ms), honour_deadline, where_);
      if (r.ok() || conn_.alive() || r.error().timeout || fresh || attempt > 0) {
        if (!r.ok() && !r.error().timeout && !conn_.alive()) conn_.close();
        return r;
      }
      conn_.close();
    }
  }

  Result<std::optional<PgBouncerRow>> show_row() {
    auto r = command("SHOW DATABASES", command_ms_);
    if (!r.ok()) return r.error();
    auto row = find_pgbouncer_row(r->columns, r->rows, database_);
    if (!row.ok()) return ConfigError(where_ + ": " + row.error().message);
    return row;
  }

  // ": N server connections still busy in P pooling (what that means)", or
  // "" when SHOW POOLS cannot tell.
  std::string busy_report() {
    auto r = command("SHOW POOLS", command_ms_, /*honour_deadline=*/false);
    if (!r.ok()) return "";
    auto col = [&](const char* name) {
      auto it = std::find(r->columns.begin(), r->columns.end(), name);
      return it == r->columns.end() ? -1 : static_cast<int>(it - r->columns.begin());
    };
    const int db = col("database"), active = col("sv_active"), mode = col("pool_mode");
    if (db < 0 || active < 0) return "";
    int busy = 0;
    std::string pool_mode;
    for (const auto& row : r->rows) {
      if (!row[db] || *row[db] != database_) continue;
      busy += row[active] ? parse_int(*row[active], 0) : 0;
      if (mode >= 0 && row[mode]) pool_mode = *row[mode];
    }
    std::string out =
        ": " + std::to_string(busy) + " server connection" + (busy == 1 ? "" : "s") + " still busy";
    if (pool_mode == "session")
      return out +
             " in session pooling (a server connection is released only when its client "
             "disconnects, so PAUSE waits for every client: set pool_mode = transaction for " +
             database_ + ")";
    if (!pool_mode.empty()) out += " in " + pool_mode + " pooling";
    return out + " (a transaction still running: PAUSE waits for it to end)";
  }

  std::string group_, dsn_, password_ref_, file_, database_, dbname_, name_, where_;
  std::string bad_names_;               // why database_ or dbname_ cannot be used; "" when they can
  std::vector<std::string> endpoints_;  // of admin_dsn: where the password may go
  int connect_ms_, command_ms_, pause_ms_;
  std::map<std::string, PgBouncerEntry> entries_;    // stack -> the entry pointing at it
  std::map<std::string, std::string> entry_errors_;  // stack -> why it has none
  PgBouncerAdmin conn_;
};
}  // namespace

std::unique_ptr<TrafficDriver> make_pgbouncer_traffic_driver(const ProviderConfig& provider,
                                                             const GroupSpec& group,
                                                             const TrafficSpec& traffic) {
  return std::make_unique<PgBouncerTrafficDriver>(provider, group, traffic);
}

}  // namespace stackflip
