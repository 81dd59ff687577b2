// Site-wide failover (issue 11 item 7): a pass switches many groups at once,
// `parallelism` at a time, and one slow group never holds the others. The
// groups run on the fake drivers; SlowStackDriver makes one group slow in
// real time (sleeps of 1.2 s at most), and each group's traffic switch is
// timed from the start of the pass.
#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <mutex>

#include "fake_provider.h"
#include "gitops/reconcile.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

// N groups g0..g{N-1}, each a pair fra/ams on servers of its own, all active `active`.
std::string fleet_config(int n, const std::string& active) {
  std::string c =
      "apiVersion: stackflip/v1\n"
      "providers:\n"
      "  db: {type: postgres}\n"
      "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: "
      "\"${env:PDNS_API_KEY}\"}\n"
      "groups:\n";
  for (int i = 0; i < n; ++i) {
    std::string g = "g" + std::to_string(i), k = std::to_string(i + 1);
    c += "  " + g + ":\n    active: " + active +
         "\n    stacks:\n"
         "      fra: {provider: db, dsn: \"host=127.0.1." +
         k + "\", address: 127.0.1." + k +
         "}\n"
         "      ams: {provider: db, dsn: \"host=127.0.2." +
         k + "\", address: 127.0.2." + k +
         "}\n"
         "    traffic: {provider: dns, zone: example.test., record: " +
         g + ".example.test.}\n";
  }
  return c;
}

// The config in Git, without Git: each set() is a new commit descending from the last.
class MemorySource : public ConfigSource {
 public:
  void set(std::string text) {
    text_ = std::move(text);
    ++n_;
  }
  Result<std::string> fetch() override { return sha(n_); }
  Result<std::string> read_file(const std::string&, const std::string&) override { return text_; }
  Result<std::optional<CommitSignature>> signature(const std::string&) override {
    return std::optional<CommitSignature>();
  }
  Result<bool> descends_from(const std::string& c, const std::string& a) override {
    return c > a;  // shas are numbered in order
  }
  std::string describe() const override { return "memory@main"; }

 private:
  static std::string sha(int n) {
    std::string s = std::to_string(n);
    return std::string(40 - s.size(), '0') + s;
  }
  std::string text_;
  int n_ = 0;
};

// N groups in the fake world, fra primary and ams its replica, traffic on
// fra; every traffic switch is timed from `t0` (set by pass()).
struct Site {
  std::filesystem::path dir;
  FakeWorld world;
  FakeDriverFactory factory{world};
  std::unique_ptr<StateStore> journal;
  MemorySource source;
  std::mutex mu;
  std::chrono::steady_clock::time_point t0;
  std::map<std::string, double> switched_at;  // group -> seconds since t0
  // Slows the stacks named here: group/stack -> delays.
  std::map<std::string, SlowStackDriver::Delays> slow;
  SlowStackDriver::Delays every;  // for every other stack

  class TimedTraffic : public TrafficDriver {
   public:
    TimedTraffic(std::unique_ptr<TrafficDriver> inner, std::string group, Site& s)
        : inner_(std::move(inner)), group_(std::move(group)), s_(s) {}
    TrafficObs observe() override { return inner_->observe(); }
    Status switch_to(const std::string& stack) override {
      Status st = inner_->switch_to(stack);
      std::lock_guard lock(s_.mu);
      s_.switched_at[group_] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - s_.t0).count();
      return st;
    }

   private:
    std::unique_ptr<TrafficDriver> inner_;
    std::string group_;
    Site& s_;
  };

  explicit Site(int n) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "stackflip-parallel-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    journal = std::move(*StateStore::open((dir / "state.db").string()));
    for (int i = 0; i < n; ++i) {
      std::string g = "g" + std::to_string(i);
      world.stacks[g]["fra"] = FakeStack{true, false, Role::primary, "", 100, 1};
      world.stacks[g]["ams"] = FakeStack{true, true, Role::replica, "fra", 100, 1};
      world.traffic[g] = FakeTraffic{true, "fra", 60};
    }
    factory.wrap_group_traffic = [this](std::unique_ptr<TrafficDriver> d,
                                        const std::string& g) -> std::unique_ptr<TrafficDriver> {
      return std::make_unique<TimedTraffic>(std::move(d), g, *this);
    };
    factory.wrap_group_stack = [this](std::unique_ptr<StackDriver> d, const std::string& g,
                                      const std::string& stack) -> std::unique_ptr<StackDriver> {
      auto it = slow.find(g + "/" + stack);
      return std::make_unique<SlowStackDriver>(std::move(d), it == slow.end() ? every : it->second);
    };
  }
  ~Site() { std::filesystem::remove_all(dir); }

  PassReport pass(Reconciler& rec) {
    t0 = std::chrono::steady_clock::now();
    return rec.pass();
  }
  double at(const std::string& g) {
    std::lock_guard lock(mu);
    return switched_at.count(g) ? switched_at[g] : -1;
  }
  // StateStore ids of each group's entries, oldest first.
  std::map<std::string, std::vector<int64_t>> journal_ids() {
    std::map<std::string, std::vector<int64_t>> ids;
    auto h = journal->history(1000);
    REQUIRE(h.ok());
    for (const auto& e : *h) ids[e.group].push_back(e.id);
    for (auto& [g, v] : ids) std::sort(v.begin(), v.end());
    return ids;
  }
};

