// Observation's memory (core/observe.h LastKnown, gitops/last_known.h): an
// unreachable stack is planned with the facts it had when last reached.
#include "gitops/last_known.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "builders.h"
#include "config/snapshot.h"
#include "core/observe.h"
#include "fake_provider.h"
#include "gitops/state_store.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

class MemoryLastKnown : public LastKnown {
 public:
  std::optional<ObservedState> stored;
  int loads = 0, remembered = 0;
  bool fail = false;
  Result<std::optional<ObservedState>> load() override {
    ++loads;
    if (fail) return Err("disk on fire");
    return stored;
  }
  Status remember(const ObservedState& obs) override {
    ++remembered;
    if (fail) return Err("disk on fire");
    stored = obs;
    return Status::Ok();
  }
};

// The fake reports a down stack's database as it was; a real driver knows
// nothing of a server it cannot reach. This one forgets it, as they do.
class ForgetfulDriver : public StackDriver {
 public:
  explicit ForgetfulDriver(std::unique_ptr<StackDriver> inner) : inner_(std::move(inner)) {}
  StackObs observe() override {
    StackObs o = inner_->observe();
    if (!o.reachable) o = StackObs{false, false, std::nullopt, o.error};
    return o;
  }
  Status set_maintenance(bool on) override { return inner_->set_maintenance(on); }
  Status stop_replication() override { return inner_->stop_replication(); }
  Status promote() override { return inner_->promote(); }
  Status start_replication(const StackSpec& s) override { return inner_->start_replication(s); }

 private:
  std::unique_ptr<StackDriver> inner_;
};

struct Setup {
  FakeWorld world;
  FakeDriverFactory factory{world};
  DesiredState desired = make_desired({make_group("primary")});
  Fleet fleet;
  Setup() {
    world.instant_replay = false;
    factory.wrap_stack = [](std::unique_ptr<StackDriver> d, const std::string&) {
      return std::unique_ptr<StackDriver>(new ForgetfulDriver(std::move(d)));
    };
    world.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 500, 1};
    world.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 480, 1};
    world.traffic["shop"] = FakeTraffic{true, "primary", 60};
    fleet = make_fleet(desired, factory);
  }
};

struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/stackflip-last-known-XXXXXX";
    path = mkdtemp(tmpl);
    path += "/state.db";
  }
  ~TempFile() { std::filesystem::remove_all(std::filesystem::path(path).parent_path()); }
};

}  // namespace

TEST_CASE(
    "last known: an unreachable stack gets the position it had when last reached (issue 12)") {
  Setup s;
  MemoryLastKnown memory;
  ObservedState first = observe_with_last_known(s.desired, s.fleet, real_clock(), 4, &memory, true);
  REQUIRE(memory.remembered == 1);
  REQUIRE(first.groups["shop"].stacks["standby"].database->lsn == 480);

  s.world.stacks["shop"]["standby"].up = false;  // the standby's site goes away
  s.world.stacks["shop"]["primary"].lsn = 900;   // the primary moves on
  ObservedState now = observe_with_last_known(s.desired, s.fleet, real_clock(), 4, &memory, false);
  const StackObs& standby = now.groups["shop"].stacks["standby"];
  CHECK_FALSE(standby.reachable);
  REQUIRE(standby.database);
  CHECK(standby.database->lsn == 480);  // as last known
  CHECK(standby.database->role == Role::replica);
  CHECK(standby.maintenance);
  // Reachable facts are never replaced by remembered ones.
  CHECK(now.groups["shop"].stacks["primary"].database->lsn == 900);
  // Without `remember` the memory keeps the earlier observation.
  CHECK(memory.remembered == 1);
  CHECK(memory.stored->groups["shop"].stacks["primary"].database->lsn == 500);
}

TEST_CASE("last known: without a memory, an unreachable stack is unknown (issue 12)") {
  Setup s;
  s.world.stacks["shop"]["standby"].up = false;
  ObservedState now = observe_with_last_known(s.desired, s.fleet, real_clock(), 4, nullptr, true);
  CHECK_FALSE(now.groups["shop"].stacks["standby"].reachable);
  CHECK_FALSE(now.groups["shop"].stacks["standby"].database);
}

TEST_CASE(
    "last known: a memory that fails is reported, the observation still returned (issue 12)") {
  Setup s;
  MemoryLastKnown memory;
  memory.fail = true;
  std::string error;
  ObservedState now =
      observe_with_last_known(s.desired, s.fleet, real_clock(), 4, &memory, true, &error);
  CHECK(error == "disk on fire");
  CHECK(now.groups["shop"].stacks["primary"].reachable);
  CHECK(memory.loads == 1);
  CHECK(memory.remembered == 1);
}

TEST_CASE(
    "last known: the state store keeps it under its own key and reads the old one (issue 12)") {
  Setup s;
  TempFile f;
  auto store = StateStore::open(f.path);
  REQUIRE(store.ok());
  StoredLastKnown memory(**store);
  {
    auto nothing = memory.load();
    REQUIRE(nothing.ok());
    CHECK_FALSE(*nothing);
  }
  // A store written before issue 12 has the snapshot under gitops.observed.
  ObservedState old = s.world.observe_all();
  old.observed_at = "2026-11-26T18:00:00Z";
  REQUIRE((*store)->put("gitops.observed", snapshot_to_json(old)).ok());
  auto back = memory.load();
  REQUIRE(back.ok());
  REQUIRE(*back);
  CHECK(observed_digest(**back) == observed_digest(old));

  ObservedState newer = old;
  newer.groups["shop"].stacks["standby"].database->lsn = 777;
  REQUIRE(memory.remember(newer).ok());
  auto stored = (*store)->get("observe.last_known");
  REQUIRE(stored.ok());
  REQUIRE(*stored);
  auto reread = memory.load();  // the new key wins over the old one
  REQUIRE(reread.ok());
  CHECK((*reread)->groups["shop"].stacks["standby"].database->lsn == 777);

  // A snapshot that no longer parses is forgotten, not an error.
  REQUIRE((*store)->put("observe.last_known", "{not json").ok());
  auto forgotten = memory.load();
  REQUIRE(forgotten.ok());
  CHECK_FALSE(*forgotten);
}

TEST_CASE("last known: unreachable traffic keeps its last known target and TTL (issue 12)") {
  ObservedState last, now;
  last.groups["shop"].traffic = traffic_at("primary", 300);
  now.groups["shop"].traffic = traffic_at(std::nullopt);
  now.groups["shop"].traffic.ttl.reset();
  now.groups["shop"].traffic.reachable = false;
  fill_last_known(now, last);
  CHECK(now.groups["shop"].traffic.target == std::optional<std::string>("primary"));
  CHECK(now.groups["shop"].traffic.ttl == 300);
  // Reachable traffic is never overwritten.
  ObservedState live;
  live.groups["shop"].traffic = traffic_at("standby", 60);
  fill_last_known(live, last);
  CHECK(live.groups["shop"].traffic.target == std::optional<std::string>("standby"));
}
