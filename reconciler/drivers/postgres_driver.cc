#include "drivers/postgres_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "config/conninfo.h"
#include "config/loader.h"
#include "config/secret.h"
#include "drivers/postgres_control.h"
#include "drivers/postgres_session.h"
#include "drivers/postgres_wal.h"
#include "util/backoff.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using std::chrono::milliseconds;
using ConnKv = std::map<std::string, std::string>;  // conninfo keyword → value (set ones)

// How long re-attach waits for streaming and replay, and for the server to
// come back in recovery after a restart or pg_rewind.
constexpr milliseconds kStreamLimit{10000};
constexpr milliseconds kRecoveryLimit{60000};
// The polls of a switch's steps before traffic moves (sessions gone, WAL
// receiver gone, promotion done; the fence's wait too): each is one short
// statement on the kept session, so they poll every 5 ms at most rather
// than Backoff's 50 ms, which left up to 50 ms between a promotion being
// done and it being seen (issue 15).
constexpr milliseconds kStepPollCap{5};

// SQL for the timeline a primary writes on: from its current WAL file name
// (pg_control_checkpoint() lags right after a promotion).
const std::string kPrimaryTimeline =
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint";

Result<ConnKv> parse_conninfo(const std::string& conninfo) {
  auto c = parse_dsn(conninfo);
  if (!c.ok()) return c.error();
  ConnKv out;
  for (const auto& [k, v] : c->options)
    if (!v.empty()) out[k] = v;
  return out;
}

struct HostPort {
  std::string host, port;
  std::string text() const { return (host.empty() ? "(local socket)" : host) + ":" + port; }
};

HostPort host_port(const ConnKv& kv) {
  auto get = [&](const char* k) {
    auto it = kv.find(k);
    return it == kv.end() ? std::string() : it->second;
  };
  HostPort hp{get("host"), get("port")};
  if (hp.host.empty()) hp.host = get("hostaddr");
  if (hp.port.empty()) hp.port = "5432";
  return hp;
}

bool same_endpoint(const HostPort& a, const HostPort& b) {
  return iequals(a.host, b.host) && a.port == b.port;
}

// "k='v' " for each of `keys` set in `kv`.
std::string conninfo_subset(const ConnKv& kv, std::initializer_list<const char*> keys) {
  std::string c;
  for (const char* k : keys) {
    auto it = kv.find(k);
    if (it != kv.end()) c += std::string(k) + "=" + quote_conninfo_value(it->second) + " ";
  }
  return c;
}

bool is_true(const std::optional<std::string>& v) { return v && (*v == "t" || *v == "on"); }

// A provider setting in milliseconds, its default from the loader's table.
int setting_ms(const ProviderConfig& p, const std::string& key) {
  const std::string fallback = provider_default("postgres", key);
  return std::max(1, parse_int(p.get(key, fallback), parse_int(fallback, 1)));
}

// "postgres stack NAME (host:port)" — never the full dsn.
std::string describe(const std::string& name, const std::string& dsn) {
  auto kv = parse_conninfo(dsn);
  return "postgres stack " + name + (kv.ok() ? " (" + host_port(*kv).text() + ")" : "");
}

std::vector<std::string> list_of(const StackSpec& spec, const std::string& key) {
  auto it = spec.lists.find(key);
  return it == spec.lists.end() ? std::vector<std::string>{} : it->second;
}

class PostgresStackDriver : public StackDriver {
 public:
  PostgresStackDriver(const ProviderConfig& provider, const GroupSpec& group,
                      const std::string& stack, Clock& clock)
      : provider_(provider),
        group_(group),
        name_(stack),
        spec_(spec_of(group, stack)),
        where_(describe(stack, spec_.get("dsn"))),
        clock_(clock),
        session_({spec_.get("dsn"), own_password_ref()},
                 {setting_ms(provider, "connect_timeout_ms"),
                  setting_ms(provider, "statement_timeout_ms")},
                 stack, where_),
        control_(stack, where_, list_of(spec_, "control_command")) {}

  StackObs observe() override;
  Status set_maintenance(bool on) override;
  Status fence_now() override;
  Status stop_replication() override;
  Status promote() override;
  Status start_replication(const StackSpec& source) override;
  Status bootstrap_replica(const StackSpec& source) override;
  std::string take_note() override { return std::exchange(note_, std::string()); }

 private:
  // What re-attaching to one source needs, read once.
  struct Reattach {
    const StackSpec& source;
    HostPort endpoint;        // the source's host:port
    std::string timeline;     // the source's current timeline, as text
    std::string data_dir;     // this server's
    std::string rewind_from;  // the source's conninfo for pg_rewind
  };

