#include "core/apply.h"

#include <spdlog/spdlog.h>

#include <cstdio>

#include "core/planner.h"
#include "util/backoff.h"
#include "util/deadline.h"

namespace stackflip {

namespace {
double seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }
std::string fixed(double v, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

const StackObs* find_stack(const GroupObs& o, const std::string& s) {
  auto it = o.stacks.find(s);
  return it == o.stacks.end() ? nullptr : &it->second;
}

// May accept writes as observed: reachable, maintenance off, not a replica
// (a primary, or a stack whose database is not observed, e.g. Cloud 66).
bool serving(const GroupObs& o, const std::string& s) {
  const StackObs* st = find_stack(o, s);
  return st && st->reachable && st->maintenance != true &&
         (!st->database || st->database->role != Role::replica);
}
}  // namespace

const char* to_string(StepOutcome o) {
  switch (o) {
    case StepOutcome::started:
      return "started";
    case StepOutcome::ok:
      return "ok";
    case StepOutcome::failed:
      return "failed";
    case StepOutcome::timeout:
      return "timeout";
    case StepOutcome::blocked:
      return "blocked";
    case StepOutcome::stale:
      return "stale";
    case StepOutcome::interrupted:
      return "interrupted";
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

namespace {
// traffic.pause/resume: every address that can hold its clients does (or
// does not), and one at least can.
bool paused_is(const TrafficObs& t, bool on) {
  bool any = false;
  auto one = [&](const TrafficObs& p) {
    if (!p.paused) return true;
    any = true;
    return *p.paused == on;
  };
  if (t.parts.empty()) return t.reachable && one(t) && any;
  for (const TrafficObs& p : t.parts)
    if (!one(p)) return false;
  return t.reachable && any;
}
}  // namespace

bool effect_holds(const GroupSpec& g, const Action& a, const GroupObs& o) {
  if (a.kind != ActionKind::traffic_ttl) return effect_holds(a, o);
  if (!o.traffic.reachable) return false;
  for (size_t i = 0; i < g.traffic.size(); ++i) {
    const TrafficObs& p = o.traffic.parts.empty()
                              ? o.traffic
                              : o.traffic.parts[std::min(i, o.traffic.parts.size() - 1)];
    if (g.traffic[i].switch_ttl && p.ttl && *p.ttl > *g.traffic[i].switch_ttl) return false;
  }
  return true;
}

bool effect_holds(const Action& a, const GroupObs& o) {
  switch (a.kind) {
    case ActionKind::traffic_switch:
      return o.traffic.reachable && o.traffic.target == a.stack;
    case ActionKind::traffic_pause:
    case ActionKind::traffic_resume:
      return paused_is(o.traffic, a.kind == ActionKind::traffic_pause);
    case ActionKind::traffic_ttl:   // needs the spec: effect_holds(g, a, o)
    case ActionKind::traffic_wait:  // time, not state
      return false;
    default:
      break;
  }
  const StackObs* s = find_stack(o, a.stack);
  if (!s || !s->reachable) return false;
  const auto& db = s->database;
  switch (a.kind) {
    case ActionKind::maintenance_on:
      return s->maintenance == true;
    case ActionKind::maintenance_off:
      return s->maintenance == false;
    // No database observation (e.g. Cloud 66 without database_dsn): the
    // driver's success is all there is to go on.
    case ActionKind::replication_stop:
      return !db || !db->upstream;
    case ActionKind::database_promote:
      return !db || db->role == Role::primary;
    case ActionKind::replication_start:
      return !db || (db->role == Role::replica && db->upstream == a.source);
    case ActionKind::replication_bootstrap:
      return !s->bootstrap_phase && db && db->role == Role::replica && db->upstream == a.source &&
             db->streaming == true;
    default:
      break;
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

namespace {

// Brings the silent stacks (apply.h) up to date with `o`: a stack that timed
// out is silent, one that answered or refused is not.
void note_silent(const GroupObs& o, std::set<std::string>& silent) {
  for (const auto& [name, s] : o.stacks) {
    if (!s.reachable && s.timed_out)
      silent.insert(name);
    else
      silent.erase(name);
  }
}

// The guard (apply.h, step 2), the one sequence used before a step and
// before each retry: observed afresh and re-planned, `a` must still be the
// next step. The stacks of `silent` are given `silent_limit` to answer, and
// `silent` is updated. `fresh` receives the observation; `next` (when
// given) the fresh plan's first step, for the report.
bool guard_holds(const GroupSpec& g, GroupDrivers& drivers, const Action& a,
                 const std::vector<Action>& done_unobservable, std::set<std::string>& silent,
                 std::chrono::milliseconds silent_limit, GroupObs& fresh,
                 std::string* next = nullptr) {
  fresh = silent.empty() ? drivers.observe() : drivers.observe_limited(silent, silent_limit);
  note_silent(fresh, silent);
  std::vector<Action> fresh_plan;
  std::vector<Skipped> unused;
  plan_group(g, fresh, fresh_plan, unused);
  if (still_next(a, fresh_plan, g, fresh, done_unobservable)) return true;
  if (next) {
    *next = "nothing";
    if (!fresh_plan.empty()) {
      const Action& f = fresh_plan.front();
      *next = std::string(to_string(f.kind)) + " " + f.stack +
              (f.blocked ? " (blocked: " + f.why_blocked + ")" : "");
    }
  }
  return false;
}

StepOutcome outcome_of(const Status& st) {
  if (st.ok()) return StepOutcome::ok;
  if (st.error().deferred) return StepOutcome::interrupted;
  return st.error().timeout ? StepOutcome::timeout : StepOutcome::failed;
}

// Whether `a`'s effect cannot be observed, so that only the provider's
// success says it happened (see still_next): a database step on a stack
// whose database is not observed.
bool unobservable(const Action& a, const GroupObs& fresh) {
  if (a.kind == ActionKind::traffic_wait) return true;  // time passed: nothing to see
  if (a.kind == ActionKind::traffic_switch || a.kind == ActionKind::maintenance_on ||
      a.kind == ActionKind::maintenance_off || a.kind == ActionKind::traffic_ttl ||
      a.kind == ActionKind::traffic_pause || a.kind == ActionKind::traffic_resume ||
      a.kind == ActionKind::replication_bootstrap)  // verified on the database it makes
    return false;
  auto it = fresh.stacks.find(a.stack);
  return it != fresh.stacks.end() && !it->second.database;
}

}  // namespace

void Applier::SwitchSoFar::note(const GroupSpec& g, const Action& a, const GroupObs& before) {
  switch (a.kind) {
    case ActionKind::maintenance_on:
      if (!fenced && a.stack != g.active && serving(before, a.stack)) fenced = a.stack;
      break;
    case ActionKind::database_promote:
      promoted = true;
      break;
    case ActionKind::replication_stop:
      stopped_into_active |= a.stack == g.active;
      break;
    case ActionKind::replication_start:
      if (a.stack == g.active) stopped_into_active = false;
      break;
    default:
      break;
  }
}

Status Applier::run_with_retries(const GroupSpec& g, GroupDrivers& drivers, const Action& a,
                                 const ApplyOptions& o,
                                 const std::vector<Action>& done_unobservable,
                                 std::set<std::string>& silent, std::string& detail) {
  Status st = execute(g, drivers, a, o, detail);
  std::chrono::milliseconds pause(100);
  for (int attempt = 1;
       !st.ok() && !st.error().permanent && !st.error().deferred && attempt <= o.retries;
       ++attempt) {
    if (o.stop_requested && o.stop_requested->load()) break;
    clock_.sleep_for(pause);
    pause *= 2;
    GroupObs again;
    if (!guard_holds(g, drivers, a, done_unobservable, silent, o.silent_limit, again)) {
      // The failed call may have taken effect after all.
      if (effect_holds(g, a, again)) st = Status::Ok();
      break;
    }
    spdlog::warn("{}: attempt {} failed ({}); trying again",
                 std::string(to_string(a.kind)) + " " + a.stack, attempt, st.message());
    Status next = execute(g, drivers, a, o, detail);
    if (!next.ok()) {
      Error e = next.error();
      e.message +=
          " (attempt " + std::to_string(attempt + 1) + " of " + std::to_string(o.retries + 1) + ")";
      next = e;
    }
    st = next;
  }
  if (!st.ok() && st.error().permanent) {
    Error e = st.error();
    e.message += " (permanent: not retried)";
    st = e;
  }
  return st;
}

GroupApply Applier::apply_group(const GroupSpec& g, const std::vector<Action>& actions,
                                const ApplyOptions& o, Clock::Duration t0) {
  bool paused = false;
  GroupApply out = apply_steps(g, actions, o, t0, paused);
  if (!paused || out.stopped == StepOutcome::ok || out.steps.empty()) return out;
  // This apply paused the pooler's clients and stops before the resume:
  // let them go now, whatever stopped it. Held, they would wait for a pass
  // that may not come (a one-shot apply, a group the loop holds); let go,
  // they reach the primary that serves (re-opened by the fail safe), or get
  // an error they can see.
  GroupDrivers& drivers = *fleet_.at(g.name);
  Action resume;
  resume.group = g.name;
  resume.kind = ActionKind::traffic_resume;
  resume.stack = g.active;
  resume.reason = "the switch stopped after it paused the traffic pooler: let its clients go";
  resume.guard = "none needed: clients are better served an answer (or an error) than held";
  const StepReport last = out.steps.back();
  Status st = compensate(g, drivers, resume, o, t0, last.index, last.count, out,
                         last.detail + "; the pooler's clients were let go (traffic.resume)");
  if (!st.ok()) {
    spdlog::error("group {}: the pooler's clients could not be let go: {}", g.name, st.message());
    // The group's last step carries the story of why it stopped.
    out.steps.back().detail =
        last.detail + "; letting the pooler's clients go failed too: " + st.message();
  }
  return out;
}

GroupApply Applier::apply_steps(const GroupSpec& g, const std::vector<Action>& actions,
                                const ApplyOptions& o, Clock::Duration t0, bool& paused) {
  GroupApply out;
  out.group = g.name;
  GroupDrivers& drivers = *fleet_.at(g.name);
  std::vector<Action> done_unobservable;  // see still_next
  SwitchSoFar sofar;                      // for the fail safe
  std::set<std::string> silent;           // apply.h, "Silent stacks"
  if (o.planned_from)
    if (auto p = o.planned_from->groups.find(g.name); p != o.planned_from->groups.end())
      note_silent(p->second, silent);
  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    StepReport r;
    r.action = a;
    r.index = i + 1;
    r.count = actions.size();
    const Clock::Duration started = clock_.now();
    auto finish = [&](StepOutcome outcome, std::string detail) {
      r.outcome = outcome;
      r.detail = std::move(detail);
      r.seconds = seconds(clock_.now() - started);
      r.since_apply = seconds(clock_.now() - t0);
      if (o.progress) o.progress(r);
      out.steps.push_back(r);
      if (outcome != StepOutcome::ok) out.stopped = outcome;
      return outcome == StepOutcome::ok;
    };
    if (a.blocked) {
      finish(StepOutcome::blocked, a.why_blocked);
      return out;
    }
    if (o.stop_requested && o.stop_requested->load()) {
      finish(StepOutcome::interrupted, "stop requested before this step started");
      return out;
    }
    GroupObs fresh;
    std::string next;
    if (!guard_holds(g, drivers, a, done_unobservable, silent, o.silent_limit, fresh, &next)) {
      finish(StepOutcome::stale,
             "state changed since the plan was made: a fresh plan's next "
             "step is " +
                 next + "; run plan again");
      return out;
    }
    int64_t entry = 0;
    if (log_) {
      auto id = log_->begin(a, o.origin);
      if (!id.ok()) {
        finish(StepOutcome::failed, "journal: " + id.error().message + " (action not started)");
        return out;
      }
      entry = *id;
    }
    r.outcome = StepOutcome::started;
    if (o.progress) o.progress(r);
    // From its start: a pause that timed out may have held some clients.
    if (a.kind == ActionKind::traffic_pause) paused = true;
    std::string detail;
    Status st = run_with_retries(g, drivers, a, o, done_unobservable, silent, detail);
    const StepOutcome outcome = outcome_of(st);
    if (log_) {
      int64_t ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - started).count();
      // An ok action's note (the WAL a re-attach discarded) is journaled
      // with it, in the field that holds a failed one's error.
      Status logged = log_->finish(entry, to_string(outcome), st.ok() ? detail : st.message(), ms);
      if (!logged.ok() && st.ok()) {
        finish(StepOutcome::failed, "journal: " + logged.message());
        return out;
      }
    }
    if (st.ok() && unobservable(a, fresh)) {
      done_unobservable.push_back(a);
      if (a.kind != ActionKind::traffic_wait)
        detail = "effect not observable (no database observation); the provider reported success";
    }
    if (!finish(outcome, st.ok() ? detail : st.message())) {
      if (sofar.fenced && !sofar.promoted && a.kind != ActionKind::traffic_switch)
        fail_safe(g, drivers, a, st, *sofar.fenced, sofar.stopped_into_active, o, t0, out);
      return out;
    }
    sofar.note(g, a, fresh);
    if (a.kind == ActionKind::traffic_resume) paused = false;
  }
  return out;
}

Status Applier::compensate(const GroupSpec& g, GroupDrivers& d, const Action& a,
                           const ApplyOptions& o, Clock::Duration t0, size_t index, size_t count,
                           GroupApply& out, std::string success_detail) {
  StepReport r;
  r.action = a;
  r.index = index;
  r.count = count;
  Clock::Duration started = clock_.now();
  auto report = [&](StepOutcome outcome, std::string detail) {
    r.outcome = outcome;
    r.detail = std::move(detail);
    r.seconds = seconds(clock_.now() - started);
    r.since_apply = seconds(clock_.now() - t0);
    if (o.progress) o.progress(r);
    if (outcome != StepOutcome::started) out.steps.push_back(r);
  };
  int64_t entry = 0;
  if (log_) {
    auto id = log_->begin(a, o.origin);
    if (!id.ok()) {
      Status st = Err("journal: " + id.error().message + " (action not started)");
      report(StepOutcome::failed, st.message());
      return st;
    }
    entry = *id;
  }
  report(StepOutcome::started, "");
  std::string detail;
  Status st = execute(g, d, a, o, detail);
  std::chrono::milliseconds pause(100);
  for (int attempt = 1; !st.ok() && !st.error().permanent && attempt <= o.retries; ++attempt) {
    clock_.sleep_for(pause);
    pause *= 2;
    st = execute(g, d, a, o, detail);
  }
  StepOutcome outcome =
      st.ok() ? StepOutcome::ok : (st.error().timeout ? StepOutcome::timeout : StepOutcome::failed);
  int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - started).count();
  if (log_) (void)log_->finish(entry, to_string(outcome), st.ok() ? "" : st.message(), ms);
  report(outcome, st.ok() ? std::move(success_detail) : st.message());
  return st;
}

void Applier::fail_safe(const GroupSpec& g, GroupDrivers& d, const Action& failed,
                        const Status& why, const std::string& old, bool resume,
                        const ApplyOptions& o, Clock::Duration t0, GroupApply& out) {
  const std::string& cand = g.active;
  const std::string failure = "the switch to " + cand + " failed at " + why.message();
  // Nothing may have been promoted: a promotion that was not refused may
  // still complete after the error (pg_promote signalled, a Cloud 66 action
  // still running), and re-opening the old primary then makes two.
  std::string unsafe;
  GroupObs now;
  if (failed.kind == ActionKind::database_promote && !why.error().permanent) {
    unsafe = "the promotion of " + cand + " may still be under way (it was not refused)";
  } else {
    now = d.observe();
    const StackObs* p = find_stack(now, old);
    if (!p || !p->reachable)
      unsafe = old + " is unreachable" + (p && !p->error.empty() ? " (" + p->error + ")" : "");
    else if (p->database && p->database->role != Role::primary)
      unsafe = old + " is no longer observed as primary";
    for (const auto& [name, s] : now.stacks) {
      if (!unsafe.empty() || name == old) continue;
      if (s.reachable && s.database && s.database->role == Role::primary)
        unsafe = name + " is a primary too";
      else if (name == cand && !s.reachable)
        unsafe = cand + " is unreachable, so whether it was promoted cannot be seen";
    }
  }
  if (!unsafe.empty()) {
    const std::string note = "; " + old + " stays fenced, not re-opened: " + unsafe;
    out.steps.back().detail += note;
    spdlog::warn("group {}: {}{}", g.name, failure, note);
    return;
  }
  const size_t index = out.steps.back().index, count = out.steps.back().count;
  const std::string traffic =
      now.traffic.target ? "traffic left on " + *now.traffic.target : "traffic left where it is";
  Action reopen;
  reopen.group = g.name;
  reopen.kind = ActionKind::maintenance_off;
  reopen.stack = old;
  reopen.reason = failure + ": re-opening " + old + ", the only primary";
  reopen.guard = old + " is the only primary and reachable; " + cand + " was not promoted";
  spdlog::warn("group {}: {}", g.name, reopen.reason);
  const std::string summary = failure + ": re-opened " + old + ", the only primary; " + traffic;
  Status st = compensate(g, d, reopen, o, t0, index, count, out, summary);
  if (!st.ok()) {
    out.steps.back().detail = failure + "; re-opening " + old + " failed too: " + st.message();
    return;
  }
  out.reopened = old;
  out.failed_safe = summary;
  // The candidate lost its replication for the switch: give it back, so it
  // keeps following the primary that serves again.
  const StackObs* c = find_stack(now, cand);
  if (resume && c && c->reachable && c->database && c->database->role == Role::replica &&
      !c->database->upstream) {
    Action back;
    back.group = g.name;
    back.kind = ActionKind::replication_start;
    back.stack = cand;
    back.source = old;
    back.reason =
        failure + ": resuming replication into " + cand + " from " + old + ", as before the switch";
    back.guard = cand + " is a replica with replication stopped; " + old + " is primary";
    Status rs = compensate(g, d, back, o, t0, index, count, out, "");
    if (!rs.ok()) {
      out.failed_safe += "; resuming replication into " + cand + " failed: " + rs.message();
    }
  }
  // The group's last step carries the whole story (reports quote it).
  out.steps.back().detail = out.failed_safe;
}

namespace {
// The longest "(previous TTL N s)" in a traffic.ttl step's journal detail
// (GroupDrivers::lower_traffic_ttl), in ms; nullopt when it names none.
std::optional<int64_t> previous_ttl_ms(const std::string& detail) {
  std::optional<int64_t> out;
  const std::string key = "(previous TTL ";
  for (size_t at = detail.find(key); at != std::string::npos; at = detail.find(key, at + 1)) {
    int64_t v = 0;
    size_t i = at + key.size(), digits = 0;
    for (; i < detail.size() && detail[i] >= '0' && detail[i] <= '9' && digits < 7; ++i, ++digits)
      v = v * 10 + (detail[i] - '0');
    if (digits > 0 && digits < 7) out = std::max(out.value_or(0), v * 1000);
  }
  return out;
}
}  // namespace

Status Applier::wait_for_resolvers(const GroupSpec& g, const Action& a, const ApplyOptions& o,
                                   std::string& detail) {
  // How long is left: the previous TTL, counted from when traffic.ttl
  // lowered it (this apply's step, or an interrupted apply's: the journal
  // has it). A lowering older than the last switch was undone by that
  // switch; without a record, the whole previous TTL from now.
  int64_t left = a.wait_ms;
  std::string since = "no record of when the TTL was lowered: waiting the whole previous TTL";
  if (log_) {
    auto lowered = log_->last_ok(g.name, ActionKind::traffic_ttl);
    auto switched = log_->last_ok(g.name, ActionKind::traffic_switch);
    if (lowered && (!switched || switched->ms_ago > lowered->ms_ago)) {
      const int64_t prev = previous_ttl_ms(lowered->detail).value_or(a.wait_ms);
      // + 2 ms: the journal and SQLite's clock read whole milliseconds, so
      // ms_ago can exceed the time that passed by up to about 1 ms; the
      // wait must never come out short of the previous TTL.
      left = prev - lowered->ms_ago + 2;
      since = "the TTL was lowered " + fixed(static_cast<double>(lowered->ms_ago) / 1000, 1) +
              " s ago from " + std::to_string(prev / 1000) + " s";
    }
  }
  const Clock::Duration start = clock_.now();
  const Clock::Duration until = start + std::chrono::milliseconds(std::max<int64_t>(left, 0));
  // Under a slice (`run`): wait at most the slice now, the rest in a later pass.
  const bool sliced = o.wait_slice && std::chrono::milliseconds(left) > *o.wait_slice;
  const Clock::Duration stop_at = sliced ? start + *o.wait_slice : until;
  while (clock_.now() < stop_at) {
    if (o.stop_requested && o.stop_requested->load())
      return Timeout("traffic.wait: stop requested after " +
                     fixed(seconds(clock_.now() - start), 1) +
                     " s; the next apply waits only the rest (" + since + ")");
    if (std::string stopped = operation_stopped(); !stopped.empty())
      return Timeout("traffic.wait: " + stopped);
    clock_.sleep_for(
        std::min<Clock::Duration>(stop_at - clock_.now(), std::chrono::milliseconds(200)));
  }
  if (sliced) {
    Error e{"traffic.wait: " + fixed(seconds(until - clock_.now()), 1) +
            " s of the previous TTL left (" + since + "); the next pass goes on with the rest"};
    e.deferred = true;
    return e;
  }
  detail = since + "; waited " + fixed(seconds(clock_.now() - start), 1) + " s";
  return {};
}

Status Applier::execute(const GroupSpec& g, GroupDrivers& d, const Action& a, const ApplyOptions& o,
                        std::string& detail) {
  const std::string label = std::string(to_string(a.kind)) + " " + a.stack;
  // Everything below (the driver's calls, the polls) stops at act_until.
  std::optional<DeadlineScope> window;
  if (o.act_until) window.emplace(o.act_until, o.act_until_why);
  if (std::string stopped = operation_stopped(); !stopped.empty())
    return Timeout(label + ": not started: " + stopped);
  if (a.kind == ActionKind::traffic_wait) return wait_for_resolvers(g, a, o, detail);
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
      if (std::string stopped = operation_stopped(); !stopped.empty())
        return Timeout(label + ": " + stopped);
      if (clock_.now() >= deadline)
        return Timeout(label + ": still " +
                       std::to_string(target > replayed ? target - replayed : 0) +
                       " bytes behind " + a.source + " after " +
                       std::to_string(o.wait_timeout.count()) + " ms");
      clock_.sleep_for(backoff.next());
    }
  }

