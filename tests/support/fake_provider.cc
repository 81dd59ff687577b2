#include "fake_provider.h"

namespace stackflip::testing {

namespace {

class FakeStackDriver : public StackDriver {
 public:
  FakeStackDriver(FakeWorld& w, std::string group, std::string stack)
      : w_(w), group_(std::move(group)), stack_(std::move(stack)) {}

  StackObs observe() override {
    std::lock_guard lock(w_.mu.m);
    return w_.observe(group_).stacks.at(stack_);
  }

  Status set_maintenance(bool on) override {
    std::lock_guard lock(w_.mu.m);
    record(on ? "maintenance.on" : "maintenance.off");
    if (!me().up) return down();
    me().maintenance = on;
    return {};
  }
  Status stop_replication() override {
    std::lock_guard lock(w_.mu.m);
    record("replication.stop");
    if (!me().up) return down();
    me().upstream.clear();
    return {};
  }
  Status promote() override {
    std::lock_guard lock(w_.mu.m);
    record("database.promote");
    if (!me().up) return down();
    if (me().role == Role::unknown) return Err(stack_ + ": database role unknown");
    if (me().role == Role::replica) ++me().timeline;
    me().role = Role::primary;
    me().upstream.clear();
    return {};
  }
  Status start_replication(const StackSpec& source) override {
    std::lock_guard lock(w_.mu.m);
    record("replication.start", source.name);
    if (!me().up) return down();
    FakeStack& src = w_.stacks.at(group_).at(source.name);
    if (!src.up || src.role != Role::primary) return Err(source.name + " is not an up primary");
    me().role = Role::replica;
    me().upstream = source.name;
    me().lsn = src.lsn;
    me().timeline = src.timeline;
    return {};
  }
  // A base backup of `source` (issue 17): resumable, so a stack down in an
  // interrupted bootstrap is taken up; a stack down otherwise is not.
  Status bootstrap_replica(const StackSpec& source) override {
    std::lock_guard lock(w_.mu.m);
    record("replication.bootstrap", source.name);
    if (!me().up && me().bootstrap_phase.empty()) return down();
    FakeStack& src = w_.stacks.at(group_).at(source.name);
    if (!src.up || src.role != Role::primary) return Err(source.name + " is not an up primary");
    FakeStack& m = me();
    m.up = true;
    m.role = Role::replica;
    m.upstream = source.name;
    m.lsn = src.lsn;
    m.timeline = src.timeline;
    m.cluster = src.cluster;
    m.diverged = false;
    m.bootstrap_phase.clear();
    return {};
  }

 private:
  FakeStack& me() { return w_.stacks.at(group_).at(stack_); }
  void record(const std::string& kind, const std::string& from = "") {
    w_.calls.push_back(kind + " " + group_ + "/" + stack_ + (from.empty() ? "" : " from " + from));
  }
  Status down() const { return Err(stack_ + ": connection refused"); }
  FakeWorld& w_;
  std::string group_, stack_;
};

class FakeTrafficDriver : public TrafficDriver {
 public:
  FakeTrafficDriver(FakeWorld& w, std::string group, int ttl)
      : w_(w), group_(std::move(group)), ttl_(ttl) {}
  TrafficObs observe() override {
    std::lock_guard lock(w_.mu.m);
    return w_.observe(group_).traffic;
  }
  Status switch_to(const std::string& stack) override {
    std::lock_guard lock(w_.mu.m);
    w_.calls.push_back("traffic.switch " + group_ + " to " + stack);
    FakeTraffic& t = w_.traffic.at(group_);
    if (!t.up) return Err("traffic provider: connection refused");
    t.target = stack;
    t.also.clear();
    t.absent = false;
    t.ttl = ttl_;
    return {};
  }
  Result<int> lower_ttl(int ttl) override {
    std::lock_guard lock(w_.mu.m);
    w_.calls.push_back("traffic.ttl " + group_ + " " + std::to_string(ttl));
    FakeTraffic& t = w_.traffic.at(group_);
    if (!t.up) return Err("traffic provider: connection refused");
    const int was = t.ttl;
    t.ttl = std::min(t.ttl, ttl);
    return was;
  }
  bool pools() const override {
    std::lock_guard lock(w_.mu.m);
    return w_.traffic.at(group_).paused.has_value();
  }
  Status pause() override { return set_paused(true); }
  Status resume() override { return set_paused(false); }

