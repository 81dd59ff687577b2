// The exhaustive safety check of the planner and apply.
//
// Every observed state of a group — per stack: reachable × maintenance ×
// (primary | replica with its upstream set to each other stack | replica
// with replication stopped | unknown role) × (caught up | behind), and
// traffic (on each stack | none | mixed: the record holds the addresses of
// two or more stacks) × (reachable | not), or absent (no record: issue
// 17) — is planned for the desired
// actives, with and without allow_data_loss. Each plan is run through the
// real Applier (apply.h: its guards, its dispatch to the drivers, its effect
// checks, retries and fail safe) on the fake drivers (fake_provider.h), with
// a clock that does not sleep, and after every step the safety invariants
// of DESIGN.md are checked on the true state:
//   1. never two writable databases (reachable primary, maintenance off);
//   2. traffic never points at a reachable replica with maintenance off;
//   3. no promotion that could lose data (another stack ahead by more than
//      max_lag_bytes, or an old primary that cannot be seen) unless
//      allow_data_loss;
// and a step never introduces a violation that was not there before it.
// Every apply either stops at a blocked step that says why, or ends with the
// group converged (liveness: observed afresh, a new plan is empty; checked
// over up to kMaxPasses plan+apply passes, and every one so far converges
// in the first). From a healthy state (all reachable, one primary, every
// other stack streaming from it, traffic reachable) no plan may block.
//
// Two stacks: every state. Three stacks (issue 12): the same per stack
// (an upstream for each other stack), for the desired active on each of
// the three, every state PostgreSQL can be in (see possible), a stride
// sample in CI and all of them with STACKFLIP_EXHAUSTIVE_FULL=1.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>

#include "builders.h"
#include "core/apply.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

struct RoleChoice {
  Role role;
  bool streaming;
};
constexpr RoleChoice kRoles[] = {
    {Role::primary, false}, {Role::replica, true}, {Role::replica, false}, {Role::unknown, false}};

// Apply's own warnings (retries, the fail safe) would flood the output.
struct QuietLog {
  spdlog::level::level_enum was = spdlog::get_level();
  QuietLog() { spdlog::set_level(spdlog::level::err); }
  ~QuietLog() { spdlog::set_level(was); }
};

std::set<std::string> violations(const FakeWorld& w) {
  std::set<std::string> v;
  const auto& stacks = w.stacks.at("shop");
  int writable = 0;
  for (const auto& [n, s] : stacks) writable += s.up && s.role == Role::primary && !s.maintenance;
  if (writable > 1) v.insert("invariant 1: two writable databases");
  const auto& t = w.traffic.at("shop");
  std::vector<std::string> reached = t.also;  // mixed traffic reaches every one
  if (!t.target.empty()) reached.push_back(t.target);
  for (const auto& r : reached) {
    const FakeStack& s = stacks.at(r);
    if (s.up && s.role == Role::replica && !s.maintenance)
      v.insert("invariant 2: traffic at a writable replica");
  }
  return v;
}

std::string describe(const FakeWorld& w) {
  std::string out;
  for (const auto& [n, s] : w.stacks.at("shop"))
    out += n + "{" + (s.up ? "up" : "down") + "," + (s.maintenance ? "maint" : "open") + "," +
           to_string(s.role) + (s.upstream.empty() ? "" : "<-" + s.upstream) + "," +
           std::to_string(s.lsn) + (s.cluster != 1 ? ",cluster" + std::to_string(s.cluster) : "") +
           (s.diverged ? ",diverged" : "") +
           (s.bootstrap_phase.empty() ? "" : ",bootstrap:" + s.bootstrap_phase) + "} ";
  const auto& t = w.traffic.at("shop");
  std::string also;
  for (const auto& a : t.also) also += "+" + a;
  return out + "traffic{" + (t.up ? "up" : "down") + "," +
         (t.absent           ? "absent"
          : t.target.empty() ? "-"
                             : t.target) +
         also + "}";
}

// Every state one stack can be in, given the names of the others.
std::vector<FakeStack> stack_states(const std::vector<std::string>& others) {
  std::vector<FakeStack> out;
  for (bool up : {true, false})
    for (bool maint : {true, false}) {
      std::vector<std::pair<Role, std::string>> roles = {{Role::primary, ""}};
      for (const auto& o : others) roles.push_back({Role::replica, o});  // its upstream is o
      roles.push_back({Role::replica, ""});                              // replication stopped
      roles.push_back({Role::unknown, ""});
      for (const auto& [role, upstream] : roles)
        for (uint64_t lsn : {90u, 100u})
          out.push_back(FakeStack{up, maint, role, upstream, lsn, 1});
    }
  return out;
}

