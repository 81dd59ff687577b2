#include "drivers/pgbouncer_driver.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include "config/conninfo.h"
#include "config/host_policy.h"
#include "config/secret.h"
#include "sys/safe_file.h"
#include "util/deadline.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using Ms = std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;
using Rows = std::vector<std::vector<std::optional<std::string>>>;

// A databases file is one short section; anything longer is not ours.
constexpr size_t kMaxDatabasesFile = 64 * 1024;

std::string one_line(const char* text) {
  std::string s = trim(text ? text : "");
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// Characters a host or port may have in a PgBouncer connection string
// written unquoted: names, IPv4, IPv6 and socket folders, nothing that
// could end the value or the line.
bool plain_value(const std::string& v) {
  if (v.empty() || v.size() > 255) return false;
  for (char c : v)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
          c == ':' || c == '/'))
      return false;
  return true;
}

bool same_entry(const PgBouncerEntry& a, const PgBouncerEntry& b) {
  return to_lower(a.host) == to_lower(b.host) && a.port == b.port && a.dbname == b.dbname;
}

// "key=value key='quoted value'" as PgBouncer reads a database entry.
std::map<std::string, std::string> parse_connstr(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto skip = [&] {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  };
  for (;;) {
    skip();
    if (i >= s.size()) return out;
    size_t k = i;
    while (i < s.size() && s[i] != '=' && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    std::string key = s.substr(k, i - k);
    skip();
    if (i >= s.size() || s[i] != '=') return out;  // not key=value: stop reading
    ++i;
    skip();
    std::string value;
    if (i < s.size() && s[i] == '\'') {
      for (++i; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          value += s[++i];
        } else if (s[i] == '\'') {
          if (i + 1 < s.size() && s[i + 1] == '\'') {
            value += '\'';
            ++i;
          } else {
            ++i;
            break;
          }
        } else {
          value += s[i];
        }
      }
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) value += s[i++];
    }
    out[key] = value;
  }
}

// One admin console connection (simple query protocol), every wait bounded.
struct AdminAnswer {
  std::vector<std::string> columns;
  Rows rows;
};

bool authentication_failed(PGconn* c, const std::string& message) {
  if (PQconnectionNeedsPassword(c)) return true;
  for (const char* s : {"authentication failed", "login rejected", "no such user",
                        "unsupported startup parameter", "no pg_hba.conf entry"})
    if (message.find(s) != std::string::npos) return true;
  return false;
}

class AdminConnection {
 public:
  AdminConnection() = default;
  AdminConnection(const AdminConnection&) = delete;
  AdminConnection& operator=(const AdminConnection&) = delete;
  ~AdminConnection() { close(); }

  bool alive() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }
  // Whether the last exec() was sent and then cut before its answer: the
  // command may still be running on the server.
  bool cut() const { return cut_; }
  void close() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
  }

  // Connects within `limit` (cut by the operation deadline when `honour`).
  Status open(const std::string& dsn, const std::optional<std::string>& password, Ms limit,
              bool honour, const std::string& where) {
    close();
    if (honour) {
      if (std::string stopped = operation_stopped(); !stopped.empty())
        return Timeout(where + ": not connected: " + stopped);
      limit = std::max(Ms(1), within_deadline(limit));
    }
    const std::string seconds = std::to_string((limit.count() + 999) / 1000);
    std::vector<const char*> keys = {"connect_timeout", "application_name", "dbname"};
    std::vector<const char*> vals = {seconds.c_str(), "stackflip", dsn.c_str()};
    if (password) {
      keys.push_back("password");
      vals.push_back(password->c_str());
    }
    keys.push_back(nullptr);
    vals.push_back(nullptr);
    conn_ = PQconnectStartParams(keys.data(), vals.data(), /*expand_dbname=*/1);
    if (!conn_) return Err(where + ": out of memory");
    const Steady::time_point until = Steady::now() + limit;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(conn_) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
      const auto left = std::chrono::ceil<Ms>(until - Steady::now()).count();
      if (left <= 0) {
        close();
        return Timeout(where + ": no connection within " + std::to_string(limit.count()) + " ms");
      }
      pollfd p{PQsocket(conn_), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT),
               0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100))) <= 0) continue;
      st = PQconnectPoll(conn_);
    }
    if (PQstatus(conn_) == CONNECTION_OK) return Status::Ok();
    const std::string message = one_line(PQerrorMessage(conn_));
    const bool auth = authentication_failed(conn_, message);
    close();
    if (auth) return ConfigError(where + ": authentication failed: " + message);
    Error e = Err(where + ": " + message);
    e.timeout = message.find("timeout expired") != std::string::npos;
    return e;
  }

  // Runs one command within `limit` (and the operation deadline when
  // `honour`). When it is cut the connection is closed: the command may
  // still be pending on the server, and nothing else can be sent on it.
  Result<AdminAnswer> exec(const std::string& sql, Ms limit, bool honour,
                           const std::string& where) {
    cut_ = false;
    if (!conn_) return Err(where + ": not connected");
    if (honour)
      if (std::string stopped = operation_stopped(); !stopped.empty())
        return Timeout(where + ": " + sql + " not sent: " + stopped);
    if (!PQsendQuery(conn_, sql.c_str()))
      return Err(where + ": " + one_line(PQerrorMessage(conn_)));
    const Steady::time_point until = Steady::now() + limit;
    PGresult* last = nullptr;
    auto fail = [&](Error e) -> Result<AdminAnswer> {
      if (last) PQclear(last);
      return e;
    };
    for (;;) {
      if (!PQconsumeInput(conn_)) return fail(Err(where + ": " + one_line(PQerrorMessage(conn_))));
      bool done = false;
      while (!PQisBusy(conn_)) {
        PGresult* r = PQgetResult(conn_);
        if (!r) {
          done = true;
          break;
        }
        if (last) PQclear(last);
        last = r;
      }
      if (done) break;
      std::string cut = honour ? operation_stopped() : "";
      if (!cut.empty() || Steady::now() >= until) {
        close();
        cut_ = true;
        return fail(Timeout(where + ": " + sql + " had no answer within " +
                            std::to_string(limit.count()) + " ms" +
                            (cut.empty() ? "" : " (" + cut + ")")));
      }
      pollfd p{PQsocket(conn_), POLLIN, 0};
      ::poll(&p, 1, 20);
    }
    if (!last) return Err(where + ": " + sql + ": no answer");
    const ExecStatusType st = PQresultStatus(last);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      const std::string message = one_line(PQresultErrorMessage(last));
      Error e = Err(where + ": " + sql + ": " + message);
      if (message.find("admin access needed") != std::string::npos) e = ConfigError(e.message);
      return fail(e);
    }
    AdminAnswer a;
    for (int j = 0; j < PQnfields(last); ++j) a.columns.push_back(PQfname(last, j));
    for (int i = 0; i < PQntuples(last); ++i) {
      std::vector<std::optional<std::string>> row;
      for (int j = 0; j < PQnfields(last); ++j)
        row.push_back(PQgetisnull(last, i, j) ? std::nullopt
                                              : std::optional<std::string>(PQgetvalue(last, i, j)));
      a.rows.push_back(std::move(row));
    }
    PQclear(last);
    return a;
  }

 private:
  PGconn* conn_ = nullptr;
  bool cut_ = false;
};

