// One owner per database server on observation (issue 11): two stacks whose
// DSNs differ but reach one server block their groups; a primary and its
// replica (same system identifier, separate postmasters) do not.
#include <catch2/catch.hpp>

#include "builders.h"
#include "config/snapshot.h"
#include "core/apply.h"
#include "core/plan_json.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

// A stack observed on server `sysid` whose postmaster started at `started`.
StackObs on_server(StackObs s, const std::string& sysid, const std::string& started) {
  s.database->system_id = sysid;
  s.database->started_at = started;
  return s;
}

// shop: primary on server A, standby its replica (same system id, own start).
// blog: fra reaches server A under another name, ams its own cluster. blog's
// active is ams, so blog's plan would fence and demote A: the fight.
ObservedState two_groups_one_server() {
  ObservedState o;
  o.groups["shop"] = GroupObs{{{"primary", on_server(primary(false), "7001", "1000.5")},
                               {"standby", on_server(replica(true, "primary"), "7001", "1002.25")}},
                              traffic_at("primary")};
  o.groups["blog"] = GroupObs{{{"fra", on_server(primary(false), "7001", "1000.5")},
                               {"ams", on_server(replica(true, "fra"), "9002", "1003.0")}},
                              traffic_at("fra")};
  return o;
}

DesiredState shop_and_blog() {
  return make_desired({make_group("primary"), make_group("ams", false, {"fra", "ams"}, "blog"),
                       make_group("standby", false, {"primary", "standby"}, "news")});
}

}  // namespace

TEST_CASE("issue 11: two stacks reaching one server block both groups, converged or not") {
  ObservedState o = two_groups_one_server();
  o.groups["news"] = GroupObs{{{"primary", on_server(primary(false), "8003", "1.0")},
                               {"standby", on_server(replica(true, "primary"), "8003", "2.0")}},
                              traffic_at("primary")};
  auto blocks = shared_server_blocks(o);
  REQUIRE(blocks.size() == 2);
  CHECK(blocks.at("shop").find("stack fra of group blog and stack primary of group shop are one "
                               "PostgreSQL server (system identifier 7001, started at 1000.5)") !=
        std::string::npos);
  CHECK(blocks.at("blog") == blocks.at("shop"));

  Plan p = make_plan(shop_and_blog(), o);
  CHECK(p.blocked_groups.count("shop"));  // converged: no actions, blocked all the same
  CHECK(p.blocked_groups.count("blog"));
  CHECK_FALSE(p.blocked_groups.count("news"));
  CHECK(p.any_blocked());
  size_t blog = 0, news = 0;
  for (const auto& a : p.actions) {
    CHECK(a.group != "shop");
    if (a.group == "blog") {
      ++blog;
      CHECK(a.blocked);
      CHECK(a.why_blocked == blocks.at("blog"));
    }
    if (a.group == "news") {
      ++news;
      CHECK_FALSE(a.blocked);  // other groups are unaffected
    }
  }
  CHECK(blog > 0);
  CHECK(news > 0);
}

TEST_CASE("issue 11: a primary and its streaming replica are not one server") {
  ObservedState o = two_groups_one_server();
  o.groups["blog"].stacks["fra"] =
      on_server(primary(false), "7001", "1000.75");  // another postmaster
  CHECK(shared_server_blocks(o).empty());
  Plan p = make_plan(shop_and_blog(), o);
  CHECK(p.blocked_groups.empty());
}

TEST_CASE("issue 11: an unreachable stack's last known identity blocks nothing") {
  ObservedState o = two_groups_one_server();
  o.groups["blog"].stacks["fra"] = unreachable(o.groups["blog"].stacks["fra"]);
  CHECK(shared_server_blocks(o).empty());
}

