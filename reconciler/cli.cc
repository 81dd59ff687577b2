#include "cli.h"

#include <pwd.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

#include "build_info.h"
#include "config/host_policy.h"
#include "config/loader.h"
#include "config/secret.h"
#include "config/snapshot.h"
#include "coord/etcd_coordination.h"
#include "coord/etcd_flags.h"
#include "core/apply.h"
#include "core/observe.h"
#include "core/plan_json.h"
#include "core/planner.h"
#include "core/render.h"
#include "drivers/drivers.h"
#include "gitops/git_source.h"
#include "gitops/last_known.h"
#include "gitops/notify.h"
#include "gitops/reconcile.h"
#include "gitops/server.h"
#include "gitops/state_store.h"
#include "init.h"
#include "sys/safe_file.h"
#include "sys/subprocess.h"
#include "util/digest.h"
#include "util/redact.h"

namespace stackflip {

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }

bool use_color(FILE* f) { return isatty(fileno(f)) && !std::getenv("NO_COLOR"); }

// Loads a config or throws Fatal with every diagnostic, one per line.
DesiredState load_or_die(const std::string& path) {
  LoadResult r = load_desired_file(path);
  if (!r.desired) throw Fatal(format_diagnostics(r.errors));
  return std::move(*r.desired);
}

// Installs the host policy (host_policy.h) before a config is loaded: the
// file named by --host-config, else $STACKFLIP_HOST_CONFIG, else
// /etc/stackflip/host.yaml when it exists. Commands that reach providers
// (`required`) get an empty policy, which grants nothing, when there is
// none; validate and plan against a snapshot then check nothing host-side.
void install_policy(const std::string& flag, const std::vector<std::string>& allow_commands,
                    bool required) {
  std::string path = flag;
  if (path.empty() && std::getenv("STACKFLIP_HOST_CONFIG"))
    path = std::getenv("STACKFLIP_HOST_CONFIG");
  if (path.empty() && ::access("/etc/stackflip/host.yaml", F_OK) == 0)
    path = "/etc/stackflip/host.yaml";
  HostPolicy policy;
  if (!path.empty()) {
    auto p = load_host_policy(path, nullptr);
    if (!p.ok()) throw Fatal(p.error().message);
    policy = std::move(*p);
  } else if (!required && allow_commands.empty()) {
    return;
  }
  for (const auto& g : allow_commands) {
    if (g.empty() || g[0] != '/')
      throw Fatal("--allow-command " + g + ": expected an absolute path or glob");
    policy.commands.push_back(g);
  }
  install_host_policy(std::move(policy));
}

// Everything stackflip prints goes through redact() (redact.h), a line at a
// time: std::cout and std::cerr get this buffer in run_cli(), so no output
// path can forget it. A partial line is redacted when it is flushed.
class RedactingBuf : public std::streambuf {
 public:
  explicit RedactingBuf(std::streambuf* out) : out_(out) {}
  ~RedactingBuf() override { sync(); }

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return sync() == 0 ? 0 : traits_type::eof();
    line_ += static_cast<char>(c);
    if (c == '\n' || line_.size() >= 64 * 1024) emit();
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    for (std::streamsize i = 0; i < n; ++i) overflow(static_cast<unsigned char>(s[i]));
    return n;
  }
  int sync() override {
    emit();
    return out_->pubsync();
  }

 private:
  void emit() {
    if (line_.empty()) return;
    std::string r = redact(line_);
    out_->sputn(r.data(), static_cast<std::streamsize>(r.size()));
    line_.clear();
  }
  std::streambuf* out_;
  std::string line_;
};

// spdlog's sink for stderr, with every message redacted.
class RedactingSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::string r = redact(std::string_view(formatted.data(), formatted.size()));
    std::fwrite(r.data(), 1, r.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

std::string default_state_path() {
  if (const char* dir = std::getenv("STACKFLIP_STATE_DIR")) return std::string(dir) + "/state.db";
  return ".stackflip/state.db";
}

// Root working on another user's state store (the packaged units' store in
// /var/lib/stackflip belongs to the stackflip user) would leave files of
// root's beside it, SQLite's -wal and -shm, the lock, the Git cache, which
// the service then cannot open. Refused, naming the user to run as.
void refuse_foreign_store_as_root(const std::string& path) {
  if (::geteuid() != 0) return;
  struct stat st {};
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (::stat(path.c_str(), &st) != 0 && ::stat(dir.c_str(), &st) != 0) return;
  if (st.st_uid == 0) return;
  const passwd* pw = ::getpwuid(st.st_uid);
  std::string user = pw ? pw->pw_name : std::to_string(st.st_uid);
  throw Fatal(path + " belongs to user " + user +
              ", not root: run stackflip as that user (runuser -u " + user +
              " -- stackflip ...), so the files it creates stay that user's");
}

std::unique_ptr<StateStore> open_state_store(const std::string& path) {
  refuse_foreign_store_as_root(path);
  auto slash = path.rfind('/');
  if (slash != std::string::npos) {
    std::string dir = path.substr(0, slash);
    // Create the state folder one level at a time (no shell).
    for (size_t i = 1; i <= dir.size(); ++i)
      if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0700);
  }
  auto j = StateStore::open(path);
  if (!j.ok()) throw Fatal(j.error().message);
  return std::move(*j);
}

// ------------------------------------------------------------------ commands