// Traffic on each stack, on none, mixed over every set of two or more
// stacks (the first named is the record's first address), each reachable
// or not.
std::vector<FakeTraffic> traffic_states(const std::vector<std::string>& names) {
  std::vector<std::vector<std::string>> targets;
  for (const auto& n : names) targets.push_back({n});
  targets.push_back({});
  for (unsigned mask = 0; mask < (1u << names.size()); ++mask) {
    std::vector<std::string> set;
    for (size_t i = 0; i < names.size(); ++i)
      if (mask & (1u << i)) set.push_back(names[i]);
    if (set.size() >= 2) targets.push_back(set);
  }
  std::vector<FakeTraffic> out;
  for (const auto& t : targets)
    for (bool up : {true, false}) {
      FakeTraffic f{up, t.empty() ? "" : t[0], 60};
      for (size_t i = 1; i < t.size(); ++i) f.also.push_back(t[i]);
      out.push_back(f);
    }
  // The record does not exist (issue 17): seen, so reachable only.
  FakeTraffic absent{true, "", 60};
  absent.absent = true;
  out.push_back(absent);
  return out;
}

// All reachable, traffic reachable, one primary, every other stack a
// replica whose upstream is that primary: from here every desired state
// must be reached without a blocked step.
bool healthy(const FakeWorld& w) {
  if (!w.traffic.at("shop").up) return false;
  const auto& stacks = w.stacks.at("shop");
  std::string primary;
  for (const auto& [n, s] : stacks) {
    if (!s.up) return false;
    if (s.role == Role::primary) {
      if (!primary.empty()) return false;
      primary = n;
    }
  }
  if (primary.empty()) return false;
  for (const auto& [n, s] : stacks)
    if (n != primary && (s.role != Role::replica || s.upstream != primary)) return false;
  // Issue 17: one cluster, every copy able to follow, no bootstrap under way.
  for (const auto& [n, s] : stacks)
    if (s.cluster != stacks.at(primary).cluster || s.diverged || !s.bootstrap_phase.empty())
      return false;
  return true;
}

struct Outcome {
  long healthy_plans = 0;
  long states = 0, plans = 0, steps = 0, converged = 0, blocked = 0, violations = 0;
  long later_passes = 0;              // plan+apply passes after the first one that were needed
  long planned_fences = 0;            // issue 15: fences checked for a lowered TTL and a pause
  long bootstraps = 0;                // issue 17: replication.bootstrap steps started
  size_t stride = 1;                  // every stride-th state of the product was taken
  long whole = 0;                     // states in the whole product
  long product = 0;                   // of them taken (every one, or every stride-th)
  long excluded = 0;                  // of those, left out as impossible (see possible)
  std::vector<std::string> failures;  // the first few, for the report
  std::map<std::string, long> kinds;  // violations by kind
};

constexpr int kMaxPasses = 3;

// Issue 17: a bootstrap's first attempt on each stack (per check) dies
// after moving the data aside, as a kill -9 of apply would leave it.
class CrashingBootstrap : public StackDriver {
 public:
  CrashingBootstrap(std::unique_ptr<StackDriver> inner, FakeWorld& w, std::string stack)
      : inner_(std::move(inner)), w_(w), stack_(std::move(stack)) {}
  StackObs observe() override { return inner_->observe(); }
  Status set_maintenance(bool on) override { return inner_->set_maintenance(on); }
  Status stop_replication() override { return inner_->stop_replication(); }
  Status promote() override { return inner_->promote(); }
  Status start_replication(const StackSpec& s) override { return inner_->start_replication(s); }
  Status bootstrap_replica(const StackSpec& s) override {
    {
      std::lock_guard lock(w_.mu.m);
      FakeStack& me = w_.stacks.at("shop").at(stack_);
      if (me.up && me.bootstrap_phase.empty()) {
        me.up = false;
        me.bootstrap_phase = "copy";
        return Err("killed during the base backup (injected)");
      }
    }
    return inner_->bootstrap_replica(s);
  }

