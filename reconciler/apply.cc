#include "apply.h"

#include <spdlog/spdlog.h>

#include "planner.h"

namespace stackflip {

namespace {
double seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

const StackObs* find_stack(const GroupObs& o, const std::string& s) {
  auto it = o.stacks.find(s);
  return it == o.stacks.end() ? nullptr : &it->second;
}
}  // namespace

const char* to_string(StepOutcome o) {
  switch (o) {
    case StepOutcome::started: return "started";
    case StepOutcome::ok: return "ok";
    case StepOutcome::failed: return "failed";
    case StepOutcome::timeout: return "timeout";
    case StepOutcome::blocked: return "blocked";
    case StepOutcome::stale: return "stale";
    case StepOutcome::interrupted: return "interrupted";
  }
  return "?";
}

int ApplyResult::exit_code() const {
  bool blocked = false;
  for (const auto& g : groups) {
    if (g.stopped == StepOutcome::failed || g.stopped == StepOutcome::timeout ||
        g.stopped == StepOutcome::stale || g.stopped == StepOutcome::interrupted)
      return 1;
    blocked |= g.stopped == StepOutcome::blocked;
  }
  return blocked ? 3 : 0;
}

bool effect_holds(const Action& a, const GroupObs& o) {
  if (a.kind == ActionKind::traffic_switch) return o.traffic.reachable && o.traffic.target == a.stack;
  const StackObs* s = find_stack(o, a.stack);
  if (!s || !s->reachable) return false;
  const auto& db = s->database;
  switch (a.kind) {
    case ActionKind::maintenance_on: return s->maintenance == true;
    case ActionKind::maintenance_off: return s->maintenance == false;
    // No database observation (e.g. Cloud 66 without database_dsn): the
    // driver's success is all there is to go on.
    case ActionKind::replication_stop: return !db || !db->upstream;
    case ActionKind::database_promote: return !db || db->role == Role::primary;
    case ActionKind::replication_start:
      return !db || (db->role == Role::replica && db->upstream == a.source);
    case ActionKind::replication_wait:
    case ActionKind::traffic_switch: break;
  }
  return false;
}

ApplyResult Applier::apply(const Plan& plan, const ApplyOptions& options) {
  Clock::Duration t0 = clock_.now();
  std::vector<std::string> groups;
  std::map<std::string, std::vector<Action>> by_group;
  for (const Action& a : plan.actions) {
    if (!by_group.count(a.group)) groups.push_back(a.group);
    by_group[a.group].push_back(a);
  }
  // A group blocked as a whole (one database server named by two stacks)
  // stops before its first step, converged or not: nothing is observed,
  // re-planned or run for it.
  for (const auto& [g, why] : plan.blocked_groups)
    if (!by_group.count(g)) groups.push_back(g), by_group[g];
  ApplyResult result;
  result.groups.resize(groups.size());
  parallel_for(groups.size(), options.parallelism, [&](size_t i) {
    auto g = desired_.groups.find(groups[i]);
    if (g == desired_.groups.end()) {
      result.groups[i].group = groups[i];
      result.groups[i].stopped = StepOutcome::stale;
      StepReport r;
      r.outcome = StepOutcome::stale;
      r.detail = "the plan names group " + groups[i] + ", which the config does not declare";
      result.groups[i].steps.push_back(r);
      return;
    }
    if (auto b = plan.blocked_groups.find(groups[i]); b != plan.blocked_groups.end()) {
      GroupApply& out = result.groups[i];
      out.group = groups[i];
      out.stopped = StepOutcome::blocked;
      StepReport r;
      const auto& actions = by_group[groups[i]];
      if (!actions.empty()) r.action = actions.front();
      r.action.group = groups[i];
      r.index = actions.empty() ? 0 : 1;
      r.count = actions.size();
      r.outcome = StepOutcome::blocked;
      r.detail = b->second;
      r.since_apply = seconds(clock_.now() - t0);
      if (options.progress && !actions.empty()) options.progress(r);
      out.steps.push_back(r);
      return;
    }
    result.groups[i] = apply_group(g->second, by_group[groups[i]], options, t0);
  });
  return result;
}

GroupApply Applier::apply_group(const GroupSpec& g, const std::vector<Action>& actions,
                                const ApplyOptions& o, Clock::Duration t0) {
  GroupApply out;
  out.group = g.name;
  GroupDrivers& drivers = *fleet_.at(g.name);
  std::vector<Action> done_unobservable;  // see still_next
  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    StepReport r;
    r.action = a;
    r.index = i + 1;
    r.count = actions.size();
    auto finish = [&](StepOutcome outcome, std::string detail, Clock::Duration started) {
      r.outcome = outcome;
      r.detail = std::move(detail);
      r.seconds = seconds(clock_.now() - started);
      r.since_apply = seconds(clock_.now() - t0);
      if (o.progress) o.progress(r);
      out.steps.push_back(r);
      if (outcome != StepOutcome::ok) out.stopped = outcome;
    };
    Clock::Duration started = clock_.now();
    if (a.blocked) {
      finish(StepOutcome::blocked, a.why_blocked, started);
      return out;
    }
    if (o.stop_requested && o.stop_requested->load()) {
      finish(StepOutcome::interrupted, "stop requested before this step started", started);
      return out;
    }
    // Guard: on fresh observation, this must still be the next step.
    GroupObs fresh = drivers.observe();
    std::vector<Action> fresh_plan;
    std::vector<Skipped> unused;
    plan_group(g, fresh, fresh_plan, unused);
    if (!still_next(a, fresh_plan, g, fresh, done_unobservable)) {
      std::string now = "nothing";
      for (const Action& f : fresh_plan) {
        now = std::string(to_string(f.kind)) + " " + f.stack + (f.blocked ? " (blocked: " + f.why_blocked + ")" : "");
        break;
      }
      finish(StepOutcome::stale,
             "state changed since the plan was made: a fresh plan's next step is " + now +
                 "; run plan again",
             started);
      return out;
    }
    int64_t entry = 0;
    if (log_) {
      auto id = log_->begin(a, o.origin);
      if (!id.ok()) {
        finish(StepOutcome::failed, "journal: " + id.error().message + " (action not started)", started);
        return out;
      }
      entry = *id;
    }
    r.outcome = StepOutcome::started;
    if (o.progress) o.progress(r);
    std::string detail;
    Status st = execute(g, drivers, a, o, detail);
    std::chrono::milliseconds pause(100);
    for (int attempt = 1; !st.ok() && attempt <= o.retries; ++attempt) {
      if (o.stop_requested && o.stop_requested->load()) break;
      clock_.sleep_for(pause);
      pause *= 2;
      GroupObs again = drivers.observe();
      std::vector<Action> again_plan;
      plan_group(g, again, again_plan, unused);
      if (!still_next(a, again_plan, g, again, done_unobservable)) {
        // The failed call may have taken effect after all.
        if (effect_holds(a, again)) st = Status::Ok();
        break;
      }
      spdlog::warn("{}: attempt {} failed ({}); trying again", std::string(to_string(a.kind)) + " " + a.stack,
                   attempt, st.message());
      Status next = execute(g, drivers, a, o, detail);
      if (!next.ok())
        next = Error{next.message() + " (attempt " + std::to_string(attempt + 1) + " of " +
                         std::to_string(o.retries + 1) + ")",
                     next.error().timeout};
      st = next;
    }
    StepOutcome outcome = st.ok() ? StepOutcome::ok
                                  : (st.error().timeout ? StepOutcome::timeout : StepOutcome::failed);
    int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - started).count();
    if (log_) {
      Status logged = log_->finish(entry, to_string(outcome), st.ok() ? "" : st.message(), ms);
      if (!logged.ok() && st.ok()) {
        finish(StepOutcome::failed, "journal: " + logged.message(), started);
        return out;
      }
    }
    if (st.ok() && a.kind != ActionKind::traffic_switch && fresh.stacks.count(a.stack) &&
        !fresh.stacks.at(a.stack).database && a.kind != ActionKind::maintenance_on &&
        a.kind != ActionKind::maintenance_off) {
      done_unobservable.push_back(a);
      detail = "effect not observable (no database observation); the provider reported success";
    }
    finish(outcome, st.ok() ? detail : st.message(), started);
    if (!st.ok()) return out;
  }
  return out;
}