struct Options {
  std::vector<std::string> files;
  std::string config, observed, output = "text", out_plan, plan_file, state;
  bool detailed_exitcode = false, auto_approve = false;
  size_t limit = 50;
  std::string group;
  int verbose = 0;
  std::string host_config;
  std::vector<std::string> allow_commands;
  // reconcile / run
  std::string repo, ref = "main", repo_file = "stackflip.yaml", cache_dir;
  bool require_signed = false, allow_rewind = false;
  std::string allowed_signers, gpg_keyring, git_token, ssh_key, notify_url;
  std::string commit_signing_key;  // issue 14: the automatic failover commit's SSH key
  std::string interval = "30s", listen, webhook_secret;
  std::string webhook_listen, gitlab_webhook_token, api_token;
  double jitter = 0.1;
  // Groups observed and applied at a time (issue 11: site-wide failover).
  // Host-side: how hard this host may drive its providers is the operator's
  // call, not the config's (README "Parallel groups").
  int parallel = 32;
  EtcdFlags etcd;  // run, status, history (issue 13)
  InitRequest init;  // init (issue 17)
};

constexpr int kMaxParallel = 256;

int cmd_validate(const Options& o) {
  install_policy(o.host_config, o.allow_commands, false);
  int bad = 0;
  for (const auto& f : o.files) {
    LoadResult r = load_desired_file(f);
    if (r.desired) {
      std::cout << f << ": ok (" << r.desired->groups.size() << " group"
                << (r.desired->groups.size() == 1 ? "" : "s") << ")\n";
    } else {
      std::cerr << format_diagnostics(r.errors) << "\n";
      ++bad;
    }
  }
  return bad ? 1 : 0;
}

// Live observation, with unreachable stacks as last known from the state
// store. `plan` and `observe` only read an existing store (a pull-request
// job never creates one); `apply` also records what it saw.
std::unique_ptr<StateStore> state_store_for(const Options& o, bool create) {
  const std::string path = o.state.empty() ? default_state_path() : o.state;
  if (!create && ::access(path.c_str(), F_OK) != 0) return nullptr;
  return open_state_store(path);
}

ObservedState observe_live(const Options& o, const DesiredState& d, Fleet& fleet, StateStore* store,
                           bool remember) {
  if (!store) return observe_all(d, fleet, real_clock(), o.parallel);
  StoredLastKnown memory(*store);
  return observe_with_last_known(d, fleet, real_clock(), o.parallel, &memory, remember);
}

std::string render_observed_text(const ObservedState& obs) {
  std::ostringstream out;
  out << "Observed at " << obs.observed_at << "\n";
  const auto blocks = shared_server_blocks(obs);
  for (const auto& [gname, g] : obs.groups) {
    out << "Group " << gname << "\n";
    for (const auto& [sname, s] : g.stacks) {
      out << "  " << sname << ": ";
      if (!s.reachable)
        out << (s.config_error ? "CONFIGURATION ERROR" : "UNREACHABLE")
            << (s.error.empty() ? "" : " (" + s.error + ")") << "; last known ";
      if (s.database) {
        out << to_string(s.database->role);
        if (s.database->upstream) out << " of " << *s.database->upstream;
        if (s.database->lsn) out << " at " << format_lsn(*s.database->lsn);
        if (s.database->timeline) out << " tl " << *s.database->timeline;
      } else {
        out << "database unknown";
      }
      if (s.maintenance) out << (*s.maintenance ? ", maintenance on" : ", maintenance off");
      if (!s.health_error.empty()) out << "; HEALTH CHECK FAILING (" << s.health_error << ")";
      out << "\n";
    }
    if (auto b = blocks.find(gname); b != blocks.end()) out << "  BLOCKED: " << b->second << "\n";
    out << describe_traffic(g.traffic);
  }
  return out.str();
}

// What observe, plan and apply share: the config, its drivers and the state
// store (null for a plan without one).
struct Live {
  DesiredState desired;
  RealDriverFactory factory;
  Fleet fleet;
  std::unique_ptr<StateStore> store;
  Live(const Options& o, bool create_store)
      : desired(load_or_die(o.config)),
        fleet(make_fleet(desired, factory)),
        store(state_store_for(o, create_store)) {}
  ObservedState observe(const Options& o, bool remember) {
    return observe_live(o, desired, fleet, store.get(), remember);
  }
};

int cmd_observe(const Options& o) {
  install_policy(o.host_config, o.allow_commands, true);
  Live live(o, true);
  ObservedState obs = live.observe(o, true);
  if (o.output == "json")
    std::cout << snapshot_to_json(obs, true);
  else
    std::cout << render_observed_text(obs);
  return 0;
}

