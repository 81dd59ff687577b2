#include "core/observe.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "core/provider_stats.h"
#include "util/deadline.h"

namespace stackflip {

GroupDrivers::GroupDrivers(const DesiredState& desired, const GroupSpec& group,
                           DriverFactory& factory)
    : group_(group), concurrent_(factory.observe_concurrently()) {
  for (const auto& [name, spec] : group.stacks) {
    auto d = factory.stack_driver(desired, group, name);
    if (d.ok())
      stacks_[name] = std::move(*d);
    else
      stack_errors_[name] = d.error().message;
  }
  if (auto it = group.stacks.find(group.active); it != group.stacks.end())
    health_ = factory.health_probe(it->second);
  for (const TrafficSpec& spec : group.traffic) {
    auto t = factory.traffic_driver(desired, group, spec);
    if (t.ok())
      traffic_.push_back({&spec, std::move(*t), ""});
    else
      traffic_.push_back({&spec, nullptr, t.error().message});
  }
}

StackDriver* GroupDrivers::stack(const std::string& name) {
  auto it = stacks_.find(name);
  return it == stacks_.end() ? nullptr : it->second.get();
}

const std::string& GroupDrivers::stack_error(const std::string& name) const {
  static const std::string none;
  auto it = stack_errors_.find(name);
  return it == stack_errors_.end() ? none : it->second;
}

StackObs GroupDrivers::observe_stack(const std::string& name) {
  if (StackDriver* d = stack(name)) return d->observe();
  StackObs s;
  s.error = stack_error(name);
  return s;
}

StackObs GroupDrivers::observe_checked(const std::string& name,
                                       const std::chrono::steady_clock::time_point* until,
                                       const std::string& why) {
  StackObs s;
  if (until) {
    // On the thread that observes: a scope is not inherited by threads.
    DeadlineScope limit([t = *until] { return t; }, why);
    s = observe_stack(name);
  } else {
    s = observe_stack(name);
  }
  // The active stack's application, while its database answers (down, the
  // stack is failing anyway and the probe's time is saved).
  if (health_ && name == group_.active && s.reachable) {
    s.health_error = health_->check();
    if (s.health_error.empty()) health_passed_ = true;
    s.health_never_passed = !s.health_error.empty() && !health_passed_;
  }
  return s;
}

TrafficObs GroupDrivers::observe_one(Traffic& t, ObservePass pass) {
  TrafficObs o;
  if (t.driver) {
    o = t.driver->observe_in(pass);
  } else {
    o.reachable = false;
    o.error = t.error;
  }
  if (o.name.empty()) o.name = t.spec->name;
  return o;
}

TrafficObs GroupDrivers::observe_traffic(ObservePass pass) {
  std::vector<TrafficObs> parts;
  parts.reserve(traffic_.size());
  for (Traffic& t : traffic_) parts.push_back(observe_one(t, pass));
  return combine_traffic(std::move(parts));
}

Status GroupDrivers::switch_traffic(const std::string& stack) {
  // Every address that can be switched is, even when one before it fails:
  // each one left behind sends its users to where the switch came from.
  std::vector<Error> failed;
  for (Traffic& t : traffic_) {
    const std::string& name = t.spec->name;
    if (!t.driver) {
      failed.push_back(Err(name + ": " + t.error));
      continue;
    }
    TrafficObs now = observe_one(t, ObservePass{});  // fresh: a switch acts on it
    if (now.reachable && now.target == stack && now.ttl.value_or(t.spec->ttl) == t.spec->ttl)
      continue;
    Status st = t.driver->switch_to(stack);
    if (!st.ok()) {
      Error e = st.error();
      if (traffic_.size() > 1) e.message = name + ": " + e.message;
      failed.push_back(std::move(e));
    }
  }
  return combined(failed);
}

Status GroupDrivers::lower_traffic_ttl(std::string& detail) {
  std::vector<Error> failed;
  for (Traffic& t : traffic_) {
    const std::string& name = t.spec->name;
    if (!t.spec->switch_ttl) continue;
    if (!t.driver) {
      failed.push_back(Err(name + ": " + t.error));
      continue;
    }
    auto was = t.driver->lower_ttl(*t.spec->switch_ttl);
    if (!was.ok()) {
      Error e = was.error();
      e.message = name + ": " + e.message;
      failed.push_back(std::move(e));
      continue;
    }
    if (*was <= *t.spec->switch_ttl) continue;  // already as low
    // "previous TTL N s" is read back by traffic.wait from the journal.
    detail += (detail.empty() ? "" : "; ") + name + ": TTL " + std::to_string(*was) + " → " +
              std::to_string(*t.spec->switch_ttl) + " s (previous TTL " + std::to_string(*was) +
              " s)";
  }
  return combined(failed);
}

Status GroupDrivers::pause_traffic(bool on) {
  std::vector<Error> failed;
  for (Traffic& t : traffic_) {
    if (!t.driver || !t.driver->pools()) continue;
    Status st = on ? t.driver->pause() : t.driver->resume();
    if (!st.ok()) {
      Error e = st.error();
      if (traffic_.size() > 1) e.message = t.spec->name + ": " + e.message;
      failed.push_back(std::move(e));
    }
  }
  return combined(failed);
}

Status GroupDrivers::combined(const std::vector<Error>& failed) {
  if (failed.empty()) return Status::Ok();
  // Retried only if some failure may pass; permanent only if all are.
  Error e = failed.front();
  for (size_t i = 1; i < failed.size(); ++i) {
    e.message += "; " + failed[i].message;
    e.timeout = e.timeout || failed[i].timeout;
    e.permanent = e.permanent && failed[i].permanent;
  }
  return e;
}

GroupObs GroupDrivers::observe(ObservePass pass) { return observe_group(pass, nullptr, {}, ""); }

GroupObs GroupDrivers::observe_limited(const std::set<std::string>& limited,
                                       std::chrono::milliseconds limit, ObservePass pass) {
  return observe_group(
      pass, &limited, std::chrono::steady_clock::now() + limit,
      "it did not answer in time before: given " + std::to_string(limit.count()) + " ms this time");
}

GroupObs GroupDrivers::observe_group(ObservePass pass, const std::set<std::string>* limited,
                                     std::chrono::steady_clock::time_point until,
                                     const std::string& why) {
  auto one = [&](const std::string& name) {
    return observe_checked(name, limited && limited->count(name) ? &until : nullptr, why);
  };
  GroupObs g;
  if (!concurrent_) {
    for (const auto& [name, spec] : group_.stacks) g.stacks[name] = one(name);
    g.traffic = observe_traffic(pass);
    return g;
  }
  std::vector<std::pair<std::string, std::future<StackObs>>> pending;
  for (const auto& [name, spec] : group_.stacks)
    pending.emplace_back(name, std::async(std::launch::async, [&one, n = name] { return one(n); }));
  g.traffic = observe_traffic(pass);
  for (auto& [name, f] : pending) g.stacks[name] = f.get();
  return g;
}

Fleet make_fleet(const DesiredState& desired, DriverFactory& factory) {
  Fleet fleet;
  for (const auto& [name, group] : desired.groups)
    fleet[name] = std::make_unique<GroupDrivers>(desired, group, factory);
  return fleet;
}

void fill_last_known(ObservedState& now, const ObservedState& last) {
  for (auto& [gname, g] : now.groups) {
    auto lg = last.groups.find(gname);
    if (lg == last.groups.end()) continue;
    for (auto& [sname, s] : g.stacks) {
      auto ls = lg->second.stacks.find(sname);
      if (s.reachable || ls == lg->second.stacks.end()) continue;
      if (!s.maintenance) s.maintenance = ls->second.maintenance;
      if (!s.database) s.database = ls->second.database;
    }
    auto fill = [](TrafficObs& t, const TrafficObs& l) {
      if (t.reachable) return;
      if (!t.target) t.target = l.target;
      if (!t.ttl) t.ttl = l.ttl;
      if (t.content.empty()) t.content = l.content;
      if (t.records.empty()) t.records = l.records;
    };
    fill(g.traffic, lg->second.traffic);
    for (TrafficObs& part : g.traffic.parts)
      for (const TrafficObs& l : lg->second.traffic.parts)
        if (l.name == part.name) fill(part, l);
  }
}

void parallel_for(size_t n, int parallelism, const std::function<void(size_t)>& fn) {
  size_t workers = std::min<size_t>(n, static_cast<size_t>(std::max(1, parallelism)));
  if (workers <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w)
    threads.emplace_back([&] {
      for (size_t i = next++; i < n; i = next++) fn(i);
    });
  for (auto& t : threads) t.join();
}

ObservedState observe_all(const DesiredState& desired, Fleet& fleet, Clock& clock,
                          int parallelism) {
  const auto started = std::chrono::steady_clock::now();
  const ObservePass pass = ObservePass::begin();
  ObservedState obs;
  obs.observed_at = clock.rfc3339_now();
  std::vector<std::string> names;
  for (const auto& [name, g] : desired.groups) names.push_back(name);
  std::vector<GroupObs> results(names.size());
  parallel_for(names.size(), parallelism,
               [&](size_t i) { results[i] = fleet.at(names[i])->observe(pass); });
  for (size_t i = 0; i < names.size(); ++i) obs.groups[names[i]] = std::move(results[i]);
  record_observe_duration(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return obs;
}

ObservedState observe_with_last_known(const DesiredState& desired, Fleet& fleet, Clock& clock,
                                      int parallelism, LastKnown* memory, bool remember,
                                      std::string* memory_error) {
  ObservedState obs = observe_all(desired, fleet, clock, parallelism);
  if (!memory) return obs;
  auto failed = [&](const Status& s) {
    spdlog::error("state store: {}", s.message());
    if (memory_error) *memory_error = s.message();
  };
  if (auto last = memory->load(); !last.ok())
    failed(last.status());
  else if (*last)
    fill_last_known(obs, **last);
  if (remember)
    if (Status s = memory->remember(obs); !s.ok()) failed(s);
  return obs;
}

}  // namespace stackflip
