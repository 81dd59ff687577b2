// apply against in-memory providers: what was called, in which order, and
// how failures, timeouts, guards and stops end a group.
#include "core/apply.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <utility>

#include "builders.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;
using Calls = std::vector<std::string>;

namespace {

// Records journal calls (apply_faults_test.cc checks their order against the drivers' calls).
class RecordingLog : public ActionLog {
 public:
  explicit RecordingLog(std::vector<std::string>& calls) : calls_(calls) {}
  Result<int64_t> begin(const Action& a, const std::string& origin) override {
    calls_.push_back("journal begin " + std::string(to_string(a.kind)) + " " + a.stack + " @" +
                     origin);
    return ++n_;
  }
  Status finish(int64_t id, const std::string& result, const std::string&, int64_t) override {
    calls_.push_back("journal end #" + std::to_string(id) + " " + result);
    return {};
  }

 private:
  std::vector<std::string>& calls_;
  int64_t n_ = 0;
};

FakeWorld steady_world(const std::vector<std::string>& groups = {"shop"}) {
  FakeWorld w;
  for (const auto& g : groups) {
    w.stacks[g]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
    w.stacks[g]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
    w.traffic[g] = FakeTraffic{true, "primary", 60};
  }
  return w;
}

struct Harness {
  FakeWorld world;
  DesiredState desired;
  FakeDriverFactory factory{world};
  FakeClock clock;
  Fleet fleet;
  std::vector<std::string> journal;

  Harness(FakeWorld w, DesiredState d) : world(std::move(w)), desired(std::move(d)) {}
  Plan plan() { return make_plan(desired, world.observe_all()); }
  ApplyResult apply(const Plan& p, ApplyOptions o = {}) {
    if (fleet.empty()) fleet = make_fleet(desired, factory);
    RecordingLog log(journal);
    o.origin = "config:test";
    o.action_timeout = std::chrono::milliseconds(200);
    o.wait_timeout = std::chrono::milliseconds(200);
    return Applier(desired, fleet, &log, clock).apply(p, o);
  }
};

}  // namespace

TEST_CASE("apply performs a planned switch through the drivers in order") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  std::vector<StepOutcome> seen;
  ApplyOptions o;
  o.progress = [&](const StepReport& r) { seen.push_back(r.outcome); };
  ApplyResult r = h.apply(h.plan(), o);
  CHECK(r.exit_code() == 0);
  CHECK(h.world.calls == Calls{"maintenance.on shop/primary", "replication.stop shop/standby",
                               "database.promote shop/standby", "maintenance.off shop/standby",
                               "traffic.switch shop to standby",
                               "replication.start shop/primary from standby"});
  CHECK(seen.size() == 14);  // a start and an end report per step
  CHECK(h.plan().empty());   // converged
}

namespace {
// Reports a note after a successful start_replication, as the postgres
// driver does after pg_rewind discarded WAL.
class NotingStackDriver : public StackDriver {
 public:
  explicit NotingStackDriver(std::unique_ptr<StackDriver> inner) : inner_(std::move(inner)) {}
  StackObs observe() override { return inner_->observe(); }
  Status set_maintenance(bool on) override { return inner_->set_maintenance(on); }
  Status stop_replication() override { return inner_->stop_replication(); }
  Status promote() override { return inner_->promote(); }
  Status start_replication(const StackSpec& s) override {
    Status st = inner_->start_replication(s);
    if (st.ok()) note_ = "primary wrote WAL up to 0/3000100, past 0/3000060; discarded";
    return st;
  }
  std::string take_note() override { return std::exchange(note_, std::string()); }

 private:
  std::unique_ptr<StackDriver> inner_;
  std::string note_;
};
class NoteLog : public ActionLog {
 public:
  Result<int64_t> begin(const Action&, const std::string&) override { return ++n_; }
  Status finish(int64_t, const std::string& result, const std::string& error, int64_t) override {
    ends.push_back(result + ": " + error);
    return {};
  }
  std::vector<std::string> ends;

 private:
  int64_t n_ = 0;
};
}  // namespace