int cmd_plan(const Options& o) {
  install_policy(o.host_config, o.allow_commands, o.observed.empty());
  DesiredState d;
  ObservedState obs;
  if (!o.observed.empty()) {
    d = load_or_die(o.config);
    auto s = read_snapshot(o.observed);
    if (!s.ok()) throw Fatal(s.error().message);
    obs = std::move(*s);
  } else {
    Live live(o, false);
    obs = live.observe(o, false);
    d = std::move(live.desired);
  }
  Plan plan = make_plan_with_digest(d, obs);
  if (!o.out_plan.empty())
    if (Status s = write_file(o.out_plan, redact(plan_to_json(plan))); !s.ok())
      throw Fatal(s.message());
  RenderOptions ro;
  ro.color = use_color(stdout);
  if (o.output == "json")
    std::cout << plan_to_json(plan);
  else if (o.output == "markdown")
    std::cout << render_markdown(plan, &d, &obs, {.color = false, .markdown_limit = 65000});
  else if (o.output == "html")
    std::cout << render_html(plan, &d, &obs);
  else
    std::cout << render_text(plan, ro);
  // A rejected credential is an error, not a guard (issue 12): exit 1.
  if (!plan.config_errors.empty()) return 1;
  if (!o.detailed_exitcode) return 0;
  // Skipped steps (e.g. re-attaching a stack that is down) mean nothing can
  // be done now, but the group has not converged: like a blocked step.
  if (plan.empty()) return plan.skipped.empty() && plan.blocked_groups.empty() ? 0 : 3;
  return plan.any_blocked() ? 3 : 2;
}

// Contacts the servers given, so the host policy applies as for `plan`.
int cmd_init(const Options& o) {
  install_policy(o.host_config, o.allow_commands, true);
  return run_init(o.init, std::cout, std::cerr);
}

// Asks on a terminal; refuses without one.
bool approved(const Options& o, size_t actions) {
  if (o.auto_approve) return true;
  if (!isatty(STDIN_FILENO))
    throw Fatal("refusing to apply without --auto-approve: standard input is not a terminal");
  std::cout << "\nApply these " << actions << " actions? Only 'yes' is accepted: " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "yes";
}

void print_step(const StepReport& r) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  char line[512];
  std::string what = std::string(to_string(r.action.kind)) + " " + r.action.stack +
                     (r.action.source.empty() ? "" : " from " + r.action.source);
  if (r.outcome == StepOutcome::started) {
    std::snprintf(line, sizeof line, "  %s %zu/%zu %-42s ...\n", r.action.group.c_str(), r.index,
                  r.count, what.c_str());
  } else {
    std::snprintf(line, sizeof line, "  %s %zu/%zu %-42s %s in %.3f s (t+%.3f s)%s%s\n",
                  r.action.group.c_str(), r.index, r.count, what.c_str(), to_string(r.outcome),
                  r.seconds, r.since_apply, r.detail.empty() ? "" : ": ", r.detail.c_str());
  }
  std::cout << line << std::flush;
}

// `apply --plan FILE`: the saved plan, refused when the config or the facts
// it was planned on have changed since.
Plan saved_plan(const Options& o, const DesiredState& d, const ObservedState& obs) {
  Plan plan;
  {
    auto text = read_regular_file(o.plan_file, kMaxPlanBytes);
    if (!text.ok()) throw Fatal("cannot read plan " + text.error().message);
    auto p = plan_from_json(*text, o.plan_file);
    if (!p.ok()) throw Fatal(p.error().message);
    plan = std::move(*p);
    if (plan.desired_digest != d.digest)
      throw Fatal(o.plan_file + " was planned for another version of " + o.config +
                  " (config digest " + plan.desired_digest.substr(0, 12) + ", now " +
                  d.digest.substr(0, 12) + "); plan again");
    std::string now = observed_digest(obs);
    if (plan.observed_digest != now)
      throw Fatal(o.plan_file + " was planned against another observed state (digest " +
                  plan.observed_digest.substr(0, 12) + ", now " + now.substr(0, 12) +
                  "); plan again");
    // A saved plan is run on this observation: its shared servers block too.
    for (auto& [g, why] : shared_server_blocks(obs))
      if (d.groups.count(g)) plan.blocked_groups.emplace(g, why);
  }
  return plan;
}

int cmd_apply(const Options& o) {
  install_policy(o.host_config, o.allow_commands, true);
  Live live(o, true);
  const DesiredState& d = live.desired;
  // One process applies to a state store at a time: not beside `run`.
  auto lock = StateLock::acquire(live.store->path());
  if (!lock.ok()) throw Fatal(lock.error().message);
  ObservedState obs = live.observe(o, true);
  Plan plan = o.plan_file.empty() ? make_plan_with_digest(d, obs) : saved_plan(o, d, obs);
  RenderOptions ro;
  ro.color = use_color(stdout);
  std::cout << render_text(plan, ro);
  if (plan.empty() && plan.blocked_groups.empty()) return plan.config_errors.empty() ? 0 : 1;
  bool runnable = false;
  for (const auto& a : plan.actions) runnable |= !a.blocked;
  if (runnable && !approved(o, plan.actions.size())) {
    std::cout << "Apply cancelled.\n";
    return 1;
  }
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  ApplyOptions ao;
  ao.origin = "config:" + d.digest.substr(0, 12);
  ao.stop_requested = &g_stop;
  ao.progress = print_step;
  ao.parallelism = o.parallel;
  ao.planned_from = &obs;  // its silent stacks are given a short time to answer (apply.h)
  std::cout << "\nApplying:\n";
  ApplyResult r = Applier(d, live.fleet, live.store.get(), real_clock()).apply(plan, ao);
  int code = r.exit_code();
  // A rejected credential is an error, not a guard (issue 12): exit 1, not 3.
  if (!plan.config_errors.empty()) code = 1;
  size_t done = 0;
  for (const auto& g : r.groups)
    for (const auto& s : g.steps) done += s.outcome == StepOutcome::ok;
  std::cout << "\nApply "
            << (code == 0   ? "complete"
                : code == 3 ? "stopped at a blocked step"
                            : "FAILED")
            << ": " << done << " of " << plan.actions.size() << " actions done.\n";
  for (const auto& g : r.groups)
    if (g.stopped != StepOutcome::ok && !g.steps.empty())
      std::cout << "  group " << g.group << " stopped (" << to_string(g.stopped)
                << "): " << g.steps.back().detail << "\n";
  for (const auto& [g, why] : plan.config_errors)
    std::cout << "  group " << g << ": configuration error: " << why << "\n";
  return code;
}