  static StackSpec spec_of(const GroupSpec& group, const std::string& stack) {
    auto it = group.stacks.find(stack);
    return it == group.stacks.end() ? StackSpec{} : it->second;
  }
  std::string own_password_ref() const {
    std::string ref = spec_.get("password");
    return ref.empty() ? provider_.get("password") : ref;
  }
  // The source's password: its stack's, else (same provider) the provider's.
  std::string source_password_ref(const StackSpec& source) const {
    std::string ref = source.get("password");
    if (ref.empty() && source.provider == provider_.name) ref = provider_.get("password");
    return ref;
  }
  Result<PgConnection> connect_source(const StackSpec& source) {
    auto c = session_.connect({source.get("dsn"), source_password_ref(source)});
    if (!c.ok()) {
      Error e = c.error();
      e.message = "replication source " + source.name + ": " + e.message;
      return e;
    }
    return c;
  }
  Backoff poll(milliseconds limit, milliseconds first = milliseconds(1),
               milliseconds cap = milliseconds(50)) {
    return Backoff(clock_, limit, first, cap);
  }
  int statement_ms() const { return session_.timeouts().statement_ms; }
  double ms_since(Clock::Duration t0) {
    return std::chrono::duration<double, std::milli>(clock_.now() - t0).count();
  }
  bool rewind_allowed() const {
    auto it = spec_.settings.find("pg_rewind");
    if (it != spec_.settings.end()) return it->second == "true";
    return provider_.get("pg_rewind", provider_default("postgres", "pg_rewind")) == "true";
  }

  bool bootstrap_on() const { return spec_.get("bootstrap") == "basebackup"; }
  void observe_bootstrap(StackObs& obs);
  std::optional<std::string> upstream_of(const std::string& primary_conninfo, std::string& error);
  Status wait_new_sessions_see(const std::string& want);
  Status maintenance(bool on, bool checkpoint_first);
  Status terminate_sessions();
  void checkpoint_before_fence();
  Result<std::string> replication_conninfo(const StackSpec& source, const ConnKv& src_kv);
  Result<std::string> source_timeline(const StackSpec& source);
  Status reattach_replica(const Reattach& r);
  Status reattach_primary(const Reattach& r);
  Status rewind_and_wait(const Reattach& r, const std::string& how);
  Status wait_attached(const Reattach& r);
  Status checkpoint_source(const StackSpec& source);
  Status wait_replayed(const StackSpec& source, milliseconds limit);
  Status wait_in_recovery(const std::string& after);
  Status wait_streaming(const Reattach& r, milliseconds limit);
  Result<std::string> divergence_from(const StackSpec& source);

  ProviderConfig provider_;
  GroupSpec group_;
  std::string name_;
  StackSpec spec_;
  std::string where_;
  Clock& clock_;
  PostgresSession session_;
  PostgresControl control_;
  std::string note_;  // take_note()
};

StackObs PostgresStackDriver::observe() {
  StackObs obs;
  auto rows = session_.exec(
      "SELECT r,"
      " CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,"
      " CASE WHEN r THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),"
      "                           (SELECT timeline_id FROM pg_control_checkpoint()))::bigint"
      "  ELSE " +
      kPrimaryTimeline +
      " END,"
      " current_setting('default_transaction_read_only'),"
      " current_setting('primary_conninfo'),"
      " (SELECT status FROM pg_stat_wal_receiver),"
      // Which server answered (model.h DatabaseObs::system_id). The start
      // time as epoch seconds, so the session's TimeZone does not matter;
      // data_directory would need pg_read_all_settings, and every DSN's
      // role must read the same identity.
      " (SELECT system_identifier FROM pg_control_system())::text,"
      " extract(epoch FROM pg_postmaster_start_time())::text"
      " FROM (SELECT pg_is_in_recovery() AS r) s");
  if (!rows.ok() || rows->empty()) {
    // StackObs has only the message: an authentication failure
    // (Error::config) is told by its text here; actions return it whole.
    obs.reachable = false;
    obs.error = rows.ok() ? where_ + ": observe returned no row" : rows.error().message;
    obs.config_error = !rows.ok() && rows.error().config;
    obs.timed_out = !rows.ok() && rows.error().timeout;
    // An interrupted bootstrap stops the server: its marker says so.
    if (bootstrap_on() && !obs.config_error) {
      auto phase = control_.bootstrap_phase(spec_.get("data_directory"));
      if (phase.ok())
        obs.bootstrap_phase = *phase;
      else
        obs.error += "; " + phase.error().message;
    }
    return obs;
  }
  const PgRow& row = rows->front();
  obs.reachable = true;
  obs.maintenance = is_true(row[3]);
  DatabaseObs db;
  const bool replica = is_true(row[0]);
  db.role = replica ? Role::replica : Role::primary;
  if (row[1]) db.lsn = parse_lsn(*row[1]);
  if (row[2]) db.timeline = parse_timeline(*row[2]);
  if (replica) db.streaming = row[5] && *row[5] == "streaming";
  if (row[6]) db.system_id = *row[6];
  if (row[7]) db.started_at = *row[7];
  if (replica && row[4] && !row[4]->empty()) db.upstream = upstream_of(*row[4], obs.error);
  obs.database = db;
  if (bootstrap_on()) observe_bootstrap(obs);
  return obs;
}