Status Applier::execute(const GroupSpec& g, GroupDrivers& d, const Action& a,
                        const ApplyOptions& o, std::string& detail) {
  const std::string label = std::string(to_string(a.kind)) + " " + a.stack;
  if (a.kind == ActionKind::replication_wait) {
    // The source is fenced: its write position, read now, is final.
    StackObs src = d.observe_stack(a.source);
    if (!src.reachable || !src.database || !src.database->lsn)
      return Err(label + ": cannot read " + a.source + "'s write position" +
                 (src.error.empty() ? "" : " (" + src.error + ")"));
    const uint64_t target = *src.database->lsn;
    const uint64_t max_lag = g.replication.max_lag_bytes;
    Clock::Duration deadline = clock_.now() + o.wait_timeout;
    Backoff backoff;
    for (;;) {
      StackObs s = d.observe_stack(a.stack);
      uint64_t replayed = s.database && s.database->lsn ? *s.database->lsn : 0;
      if (s.reachable && replayed + max_lag >= target) {
        detail = a.stack + " replayed " + format_lsn(replayed) + ", " + a.source + " wrote " +
                 format_lsn(target);
        return {};
      }
      if (clock_.now() >= deadline)
        return Timeout(label + ": still " + std::to_string(target > replayed ? target - replayed : 0) +
                       " bytes behind " + a.source + " after " +
                       std::to_string(o.wait_timeout.count()) + " ms");
      clock_.sleep_for(backoff.next());
    }
  }

  Status st;
  if (a.kind == ActionKind::traffic_switch) {
    st = d.switch_traffic(a.stack);
  } else {
    StackDriver* s = d.stack(a.stack);
    if (!s) return Err(label + ": " + d.stack_error(a.stack));
    switch (a.kind) {
      case ActionKind::maintenance_on: st = s->set_maintenance(true); break;
      case ActionKind::maintenance_off: st = s->set_maintenance(false); break;
      case ActionKind::replication_stop: st = s->stop_replication(); break;
      case ActionKind::database_promote: st = s->promote(); break;
      case ActionKind::replication_start: st = s->start_replication(g.stacks.at(a.source)); break;
      default: break;
    }
  }
  if (!st.ok()) return Error{label + ": " + st.message(), st.error().timeout};

  // Verify: re-observe until the effect is seen.
  Clock::Duration deadline = clock_.now() + o.action_timeout;
  Backoff backoff;
  for (;;) {
    GroupObs now;
    if (a.kind == ActionKind::traffic_switch) now.traffic = d.observe_traffic();
    else now.stacks[a.stack] = d.observe_stack(a.stack);
    if (effect_holds(a, now)) return {};
    if (clock_.now() >= deadline)
      return Timeout(label + ": the effect was not observed within " +
                     std::to_string(o.action_timeout.count()) + " ms");
    clock_.sleep_for(backoff.next());
  }
}

}  // namespace stackflip