TEST_CASE(
    "what a driver notes on a successful step (WAL a re-attach discarded) is reported and "
    "journaled") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  h.factory.wrap_stack = [](std::unique_ptr<StackDriver> d,
                            const std::string&) -> std::unique_ptr<StackDriver> {
    return std::make_unique<NotingStackDriver>(std::move(d));
  };
  h.fleet = make_fleet(h.desired, h.factory);
  NoteLog log;
  ApplyOptions o;
  o.action_timeout = std::chrono::milliseconds(200);
  ApplyResult r = Applier(h.desired, h.fleet, &log, h.clock).apply(h.plan(), o);
  CHECK(r.exit_code() == 0);
  REQUIRE(r.groups.size() == 1);
  const auto& steps = r.groups[0].steps;
  REQUIRE(steps.size() == log.ends.size());
  const size_t start =
      static_cast<size_t>(std::find_if(steps.begin(), steps.end(),
                                       [](const StepReport& st) {
                                         return st.action.kind == ActionKind::replication_start;
                                       }) -
                          steps.begin());
  REQUIRE(start < steps.size());
  CHECK(steps[start].detail == "primary wrote WAL up to 0/3000100, past 0/3000060; discarded");
  CHECK(log.ends[start] == "ok: primary wrote WAL up to 0/3000100, past 0/3000060; discarded");
  CHECK(log.ends.front() == "ok: ");  // nothing noted: nothing journaled beyond ok
}

// "Journaled before it starts and after it ends" is checked in
// apply_faults_test.cc, on one call list shared by the journal and the
// drivers (here they are two lists, which cannot tell before from after).

TEST_CASE("a failed promote stops the group at that step, with the driver's message") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  h.factory.wrap_stack = [](std::unique_ptr<StackDriver> d,
                            const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    return std::make_unique<FaultyStackDriver>(std::move(d), 2, false,
                                               /*sticky=*/true);  // 1: stop, 2: promote
  };
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 1);
  REQUIRE(r.groups.size() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::failed);
  CHECK(r.groups[0].steps.back().detail.find("injected failure") != std::string::npos);
  CHECK(r.groups[0].steps.back().detail.find("attempt 3 of 3") != std::string::npos);
  CHECK(h.world.calls == Calls{"maintenance.on shop/primary", "replication.stop shop/standby"});
  CHECK(h.journal.back() == "journal end #4 failed");
  // The old primary is fenced and nothing is writable: safe. A re-run converges.
  h.factory.wrap_stack = nullptr;
  h.fleet.clear();
  CHECK(h.apply(h.plan()).exit_code() == 0);
  CHECK(h.plan().empty());
}

TEST_CASE("a driver call that times out is reported as a timeout") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  h.factory.wrap_stack = [](std::unique_ptr<StackDriver> d,
                            const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "primary") return d;
    return std::make_unique<FaultyStackDriver>(std::move(d), 1, /*timeout=*/true, /*sticky=*/true);
  };
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::timeout);
  CHECK(h.journal.back() == "journal end #1 timeout");
}

TEST_CASE("a replica that never catches up times the wait out before anything is promoted") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  h.world.instant_replay = false;
  h.world.stacks["shop"]["standby"].lsn = 50;
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::timeout);
  CHECK(r.groups[0].steps.back().detail.find("50 bytes behind") != std::string::npos);
  // Nothing was promoted: the fenced primary serves again (issue 11, fail safe).
  CHECK(h.world.calls == Calls{"maintenance.on shop/primary", "maintenance.off shop/primary"});
  CHECK(r.groups[0].reopened == "primary");
}

TEST_CASE("a blocked plan applies its pending prefix and exits 3") {
  FakeWorld w = steady_world();
  w.stacks["shop"]["primary"].up = false;
  Harness h(w, make_desired({make_group("standby")}));
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 3);
  CHECK(r.groups[0].stopped == StepOutcome::blocked);
  CHECK(h.world.calls.empty());
}

TEST_CASE("a step whose guard no longer holds on fresh observation is not run") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  Plan p = h.plan();
  h.world.stacks["shop"]["primary"].up = false;  // the old primary died after planning
  ApplyResult r = h.apply(p);
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::stale);
  CHECK(h.world.calls.empty());
}

TEST_CASE("a stop request lets the running step finish and starts no other") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  std::atomic<bool> stop{false};
  ApplyOptions o;
  o.stop_requested = &stop;
  o.progress = [&](const StepReport& r) {
    if (r.outcome == StepOutcome::started && r.action.kind == ActionKind::database_promote)
      stop = true;
  };
  ApplyResult r = h.apply(h.plan(), o);
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::interrupted);
  CHECK(h.world.calls.back() == "database.promote shop/standby");
}

TEST_CASE("one group's failure does not stop another group") {
  FakeWorld w = steady_world({"alpha", "beta"});
  Harness h(w, make_desired({make_group("standby", false, {"primary", "standby"}, "alpha"),
                             make_group("standby", false, {"primary", "standby"}, "beta")}));
  h.factory.wrap_traffic = [](std::unique_ptr<TrafficDriver> d) { return d; };
  h.world.traffic["alpha"].up = false;  // alpha's traffic cannot follow a switch
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 3);
  CHECK(h.world.traffic["beta"].target == "standby");
  // alpha's serving primary is not fenced for a switch traffic cannot follow.
  CHECK_FALSE(h.world.stacks["alpha"]["primary"].maintenance);
  CHECK(h.world.calls == Calls{"maintenance.on beta/primary", "replication.stop beta/standby",
                               "database.promote beta/standby", "maintenance.off beta/standby",
                               "traffic.switch beta to standby",
                               "replication.start beta/primary from standby"});
}

