#include "gitops/switch_hold.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "util/json_input.h"

namespace stackflip {

namespace {
const char* kFields[] = {"commit", "active", "reopened", "reason"};
std::string* field(SwitchHold& h, int i) {
  std::string* f[] = {&h.commit, &h.active, &h.reopened, &h.reason};
  return f[i];
}
}  // namespace

std::string holds_to_json(const SwitchHolds& holds) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  for (const auto& [group, h] : holds) {
    w.Key(group.c_str());
    w.StartObject();
    SwitchHold copy = h;
    for (int i = 0; i < 4; ++i) w.Key(kFields[i]), w.String(field(copy, i)->c_str());
    w.EndObject();
  }
  w.EndObject();
  return buf.GetString();
}

SwitchHolds holds_from_json(const std::string& text) {
  SwitchHolds out;
  rapidjson::Document d;
  if (parse_json_input(text, d) || !d.IsObject()) return out;
  for (const auto& m : d.GetObject()) {
    if (!m.value.IsObject()) continue;
    SwitchHold h;
    bool ok = true;
    for (int i = 0; i < 4; ++i) {
      auto it = m.value.FindMember(kFields[i]);
      if (it == m.value.MemberEnd() || !it->value.IsString())
        ok = false;
      else
        *field(h, i) = it->value.GetString();
    }
    if (ok) out[m.name.GetString()] = h;
  }
  return out;
}

std::string hold_reason(const SwitchHold& h, const GroupSpec& g, const GroupObs& o,
                        const std::string& commit) {
  if (h.commit != commit || h.active != g.active || h.reopened == g.active) return "";
  auto p = o.stacks.find(h.reopened);
  if (p == o.stacks.end() || !p->second.reachable || p->second.maintenance != false) return "";
  if (p->second.database && p->second.database->role == Role::replica) return "";
  auto c = o.stacks.find(g.active);
  if (c == o.stacks.end()) return "";
  const StackObs& cand = c->second;
  if (cand.database ? cand.database->role == Role::primary
                    : cand.reachable && o.traffic.target == g.active)
    return "";
  return "held: " + h.reason + ". The loop does not try this switch again on commit " +
         h.commit.substr(0, 12) + " (it would fence " + h.reopened +
         " and fail again every pass): fix the cause, then push a new commit or run `stackflip "
         "apply` on the host";
}

bool apply_holds(Plan& plan, const DesiredState& desired, const ObservedState& observed,
                 const std::string& commit, SwitchHolds& holds) {
  bool changed = false;
  static const GroupObs kNothing{};
  for (auto it = holds.begin(); it != holds.end();) {
    auto g = desired.groups.find(it->first);
    std::string why;
    if (g != desired.groups.end()) {
      auto o = observed.groups.find(it->first);
      why = hold_reason(it->second, g->second, o == observed.groups.end() ? kNothing : o->second,
                        commit);
    }
    if (why.empty()) {
      it = holds.erase(it);
      changed = true;
      continue;
    }
    plan.blocked_groups.emplace(it->first, why);
    for (Action& a : plan.actions)
      if (a.group == it->first && !a.blocked) a.blocked = true, a.why_blocked = why;
    ++it;
  }
  return changed;
}

}  // namespace stackflip