ReconcileSettings settings(int parallelism, std::chrono::milliseconds gate) {
  ReconcileSettings s;
  s.apply.action_timeout = std::chrono::milliseconds(3000);
  s.apply.wait_timeout = std::chrono::milliseconds(3000);
  s.apply.parallelism = parallelism;
  s.observe_gate = gate;
  return s;
}

using std::chrono::milliseconds;

}  // namespace

TEST_CASE("issue 11: a group whose observation is slow does not hold the other groups' switches") {
  Site site(4);
  site.source.set(fleet_config(4, "fra"));
  Reconciler rec(site.source, *site.journal, site.factory, real_clock(),
                 settings(8, milliseconds(100)));
  REQUIRE(rec.pass().converged());

  site.source.set(fleet_config(4, "ams"));  // the fra site is gone: every group to ams
  Reconciler again(site.source, *site.journal, site.factory, real_clock(),
                   settings(8, milliseconds(100)));
  // g0's standby answers its first observation after 1.2 s (a provider that
  // hangs until its timeout); the gate waits 100 ms for it.
  site.slow["g0/ams"].observe_delay = milliseconds(1200);
  site.slow["g0/ams"].slow_observes = 1;
  PassReport p = site.pass(again);
  CHECK(p.run.result == "applied");
  CHECK(p.converged());
  for (const char* g : {"g1", "g2", "g3"}) {
    INFO(g << " switched at t+" << site.at(g) << " s");
    CHECK(site.at(g) >= 0);
    CHECK(site.at(g) < 0.8);  // not after g0's observation
    CHECK(p.groups.at(g).outcome == GroupOutcome::switched);
  }
  INFO("g0 switched at t+" << site.at("g0") << " s");
  CHECK(site.at("g0") >= 1.2);
  CHECK(p.groups.at("g0").outcome == GroupOutcome::switched);
  // The journal says the same: the fast groups' switches were all recorded
  // before g0's first step.
  auto ids = site.journal_ids();
  for (const char* g : {"g1", "g2", "g3"}) CHECK(ids.at(g).back() < ids.at("g0").front());
}

namespace {
// The fenced old primary writes WAL right after replication into the
// standby stopped, once: the promotion's guard finds the plan stale and the
// group is planned again (reconcile.h).
class WritesAfterStop : public StackDriver {
 public:
  WritesAfterStop(std::unique_ptr<StackDriver> inner, FakeWorld& w, std::string group)
      : inner_(std::move(inner)), w_(w), group_(std::move(group)) {}
  StackObs observe() override { return inner_->observe(); }
  Status set_maintenance(bool on) override { return inner_->set_maintenance(on); }
  Status stop_replication() override {
    Status s = inner_->stop_replication();
    std::lock_guard lock(w_.mu.m);
    if (!fired_) w_.stacks[group_]["fra"].lsn += 50;
    fired_ = true;
    return s;
  }
  Status promote() override { return inner_->promote(); }
  Status start_replication(const StackSpec& src) override { return inner_->start_replication(src); }

 private:
  std::unique_ptr<StackDriver> inner_;
  FakeWorld& w_;
  std::string group_;
  bool fired_ = false;
};
}  // namespace

TEST_CASE(
    "issue 11: a promotion that takes long holds neither the other groups nor their re-plan") {
  Site site(3);
  site.source.set(fleet_config(3, "fra"));
  Reconciler rec(site.source, *site.journal, site.factory, real_clock(),
                 settings(8, milliseconds(2000)));
  REQUIRE(rec.pass().converged());

  // g0's promotion takes 1.2 s; g1's plan goes stale mid-switch and is planned again.
  site.slow["g0/ams"].promote_delay = milliseconds(1200);
  auto slow_wrap = site.factory.wrap_group_stack;
  site.factory.wrap_group_stack = [&](std::unique_ptr<StackDriver> d, const std::string& g,
                                      const std::string& stack) -> std::unique_ptr<StackDriver> {
    d = slow_wrap(std::move(d), g, stack);
    if (g == "g1" && stack == "ams")
      return std::make_unique<WritesAfterStop>(std::move(d), site.world, g);
    return d;
  };
  site.source.set(fleet_config(3, "ams"));
  Reconciler again(site.source, *site.journal, site.factory, real_clock(),
                   settings(8, milliseconds(2000)));
  PassReport p = site.pass(again);
  CHECK(p.run.result == "applied");
  CHECK(p.converged());
  for (const char* g : {"g1", "g2"}) {
    INFO(g << " switched at t+" << site.at(g) << " s");
    CHECK(site.at(g) >= 0);
    CHECK(site.at(g) < 0.8);
    CHECK(p.groups.at(g).outcome == GroupOutcome::switched);
  }
  CHECK(site.at("g0") >= 1.2);
  // g1 ran its first plan up to the stale promotion, then the second plan
  // (which resumes replication first) to the end.
  CHECK(std::count(site.world.calls.begin(), site.world.calls.end(),
                   "replication.start g1/ams from fra") == 1);
  CHECK(p.groups.at("g1").steps > p.groups.at("g2").steps);
}

