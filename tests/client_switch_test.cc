// Issue 15: what clients see during a switch. TTL pre-lowering (traffic.ttl,
// traffic.wait) and a pooler's pause (traffic.pause, traffic.resume), planned
// and applied against the in-memory providers with a clock that does not
// sleep; the exhaustive check (exhaustive_test.cc) covers every state.
#include <algorithm>
#include <catch2/catch.hpp>

#include "builders.h"
#include "core/apply.h"
#include "core/plan_json.h"
#include "core/planner.h"
#include "core/render.h"
#include "fake_clock.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;
using Steps = std::vector<std::string>;

namespace {

// A journal that remembers what finished, by the fake clock, so that
// traffic.wait can read when the TTL was lowered (ActionLog::last_ok).
class MemoryLog : public ActionLog {
 public:
  explicit MemoryLog(Clock& clock) : clock_(clock) {}
  struct Entry {
    Action action;
    std::string result, detail;
    Clock::Duration at{};
  };
  Result<int64_t> begin(const Action& a, const std::string&) override {
    entries.push_back({a, "", "", clock_.now()});
    return static_cast<int64_t>(entries.size());
  }
  Status finish(int64_t id, const std::string& result, const std::string& detail,
                int64_t) override {
    Entry& e = entries.at(static_cast<size_t>(id - 1));
    e.result = result;
    e.detail = detail;
    e.at = clock_.now();
    return {};
  }
  std::optional<Finished> last_ok(const std::string& group, ActionKind kind) override {
    for (auto it = entries.rbegin(); it != entries.rend(); ++it)
      if (it->action.group == group && it->action.kind == kind && it->result == "ok")
        return Finished{
            std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - it->at).count(),
            it->detail};
    return std::nullopt;
  }
  std::vector<Entry> entries;

 private:
  Clock& clock_;
};

GroupSpec lowered_group(const std::string& active, int ttl = 300, int switch_ttl = 5) {
  GroupSpec g = make_group(active);
  g.traffic[0].ttl = ttl;
  g.traffic[0].switch_ttl = switch_ttl;
  return g;
}

FakeWorld world_on(const std::string& primary, int ttl = 300) {
  const std::string other = primary == "primary" ? "standby" : "primary";
  FakeWorld w;
  w.stacks["shop"][primary] = FakeStack{true, false, Role::primary, "", 100, 1};
  w.stacks["shop"][other] = FakeStack{true, true, Role::replica, primary, 100, 1};
  w.traffic["shop"] = FakeTraffic{true, primary, ttl};
  return w;
}

struct Harness {
  FakeWorld world;
  DesiredState desired;
  FakeDriverFactory factory{world};
  FakeClock clock;
  MemoryLog log{clock};
  Fleet fleet;
  // When each call happened, by the fake clock.
  std::vector<std::pair<std::string, Clock::Duration>> timed;

  Harness(FakeWorld w, GroupSpec g) : world(std::move(w)), desired(make_desired({g})) {
    factory.concurrent = false;
  }
  Plan plan() { return make_plan(desired, world.observe_all()); }
  ApplyResult apply(const Plan& p, ApplyOptions o = {}) {
    if (fleet.empty()) fleet = make_fleet(desired, factory);
    o.origin = "config:test";
    o.action_timeout = std::chrono::milliseconds(200);
    o.wait_timeout = std::chrono::milliseconds(200);
    auto user = o.progress;
    o.progress = [&, user](const StepReport& r) {
      if (r.outcome == StepOutcome::started)
        timed.emplace_back(std::string(to_string(r.action.kind)) + " " + r.action.stack,
                           clock.now());
      if (user) user(r);
    };
    return Applier(desired, fleet, &log, clock).apply(p, o);
  }
  Clock::Duration started(const std::string& step) const {
    for (const auto& [s, t] : timed)
      if (s == step) return t;
    FAIL("step " << step << " never started");
    return {};
  }
};

