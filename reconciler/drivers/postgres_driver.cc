#include "drivers/postgres_driver.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "config/conninfo.h"
#include "config/host_policy.h"
#include "core/provider_stats.h"
#include "sys/safe_file.h"
#include "sys/subprocess.h"
#include "config/secret.h"

namespace stackflip {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// WAL page header sizes (SizeOfXLogShortPHD / SizeOfXLogLongPHD); the long
// header starts each segment.
constexpr uint64_t kShortPageHeader = 24;
constexpr uint64_t kLongPageHeader = 40;

// Closes the session; one that was counted open (provider_stats.h) by its
// server is counted closed.
struct ConnDeleter {
  std::string server;  // "host:port" once the session is up; "" = not counted
  void operator()(PGconn* c) const {
    PQfinish(c);
    if (!server.empty()) postgres_session_closed(server);
  }
};
struct ResDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
using ResPtr = std::unique_ptr<PGresult, ResDeleter>;

using Row = std::vector<std::optional<std::string>>;
using Rows = std::vector<Row>;

std::string trim(std::string s) {
  auto ws = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && ws(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && ws(s[i])) ++i;
  s = s.substr(i);
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

bool iequals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int parse_int(const std::string& text, int fallback) {
  try {
    return text.empty() ? fallback : std::stoi(text);
  } catch (const std::exception&) {
    return fallback;
  }
}

// Short growing polls: 1 ms doubling to a 50 ms cap, never past `deadline`.
class Backoff {
 public:
  explicit Backoff(Clock::time_point deadline) : deadline_(deadline) {}
  bool expired() const { return Clock::now() >= deadline_; }
  void sleep() {
    auto left = std::chrono::duration_cast<milliseconds>(deadline_ - Clock::now());
    std::this_thread::sleep_for(std::max(milliseconds(0), std::min(step_, left)));
    step_ = std::min(step_ * 2, milliseconds(50));
  }

 private:
  Clock::time_point deadline_;
  milliseconds step_{1};
};

// Keyword → value of a conninfo string (only the keywords that are set).
Result<std::map<std::string, std::string>> parse_conninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    std::string msg = err ? trim(err) : "out of memory";
    if (err) PQfreemem(err);
    return Err("invalid conninfo: " + msg);
  }
  std::map<std::string, std::string> out;
  for (PQconninfoOption* o = opts; o->keyword; ++o)
    if (o->val && *o->val) out[o->keyword] = o->val;
  PQconninfoFree(opts);
  return out;
}

struct HostPort {
  std::string host, port;
  std::string text() const { return (host.empty() ? "(local socket)" : host) + ":" + port; }
};

HostPort host_port(const std::map<std::string, std::string>& kv) {
  HostPort hp;
  auto get = [&](const char* k) {
    auto it = kv.find(k);
    return it == kv.end() ? std::string() : it->second;
  };
  hp.host = get("host");
  if (hp.host.empty()) hp.host = get("hostaddr");
  hp.port = get("port");
  if (hp.port.empty()) hp.port = "5432";
  return hp;
}

bool same_endpoint(const HostPort& a, const HostPort& b) {
  return iequals(a.host, b.host) && a.port == b.port;
}

