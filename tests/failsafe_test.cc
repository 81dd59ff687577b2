// Issue 11, item 5: a switch that cannot finish goes back to serving, and
// refusals are not retried. apply with the fault-injecting provider, and the
// GitOps loop's hold after a switch failed safe (switch_hold.h).
#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "builders.h"
#include "core/apply.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"
#include "gitops/reconcile.h"
#include "gitops/switch_hold.h"
#include "sys/subprocess.h"

using namespace stackflip;
using namespace stackflip::testing;
using Calls = std::vector<std::string>;

namespace {

class ListLog : public ActionLog {
 public:
  explicit ListLog(Calls& calls) : calls_(calls) {}
  Result<int64_t> begin(const Action& a, const std::string&) override {
    calls_.push_back("begin " + std::string(to_string(a.kind)) + " " + a.stack + ": " + a.reason);
    return ++n_;
  }
  Status finish(int64_t id, const std::string& result, const std::string&, int64_t) override {
    calls_.push_back("end #" + std::to_string(id) + " " + result);
    return {};
  }

 private:
  Calls& calls_;
  int64_t n_ = 0;
};

FakeWorld steady_world() {
  FakeWorld w;
  w.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
  w.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
  w.traffic["shop"] = FakeTraffic{true, "primary", 60};
  return w;
}

// The standby's driver fails its `call`-th call (1: replication.stop,
// 2: database.promote, 3: maintenance.off) and every later one.
struct Switch {
  FakeWorld world = steady_world();
  DesiredState desired = make_desired({make_group("standby")});
  FakeDriverFactory factory{world};
  FakeClock clock;
  Fleet fleet;
  Calls journal;
  FaultyStackDriver* faulty = nullptr;

  Switch(int call, bool permanent, bool timeout = false, bool sticky = true) {
    factory.wrap_stack = [=, this](std::unique_ptr<StackDriver> d,
                                   const std::string& stack) -> std::unique_ptr<StackDriver> {
      if (stack != "standby") return d;
      auto f = std::make_unique<FaultyStackDriver>(std::move(d), call, timeout, sticky, permanent);
      faulty = f.get();
      return f;
    };
  }
  ApplyResult apply() {
    if (fleet.empty()) fleet = make_fleet(desired, factory);
    ListLog log(journal);
    ApplyOptions o;
    o.origin = "config:test";
    o.action_timeout = std::chrono::milliseconds(200);
    o.wait_timeout = std::chrono::milliseconds(200);
    return Applier(desired, fleet, &log, clock).apply(make_plan(desired, world.observe_all()), o);
  }
  bool writable(const std::string& s) {
    const FakeStack& f = world.stacks["shop"][s];
    return f.up && f.role == Role::primary && !f.maintenance;
  }
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE(
    "issue 11: a promotion refused for good re-opens the old primary, is not retried and leaves "
    "traffic") {
  // Only the first promote is refused: a retry would promote.
  Switch s(2, /*permanent=*/true, /*timeout=*/false, /*sticky=*/false);
  ApplyResult r = s.apply();
  CHECK(r.exit_code() == 1);
  REQUIRE(r.groups.size() == 1);
  const GroupApply& g = r.groups[0];
  CHECK(g.stopped == StepOutcome::failed);
  CHECK(g.reopened == "primary");
  // stop, the refused promote, the resumed replication: no second promote.
  CHECK(s.faulty->calls() == 3);
  CHECK(s.world.calls == Calls{"maintenance.on shop/primary", "replication.stop shop/standby",
                               "maintenance.off shop/primary",
                               "replication.start shop/standby from primary"});
  CHECK(s.writable("primary"));
  CHECK(s.world.stacks["shop"]["standby"].role == Role::replica);
  CHECK(s.world.stacks["shop"]["standby"].upstream == "primary");
  CHECK(s.world.traffic["shop"].target == "primary");
  // The promote step says so; the group's last step tells the whole story.
  bool promote_reported = false;
  for (const auto& st : g.steps)
    if (st.action.kind == ActionKind::database_promote) {
      promote_reported = true;
      CHECK(st.outcome == StepOutcome::failed);
      CHECK(has(st.detail, "injected refusal (permanent: not retried)"));
      CHECK_FALSE(has(st.detail, "attempt"));
    }
  CHECK(promote_reported);
  CHECK(has(g.failed_safe, "the switch to standby failed at database.promote standby"));
  CHECK(has(g.failed_safe, "re-opened primary, the only primary; traffic left on primary"));
  CHECK(g.steps.back().detail == g.failed_safe);
  // Journaled like any action, with the reason.
  auto reopen = std::find_if(s.journal.begin(), s.journal.end(), [](const std::string& l) {
    return has(l,
               "begin maintenance.off primary: the switch to standby failed at database.promote");
  });
  REQUIRE(reopen != s.journal.end());
  CHECK(has(*reopen, "re-opening primary, the only primary"));
}

TEST_CASE("issue 11: a transient promotion failure is still retried and the switch completes") {
  Switch s(2, /*permanent=*/false);
  s.factory.wrap_stack = [&](std::unique_ptr<StackDriver> d,
                             const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    auto f = std::make_unique<FaultyStackDriver>(std::move(d), 2);  // once, not sticky
    s.faulty = f.get();
    return f;
  };
  ApplyResult r = s.apply();
  CHECK(r.exit_code() == 0);
  CHECK(s.faulty->calls() >= 3);  // the failed promote was asked again
  CHECK(r.groups[0].reopened.empty());
  CHECK(s.world.traffic["shop"].target == "standby");
  CHECK(s.writable("standby"));
  CHECK_FALSE(s.writable("primary"));
}

TEST_CASE(
    "issue 11: a promotion failing without a refusal leaves the old primary fenced (it may still "
    "happen)") {
  Switch s(2, /*permanent=*/false, /*timeout=*/true);
  ApplyResult r = s.apply();
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::timeout);
  CHECK(r.groups[0].reopened.empty());
  CHECK(s.faulty->calls() == 4);  // stop + 3 promote attempts
  CHECK(s.world.stacks["shop"]["primary"].maintenance);
  CHECK(has(r.groups[0].steps.back().detail, "primary stays fenced, not re-opened"));
}

TEST_CASE("issue 11: a failure after the promotion does not re-open the old primary") {
  Switch s(3, /*permanent=*/true);  // maintenance.off standby refused
  ApplyResult r = s.apply();
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].reopened.empty());
  CHECK(s.world.stacks["shop"]["standby"].role == Role::primary);
  CHECK(s.world.stacks["shop"]["primary"].maintenance);
  CHECK_FALSE(s.writable("primary"));
  CHECK(s.world.calls == Calls{"maintenance.on shop/primary", "replication.stop shop/standby",
                               "database.promote shop/standby"});
}

