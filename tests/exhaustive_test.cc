// The exhaustive safety check of the planner.
//
// Every observed state of a two-stack group — per stack: reachable ×
// maintenance × (primary | replica streaming from the other | replica with
// replication stopped | unknown role) × (caught up | behind), and traffic
// (primary | standby | none) × (reachable | not) — is planned for both desired
// actives, with and without allow_data_loss. Each plan is executed step by
// step through the fake drivers (fake_provider.h), and after every step the
// safety invariants of DESIGN.md are checked on the true state:
//   1. never two writable databases (reachable primary, maintenance off);
//   2. traffic never points at a reachable replica with maintenance off;
//   3. no promotion that could lose data (another stack ahead by more than
//      max_lag_bytes, or an old primary that cannot be seen) unless
//      allow_data_loss;
// and a step never introduces a violation that was not there before it.
// At the end the group has converged (a fresh plan is empty) or the plan
// stopped at a blocked step that says why.
#include <catch2/catch.hpp>

#include <iostream>
#include <set>

#include "builders.h"
#include "fake_provider.h"
#include "core/apply.h"
#include "core/planner.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

struct RoleChoice {
  Role role;
  bool streaming;
};
constexpr RoleChoice kRoles[] = {{Role::primary, false},
                                 {Role::replica, true},
                                 {Role::replica, false},
                                 {Role::unknown, false}};

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
           std::to_string(s.lsn) + "} ";
  const auto& t = w.traffic.at("shop");
  return out + "traffic{" + (t.up ? "up" : "down") + "," + (t.target.empty() ? "-" : t.target) +
         (t.also.empty() ? "" : "+" + t.also[0]) + "}";
}

struct Outcome {
  long healthy_plans = 0;
  long states = 0, plans = 0, steps = 0, converged = 0, blocked = 0, violations = 0;
  std::vector<std::string> failures;  // the first few, for the report
};

// All up, one primary, the other streaming from it, traffic reachable: from
// here every desired state must be reached without a blocked step.
bool healthy(const FakeWorld& w) {
  const auto& s = w.stacks.at("shop");
  const FakeStack &a = s.at("primary"), &b = s.at("standby");
  if (!a.up || !b.up || !w.traffic.at("shop").up) return false;
  return (a.role == Role::primary && b.role == Role::replica && b.upstream == "primary") ||
         (b.role == Role::primary && a.role == Role::replica && a.upstream == "standby");
}

void check_one(const FakeWorld& initial, const GroupSpec& g, Outcome& out) {
  FakeWorld w = initial;
  w.instant_replay = false;  // replicas catch up only when a wait runs
  DesiredState desired = make_desired({g});
  FakeDriverFactory factory(w);
  auto fail = [&](const std::string& what) {
    ++out.violations;
    if (out.failures.size() < 20)
      out.failures.push_back(what + "\n    state: " + describe(initial) + "\n    active: " +
                             g.active + (g.allow_data_loss ? " allow_data_loss" : ""));
  };
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, w.observe("shop"), actions, skipped);
  ++out.plans;
  std::set<std::string> before = violations(w);
  for (const Action& a : actions) {
    if (a.blocked) {
      if (a.why_blocked.empty()) fail("blocked step without a reason");
      if (healthy(initial)) fail("blocked in a healthy state: " + a.why_blocked);
      ++out.blocked;
      return;
    }
    ++out.steps;
    FakeStack* s = a.kind == ActionKind::traffic_switch ? nullptr : &w.stacks["shop"][a.stack];
    Status st;
    switch (a.kind) {
      case ActionKind::maintenance_on:
      case ActionKind::maintenance_off:
        st = (*factory.stack_driver(desired, g, a.stack))->set_maintenance(a.kind == ActionKind::maintenance_on);
        break;
      case ActionKind::replication_wait: {
        const FakeStack& p = w.stacks["shop"][a.source];
        if (!s->up || !p.up || p.role != Role::primary) { fail("wait on a stack that cannot catch up"); return; }
        if (s->upstream == a.source) s->lsn = p.lsn;
        if (p.lsn > s->lsn + g.replication.max_lag_bytes) { fail("wait that never completes"); return; }
        break;
      }
      case ActionKind::replication_stop:
        st = (*factory.stack_driver(desired, g, a.stack))->stop_replication();
        break;
      case ActionKind::database_promote: {
        bool loss_possible = false;
        for (const auto& [n, o] : w.stacks["shop"]) {
          if (n == a.stack) continue;
          if ((!o.up && o.role != Role::replica) || o.lsn > s->lsn + g.replication.max_lag_bytes)
            loss_possible = true;
        }
        if (loss_possible && !g.allow_data_loss) fail("invariant 3: promotion that may lose data");
        st = (*factory.stack_driver(desired, g, a.stack))->promote();
        break;
      }
      case ActionKind::traffic_switch:
        st = (*factory.traffic_driver(desired, g, g.traffic[0]))->switch_to(a.stack);
        break;
      case ActionKind::replication_start:
        st = (*factory.stack_driver(desired, g, a.stack))->start_replication(g.stacks.at(a.source));
        break;
    }
    if (!st.ok()) { fail(std::string(to_string(a.kind)) + " " + a.stack + " failed: " + st.message()); return; }
    std::set<std::string> after = violations(w);
    for (const auto& v : after)
      if (!before.count(v)) fail(v + " introduced by " + to_string(a.kind) + " " + a.stack);
    before = after;
  }
  std::vector<Action> again;
  std::vector<Skipped> unused;
  plan_group(g, w.observe("shop"), again, unused);
  if (!again.empty())
    fail("not converged: next plan starts with " + std::string(to_string(again[0].kind)) + " " +
         again[0].stack + "\n    after: " + describe(w));
  else
    ++out.converged;
  if (!violations(w).empty()) fail("converged with " + *violations(w).begin());
}

}  // namespace

