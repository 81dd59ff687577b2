#include "core/auto_failover.h"

#include "core/outage.h"

namespace stackflip {

namespace {

std::string bytes(uint64_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

std::string site_of(const GroupSpec& g, const std::string& stack) {
  auto it = g.stacks.find(stack);
  return it == g.stacks.end() ? stack : it->second.site;
}

}  // namespace

std::string format_duration_ms(int64_t ms) {
  if (ms <= 0) return "0s";
  if (ms % 1000) return std::to_string(ms) + "ms";
  int64_t s = ms / 1000;
  std::string out;
  if (s >= 3600) out += std::to_string(s / 3600) + "h", s %= 3600;
  if (s >= 60) out += std::to_string(s / 60) + "m", s %= 60;
  if (s || out.empty()) out += std::to_string(s) + "s";
  return out;
}

AutoFailoverDecision decide_auto_failover(const GroupSpec& g, const GroupObs& obs,
                                          const AutoFailoverInput& in) {
  AutoFailoverDecision d;
  if (!g.auto_failover) return d;
  const AutoFailoverSpec& p = *g.auto_failover;
  auto active = obs.stacks.find(g.active);
  const bool failing = active != obs.stacks.end() && stack_failing(active->second);
  if (!failing) {
    d.why = "the active stack " + g.active + " is not failing";
    return d;
  }
  d.person_decides = true;
  if (active->second.reachable && active->second.health_never_passed) {
    d.why = "the health check of " + g.active + " has not passed once since this config was " +
            "adopted (" + active->second.health_error +
            "): a wrong URL is not an outage, a person decides";
    return d;
  }
  if (!in.coordinated && p.witnesses != 1) {
    d.why = "auto_failover without etcd needs `witnesses: 1` in group " + g.name +
            " (one instance would decide alone); a person decides";
    return d;
  }

  // 3. The witnesses.
  const std::string active_site = site_of(g, g.active);
  size_t agree = 0;
  bool outside = false;
  for (const WitnessVerdict& v : in.verdicts)
    if (v.failing && in.now_ms - v.since_ms >= p.after_ms) {
      ++agree;
      outside = outside || v.site != active_site;
    }
  const size_t majority = in.live_instances / 2 + 1;
  const size_t needed =
      in.coordinated ? std::max<size_t>(majority, p.witnesses) : static_cast<size_t>(p.witnesses);
  if (agree < needed || (in.coordinated && !outside)) {
    d.person_decides = false;  // not yet: the rule may still hold later
    d.why = std::to_string(agree) + " of " +
            std::to_string(in.coordinated ? in.live_instances : 1) + " witnesses saw " + g.active +
            " failing for " + format_duration_ms(p.after_ms) + " (" + std::to_string(needed) +
            " needed" + (in.coordinated ? ", one outside site " + active_site : std::string()) +
            ")";
    if (in.coordinated && agree >= needed && !outside)
      d.why = "every witness that saw " + g.active + " failing is in its site " + active_site +
              " (one outside it is needed)";
    return d;
  }
  // 4–5. Never in a switch, never twice within the cooldown.
  if (!in.settled) {
    d.why = "group " + g.name + " was not converged when " + g.active +
            " went down (a switch in progress or blocked): a person decides";
    return d;
  }
  if (in.last_auto_failover_ms && in.now_ms - *in.last_auto_failover_ms < p.cooldown_ms) {
    d.why = "an automatic failover of group " + g.name + " ran " +
            format_duration_ms(in.now_ms - *in.last_auto_failover_ms) +
            " ago, within its cooldown of " + format_duration_ms(p.cooldown_ms) +
            ": a person decides";
    return d;
  }
  // 6–7. Who takes over, and the policy on the data it may lose.
  const Takeover t = takeover_of(g, obs);
  if (t.candidate.empty()) {
    d.why = "no standby can take over" + t.others;
    return d;
  }
  if (!t.possible) {
    d.why = "the planner would not promote " + t.candidate + ": " + t.why_not;
    return d;
  }
  if (!t.lag) {
    d.why = "the last known lag of " + t.candidate + " is unknown (" +
            (t.written_known ? t.candidate + "'s position" : g.active + "'s last write position") +
            " was never observed): max_data_loss_bytes " + std::to_string(p.max_data_loss_bytes) +
            " cannot be verified, a person decides";
    return d;
  }
  if (*t.lag > p.max_data_loss_bytes) {
    d.why = "the last known lag of " + t.candidate + " is " + bytes(*t.lag) +
            ", above max_data_loss_bytes " + std::to_string(p.max_data_loss_bytes) +
            ": a person decides";
    return d;
  }

  d.go = true;
  d.person_decides = false;
  d.to = t.candidate;
  d.allow_data_loss = t.needs_data_loss;
  d.subject = "stackflip: fail over group " + g.name + " from " + g.active + " to " + t.candidate;
  std::string& e = d.evidence;
  e = "Automatic failover decided by " + in.decided_by + " at " + in.decided_at +
      ": the active stack " + g.active + " (site " + active_site + ") has failed for at least " +
      format_duration_ms(p.after_ms) + ".\n\nWitnesses (" + std::to_string(agree) + " of " +
      std::to_string(in.coordinated ? in.live_instances : 1) + " live instance" +
      ((in.coordinated ? in.live_instances : 1) == 1 ? "" : "s") + " agree):\n";
  for (const WitnessVerdict& v : in.verdicts)
    e += "  " + v.instance + " (site " + v.site + "): " +
         (v.failing ? "failing since " + v.since +
                          (in.now_ms - v.since_ms < p.after_ms
                               ? " (less than " + format_duration_ms(p.after_ms) + ", not counted)"
                               : "") +
                          (v.why.empty() ? "" : ": " + v.why)
                    : "healthy") +
         "\n";
  e += "\nPositions (last known): ";
  const StackObs& a = active->second;
  const auto written = a.database && a.database->role == Role::primary && a.database->lsn
                           ? format_lsn(*a.database->lsn)
                           : std::string("unknown");
  const auto& c = obs.stacks.at(t.candidate);
  const auto replayed =
      c.database && c.database->lsn ? format_lsn(*c.database->lsn) : std::string("unknown");
  e += g.active + " wrote up to " + written + ", " + t.candidate + " replayed up to " + replayed +
       "; lag " + bytes(*t.lag) + ".\n";
  e += "Policy: auto_failover after " + format_duration_ms(p.after_ms) + ", max_data_loss_bytes " +
       std::to_string(p.max_data_loss_bytes) + ", cooldown " + format_duration_ms(p.cooldown_ms) +
       (in.coordinated ? ", a majority of witnesses with one outside site " + active_site
                       : ", witnesses: 1 (this instance alone)") +
       ".\n";
  if (d.allow_data_loss)
    e += "allow_data_loss: true because " + g.active +
         " cannot be reached to verify its position; the lag last known (" + bytes(*t.lag) +
         ") is within the policy, writes after that observation are not counted.\n";
  return d;
}

}  // namespace stackflip