TEST_CASE("issue 11: a refused step while another stack is primary too does not re-open") {
  Switch s(2, /*permanent=*/true);
  s.factory.wrap_stack = [&](std::unique_ptr<StackDriver> d,
                             const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    // The refusal comes from a promotion that happened all the same.
    struct Liar : StackDriver {
      std::unique_ptr<StackDriver> in;
      StackObs observe() override { return in->observe(); }
      Status set_maintenance(bool on) override { return in->set_maintenance(on); }
      Status stop_replication() override { return in->stop_replication(); }
      Status promote() override {
        (void)in->promote();
        return Refused("refused after all");
      }
      Status start_replication(const StackSpec& x) override { return in->start_replication(x); }
    };
    auto l = std::make_unique<Liar>();
    l->in = std::move(d);
    return l;
  };
  ApplyResult r = s.apply();
  CHECK(r.exit_code() == 1);
  CHECK(r.groups[0].reopened.empty());
  CHECK(s.world.stacks["shop"]["primary"].maintenance);
  CHECK(has(r.groups[0].steps.back().detail, "standby is a primary too"));
}

TEST_CASE("issue 11: a hold applies only on its commit, to the state the fail safe left") {
  GroupSpec g = make_group("standby");
  SwitchHold h{"c0ffee", "standby", "primary", "the switch to standby failed at x"};
  GroupObs o;
  o.stacks["primary"] = primary(false);
  o.stacks["standby"] = replica(true, std::nullopt);
  o.traffic.target = "primary";
  CHECK(has(hold_reason(h, g, o, "c0ffee"), "held: the switch to standby failed at x"));
  CHECK(hold_reason(h, g, o, "newer").empty());                       // a new commit
  CHECK(hold_reason(h, make_group("primary"), o, "c0ffee").empty());  // active flipped back
  GroupObs promoted = o;
  promoted.stacks["standby"] = primary(false);
  CHECK(hold_reason(h, g, promoted, "c0ffee").empty());  // the operator promoted it
  GroupObs fenced = o;
  fenced.stacks["primary"] = primary(true);
  CHECK(hold_reason(h, g, fenced, "c0ffee").empty());  // not as the fail safe left it
  SwitchHolds holds{{"shop", h}};
  CHECK(holds_from_json(holds_to_json(holds)).at("shop").reason == h.reason);
  CHECK(holds_from_json("not json").empty());
}

