#include "core/model.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "core/plan.h"

namespace stackflip {

const char* to_string(Role r) {
  switch (r) {
    case Role::primary:
      return "primary";
    case Role::replica:
      return "replica";
    case Role::unknown:
      return "unknown";
  }
  return "unknown";
}

std::optional<Role> parse_role(const std::string& s) {
  if (s == "primary") return Role::primary;
  if (s == "replica") return Role::replica;
  if (s == "unknown") return Role::unknown;
  return std::nullopt;
}

std::string format_lsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%" PRIX32 "/%" PRIX32, static_cast<uint32_t>(lsn >> 32),
                static_cast<uint32_t>(lsn));
  return buf;
}

std::optional<uint64_t> parse_lsn(const std::string& s) {
  auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size()) return std::nullopt;
  if (slash > 8 || s.size() - slash - 1 > 8) return std::nullopt;
  uint64_t hi = 0, lo = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == slash) continue;
    char c = s[i];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return std::nullopt;
    uint64_t& part = i < slash ? hi : lo;
    part = part * 16 + static_cast<uint64_t>(d);
  }
  return (hi << 32) | lo;
}

TrafficObs combine_traffic(std::vector<TrafficObs> parts) {
  TrafficObs t;
  if (parts.empty()) {
    t.reachable = false;
    t.error = "the group has no traffic address";
    return t;
  }
  t.target = parts[0].target;
  t.ttl = parts[0].ttl;
  // Absent as a whole only when every address is: one that exists says
  // where traffic goes.
  bool all_absent = true;
  for (const TrafficObs& p : parts) {
    all_absent = all_absent && !p.absent.empty();
    if (p.absent == "zone" || t.absent.empty()) t.absent = p.absent;
  }
  if (!all_absent) t.absent.clear();
  for (const TrafficObs& p : parts) {
    if (p.target != parts[0].target) t.target.reset();
    if (!p.reachable) {
      t.reachable = false;
      t.error += (t.error.empty() ? "" : "; ") + (p.name.empty() ? "" : p.name + ": ") + p.error;
    }
    t.config_error = t.config_error || p.config_error;
    if (p.paused) t.paused = t.paused.value_or(false) || *p.paused;
    if (!p.blocker.empty())
      t.blocker +=
          (t.blocker.empty() ? "" : "; ") + (p.name.empty() ? "" : p.name + ": ") + p.blocker;
    if (!p.content.empty()) t.content += (t.content.empty() ? "" : ", ") + p.content;
    t.records.insert(t.records.end(), p.records.begin(), p.records.end());
  }
  t.parts = std::move(parts);
  return t;
}

std::vector<std::string> traffic_stacks(const TrafficObs& t) {
  std::vector<std::string> out;
  if (t.target) out.push_back(*t.target);
  for (const TrafficRecord& r : t.records)
    if (r.stack && !r.disabled) out.push_back(*r.stack);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {
struct KindName {
  ActionKind kind;
  const char* name;
};
constexpr KindName kKindNames[] = {
    {ActionKind::maintenance_on, "maintenance.on"},
    {ActionKind::replication_wait, "replication.wait"},
    {ActionKind::replication_stop, "replication.stop"},
    {ActionKind::database_promote, "database.promote"},
    {ActionKind::maintenance_off, "maintenance.off"},
    {ActionKind::traffic_switch, "traffic.switch"},
    {ActionKind::replication_start, "replication.start"},
    {ActionKind::traffic_ttl, "traffic.ttl"},
    {ActionKind::traffic_wait, "traffic.wait"},
    {ActionKind::traffic_pause, "traffic.pause"},
    {ActionKind::traffic_resume, "traffic.resume"},
    {ActionKind::replication_bootstrap, "replication.bootstrap"},
};
}  // namespace

const char* to_string(ActionKind k) {
  for (const auto& kn : kKindNames)
    if (kn.kind == k) return kn.name;
  return "?";
}

std::optional<ActionKind> parse_action_kind(const std::string& s) {
  for (const auto& kn : kKindNames)
    if (s == kn.name) return kn.kind;
  return std::nullopt;
}

std::string config_error_of(const GroupObs& g) {
  std::string out;
  auto add = [&](const std::string& what, const std::string& error) {
    out += (out.empty() ? "" : "; ") + what + ": " + error;
  };
  for (const auto& [name, s] : g.stacks)
    if (s.config_error) add("stack " + name, s.error);
  if (g.traffic.parts.empty()) {
    if (g.traffic.config_error) add("traffic", g.traffic.error);
  } else {
    for (const TrafficObs& p : g.traffic.parts)
      if (p.config_error) add(p.name.empty() ? "traffic" : "traffic " + p.name, p.error);
  }
  return out;
}

}  // namespace stackflip
