// Issue 17, item 2: Cloud 66's API cannot enable replication between stacks
// (resync_slave_db only re-syncs a replica whose master is configured). The
// driver says how it is done in the dashboard (StackObs::attach_by_hand);
// the plan names that step instead of a replication.start that would fail
// obscurely.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "builders.h"
#include "core/planner.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

const std::string kHint =
    "Cloud 66 cannot enable replication through its API: in the Cloud 66 dashboard, open stack "
    "uid-b, its database server group";

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

StackObs by_hand(StackObs s) {
  s.attach_by_hand = kHint;
  return s;
}

const Skipped* skipped_start(const std::vector<Skipped>& skipped, const std::string& stack) {
  for (const Skipped& s : skipped)
    if (s.kind == ActionKind::replication_start && s.stack == stack) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE(
    "issue 17: replication into a Cloud 66 stack whose database is a primary is the dashboard "
    "step, not a replication.start") {
  GroupSpec g = make_group("primary");
  // A standby that never replicated (or the old master after a failover):
  // a primary, fenced.
  GroupObs o{{{"primary", primary(false)}, {"standby", by_hand(primary(true, 90))}},
             traffic_at("primary")};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  CHECK(actions.empty());  // nothing the API could do
  const Skipped* s = skipped_start(skipped, "standby");
  REQUIRE(s);
  CHECK(s->reason ==
        "replication from primary into standby is desired, but standby's database is "
        "a primary, not a replica: " +
            kHint + "; choose primary's database as the master");

  // Not fenced yet: the fence still comes first (invariant 1), then the
  // same dashboard step.
  o.stacks["standby"].maintenance = false;
  actions.clear();
  skipped.clear();
  plan_group(g, o, actions, skipped);
  CHECK(steps(actions) == std::vector<std::string>{"maintenance.on standby"});
  CHECK(skipped_start(skipped, "standby"));
}

TEST_CASE(
    "issue 17: a Cloud 66 replica whose replication stopped is re-synced through the API as "
    "before") {
  GroupSpec g = make_group("primary");
  GroupObs o{{{"primary", primary(false)}, {"standby", by_hand(replica(true, std::nullopt))}},
             traffic_at("primary")};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  CHECK(steps(actions) == std::vector<std::string>{"replication.start standby from primary"});
  CHECK_FALSE(skipped_start(skipped, "standby"));
}

TEST_CASE(
    "issue 17: after a Cloud 66 failover without database observation, re-attaching the old "
    "master names the dashboard step") {
  GroupSpec g = make_group("standby", true);
  StackObs old_master{true, false, std::nullopt, ""};
  StackObs standby{true, true, std::nullopt, ""};
  old_master.attach_by_hand = "HINT-primary";
  GroupObs o{{{"primary", old_master}, {"standby", standby}}, traffic_at("primary")};
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  const Skipped* s = skipped_start(skipped, "primary");
  REQUIRE(s);
  CHECK(has(s->reason,
            "re-attach it by hand: HINT-primary; choose standby's database as the "
            "master"));
  for (const Action& a : actions) CHECK(a.kind != ActionKind::replication_start);
}
