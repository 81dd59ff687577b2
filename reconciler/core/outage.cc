#include "core/outage.h"

#include "core/planner.h"

namespace stackflip {

namespace {

std::string bytes(uint64_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

// The promotion of `candidate` the planner would emit if `active:` named it.
std::optional<Action> promotion_if_active(const GroupSpec& g, const GroupObs& obs,
                                          const std::string& candidate, bool allow_data_loss) {
  DesiredState d;
  GroupSpec flipped = g;
  flipped.active = candidate;
  flipped.allow_data_loss = allow_data_loss;
  d.groups[g.name] = flipped;
  ObservedState o;
  o.groups[g.name] = obs;
  for (const Action& a : make_plan(d, o).actions)
    if (a.kind == ActionKind::database_promote && a.stack == candidate) return a;
  return std::nullopt;
}

std::string where(const GroupSpec& g) {
  if (g.mark.file.empty()) return "";
  return " (" + g.mark.file + (g.mark.line ? ":" + std::to_string(g.mark.line) : "") + ")";
}

}  // namespace

Takeover takeover_of(const GroupSpec& g, const GroupObs& obs) {
  Takeover t;
  auto active = obs.stacks.find(g.active);
  std::optional<uint64_t> best;
  for (const auto& [name, s] : obs.stacks) {
    if (name == g.active) continue;
    if (!s.reachable || !s.database || s.database->role != Role::replica) {
      std::string state = !s.reachable  ? "unreachable"
                          : !s.database ? "without an observed database"
                                        : "not a replica";
      t.others += "; " + name + " is " + state;
      continue;
    }
    const auto lsn = s.database->lsn;
    if (t.candidate.empty() || (lsn && (!best || *lsn > *best))) {
      t.candidate = name;
      best = lsn;
    }
  }
  if (t.candidate.empty()) return t;
  const StackObs* a = active == obs.stacks.end() ? nullptr : &active->second;
  const std::optional<uint64_t> written =
      a && a->database && a->database->role == Role::primary ? a->database->lsn : std::nullopt;
  t.written_known = written.has_value();
  if (written && best) t.lag = *written > *best ? *written - *best : 0;

  auto plain = promotion_if_active(g, obs, t.candidate, false);
  if (!plain || !plain->blocked) {
    t.possible = true;
    if (plain) t.reason = plain->reason;
    return t;
  }
  auto forced = promotion_if_active(g, obs, t.candidate, true);
  if (!forced || forced->blocked) {
    t.why_not = plain->why_blocked;
    return t;
  }
  t.possible = t.needs_data_loss = true;
  t.reason = forced->reason;
  t.why_not = plain->why_blocked;  // why it needs allow_data_loss
  return t;
}

std::optional<OutageAdvice> advise_outage(const GroupSpec& g, const GroupObs& obs,
                                          const std::string& down_since,
                                          const std::string& seen_by) {
  auto active = obs.stacks.find(g.active);
  if (active == obs.stacks.end() || !stack_failing(active->second)) return std::nullopt;
  const StackObs& a = active->second;
  OutageAdvice out;
  if (!a.reachable)
    out.fact = "active stack " + g.active + " of group " + g.name + " down since " + down_since +
               " (seen by " + seen_by + "): " + g.active + " is unreachable" +
               (a.error.empty() ? "" : " (" + a.error + ")");
  else
    out.fact = "active stack " + g.active + " of group " + g.name + " failing since " + down_since +
               " (seen by " + seen_by + "): its health check fails (" + a.health_error +
               "); its database answers" +
               (a.health_never_passed
                    ? " (the check has not passed since this config was adopted: is its URL right?)"
                    : "");

  const Takeover t = takeover_of(g, obs);
  const std::string& candidate = t.candidate;
  if (candidate.empty()) {
    out.fact += "; no standby can take over" + t.others;
    return out;
  }
  if (t.lag) {
    out.fact += "; last known lag " + bytes(*t.lag) + ": standby " + candidate +
                (*t.lag == 0 ? " caught up" : " " + bytes(*t.lag) + " behind");
  } else {
    out.fact += "; last known lag unknown (" +
                std::string(t.written_known ? candidate + "'s position"
                                            : g.active + "'s last write position") +
                " was never observed)";
  }

  const std::string change = "commit `active: " + candidate + "`";
  if (t.possible && !t.needs_data_loss) {
    out.decision = "to fail over, " + change + " for group " + g.name + where(g) +
                   (t.reason.empty() ? "" : ": " + t.reason);
    return out;
  }
  if (!t.possible) {
    out.decision = "no failover to " + candidate + " is possible now: " + t.why_not;
    return out;
  }
  // The planner's reason reads "... `allow_data_loss: true` accepts losing
  // LOSS (BLOCK)"; BLOCK (why the guard holds) is in the fact already.
  const std::string accepts = "`allow_data_loss: true` accepts losing ";
  const size_t at = t.reason.find(accepts);
  std::string loss = at == std::string::npos ? std::string("the writes not replayed")
                                             : t.reason.substr(at + accepts.size());
  const std::string block = t.why_not.substr(0, t.why_not.find("; a commit with"));
  const std::string tail = " (" + block + ")";
  if (loss.size() > tail.size() && loss.compare(loss.size() - tail.size(), tail.size(), tail) == 0)
    loss.resize(loss.size() - tail.size());
  out.decision = "to fail over, " + change + " with `allow_data_loss: true` for group " + g.name +
                 where(g) + ": it accepts losing " + loss;
  return out;
}

}  // namespace stackflip