// Issue 17, on a stack with `bootstrap: basebackup` only: the marker of an
// interrupted bootstrap (read by the server: pg_read_file needs superuser
// or pg_read_server_files; else asked of the control command), and, unless
// it streams, what a bootstrap would remove and whether it can follow the
// active stack at all. Failures leave the fields out and say so in
// StackObs::error: the stack stays reachable.
void PostgresStackDriver::observe_bootstrap(StackObs& obs) {
  DatabaseObs& db = *obs.database;
  const std::string marker = spec_.get("data_directory") + ".stackflip-bootstrap";
  auto lit = session_.quote_literal(marker);
  Result<PgRows> m = lit.ok() ? session_.exec("SELECT pg_read_file(" + *lit + ", 0, 200, true)")
                              : Result<PgRows>(lit.error());
  if (m.ok()) {
    const std::string text = m->empty() ? "" : m->front()[0].value_or("");
    if (text.rfind("phase=", 0) == 0)
      obs.bootstrap_phase = trim(text.substr(6, text.find('\n') - 6));
  } else {
    auto phase = control_.bootstrap_phase(spec_.get("data_directory"));
    if (phase.ok())
      obs.bootstrap_phase = *phase;
    else
      obs.error += (obs.error.empty() ? "" : "; ") + phase.error().message;
  }
  const bool streams = db.role == Role::replica && db.streaming == true;
  if (streams && !obs.bootstrap_phase) return;
  auto sizes = session_.exec(
      "SELECT datname, pg_database_size(oid)::text FROM pg_database"
      " WHERE NOT datistemplate AND has_database_privilege(oid, 'CONNECT')"
      " ORDER BY pg_database_size(oid) DESC, datname");
  if (sizes.ok()) {
    uint64_t rest = 0;
    size_t more = 0;
    for (const PgRow& r : *sizes) {
      uint64_t n = std::strtoull(r[1].value_or("0").c_str(), nullptr, 10);
      if (db.databases.size() < DatabaseObs::kMaxDatabasesListed)
        db.databases.push_back({trim_for_message(r[0].value_or("?"), 128), n});
      else
        rest += n, ++more;
    }
    if (more) db.databases.push_back({"(" + std::to_string(more) + " more)", rest});
  } else {
    obs.error += (obs.error.empty() ? "" : "; ") + sizes.error().message;
  }
  // A copy of the cluster that wrote past the active stack's fork cannot
  // follow it without pg_rewind: with pg_rewind allowed, replication.start
  // rewinds it instead. Asked only of a stack that should follow.
  const std::string& active = group_.active;
  if (rewind_allowed() || active == name_ || !group_.wants_replica(name_) || streams) return;
  auto source = group_.stacks.find(active);
  if (source == group_.stacks.end()) return;
  auto how = divergence_from(source->second);
  if (how.ok() && !how->empty()) db.cannot_follow = *how + " (pg_rewind is off)";
}

// The stack of the group whose dsn has the host:port of `primary_conninfo`;
// else nullopt, with `error` saying why (postgres_driver.h: DECISION).
std::optional<std::string> PostgresStackDriver::upstream_of(const std::string& primary_conninfo,
                                                            std::string& error) {
  auto kv = parse_conninfo(primary_conninfo);
  if (!kv.ok()) {
    error = where_ + ": primary_conninfo: " + kv.error().message;
    return std::nullopt;
  }
  const HostPort up = host_port(*kv);
  for (const auto& [name, stack] : group_.stacks) {
    if (name == name_) continue;
    auto skv = parse_conninfo(stack.get("dsn"));
    if (skv.ok() && same_endpoint(host_port(*skv), up)) return name;
  }
  error = where_ + ": replicating from " + up.text() +
          ", which is not the dsn host:port of any stack of group " + group_.name;
  return std::nullopt;
}

Status PostgresStackDriver::set_maintenance(bool on) { return maintenance(on, on); }

// The self-fence skips the CHECKPOINT (it can take seconds): a primary cut
// off with its site is fenced for a forced failover, whose guard does not
// wait for it, and pg_rewind handles a checkpoint record after the fork.
Status PostgresStackDriver::fence_now() { return maintenance(true, false); }