TEST_CASE("issue 11: more groups than the degree all switch, at most that many at a time") {
  const int n = 7;
  Site site(n);
  std::atomic<int> running{0}, most{0};
  site.every.promote_delay = milliseconds(60);
  site.every.promotes_running = &running;
  site.every.max_promotes = &most;
  // One of them is slow to observe: it holds one worker, not the pass.
  site.source.set(fleet_config(n, "fra"));
  Reconciler rec(site.source, *site.journal, site.factory, real_clock(),
                 settings(2, milliseconds(100)));
  REQUIRE(rec.pass().converged());
  site.source.set(fleet_config(n, "ams"));
  PassReport p = site.pass(rec);
  CHECK(p.run.result == "applied");
  CHECK(p.converged());
  CHECK(most.load() == 2);  // in parallel, and never more than --parallel
  for (int i = 0; i < n; ++i) {
    std::string g = "g" + std::to_string(i);
    INFO(g);
    CHECK(site.world.traffic[g].target == "ams");
    CHECK(site.world.stacks[g]["ams"].role == Role::primary);
    CHECK(p.groups.at(g).outcome == GroupOutcome::switched);
    CHECK(p.groups.at(g).steps == p.groups.at(g).drift);
    CHECK(p.groups.at(g).seconds > 0.05);
  }
}

TEST_CASE("issue 11: the pass summary names each group's outcome and why") {
  Site site(4);
  site.source.set(fleet_config(4, "fra"));
  Reconciler rec(site.source, *site.journal, site.factory, real_clock(),
                 settings(8, milliseconds(2000)));
  REQUIRE(rec.pass().converged());

  // g0 switches; g1's promotion is refused for good; g2's old primary is
  // unreachable (its position unknown: blocked without allow_data_loss);
  // g3 stays converged on fra.
  std::string config = fleet_config(4, "ams");
  auto pos = config.find("  g3:\n    active: ams");
  config.replace(pos, std::string("  g3:\n    active: ams").size(), "  g3:\n    active: fra");
  site.source.set(config);
  site.world.stacks["g2"]["fra"].up = false;
  auto slow_wrap = site.factory.wrap_group_stack;
  site.factory.wrap_group_stack = [&](std::unique_ptr<StackDriver> d, const std::string& g,
                                      const std::string& stack) -> std::unique_ptr<StackDriver> {
    d = slow_wrap(std::move(d), g, stack);
    // ams's calls: 1 replication.stop, 2 database.promote (and every retry).
    if (g == "g1" && stack == "ams")
      return std::make_unique<FaultyStackDriver>(std::move(d), 2, false, true);
    return d;
  };
  ReconcileSettings s = settings(8, milliseconds(2000));
  s.apply.retries = 0;
  Reconciler again(site.source, *site.journal, site.factory, real_clock(), s);
  PassReport p = again.pass();
  CHECK(p.run.result == "failed");
  CHECK(p.exit_code == 1);
  const GroupStatus &g0 = p.groups.at("g0"), &g1 = p.groups.at("g1"), &g2 = p.groups.at("g2"),
                    &g3 = p.groups.at("g3");
  CHECK(g0.outcome == GroupOutcome::switched);
  CHECK(g0.steps == g0.drift);
  CHECK(g0.steps >= 5);
  CHECK(g0.seconds > 0);
  CHECK(g0.reason.empty());
  CHECK(g1.outcome == GroupOutcome::failed);
  // A failure that is not a refusal: the fail safe does not re-open (the
  // promotion may still be under way), and says so.
  CHECK(g1.reason.find("database.promote ams: injected failure; fra stays fenced, not re-opened") ==
        0);
  CHECK(g1.steps >= 2);  // the fence and the stop came before
  CHECK(g2.outcome == GroupOutcome::blocked);
  CHECK(g2.reason.find("replication.stop ams: the old primary fra is unreachable") == 0);
  CHECK(g2.reason.find("allow_data_loss") != std::string::npos);
  CHECK(g3.outcome == GroupOutcome::converged);
  CHECK(g3.steps == 0);
  std::string text = format_group_outcomes(p, true);
  INFO(text);
  CHECK(text.find("  g0: switched, " + std::to_string(g0.steps) + " steps in ") == 0);
  CHECK(text.find("\n  g1: failed, ") != std::string::npos);
  CHECK(text.find(" steps in ") != std::string::npos);
  CHECK(text.find(": database.promote ams: injected failure; fra stays fenced") !=
        std::string::npos);
  CHECK(text.find("\n  g2: blocked: replication.stop ams") != std::string::npos);
  CHECK(text.find("\n  g3: converged\n") != std::string::npos);
}