// Replaces `path` with `text`: a new file beside it, renamed over it, never
// following a link at the name; the folder is opened without following a
// link at its last component.
Status replace_file(const std::string& path, const std::string& text) {
  const size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == std::string::npos || slash + 1 == path.size())
    return Err("databases_file " + path + ": not an absolute file path");
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  const std::string name = path.substr(slash + 1);
  const std::string what = "cannot write databases_file " + path;
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return Err(what + ": folder " + dir + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{dfd};
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  mode_t mode = 0644;
  struct stat st {};
  if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) return Err(what + ": it is a symbolic link: refused (name the file)");
    if (!S_ISREG(st.st_mode)) return Err(what + ": it is not a regular file: refused");
    if (uid == 0) uid = st.st_uid, gid = st.st_gid, mode = st.st_mode & 0777;
  } else if (errno != ENOENT) {
    return Err(what + ": " + std::strerror(errno));
  }
  const std::string temp = "." + name + ".stackflip-new";
  if (::unlinkat(dfd, temp.c_str(), 0) != 0 && errno != ENOENT)
    return Err(what + ": removing the leftover " + temp + ": " + std::strerror(errno));
  if (Status s = write_file_as_owner(dfd, temp, text, uid, gid, WriteMode::kCreate, mode); !s.ok())
    return Err(what + ": " + s.message());
  if (::renameat(dfd, temp.c_str(), dfd, name.c_str()) != 0) {
    const int e = errno;
    ::unlinkat(dfd, temp.c_str(), 0);
    return Err(what + ": rename: " + std::strerror(e));
  }
  ::fsync(dfd);
  return Status::Ok();
}

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
    obs.paused = false;
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
    } else if (!loaded || !same_entry(*in_file, *loaded)) {
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
    const bool loaded_ok = *row && same_entry((*row)->entry, want);
    auto text = read_regular_file(file_, kMaxDatabasesFile);
    std::optional<PgBouncerEntry> in_file;
    if (text.ok()) in_file = parse_pgbouncer_databases_file(*text, database_);
    const bool file_ok = in_file && same_entry(*in_file, want);
    if (!file_ok) {
      if (const HostPolicy* p = host_policy(); p && !p->pgbouncer_file_allowed(file_))
        return ConfigError(step + ": this host does not allow writing " + file_ + " (" +
                           p->describe() + "; list it under `pgbouncer_files:`)");
      if (Status s = replace_file(file_, pgbouncer_databases_file(database_, want)); !s.ok())
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
    if (!same_entry((*row)->entry, want))
      return Err(step + ": PgBouncer still forwards " + database_ + " to " +
                 pgbouncer_entry_text((*row)->entry, dbname_) + ", not " +
                 pgbouncer_entry_text(want, dbname_) + "," + cause);
    if ((*row)->disabled) return Err(step + ": " + database_ + " is still disabled after ENABLE");
    return Status::Ok();
  }

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
      if (same_entry(e, want)) return sname;
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
  Result<AdminAnswer> command(const std::string& sql, int limit_ms, bool honour_deadline = true) {
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
  AdminConnection conn_;
};

}  // namespace