double secs(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

TEST_CASE("a planned switch lowers the TTL, waits the previous TTL out, then fences") {
  Harness h(world_on("primary"), lowered_group("standby"));
  Plan p = h.plan();
  CHECK(steps(p.actions) == Steps{"traffic.ttl primary", "traffic.wait primary",
                                  "maintenance.on primary", "replication.wait standby from primary",
                                  "replication.stop standby", "database.promote standby",
                                  "maintenance.off standby", "traffic.switch standby",
                                  "replication.start primary from standby"});
  CHECK(p.actions[1].wait_ms == 300000);
  CHECK(p.actions[0].reason.find("from 300 s to 5 s") != std::string::npos);

  ApplyResult r = h.apply(p);
  REQUIRE(r.exit_code() == 0);
  // The fence came 300 s (the previous TTL) after the TTL was lowered.
  CHECK(secs(h.started("maintenance.on primary") - h.started("traffic.ttl primary")) >= 300.0);
  CHECK(secs(h.started("maintenance.on primary") - h.started("traffic.ttl primary")) < 301.0);
  CHECK(std::count(h.world.calls.begin(), h.world.calls.end(), "traffic.ttl shop 5") == 1);
  // The switch restored the desired TTL, and the group converged.
  CHECK(h.world.traffic["shop"].ttl == 300);
  CHECK(h.world.traffic["shop"].target == "standby");
  CHECK(h.plan().empty());
  // The journal holds what traffic.wait reads back after a crash.
  REQUIRE(h.log.entries.size() >= 2);
  CHECK(h.log.entries[0].detail.find("(previous TTL 300 s)") != std::string::npos);
  CHECK(h.log.entries[1].detail.find("waited 300.0 s") != std::string::npos);
}

TEST_CASE("an unplanned failover skips the TTL steps: waiting would only lengthen the outage") {
  FakeWorld w = world_on("primary");
  w.stacks["shop"]["primary"].up = false;
  GroupSpec g = lowered_group("standby");
  g.allow_data_loss = true;
  Harness h(std::move(w), g);
  Plan p = h.plan();
  for (const Action& a : p.actions) {
    CHECK(a.kind != ActionKind::traffic_ttl);
    CHECK(a.kind != ActionKind::traffic_wait);
  }
  REQUIRE(h.apply(p).exit_code() == 0);
  CHECK(h.world.traffic["shop"].target == "standby");
  CHECK(h.world.traffic["shop"].ttl == 300);
}

TEST_CASE("an old primary already fenced (an interrupted switch) is not waited for") {
  FakeWorld w = world_on("primary");
  w.stacks["shop"]["primary"].maintenance = true;
  Harness h(std::move(w), lowered_group("standby"));
  Plan p = h.plan();
  CHECK(steps(p.actions).front() == "replication.wait standby from primary");
}

TEST_CASE("a wait interrupted by a crash resumes with only the rest of it, from the journal") {
  Harness h(world_on("primary"), lowered_group("standby"));
  // A first apply lowers the TTL and is stopped 100 s into the wait (SIGTERM).
  std::atomic<bool> stop{false};
  ApplyOptions o;
  o.stop_requested = &stop;
  o.progress = [&](const StepReport& r) {
    if (r.outcome == StepOutcome::started && r.action.kind == ActionKind::traffic_wait)
      h.clock.sleep_for(std::chrono::seconds(100)), stop = true;
  };
  ApplyResult first = h.apply(h.plan(), o);
  CHECK(first.exit_code() == 1);
  CHECK(h.world.traffic["shop"].ttl == 5);
  CHECK(h.world.stacks["shop"]["primary"].maintenance == false);  // not fenced
  CHECK(first.groups[0].steps.back().detail.find("the next apply waits only the rest") !=
        std::string::npos);

  // 50 s later the next apply plans the wait (TTL already lowered) with the
  // desired TTL as its bound, and waits what is left: 300 - 150 = 150 s.
  h.clock.sleep_for(std::chrono::seconds(50));
  Plan p = h.plan();
  CHECK(steps(p.actions).front() == "traffic.wait primary");
  CHECK(p.actions.front().wait_ms == 300000);
  const Clock::Duration t0 = h.clock.now();
  h.timed.clear();
  REQUIRE(h.apply(p).exit_code() == 0);
  const double waited = secs(h.started("maintenance.on primary") - t0);
  CHECK(waited >= 150.0);
  CHECK(waited < 151.0);
  CHECK(h.plan().empty());
}

TEST_CASE("without a journal record of the lowering, the whole previous TTL is waited") {
  FakeWorld w = world_on("primary");
  w.traffic["shop"].ttl = 5;  // lowered by hand, or by an instance whose journal is elsewhere
  Harness h(std::move(w), lowered_group("standby"));
  Plan p = h.plan();
  CHECK(steps(p.actions).front() == "traffic.wait primary");
  REQUIRE(h.apply(p).exit_code() == 0);
  CHECK(secs(h.started("maintenance.on primary") - h.started("traffic.wait primary")) >= 300.0);
}

TEST_CASE("a lowering older than the last switch is not counted: that switch restored the TTL") {
  Harness h(world_on("primary"), lowered_group("standby"));
  REQUIRE(h.apply(h.plan()).exit_code() == 0);  // lowered, waited, switched to standby
  h.clock.sleep_for(std::chrono::hours(1));
  // An operator lowers the TTL by hand now; the journal's lowering is an hour old and older
  // than the switch, so the switch back waits the whole TTL.
  h.world.traffic["shop"].ttl = 5;
  h.desired = make_desired({lowered_group("primary")});
  h.fleet.clear();
  h.timed.clear();
  const Clock::Duration t0 = h.clock.now();
  REQUIRE(h.apply(h.plan()).exit_code() == 0);
  CHECK(secs(h.started("maintenance.on standby") - t0) >= 300.0);
}

TEST_CASE(
    "a switch_ttl at or above the TTL, or traffic already on the active stack, adds nothing") {
  Harness h(world_on("primary", 5), lowered_group("standby", 5, 5));
  CHECK(steps(h.plan().actions).front() == "maintenance.on primary");
  Harness same(world_on("primary"), lowered_group("primary"));
  CHECK(same.plan().empty());
}

TEST_CASE("a pooler is paused before the fence and resumed after the switch") {
  FakeWorld w = world_on("primary", 60);
  w.traffic["shop"].paused = false;
  Harness h(std::move(w), make_group("standby"));
  Plan p = h.plan();
  CHECK(steps(p.actions) ==
        Steps{"traffic.pause primary", "maintenance.on primary",
              "replication.wait standby from primary", "replication.stop standby",
              "database.promote standby", "maintenance.off standby", "traffic.switch standby",
              "traffic.resume standby", "replication.start primary from standby"});
  REQUIRE(h.apply(p).exit_code() == 0);
  CHECK(h.world.traffic["shop"].paused == false);
  auto at = [&](const std::string& c) {
    return std::find(h.world.calls.begin(), h.world.calls.end(), c) - h.world.calls.begin();
  };
  CHECK(at("traffic.pause shop") < at("maintenance.on shop/primary"));
  CHECK(at("traffic.switch shop to standby") < at("traffic.resume shop"));
  CHECK(at("traffic.resume shop") < at("replication.start shop/primary from standby"));
  CHECK(h.plan().empty());
}

TEST_CASE("a pooler left paused by a crash is resumed by the next pass") {
  SECTION("mid-switch: the switch goes on and resumes at its end") {
    FakeWorld w = world_on("primary", 60);
    w.traffic["shop"].paused = true;
    Harness h(std::move(w), make_group("standby"));
    Plan p = h.plan();
    CHECK(steps(p.actions).front() == "maintenance.on primary");
    for (const Action& a : p.actions) CHECK(a.kind != ActionKind::traffic_pause);
    REQUIRE(h.apply(p).exit_code() == 0);
    CHECK(h.world.traffic["shop"].paused == false);
  }
  SECTION("converged but paused: resumed") {
    FakeWorld w = world_on("primary", 60);
    w.traffic["shop"].paused = true;
    Harness h(std::move(w), make_group("primary"));
    CHECK(steps(h.plan().actions) == Steps{"traffic.resume primary"});
    REQUIRE(h.apply(h.plan()).exit_code() == 0);
    CHECK(h.world.traffic["shop"].paused == false);
  }
  SECTION("the switch is blocked now: resumed first, not held until someone unblocks it") {
    FakeWorld w = world_on("primary", 60);
    w.traffic["shop"].paused = true;
    w.stacks["shop"]["standby"].up = false;  // the promotion is blocked
    Harness h(std::move(w), make_group("standby"));
    Plan p = h.plan();
    REQUIRE(!p.actions.empty());
    CHECK(steps(p.actions).front() == "traffic.resume primary");
    CHECK_FALSE(p.actions.front().blocked);
    CHECK(p.any_blocked());
    CHECK(h.apply(p).exit_code() == 3);
    CHECK(h.world.traffic["shop"].paused == false);
    CHECK(h.world.stacks["shop"]["primary"].maintenance == false);  // still serving
  }
}

TEST_CASE("a switch that fails after the pause lets the pooler's clients go") {
  FakeWorld w = world_on("primary", 60);
  w.traffic["shop"].paused = false;
  Harness h(std::move(w), make_group("standby"));
  h.factory.wrap_stack = [](std::unique_ptr<StackDriver> d,
                            const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    return std::make_unique<FaultyStackDriver>(std::move(d), 2, false, true, true);
  };
  ApplyResult r = h.apply(h.plan());
  CHECK(r.exit_code() == 1);
  CHECK(h.world.traffic["shop"].paused == false);
  CHECK(h.world.calls.back() == "traffic.resume shop");
  // The fail safe re-opened the old primary, so the clients reach it again.
  CHECK(h.world.stacks["shop"]["primary"].maintenance == false);
  CHECK(r.groups[0].steps.back().detail.find("the pooler's clients were let go") !=
        std::string::npos);
}

TEST_CASE("plans show the new steps: the wait's bound in text, JSON and Markdown") {
  Harness h(world_on("primary"), lowered_group("standby"));
  Plan p = h.plan();
  const std::string text = render_text(p);
  CHECK(text.find("traffic.wait") != std::string::npos);
  CHECK(text.find("up to 300 s after the TTL was lowered") != std::string::npos);
  const std::string markdown = render_markdown(p);
  CHECK(markdown.find("`traffic.ttl`") != std::string::npos);
  CHECK(markdown.find("up to 300 s after the TTL was lowered") != std::string::npos);
  const std::string json = plan_to_json(p, false);
  CHECK(json.find("\"kind\":\"traffic.wait\",\"stack\":\"primary\",\"wait_seconds\":300") !=
        std::string::npos);
  auto back = plan_from_json(json, "plan.json");
  REQUIRE(back.ok());
  CHECK(back->actions[1].wait_ms == 300000);
  CHECK(plan_to_json(*back, false) == json);
  // wait_seconds only on a traffic.wait, in range.
  std::string bad = json;
  bad.replace(bad.find("\"wait_seconds\":300"), 18, "\"wait_seconds\":-1");
  auto refused = plan_from_json(bad, "plan.json");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("/actions/1/wait_seconds") != std::string::npos);
}

