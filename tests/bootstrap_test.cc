// Issue 17: bootstrapping a standby that cannot follow the active stack
// (another cluster, a copy that diverged with pg_rewind off, an interrupted
// bootstrap) by a new base backup: what the planner plans, what it refuses,
// and apply resuming one that was killed half-way.
#include <catch2/catch.hpp>

#include "builders.h"
#include "config/loader.h"
#include "config/snapshot.h"
#include "core/apply.h"
#include "core/plan_json.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"

using namespace stackflip;
using namespace stackflip::testing;
using Steps = std::vector<std::string>;

namespace {

StackObs with_cluster(StackObs s, const std::string& sysid) {
  s.database->system_id = sysid;
  return s;
}

// The active primary, and a fresh initdb cluster as the standby: a primary
// of its own, maintenance off, another system identifier.
GroupObs fresh_standby() {
  StackObs fresh = with_cluster(primary(false, 20), "7002");
  fresh.database->databases = {{"legacy", 9 << 20}, {"postgres", 7 << 20}};
  return GroupObs{{{"primary", with_cluster(primary(false), "7001")}, {"standby", fresh}},
                  traffic_at("primary")};
}

GroupSpec opted(GroupSpec g, const std::string& stack) {
  g.stacks[stack].settings["bootstrap"] = "basebackup";
  g.stacks[stack].settings["data_directory"] = "/var/lib/postgresql/15/main";
  return g;
}

std::vector<Action> plan_for(const GroupSpec& g, const GroupObs& o) {
  std::vector<Action> actions;
  std::vector<Skipped> skipped;
  plan_group(g, o, actions, skipped);
  return actions;
}

}  // namespace

TEST_CASE("issue 17: another cluster as the standby is fenced, then bootstrapped, destructively") {
  auto p = plan_for(opted(make_group("primary"), "standby"), fresh_standby());
  REQUIRE(steps(p) ==
          Steps{"maintenance.on standby", "replication.bootstrap standby from primary"});
  const Action& b = p[1];
  CHECK(b.destructive);
  CHECK(b.removes == "its databases legacy (9.0 MiB), postgres (7.0 MiB); 16.0 MiB in all");
  CHECK(b.reason.find("another PostgreSQL cluster (system identifier 7002, primary's 7001)") !=
        std::string::npos);
  CHECK(b.reason.find("DESTRUCTIVE") != std::string::npos);
  CHECK(b.reason.find("legacy (9.0 MiB)") != std::string::npos);
}

TEST_CASE("issue 17: without bootstrap the stack is left alone, blocked, saying what to set") {
  auto p = plan_for(make_group("primary"), fresh_standby());
  REQUIRE(steps(p) ==
          Steps{"maintenance.on standby", "replication.bootstrap standby from primary BLOCKED"});
  CHECK(p[1].why_blocked.find("set `bootstrap: basebackup` (and `data_directory:`) on stack "
                              "standby") != std::string::npos);
  // Never replication.start: it could never stream.
  for (const Action& a : p) CHECK(a.kind != ActionKind::replication_start);
}

TEST_CASE("issue 17: a blocked bootstrap does not hold another stack's re-attach") {
  GroupSpec g = make_group("a", false, {"a", "b", "c"});
  GroupObs o{{{"a", with_cluster(primary(false), "1")},
              {"b", with_cluster(replica(true, std::nullopt), "1")},
              {"c", with_cluster(primary(true, 5), "2")}},
             traffic_at("a")};
  auto p = plan_for(g, o);
  CHECK(steps(p) == Steps{"replication.start b from a", "replication.bootstrap c from a BLOCKED"});
}

TEST_CASE("issue 17: a diverged copy of the cluster needs allow_data_loss to be bootstrapped") {
  GroupObs o{{{"primary", with_cluster(primary(false, 200), "1")},
              {"standby", with_cluster(primary(true, 150), "1")}},
             traffic_at("primary")};
  o.stacks["standby"].database->cannot_follow =
      "it wrote WAL up to 0/96 past 0/90 where primary's timeline 2 forked (pg_rewind is off)";
  GroupSpec g = opted(make_group("primary"), "standby");
  auto p = plan_for(g, o);
  REQUIRE(steps(p) == Steps{"replication.bootstrap standby from primary BLOCKED"});
  CHECK(p[0].why_blocked.find("holds WAL primary lacks") != std::string::npos);
  CHECK(p[0].why_blocked.find("allow_data_loss: true") != std::string::npos);
  g.allow_data_loss = true;
  p = plan_for(g, o);
  REQUIRE(steps(p) == Steps{"replication.bootstrap standby from primary"});
  CHECK(p[0].reason.find("`allow_data_loss: true` accepts it") != std::string::npos);
}

TEST_CASE(
    "issue 17: another cluster that traffic reaches is not bootstrapped without "
    "allow_data_loss") {
  GroupObs o = fresh_standby();
  o.traffic = traffic_at("standby");
  auto p = plan_for(opted(make_group("primary"), "standby"), o);
  REQUIRE_FALSE(p.empty());
  CHECK(p.back().kind == ActionKind::replication_bootstrap);
  CHECK(p.back().blocked);
  CHECK(p.back().why_blocked.find("traffic reaches standby") != std::string::npos);
}