 private:
  std::unique_ptr<StackDriver> inner_;
  FakeWorld& w_;
  std::string stack_;
};

Plan plan_of(FakeWorld& w, const GroupSpec& g) {
  Plan p;
  plan_group(g, w.observe("shop"), p.actions, p.skipped);
  return p;
}

// One desired state (active, allow_data_loss) and its drivers, reused for
// every observed state: the drivers act on `world`, which each check
// overwrites with the state under test.
class Checker {
 public:
  // `clients` (issue 15): the group's traffic has `switch_ttl` 5 (TTL 60),
  // and the checks of what clients see are made too (see check_all).
  // `crash_bootstraps` (issue 17): the first attempt of every bootstrap
  // dies after moving the stack's data aside (the stack is then down, its
  // marker at "copy"), as a kill -9 of apply would leave it; apply's retry
  // must take it up from there.
  Checker(FakeWorld& world, const GroupSpec& g, bool clients = false, bool crash_bootstraps = false)
      : world_(world), g_(g), desired_(make_desired({g})), factory_(world), clients_(clients) {
    factory_.concurrent = false;  // in memory: no thread per stack and observation
    if (crash_bootstraps)
      factory_.wrap_stack = [this](std::unique_ptr<StackDriver> d, const std::string& stack) {
        return std::unique_ptr<StackDriver>(
            std::make_unique<CrashingBootstrap>(std::move(d), world_, stack));
      };
    fleet_ = make_fleet(desired_, factory_);
  }