Status PostgresStackDriver::maintenance(bool on, bool checkpoint_first) {
  const auto t0 = clock_.now();
  if (checkpoint_first) checkpoint_before_fence();
  auto r = session_.exec(on ? "ALTER SYSTEM SET default_transaction_read_only = on"
                            : "ALTER SYSTEM RESET default_transaction_read_only");
  if (!r.ok()) return r.error();
  // A fenced server should write as little WAL as it can: WAL it writes
  // after a new primary forked means pg_rewind before it can follow.
  // Autovacuum is its main source (it vacuums freshly inserted tables).
  r = session_.exec(on ? "ALTER SYSTEM SET autovacuum = off" : "ALTER SYSTEM RESET autovacuum");
  if (!r.ok()) return r.error();
  if (auto s = session_.exec("SELECT pg_reload_conf()"); !s.ok()) return s.error();
  if (Status s = wait_new_sessions_see(on ? "on" : "off"); !s.ok()) return s;
  spdlog::debug("{}: new sessions see default_transaction_read_only={} after {:.1f} ms", where_,
                on ? "on" : "off", ms_since(t0));
  if (!on) return Status::Ok();
  Status s = terminate_sessions();
  if (s.ok()) spdlog::debug("{}: sessions gone at {:.1f} ms", where_, ms_since(t0));
  return s;
}

// pg_reload_conf() only signals the postmaster; new sessions get the new
// value once it has re-read the files. Waits for that before sessions are
// terminated, so clients that reconnect at once start read-only.
//
// DECISION (issue 15): asked of the kept session, polled every few
// milliseconds, instead of a new connection per poll (a backend fork: a few
// ms on a quiet host, 70-115 ms measured on a loaded one, twice per switch).
// It tells the same: the postmaster re-reads the files first and only then
// passes the reload on to its children, which apply it before their next
// statement; so once the kept session shows the new value, the postmaster
// holds it and every session it starts from then on starts with it. One
// case is not covered by that: a per-role or per-database setting of this
// login (it wins over the files for new sessions, and one made after the
// kept session connected is not in it). When pg_db_role_setting has one, a
// new session is asked as before.
Status PostgresStackDriver::wait_new_sessions_see(const std::string& want) {
  Backoff backoff = poll(milliseconds(statement_ms()), milliseconds(1), kStepPollCap);
  std::string seen = "?", last_error;
  bool ask_new_session = false;
  for (;;) {
    if (!ask_new_session) {
      auto v = session_.exec(
          "SELECT current_setting('default_transaction_read_only'),"
          " EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c"
          "  WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))"
          "  AND s.setdatabase IN"
          "   (0, (SELECT oid FROM pg_database WHERE datname = current_database()))"
          "  AND c LIKE 'default\\_transaction\\_read\\_only=%')");
      if (v.ok() && !v->empty() && v->front()[0]) {
        seen = *v->front()[0];
        if (seen == want && !is_true(v->front()[1])) return Status::Ok();
        ask_new_session = is_true(v->front()[1]);
      }
      if (!v.ok()) last_error = v.error().message;
    } else if (auto c = session_.connect(); c.ok()) {
      auto v = c->exec("SHOW default_transaction_read_only", where_);
      if (v.ok() && !v->empty() && v->front()[0]) seen = *v->front()[0];
      if (!v.ok()) last_error = v.error().message;
      if (seen == want) return Status::Ok();
    } else {
      last_error = c.error().message;
    }
    if (backoff.expired())
      return Timeout(where_ + ": default_transaction_read_only is still " + seen +
                     " for new sessions after reload (set in postgresql.conf, or per role or "
                     "database?)" +
                     (last_error.empty() ? "" : "; last error: " + last_error));
    backoff.sleep();
  }
}

// Terminates the other client sessions without pg_terminate_backend's own
// wait (it polls every 100 ms) and waits here with short polls until they
// are gone.
Status PostgresStackDriver::terminate_sessions() {
  auto t = session_.exec(
      // MATERIALIZED: the planner must not evaluate pg_terminate_backend()
      // before the filter that excludes our own session.
      "WITH victims AS MATERIALIZED ("
      " SELECT pid FROM pg_stat_activity"
      " WHERE pid <> pg_backend_pid()"
      " AND backend_type IN ('client backend', 'autovacuum worker')"
      " AND datname IS NOT NULL)"
      " SELECT coalesce(array_agg(pid)::text, '{}') FROM victims"
      " WHERE pg_terminate_backend(pid)");
  if (!t.ok()) return t.error();
  const std::string pids = t->front()[0].value_or("{}");
  spdlog::debug("{}: terminate {}", where_, pids);
  if (pids == "{}") return Status::Ok();
  Backoff gone = poll(milliseconds(statement_ms()), milliseconds(1), kStepPollCap);
  for (;;) {
    auto n = session_.exec("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY('" + pids +
                           "'::int[])");
    if (!n.ok()) return n.error();
    if (n->front()[0] == "0") return Status::Ok();
    if (gone.expired())
      return Timeout(where_ + ": " + n->front()[0].value_or("?") +
                     " terminated session(s) still running after " +
                     std::to_string(statement_ms()) + " ms");
    gone.sleep();
  }
}