TEST_CASE("exhaustive: every two-stack state plans safely, step by step") {
  Outcome out;
  const std::vector<std::string> names = {"primary", "standby"};
  for (bool up_a : {true, false}) for (bool up_b : {true, false})
  for (bool m_a : {true, false}) for (bool m_b : {true, false})
  for (const RoleChoice& r_a : kRoles) for (const RoleChoice& r_b : kRoles)
  for (uint64_t l_a : {90u, 100u}) for (uint64_t l_b : {90u, 100u})
  // "mixed": the record holds both stacks' addresses (issue 11).
  for (const char* target : {"primary", "standby", "", "mixed"}) for (bool t_up : {true, false}) {
    FakeWorld w;
    w.stacks["shop"]["primary"] = FakeStack{up_a, m_a, r_a.role, r_a.streaming ? "standby" : "", l_a, 1};
    w.stacks["shop"]["standby"] = FakeStack{up_b, m_b, r_b.role, r_b.streaming ? "primary" : "", l_b, 1};
    w.traffic["shop"] = std::string(target) == "mixed" ? FakeTraffic{t_up, "primary", 60, {"standby"}}
                                                       : FakeTraffic{t_up, target, 60};
    ++out.states;
    for (const auto& active : names)
      for (bool adl : {false, true}) {
        out.healthy_plans += healthy(w);
        check_one(w, make_group(active, adl), out);
      }
  }
  std::cout << "exhaustive check: " << out.states << " observed states, " << out.plans
            << " plans, " << out.steps << " steps executed, " << out.converged << " converged, "
            << out.blocked << " stopped at a blocked step (" << out.healthy_plans
            << " plans from healthy states, none may block), " << out.violations << " violations\n";
  for (const auto& f : out.failures) std::cout << "  " << f << "\n";
  CHECK(out.states == 2 * 2 * 2 * 2 * 4 * 4 * 2 * 2 * 4 * 2);
  CHECK(out.healthy_plans > 0);
  CHECK(out.violations == 0);
}

// Issue 11: "promotion refused". Every state of the check above, for both
// desired actives, with and without allow_data_loss, is applied through apply (not step by step) with the
// desired active stack's provider refusing its promotion for good. After
// every step the invariants hold (no step introduces a violation), the
// refusal is asked once, and when the apply fenced a serving old primary,
// that stack serves again (writable) and traffic is where it was.
namespace {

class RefusingPromote : public StackDriver {
 public:
  RefusingPromote(std::unique_ptr<StackDriver> in, int& asked) : in_(std::move(in)), asked_(asked) {}
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

class NoWaitClock : public Clock {
 public:
  Duration now() override { return t_; }
  void sleep_for(Duration d) override { t_ += d; }
  std::string rfc3339_now() override { return "2026-11-26T18:00:00Z"; }

 private:
  Duration t_{0};
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
  for (bool up_a : {true, false}) for (bool up_b : {true, false})
  for (bool m_a : {true, false}) for (bool m_b : {true, false})
  for (const RoleChoice& r_a : kRoles) for (const RoleChoice& r_b : kRoles)
  for (uint64_t l_a : {90u, 100u}) for (uint64_t l_b : {90u, 100u})
  for (const char* target : {"primary", "standby", ""}) for (bool t_up : {true, false}) {
    FakeWorld initial;
    initial.stacks["shop"]["primary"] = FakeStack{up_a, m_a, r_a.role, r_a.streaming ? "standby" : "", l_a, 1};
    initial.stacks["shop"]["standby"] = FakeStack{up_b, m_b, r_b.role, r_b.streaming ? "primary" : "", l_b, 1};
    initial.traffic["shop"] = FakeTraffic{t_up, target, 60};
    ++states;
    for (const std::string active : {"primary", "standby"})
    for (bool adl : {false, true}) {
      FakeWorld w = initial;
      GroupSpec g = make_group(active, adl);
      DesiredState desired = make_desired({g});
      FakeDriverFactory factory(w);
      int asked = 0;
      factory.wrap_stack = [&](std::unique_ptr<StackDriver> d,
                               const std::string& stack) -> std::unique_ptr<StackDriver> {
        if (stack != active) return d;
        return std::make_unique<RefusingPromote>(std::move(d), asked);
      };
      Fleet fleet = make_fleet(desired, factory);
      NoWaitClock clock;
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
            fail(v + " introduced by " + to_string(r.action.kind) + " " + r.action.stack, initial, active);
        before = now;
      };
      const std::string other = active == "primary" ? "standby" : "primary";
      const FakeStack& old0 = initial.stacks.at("shop").at(other);
      const bool old_serving = old0.up && old0.role == Role::primary && !old0.maintenance;
      ApplyResult r = Applier(desired, fleet, nullptr, clock).apply(make_plan(desired, w.observe_all()), o);
      if (asked == 0) continue;
      ++refused;
      if (asked != 1) fail("a refused promotion was asked " + std::to_string(asked) + " times", initial, active);
      if (r.exit_code() != 1) fail("a refused promotion did not fail the apply", initial, active);
      const FakeStack& old = w.stacks.at("shop").at(other);
      const FakeStack& cand = w.stacks.at("shop").at(active);
      if (cand.role == Role::primary) fail("the candidate is primary after a refusal", initial, active);
      if (w.traffic.at("shop").target != initial.traffic.at("shop").target)
        fail("traffic moved although nothing was promoted", initial, active);
      if (old_serving) {
        if (r.groups[0].reopened != other) fail("the fenced old primary was not re-opened", initial, active);
        if (old.maintenance || old.role != Role::primary)
          fail("the old primary does not serve again", initial, active);
        else ++reopened;
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
