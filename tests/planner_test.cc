// Table-driven planner scenarios: one observed situation each, the plan
// expected in order. Names are the situations an operator would recognise.
#include "core/planner.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "builders.h"
#include "config/snapshot.h"

using namespace stackflip;
using namespace stackflip::testing;
using Steps = std::vector<std::string>;

namespace {

struct Planned {
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
};

Planned plan_for(const GroupSpec& g, const GroupObs& o) {
  Planned p;
  plan_group(g, o, p.actions, p.skipped);
  return p;
}

GroupObs steady() {
  return GroupObs{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
                  traffic_at("primary")};
}

}  // namespace

TEST_CASE("a converged group yields no actions") {
  auto p = plan_for(make_group("primary"), steady());
  CHECK(p.actions.empty());
  CHECK(p.skipped.empty());
}

TEST_CASE("a planned switch runs the seven steps in the runbook's order") {
  auto p = plan_for(make_group("standby"), steady());
  CHECK(steps(p.actions) == Steps{"maintenance.on primary", "replication.wait standby from primary",
                                  "replication.stop standby", "database.promote standby",
                                  "maintenance.off standby", "traffic.switch standby",
                                  "replication.start primary from standby"});
  for (const auto& a : p.actions) {
    CHECK_FALSE(a.blocked);
    CHECK_FALSE(a.reason.empty());
    CHECK_FALSE(a.guard.empty());
  }
}

TEST_CASE("a planned switch waits for the replica before promoting even when it lags") {
  GroupObs o = steady();
  o.stacks["standby"] = replica(true, "primary", 40);
  auto p = plan_for(make_group("standby"), o);
  REQUIRE(p.actions.size() == 7);
  CHECK(p.actions[1].kind == ActionKind::replication_wait);
  CHECK_FALSE(p.actions[3].blocked);
}

TEST_CASE("a switch resumes where reality is after the promotion already happened") {
  GroupObs o{{{"primary", primary(true)}, {"standby", primary(true)}}, traffic_at("primary")};
  auto p = plan_for(make_group("standby"), o);
  CHECK(steps(p.actions) == Steps{"maintenance.off standby", "traffic.switch standby",
                                  "replication.start primary from standby"});
}

TEST_CASE("drift: a standby whose maintenance was turned off by hand is fenced again") {
  GroupObs o = steady();
  o.stacks["standby"].maintenance = false;
  auto p = plan_for(make_group("primary"), o);
  CHECK(steps(p.actions) == Steps{"maintenance.on standby"});
}

TEST_CASE("drift: a record pointing at the wrong stack is switched back") {
  GroupObs o = steady();
  o.traffic.target = "standby";
  auto p = plan_for(make_group("primary"), o);
  CHECK(steps(p.actions) == Steps{"traffic.switch primary"});
}

TEST_CASE("drift: a record holding no stack's address is switched to the active stack") {
  GroupObs o = steady();
  o.traffic.target.reset();
  CHECK(steps(plan_for(make_group("primary"), o).actions) == Steps{"traffic.switch primary"});
}

TEST_CASE("drift: a TTL changed by hand is restored") {
  GroupObs o = steady();
  o.traffic.ttl = 3600;
  auto p = plan_for(make_group("primary"), o);
  REQUIRE(steps(p.actions) == Steps{"traffic.switch primary"});
  CHECK(p.actions[0].reason.find("3600") != std::string::npos);
}

TEST_CASE("unplanned failover: the promote step is blocked while the old primary is unreachable") {
  GroupObs o{
      {{"primary", unreachable(primary(false, 100))}, {"standby", replica(true, "primary", 90)}},
      traffic_at("primary")};
  auto p = plan_for(make_group("standby"), o);
  CHECK(steps(p.actions) ==
        Steps{"replication.stop standby BLOCKED", "database.promote standby BLOCKED",
              "maintenance.off standby BLOCKED", "traffic.switch standby BLOCKED"});
  CHECK(p.actions[1].why_blocked.find("unreachable") != std::string::npos);
  CHECK(p.actions[1].why_blocked.find("10 bytes") != std::string::npos);
  CHECK(p.actions[1].why_blocked.find("allow_data_loss") != std::string::npos);
  CHECK(p.actions[2].why_blocked.find("waits on step") != std::string::npos);
  // The fence of the unreachable primary, its wait and its re-attach are skipped, with reasons.
  REQUIRE(p.skipped.size() == 3);
  CHECK(p.skipped[0].kind == ActionKind::maintenance_on);
  CHECK(p.skipped[1].kind == ActionKind::replication_wait);
  CHECK(p.skipped[2].kind == ActionKind::replication_start);
}