// Quotes a conninfo value: 'value' with \ and ' escaped.
std::string conninfo_quote(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

bool is_true(const std::optional<std::string>& v) { return v && (*v == "t" || *v == "on"); }

// The configured control_command with its program checked against the host
// policy (host_policy.h) and replaced by its real path.
Result<std::vector<std::string>> control_argv(std::vector<std::string> argv) {
  if (argv.empty()) return Err("empty control_command");
  if (const HostPolicy* policy = host_policy()) {
    auto program = policy->allow_command(argv[0]);
    if (!program.ok()) return program.error();
    argv[0] = *program;
  }
  return argv;
}

// Runs argv (no shell) in its own process group with stdin and stdout on
// /dev/null and stderr captured; kills the group after `limit`.
Status run_command(const std::vector<std::string>& argv, milliseconds limit,
                   const std::string& what) {
  if (argv.empty()) return Err(what + ": empty command");
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  // Never stackflip's own environment (it holds secrets): see subprocess.h.
  const HostPolicy* policy = host_policy();
  const std::vector<std::string> env_strings = child_environment(policy ? policy->command_env : std::vector<std::string>{});
  std::vector<char*> envp;
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Err(what + ": pipe: " + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Err(what + ": fork: " + std::strerror(errno));
  }
  if (pid == 0) {
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(fds[1], 2);
    close_range(3, ~0U, 0);
    execvpe(cargv[0], cargv.data(), envp.data());
    const char msg[] = "exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::string err;
  auto drain = [&] {
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
      if (err.size() < 64 * 1024) err.append(buf, static_cast<size_t>(n));
  };
  const auto deadline = Clock::now() + limit;
  int status = 0;
  bool timed_out = false;
  for (;;) {
    // A grandchild (a started server) may keep the pipe open: wait for the
    // command's exit, not for EOF.
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (Clock::now() >= deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    poll(&p, 1, 5);
    drain();
  }
  drain();
  close(fds[0]);
  std::string tail = trim(err);
  if (tail.size() > 500) tail = "..." + tail.substr(tail.size() - 500);
  std::string cmd = argv[0];
  if (timed_out)
    return Timeout(what + ": " + cmd + " did not finish within " +
                   std::to_string(limit.count() / 1000) + " s; killed" +
                   (tail.empty() ? "" : ": " + tail));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  std::string how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                      : "killed by signal " + std::to_string(WTERMSIG(status));
  return Err(what + ": " + cmd + " " + how + (tail.empty() ? "" : ": " + tail));
}

std::string find_pg_ctl() {
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      std::string dir = p.substr(start, end - start);
      if (!dir.empty()) {
        std::string cand = dir + "/pg_ctl";
        if (access(cand.c_str(), X_OK) == 0) return cand;
      }
      start = end + 1;
    }
  }
  return "/usr/lib/postgresql/15/bin/pg_ctl";
}

class PostgresStackDriver : public StackDriver {
 public:
  PostgresStackDriver(const ProviderConfig& provider, const GroupSpec& group,
                      const std::string& stack)
      : provider_(provider), group_(group), name_(stack) {
    auto it = group.stacks.find(stack);
    if (it != group.stacks.end()) spec_ = it->second;
    connect_timeout_ms_ = std::max(1, parse_int(provider.get("connect_timeout_ms"), 2000));
    statement_timeout_ms_ = std::max(1, parse_int(provider.get("statement_timeout_ms"), 5000));
  }

  StackObs observe() override {
    StackObs obs;
    auto rows = exec(
        "SELECT r,"
        " CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,"
        " CASE WHEN r THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),"
        "                           (SELECT timeline_id FROM pg_control_checkpoint()))::bigint"
        "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END,"
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
      obs.reachable = false;
      obs.error = rows.ok() ? where() + ": observe returned no row" : rows.error().message;
      return obs;
    }
    const Row& row = rows->front();
    obs.reachable = true;
    obs.maintenance = is_true(row[3]);
    DatabaseObs db;
    const bool replica = is_true(row[0]);
    db.role = replica ? Role::replica : Role::primary;
    if (row[1]) db.lsn = parse_lsn(*row[1]);
    if (row[2]) db.timeline = std::stoll(*row[2]);
    if (replica) db.streaming = row[5] && *row[5] == "streaming";
    if (row[6]) db.system_id = *row[6];
    if (row[7]) db.started_at = *row[7];
    if (replica && row[4] && !row[4]->empty()) {
      auto kv = parse_conninfo(*row[4]);
      if (!kv.ok()) {
        obs.error = where() + ": primary_conninfo: " + kv.error().message;
      } else {
        HostPort up = host_port(*kv);
        for (const auto& [name, stack] : group_.stacks) {
          if (name == name_) continue;
          auto skv = parse_conninfo(stack.get("dsn"));
          if (skv.ok() && same_endpoint(host_port(*skv), up)) {
            db.upstream = name;
            break;
          }
        }
        if (!db.upstream)
          obs.error = where() + ": replicating from " + up.text() +
                      ", which is not the dsn host:port of any stack of group " + group_.name;
      }
    }
    obs.database = db;
    return obs;
  }

  Status set_maintenance(bool on) override {
    const auto t0 = Clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };
    if (on) checkpoint_before_fence();
    auto r = exec(on ? "ALTER SYSTEM SET default_transaction_read_only = on"
                     : "ALTER SYSTEM RESET default_transaction_read_only");
    if (!r.ok()) return r.error();
    // A fenced server should write as little WAL as it can: WAL it writes
    // after a new primary forked means pg_rewind before it can follow.
    // Autovacuum is its main source (it vacuums freshly inserted tables).
    r = exec(on ? "ALTER SYSTEM SET autovacuum = off" : "ALTER SYSTEM RESET autovacuum");
    if (!r.ok()) return r.error();
    if (auto s = exec("SELECT pg_reload_conf()"); !s.ok()) return s.error();

    // pg_reload_conf() only signals the postmaster; new sessions get the new
    // value once it has re-read the files. Wait for that before terminating
    // sessions, so clients that reconnect at once start read-only.
    const std::string want = on ? "on" : "off";
    Backoff backoff(deadline(statement_timeout_ms_));
    std::string seen = "?", last_error;
    for (;;) {
      auto c = open_session();
      if (c.ok()) {
        auto v = exec_on(c->get(), "SHOW default_transaction_read_only");
        if (v.ok() && !v->empty() && v->front()[0]) seen = *v->front()[0];
        if (!v.ok()) last_error = v.error().message;
      } else {
        last_error = c.error().message;
      }
      if (seen == want) {
        spdlog::debug("{}: new sessions see default_transaction_read_only={} after {:.1f} ms",
                      where(), want, elapsed());
        break;
      }
      if (backoff.expired())
        return Timeout(where() + ": default_transaction_read_only is still " + seen +
                       " for new sessions after reload (set in postgresql.conf, or per role or "
                       "database?)" +
                       (last_error.empty() ? "" : "; last error: " + last_error));
      backoff.sleep();
    }
    if (!on) return Status::Ok();
    // Terminate without pg_terminate_backend's own wait (it polls every
    // 100 ms) and wait here with short polls until the sessions are gone.
    auto t = exec(
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
    spdlog::debug("{}: terminate {} at {:.1f} ms", where(), pids, elapsed());
    if (pids == "{}") return Status::Ok();
    Backoff gone(deadline(statement_timeout_ms_));
    for (;;) {
      auto n = exec("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY('" + pids + "'::int[])");
      if (!n.ok()) return n.error();
      if (n->front()[0] == "0") {
        spdlog::debug("{}: sessions gone at {:.1f} ms", where(), elapsed());
        return Status::Ok();
      }
      if (gone.expired())
        return Timeout(where() + ": " + n->front()[0].value_or("?") +
                       " terminated session(s) still running after " +
                       std::to_string(statement_timeout_ms_) + " ms");
      gone.sleep();
    }
  }

  // Before fencing a writable primary: finish any checkpoint in progress
  // (a spread one runs for minutes, the one after a promotion for seconds).
  // Otherwise its record lands after the fence, maybe after the standby
  // stopped replicating (the promotion's guard then sees it behind) or after
  // it was promoted (then this server needs pg_rewind to follow). Writes go
  // on meanwhile; best effort, bounded by the statement timeout.
  void checkpoint_before_fence() {
    auto r = exec("SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only')"
                  " = 'off'");
    if (!r.ok() || !is_true(r->front()[0])) return;
    const auto t0 = Clock::now();
    if (auto c = exec("CHECKPOINT", /*retry=*/false); !c.ok())
      spdlog::warn("{}: CHECKPOINT before the fence did not finish ({}); fencing anyway", where(),
                   c.error().message);
    spdlog::debug("{}: CHECKPOINT before the fence took {:.1f} ms", where(),
                  std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }

  Status stop_replication() override {
    auto r = exec("SELECT pg_is_in_recovery()");
    if (!r.ok()) return r.error();
    if (!is_true(r->front()[0])) return Status::Ok();  // a primary replicates from nobody
    if (auto s = exec("ALTER SYSTEM SET primary_conninfo = ''"); !s.ok()) return s.error();
    if (auto s = exec("SELECT pg_reload_conf()"); !s.ok()) return s.error();
    Backoff backoff(deadline(statement_timeout_ms_));
    for (;;) {
      auto n = exec("SELECT count(*) FROM pg_stat_wal_receiver");
      if (!n.ok()) return n.error();
      if (n->front()[0] == "0") return Status::Ok();
      if (backoff.expired())
        return Timeout(where() + ": the WAL receiver is still running " +
                       std::to_string(statement_timeout_ms_) +
                       " ms after clearing primary_conninfo");
      backoff.sleep();
    }
  }

  Status promote() override {
    auto r = exec("SELECT pg_is_in_recovery()");
    if (!r.ok()) return r.error();
    if (!is_true(r->front()[0])) return Status::Ok();
    const auto t0 = Clock::now();
    auto p = exec("SELECT pg_promote(wait => false)");
    if (!p.ok()) return p.error();
    if (!is_true(p->front()[0])) return Err(where() + ": pg_promote() could not signal promotion");
    Backoff backoff(deadline(std::max(statement_timeout_ms_, 10000)));
    for (;;) {
      auto q = exec("SELECT pg_is_in_recovery()");
      if (q.ok() && !is_true(q->front()[0])) {
        spdlog::debug("{}: promoted after {:.1f} ms", where(),
                      std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        return Status::Ok();
      }
      if (backoff.expired())
        return Timeout(where() + ": still in recovery after promotion was requested" +
                       (q.ok() ? "" : ": " + q.error().message));
      backoff.sleep();
    }
  }

  Status start_replication(const StackSpec& source) override {
    if (source.name == name_) return Err(where() + ": cannot replicate from itself");
    auto src_kv = parse_conninfo(source.get("dsn"));
    if (!src_kv.ok()) return Err("stack " + source.name + " dsn: " + src_kv.error().message);
    const HostPort src = host_port(*src_kv);

    std::string conninfo;
    for (const char* k : {"host", "hostaddr", "port", "user", "sslmode", "sslrootcert"}) {
      auto it = src_kv->find(k);
      if (it != src_kv->end()) conninfo += std::string(k) + "=" + conninfo_quote(it->second) + " ";
    }
    conninfo += "application_name=" + conninfo_quote(name_);
    // The source's password: its stack's, else (same provider) the provider's.
    const std::string pw_ref = source_password_ref(source);
    if (!pw_ref.empty()) {
      // Stored in postgresql.auto.conf of this server; see the header. So it
      // goes to this server as well as to the source (host_policy.h).
      std::vector<std::string> origins = dsn_endpoints(source.get("dsn"));
      for (auto& o : dsn_endpoints(spec_.get("dsn"))) origins.push_back(std::move(o));
      auto pw = resolve_secret_for(pw_ref, origins);
      if (!pw.ok()) return Err("stack " + source.name + " password: " + pw.error().message);
      conninfo += " password=" + conninfo_quote(*pw);
    }

    auto state = exec("SELECT pg_is_in_recovery(), current_setting('data_directory')");
    if (!state.ok()) return state.error();
    const bool replica = is_true(state->front()[0]);
    const std::string data_dir = state->front()[1].value_or("");

    char* lit = PQescapeLiteral(conn_.get(), conninfo.c_str(), conninfo.size());
    if (!lit) return Err(where() + ": cannot quote primary_conninfo");
    std::string sql = std::string("ALTER SYSTEM SET primary_conninfo = ") + lit;
    PQfreemem(lit);
    if (auto s = exec(sql); !s.ok()) return s.error();

    // The source's timeline: streaming is only "attached" once this server
    // receives that timeline (a diverged server streams the old timeline up
    // to the fork point and then stalls).
    auto src_session = open_session(source.get("dsn"), source_password_ref(source));
    if (!src_session.ok())
      return Err("replication source " + source.name + ": " + src_session.error().message);
    auto tli =
        exec_on(src_session->get(),
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE"
                " ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint"
                " END");
    src_session->reset();
    if (!tli.ok()) return Err("replication source " + source.name + ": " + tli.error().message);
    if (!tli->front()[0]) return Err("replication source " + source.name + " is not a primary");
    const std::string source_tli = *tli->front()[0];

    const std::string rewind_from = rewind_conninfo(*src_kv);
    if (replica) {
      if (auto s = exec("SELECT pg_reload_conf()"); !s.ok()) return s.error();
      Status s = wait_streaming(source.name, src, source_tli, milliseconds(10000));
      if (s.ok()) return wait_replayed(source, milliseconds(10000));
      // Not streaming the source's timeline. A replica that replayed past the
      // source's fork point (a former primary re-attached earlier without a
      // rewind) can never follow; its WAL receiver now names the timeline it
      // replays, which is what the check needs.
      auto diverged = divergence(source, src_session_dsn(source));
      if (diverged.ok() && !diverged->empty())
        return rewind_and_wait(data_dir, rewind_from, source, src, source_tli, *diverged);
      return s;
    }

    // A primary (a fenced former primary). It can follow the source only if
    // it wrote nothing after the point where the source's timeline forked
    // from its own; a fenced primary may still have written background WAL
    // (autovacuum, a checkpoint, a standby snapshot) after that point.
    auto diverged = divergence(source, src_session_dsn(source));
    if (!diverged.ok()) return diverged.error();
    if (!diverged->empty()) return rewind_and_wait(data_dir, rewind_from, source, src, source_tli, *diverged);
    conn_.reset();  // the server goes down; and keep our socket out of the child
    const auto t0 = Clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };
    Status restarted = restart_as_standby(data_dir);
    if (!restarted.ok()) return restarted;
    spdlog::debug("{}: restart-as-standby done after {:.1f} ms", where(), elapsed());
    if (Status s = wait_in_recovery("restart-as-standby"); !s.ok()) return s;
    Status streaming = wait_streaming(source.name, src, source_tli, milliseconds(10000));
    // Streaming on the new timeline is not enough: if this server wrote WAL
    // after the fork (between the check and the stop), its startup process
    // fails only when replay reaches the fork. Attached = replayed up to
    // where the source is now.
    if (streaming.ok()) streaming = wait_replayed(source, milliseconds(10000));
    if (streaming.ok()) return streaming;
    // It may have written WAL between the check and the stop (a standby
    // snapshot, a checkpoint): check again, now as a standby.
    auto again = divergence(source, src_session_dsn(source));
    if (again.ok() && !again->empty())
      return rewind_and_wait(data_dir, rewind_from, source, src, source_tli, *again);
    return streaming;
  }

  // Diverged: pg_rewind when the config allows it, else a clear refusal (the
  // stack stays fenced).
  Status rewind_and_wait(const std::string& data_dir, const std::string& rewind_from,
                         const StackSpec& source, const HostPort& src,
                         const std::string& source_tli, const std::string& how) {
    if (!rewind_allowed())
      return Err(where() + ": cannot re-attach without rewriting its data: " + how +
                 ". It stays fenced; set `pg_rewind: true` on the stack or its provider to let "
                 "stackflip run pg_rewind (it discards only WAL written after the fork; a fenced "
                 "primary has no commits the new primary lacks)");
    spdlog::warn("{}: {}; running pg_rewind (it discards only that WAL)", where(), how);
    // pg_rewind finds the fork point from the source's control file, which
    // names the new timeline only once the checkpoint that follows the
    // promotion has completed (PostgreSQL spreads it over seconds). Before
    // that, pg_rewind reports "no rewind required", changes nothing, and the
    // server can never follow. A CHECKPOINT on the source settles it.
    if (Status s = checkpoint_source(source); !s.ok()) return s;
    conn_.reset();
    if (Status s = rewind_as_standby(data_dir, rewind_from); !s.ok()) return s;
    if (Status s = wait_in_recovery("pg_rewind"); !s.ok()) return s;
    Status s = wait_streaming(source.name, src, source_tli, milliseconds(10000));
    return s.ok() ? wait_replayed(source, milliseconds(10000)) : s;
  }

  Status checkpoint_source(const StackSpec& source) {
    auto session = open_session(source.get("dsn"), source_password_ref(source));
    if (!session.ok()) return Err("replication source " + source.name + ": " + session.error().message);
    // Dirty buffers are written at full speed now: allow as long as pg_rewind.
    auto r = exec_on(session->get(), "SET statement_timeout = '300s'");
    if (r.ok()) r = exec_on(session->get(), "CHECKPOINT");
    if (!r.ok())
      return Err("replication source " + source.name + ": CHECKPOINT before pg_rewind failed (" +
                 r.error().message +
                 "); pg_rewind needs it to see the new timeline, and its role needs superuser or "
                 "pg_checkpoint");
    return Status::Ok();
  }

  Status wait_replayed(const StackSpec& source, milliseconds limit) {
    auto session = open_session(source.get("dsn"), source_password_ref(source));
    if (!session.ok()) return Err("replication source " + source.name + ": " + session.error().message);
    auto now = exec_on(session->get(), "SELECT pg_current_wal_lsn()::text");
    if (!now.ok()) return Err("replication source " + source.name + ": " + now.error().message);
    const auto target = parse_lsn(now->front()[0].value_or(""));
    if (!target) return Err("replication source " + source.name + ": unreadable position");
    Backoff backoff(Clock::now() + limit);
    std::string state;
    for (;;) {
      auto r = exec("SELECT pg_last_wal_replay_lsn()::text", /*retry=*/false);
      if (r.ok()) {
        auto replayed = parse_lsn(r->front()[0].value_or(""));
        if (replayed && *replayed >= *target) return Status::Ok();
        state = "replayed " + r->front()[0].value_or("nothing") + " of " + format_lsn(*target);
      } else {
        state = r.error().message;
      }
      if (backoff.expired())
        return Timeout(where() + ": streams from " + source.name + " but has not replayed up to " +
                       format_lsn(*target) + " after " + std::to_string(limit.count() / 1000) +
                       " s (" + state + "); it may have diverged: see its server log");
      backoff.sleep();
    }
  }

  Status wait_in_recovery(const std::string& after) {
    Backoff backoff(deadline(60000));
    std::string last_error;
    for (;;) {
      auto r = exec("SELECT pg_is_in_recovery()", /*retry=*/false);
      if (r.ok() && is_true(r->front()[0])) return Status::Ok();
      last_error = r.ok() ? "it is not in recovery" : r.error().message;
      if (backoff.expired())
        return Timeout(where() + ": not back as a standby 60 s after " + after + ": " + last_error);
      backoff.sleep();
    }
  }

 private:
  static Clock::time_point deadline(int ms) { return Clock::now() + milliseconds(ms); }

  // "postgres stack NAME (host:port)" — never the full dsn.
  std::string where() const {
    std::string ep;
    auto kv = parse_conninfo(spec_.get("dsn"));
    if (kv.ok()) ep = " (" + host_port(*kv).text() + ")";
    return "postgres stack " + name_ + ep;
  }

  // The source's password: its stack's, else (same provider) the provider's.
  std::string source_password_ref(const StackSpec& source) const {
    std::string ref = source.get("password");
    if (ref.empty() && source.provider == provider_.name) ref = provider_.get("password");
    return ref;
  }

  Result<ConnPtr> open_session() {
    std::string pw_ref = spec_.get("password");
    if (pw_ref.empty()) pw_ref = provider_.get("password");
    return open_session(spec_.get("dsn"), pw_ref);
  }

  Result<ConnPtr> open_session(const std::string& dsn, const std::string& pw_ref) {
    auto kv = parse_conninfo(dsn);
    if (!kv.ok()) return Err("postgres stack " + name_ + " dsn: " + kv.error().message);
    std::optional<std::string> password;
    if (!pw_ref.empty()) {
      auto pw = resolve_secret_for(pw_ref, dsn_endpoints(dsn));
      if (!pw.ok()) return Err("postgres stack " + name_ + " password: " + pw.error().message);
      password = *pw;
    }
    std::string options = (*kv).count("options") ? (*kv)["options"] + " " : "";
    options += "-c statement_timeout=" + std::to_string(statement_timeout_ms_);
    const std::string connect_timeout = std::to_string((connect_timeout_ms_ + 999) / 1000);

    // Order matters: keywords before dbname may be overridden by the dsn,
    // keywords after it override the dsn.
    std::vector<const char*> keys = {"connect_timeout", "application_name", "dbname", "options"};
    std::vector<const char*> vals = {connect_timeout.c_str(), "stackflip", dsn.c_str(),
                                     options.c_str()};
    if (password) {
      keys.push_back("password");
      vals.push_back(password->c_str());
    }
    keys.push_back(nullptr);
    vals.push_back(nullptr);
    ConnPtr c(PQconnectdbParams(keys.data(), vals.data(), /*expand_dbname=*/1));
    if (!c) return Err(where() + ": out of memory");
    if (PQstatus(c.get()) != CONNECTION_OK)
      return Err(where() + ": " + trim(PQerrorMessage(c.get())));
    const char* host = PQhost(c.get());
    const char* port = PQport(c.get());
    std::string server = std::string(host ? host : "") + ":" + (port ? port : "");
    postgres_session_opened(server);
    c.get_deleter().server = std::move(server);
    return c;
  }

  Result<Rows> exec_on(PGconn* c, const std::string& sql) {
    ResPtr res(PQexec(c, sql.c_str()));
    if (!res) return Err(where() + ": " + trim(PQerrorMessage(c)));
    auto st = PQresultStatus(res.get());
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      std::string msg = trim(PQresultErrorMessage(res.get()));
      const char* code = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
      Error e = Err(where() + ": " + msg);
      // 57014 = query_canceled (statement_timeout).
      if (code && std::strcmp(code, "57014") == 0) e.timeout = true;
      // Errors that asking again cannot change (issue 11), not retried by
      // apply: class 42 (insufficient privilege, e.g. pg_promote not granted;
      // undefined function) and 0A000 (feature not supported).
      if (code && (std::strncmp(code, "42", 2) == 0 || std::strcmp(code, "0A000") == 0))
        e.permanent = true;
      return e;
    }
    Rows rows;
    for (int i = 0; i < PQntuples(res.get()); ++i) {
      Row row;
      for (int j = 0; j < PQnfields(res.get()); ++j)
        row.push_back(PQgetisnull(res.get(), i, j)
                          ? std::nullopt
                          : std::optional<std::string>(PQgetvalue(res.get(), i, j)));
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // Runs `sql` on the kept session, (re)connecting as needed; a statement
  // that fails because the connection was lost is retried once.
  Result<Rows> exec(const std::string& sql, bool retry = true) {
    for (int attempt = 0;; ++attempt) {
      if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
        conn_.reset();
        auto c = open_session();
        if (!c.ok()) return c.error();
        conn_ = std::move(*c);
      }
      auto r = exec_on(conn_.get(), sql);
      if (r.ok() || PQstatus(conn_.get()) == CONNECTION_OK || !retry || attempt > 0) {
        if (!r.ok() && PQstatus(conn_.get()) != CONNECTION_OK) conn_.reset();
        return r;
      }
      conn_.reset();
    }
  }

  Status wait_streaming(const std::string& source_name, const HostPort& src,
                        const std::string& source_tli, milliseconds limit) {
    const bool check_host = !src.host.empty() && src.host[0] != '/';
    Backoff backoff(Clock::now() + limit);
    std::string state = "pg_stat_wal_receiver is empty (no WAL receiver)";
    for (;;) {
      auto r = exec(
          "SELECT status, sender_host, sender_port::text, received_tli::text"
          " FROM pg_stat_wal_receiver");
      if (r.ok() && !r->empty()) {
        const Row& row = r->front();
        const std::string status = row[0].value_or(""), host = row[1].value_or(""),
                          port = row[2].value_or(""), tli = row[3].value_or("");
        if (status == "streaming" && (!check_host || iequals(host, src.host)) && port == src.port &&
            tli == source_tli)
          return Status::Ok();
        state = "WAL receiver " + status + " from " + host + ":" + port + " on timeline " + tli +
                " (source is on timeline " + source_tli + ")";
      } else if (r.ok()) {
        state = "pg_stat_wal_receiver is empty (no WAL receiver)";
      } else {
        state = r.error().message;
      }
      if (backoff.expired())
        return Timeout(where() + ": not streaming from " + source_name + " (" + src.text() +
                       ") after " + std::to_string(limit.count() / 1000) + " s: " + state +
                       ". If the WAL receiver keeps failing, its timeline may have diverged from " +
                       source_name + " (it wrote WAL after " + source_name +
                       " was promoted): see the server log; it needs pg_rewind or a new base "
                       "backup");
      backoff.sleep();
    }
  }

  std::string src_session_dsn(const StackSpec& source) const { return source.get("dsn"); }

  bool rewind_allowed() const {
    auto it = spec_.settings.find("pg_rewind");
    if (it != spec_.settings.end()) return it->second == "true";
    return provider_.get("pg_rewind") == "true";
  }

  // The source's conninfo for pg_rewind: host, port, user, dbname.
  std::string rewind_conninfo(const std::map<std::string, std::string>& src_kv) const {
    std::string c;
    for (const char* k : {"host", "hostaddr", "port", "user", "dbname", "sslmode", "sslrootcert"}) {
      auto it = src_kv.find(k);
      if (it != src_kv.end()) c += std::string(k) + "=" + conninfo_quote(it->second) + " ";
    }
    return c;
  }

  // Empty when this (primary) server can follow `source`'s timeline; else a
  // sentence saying how it diverged. Reads the source's timeline history
  // (pg_read_file: superuser or pg_read_server_files) and this server's
  // insert position.
  Result<std::string> divergence(const StackSpec& source, const std::string& source_dsn) {
    // A primary's insert position, or a standby's replayed one, and its
    // timeline. A standby's timeline is known only from its WAL receiver:
    // the last restartpoint's timeline may be older than the one it replays,
    // and claiming a divergence from it would send a healthy replica to
    // pg_rewind. Without a WAL receiver, no claim is made.
    auto mine = exec(
        "SELECT CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text,"
        " CASE WHEN r THEN (SELECT received_tli FROM pg_stat_wal_receiver)::bigint"
        "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END,"
        " r,"
        " (SELECT setting FROM pg_settings WHERE name = 'wal_block_size'),"
        " (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')"
        " FROM (SELECT pg_is_in_recovery() AS r) s");
    if (!mine.ok()) return mine.error();
    const Row& me = mine->front();
    if (!me[1]) return std::string();
    auto my_lsn = parse_lsn(me[0].value_or(""));
    const int64_t my_tli = std::stoll(*me[1]);
    // The insert position of a primary whose last record ends exactly at a
    // page boundary points past the next page's header; the fork point (the
    // end of the last record the source replayed) is the boundary itself.
    if (my_lsn && !is_true(me[2])) {
      const uint64_t block = std::stoull(me[3].value_or("8192"));
      const uint64_t segment = std::stoull(me[4].value_or("16777216"));
      if (block && segment) {
        if (*my_lsn % segment == kLongPageHeader) *my_lsn -= kLongPageHeader;
        else if (*my_lsn % block == kShortPageHeader) *my_lsn -= kShortPageHeader;
      }
    }
    auto session = open_session(source_dsn, source_password_ref(source));
    if (!session.ok()) return Err("replication source " + source.name + ": " + session.error().message);
    auto hist = exec_on(session->get(),
                        "SELECT tli, CASE WHEN tli > 1 THEN pg_read_file('pg_wal/' ||"
                        " lpad(upper(to_hex(tli)), 8, '0') || '.history') END FROM"
                        " (SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))"
                        "::bit(32)::bigint AS tli) t");
    if (!hist.ok()) return Err("replication source " + source.name + ": " + hist.error().message);
    const int64_t src_tli = std::stoll(hist->front()[0].value_or("0"));
    if (src_tli == my_tli) return std::string();  // same timeline: nothing forked
    // Lines "parentTLI<TAB>switchpoint<TAB>reason": where each ancestor ended.
    std::istringstream lines(hist->front()[1].value_or(""));
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      int64_t parent = 0;
      std::string switchpoint;
      if (!(fields >> parent >> switchpoint) || parent != my_tli) continue;
      auto fork = parse_lsn(switchpoint);
      if (!fork || !my_lsn) return Err(where() + ": cannot read positions to compare timelines");
      if (*my_lsn <= *fork) return std::string();
      return name_ + " wrote WAL up to " + format_lsn(*my_lsn) + " on timeline " +
             std::to_string(my_tli) + ", past " + format_lsn(*fork) + " where " + source.name +
             "'s timeline " + std::to_string(src_tli) + " forked from it";
    }
    return name_ + "'s timeline " + std::to_string(my_tli) + " is not in the history of " +
           source.name + "'s timeline " + std::to_string(src_tli);
  }

  // The data directory as root may touch it: opened once without following
  // a link (safe_file.h), owned by the user PostgreSQL runs as (as root: any
  // user but root; otherwise ourselves), and holding a PG_VERSION of that
  // user. Every file stackflip itself reads or writes there goes through
  // this descriptor; PostgreSQL's own programs run as that user.
  Result<OwnedDir> open_data_dir(const std::string& data_dir) const {
    const std::string what = where() + ": data directory " + data_dir;
    if (data_dir.empty()) return Err(where() + ": unknown data_directory");
    std::optional<uid_t> expected;
    if (geteuid() != 0) expected = geteuid();
    auto dir = open_owned_dir(data_dir, expected);
    if (!dir.ok()) return Err(where() + ": " + dir.error().message);
    struct stat st {};
    if (fstatat(dir->fd(), "PG_VERSION", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != dir->uid())
      return Err(what + " has no PG_VERSION file of its owner: not a PostgreSQL data directory");
    return dir;
  }

  // standby.signal must be absent or a regular file of the owner before the
  // server is stopped: a planted link is refused while the server still runs.
  Status check_signal_name(const OwnedDir& dir) const {
    struct stat st {};
    if (fstatat(dir.fd(), "standby.signal", &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::Ok();
    if (S_ISREG(st.st_mode) && st.st_uid == dir.uid() && st.st_nlink == 1) return Status::Ok();
    return Err(where() + ": " + dir.path() + "/standby.signal " +
               (S_ISLNK(st.st_mode) ? "is a symbolic link" : "is not a regular file of the owner") +
               ": refused, the server was left running (remove it and apply again)");
  }

  // pg_rewind from the source, then start as a standby. The server's own
  // configuration files are kept: pg_rewind copies the source's (its
  // listen_addresses, its primary_conninfo). Only regular files of the owner
  // are kept (read without following links, written back as the owner);
  // anything else named *.conf is left to pg_rewind, with a warning.
  Status rewind_as_standby(const std::string& data_dir, const std::string& source_conninfo) {
    const std::string what = where() + ": rewind";
    if (data_dir.empty()) return Err(what + ": unknown data_directory");
    auto it = spec_.lists.find("control_command");
    if (it != spec_.lists.end() && !it->second.empty()) {
      auto argv = control_argv(it->second);
      if (!argv.ok()) return Err(what + ": " + argv.error().message);
      argv->insert(argv->end(), {"rewind", data_dir, source_conninfo});
      return run_command(*argv, milliseconds(300000), what);
    }
    auto dir = open_data_dir(data_dir);
    if (!dir.ok()) return dir.error();
    if (Status s = check_signal_name(*dir); !s.ok()) return s;
    std::vector<std::string> as_owner = owner_prefix(*dir);
    auto with_owner = [&](std::vector<std::string> argv) {
      argv.insert(argv.begin(), as_owner.begin(), as_owner.end());
      return argv;
    };
    const std::string pg_ctl = find_pg_ctl();
    const std::string bin = std::filesystem::path(pg_ctl).has_parent_path()
                                ? std::filesystem::path(pg_ctl).parent_path().string() + "/"
                                : std::string();
    Status s = run_command(with_owner({pg_ctl, "-D", data_dir, "-m", "fast", "-w", "stop"}),
                           milliseconds(60000), what + " (stop)");
    if (!s.ok()) return s;
    auto names = list_dir(dir->fd());
    if (!names.ok()) return Err(what + ": " + dir->path() + ": " + names.error().message);
    std::map<std::string, std::string> confs;  // file name -> contents
    for (const std::string& name : *names) {
      if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".conf") != 0) continue;
      auto text = read_owned_file(dir->fd(), name, dir->uid(), 16 << 20);
      if (!text.ok()) {
        spdlog::warn("{}: not kept across pg_rewind: {}/{}", what, dir->path(),
                     text.error().message);
        continue;
      }
      confs[name] = std::move(*text);
    }
    s = run_command(with_owner({bin + "pg_rewind", "--target-pgdata=" + data_dir,
                                "--source-server=" + source_conninfo}),
                    milliseconds(300000), what + " (pg_rewind)");
    for (const auto& [name, text] : confs) {
      Status w =
          write_file_as_owner(dir->fd(), name, text, dir->uid(), dir->gid(), WriteMode::kReplace);
      if (!w.ok() && s.ok()) s = Err(what + ": restoring " + dir->path() + ": " + w.message());
    }
    if (!s.ok()) return s;
    return start_as_standby(*dir, with_owner);
  }

  // As root, PostgreSQL's programs run as the data directory's owner.
  std::vector<std::string> owner_prefix(const OwnedDir& dir) const {
    if (geteuid() == 0 && dir.uid() != 0)
      if (passwd* pw = getpwuid(dir.uid())) return {"runuser", "-u", pw->pw_name, "--"};
    return {};
  }

  template <class WithOwner>
  Status start_as_standby(const OwnedDir& dir, WithOwner with_owner) {
    Status s = write_file_as_owner(dir.fd(), "standby.signal", "", dir.uid(), dir.gid(),
                                   WriteMode::kReplace);
    if (!s.ok()) return Err(where() + ": start as standby: " + dir.path() + ": " + s.message());
    const std::string log =
        (std::filesystem::path(dir.path()).parent_path() / (name_ + "-restart.log")).string();
    return run_command(with_owner({find_pg_ctl(), "-D", dir.path(), "-w", "-l", log, "start"}),
                       milliseconds(60000), where() + ": start as standby");
  }

  Status restart_as_standby(const std::string& data_dir) {
    const std::string what = where() + ": restart-as-standby";
    if (data_dir.empty()) return Err(what + ": unknown data_directory");
    auto it = spec_.lists.find("control_command");
    if (it != spec_.lists.end() && !it->second.empty()) {
      auto argv = control_argv(it->second);
      if (!argv.ok()) return Err(what + ": " + argv.error().message);
      argv->push_back("restart-as-standby");
      argv->push_back(data_dir);
      return run_command(*argv, milliseconds(60000), what);
    }
    // Default: local pg_ctl. Immediate stop on purpose: a clean (fast)
    // shutdown writes a checkpoint record after the point where the new
    // primary's timeline forked, and the server could then not follow it.
    // The server is fenced, and crash recovery replays everything committed.
    auto dir = open_data_dir(data_dir);
    if (!dir.ok()) return dir.error();
    if (Status s = check_signal_name(*dir); !s.ok()) return s;
    std::vector<std::string> as_owner = owner_prefix(*dir);
    auto with_owner = [&](std::vector<std::string> argv) {
      argv.insert(argv.begin(), as_owner.begin(), as_owner.end());
      return argv;
    };
    const std::string pg_ctl = find_pg_ctl();
    Status s = run_command(with_owner({pg_ctl, "-D", data_dir, "-m", "immediate", "-w", "stop"}),
                           milliseconds(60000), what + " (stop)");
    if (!s.ok()) return s;
    spdlog::debug("{}: stopped", where());
    return start_as_standby(*dir, with_owner);
  }

  ProviderConfig provider_;
  GroupSpec group_;
  std::string name_;
  StackSpec spec_;
  int connect_timeout_ms_ = 2000;
  int statement_timeout_ms_ = 5000;
  ConnPtr conn_;
};

}  // namespace

std::unique_ptr<StackDriver> make_postgres_stack_driver(const ProviderConfig& provider,
                                                        const GroupSpec& group,
                                                        const std::string& stack) {
  return std::make_unique<PostgresStackDriver>(provider, group, stack);
}

}  // namespace stackflip