// A client of the etcd the flags name, or a Fatal naming the flag.
std::unique_ptr<EtcdClient> etcd_client(const Options& o) {
  auto eo = etcd_client_options(o.etcd);
  if (!eo.ok()) throw Fatal(eo.error().message);
  auto c = EtcdClient::create(*eo);
  if (!c.ok()) throw Fatal("etcd: " + c.error().message);
  return std::move(*c);
}

int cmd_history(const Options& o) {
  if (o.etcd.enabled()) {  // every instance's actions, from the shared journal
    auto etcd = etcd_client(o);
    auto h = etcd_history(*etcd, o.etcd.prefix, o.limit, o.group);
    if (!h.ok()) throw Fatal("etcd: " + h.error().message);
    std::cout << render_history(*h);
    return 0;
  }
  auto journal = open_state_store(o.state.empty() ? default_state_path() : o.state);
  auto h = journal->history(o.limit, o.group);
  if (!h.ok()) throw Fatal(h.error().message);
  std::cout << render_history(*h);
  return 0;
}

// ------------------------------------------------------------------ gitops

std::string state_path(const Options& o) {
  return o.state.empty() ? default_state_path() : o.state;
}

// The Git cache lives next to the state store, one folder per repository URL.
std::string cache_dir_for(const Options& o) {
  if (!o.cache_dir.empty()) return o.cache_dir;
  std::string state = state_path(o);
  auto slash = state.rfind('/');
  std::string dir = slash == std::string::npos ? "." : state.substr(0, slash);
  std::string git = dir + "/git";
  ::mkdir(git.c_str(), 0700);
  return git + "/" + sha256_hex(o.repo).substr(0, 16);
}

struct GitopsSetup {
  std::unique_ptr<StateStore> journal;
  std::unique_ptr<StateLock> lock;
  std::unique_ptr<GitSource> source;
  std::unique_ptr<Notifier> notifier;
  RealDriverFactory factory;
  std::unique_ptr<EtcdClient> etcd;
  std::unique_ptr<EtcdCoordination> coordination;
  std::unique_ptr<Reconciler> reconciler;
  // The coordination's threads call into the reconciler (self-fencing):
  // they are stopped before it is destroyed.
  ~GitopsSetup() {
    if (coordination) coordination->stop();
  }
};

// `for_run`: the loop of `run`, not the one pass of `reconcile`.
void setup_gitops(const Options& o, GitopsSetup& g, bool for_run = false) {
  // An empty value is what a systemd unit passes for a variable its
  // EnvironmentFile does not set (${STACKFLIP_REPO}): say so, not "no such
  // repository ''".
  if (o.repo.empty())
    throw Fatal(
        "--repo is empty: expected a Git repository (a path, file://, https:// or ssh URL); "
        "the packaged units take it from STACKFLIP_REPO in /etc/stackflip/env");
  if (o.ref.empty()) throw Fatal("--ref is empty: expected a branch name, such as main");
  install_policy(o.host_config, o.allow_commands, true);
  if (o.require_signed && o.allowed_signers.empty() && o.gpg_keyring.empty())
    throw Fatal(
        "--require-signed needs trusted keys: --allowed-signers FILE and/or --gpg-keyring FILE");
  if (!o.git_token.empty() && !is_secret_reference(o.git_token))
    throw Fatal(
        "--git-token must be a secret reference (${env:NAME} or ${file:PATH}), not the token");
  g.journal = open_state_store(state_path(o));
  auto lock = StateLock::acquire(state_path(o));
  if (!lock.ok()) throw Fatal(lock.error().message);
  g.lock = std::move(*lock);
  GitSourceOptions go;
  go.url = o.repo;
  go.ref = o.ref;
  go.cache_dir = cache_dir_for(o);
  go.token = o.git_token;
  go.ssh_key = o.ssh_key;
  g.source = std::make_unique<GitSource>(go);
  if (!o.notify_url.empty()) g.notifier = std::make_unique<WebhookNotifier>(o.notify_url);
  ReconcileSettings rs;
  rs.file = o.repo_file;
  rs.ref = o.ref;
  rs.require_signed = o.require_signed;
  rs.allow_rewind = o.allow_rewind;
  rs.trust.allowed_signers = o.allowed_signers;
  rs.trust.gpg_keyring = o.gpg_keyring;
  rs.apply.progress = print_step;
  rs.apply.parallelism = o.parallel;
  // In `run`, a planned switch's traffic.wait (issue 15) holds a pass at
  // most one interval, and the next pass goes on with the rest: other
  // groups' passes (and their failure detection) do not wait out a TTL.
  // `reconcile` (one pass, e.g. from a timer) waits it whole.
  if (for_run)
    if (auto interval = parse_duration(o.interval); interval.ok())
      rs.apply.wait_slice = std::max<std::chrono::milliseconds>(
          std::chrono::duration_cast<std::chrono::milliseconds>(*interval),
          std::chrono::seconds(1));
  if (!o.commit_signing_key.empty()) {
    // Checked now, not at the first failover: ssh-keygen must read the key.
    SubprocessOptions so;
    so.argv = {"ssh-keygen", "-l", "-f", o.commit_signing_key};
    so.timeout = std::chrono::milliseconds(10000);
    auto r = run_subprocess(so);
    if (!r.ok() || !r->ok())
      throw Fatal("--commit-signing-key " + o.commit_signing_key +
                  ": not an SSH key ssh-keygen "
                  "can read" +
                  (r.ok() ? ": " + trim_for_message(r->err) : ""));
    rs.commit_signing_key = o.commit_signing_key;
  }
  if (o.etcd.enabled()) {
    auto co = etcd_coordination_options(o.etcd);
    if (!co.ok()) throw Fatal(co.error().message);
    fit_to_lease(rs.apply, co->lease_ttl);
    co->budget = [apply = rs.apply](const Action& a) { return action_budget(apply, a); };
    g.etcd = etcd_client(o);
    rs.instance = co->instance;
    rs.site = co->site;
    rs.lease_ttl = co->lease_ttl;
    g.coordination = std::make_unique<EtcdCoordination>(*g.etcd, *g.journal, *co);
    std::cout << "etcd: instance " << co->instance << " (site " << co->site << "), lease "
              << co->lease_ttl.count() << " s; an action may take at most "
              << rs.apply.action_timeout.count() << " ms per attempt, " << rs.apply.retries + 1
              << " attempts" << std::endl;
  }
  g.reconciler = std::make_unique<Reconciler>(*g.source, *g.journal, g.factory, real_clock(), rs,
                                              g.notifier.get());
  if (g.coordination) {
    g.reconciler->set_coordination(g.coordination.get());
    g.coordination->on_isolated([r = g.reconciler.get()] { r->self_fence(); });
  }
}