  void check(const FakeWorld& initial, Outcome& out) {
    FakeWorld& w = world_;
    w = initial;
    w.instant_replay = false;  // replicas catch up only when a wait runs
    const bool from_healthy = healthy(initial);
    out.healthy_plans += from_healthy;
    auto fail = [&](const std::string& what) {
      ++out.violations;
      if (out.kinds[what.substr(0, what.find(':', 12))]++ == 0)
        out.failures.push_back(what + "\n    state: " + describe(initial) + "\n    active: " +
                               g_.active + (g_.allow_data_loss ? " allow_data_loss" : ""));
    };
    std::set<std::string> before = violations(w);
    ApplyOptions o;
    o.parallelism = 1;
    o.action_timeout = std::chrono::milliseconds(50);
    o.wait_timeout = std::chrono::milliseconds(50);
    Clock::Duration lowered_at{};  // when the TTL was lowered (or this apply started)
    bool completes = false;        // the apply's plan has no blocked step
    o.progress = [&](const StepReport& r) {
      const Action& a = r.action;
      if (r.outcome == StepOutcome::blocked) {
        if (r.detail.empty()) fail("blocked step without a reason");
        return;
      }
      if (clients_ && r.outcome == StepOutcome::ok && a.kind == ActionKind::traffic_ttl)
        lowered_at = clock_.now();
      if (r.outcome == StepOutcome::started) {
        ++out.steps;
        FakeStack& s = w.stacks["shop"][a.stack];
        if (clients_ && a.kind == ActionKind::maintenance_on) {
          // A planned fence: of the writable stack that traffic points at
          // exactly, for a switch to another stack that can complete (a
          // plan with a blocked step skips phase 0: planner.cc).
          const FakeTraffic& t = w.traffic["shop"];
          if (completes && t.up && t.also.empty() && t.target == a.stack && a.stack != g_.active &&
              s.up && s.role == Role::primary && !s.maintenance) {
            ++out.planned_fences;
            if (t.ttl > 5) fail("issue 15: a planned fence before the TTL was lowered");
            if (clock_.now() - lowered_at < std::chrono::seconds(60))
              fail("issue 15: a planned fence before the previous TTL had passed");
            if (t.paused == false) fail("issue 15: a planned fence with the pooler not paused");
          }
        }
        if (a.kind == ActionKind::replication_wait) {
          // The replica replays what its upstream wrote while the wait runs.
          const FakeStack& p = w.stacks["shop"][a.source];
          if (s.up && p.up && p.role == Role::primary && s.upstream == a.source &&
              s.cluster == p.cluster && !s.diverged)
            s.lsn = p.lsn;
        }
        if (a.kind == ActionKind::traffic_switch && !g_.allow_data_loss) {
          // Issue 17: traffic never leaves a primary of another cluster
          // than the one it goes to (its writes would be left behind).
          const FakeTraffic& t = w.traffic["shop"];
          std::vector<std::string> from = t.also;
          if (!t.target.empty()) from.push_back(t.target);
          for (const auto& f : from) {
            const FakeStack& q = w.stacks["shop"][f];
            if (f != a.stack && q.role == Role::primary && q.cluster != s.cluster)
              fail("issue 17: traffic moved away from another cluster's primary");
          }
        }
        if (a.kind == ActionKind::replication_bootstrap) {
          ++out.bootstraps;
          // Issue 17: what a bootstrap may destroy. An interrupted one was
          // judged when it began: its old data is kept aside until the
          // new replica streams, so only its target is checked.
          const FakeStack& p = w.stacks["shop"][a.source];
          const FakeTraffic& t = w.traffic["shop"];
          bool reached = t.target == a.stack;
          for (const auto& x : t.also) reached |= x == a.stack;
          if (a.stack == g_.active) fail("issue 17: a bootstrap of the active stack");
          if (!a.destructive || a.removes.empty())
            fail("issue 17: a bootstrap not marked destructive with what it removes");
          if (g_.stacks.at(a.stack).get("bootstrap") != "basebackup")
            fail("issue 17: a bootstrap of a stack that did not opt in");
          if (!p.up || p.role != Role::primary) fail("issue 17: a bootstrap from a non-primary");
          if (s.up && s.role != Role::replica && !s.maintenance)
            fail("issue 17: a bootstrap of a stack that accepts writes");
          if (s.bootstrap_phase.empty() && !g_.allow_data_loss) {
            if (s.cluster == p.cluster && (s.diverged || s.lsn > p.lsn))
              fail("issue 17: a bootstrap destroying writes the active stack lacks");
            if (reached) fail("issue 17: a bootstrap of a stack traffic reaches");
          }
        }
        if (a.kind == ActionKind::database_promote) {
          bool loss_possible = false;
          for (const auto& [n, other] : w.stacks["shop"]) {
            if (n == a.stack) continue;
            if ((!other.up && other.role != Role::replica) ||
                other.lsn > s.lsn + g_.replication.max_lag_bytes)
              loss_possible = true;
            // Issue 17: a primary of another cluster holds writes no copy
            // of the candidate's cluster has.
            if (other.role == Role::primary && other.cluster != s.cluster) loss_possible = true;
          }
          if (loss_possible && !g_.allow_data_loss)
            fail("invariant 3: promotion that may lose data");
        }
        return;
      }
      if (r.outcome != StepOutcome::ok)
        fail(std::string(to_string(a.kind)) + " " + a.stack + " " + to_string(r.outcome) + ": " +
             r.detail);
      std::set<std::string> after = violations(w);
      for (const auto& v : after)
        if (!before.count(v)) fail(v + " introduced by " + to_string(a.kind) + " " + a.stack);
      before = after;
    };
    Plan plan = plan_of(w, g_);
    ++out.plans;
    for (int pass = 1;; ++pass) {
      if (pass > 1) ++out.later_passes;
      // No journal: a TTL lowered before this apply counts from its start.
      lowered_at = clock_.now();
      completes = !plan.any_blocked();
      ApplyResult r = Applier(desired_, fleet_, nullptr, clock_).apply(plan, o);
      const GroupApply* ga = r.groups.empty() ? nullptr : &r.groups[0];
      if (clients_ && w.traffic["shop"].up && w.traffic["shop"].paused == true)
        fail("issue 15: the pooler is left holding its clients after an apply");
      if (ga && ga->stopped == StepOutcome::blocked) {
        if (from_healthy) fail("blocked in a healthy state: " + ga->steps.back().detail);
        ++out.blocked;
        break;
      }
      if (ga && ga->stopped != StepOutcome::ok) break;  // reported by progress
      plan = plan_of(w, g_);
      if (plan.actions.empty()) {
        ++out.converged;
        if (clients_ && w.traffic["shop"].ttl != 60)
          fail("issue 15: converged with the TTL at " + std::to_string(w.traffic["shop"].ttl));
        break;
      }
      if (pass == kMaxPasses) {
        fail("not converged after " + std::to_string(pass) + " passes: the next plan starts with " +
             to_string(plan.actions[0].kind) + " " + plan.actions[0].stack +
             "\n    after: " + describe(w));
        break;
      }
    }
    if (!violations(w).empty() && before.empty()) fail("ended with " + *violations(w).begin());
  }

