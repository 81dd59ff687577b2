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

std::optional<OutageAdvice> advise_outage(const GroupSpec& g, const GroupObs& obs,
                                          const std::string& down_since,
                                          const std::string& seen_by) {
  auto active = obs.stacks.find(g.active);
  if (active == obs.stacks.end() || active->second.reachable || active->second.config_error)
    return std::nullopt;
  const StackObs& a = active->second;
  OutageAdvice out;
  out.fact = "active stack " + g.active + " of group " + g.name + " down since " + down_since +
             " (seen by " + seen_by + "): " + g.active + " is unreachable" +
             (a.error.empty() ? "" : " (" + a.error + ")");

  // The standby furthest ahead among the reachable replicas.
  std::string candidate, others;
  std::optional<uint64_t> best;
  for (const auto& [name, s] : obs.stacks) {
    if (name == g.active) continue;
    if (!s.reachable || !s.database || s.database->role != Role::replica) {
      std::string state = !s.reachable  ? "unreachable"
                          : !s.database ? "without an observed database"
                                        : "not a replica";
      others += "; " + name + " is " + state;
      continue;
    }
    const auto lsn = s.database->lsn;
    if (candidate.empty() || (lsn && (!best || *lsn > *best))) {
      candidate = name;
      best = lsn;
    }
  }
  const std::optional<uint64_t> written =
      a.database && a.database->role == Role::primary ? a.database->lsn : std::nullopt;
  if (candidate.empty()) {
    out.fact += "; no standby can take over" + others;
    return out;
  }
  if (written && best) {
    const uint64_t lag = *written > *best ? *written - *best : 0;
    out.fact += "; last known lag " + bytes(lag) + ": standby " + candidate +
                (lag == 0 ? " caught up" : " " + bytes(lag) + " behind");
  } else {
    out.fact +=
        "; last known lag unknown (" +
        std::string(written ? candidate + "'s position" : g.active + "'s last write position") +
        " was never observed)";
  }

  const std::string change = "commit `active: " + candidate + "`";
  auto plain = promotion_if_active(g, obs, candidate, false);
  if (!plain) {
    out.decision = "to fail over, " + change + " for group " + g.name + where(g);
    return out;
  }
  if (!plain->blocked) {
    out.decision =
        "to fail over, " + change + " for group " + g.name + where(g) + ": " + plain->reason;
    return out;
  }
  auto forced = promotion_if_active(g, obs, candidate, true);
  if (!forced || forced->blocked) {
    out.decision = "no failover to " + candidate + " is possible now: " + plain->why_blocked;
    return out;
  }
  // The planner's reason reads "... `allow_data_loss: true` accepts losing
  // LOSS (BLOCK)"; BLOCK (why the guard holds) is in the fact already.
  const std::string accepts = "`allow_data_loss: true` accepts losing ";
  const size_t at = forced->reason.find(accepts);
  std::string loss = at == std::string::npos ? std::string("the writes not replayed")
                                             : forced->reason.substr(at + accepts.size());
  const std::string block =
      plain->why_blocked.substr(0, plain->why_blocked.find("; a commit with"));
  const std::string tail = " (" + block + ")";
  if (loss.size() > tail.size() && loss.compare(loss.size() - tail.size(), tail.size(), tail) == 0)
    loss.resize(loss.size() - tail.size());
  out.decision = "to fail over, " + change + " with `allow_data_loss: true` for group " + g.name +
                 where(g) + ": it accepts losing " + loss;
  return out;
}

}  // namespace stackflip