// Before fencing a writable primary: finish any checkpoint in progress
// (a spread one runs for minutes, the one after a promotion for seconds).
// Otherwise its record lands after the fence, maybe after the standby
// stopped replicating (the promotion's guard then sees it behind) or after
// it was promoted (then this server needs pg_rewind to follow). Writes go
// on meanwhile; best effort, bounded by the statement timeout.
void PostgresStackDriver::checkpoint_before_fence() {
  auto r = session_.exec(
      "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = "
      "'off'");
  if (!r.ok() || !is_true(r->front()[0])) return;
  const auto t0 = clock_.now();
  if (auto c = session_.exec("CHECKPOINT", /*retry=*/false); !c.ok())
    spdlog::warn("{}: CHECKPOINT before the fence did not finish ({}); fencing anyway", where_,
                 c.error().message);
  spdlog::debug("{}: CHECKPOINT before the fence took {:.1f} ms", where_, ms_since(t0));
}

Status PostgresStackDriver::stop_replication() {
  auto r = session_.exec("SELECT pg_is_in_recovery()");
  if (!r.ok()) return r.error();
  if (!is_true(r->front()[0])) return Status::Ok();  // a primary replicates from nobody
  if (auto s = session_.exec("ALTER SYSTEM SET primary_conninfo = ''"); !s.ok()) return s.error();
  if (auto s = session_.exec("SELECT pg_reload_conf()"); !s.ok()) return s.error();
  Backoff backoff = poll(milliseconds(statement_ms()), milliseconds(1), kStepPollCap);
  for (;;) {
    auto n = session_.exec("SELECT count(*) FROM pg_stat_wal_receiver");
    if (!n.ok()) return n.error();
    if (n->front()[0] == "0") return Status::Ok();
    if (backoff.expired())
      return Timeout(where_ + ": the WAL receiver is still running " +
                     std::to_string(statement_ms()) + " ms after clearing primary_conninfo");
    backoff.sleep();
  }
}

Status PostgresStackDriver::promote() {
  auto r = session_.exec("SELECT pg_is_in_recovery()");
  if (!r.ok()) return r.error();
  if (!is_true(r->front()[0])) return Status::Ok();
  const auto t0 = clock_.now();
  auto p = session_.exec("SELECT pg_promote(wait => false)");
  if (!p.ok()) return p.error();
  if (!is_true(p->front()[0])) return Err(where_ + ": pg_promote() could not signal promotion");
  Backoff backoff =
      poll(milliseconds(std::max(statement_ms(), 10000)), milliseconds(1), kStepPollCap);
  for (;;) {
    auto q = session_.exec("SELECT pg_is_in_recovery()");
    if (q.ok() && !is_true(q->front()[0])) {
      spdlog::debug("{}: promoted after {:.1f} ms", where_, ms_since(t0));
      return Status::Ok();
    }
    if (backoff.expired())
      return Timeout(where_ + ": still in recovery after promotion was requested" +
                     (q.ok() ? "" : ": " + q.error().message));
    backoff.sleep();
  }
}

Status PostgresStackDriver::start_replication(const StackSpec& source) {
  if (source.name == name_) return Err(where_ + ": cannot replicate from itself");
  auto src_kv = parse_conninfo(source.get("dsn"));
  if (!src_kv.ok()) return Err("stack " + source.name + " dsn: " + src_kv.error().message);
  auto conninfo = replication_conninfo(source, *src_kv);
  if (!conninfo.ok()) return conninfo.error();

  auto state = session_.exec("SELECT pg_is_in_recovery(), current_setting('data_directory')");
  if (!state.ok()) return state.error();
  const bool replica = is_true(state->front()[0]);
  auto literal = session_.quote_literal(*conninfo);
  if (!literal.ok()) return literal.error();
  if (auto s = session_.exec("ALTER SYSTEM SET primary_conninfo = " + *literal); !s.ok())
    return s.error();

  auto tli = source_timeline(source);
  if (!tli.ok()) return tli.error();
  const Reattach r{source, host_port(*src_kv), *tli, state->front()[1].value_or(""),
                   conninfo_subset(*src_kv, {"host", "hostaddr", "port", "user", "dbname",
                                             "sslmode", "sslrootcert"})};
  return replica ? reattach_replica(r) : reattach_primary(r);
}