int cmd_reconcile(const Options& o) {
  GitopsSetup g;
  setup_gitops(o, g);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  PassReport rep = g.reconciler->pass(&g_stop);
  if (o.output == "json") {
    std::cout << status_json(&rep, g.source->describe());
    if (!rep.run.error.empty()) std::cerr << rep.run.error << "\n";
    return rep.exit_code;
  }
  std::cout << "reconcile " << g.source->describe() << " at " << rep.run.commit.substr(0, 12)
            << ": " << rep.run.result << (rep.idle ? " (head unchanged)" : "") << ", "
            << rep.run.actions << " action" << (rep.run.actions == 1 ? "" : "s") << " in "
            << rep.run.duration_ms << " ms\n"
            << format_group_outcomes(rep, true);
  if (!rep.run.error.empty()) std::cerr << rep.run.error << "\n";
  return rep.exit_code;
}

int cmd_run(const Options& o) {
  RunSettings rs;
  auto interval = parse_duration(o.interval);
  if (!interval.ok()) throw Fatal("--interval: " + interval.error().message);
  rs.interval = *interval;
  rs.jitter = o.jitter;
  rs.listen = o.listen;
  rs.webhook_listen = o.webhook_listen;
  // Secrets come as references, so they never show in `ps` or shell history.
  auto secret_flag = [](const char* flag, const std::string& reference) -> std::string {
    if (reference.empty()) return "";
    if (!is_secret_reference(reference))
      throw Fatal(std::string(flag) + " must be a secret reference (${env:NAME} or ${file:PATH})");
    auto s = resolve_secret(reference);
    if (!s.ok()) throw Fatal(std::string(flag) + ": " + s.error().message);
    if (s->empty()) throw Fatal(std::string(flag) + ": the secret is empty");
    return *s;
  };
  rs.webhook_secret = secret_flag("--webhook-secret", o.webhook_secret);
  rs.gitlab_token = secret_flag("--gitlab-webhook-token", o.gitlab_webhook_token);
  rs.api_token = secret_flag("--api-token", o.api_token);
  if (!rs.webhook_listen.empty() && rs.webhook_secret.empty() && rs.gitlab_token.empty())
    throw Fatal("--webhook-listen needs --webhook-secret or --gitlab-webhook-token");
  GitopsSetup g;
  setup_gitops(o, g, /*for_run=*/true);
  rs.repo_description = g.source->describe();
  rs.store = g.journal.get();
  std::cout << "stackflip run: " << rs.repo_description << " file " << o.repo_file << " every "
            << o.interval << " (pid " << ::getpid() << ")" << std::endl;
  if (g.coordination) {
    EtcdCoordination& c = *g.coordination;
    if (Status st = c.start(); !st.ok())
      std::cerr << "etcd: " << st.message() << " (retrying; no action starts meanwhile)\n";
    rs.coordination_status = [&c] { return c.status_json(); };
    rs.coordination_metrics = [&c] { return c.prometheus(); };
    rs.wake = [&c](std::function<void()> f) { c.on_change(std::move(f)); };
  }
  int rc = run_loop(*g.reconciler, rs);
  if (g.coordination) g.coordination->stop();  // revokes the lease: the others take over now
  return rc;
}