TEST_CASE("a transient driver failure is retried and the switch completes") {
  Harness h(steady_world(), make_desired({make_group("standby")}));
  h.factory.wrap_stack = [](std::unique_ptr<StackDriver> d,
                            const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    return std::make_unique<FaultyStackDriver>(std::move(d), 2);  // the first promote fails once
  };
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 0);
  CHECK(h.plan().empty());
  // The faulty wrapper fails before reaching the world, so the world saw one promote.
  CHECK(std::count(h.world.calls.begin(), h.world.calls.end(), "database.promote shop/standby") ==
        1);
}

// Issue 12, found by the three-stack exhaustive check: plans that went stale
// in the middle of their own apply. Each step's guard re-plans; a decision
// the plan's own earlier steps change made the re-plan disagree, and apply
// stopped with "state changed since the plan was made" (exit 1) on a plan
// that could never finish.
TEST_CASE(
    "three stacks: with two writable primaries both are fenced, the second fence is not held after "
    "the first (issue 12)") {
  FakeWorld w;
  w.stacks["shop"]["a"] = FakeStack{true, true, Role::replica, "b", 100, 1};
  w.stacks["shop"]["b"] = FakeStack{true, false, Role::primary, "", 100, 1};
  w.stacks["shop"]["c"] = FakeStack{true, false, Role::primary, "", 100, 1};
  w.traffic["shop"] = FakeTraffic{false, "b", 60};  // traffic cannot follow the switch
  Harness h(w, make_desired({make_group("a", false, {"a", "b", "c"})}));
  Plan plan = h.plan();
  REQUIRE(steps(plan.actions).size() >= 2);
  CHECK(steps(plan.actions)[0] == "maintenance.on b");
  CHECK(steps(plan.actions)[1] == "maintenance.on c");
  ApplyResult r = h.apply(plan);
  // Stops where the plan said it would, at the traffic switch, not stale.
  CHECK(r.exit_code() == 3);
  REQUIRE_FALSE(r.groups[0].steps.empty());
  CHECK(r.groups[0].steps.back().action.kind == ActionKind::traffic_switch);
  CHECK(h.world.stacks["shop"]["b"].maintenance);
  CHECK(h.world.stacks["shop"]["c"].maintenance);
}

TEST_CASE(
    "three stacks: the old primary to catch up with does not change when replication into the "
    "candidate stops (issue 12)") {
  FakeWorld w;
  // a follows c; b is a primary too, further ahead. With allow_data_loss the
  // switch goes ahead; its old primary was c until replication.stop cleared
  // a's upstream, then b, and the re-plan at the promotion resumed
  // replication from b instead.
  w.stacks["shop"]["a"] = FakeStack{true, true, Role::replica, "c", 90, 1};
  w.stacks["shop"]["b"] = FakeStack{true, true, Role::primary, "", 100, 1};
  w.stacks["shop"]["c"] = FakeStack{true, true, Role::primary, "", 90, 1};
  w.traffic["shop"] = FakeTraffic{true, "c", 60};
  Harness h(w, make_desired({make_group("a", /*allow_data_loss=*/true, {"a", "b", "c"})}));
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 0);
  CHECK(h.world.stacks["shop"]["a"].role == Role::primary);
  CHECK(h.plan().empty());
}