// Issue 17 (postgres_driver.h): through the control command, resumable.
Status PostgresStackDriver::bootstrap_replica(const StackSpec& source) {
  if (!bootstrap_on())
    return Refused(where_ + ": bootstrap is not enabled (set `bootstrap: basebackup`)");
  if (source.name == name_) return Err(where_ + ": cannot bootstrap from itself");
  const std::string data_dir = spec_.get("data_directory");
  auto src_kv = parse_conninfo(source.get("dsn"));
  if (!src_kv.ok()) return Err("stack " + source.name + " dsn: " + src_kv.error().message);
  auto conninfo = replication_conninfo(source, *src_kv);
  if (!conninfo.ok()) return conninfo.error();
  auto tli = source_timeline(source);  // the source must be a primary
  if (!tli.ok()) return tli.error();
  // Running (not yet stopped by an earlier attempt): it must be the server
  // of `data_directory`, and it keeps primary_conninfo in the *.conf files
  // the control command carries over to the new data directory.
  auto dir = session_.exec("SELECT current_setting('data_directory')", /*retry=*/false);
  if (dir.ok()) {
    const std::string running = dir->front()[0].value_or("");
    if (running != data_dir)
      return Refused(where_ + ": the server runs from " + trim_for_message(running) +
                     " but the config says data_directory: " + data_dir + "; nothing was changed");
    auto literal = session_.quote_literal(*conninfo);
    if (!literal.ok()) return literal.error();
    if (auto s = session_.exec("ALTER SYSTEM SET primary_conninfo = " + *literal); !s.ok())
      return s.error();
  }
  session_.close();
  const std::string from = conninfo_subset(
      *src_kv, {"host", "hostaddr", "port", "user", "dbname", "sslmode", "sslrootcert"});
  const auto t0 = clock_.now();
  if (Status s =
          control_.bootstrap(data_dir, from + "application_name=" + quote_conninfo_value(name_));
      !s.ok())
    return s;
  spdlog::info("{}: base backup of {} in place after {:.1f} s", where_, source.name,
               ms_since(t0) / 1000);
  if (Status s = wait_in_recovery("the bootstrap"); !s.ok()) return s;
  const Reattach r{source, host_port(*src_kv), *tli, data_dir, from};
  if (Status s = wait_attached(r); !s.ok()) return s;
  // Only now, with the new replica streaming, may the old data go.
  const bool keep = spec_.get("keep_old_data") == "true";
  if (Status s = control_.bootstrap_finish(data_dir, keep); !s.ok()) return s;
  note_ = keep ? "a replica of " + source.name + " now; the old data directory is kept beside " +
                     data_dir + " (keep_old_data)"
               : "a replica of " + source.name + " now; the old data directory was removed";
  return Status::Ok();
}

// primary_conninfo for streaming from `source`: its host, hostaddr, port,
// user, sslmode, sslrootcert, application_name = this stack, and its
// password when one is configured.
Result<std::string> PostgresStackDriver::replication_conninfo(const StackSpec& source,
                                                              const ConnKv& src_kv) {
  std::string conninfo =
      conninfo_subset(src_kv, {"host", "hostaddr", "port", "user", "sslmode", "sslrootcert"});
  conninfo += "application_name=" + quote_conninfo_value(name_);
  const std::string pw_ref = source_password_ref(source);
  if (pw_ref.empty()) return conninfo;
  // Stored in postgresql.auto.conf of this server; see the header. So it
  // goes to this server as well as to the source (host_policy.h).
  std::vector<std::string> origins = dsn_endpoints(source.get("dsn"));
  for (auto& o : dsn_endpoints(spec_.get("dsn"))) origins.push_back(std::move(o));
  auto pw = resolve_secret_for(pw_ref, origins);
  if (!pw.ok()) return Err("stack " + source.name + " password: " + pw.error().message);
  return conninfo + " password=" + quote_conninfo_value(*pw);
}

// The source's timeline: streaming is only "attached" once this server
// receives that timeline (a diverged server streams the old timeline up to
// the fork point and then stalls).
Result<std::string> PostgresStackDriver::source_timeline(const StackSpec& source) {
  auto session = connect_source(source);
  if (!session.ok()) return session.error();
  auto tli = session->exec(
      "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE " + kPrimaryTimeline + " END", where_);
  if (!tli.ok()) return Err("replication source " + source.name + ": " + tli.error().message);
  if (!tli->front()[0]) return Err("replication source " + source.name + " is not a primary");
  return *tli->front()[0];
}

Status PostgresStackDriver::reattach_replica(const Reattach& r) {
  if (auto s = session_.exec("SELECT pg_reload_conf()"); !s.ok()) return s.error();
  Status s = wait_streaming(r, kStreamLimit);
  if (s.ok()) return wait_replayed(r.source, kStreamLimit);
  // Not streaming the source's timeline. A replica that replayed past the
  // source's fork point (a former primary re-attached earlier without a
  // rewind) can never follow; its WAL receiver now names the timeline it
  // replays, which is what the check needs.
  auto diverged = divergence_from(r.source);
  if (diverged.ok() && !diverged->empty()) return rewind_and_wait(r, *diverged);
  return s;
}