std::string pgbouncer_entry_text(const PgBouncerEntry& e, const std::string& dbname) {
  const bool v6 = e.host.find(':') != std::string::npos && e.host[0] != '/';
  std::string out = (v6 ? "[" + e.host + "]" : e.host) + ":" + e.port;
  if (e.dbname != dbname) out += "/" + e.dbname;
  return out;
}

Result<PgBouncerEntry> pgbouncer_entry_of(const StackSpec& stack, const std::string& dbname) {
  const char* key = stack.get("dsn").empty() ? "database_dsn" : "dsn";
  const std::string dsn = stack.get(key);
  if (dsn.empty())
    return Err("stack " + stack.name +
               " has no dsn: PgBouncer traffic points at the server a stack's dsn names");
  auto c = parse_dsn(dsn);
  if (!c.ok()) return Err("stack " + stack.name + " " + key + ": " + c.error().message);
  if (c->endpoints.size() != 1)
    return Err("stack " + stack.name + " " + key + " names " + std::to_string(c->endpoints.size()) +
               " servers; a PgBouncer entry points at exactly one");
  std::string hp = c->endpoints.front().substr(std::string("postgres://").size());
  const size_t colon = hp.rfind(':');
  PgBouncerEntry e{hp.substr(0, colon), hp.substr(colon + 1), dbname};
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']')
    e.host = e.host.substr(1, e.host.size() - 2);
  if (!plain_value(e.host) || !plain_value(e.port))
    return Err("stack " + stack.name + " " + key + ": host '" + escape_control(e.host) +
               "' cannot be written into a PgBouncer entry (letters, digits, '.', '-', '_', ':' "
               "and '/' only)");
  return e;
}

std::string pgbouncer_databases_file(const std::string& database, const PgBouncerEntry& e) {
  return "; Written by stackflip: the one PgBouncer database entry it manages (traffic of "
         "database " +
         database +
         "). It is replaced whole at every switch; keep other entries in another file.\n"
         "[databases]\n" +
         database + " = host=" + e.host + " port=" + e.port + " dbname=" + e.dbname + "\n";
}

std::optional<PgBouncerEntry> parse_pgbouncer_databases_file(const std::string& text,
                                                             const std::string& database) {
  bool in_databases = false;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (line.empty() || line[0] == ';' || line[0] == '#' || line[0] == '%') continue;
    if (line[0] == '[') {
      const size_t close = line.find(']');
      in_databases =
          close != std::string::npos && to_lower(trim(line.substr(1, close - 1))) == "databases";
      continue;
    }
    if (!in_databases) continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos || trim(line.substr(0, eq)) != database) continue;
    auto kv = parse_connstr(line.substr(eq + 1));
    PgBouncerEntry e{kv.count("host") ? kv["host"] : "", kv.count("port") ? kv["port"] : "5432",
                     kv.count("dbname") ? kv["dbname"] : database};
    return e;
  }
  return std::nullopt;
}

Result<std::optional<PgBouncerRow>> find_pgbouncer_row(const std::vector<std::string>& columns,
                                                       const Rows& rows,
                                                       const std::string& database) {
  std::map<std::string, size_t> at;
  for (const char* name : {"name", "host", "port", "database", "paused", "disabled"}) {
    auto it = std::find(columns.begin(), columns.end(), name);
    if (it == columns.end())
      return Err(std::string("SHOW DATABASES answered without a column '") + name +
                 "': admin_dsn does not lead to PgBouncer's admin console (dbname=pgbouncer)");
    at[name] = static_cast<size_t>(it - columns.begin());
  }
  auto mode = std::find(columns.begin(), columns.end(), "pool_mode");
  for (const auto& row : rows) {
    auto get = [&](size_t i) { return i < row.size() && row[i] ? *row[i] : std::string(); };
    if (get(at["name"]) != database) continue;
    PgBouncerRow r;
    r.entry = {get(at["host"]), get(at["port"]), get(at["database"])};
    r.paused = get(at["paused"]) == "1";
    r.disabled = get(at["disabled"]) == "1";
    if (mode != columns.end()) r.pool_mode = get(static_cast<size_t>(mode - columns.begin()));
    return std::optional<PgBouncerRow>(std::move(r));
  }
  return std::optional<PgBouncerRow>();
}

std::unique_ptr<TrafficDriver> make_pgbouncer_traffic_driver(const ProviderConfig& provider,
                                                             const GroupSpec& group,
                                                             const TrafficSpec& traffic) {
  return std::make_unique<PgBouncerTrafficDriver>(provider, group, traffic);
}

}  // namespace stackflip