// `status --etcd`: the shared commit in force, the instances and each
// group's leader with its lease's remaining time.
void print_etcd_status(const Options& o) {
  auto etcd = etcd_client(o);
  const std::string& p = o.etcd.prefix;
  EtcdRangeOptions all;
  all.prefix = true;
  auto commit = etcd->range(p + "commit");
  auto live = etcd->range(p + "live/", all);
  if (!live.ok()) throw Fatal("etcd: " + live.error().message);
  std::map<int64_t, int64_t> left;
  std::vector<std::pair<std::string, std::string>> instances, leaders;
  std::map<std::string, int64_t> lease_of;
  for (const auto& kv : live->kvs) {
    std::string rest = kv.key.substr(p.size());
    if (rest.rfind("live/instances/", 0) == 0) instances.emplace_back(rest.substr(15), kv.value);
    if (rest.rfind("live/leader/", 0) == 0) leaders.emplace_back(rest.substr(12), kv.value);
    if (!left.count(kv.lease)) {
      auto t = etcd->time_to_live(kv.lease);
      left[kv.lease] = t.ok() ? *t : -1;
    }
    lease_of[rest] = kv.lease;
  }
  std::cout << "etcd:            " << etcd->endpoint() << " (prefix " << p << ")\n";
  if (commit.ok() && !commit->kvs.empty())
    std::cout << "Shared commit:   " << escape_control(commit->kvs.front().value.substr(0, 200))
              << "\n";
  std::cout << "Instances:       " << instances.size() << "\n";
  for (const auto& [name, v] : instances)
    std::cout << "  " << escape_control(name) << " " << escape_control(v) << ", lease "
              << left[lease_of["live/instances/" + name]] << " s left\n";
  std::cout << "Leaders:\n";
  for (const auto& [group, inst] : leaders)
    std::cout << "  " << escape_control(group) << ": " << escape_control(inst) << " (lease "
              << left[lease_of["live/leader/" + group]] << " s left)\n";
  std::cout << "\n";
}

int cmd_status(const Options& o) {
  if (o.etcd.enabled()) print_etcd_status(o);
  auto journal = open_state_store(state_path(o));
  auto commit = journal->get("gitops.commit");
  auto file = journal->get("gitops.file");
  auto converged = journal->get("gitops.converged");
  auto good = journal->last_good_run();
  auto runs = journal->runs(o.limit);
  if (!runs.ok()) throw Fatal(runs.error().message);
  // An active stack down comes first (issue 14 item 6), as `run` last saw it.
  auto outages = journal->get("gitops.outages");
  if (outages.ok() && *outages && !(*outages)->empty()) {
    std::cout << "DOWN (as of the last pass):\n";
    std::istringstream lines(**outages);
    for (std::string l; std::getline(lines, l);) std::cout << "  " << l << "\n";
    std::cout << "\n";
  }
  std::cout << "Commit in force: "
            << (commit.ok() && *commit ? **commit + (file.ok() && *file ? " (" + **file + ")" : "")
                                       : std::string("none yet"))
            << "\n";
  if (converged.ok() && *converged)
    std::cout << "Converged:       " << (**converged == "1" ? "yes" : "no") << "\n";
  if (good.ok() && *good)
    std::cout << "Last good run:   " << (*good)->commit.substr(0, 12) << " " << (*good)->result
              << " at " << (*good)->finished_at << "\n";
  else
    std::cout << "Last good run:   none\n";
  if (runs->empty()) {
    std::cout << "No reconcile runs recorded yet.\n";
    return 0;
  }
  std::cout << "\nRecent runs (newest first):\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-24s %-12s %-10s %7s %9s  %s\n", "STARTED", "COMMIT",
                "RESULT", "ACTIONS", "DURATION", "ERROR");
  std::cout << line;
  for (const auto& r : *runs) {
    std::string err = r.error.substr(0, r.error.find('\n'));
    std::snprintf(line, sizeof line, "  %-24s %-12s %-10s %7d %7lld ms  %s\n", r.started_at.c_str(),
                  r.commit.substr(0, 12).c_str(), r.result.c_str(), r.actions,
                  static_cast<long long>(r.duration_ms), err.c_str());
    std::cout << line;
  }
  return 0;
}

// The command table (DESIGN.md "CLI"): every subcommand with its options.
// run_cli() parses with it; visit_cli() hands it to the generator of the man
// page and the bash completion (reconciler/doc/docgen.cc), so those are made
// from the same table as --help. Option types name what completes: FILE and
// DIR complete paths, {a,b} the choices.
struct Command {
  const char* name;
  const char* description;
  int (*run)(const Options&);
  std::function<void(CLI::App&)> options;
};

struct Cli {
  Options o;
  CLI::App app{"stackflip — declarative, GitOps-style failover for pairs of stacks"};
  std::vector<Command> commands;
  std::vector<std::pair<CLI::App*, const Command*>> subs;
  Cli();
  Cli(const Cli&) = delete;  // the options capture `o` by reference
  Cli& operator=(const Cli&) = delete;
};