namespace {

// Issue 14: a forced failover away from a silent old primary. Its packets
// are dropped: every call to it waits `timeout` (or the caller's deadline)
// and times out. The commit says active standby, allow_data_loss.
struct SilentPrimary {
  std::atomic<bool> silent{true};
  std::atomic<int> waits{0};  // calls to primary that waited
  Harness h{steady_world(), make_desired({make_group("standby", /*allow_data_loss=*/true)})};
  explicit SilentPrimary(std::chrono::milliseconds timeout) {
    h.factory.wrap_stack = [this, timeout](
                               std::unique_ptr<StackDriver> d,
                               const std::string& stack) -> std::unique_ptr<StackDriver> {
      if (stack != "primary") return d;
      return std::make_unique<SilentStackDriver>(std::move(d), &silent, timeout, &waits);
    };
    h.fleet = make_fleet(h.desired, h.factory);
  }
  // The plan's observation, through the drivers: it waits the whole timeout.
  ObservedState observe() { return observe_all(h.desired, h.fleet, h.clock); }
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

const Calls kForcedFailover = {"replication.stop shop/standby", "database.promote shop/standby",
                               "maintenance.off shop/standby", "traffic.switch shop to standby"};

}  // namespace

TEST_CASE(
    "issue 14: a silent old primary found so by the plan's observation costs no full "
    "timeout at the guards") {
  SilentPrimary s(std::chrono::milliseconds(400));
  ObservedState obs = s.observe();
  REQUIRE(obs.groups["shop"].stacks["primary"].timed_out);
  Plan plan = make_plan(s.h.desired, obs);
  REQUIRE(steps(plan.actions) ==
          std::vector<std::string>{"replication.stop standby", "database.promote standby",
                                   "maintenance.off standby", "traffic.switch standby"});
  ApplyOptions o;
  o.planned_from = &obs;
  o.silent_limit = std::chrono::milliseconds(20);
  const auto t = std::chrono::steady_clock::now();
  ApplyResult r = s.h.apply(plan, o);
  const double took = seconds_since(t);
  CHECK(r.exit_code() == 0);
  CHECK(s.h.world.calls == kForcedFailover);
  // Each of the 4 guards still asked primary, within 20 ms: not 4 x 400 ms.
  CHECK(s.waits == 1 + 4);
  CHECK(took < 0.4);
}

TEST_CASE("issue 14: a silent old primary costs apply its timeout once, not once per step") {
  SilentPrimary s(std::chrono::milliseconds(400));
  ObservedState obs = s.observe();
  Plan plan = make_plan(s.h.desired, obs);
  REQUIRE(plan.actions.size() == 4);
  ApplyOptions o;  // no planned_from: the first guard finds primary silent
  o.silent_limit = std::chrono::milliseconds(20);
  const auto t = std::chrono::steady_clock::now();
  ApplyResult r = s.h.apply(plan, o);
  const double took = seconds_since(t);
  CHECK(r.exit_code() == 0);
  CHECK(s.h.world.calls == kForcedFailover);
  CHECK(took >= 0.4);  // the first guard's full timeout
  CHECK(took < 0.8);   // and only that one (it was 4 x 400 ms)
}

TEST_CASE(
    "issue 14: a silent old primary that answers again is seen by the next guard, which "
    "stops the switch before the promotion") {
  SilentPrimary s(std::chrono::milliseconds(400));
  ObservedState obs = s.observe();
  Plan plan = make_plan(s.h.desired, obs);
  ApplyOptions o;
  o.planned_from = &obs;
  o.silent_limit = std::chrono::milliseconds(20);
  // primary comes back, writable, once replication into standby is stopped.
  o.progress = [&](const StepReport& r) {
    if (r.action.kind == ActionKind::replication_stop && r.outcome == StepOutcome::ok)
      s.silent = false;
  };
  ApplyResult r = s.h.apply(plan, o);
  CHECK(r.groups[0].stopped == StepOutcome::stale);
  CHECK(s.h.world.calls == Calls{"replication.stop shop/standby"});
  CHECK(s.h.world.stacks["shop"]["standby"].role == Role::replica);
  CHECK(s.h.world.stacks["shop"]["primary"].role == Role::primary);
}

TEST_CASE("a promotion forced by allow_data_loss journals the loss it accepted") {
  FakeWorld w = steady_world();
  w.stacks["shop"]["primary"].up = false;  // the old primary is gone
  Harness h(std::move(w), make_desired({make_group("standby", /*allow_data_loss=*/true)}));
  Plan p = h.plan();
  auto promote = std::find_if(p.actions.begin(), p.actions.end(), [](const Action& a) {
    return a.kind == ActionKind::database_promote;
  });
  REQUIRE(promote != p.actions.end());
  CHECK_FALSE(promote->data_loss.empty());
  h.fleet = make_fleet(h.desired, h.factory);
  NoteLog log;
  ApplyOptions o;
  o.action_timeout = std::chrono::milliseconds(200);
  ApplyResult r = Applier(h.desired, h.fleet, &log, h.clock).apply(p, o);
  REQUIRE(r.groups.size() == 1);
  const auto& steps = r.groups[0].steps;
  REQUIRE(steps.size() == log.ends.size());
  bool seen = false;
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].action.kind == ActionKind::database_promote) {
      CHECK(log.ends[i] == "ok: data loss accepted: " + promote->data_loss);
      seen = true;
    } else {
      CHECK(log.ends[i].find("data loss") == std::string::npos);
    }
  CHECK(seen);
}

TEST_CASE("a planned switch accepts no data loss") {
  Harness h(steady_world(), make_desired({make_group("standby", /*allow_data_loss=*/true)}));
  for (const Action& a : h.plan().actions) CHECK(a.data_loss.empty());
}