TEST_CASE("issue 17: never the active stack, and never promoting another cluster") {
  // `active: standby`, a fresh cluster: the serving primary of the group's
  // cluster is not fenced for it, traffic does not move, and the old
  // primary is not bootstrapped.
  auto p = plan_for(opted(opted(make_group("standby"), "standby"), "primary"), fresh_standby());
  REQUIRE_FALSE(p.empty());
  for (const Action& a : p) {
    CHECK(a.blocked);
    CHECK((a.stack != "standby" || a.kind != ActionKind::replication_bootstrap));
  }
  CHECK(p[0].kind == ActionKind::maintenance_on);
  CHECK(p[0].stack == "primary");
  CHECK(p[0].why_blocked.find("standby is another PostgreSQL cluster than primary, the primary "
                              "traffic reaches") != std::string::npos);
  // As a replica of another cluster it is not promoted either.
  GroupObs o = fresh_standby();
  o.stacks["standby"] = with_cluster(replica(true, "primary"), "7002");
  o.stacks["standby"].database->streaming = false;
  o.stacks["primary"].maintenance = true;
  p = plan_for(make_group("standby"), o);
  bool promote_blocked = false;
  for (const Action& a : p)
    if (a.kind == ActionKind::database_promote) promote_blocked = a.blocked;
  CHECK(promote_blocked);
}

TEST_CASE("issue 17: an interrupted bootstrap is resumed while the server is down") {
  GroupObs o = fresh_standby();
  o.stacks["standby"] = unreachable(o.stacks["standby"]);
  o.stacks["standby"].bootstrap_phase = "copy";
  auto p = plan_for(opted(make_group("primary"), "standby"), o);
  REQUIRE(steps(p) == Steps{"replication.bootstrap standby from primary"});
  CHECK(p[0].reason.find("resume the interrupted bootstrap of standby (phase copy") !=
        std::string::npos);
  CHECK(p[0].removes.find("moved aside by the interrupted bootstrap") != std::string::npos);
  // The config no longer opts in: blocked, saying how to finish it.
  p = plan_for(make_group("primary"), o);
  REQUIRE(steps(p) == Steps{"replication.bootstrap standby from primary BLOCKED"});
  CHECK(p[0].why_blocked.find("set it again to finish it") != std::string::npos);
}

TEST_CASE("issue 17: a saved plan keeps the bootstrap's destructive mark and what it removes") {
  Plan plan;
  plan.desired_digest = "d";
  plan.observed_digest = "o";
  plan.actions = plan_for(opted(make_group("primary"), "standby"), fresh_standby());
  auto back = plan_from_json(plan_to_json(plan, true), "plan.json");
  REQUIRE(back.ok());
  REQUIRE(back->actions.size() == 2);
  CHECK(back->actions[1].destructive);
  CHECK(back->actions[1].removes == plan.actions[1].removes);
  // A bootstrap without the mark is refused: a hand-edited plan cannot hide it.
  std::string text = plan_to_json(plan, true);
  auto at = text.find("\"destructive\": true,");
  REQUIRE(at != std::string::npos);
  text.erase(at, std::string("\"destructive\": true,").size());
  CHECK_FALSE(plan_from_json(text, "plan.json").ok());
}

TEST_CASE("issue 17: a snapshot carries the bootstrap's observations") {
  ObservedState obs;
  obs.observed_at = "2026-12-01T00:00:00Z";
  obs.groups["shop"] = fresh_standby();
  obs.groups["shop"].stacks["standby"].bootstrap_phase = "start";
  obs.groups["shop"].stacks["standby"].database->cannot_follow = "diverged";
  auto back = parse_snapshot("snap.json", snapshot_to_json(obs));
  REQUIRE(back.ok());
  const StackObs& s = back->groups["shop"].stacks["standby"];
  CHECK(s.bootstrap_phase == std::optional<std::string>("start"));
  CHECK(s.database->cannot_follow == std::optional<std::string>("diverged"));
  CHECK(s.database->databases == obs.groups["shop"].stacks["standby"].database->databases);
}