namespace {

std::string config(const std::string& active, const std::string& note = "") {
  return "apiVersion: stackflip/v1\n" + note +
         "providers:\n"
         "  db: {type: postgres}\n"
         "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: "
         "\"${env:PDNS_API_KEY}\"}\n"
         "groups:\n"
         "  shop:\n"
         "    active: " +
         active +
         "\n"
         "    stacks:\n"
         "      primary: {provider: db, dsn: \"host=127.0.0.1\", address: 127.0.0.1}\n"
         "      standby: {provider: db, dsn: \"host=127.0.0.2\", address: 127.0.0.2}\n"
         "    traffic: {provider: dns, zone: example.test., record: shop.example.test.}\n";
}

std::string git(std::vector<std::string> args, const std::string& cwd) {
  args.insert(args.begin(), {"git", "-C", cwd});
  SubprocessOptions so;
  so.argv = args;
  auto r = run_subprocess(so);
  REQUIRE(r.ok());
  REQUIRE(r->exit_code == 0);
  return trim_output(r->out);
}

}  // namespace

TEST_CASE("issue 11: after a switch failed safe the loop holds the group until a new commit") {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "stackflip-failsafe-XXXXXX").string();
  std::filesystem::path dir = mkdtemp(tmpl.data());
  struct Cleanup {
    std::filesystem::path d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};
  const std::string work = (dir / "work").string();
  SubprocessOptions init;
  init.argv = {"git", "init", "-q", "-b", "main", work};
  REQUIRE(run_subprocess(init).ok());
  git({"config", "user.email", "ops@example.test"}, work);
  git({"config", "user.name", "Ops"}, work);
  git({"config", "commit.gpgsign", "false"}, work);
  auto commit = [&](const std::string& text) {
    std::ofstream(work + "/stackflip.yaml", std::ios::trunc) << text;
    git({"add", "stackflip.yaml"}, work);
    git({"commit", "-q", "-m", "change"}, work);
    return git({"rev-parse", "HEAD"}, work);
  };
  FakeWorld world = steady_world();
  FakeDriverFactory factory(world);
  int promotes = 0;
  factory.wrap_stack = [&](std::unique_ptr<StackDriver> d,
                           const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    struct Refuse : StackDriver {
      std::unique_ptr<StackDriver> in;
      int* n;
      StackObs observe() override { return in->observe(); }
      Status set_maintenance(bool on) override { return in->set_maintenance(on); }
      Status stop_replication() override { return in->stop_replication(); }
      Status promote() override {
        ++*n;
        return Refused("no slave database server to promote");
      }
      Status start_replication(const StackSpec& x) override { return in->start_replication(x); }
    };
    auto r = std::make_unique<Refuse>();
    r->in = std::move(d);
    r->n = &promotes;
    return r;
  };
  auto journal = std::move(*StateStore::open((dir / "state.db").string()));
  commit(config("primary"));
  GitSourceOptions so;
  so.url = "file://" + work;
  so.cache_dir = (dir / "cache").string();
  GitSource src(so);
  ReconcileSettings settings;
  settings.apply.action_timeout = std::chrono::milliseconds(500);
  settings.apply.wait_timeout = std::chrono::milliseconds(500);
  Reconciler rec(src, *journal, factory, real_clock(), settings);
  REQUIRE(rec.pass().exit_code == 0);

  commit(config("standby"));
  PassReport p1 = rec.pass();
  CHECK(p1.exit_code == 1);
  CHECK(p1.run.result == "failed");
  CHECK(has(p1.run.error, "re-opened primary, the only primary"));
  CHECK(promotes == 1);
  CHECK_FALSE(world.stacks["shop"]["primary"].maintenance);

  // The next passes on the same commit neither fence nor promote: held.
  world.calls.clear();
  for (int i = 0; i < 2; ++i) {
    PassReport held = rec.pass();
    CHECK(held.exit_code == 3);
    CHECK(held.run.result == "blocked");
    CHECK(has(held.run.error, "held: the switch to standby failed at database.promote"));
    CHECK_FALSE(held.converged());
  }
  CHECK(world.calls.empty());
  CHECK(promotes == 1);

  // A new commit (here: the same switch, after a fix elsewhere) tries again.
  commit(config("standby", "# retry after the fix\n"));
  PassReport p3 = rec.pass();
  CHECK(p3.exit_code == 1);
  CHECK(promotes == 2);
  CHECK_FALSE(world.stacks["shop"]["primary"].maintenance);

  // Flipping `active` back ends the hold: nothing to do, converged.
  commit(config("primary"));
  PassReport p4 = rec.pass();
  CHECK(p4.exit_code == 0);
  CHECK(p4.converged());
}