Cli::Cli() {
  app.require_subcommand(1);
  app.set_version_flag("--version", version_line());
  app.add_flag("-v,--verbose", o.verbose, "More log output on stderr (-vv for debug)");
  app.add_option("--host-config", o.host_config,
                 "Host policy: programs, secrets and endpoints a config may use (default "
                 "$STACKFLIP_HOST_CONFIG, else /etc/stackflip/host.yaml)")
      ->type_name("FILE");
  app.add_option("--allow-command", o.allow_commands,
                 "Also allow configs to run programs matching this absolute glob (repeatable)")
      ->type_name("GLOB");

  auto add_parallel_option = [&](CLI::App& c) {
    c.add_option("--parallel", o.parallel,
                 "Groups observed and applied at a time, 1 to 256 (default 32; host-side, never "
                 "from the config)");
  };
  auto add_etcd_options = [&](CLI::App& c, bool run) {
    c.add_option("--etcd", o.etcd.endpoints,
                 "etcd client URLs, comma-separated: several instances share the groups");
    c.add_option("--etcd-prefix", o.etcd.prefix, "Key prefix in etcd (default /stackflip/)");
    c.add_option("--etcd-cacert", o.etcd.cacert, "CA bundle that verifies the etcd members")
        ->type_name("FILE");
    c.add_option("--etcd-cert", o.etcd.cert, "Client certificate for etcd (PEM)")
        ->type_name("FILE");
    c.add_option("--etcd-key", o.etcd.key, "Client key for etcd (PEM)")->type_name("FILE");
    c.add_option("--etcd-user", o.etcd.user, "etcd user (with --etcd-password)");
    c.add_option("--etcd-password", o.etcd.password,
                 "Secret reference (${env:NAME}) of the password")
        ->type_name("REF");
    if (!run) return;
    c.add_option("--instance", o.etcd.instance, "This instance's unique name (with --etcd)");
    c.add_option("--site", o.etcd.site, "The site this instance runs in (default: --instance)");
    c.add_option(
        "--lease-ttl", o.etcd.lease_ttl,
        "Leadership lease (default 5s): takeover time, and the longest an action may take");
  };
  auto add_gitops_options = [&](CLI::App& c) {
    c.add_option("--repo", o.repo, "Git repository: path, file://, https:// or ssh URL")
        ->required()
        ->type_name("URL");
    c.add_option("--ref", o.ref, "Branch (default main)");
    c.add_option("--file", o.repo_file,
                 "Config path inside the repository (default stackflip.yaml)");
    c.add_option("--state", o.state,
                 "State store (default $STACKFLIP_STATE_DIR/state.db or .stackflip/state.db)")
        ->type_name("FILE");
    c.add_option("--cache-dir", o.cache_dir, "Git cache folder (default next to the state store)")
        ->type_name("DIR");
    c.add_flag("--require-signed", o.require_signed, "Apply only commits signed by a trusted key");
    c.add_flag("--allow-rewind", o.allow_rewind,
               "Adopt once a head that does not descend from the commit in force (a force-push "
               "that rolls back); later rewinds are refused again");
    c.add_option("--allowed-signers", o.allowed_signers, "ssh-keygen allowed-signers file")
        ->type_name("FILE");
    c.add_option("--gpg-keyring", o.gpg_keyring, "OpenPGP keyring of trusted keys")
        ->type_name("FILE");
    c.add_option("--git-token", o.git_token, "HTTPS token as a secret reference (${env:NAME})")
        ->type_name("REF");
    c.add_option("--ssh-key", o.ssh_key, "SSH private key file (default: the SSH agent)")
        ->type_name("FILE");
    c.add_option("--commit-signing-key", o.commit_signing_key,
                 "SSH private key that signs the commits of automatic failovers (ssh-keygen -Y "
                 "sign); add its public key to --allowed-signers")
        ->type_name("FILE");
    c.add_option("--notify-url", o.notify_url,
                 "Slack-compatible webhook URL (or ${env:NAME}) for applied/failed/blocked");
    add_parallel_option(c);
  };
  commands = {
      {"validate", "Check config files; every problem as file:line:col", cmd_validate,
       [&](CLI::App& c) {
         c.add_option("FILE", o.files, "Config files")->required()->type_name("FILE");
       }},
      {"observe", "Read the providers and print the observed state", cmd_observe,
       [&](CLI::App& c) {
         c.add_option("-c,--config", o.config, "Config file")->required()->type_name("FILE");
         c.add_option("-o,--output", o.output, "text or json")
             ->check(CLI::IsMember({"text", "json"}));
         add_parallel_option(c);
       }},
      {"plan", "Show what apply would do (against live providers or a snapshot)", cmd_plan,
       [&](CLI::App& c) {
         c.add_option("-c,--config", o.config, "Config file")->required()->type_name("FILE");
         c.add_option("--observed", o.observed,
                      "Observed-state snapshot (JSON) instead of live providers")
             ->type_name("FILE");
         c.add_option("-o,--output", o.output, "text, json, markdown or html")
             ->check(CLI::IsMember({"text", "json", "markdown", "html"}));
         c.add_flag("--detailed-exitcode", o.detailed_exitcode,
                    "Exit 0 no changes, 2 changes, 3 a step is blocked");
         c.add_option("--out", o.out_plan, "Also save the plan as JSON for `apply PLAN`")
             ->type_name("FILE");
         add_parallel_option(c);
       }},
      {"apply", "Plan and apply, one checked step at a time", cmd_apply,
       [&](CLI::App& c) {
         c.add_option("-c,--config", o.config, "Config file")->required()->type_name("FILE");
         c.add_option("PLAN", o.plan_file, "A plan saved with `plan --out`")->type_name("FILE");
         c.add_flag("--auto-approve", o.auto_approve, "Do not ask for confirmation");
         c.add_option("--state", o.state,
                      "State store (default $STACKFLIP_STATE_DIR/state.db or .stackflip/state.db)")
             ->type_name("FILE");
         add_parallel_option(c);
       }},
      {"init", "Discover an existing pair and write a first config (exit 2: decide first)",
       cmd_init,
       [&](CLI::App& c) {
         c.add_option("--postgres", o.init.postgres, "A server's DSN, one per stack (repeat)")
             ->type_name("DSN")
             ->required();
         c.add_option("--powerdns", o.init.powerdns_url, "PowerDNS API URL")
             ->type_name("URL")
             ->required();
         c.add_option("--api-key", o.init.api_key, "Secret reference (${env:NAME}) of its key")
             ->type_name("REF")
             ->required();
         c.add_option("--record", o.init.record, "The record pointing at the active stack")
             ->type_name("NAME")
             ->required();
         c.add_option("--record-type", o.init.record_type, "A (default) or AAAA");
         c.add_option("--zone", o.init.zone, "Its zone (default: looked up)");
         c.add_option("--name", o.init.names, "Stack names, one per --postgres (default: hosts)");
         c.add_option("--address", o.init.addresses,
                      "Traffic addresses, one per --postgres (default: the DSN's host)");
         c.add_option("--password", o.init.password,
                      "Secret reference (${env:NAME}) of the database password")
             ->type_name("REF");
         c.add_option("--group", o.init.group, "Group name (default: the record's first label)");
         c.add_option("--schema", o.init.schema, "Schema URL or path for the modeline");
       }},
      {"reconcile", "One GitOps pass: fetch, verify, load, observe, plan, apply, record",
       cmd_reconcile,
       [&](CLI::App& c) {
         add_gitops_options(c);
         c.add_option("-o,--output", o.output, "Pass summary: text or json (the /status JSON)")
             ->check(CLI::IsMember({"text", "json"}));
       }},
      {"run", "The periodic reconcile job with webhook, SIGHUP and an HTTP endpoint", cmd_run,
       [&](CLI::App& c) {
         add_gitops_options(c);
         c.add_option("--interval", o.interval, "Time between passes (30s, 5m, ...)")
             ->type_name("DURATION");
         c.add_option("--jitter", o.jitter, "Random extra delay, fraction of the interval")
             ->check(CLI::Range(0.0, 1.0));
         c.add_option("--listen", o.listen, "HTTP endpoint, e.g. 127.0.0.1:9090")
             ->type_name("ADDRESS");
         c.add_option("--webhook-secret", o.webhook_secret,
                      "Secret reference (${env:NAME}) for POST /webhook signatures (GitHub)");
         c.add_option("--gitlab-webhook-token", o.gitlab_webhook_token,
                      "Secret reference (${env:NAME}) that GitLab sends as X-Gitlab-Token");
         c.add_option("--api-token", o.api_token,
                      "Secret reference (${env:NAME}): /status and /observed need "
                      "\"Authorization: Bearer <token>\"");
         c.add_option("--webhook-listen", o.webhook_listen,
                      "Serve /webhook on this address only (e.g. 0.0.0.0:9443), not on --listen");
         add_etcd_options(c, true);
       }},
      {"status", "Show the commit in force, the last good run and recent runs", cmd_status,
       [&](CLI::App& c) {
         c.add_option("--state", o.state, "State store")->type_name("FILE");
         c.add_option("-n,--limit", o.limit, "How many runs")->default_val(10);
         add_etcd_options(c, false);
       }},
      {"history", "Show the journal of applied actions", cmd_history,
       [&](CLI::App& c) {
         c.add_option("--state", o.state, "State store")->type_name("FILE");
         c.add_option("-n,--limit", o.limit, "How many entries");
         c.add_option("--group", o.group, "Only this group");
         add_etcd_options(c, false);
       }},
  };
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    c.options(*sub);
    subs.emplace_back(sub, &c);
  }
}

}  // namespace