TEST_CASE("issue 17: apply fences and bootstraps, and a bootstrap killed half-way is resumed") {
  FakeWorld w;
  w.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
  FakeStack fresh{true, false, Role::primary, "", 20, 1};
  fresh.cluster = 2;
  w.stacks["shop"]["standby"] = fresh;
  w.traffic["shop"] = FakeTraffic{true, "primary", 60};
  GroupSpec g = opted(make_group("primary"), "standby");
  DesiredState desired = make_desired({g});
  FakeDriverFactory factory(w);
  int attempts = 0;
  factory.wrap_stack = [&](std::unique_ptr<StackDriver> d, const std::string& stack) {
    if (stack != "standby") return d;
    // The first bootstrap dies after moving the data aside (kill -9).
    struct Killed : StackDriver {
      std::unique_ptr<StackDriver> in;
      FakeWorld& w;
      int& attempts;
      Killed(std::unique_ptr<StackDriver> i, FakeWorld& world, int& n)
          : in(std::move(i)), w(world), attempts(n) {}
      // Down, as the real driver without a last known observation: no
      // database at all, only the marker.
      StackObs observe() override {
        StackObs o = in->observe();
        if (!o.reachable) o.database.reset();
        return o;
      }
      Status set_maintenance(bool on) override { return in->set_maintenance(on); }
      Status stop_replication() override { return in->stop_replication(); }
      Status promote() override { return in->promote(); }
      Status start_replication(const StackSpec& s) override { return in->start_replication(s); }
      Status bootstrap_replica(const StackSpec& s) override {
        if (++attempts == 1) {
          w.stacks["shop"]["standby"].up = false;
          w.stacks["shop"]["standby"].bootstrap_phase = "copy";
          return Timeout("killed during pg_basebackup");
        }
        return in->bootstrap_replica(s);
      }
    };
    return std::unique_ptr<StackDriver>(std::make_unique<Killed>(std::move(d), w, attempts));
  };
  Fleet fleet = make_fleet(desired, factory);
  FakeClock clock;
  Plan plan;
  plan_group(g, w.observe("shop"), plan.actions, plan.skipped);
  ApplyOptions o;
  o.retries = 0;  // the kill ends this apply
  ApplyResult r = Applier(desired, fleet, nullptr, clock).apply(plan, o);
  CHECK(r.exit_code() == 1);
  CHECK(w.stacks["shop"]["standby"].bootstrap_phase == "copy");
  // The re-run plans the resumption from what it observes, and converges.
  Plan again;
  plan_group(g, w.observe("shop"), again.actions, again.skipped);
  REQUIRE(steps(again.actions) == Steps{"replication.bootstrap standby from primary"});
  r = Applier(desired, fleet, nullptr, clock).apply(again, o);
  CHECK(r.exit_code() == 0);
  // Down at its guard, yet verified on the replica it made, and said so.
  REQUIRE(r.groups.size() == 1);
  REQUIRE(r.groups[0].steps.size() == 1);
  CHECK(r.groups[0].steps[0].detail.rfind("removed ", 0) == 0);
  CHECK(r.groups[0].steps[0].detail.find("not observable") == std::string::npos);
  const FakeStack& s = w.stacks["shop"]["standby"];
  CHECK(s.role == Role::replica);
  CHECK(s.upstream == "primary");
  CHECK(s.cluster == 1);
  CHECK(s.bootstrap_phase.empty());
  Plan done;
  plan_group(g, w.observe("shop"), done.actions, done.skipped);
  CHECK(done.actions.empty());
}

namespace {
const char* kBootConfig = R"(apiVersion: stackflip/v1
providers:
  db: {type: postgres}
  dns: {type: powerdns, url: "http://127.0.0.1:8081", api_key: "${env:K}"}
groups:
  shop:
    active: primary
    stacks:
      primary: {provider: db, dsn: "host=10.0.0.5", address: 10.0.0.5}
      standby:
        provider: db
        dsn: "host=10.0.0.6"
        address: 10.0.0.6
        control_command: [/usr/local/lib/stackflip/pg-control.sh]
        bootstrap: basebackup
        data_directory: /var/lib/postgresql/15/main
        keep_old_data: true
    traffic: {provider: dns, zone: example.com., record: shop.example.com.}
)";

std::string errors_of(const std::string& text) {
  LoadResult r = load_desired_text("t.yaml", text);
  std::string out;
  for (const auto& e : r.errors)
    out +=
        std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + " " + e.message + "\n";
  return out;
}
std::string without(std::string text, const std::string& line) {
  auto at = text.find(line);
  if (at != std::string::npos) text.erase(at, line.size());
  return text;
}
}  // namespace

TEST_CASE("issue 17: bootstrap is loaded, and needs data_directory and a control command") {
  LoadResult r = load_desired_text("t.yaml", kBootConfig);
  REQUIRE(r.desired);
  const StackSpec& s = r.desired->groups.at("shop").stacks.at("standby");
  CHECK(s.get("bootstrap") == "basebackup");
  CHECK(s.get("data_directory") == "/var/lib/postgresql/15/main");
  CHECK(s.get("keep_old_data") == "true");
  CHECK(errors_of(without(kBootConfig, "        data_directory: /var/lib/postgresql/15/main\n"))
            .find("15:9 stack 'standby' has 'bootstrap' but no 'data_directory'") !=
        std::string::npos);
  CHECK(errors_of(without(kBootConfig,
                          "        control_command: [/usr/local/lib/stackflip/pg-control.sh]\n"))
            .find("has 'bootstrap' but no 'control_command'") != std::string::npos);
  std::string relative = kBootConfig;
  relative.replace(relative.find("/var/lib/postgresql/15/main"), 27, "/var/lib/../main");
  CHECK(errors_of(relative).find("'data_directory' must be an absolute path") != std::string::npos);
  std::string other = kBootConfig;
  other.replace(other.find("basebackup"), 10, "rsync");
  CHECK_FALSE(errors_of(other).empty());
}