TEST_CASE("unplanned failover with allow_data_loss promotes and states the accepted loss") {
  GroupObs o{
      {{"primary", unreachable(primary(false, 100))}, {"standby", replica(true, "primary", 90)}},
      traffic_at("primary")};
  auto p = plan_for(make_group("standby", true), o);
  CHECK(steps(p.actions) == Steps{"replication.stop standby", "database.promote standby",
                                  "maintenance.off standby", "traffic.switch standby"});
  CHECK(p.actions[1].reason.find("allow_data_loss") != std::string::npos);
  CHECK(p.actions[1].reason.find("last known lag 10 bytes") != std::string::npos);
}

TEST_CASE("a replica behind the old primary with replication stopped catches up before promotion") {
  // An interrupted switch stopped replication into the standby, and the
  // fenced old primary then wrote (background) WAL: resume, wait, promote.
  GroupObs o{{{"primary", primary(false, 100)}, {"standby", replica(true, std::nullopt, 90)}},
             traffic_at("primary")};
  for (bool allow_data_loss : {false, true}) {
    auto p = plan_for(make_group("standby", allow_data_loss), o);
    CHECK(steps(p.actions) ==
          Steps{"maintenance.on primary", "replication.start standby from primary",
                "replication.wait standby from primary", "replication.stop standby",
                "database.promote standby", "maintenance.off standby", "traffic.switch standby",
                "replication.start primary from standby"});
    CHECK(p.actions[1].reason.find("10 bytes behind primary") != std::string::npos);
    CHECK(p.actions[4].reason.find("allow_data_loss") == std::string::npos);
  }
}

TEST_CASE("a replica behind the old primary and replicating from elsewhere is not promoted") {
  GroupSpec g = make_group("standby", false, {"primary", "standby", "third"});
  GroupObs o{{{"primary", primary(false, 100)},
              {"standby", replica(true, "third", 90)},
              {"third", replica(true, "primary", 90)}},
             traffic_at("primary")};
  auto p = plan_for(g, o);
  REQUIRE(steps(p.actions)[0] == "maintenance.on primary BLOCKED");
  CHECK(p.actions[0].why_blocked.find("10 bytes behind") != std::string::npos);
  auto promote = std::find_if(p.actions.begin(), p.actions.end(), [](const Action& a) {
    return a.kind == ActionKind::database_promote;
  });
  REQUIRE(promote != p.actions.end());
  CHECK(promote->blocked);
  CHECK(promote->why_blocked.find("not replicating from it") != std::string::npos);
  for (const auto& a : p.actions)
    CHECK_FALSE((a.kind == ActionKind::replication_start && a.stack == "standby"));
}

TEST_CASE("a returned former primary is fenced before anything else") {
  GroupObs o{{{"primary", primary(false, 120)}, {"standby", primary(false, 200)}},
             traffic_at("standby")};
  auto p = plan_for(make_group("standby", true), o);
  CHECK(steps(p.actions) ==
        Steps{"maintenance.on primary", "replication.start primary from standby"});
  CHECK(p.actions[0].reason.find("fence") != std::string::npos);
}

TEST_CASE("a returned former primary is fenced and left alone when replication is off") {
  GroupSpec g = make_group("standby", true);
  g.replication.enabled = false;
  GroupObs o{{{"primary", primary(false, 120)}, {"standby", primary(false, 200)}},
             traffic_at("standby")};
  CHECK(steps(plan_for(g, o).actions) == Steps{"maintenance.on primary"});
}

TEST_CASE("replication not desired is stopped on a replica") {
  GroupSpec g = make_group("primary");
  g.replication.enabled = false;
  CHECK(steps(plan_for(g, steady()).actions) == Steps{"replication.stop standby"});
}

TEST_CASE("the desired active stack unreachable: the serving primary is not fenced for nothing") {
  GroupObs o{{{"primary", primary(false)}, {"standby", unreachable(replica(true, "primary"))}},
             traffic_at("primary")};
  for (bool allow_data_loss : {false, true}) {
    auto p = plan_for(make_group("standby", allow_data_loss), o);
    REQUIRE(p.actions.size() >= 2);
    CHECK(steps(p.actions)[0] == "maintenance.on primary BLOCKED");
    CHECK(p.actions[0].why_blocked.find("standby is unreachable") != std::string::npos);
    CHECK(p.actions[1].kind == ActionKind::database_promote);
    CHECK(p.actions[1].blocked);
  }
}

TEST_CASE("two writable primaries: the non-active one is fenced even when promotion is blocked") {
  GroupObs o{{{"primary", primary(false)}, {"standby", primary(false)}}, traffic_at("primary")};
  auto p = plan_for(make_group("standby"), o);
  REQUIRE_FALSE(p.actions.empty());
  CHECK(steps(p.actions)[0] == "maintenance.on primary");
}