 private:
  FakeWorld& world_;
  GroupSpec g_;
  DesiredState desired_;
  FakeDriverFactory factory_;
  bool clients_;
  Fleet fleet_;
  FakeClock clock_;
};

// Whether PostgreSQL can be in the state at all. Only one kind is left
// out: a reachable replica streaming from a reachable primary (the fake
// observes it streaming) with a position past that primary's. A streaming
// replica has replayed only what its upstream wrote, so its position is
// never past the upstream's; the planner relies on it (a replica observed a
// moment after its primary may show a later position, never data the
// primary lacks) and does not count such a replica as ahead. A replica whose
// upstream is down, a replica of a replica, or one with replication stopped
// may be ahead (it followed another primary before), and stays in.
bool possible(const FakeWorld& w) {
  const auto& stacks = w.stacks.at("shop");
  for (const auto& [n, s] : stacks) {
    if (!s.up || s.role != Role::replica || s.upstream.empty()) continue;
    const FakeStack& up = stacks.at(s.upstream);
    if (up.up && up.role == Role::primary && s.lsn > up.lsn && s.cluster == up.cluster &&
        !s.diverged)
      return false;
  }
  return true;
}

// Checks combinations of the stacks' states and traffic for every desired
// active in `actives`, with and without allow_data_loss: every one with
// `stride` 1, else every stride-th of the whole product in odometer order
// (traffic turning fastest, then the first stack's state, ...; a stride
// prime to each dimension's size takes every value of each dimension
// about equally often). With `possible_only`, states PostgreSQL cannot be in
// (see possible) are left out and counted in `excluded`.
// With `clients` (issue 15), the traffic has `switch_ttl: 5` and each
// traffic state comes with its TTL at 60 or already lowered to 5, and with
// no pooler, a pooler that is not paused, or one that is (a switch
// interrupted after its pause); and three more things are checked: a
// planned fence (of the writable stack traffic points at) comes only after
// the TTL was lowered and the previous TTL passed, with the pooler paused;
// no apply leaves the pooler paused; a converged group has its TTL back.
Outcome check_all(const std::vector<std::string>& names, const std::vector<std::string>& actives,
                  size_t stride = 1, bool possible_only = false, bool clients = false,
                  bool bootstrap = false) {
  QuietLog quiet;
  Outcome out;
  FakeWorld world;
  std::vector<std::unique_ptr<Checker>> checkers;
  for (const auto& active : actives)
    for (bool adl : {false, true})
      for (bool opted : {true, false}) {
        if (opted && !bootstrap) continue;
        GroupSpec g = make_group(active, adl, names);
        if (clients) g.traffic[0].switch_ttl = 5;
        if (opted)
          for (auto& [n, st] : g.stacks) st.settings["bootstrap"] = "basebackup";
        checkers.push_back(std::make_unique<Checker>(world, g, clients, bootstrap));
      }
  std::vector<std::vector<FakeStack>> per_stack;
  for (const auto& n : names) {
    std::vector<std::string> others;
    for (const auto& o : names)
      if (o != n) others.push_back(o);
    per_stack.push_back(stack_states(others));
    if (!bootstrap) continue;
    // Issue 17: each state as a copy of the group's cluster, another
    // cluster, a copy that diverged, and down in an interrupted bootstrap
    // (its data moved aside).
    std::vector<FakeStack> more;
    for (const FakeStack& f : per_stack.back()) {
      more.push_back(f);
      FakeStack other = f, diverged = f, aside = f;
      other.cluster = 2;
      diverged.diverged = true;
      aside.bootstrap_phase = "copy";
      more.push_back(other);
      more.push_back(diverged);
      if (!f.up) more.push_back(aside);
    }
    per_stack.back() = std::move(more);
  }
  std::vector<FakeTraffic> traffic = traffic_states(names);
  if (clients) {
    std::vector<FakeTraffic> more;
    for (const FakeTraffic& t : traffic)
      for (int ttl : {60, 5})
        for (std::optional<bool> paused :
             {std::optional<bool>(), std::optional<bool>(false), std::optional<bool>(true)}) {
          FakeTraffic v = t;
          v.ttl = ttl;
          v.paused = paused;
          more.push_back(v);
        }
    traffic = std::move(more);
  }
  std::vector<size_t> at(names.size(), 0);  // an odometer over per_stack
  size_t index = 0;
  for (;;) {
    for (const FakeTraffic& t : traffic) {
      if (index++ % stride != 0) continue;
      ++out.product;
      FakeWorld initial;
      for (size_t i = 0; i < names.size(); ++i)
        initial.stacks["shop"][names[i]] = per_stack[i][at[i]];
      initial.traffic["shop"] = t;
      if (possible_only && !possible(initial)) {
        ++out.excluded;
        continue;
      }
      ++out.states;
      for (auto& c : checkers) c->check(initial, out);
    }
    size_t i = 0;
    while (i < names.size() && ++at[i] == per_stack[i].size()) at[i++] = 0;
    if (i == names.size()) break;
  }
  out.whole = index;
  out.stride = stride;
  return out;
}

