#include "cli.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sys/stat.h>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apply.h"
#include "drivers.h"
#include "journal.h"
#include "loader.h"
#include "observe.h"
#include "plan_json.h"
#include "planner.h"
#include "render.h"
#include "snapshot.h"

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

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

std::string default_state_path() {
  if (const char* dir = std::getenv("STACKFLIP_STATE_DIR")) return std::string(dir) + "/state.db";
  return ".stackflip/state.db";
}

std::unique_ptr<Journal> open_journal(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash != std::string::npos) {
    std::string dir = path.substr(0, slash);
    std::string cmd;  // create the state folder (no shell: one level at a time)
    for (size_t i = 1; i <= dir.size(); ++i)
      if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0700);
  }
  auto j = Journal::open(path);
  if (!j.ok()) throw Fatal(j.error().message);
  return std::move(*j);
}

// Journal as apply's ActionLog.
class JournalLog : public ActionLog {
 public:
  explicit JournalLog(Journal& j) : j_(j) {}
  Result<int64_t> begin(const Action& a, const std::string& origin) override {
    return j_.begin(a, origin);
  }
  Status finish(int64_t id, const std::string& result, const std::string& error,
                int64_t ms) override {
    return j_.finish(id, result, error, ms);
  }

 private:
  Journal& j_;
};

// ------------------------------------------------------------------ commands

struct Options {
  std::vector<std::string> files;
  std::string config, observed, output = "text", out_plan, plan_file, state;
  bool detailed_exitcode = false, auto_approve = false;
  size_t limit = 50;
  std::string group;
  int verbose = 0;
};

int cmd_validate(const Options& o) {
  int bad = 0;
  for (const auto& f : o.files) {
    LoadResult r = load_desired_file(f);
    if (r.desired) {
      std::cout << f << ": ok (" << r.desired->groups.size() << " group"
                << (r.desired->groups.size() == 1 ? "" : "s") << ")\n";
    } else {
      std::cerr << format_diagnostics(r.errors);
      ++bad;
    }
  }
  return bad ? 1 : 0;
}

ObservedState observe_live(const DesiredState& d, Fleet& fleet) {
  return observe_all(d, fleet, real_clock());
}

std::string render_observed_text(const ObservedState& obs) {
  std::ostringstream out;
  out << "Observed at " << obs.observed_at << "\n";
  for (const auto& [gname, g] : obs.groups) {
    out << "Group " << gname << "\n";
    for (const auto& [sname, s] : g.stacks) {
      out << "  " << sname << ": ";
      if (!s.reachable) out << "UNREACHABLE" << (s.error.empty() ? "" : " (" + s.error + ")") << "; last known ";
      if (s.database) {
        out << to_string(s.database->role);
        if (s.database->upstream) out << " of " << *s.database->upstream;
        if (s.database->lsn) out << " at " << format_lsn(*s.database->lsn);
        if (s.database->timeline) out << " tl " << *s.database->timeline;
      } else {
        out << "database unknown";
      }
      if (s.maintenance) out << (*s.maintenance ? ", maintenance on" : ", maintenance off");
      out << "\n";
    }
    out << "  traffic: ";
    if (!g.traffic.reachable) out << "UNREACHABLE (" << g.traffic.error << "); last known ";
    out << (g.traffic.target ? *g.traffic.target : std::string("no stack"));
    if (!g.traffic.content.empty()) out << " (" << g.traffic.content << ")";
    if (g.traffic.ttl) out << ", ttl " << *g.traffic.ttl;
    out << "\n";
  }
  return out.str();
}

int cmd_observe(const Options& o) {
  DesiredState d = load_or_die(o.config);
  RealDriverFactory factory;
  Fleet fleet = make_fleet(d, factory);
  ObservedState obs = observe_live(d, fleet);
  if (o.output == "json") std::cout << snapshot_to_json(obs, true);
  else std::cout << render_observed_text(obs);
  return 0;
}