// A primary (a fenced former primary). It can follow the source only if it
// wrote nothing after the point where the source's timeline forked from its
// own; a fenced primary may still have written background WAL (autovacuum,
// a checkpoint, a standby snapshot) after that point.
Status PostgresStackDriver::reattach_primary(const Reattach& r) {
  auto diverged = divergence_from(r.source);
  if (!diverged.ok()) return diverged.error();
  if (!diverged->empty()) return rewind_and_wait(r, *diverged);
  session_.close();  // the server goes down; and keep our socket out of the child
  const auto t0 = clock_.now();
  if (Status s = control_.restart_as_standby(r.data_dir); !s.ok()) return s;
  spdlog::debug("{}: restart-as-standby done after {:.1f} ms", where_, ms_since(t0));
  if (Status s = wait_in_recovery("restart-as-standby"); !s.ok()) return s;
  Status attached = wait_attached(r);
  if (attached.ok()) return attached;
  // It may have written WAL between the check and the stop (a standby
  // snapshot, a checkpoint): check again, now as a standby.
  auto again = divergence_from(r.source);
  if (again.ok() && !again->empty()) return rewind_and_wait(r, *again);
  return attached;
}

// Streaming on the source's timeline is not enough: if this server wrote
// WAL after the fork, its startup process fails only when replay reaches the
// fork. Attached = streaming, and replayed up to where the source is now.
Status PostgresStackDriver::wait_attached(const Reattach& r) {
  Status s = wait_streaming(r, kStreamLimit);
  return s.ok() ? wait_replayed(r.source, kStreamLimit) : s;
}

// Diverged: pg_rewind when the config allows it, else a clear refusal (the
// stack stays fenced).
Status PostgresStackDriver::rewind_and_wait(const Reattach& r, const std::string& how) {
  if (!rewind_allowed())
    return Err(where_ + ": cannot re-attach without rewriting its data: " + how +
               ". It stays fenced; set `pg_rewind: true` on the stack or its provider to let "
               "stackflip run pg_rewind (it discards the WAL written after the fork: none for a "
               "primary fenced before the switch; the writes a failover with allow_data_loss "
               "accepted to lose otherwise)");
  spdlog::warn("{}: {}; running pg_rewind (it discards that WAL)", where_, how);
  // pg_rewind finds the fork point from the source's control file, which
  // names the new timeline only once the checkpoint that follows the
  // promotion has completed (PostgreSQL spreads it over seconds). Before
  // that, pg_rewind reports "no rewind required", changes nothing, and the
  // server can never follow. A CHECKPOINT on the source settles it.
  if (Status s = checkpoint_source(r.source); !s.ok()) return s;
  session_.close();
  if (Status s = control_.rewind_as_standby(r.data_dir, r.rewind_from); !s.ok()) return s;
  // From here the WAL is gone, whatever follows: on record with the action.
  note_ = how + "; pg_rewind discarded the WAL past the fork";
  if (Status s = wait_in_recovery("pg_rewind"); !s.ok()) return s;
  return wait_attached(r);
}

Status PostgresStackDriver::checkpoint_source(const StackSpec& source) {
  auto session = connect_source(source);
  if (!session.ok()) return session.error();
  // Dirty buffers are written at full speed now: allow as long as pg_rewind.
  auto r = session->exec("SET statement_timeout = '300s'", where_);
  if (r.ok()) r = session->exec("CHECKPOINT", where_);
  if (!r.ok())
    return Err("replication source " + source.name + ": CHECKPOINT before pg_rewind failed (" +
               r.error().message +
               "); pg_rewind needs it to see the new timeline, and its role needs superuser or "
               "pg_checkpoint");
  return Status::Ok();
}

Status PostgresStackDriver::wait_replayed(const StackSpec& source, milliseconds limit) {
  auto session = connect_source(source);
  if (!session.ok()) return session.error();
  auto now = session->exec("SELECT pg_current_wal_lsn()::text", where_);
  if (!now.ok()) return Err("replication source " + source.name + ": " + now.error().message);
  const auto target = parse_lsn(now->front()[0].value_or(""));
  if (!target) return Err("replication source " + source.name + ": unreadable position");
  Backoff backoff = poll(limit);
  std::string state;
  for (;;) {
    auto r = session_.exec("SELECT pg_last_wal_replay_lsn()::text", /*retry=*/false);
    if (r.ok()) {
      auto replayed = parse_lsn(r->front()[0].value_or(""));
      if (replayed && *replayed >= *target) return Status::Ok();
      state = "replayed " + r->front()[0].value_or("nothing") + " of " + format_lsn(*target);
    } else {
      state = r.error().message;
    }
    if (backoff.expired())
      return Timeout(where_ + ": streams from " + source.name + " but has not replayed up to " +
                     format_lsn(*target) + " after " + std::to_string(limit.count() / 1000) +
                     " s (" + state + "); it may have diverged: see its server log");
    backoff.sleep();
  }
}

Status PostgresStackDriver::wait_in_recovery(const std::string& after) {
  Backoff backoff = poll(kRecoveryLimit);
  std::string last_error;
  for (;;) {
    auto r = session_.exec("SELECT pg_is_in_recovery()", /*retry=*/false);
    if (r.ok() && is_true(r->front()[0])) return Status::Ok();
    last_error = r.ok() ? "it is not in recovery" : r.error().message;
    if (backoff.expired())
      return Timeout(where_ + ": not back as a standby 60 s after " + after + ": " + last_error);
    backoff.sleep();
  }
}