void report(const char* what, const Outcome& out) {
  std::cout << what << ": ";
  if (out.product != out.whole)
    std::cout << "a sample of " << out.product << " of the " << out.whole << " states (every "
              << out.stride << "th), ";
  if (out.excluded) std::cout << out.excluded << " impossible states left out, ";
  std::cout << out.states << " observed states, " << out.plans << " plans, " << out.steps
            << " steps executed, " << out.converged << " converged, " << out.blocked
            << " stopped at a blocked step (" << out.healthy_plans
            << " plans from healthy states, none may block), " << out.violations << " violations\n";
  for (const auto& f : out.failures) std::cout << "  " << f << "\n";
  for (const auto& [k, n] : out.kinds) std::cout << "  " << n << " x " << k << "\n";
}

}  // namespace

TEST_CASE("exhaustive: every two-stack state plans safely, step by step") {
  auto t0 = std::chrono::steady_clock::now();
  Outcome out = check_all({"primary", "standby"}, {"primary", "standby"});
  report("exhaustive check", out);
  std::cout << "  (through apply in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s)\n";
  CHECK(out.states == 2 * 2 * 2 * 2 * 4 * 4 * 2 * 2 * (4 * 2 + 1));  // + absent (issue 17)
  CHECK(out.healthy_plans > 0);
  CHECK(out.later_passes == 0);
  CHECK(out.violations == 0);
}

TEST_CASE("exhaustive: TTL pre-lowering and a pooler's pause keep every state safe (issue 15)") {
  auto t0 = std::chrono::steady_clock::now();
  Outcome out = check_all({"primary", "standby"}, {"primary", "standby"}, 1, false, true);
  report("exhaustive check with switch_ttl and a pooler", out);
  std::cout << "  " << out.planned_fences
            << " planned fences checked for a lowered TTL, its wait and the pooler's pause\n";
  std::cout << "  (through apply in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s)\n";
  CHECK(out.states == 2 * 2 * 2 * 2 * 4 * 4 * 2 * 2 * (4 * 2 + 1) * 2 * 3);
  CHECK(out.planned_fences > 0);
  CHECK(out.healthy_plans > 0);
  CHECK(out.later_passes == 0);
  CHECK(out.violations == 0);
}

// Three stacks (issue 12): the whole product is 1,088,000 states (40 per
// stack, 17 of traffic: 16, and absent since issue 17), 6,528,000 plans.
// Run whole with STACKFLIP_EXHAUSTIVE_FULL=1 (about 2 minutes; on
// 2026-11-30, before absent: 1,009,024 possible states, 6,054,144 plans,
// 5,795,346 steps, 0 violations). CI runs it twice (once under ASan) on 2
// cores, so it checks every 11th state (11 is prime to 40 and 17, so every
// state of each stack and of traffic is taken, about equally often);
// STACKFLIP_EXHAUSTIVE_STRIDE=n every n-th.
TEST_CASE("exhaustive: three-stack states plan safely through apply (issue 12)") {
  auto t0 = std::chrono::steady_clock::now();
  size_t stride = std::getenv("STACKFLIP_EXHAUSTIVE_FULL") ? 1 : 11;
  if (const char* s = std::getenv("STACKFLIP_EXHAUSTIVE_STRIDE"))
    stride = std::max(1, std::atoi(s));
  Outcome out = check_all({"a", "b", "c"}, {"a", "b", "c"}, stride, /*possible_only=*/true);
  report("exhaustive three-stack check", out);
  std::cout << "  (through apply in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s)\n";
  CHECK(out.whole == 40 * 40 * 40 * 17);
  CHECK(out.states > 0);
  CHECK(out.healthy_plans > 0);
  CHECK(out.later_passes == 0);
  CHECK(out.violations == 0);
}

