// apply.h — executes a plan through the drivers, one action at a time per
// group (groups in parallel), checking each step.
//
// A group in Plan::blocked_groups runs nothing (its result is "blocked").
// For every action of a group, in order:
//   1. stop here if the action is blocked (the group's result is "blocked"),
//      or if a stop was requested (SIGTERM: the running action finishes, the
//      next one does not start);
//   2. guard: observe the group afresh and re-plan; the action must still be
//      the next step (planner.h: still_next), else the group stops with
//      "state changed since the plan";
//   3. journal the start (no journal entry, no action);
//   4. call the driver (replication.wait has no call: it reads the source's
//      write position once, after the fence, and polls the target's replay);
//   5. re-observe with short, growing intervals until the expected effect is
//      seen or the action's timeout passes (steps 4 and 5 stop at
//      ApplyOptions::act_until when set: with etcd, the lease);
//   6. journal the end. A failed call is retried (ApplyOptions::retries,
//      guard re-checked first), unless the provider refused it for good
//      (Error::permanent: an HTTP 4xx, a failed Cloud 66 action, a
//      PostgreSQL privilege error, a command's exit 100), which is reported
//      "permanent: not retried"; the first failure that remains stops that
//      group.
// Re-running is always safe: the next plan is derived from what is observed.
//
// Silent stacks (issue 14): a stack whose observation ran out of time
// (StackObs::timed_out: a host whose packets are dropped, not one that
// refuses) costs the driver's whole timeout each time it is observed, and
// the guard observes the whole group before every step: 2 s a step for a
// partitioned old primary. So within one apply of a group, a stack found
// timed out by the plan's observation (ApplyOptions::planned_from) or by an
// earlier guard of this apply is observed by the next guards with
// ApplyOptions::silent_limit to answer (GroupDrivers::observe_limited). If
// it answers, it is observed as ever (and is no longer silent); if it
// refuses, it is no longer silent either (a refusal costs nothing). A
// silent stack so costs its timeout once per apply, not once per step.
// DECISION: the guard stays before every step and still observes the whole
// group; the planner's rules are untouched (a primary that cannot be seen
// is never passed without `allow_data_loss`). Only the wait for a stack that
// has just shown it does not answer is shortened: one that comes back
// answers a connection far within 300 ms on any network a failover group
// spans, and one slower than that is taken as still unreachable for this
// step, the same race as a stack coming back just after a full-timeout
// guard. The set is this apply's own: the next pass observes with the
// driver's whole timeout again. One exception, the same rule one step
// earlier: the pass that applies an automatic failover this instance has
// just committed observes the stacks that pass found silent with the limit
// too (gitops/reconcile.h, silent_next_); they are this apply's plan's.
//
// Fail safe (issue 11): a switch that cannot finish goes back to serving.
// When, after this apply fenced a serving stack (maintenance.on of the old
// primary), a later step fails for good (refused, or retries exhausted)
// before anything was promoted, the group is observed afresh, and if the
// fenced stack is still the only primary, reachable, and the desired active
// stack is reachable and not primary, apply re-opens the old primary
// (maintenance.off, journaled like any action, reason "the switch to X
// failed at ...: re-opening Y, the only primary") and, when this apply had
// stopped replication into the candidate, resumes it from the old primary.
// Traffic is left where it is (it was never switched: that comes after the
// promotion). The group is still reported failed, with the reason
// (GroupApply::failed_safe). Not re-opened: after any promotion in this
// apply; after a promotion that failed without a refusal (a timeout or a lost
// connection: it may still be under way); when the old primary cannot be
// seen or another stack is primary. Then the old primary stays fenced, and
// the step's detail says why.
// What the loop does next (no fence → fail → re-open every interval) is the
// caller's: reconcile.h holds the group (switch_hold.h).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/action_log.h"
#include "core/model.h"
#include "core/observe.h"
#include "core/plan.h"
#include "util/clock.h"
#include "util/result.h"