  Status st;
  if (a.kind == ActionKind::traffic_switch) {
    st = d.switch_traffic(a.stack);
  } else if (a.kind == ActionKind::traffic_ttl) {
    st = d.lower_traffic_ttl(detail);
  } else if (a.kind == ActionKind::traffic_pause || a.kind == ActionKind::traffic_resume) {
    st = d.pause_traffic(a.kind == ActionKind::traffic_pause);
  } else {
    StackDriver* s = d.stack(a.stack);
    if (!s) return Err(label + ": " + d.stack_error(a.stack));
    switch (a.kind) {
      case ActionKind::maintenance_on:
        st = s->set_maintenance(true);
        break;
      case ActionKind::maintenance_off:
        st = s->set_maintenance(false);
        break;
      case ActionKind::replication_stop:
        st = s->stop_replication();
        break;
      case ActionKind::database_promote:
        st = s->promote();
        if (st.ok() && !a.data_loss.empty()) detail = "data loss accepted: " + a.data_loss;
        break;
      case ActionKind::replication_start:
        st = s->start_replication(g.stacks.at(a.source));
        if (st.ok()) detail = s->take_note();
        break;
      case ActionKind::replication_bootstrap:
        st = s->bootstrap_replica(g.stacks.at(a.source));
        detail = s->take_note();
        if (st.ok() && detail.empty()) detail = "removed " + a.removes;
        break;
      default:
        break;
    }
  }
  if (!st.ok()) {
    Error e = st.error();
    e.message = label + ": " + e.message;
    return e;
  }

  // Verify: re-observe until the effect is seen.
  Clock::Duration deadline = clock_.now() + o.action_timeout;
  Backoff backoff;
  for (;;) {
    GroupObs now;
    if (a.kind == ActionKind::traffic_switch || a.kind == ActionKind::traffic_ttl ||
        a.kind == ActionKind::traffic_pause || a.kind == ActionKind::traffic_resume)
      now.traffic = d.observe_traffic();
    else
      now.stacks[a.stack] = d.observe_stack(a.stack);
    if (effect_holds(g, a, now)) return {};
    if (std::string stopped = operation_stopped(); !stopped.empty())
      return Timeout(label + ": the effect was not observed before it " + stopped);
    if (clock_.now() >= deadline)
      return Timeout(label + ": the effect was not observed within " +
                     std::to_string(o.action_timeout.count()) + " ms");
    clock_.sleep_for(backoff.next());
  }
}

}  // namespace stackflip