TEST_CASE("traffic is not switched while the traffic provider is unreachable") {
  GroupObs o = steady();
  o.traffic = traffic_at("standby");
  o.traffic.reachable = false;
  auto p = plan_for(make_group("primary"), o);
  REQUIRE(p.actions.size() == 1);
  CHECK(p.actions[0].blocked);
  CHECK(p.actions[0].why_blocked.find("traffic provider is unreachable") != std::string::npos);
}

TEST_CASE("groups are planned independently and in name order") {
  GroupSpec a = make_group("standby", false, {"primary", "standby"}, "alpha");
  GroupSpec b = make_group("primary", false, {"primary", "standby"}, "beta");
  DesiredState d = make_desired({b, a});
  ObservedState o;
  o.groups["alpha"] =
      GroupObs{{{"primary", unreachable(primary(false))}, {"standby", replica(true, "primary")}},
               traffic_at("primary")};
  o.groups["beta"] = steady();
  o.groups["beta"].traffic.target = "standby";
  Plan p = make_plan(d, o);
  REQUIRE(p.actions.size() >= 2);
  CHECK(p.actions.front().group == "alpha");
  CHECK(p.actions.back().group == "beta");
  CHECK(p.actions.back().kind == ActionKind::traffic_switch);
  CHECK_FALSE(p.actions.back().blocked);  // alpha's block does not spill into beta
}

TEST_CASE("the same input gives the same plan, the digest ignores observed_at and positions") {
  DesiredState d = make_desired({make_group("standby")});
  ObservedState o;
  o.groups["shop"] = steady();
  o.observed_at = "2026-11-26T18:00:00Z";
  Plan p1 = make_plan_with_digest(d, o);
  o.observed_at = "2026-11-26T19:00:00Z";
  Plan p2 = make_plan_with_digest(d, o);
  CHECK(p1.observed_digest == p2.observed_digest);
  CHECK(steps(p1.actions) == steps(p2.actions));
  o.groups["shop"].stacks["standby"].database->lsn = 99;
  CHECK(make_plan_with_digest(d, o).observed_digest == p1.observed_digest);
  o.groups["shop"].stacks["standby"].maintenance = false;
  CHECK(make_plan_with_digest(d, o).observed_digest != p1.observed_digest);
}

TEST_CASE("three stacks: both others are re-pointed at the new primary") {
  GroupSpec g = make_group("b", false, {"a", "b", "c"});
  GroupObs o{{{"a", primary(false)}, {"b", replica(true, "a")}, {"c", replica(true, "a")}},
             traffic_at("a")};
  CHECK(steps(plan_for(g, o).actions) ==
        Steps{"maintenance.on a", "replication.wait b from a", "replication.stop b",
              "database.promote b", "maintenance.off b", "traffic.switch b",
              "replication.start a from b", "replication.start c from b"});
}

TEST_CASE("a group missing from the snapshot is blocked, not guessed") {
  DesiredState d = make_desired({make_group("primary")});
  Plan p = make_plan(d, ObservedState{});
  REQUIRE_FALSE(p.actions.empty());
  CHECK(p.any_blocked());
}

TEST_CASE("the guard re-check accepts a satisfied wait before the next step") {
  GroupSpec g = make_group("standby");
  GroupObs o{{{"primary", primary(true)}, {"standby", replica(true, "primary")}},
             traffic_at("primary")};
  auto fresh = plan_for(g, o);
  Action stop;
  stop.group = "shop";
  stop.kind = ActionKind::replication_stop;
  stop.stack = "standby";
  CHECK(still_next(stop, fresh.actions, g, o));
  o.stacks["standby"].database->lsn = 50;  // behind again: the wait is not satisfied
  CHECK_FALSE(still_next(stop, plan_for(g, o).actions, g, o));
}

namespace {
// Cloud 66 without database_dsn: maintenance is observed, the database is not.
StackObs no_database(bool maintenance) { return StackObs{true, maintenance, std::nullopt, ""}; }
GroupObs cloud66_serving_eu() {
  return GroupObs{{{"eu", no_database(false)}, {"us", no_database(true)}}, traffic_at("eu")};
}
}  // namespace

TEST_CASE("no database observation: the failover is blocked because the guard cannot be verified") {
  auto p = plan_for(make_group("us", false, {"eu", "us"}), cloud66_serving_eu());
  REQUIRE(p.actions.size() >= 3);
  // The serving stack is not fenced for a promotion that will not happen.
  CHECK(steps(p.actions)[0] == "maintenance.on eu BLOCKED");
  CHECK(steps(p.actions)[2] == "database.promote us BLOCKED");
  CHECK(p.actions[2].why_blocked.find("the no-data-loss guard cannot be verified") !=
        std::string::npos);
  CHECK(p.actions[2].why_blocked.find("database_dsn") != std::string::npos);
}