// "Streaming": status streaming, from the source's host:port, on the
// source's current timeline.
Status PostgresStackDriver::wait_streaming(const Reattach& r, milliseconds limit) {
  const HostPort& src = r.endpoint;
  const std::string& source_name = r.source.name;
  const bool check_host = !src.host.empty() && src.host[0] != '/';
  Backoff backoff = poll(limit);
  std::string state = "pg_stat_wal_receiver is empty (no WAL receiver)";
  for (;;) {
    auto rows = session_.exec(
        "SELECT status, sender_host, sender_port::text, received_tli::text"
        " FROM pg_stat_wal_receiver");
    if (rows.ok() && !rows->empty()) {
      const PgRow& row = rows->front();
      const std::string status = row[0].value_or(""), host = row[1].value_or(""),
                        port = row[2].value_or(""), tli = row[3].value_or("");
      if (status == "streaming" && (!check_host || iequals(host, src.host)) && port == src.port &&
          tli == r.timeline)
        return Status::Ok();
      state = "WAL receiver " + status + " from " + host + ":" + port + " on timeline " + tli +
              " (source is on timeline " + r.timeline + ")";
    } else if (rows.ok()) {
      state = "pg_stat_wal_receiver is empty (no WAL receiver)";
    } else {
      state = rows.error().message;
    }
    if (backoff.expired())
      return Timeout(where_ + ": not streaming from " + source_name + " (" + src.text() +
                     ") after " + std::to_string(limit.count() / 1000) + " s: " + state +
                     ". If the WAL receiver keeps failing, its timeline may have diverged from " +
                     source_name + " (it wrote WAL after " + source_name +
                     " was promoted): see the server log; it needs pg_rewind or a new base "
                     "backup");
    backoff.sleep();
  }
}

// Empty when this server can follow `source`'s timeline; else a sentence
// saying how it diverged (postgres_wal.h). Reads this server's position and
// timeline and the source's timeline history (pg_read_file: superuser or
// pg_read_server_files).
Result<std::string> PostgresStackDriver::divergence_from(const StackSpec& source) {
  // A primary's insert position, or a standby's replayed one, and its
  // timeline. A standby's timeline is known only from its WAL receiver: the
  // last restartpoint's timeline may be older than the one it replays, and
  // claiming a divergence from it would send a healthy replica to
  // pg_rewind. Without a WAL receiver, no claim is made.
  auto mine = session_.exec(
      "SELECT CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text,"
      " CASE WHEN r THEN (SELECT received_tli FROM pg_stat_wal_receiver)::bigint"
      "  ELSE " +
      kPrimaryTimeline +
      " END,"
      " r,"
      " (SELECT setting FROM pg_settings WHERE name = 'wal_block_size'),"
      " (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')"
      " FROM (SELECT pg_is_in_recovery() AS r) s");
  if (!mine.ok()) return mine.error();
  const PgRow& me = mine->front();
  if (!me[1]) return std::string();
  auto my_tli = parse_timeline(*me[1]);
  if (!my_tli) return Err(where_ + ": unreadable timeline " + trim_for_message(*me[1]));
  TimelinePoint point{name_, parse_lsn(me[0].value_or("")), *my_tli};
  if (point.lsn && !is_true(me[2]))
    point.lsn = last_record_end(
        *point.lsn, uint64_t(std::max(0, parse_int(me[3].value_or(""), kDefaultWalBlockSize))),
        uint64_t(std::max(0, parse_int(me[4].value_or(""), kDefaultWalSegmentSize))));
  auto session = connect_source(source);
  if (!session.ok()) return session.error();
  auto hist = session->exec(
      "SELECT tli, CASE WHEN tli > 1 THEN pg_read_file('pg_wal/' ||"
      " lpad(upper(to_hex(tli)), 8, '0') || '.history') END FROM"
      " (SELECT " +
          kPrimaryTimeline + " AS tli) t",
      where_);
  if (!hist.ok()) return Err("replication source " + source.name + ": " + hist.error().message);
  auto src_tli = parse_timeline(hist->front()[0].value_or(""));
  if (!src_tli) return Err("replication source " + source.name + ": unreadable timeline");
  auto d = divergence(point, {source.name, std::nullopt, *src_tli}, hist->front()[1].value_or(""));
  if (!d.ok()) return Err(where_ + ": " + d.error().message);
  return d;
}

}  // namespace

std::unique_ptr<StackDriver> make_postgres_stack_driver(const ProviderConfig& provider,
                                                        const GroupSpec& group,
                                                        const std::string& stack, Clock& clock) {
  return std::make_unique<PostgresStackDriver>(provider, group, stack, clock);
}

}  // namespace stackflip