// Issue 17: the two-stack states, each stack also as another cluster, a
// copy that diverged, and (down) in an interrupted bootstrap: 112 x 112
// stack states x 8 of traffic, for both desired actives, with
// and without allow_data_loss, with `bootstrap: basebackup` on every stack
// and on none; every bootstrap's first attempt dies after moving the data
// aside and apply's retry must finish it. Besides the invariants above: a
// bootstrap never runs on the active stack, on a stack that did not opt in,
// from a non-primary, on a stack that accepts writes, and (without
// allow_data_loss) never destroys writes the active stack lacks or a stack
// traffic reaches; it is marked destructive and says what it removes; a
// promotion never leaves another cluster's primary behind.
TEST_CASE("exhaustive: bootstrapping a standby keeps every two-stack state safe (issue 17)") {
  auto t0 = std::chrono::steady_clock::now();
  Outcome out = check_all({"primary", "standby"}, {"primary", "standby"}, 1,
                          /*possible_only=*/true, false, /*bootstrap=*/true);
  report("exhaustive bootstrap check", out);
  std::cout << "  " << out.bootstraps
            << " bootstrap attempts checked (each first one killed after moving the data aside)\n";
  std::cout << "  (through apply in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s)\n";
  CHECK(out.whole == 112 * 112 * (8 + 1));  // traffic: 8, and absent (issue 17)
  CHECK(out.bootstraps > 0);
  CHECK(out.states > 0);
  CHECK(out.healthy_plans > 0);
  CHECK(out.violations == 0);
}

// Issue 11: "promotion refused". Every state of the check above, for both
// desired actives, with and without allow_data_loss, is applied through apply (not step by step)
// with the desired active stack's provider refusing its promotion for good. After every step the
// invariants hold (no step introduces a violation), the refusal is asked once, and when the apply
// fenced a serving old primary, that stack serves again (writable) and traffic is where it was.
namespace {

class RefusingPromote : public StackDriver {
 public:
  RefusingPromote(std::unique_ptr<StackDriver> in, int& asked)
      : in_(std::move(in)), asked_(asked) {}
  StackObs observe() override { return in_->observe(); }
  Status set_maintenance(bool on) override { return in_->set_maintenance(on); }
  Status stop_replication() override { return in_->stop_replication(); }
  Status promote() override {
    ++asked_;
    return Refused("no slave database server to promote");
  }
  Status start_replication(const StackSpec& s) override { return in_->start_replication(s); }

 private:
  std::unique_ptr<StackDriver> in_;
  int& asked_;
};

}  // namespace

