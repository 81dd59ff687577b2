// builders.h — small constructors for desired and observed state in tests,
// so planner and apply tests do not depend on the YAML loader.
#pragma once

#include <string>
#include <vector>

#include "core/model.h"
#include "core/plan.h"

namespace stackflip::testing {

// A group "shop" of stacks primary and standby (or `names`), replication
// from `active` to the others, DNS traffic with TTL 60.
inline GroupSpec make_group(const std::string& active, bool allow_data_loss = false,
                            std::vector<std::string> names = {"primary", "standby"},
                            const std::string& group = "shop") {
  GroupSpec g;
  g.name = group;
  g.active = active;
  int i = 0;
  for (const auto& n : names) {
    StackSpec s;
    s.name = n;
    s.provider = "db";
    s.address = "127.0.0." + std::to_string(++i);
    s.addresses = {s.address};
    s.settings["dsn"] = "host=" + s.address + " port=5432";
    g.stacks[n] = s;
  }
  g.replication.from = active;
  for (const auto& n : names)
    if (n != active) g.replication.to.push_back(n);
  g.allow_data_loss = allow_data_loss;
  TrafficSpec t;
  t.provider = "dns";
  t.settings = {{"zone", "example.test."}, {"record", "shop.example.test."}, {"record_type", "A"}};
  t.ttl = 60;
  t.name = "shop.example.test. A";
  g.traffic = {t};
  return g;
}

inline DesiredState make_desired(std::vector<GroupSpec> groups) {
  DesiredState d;
  d.source = "test.yaml";
  d.digest = "test";
  d.providers["db"] = ProviderConfig{"db", "postgres", {}, {}, {}};
  d.providers["dns"] = ProviderConfig{"dns", "powerdns", {}, {}, {}};
  for (auto& g : groups) d.groups[g.name] = g;
  return d;
}

inline StackObs primary(bool maintenance, uint64_t lsn = 100) {
  return StackObs{true, maintenance,
                  DatabaseObs{Role::primary, std::nullopt, lsn, 1, std::nullopt, {}, {}}, ""};
}
inline StackObs replica(bool maintenance, std::optional<std::string> upstream, uint64_t lsn = 100) {
  return StackObs{true, maintenance,
                  DatabaseObs{Role::replica, upstream, lsn, 1, upstream.has_value(), {}, {}}, ""};
}
inline StackObs unreachable(StackObs last_known) {
  last_known.reachable = false;
  last_known.error = "connection refused";
  return last_known;
}
inline TrafficObs traffic_at(std::optional<std::string> target, int ttl = 60) {
  TrafficObs t;
  t.target = std::move(target);
  t.ttl = ttl;
  return t;
}

// "kind stack" (with " from source" when set) for each action, for compact
// assertions on order.
inline std::vector<std::string> steps(const std::vector<Action>& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions)
    out.push_back(std::string(to_string(a.kind)) + " " + a.stack +
                  (a.source.empty() ? "" : " from " + a.source) + (a.blocked ? " BLOCKED" : ""));
  return out;
}

}  // namespace stackflip::testing