std::string version_line() {
  return std::string("stackflip ") + STACKFLIP_VERSION + " (commit " + build_commit() + ")";
}

void visit_cli(const std::function<void(const CLI::App&)>& visit) {
  Cli cli;
  visit(cli.app);
}

int run_cli(int argc, char** argv) {
  RedactingBuf out_buf(std::cout.rdbuf()), err_buf(std::cerr.rdbuf());
  struct Restore {
    std::streambuf *out, *err;
    ~Restore() {
      std::cout.flush();
      std::cerr.flush();
      std::cout.rdbuf(out);
      std::cerr.rdbuf(err);
    }
  } restore{std::cout.rdbuf(&out_buf), std::cerr.rdbuf(&err_buf)};
  auto logger = spdlog::get("stackflip");
  if (!logger)
    logger = std::make_shared<spdlog::logger>("stackflip", std::make_shared<RedactingSink>());
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%l: %v");
  spdlog::set_level(spdlog::level::warn);

  Cli cli;
  Options& o = cli.o;
  CLI::App& app = cli.app;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 1;
  }
  if (o.parallel < 1 || o.parallel > kMaxParallel) {
    std::cerr << "--parallel " << o.parallel << ": expected 1 to " << kMaxParallel
              << " groups at a time\n";
    return 1;
  }
  if (o.verbose == 1) spdlog::set_level(spdlog::level::info);
  if (o.verbose >= 2) spdlog::set_level(spdlog::level::debug);
  try {
    for (const auto& [sub, c] : cli.subs)
      if (sub->parsed()) return c->run(o);
  } catch (const Fatal& f) {
    std::string msg = f.what();
    if (!msg.empty() && msg.back() != '\n') msg += '\n';
    std::cerr << msg;
    return f.exit_code;
  }
  return 1;
}

}  // namespace stackflip