TEST_CASE(
    "issue 11: two stacks of one group on one server are blocked by the group's own re-plan") {
  GroupObs o{{{"primary", on_server(primary(false), "7001", "1000.5")},
              {"standby", on_server(replica(true, "primary"), "7001", "1000.5")}},
             traffic_at("primary")};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(make_group("standby"), o, actions, skipped);  // as apply's guard re-plans
  REQUIRE_FALSE(actions.empty());
  for (const auto& a : actions) {
    CHECK(a.blocked);
    CHECK(a.why_blocked.find("are one PostgreSQL server") != std::string::npos);
  }
}

TEST_CASE("issue 11: a plan's blocked groups survive its JSON and stop apply before any step") {
  // The fakes report no server identity: the observation the plan is made of
  // says shop/primary and blog/fra are one server.
  FakeWorld world;
  world.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
  world.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
  world.stacks["blog"]["fra"] = FakeStack{true, false, Role::primary, "", 100, 1};
  world.stacks["blog"]["ams"] = FakeStack{true, true, Role::replica, "fra", 100, 1};
  world.stacks["news"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
  world.stacks["news"]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
  for (const char* g : {"shop", "blog", "news"})
    world.traffic[g] = FakeTraffic{true, g == std::string("blog") ? "fra" : "primary", 60};
  ObservedState o = world.observe_all();
  const ObservedState ids = two_groups_one_server();
  for (const char* g : {"shop", "blog"})
    for (auto& [name, s] : o.groups[g].stacks)
      s.database = ids.groups.at(g).stacks.at(name).database;

  DesiredState d = shop_and_blog();
  Plan p = make_plan(d, o);
  REQUIRE(p.blocked_groups.size() == 2);
  auto back = plan_from_json(plan_to_json(p), "plan.json");
  REQUIRE(back.ok());
  CHECK(back->blocked_groups == p.blocked_groups);

  FakeDriverFactory factory(world);
  Fleet fleet = make_fleet(d, factory);
  FakeClock clock;
  ApplyOptions ao;
  ao.action_timeout = ao.wait_timeout = std::chrono::milliseconds(200);
  ApplyResult r = Applier(d, fleet, nullptr, clock).apply(*back, ao);
  CHECK(r.exit_code() == 3);
  size_t stopped = 0;
  for (const auto& g : r.groups)
    if (g.group == "shop" || g.group == "blog") {
      CHECK(g.stopped == StepOutcome::blocked);
      REQUIRE_FALSE(g.steps.empty());
      CHECK(g.steps.back().detail == p.blocked_groups.at(g.group));
      ++stopped;
    }
  CHECK(stopped == 2);  // shop has no actions and is reported all the same
  bool news_ran = false;
  for (const auto& c : world.calls) {
    INFO(c);
    CHECK(c.find("shop/") == std::string::npos);
    CHECK(c.find("blog/") == std::string::npos);
    news_ran |= c.find("news/") != std::string::npos;
  }
  CHECK(news_ran);  // other groups are unaffected
}

TEST_CASE("issue 11: a snapshot carries each server's identity, so a PR plan blocks the same way") {
  const ObservedState o = two_groups_one_server();
  const std::string json = snapshot_to_json(o);
  auto back = parse_snapshot("observed.json", json);
  REQUIRE(back.ok());
  const DatabaseObs& db = *back->groups.at("blog").stacks.at("fra").database;
  CHECK(db.system_id == std::optional<std::string>("7001"));
  CHECK(db.started_at == std::optional<std::string>("1000.5"));
  CHECK(shared_server_blocks(*back) == shared_server_blocks(o));
  CHECK(observed_digest(*back) == observed_digest(o));

  ObservedState restarted = o;
  restarted.groups["blog"].stacks["ams"].database->started_at = "2000.0";
  CHECK(observed_digest(restarted) != observed_digest(o));  // a restart is another observation

  std::string bad = json;
  bad.replace(bad.find("\"7001\""), 6, "7001");
  CHECK_FALSE(parse_snapshot("observed.json", bad).ok());
}