 private:
  Status set_paused(bool on) {
    std::lock_guard lock(w_.mu.m);
    w_.calls.push_back(std::string(on ? "traffic.pause " : "traffic.resume ") + group_);
    FakeTraffic& t = w_.traffic.at(group_);
    if (!t.paused) return Refused("this traffic provider cannot pause");
    if (!t.up) return Err("traffic provider: connection refused");
    t.paused = on;
    return {};
  }

  FakeWorld& w_;
  std::string group_;
  int ttl_;
};

}  // namespace

GroupObs FakeWorld::observe(const std::string& group) {
  std::lock_guard lock(mu.m);
  GroupObs g;
  auto& stacks_of = stacks.at(group);
  if (instant_replay) {
    for (auto& [name, s] : stacks_of) {
      if (!s.up || s.role != Role::replica || s.upstream.empty() || s.diverged) continue;
      auto up = stacks_of.find(s.upstream);
      if (up != stacks_of.end() && up->second.up && up->second.role == Role::primary &&
          up->second.cluster == s.cluster)
        s.lsn = up->second.lsn;
    }
  }
  for (const auto& [name, s] : stacks_of) {
    StackObs o;
    o.reachable = s.up;
    o.maintenance = s.maintenance;
    DatabaseObs db;
    db.role = s.role;
    if (!s.upstream.empty()) db.upstream = s.upstream;
    if (s.role == Role::replica) {
      auto up = stacks_of.find(s.upstream);
      db.streaming = up != stacks_of.end() && up->second.up && up->second.role == Role::primary &&
                     up->second.cluster == s.cluster && !s.diverged;
    }
    db.lsn = s.lsn;
    db.timeline = s.timeline;
    db.system_id = "sys" + std::to_string(s.cluster);
    if (s.up && s.diverged) db.cannot_follow = "diverged from its upstream (fake)";
    if (s.cluster != 1) db.databases = {{"other", 8192}};
    o.database = db;
    if (!s.bootstrap_phase.empty()) o.bootstrap_phase = s.bootstrap_phase;
    if (!s.up) o.error = "connection refused";
    g.stacks[name] = o;
  }
  const FakeTraffic& t = traffic.at(group);
  g.traffic.reachable = t.up;
  if (!t.target.empty()) {
    g.traffic.target = t.target;
    g.traffic.records.push_back(TrafficRecord{"address of " + t.target, t.target, false});
  }
  for (const auto& s : t.also) {
    g.traffic.records.push_back(TrafficRecord{"address of " + s, s, false});
    g.traffic.target.reset();
  }
  if (t.absent && t.up) {
    g.traffic.target.reset();
    g.traffic.records.clear();
    g.traffic.absent = "record";
  } else {
    g.traffic.ttl = t.ttl;
  }
  g.traffic.paused = t.paused;
  if (!t.up) g.traffic.error = "connection refused";
  return g;
}

ObservedState FakeWorld::observe_all() {
  std::lock_guard lock(mu.m);
  ObservedState o;
  o.observed_at = "2026-11-26T18:00:00Z";
  for (const auto& [name, unused] : stacks) o.groups[name] = observe(name);
  return o;
}

Result<std::unique_ptr<StackDriver>> FakeDriverFactory::stack_driver(const DesiredState&,
                                                                     const GroupSpec& g,
                                                                     const std::string& stack) {
  std::unique_ptr<StackDriver> d = std::make_unique<FakeStackDriver>(world_, g.name, stack);
  if (wrap_stack) d = wrap_stack(std::move(d), stack);
  if (wrap_group_stack) d = wrap_group_stack(std::move(d), g.name, stack);
  return d;
}

Result<std::unique_ptr<TrafficDriver>> FakeDriverFactory::traffic_driver(const DesiredState&,
                                                                         const GroupSpec& g,
                                                                         const TrafficSpec& t) {
  std::unique_ptr<TrafficDriver> d = std::make_unique<FakeTrafficDriver>(world_, g.name, t.ttl);
  if (wrap_traffic) d = wrap_traffic(std::move(d));
  if (wrap_group_traffic) d = wrap_group_traffic(std::move(d), g.name);
  return d;
}

}  // namespace stackflip::testing