TEST_CASE("under a wait slice (`run`), a long wait goes on over several applies") {
  Harness h(world_on("primary"), lowered_group("standby"));
  ApplyOptions o;
  o.wait_slice = std::chrono::seconds(30);
  int applies = 0;
  Clock::Duration lowered{};
  for (; applies < 20; ++applies) {
    Plan p = h.plan();
    if (p.empty()) break;
    ApplyResult r = h.apply(p, o);
    if (applies == 0) lowered = h.started("traffic.ttl primary");
    const GroupApply& g = r.groups.at(0);
    if (g.stopped == StepOutcome::ok) continue;
    // Each pass stops the group `interrupted` (not failed) with what is left.
    REQUIRE(g.stopped == StepOutcome::interrupted);
    CHECK(g.steps.back().detail.find("s of the previous TTL left") != std::string::npos);
    CHECK(h.world.stacks["shop"]["primary"].maintenance == false);  // still serving
    h.clock.sleep_for(std::chrono::seconds(1));                     // the loop's interval
  }
  // 9 slices of 30 s (and 1 s between passes: 279 s), then 21 s and the switch.
  CHECK(applies == 10);
  CHECK(h.world.traffic["shop"].target == "standby");
  CHECK(secs(h.started("maintenance.on primary") - lowered) >= 300.0);
  CHECK(secs(h.started("maintenance.on primary") - lowered) < 320.0);
  // The journal records the slices as interrupted, the last wait as ok.
  int interrupted = 0;
  for (const auto& e : h.log.entries)
    interrupted += e.action.kind == ActionKind::traffic_wait && e.result == "interrupted";
  CHECK(interrupted == 9);
}

TEST_CASE("a TTL raised by hand during the wait: no fence, and the next apply waits again") {
  Harness h(world_on("primary"), lowered_group("standby"));
  ApplyOptions o;
  o.progress = [&](const StepReport& r) {
    if (r.outcome == StepOutcome::started && r.action.kind == ActionKind::traffic_wait)
      h.world.traffic["shop"].ttl = 600;  // someone restores a long TTL meanwhile
  };
  ApplyResult first = h.apply(h.plan(), o);
  CHECK(first.groups.at(0).stopped == StepOutcome::stale);
  CHECK(h.world.stacks["shop"]["primary"].maintenance == false);  // never fenced
  CHECK(first.groups.at(0).steps.back().detail.find("traffic.ttl") != std::string::npos);

  // The next plan lowers it again and waits out the 600 s resolvers may now hold.
  Plan p = h.plan();
  CHECK(steps(p.actions).front() == "traffic.ttl primary");
  CHECK(p.actions.at(1).wait_ms == 600000);
  h.timed.clear();
  REQUIRE(h.apply(p).exit_code() == 0);
  CHECK(secs(h.started("maintenance.on primary") - h.started("traffic.ttl primary")) >= 600.0);
  CHECK(h.world.traffic["shop"].ttl == 300);
}