int cmd_plan(const Options& o) {
  DesiredState d = load_or_die(o.config);
  ObservedState obs;
  if (!o.observed.empty()) {
    auto s = read_snapshot(o.observed);
    if (!s.ok()) throw Fatal(s.error().message);
    obs = std::move(*s);
  } else {
    RealDriverFactory factory;
    Fleet fleet = make_fleet(d, factory);
    obs = observe_live(d, fleet);
  }
  Plan plan = make_plan(d, obs);
  if (!o.out_plan.empty() && !write_file(o.out_plan, plan_to_json(plan)))
    throw Fatal("cannot write " + o.out_plan);
  RenderOptions ro;
  ro.color = use_color(stdout);
  if (o.output == "json") std::cout << plan_to_json(plan);
  else if (o.output == "markdown") std::cout << render_markdown(plan, RenderOptions{false, 65000});
  else std::cout << render_text(plan, ro);
  if (!o.detailed_exitcode) return 0;
  if (plan.empty()) return 0;
  return plan.any_blocked() ? 3 : 2;
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

int cmd_apply(const Options& o) {
  DesiredState d = load_or_die(o.config);
  RealDriverFactory factory;
  Fleet fleet = make_fleet(d, factory);
  ObservedState obs = observe_live(d, fleet);
  Plan plan;
  if (!o.plan_file.empty()) {
    std::ifstream in(o.plan_file, std::ios::binary);
    if (!in) throw Fatal("cannot read plan " + o.plan_file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto p = plan_from_json(ss.str(), o.plan_file);
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
  } else {
    plan = make_plan(d, obs);
  }
  RenderOptions ro;
  ro.color = use_color(stdout);
  std::cout << render_text(plan, ro);
  if (plan.empty()) return 0;
  bool runnable = false;
  for (const auto& a : plan.actions) runnable |= !a.blocked;
  if (runnable && !approved(o, plan.actions.size())) {
    std::cout << "Apply cancelled.\n";
    return 1;
  }
  auto journal = open_journal(o.state.empty() ? default_state_path() : o.state);
  JournalLog log(*journal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  ApplyOptions ao;
  ao.origin = "config:" + d.digest.substr(0, 12);
  ao.stop_requested = &g_stop;
  ao.progress = print_step;
  std::cout << "\nApplying:\n";
  ApplyResult r = Applier(d, fleet, &log, real_clock()).apply(plan, ao);
  int code = r.exit_code();
  size_t done = 0;
  for (const auto& g : r.groups)
    for (const auto& s : g.steps) done += s.outcome == StepOutcome::ok;
  std::cout << "\nApply " << (code == 0 ? "complete" : code == 3 ? "stopped at a blocked step" : "FAILED")
            << ": " << done << " of " << plan.actions.size() << " actions done.\n";
  for (const auto& g : r.groups)
    if (g.stopped != StepOutcome::ok && !g.steps.empty())
      std::cout << "  group " << g.group << " stopped (" << to_string(g.stopped)
                << "): " << g.steps.back().detail << "\n";
  return code;
}

int cmd_history(const Options& o) {
  auto journal = open_journal(o.state.empty() ? default_state_path() : o.state);
  auto h = journal->history(o.limit, o.group);
  if (!h.ok()) throw Fatal(h.error().message);
  std::cout << render_history(*h);
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("stackflip");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^%l%$: %v");
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"stackflip — declarative, GitOps-style failover for pairs of stacks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", STACKFLIP_VERSION);
  Options o;
  app.add_flag("-v,--verbose", o.verbose, "More log output on stderr (-vv for debug)");

  struct Command {
    const char* name;
    const char* description;
    int (*run)(const Options&);
    std::function<void(CLI::App&)> options;
  };
  const std::vector<Command> commands = {
      {"validate", "Check config files; every problem as file:line:col", cmd_validate,
       [&](CLI::App& c) { c.add_option("FILE", o.files, "Config files")->required(); }},
      {"observe", "Read the providers and print the observed state", cmd_observe,
       [&](CLI::App& c) {
         c.add_option("-c,--config", o.config, "Config file")->required();
         c.add_option("-o,--output", o.output, "text or json")->check(CLI::IsMember({"text", "json"}));
       }},
      {"plan", "Show what apply would do (against live providers or a snapshot)", cmd_plan,
       [&](CLI::App& c) {
         c.add_option("-c,--config", o.config, "Config file")->required();
         c.add_option("--observed", o.observed, "Observed-state snapshot (JSON) instead of live providers");
         c.add_option("-o,--output", o.output, "text, json or markdown")
             ->check(CLI::IsMember({"text", "json", "markdown"}));
         c.add_flag("--detailed-exitcode", o.detailed_exitcode,
                    "Exit 0 no changes, 2 changes, 3 a step is blocked");
         c.add_option("--out", o.out_plan, "Also save the plan as JSON for `apply PLAN`");
       }},
      {"apply", "Plan and apply, one checked step at a time", cmd_apply,
       [&](CLI::App& c) {
         c.add_option("-c,--config", o.config, "Config file")->required();
         c.add_option("PLAN", o.plan_file, "A plan saved with `plan --out`");
         c.add_flag("--auto-approve", o.auto_approve, "Do not ask for confirmation");
         c.add_option("--state", o.state, "State store (default $STACKFLIP_STATE_DIR/state.db or .stackflip/state.db)");
       }},
      {"history", "Show the journal of applied actions", cmd_history,
       [&](CLI::App& c) {
         c.add_option("--state", o.state, "State store");
         c.add_option("-n,--limit", o.limit, "How many entries");
         c.add_option("--group", o.group, "Only this group");
       }},
  };
  std::vector<std::pair<CLI::App*, const Command*>> subs;
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    c.options(*sub);
    subs.emplace_back(sub, &c);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 1;
  }
  if (o.verbose == 1) spdlog::set_level(spdlog::level::info);
  if (o.verbose >= 2) spdlog::set_level(spdlog::level::debug);
  try {
    for (const auto& [sub, c] : subs)
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
