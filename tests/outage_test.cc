// What a person is told first when a group's active stack is down (issue 14
// item 6): the fact, and the exact change to commit, from the planner's own
// promotion guard.
#include "core/outage.h"

#include <catch2/catch.hpp>

#include "builders.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

GroupObs obs_of(StackObs primary_obs, StackObs standby_obs) {
  GroupObs o;
  o.stacks["primary"] = std::move(primary_obs);
  o.stacks["standby"] = std::move(standby_obs);
  o.traffic = traffic_at("primary");
  return o;
}

}  // namespace

TEST_CASE("outage: nothing to say while the active stack answers") {
  GroupSpec g = make_group("primary");
  CHECK_FALSE(advise_outage(g, obs_of(primary(false), replica(true, "primary")), "T", "fra-1"));
  // Misconfigured is not down: it is reported as a configuration error.
  StackObs bad = unreachable(primary(false));
  bad.config_error = true;
  CHECK_FALSE(advise_outage(g, obs_of(bad, replica(true, "primary")), "T", "fra-1"));
}

TEST_CASE("outage: the primary down, the standby caught up: the fact, then the exact change") {
  GroupSpec g = make_group("primary");
  g.mark = {"stackflip.yaml", 12, 3};
  auto a = advise_outage(g, obs_of(unreachable(primary(false, 500)), replica(true, "primary", 500)),
                         "2026-11-30T14:00:00Z", "fra-1");
  REQUIRE(a);
  INFO(a->fact << "\n" << a->decision);
  CHECK(a->fact.rfind("active stack primary of group shop down since 2026-11-30T14:00:00Z "
                      "(seen by fra-1): primary is unreachable (connection refused)",
                      0) == 0);
  CHECK_THAT(a->fact, Catch::Contains("last known lag 0 bytes: standby standby caught up"));
  // The old primary cannot be seen, so the guard cannot rule out a loss:
  // the change needs allow_data_loss, and says what it accepts.
  CHECK_THAT(a->decision,
             Catch::StartsWith("to fail over, commit `active: standby` with `allow_data_loss: "
                               "true` for group shop (stackflip.yaml:12): it accepts losing "));
  CHECK_THAT(a->decision, Catch::Contains("last known lag 0 bytes"));
}

TEST_CASE("outage: a standby behind is named with its lag") {
  GroupSpec g = make_group("primary");
  auto a = advise_outage(g, obs_of(unreachable(primary(false, 900)), replica(true, "primary", 400)),
                         "T", "fra-1");
  REQUIRE(a);
  CHECK_THAT(a->fact,
             Catch::Contains("last known lag 500 bytes: standby standby 500 bytes behind"));
  CHECK_THAT(a->decision, Catch::Contains("last known lag 500 bytes"));
}

TEST_CASE("outage: with three stacks the standby furthest ahead is the one to name") {
  GroupSpec g = make_group("a", false, {"a", "b", "c"});
  GroupObs o;
  o.stacks["a"] = unreachable(primary(false, 900));
  o.stacks["b"] = replica(true, "a", 700);
  o.stacks["c"] = replica(true, "a", 800);
  o.traffic = traffic_at("a");
  auto adv = advise_outage(g, o, "T", "fra-1");
  REQUIRE(adv);
  CHECK_THAT(adv->fact, Catch::Contains("standby c 100 bytes behind"));
  CHECK_THAT(adv->decision, Catch::Contains("commit `active: c`"));
}

TEST_CASE("outage: no standby that can take over is said, with no change to commit") {
  GroupSpec g = make_group("primary");
  auto a = advise_outage(
      g, obs_of(unreachable(primary(false)), unreachable(replica(true, "primary"))), "T", "fra-1");
  REQUIRE(a);
  CHECK_THAT(a->fact, Catch::Contains("no standby can take over; standby is unreachable"));
  CHECK(a->decision.empty());
}

TEST_CASE("outage: a primary never observed leaves the lag unknown, and the change says so") {
  GroupSpec g = make_group("primary");
  StackObs never;  // unreachable since the first pass: nothing last known
  never.error = "connection refused";
  auto a = advise_outage(g, obs_of(never, replica(true, "primary", 300)), "T", "this instance");
  REQUIRE(a);
  CHECK_THAT(a->fact, Catch::Contains("last known lag unknown (primary's last write position"));
  CHECK_THAT(a->decision, Catch::Contains("`allow_data_loss: true`"));
}