namespace stackflip {

struct ApplyOptions {
  std::chrono::milliseconds action_timeout{30000};  // effect of one action to be observed
  std::chrono::milliseconds wait_timeout{120000};   // replication.wait
  // A failed action is tried again this many times (with backoff: 100 ms,
  // doubling), each time only if its guard still holds on fresh observation.
  // Actions are idempotent by the driver contract (provider.h).
  int retries = 2;
  std::string origin;  // commit sha or "config:<digest>"
  const std::atomic<bool>* stop_requested = nullptr;
  int parallelism = 32;  // groups at a time (`--parallel`)
  // Called as each step starts and ends (from the group's thread).
  std::function<void(const struct StepReport&)> progress;
  // With etcd (issue 13): until when this instance may act, i.e. its lease
  // less a margin; asked again whenever consulted (a kept-alive lease moves
  // it later). Each action's driver calls and polls run under it
  // (util/deadline.h: a command is killed, a statement cancelled, a request
  // cut) and no attempt starts after it; `act_until_why` says why in errors.
  std::function<std::chrono::steady_clock::time_point()> act_until;
  std::string act_until_why;
  // The observation the plan was made from, when the caller has it: its
  // silent stacks (see above) get `silent_limit` from the first guard on.
  // Null: the first guard finds them, at the cost of their timeout.
  const ObservedState* planned_from = nullptr;
  std::chrono::milliseconds silent_limit{300};
  // traffic.wait (issue 15) waits at most this long in one apply: a longer
  // wait stops the group `interrupted` with what is left, and the next apply
  // goes on with the rest (the journal says when the TTL was lowered).
  // `run` sets it to its interval, so a planned switch with a 300 s TTL
  // holds the loop's pass for one interval, not for the whole TTL. Unset
  // (`apply`): the whole wait.
  std::optional<std::chrono::milliseconds> wait_slice;
};

enum class StepOutcome { started, ok, failed, timeout, blocked, stale, interrupted };
const char* to_string(StepOutcome o);

struct StepReport {
  Action action;
  size_t index = 0, count = 0;  // 1-based position within the group's actions
  StepOutcome outcome = StepOutcome::started;
  std::string detail;      // error, blocked reason, or what was observed
  double seconds = 0;      // since the action started
  double since_apply = 0;  // since apply started
};

struct GroupApply {
  std::string group;
  std::vector<StepReport> steps;          // finished steps (and the stopping one)
  StepOutcome stopped = StepOutcome::ok;  // ok = all done; else why it stopped
  // Set when the fail safe re-opened the old primary (see above): the stack
  // re-opened and why the switch failed. `stopped` is still failed/timeout.
  std::string reopened;
  std::string failed_safe;
};

struct ApplyResult {
  std::vector<GroupApply> groups;
  // DESIGN.md: 0 success, 1 a failed action, 3 blocked by a guard.
  int exit_code() const;
};

class Applier {
 public:
  Applier(const DesiredState& desired, Fleet& fleet, ActionLog* log, Clock& clock)
      : desired_(desired), fleet_(fleet), log_(log), clock_(clock) {}
  ApplyResult apply(const Plan& plan, const ApplyOptions& options);

 private:
  // What the fail safe needs to know of a group's apply so far: the serving
  // stack it fenced, whether anything was promoted since, whether
  // replication into the candidate is stopped by this apply.
  struct SwitchSoFar {
    std::optional<std::string> fenced;
    bool promoted = false, stopped_into_active = false;
    // Records a step that succeeded; `before` is the guard's observation.
    void note(const GroupSpec& g, const Action& a, const GroupObs& before);
  };

  // Runs a group's actions in order: steps 1-6 above.
  // Then, when the steps stopped after a traffic.pause and before its
  // traffic.resume, resumes the pooler (a compensating traffic.resume).
  GroupApply apply_group(const GroupSpec& g, const std::vector<Action>& actions,
                         const ApplyOptions& o, Clock::Duration t0);
  // The steps alone; `paused`: whether the pooler is left paused by them.
  GroupApply apply_steps(const GroupSpec& g, const std::vector<Action>& actions,
                         const ApplyOptions& o, Clock::Duration t0, bool& paused);
  // Step 4-5 with the retries of step 6: runs `a`, and while it fails (not
  // for good) runs it again if the guard still holds; "(permanent: not
  // retried)" is added to a refusal.
  // `silent`: the group's silent stacks so far (see above), kept up to date.
  Status run_with_retries(const GroupSpec& g, GroupDrivers& d, const Action& a,
                          const ApplyOptions& o, const std::vector<Action>& done_unobservable,
                          std::set<std::string>& silent, std::string& detail);
  Status execute(const GroupSpec& g, GroupDrivers& d, const Action& a, const ApplyOptions& o,
                 std::string& detail);
  // traffic.wait: until the TTL the resolvers may still hold has passed
  // since traffic.ttl lowered it (the journal says when: ActionLog::last_ok).
  Status wait_for_resolvers(const GroupSpec& g, const Action& a, const ApplyOptions& o,
                            std::string& detail);
  // The fail safe: `failed` failed for good with `why` after this apply
  // fenced `old`; re-opens `old` when nothing was promoted (see above).
  void fail_safe(const GroupSpec& g, GroupDrivers& d, const Action& failed, const Status& why,
                 const std::string& old, bool resume, const ApplyOptions& o, Clock::Duration t0,
                 GroupApply& out);
  // Runs one compensating action (journaled, verified, retried) outside the plan.
  Status compensate(const GroupSpec& g, GroupDrivers& d, const Action& a, const ApplyOptions& o,
                    Clock::Duration t0, size_t index, size_t count, GroupApply& out,
                    std::string success_detail);

  const DesiredState& desired_;
  Fleet& fleet_;
  ActionLog* log_;
  Clock& clock_;
};

// True when `observed` shows the effect `a` is expected to have. Without the
// group's spec, a traffic.ttl is never seen done (its TTLs are the spec's).
bool effect_holds(const Action& a, const GroupObs& observed);
bool effect_holds(const GroupSpec& g, const Action& a, const GroupObs& observed);

}  // namespace stackflip
