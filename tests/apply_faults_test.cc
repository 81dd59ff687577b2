// apply with one call log shared by the journal and the drivers (so "before"
// and "after" are checked, not assumed), and with traffic providers that
// fail, time out or refuse (FaultyTrafficDriver).
#include <catch2/catch.hpp>

#include "builders.h"
#include "core/apply.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;
using Calls = std::vector<std::string>;

namespace {

// Writes the journal's rows into the world's own call list, under its lock,
// so one list holds both in the order they happened.
class SharedLog : public ActionLog {
 public:
  explicit SharedLog(FakeWorld& w) : w_(w) {}
  Result<int64_t> begin(const Action& a, const std::string&) override {
    std::lock_guard lock(w_.mu.m);
    w_.calls.push_back("journal begin " + std::string(to_string(a.kind)) + " " + a.stack);
    return ++n_;
  }
  Status finish(int64_t id, const std::string& result, const std::string&, int64_t) override {
    std::lock_guard lock(w_.mu.m);
    w_.calls.push_back("journal end #" + std::to_string(id) + " " + result);
    return {};
  }

 private:
  FakeWorld& w_;
  int64_t n_ = 0;
};

struct Harness {
  FakeWorld world;
  DesiredState desired;
  FakeDriverFactory factory{world};
  FakeClock clock;
  Fleet fleet;

  explicit Harness(std::string active) : desired(make_desired({make_group(active)})) {
    world.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
    world.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
    world.traffic["shop"] = FakeTraffic{true, "primary", 60};
  }
  Plan plan() { return make_plan(desired, world.observe_all()); }
  ApplyResult apply() {
    if (fleet.empty()) fleet = make_fleet(desired, factory);
    SharedLog log(world);
    ApplyOptions o;
    o.origin = "config:test";
    o.action_timeout = std::chrono::milliseconds(200);
    o.wait_timeout = std::chrono::milliseconds(200);
    return Applier(desired, fleet, &log, clock).apply(plan(), o);
  }
  void faulty_traffic(int fail_call, bool timeout, bool sticky, bool permanent) {
    factory.wrap_traffic = [=](std::unique_ptr<TrafficDriver> d) -> std::unique_ptr<TrafficDriver> {
      return std::make_unique<FaultyTrafficDriver>(std::move(d), fail_call, timeout, sticky,
                                                   permanent);
    };
  }
};

size_t index_of(const Calls& calls, const std::string& call) {
  auto it = std::find(calls.begin(), calls.end(), call);
  return it == calls.end() ? calls.size() : static_cast<size_t>(it - calls.begin());
}

}  // namespace

TEST_CASE("each action is journaled before the driver acts and ended after it (issue 12)") {
  Harness h("primary");
  h.world.stacks["shop"]["standby"].maintenance = false;  // drift: one action
  REQUIRE(h.apply().exit_code() == 0);
  CHECK(h.world.calls == Calls{"journal begin maintenance.on standby",
                               "maintenance.on shop/standby", "journal end #1 ok"});
}

TEST_CASE("a whole switch: every driver call sits between its own journal rows (issue 12)") {
  Harness h("standby");
  REQUIRE(h.apply().exit_code() == 0);
  const Calls& c = h.world.calls;
  int begun = 0, acted = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i].rfind("journal begin ", 0) == 0) ++begun;
    if (c[i].rfind("journal", 0) == 0) continue;
    // The row just before a driver call is its begin; the one after, its end.
    ++acted;
    REQUIRE(i > 0);
    CHECK(c[i - 1].rfind("journal begin ", 0) == 0);
    REQUIRE(i + 1 < c.size());
    CHECK(c[i + 1] == "journal end #" + std::to_string(begun) + " ok");
  }
  CHECK(acted == 6);
  CHECK(begun == 7);  // and replication.wait, which calls no driver
}

TEST_CASE("a traffic switch that fails once is tried again and the switch completes (issue 12)") {
  Harness h("standby");
  h.faulty_traffic(1, false, false, false);
  ApplyResult r = h.apply();
  CHECK(r.exit_code() == 0);
  const Calls& c = h.world.calls;
  // Two begin rows for traffic.switch would mean the retry was journaled as
  // another action; it is one action with two attempts.
  CHECK(std::count(c.begin(), c.end(), "traffic.switch shop to standby") ==
        1);  // the 1st never reached the fake
  CHECK(h.world.traffic["shop"].target == "standby");
  CHECK(h.plan().empty());
}

TEST_CASE(
    "a traffic provider that refuses for good stops the group after the promotion, "
    "and a re-run with it fixed converges (issue 12)") {
  Harness h("standby");
  h.faulty_traffic(1, false, true, true);
  ApplyResult r = h.apply();
  CHECK(r.exit_code() == 1);
  REQUIRE(r.groups.size() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::failed);
  CHECK(r.groups[0].steps.back().detail.find("injected refusal") != std::string::npos);
  // A refusal is not retried.
  CHECK(r.groups[0].steps.back().detail.find("attempt 2") == std::string::npos);
  const Calls& c = h.world.calls;
  CHECK(index_of(c, "database.promote shop/standby") < c.size());
  CHECK(c.back() == "journal end #" +
                        std::to_string(std::count_if(c.begin(), c.end(),
                                                     [](const std::string& s) {
                                                       return s.rfind("journal begin", 0) == 0;
                                                     })) +
                        " failed");
  CHECK(h.world.traffic["shop"].target == "primary");  // the address was never changed
  // Promoted already: the fail safe does not re-open the old primary.
  CHECK(r.groups[0].reopened.empty());
  CHECK(h.world.stacks["shop"]["primary"].maintenance);
  h.factory.wrap_traffic = nullptr;
  h.fleet.clear();
  REQUIRE(h.apply().exit_code() == 0);
  CHECK(h.world.traffic["shop"].target == "standby");
  CHECK(h.plan().empty());
}

TEST_CASE("a traffic switch that times out is reported as a timeout, journaled as one (issue 12)") {
  Harness h("standby");
  h.faulty_traffic(1, true, true, false);
  ApplyResult r = h.apply();
  CHECK(r.exit_code() == 1);
  REQUIRE(r.groups.size() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::timeout);
  CHECK(h.world.calls.back().find(" timeout") != std::string::npos);
}