TEST_CASE("exhaustive: a refused promotion leaves every state safe and the old primary serving") {
  long states = 0, refused = 0, reopened = 0, failures = 0;
  std::vector<std::string> report;
  auto fail = [&](const std::string& what, const FakeWorld& initial, const std::string& active) {
    ++failures;
    if (report.size() < 20)
      report.push_back(what + "\n    state: " + describe(initial) + "\n    active: " + active);
  };
  for (bool up_a : {true, false})
    for (bool up_b : {true, false})
      for (bool m_a : {true, false})
        for (bool m_b : {true, false})
          for (const RoleChoice& r_a : kRoles)
            for (const RoleChoice& r_b : kRoles)
              for (uint64_t l_a : {90u, 100u})
                for (uint64_t l_b : {90u, 100u})
                  for (const char* target : {"primary", "standby", ""})
                    for (bool t_up : {true, false}) {
                      FakeWorld initial;
                      initial.stacks["shop"]["primary"] =
                          FakeStack{up_a, m_a, r_a.role, r_a.streaming ? "standby" : "", l_a, 1};
                      initial.stacks["shop"]["standby"] =
                          FakeStack{up_b, m_b, r_b.role, r_b.streaming ? "primary" : "", l_b, 1};
                      initial.traffic["shop"] = FakeTraffic{t_up, target, 60};
                      ++states;
                      for (const std::string active : {"primary", "standby"})
                        for (bool adl : {false, true}) {
                          FakeWorld w = initial;
                          GroupSpec g = make_group(active, adl);
                          DesiredState desired = make_desired({g});
                          FakeDriverFactory factory(w);
                          factory.concurrent = false;
                          int asked = 0;
                          factory.wrap_stack =
                              [&](std::unique_ptr<StackDriver> d,
                                  const std::string& stack) -> std::unique_ptr<StackDriver> {
                            if (stack != active) return d;
                            return std::make_unique<RefusingPromote>(std::move(d), asked);
                          };
                          Fleet fleet = make_fleet(desired, factory);
                          FakeClock clock;
                          ApplyOptions o;
                          o.parallelism = 1;
                          o.action_timeout = std::chrono::milliseconds(50);
                          o.wait_timeout = std::chrono::milliseconds(50);
                          std::set<std::string> before = violations(w);
                          o.progress = [&](const StepReport& r) {
                            if (r.outcome == StepOutcome::started) return;
                            std::set<std::string> now = violations(w);
                            for (const auto& v : now)
                              if (!before.count(v))
                                fail(v + " introduced by " + to_string(r.action.kind) + " " +
                                         r.action.stack,
                                     initial, active);
                            before = now;
                          };
                          const std::string other = active == "primary" ? "standby" : "primary";
                          const FakeStack& old0 = initial.stacks.at("shop").at(other);
                          const bool old_serving =
                              old0.up && old0.role == Role::primary && !old0.maintenance;
                          ApplyResult r = Applier(desired, fleet, nullptr, clock)
                                              .apply(make_plan(desired, w.observe_all()), o);
                          if (asked == 0) continue;
                          ++refused;
                          if (asked != 1)
                            fail(
                                "a refused promotion was asked " + std::to_string(asked) + " times",
                                initial, active);
                          if (r.exit_code() != 1)
                            fail("a refused promotion did not fail the apply", initial, active);
                          const FakeStack& old = w.stacks.at("shop").at(other);
                          const FakeStack& cand = w.stacks.at("shop").at(active);
                          if (cand.role == Role::primary)
                            fail("the candidate is primary after a refusal", initial, active);
                          if (w.traffic.at("shop").target != initial.traffic.at("shop").target)
                            fail("traffic moved although nothing was promoted", initial, active);
                          if (old_serving) {
                            if (r.groups[0].reopened != other)
                              fail("the fenced old primary was not re-opened", initial, active);
                            if (old.maintenance || old.role != Role::primary)
                              fail("the old primary does not serve again", initial, active);
                            else
                              ++reopened;
                          }
                        }
                    }
  std::cout << "exhaustive promotion refused: " << states << " observed states, " << refused
            << " applies reached a refused promotion, " << reopened
            << " re-opened the fenced old primary, " << failures << " violations\n";
  for (const auto& f : report) std::cout << "  " << f << "\n";
  CHECK(refused > 0);
  CHECK(reopened > 0);
  CHECK(failures == 0);
}

// Found by running the exhaustive check through apply (issue 12): a replica
// configured to follow the stack being promoted streams from it once it is
// primary. The planner's simulation did not know, so the plan ended with a
// replication.start that apply's guard then found gone from a fresh plan:
// "state changed since the plan was made", exit 1, on a group that had
// converged.
TEST_CASE(
    "apply: a replica that follows the promoted stack is not re-attached, apply ends ok (issue "
    "12)") {
  FakeWorld w;
  w.stacks["shop"]["primary"] = FakeStack{true, true, Role::replica, "standby", 90, 1};
  w.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 90, 1};
  w.traffic["shop"] = FakeTraffic{true, "primary", 60};
  GroupSpec g = make_group("primary", /*allow_data_loss=*/true);
  DesiredState desired = make_desired({g});
  FakeDriverFactory factory(w);
  Fleet fleet = make_fleet(desired, factory);
  FakeClock clock;
  ApplyOptions o;
  o.parallelism = 1;
  Plan plan = make_plan(desired, w.observe_all());
  for (const auto& s : steps(plan.actions)) CHECK(s != "replication.start standby from primary");
  QuietLog quiet;
  ApplyResult r = Applier(desired, fleet, nullptr, clock).apply(plan, o);
  CHECK(r.exit_code() == 0);
  CHECK(make_plan(desired, w.observe_all()).empty());
  CHECK(w.stacks["shop"]["standby"].upstream == "primary");
}