TEST_CASE("no database observation with allow_data_loss: the seed's five steps in order") {
  auto p = plan_for(make_group("us", true, {"eu", "us"}), cloud66_serving_eu());
  CHECK(steps(p.actions) == Steps{"maintenance.on eu", "replication.stop us", "database.promote us",
                                  "maintenance.off us", "traffic.switch us"});
  CHECK(p.actions[2].reason.find("allow_data_loss") != std::string::npos);
  REQUIRE(p.skipped.size() == 1);
  CHECK(p.skipped[0].kind == ActionKind::replication_start);
}

TEST_CASE("no database observation: traffic on the active stack means converged") {
  GroupObs o{{{"eu", no_database(true)}, {"us", no_database(false)}}, traffic_at("us")};
  auto p = plan_for(make_group("us", true, {"eu", "us"}), o);
  CHECK(p.actions.empty());
  CHECK(p.skipped.empty());
}

// Issue 12, found by the three-stack exhaustive check: the promotion guard
// compared the candidate with one old primary only (its upstream, or the
// first primary by name). Every stack that is or may have been primary, and
// every stack further ahead, counts.
namespace {
const Action* promote_of(const Planned& p, const std::string& stack) {
  for (const Action& a : p.actions)
    if (a.kind == ActionKind::database_promote && a.stack == stack) return &a;
  return nullptr;
}
}  // namespace

TEST_CASE("three stacks: a second primary further ahead blocks the promotion (issue 12)") {
  GroupSpec g = make_group("a", false, {"a", "b", "c"});
  // a follows b; c is a fenced primary too, 10 bytes further ahead.
  GroupObs o{{{"a", replica(true, "b", 90)}, {"b", primary(true, 90)}, {"c", primary(true, 100)}},
             traffic_at("b")};
  auto p = plan_for(g, o);
  const Action* promote = promote_of(p, "a");
  REQUIRE(promote);
  CHECK(promote->blocked);
  CHECK(promote->why_blocked.find("10 bytes behind c") != std::string::npos);
  // With allow_data_loss the loss is stated and accepted.
  g.allow_data_loss = true;
  promote = promote_of(p = plan_for(g, o), "a");
  REQUIRE(promote);
  CHECK_FALSE(promote->blocked);
  CHECK(promote->reason.find("accepts losing 10 bytes") != std::string::npos);
}

TEST_CASE(
    "three stacks: an unreachable stack last seen primary or of unknown role blocks the promotion "
    "(issue 12)") {
  GroupSpec g = make_group("a", false, {"a", "b", "c"});
  for (Role last_known : {Role::primary, Role::unknown}) {
    StackObs c = primary(false, 100);
    c.database->role = last_known;
    GroupObs o{{{"a", replica(true, "b", 100)}, {"b", primary(true, 100)}, {"c", unreachable(c)}},
               traffic_at("b")};
    auto p = plan_for(g, o);
    const Action* promote = promote_of(p, "a");
    REQUIRE(promote);
    CHECK(promote->blocked);
    CHECK(promote->why_blocked.find("c is unreachable") != std::string::npos);
  }
  // Last seen a replica: it holds nothing the primary b does not.
  GroupObs o{{{"a", replica(true, "b", 100)},
              {"b", primary(true, 100)},
              {"c", unreachable(replica(true, "b", 100))}},
             traffic_at("b")};
  auto p = plan_for(g, o);  // kept alive: promote_of points into it
  const Action* promote = promote_of(p, "a");
  REQUIRE(promote);
  CHECK_FALSE(promote->blocked);
}

TEST_CASE(
    "three stacks: a replica ahead of the old primary blocks the promotion, one streaming from it "
    "does not (issue 12)") {
  GroupSpec g = make_group("a", false, {"a", "b", "c"});
  // c's replication is stopped at 100 (it followed a primary that was lost
  // with writes b never had): promoting a would lose them for good.
  GroupObs o{{{"a", replica(true, "b", 90)},
              {"b", primary(true, 90)},
              {"c", replica(true, std::nullopt, 100)}},
             traffic_at("b")};
  auto p = plan_for(g, o);
  const Action* promote = promote_of(p, "a");
  REQUIRE(promote);
  CHECK(promote->blocked);
  CHECK(promote->why_blocked.find("c is 10 bytes ahead of b") != std::string::npos);
  // Streaming from b, c holds nothing b lacks, whatever the moment its
  // position was read at.
  o.stacks["c"] = replica(true, "b", 100);
  promote = promote_of(p = plan_for(g, o), "a");
  REQUIRE(promote);
  CHECK_FALSE(promote->blocked);
}
