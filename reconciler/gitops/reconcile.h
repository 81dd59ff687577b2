// reconcile.h — one GitOps pass: fetch → verify → load → observe → plan →
// apply → record. Used by `stackflip reconcile` (one pass) and `stackflip run`
// (a pass per tick, webhook or SIGHUP), tested with a local repository and
// the fake drivers.
//
// The desired state in force is the *last valid commit*: the newest commit
// that verified (when signatures are required) and loaded without error. It
// is kept in the state store (kv "gitops.commit", "gitops.config",
// "gitops.file") as soon as it validates — before anything is applied — so a
// pass killed mid-switch resumes toward that commit after a restart.
//
// An invalid head (bad signature, missing file, YAML or schema error) applies
// nothing of its own: the pass records result "invalid" with the error, exits
// 1, and still corrects drift against the last valid commit (journal origin =
// that commit), because the loop exists to keep reality at the last
// known-good desired state. An unreachable repository is handled the same way
// (result "failed"). With no valid commit ever seen, nothing is observed.
// With signatures required, a stored commit that was adopted without a
// signature check (kv "gitops.verified" != "1") is not trusted after a
// restart: the head is verified as if new.
//
// Rollback: a new head must descend from the commit in force (issue 10). A
// head that does not — the branch was reset to an older commit, or rewritten
// with unrelated history, and force-pushed — is refused like an invalid head
// (result "invalid", exit 1, notified, drift still corrected against the
// commit in force), signed or not: an older signed commit is still a
// rollback nobody approved now. The operator, on the host and never from
// Git, may pass `allow_rewind` (`--allow-rewind`): it lets *one* such head be
// adopted by this Reconciler (the first that verifies and loads), after which
// rewinds are refused again, so a flag left in a service unit cannot disable
// the check for good. A head equal to the commit in force (idle pass) and
// the first commit ever (nothing in force) need no ancestry.
//
// State store failures (disk full, read-only file, ...) do not stop the pass:
// it reconciles all the same, but reports the store's last error in
// PassReport::state_store_error, adds it to the run's error, and exits 1.
//
// Idle pass: when the head equals the commit in force, the config is neither
// read from Git nor loaded again (a Reconciler keeps it in memory; a fresh
// process reads it from the state store once); only observe + plan run, and
// nothing is applied when the plan is empty.
//
// Groups run as independent pipelines (issue 11, site-wide failover): each
// group is observed, planned, applied, re-observed and, when a step went
// stale, re-planned on its own, up to `apply.parallelism` groups at a time
// (`--parallel`, default 32). One barrier remains, and it is bounded: the
// cross-group check for one database server named twice (planner.h
// shared_server_blocks) needs every group's observation, so an observed group
// waits until all groups are observed or `observe_gate` (2 s) has passed since
// the pass started, whichever comes first. A group observed after that goes
// ahead as soon as it is observed, checked against every group observed by
// then (the group seen later is the one blocked, so two groups never act on
// one server in a pass). Nothing else waits for another group: a slow
// observation, a long promotion or a stale re-plan holds one worker only. The
// pass itself ends, records and notifies when its slowest group ends.
//
// Thread safety: a Reconciler is used by one thread at a time; `stop` may be
// set from any thread (the running action finishes, the next does not start).
// The DriverFactory's drivers of different groups are used from different
// threads at once; those of one group from one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/apply.h"
#include "core/model.h"
#include "core/observe.h"
#include "core/plan.h"
#include "core/provider.h"
#include "gitops/coordination.h"
#include "gitops/git_source.h"
#include "gitops/signature.h"
#include "gitops/state_store.h"
#include "gitops/switch_hold.h"
#include "util/clock.h"

namespace stackflip {

struct ReconcileSettings {
  std::string file = "stackflip.yaml";  // repository-relative path of the config
  std::string ref = "main";             // recorded with each run
  bool require_signed = false;
  bool allow_rewind = false;  // adopt once a head that does not descend from the commit in force
  TrustConfig trust;
  ApplyOptions apply;  // origin is set per pass; parallelism = groups at a time (--parallel)
  // The bounded wait for every group's first observation (see above).
  std::chrono::milliseconds observe_gate{2000};
  // Who sees an outage ("seen by ..."): the --instance name with etcd;
  // "" = "stackflip on <host name>".
  std::string instance;
  // This instance's site (--site), named in a failover commit's evidence.
  std::string site;
  // Automatic failover (issue 14): the SSH private key the failover commit
  // is signed with (--commit-signing-key); "" = unsigned.
  std::string commit_signing_key;
  // With etcd: the lease TTL. An automatic failover needs `after` longer
  // than it plus 1 s, so an old primary cut off with its site is fenced by
  // its own instance (self-fencing, within the lease) before another site
  // promotes.
  std::chrono::milliseconds lease_ttl{0};
};

// What a pass did to one group, in the words of the pass summary.
enum class GroupOutcome {
  converged,    // nothing to do and nothing done
  switched,     // steps ran, all ok, and one of them promoted or moved traffic
  applied,      // steps ran, all ok (drift corrected without a switch)
  failed,       // a step failed, timed out or stayed stale after re-planning
  blocked,      // a guard stopped the group (reason says which)
  interrupted,  // a stop was requested before the group's next step
  pending,      // nothing could run now (a step skipped: its stack is down)
  standby,      // with etcd: another instance leads the group (reason names it), or none may
};
const char* to_string(GroupOutcome o);

struct GroupStatus {
  std::string active;                  // desired active stack
  bool converged = false;              // nothing left to do after this pass
  size_t drift = 0;                    // actions the pass found necessary
  std::optional<std::string> traffic;  // observed traffic target
  GroupOutcome outcome = GroupOutcome::converged;
  size_t steps = 0;    // steps that succeeded this pass (all rounds)
  double seconds = 0;  // from the group's first step to its end; 0 when nothing ran
  std::string reason;  // failed, blocked, interrupted, pending: why ("" otherwise)
  // A provider rejected our credentials or configuration for this group
  // (model.h config_error_of): the outcome is "failed", the reason starts
  // "configuration error: ", and the pass exits 1, never 3 (issue 12).
  bool config_error = false;
  // The active stack is down (core/outage.h): the fact, told first, and the
  // exact change a person may commit ("" when none can help).
  std::string outage, decision;
  // An automatic failover kept as an override because Git could not be
  // reached (issue 14, item 4): "override in force, not yet in Git: ..."
  std::string override_note;
  // What is left to do after this pass (the plan of the latest
  // observation): blocked steps carry why; skipped ones why not. Empty
  // when converged. For the status page (issue 16).
  std::vector<Action> left;
  std::vector<Skipped> left_skipped;
};

struct PassReport {
  RunRecord run;
  int exit_code = 0;            // 0 ok, 1 error / invalid / config error, 3 blocked (DESIGN.md)
  bool idle = false;            // head unchanged: config not re-read
  std::string commit_in_force;  // whose desired state was planned against ("" = none)
  std::optional<ObservedState> observed;  // the latest observation (after apply, if any)
  // The desired state planned against (the commit in force, with automatic
  // failovers not yet in Git applied), and who made that commit; for the
  // status page (issue 16). Null / empty before a valid commit was seen.
  std::shared_ptr<const DesiredState> desired;
  CommitInfo commit_info;
  std::string state_store_error;          // the pass's last state store failure ("" = none)
  std::map<std::string, GroupStatus> groups;
  // The pass pushed a failover commit: the next pass should come at once.
  bool again = false;
  // A group's active stack is failing and automatic failover may decide
  // within this time: the next pass should come no later.
  std::optional<std::chrono::milliseconds> next_within;
  bool converged() const {
    for (const auto& [n, g] : groups)
      if (!g.converged) return false;
    return !groups.empty();
  }
};

// One line per group: "shop: switched, 6 steps in 0.412 s", "blog: failed:
// database.promote ams: ...". With `all` false, converged groups are counted
// in a last line instead of listed (the run loop's log, thousands of groups),
// and nothing is written when every group converged.
std::string format_group_outcomes(const PassReport& report, bool all);

class Notifier;
struct GroupRun;  // one group's pipeline in a pass (reconcile.cc)

class Reconciler {
 public:
  Reconciler(ConfigSource& source, StateStore& journal, DriverFactory& factory, Clock& clock,
             ReconcileSettings settings, Notifier* notifier = nullptr)
      : source_(source),
        store_(journal),
        factory_(factory),
        clock_(clock),
        s_(std::move(settings)),
        notifier_(notifier),
        rewind_allowed_(s_.allow_rewind) {}

  // One pass; never throws for expected failures (they are in the report).
  PassReport pass(const std::atomic<bool>* stop = nullptr);

  // With etcd (issue 13, coordination.h): apply only the groups this
  // instance leads, journal through the fencing check, share the commit in
  // force and the observation memory. Set before the first pass.
  void set_coordination(Coordination* c) { coord_ = c; }

  // Issue 14, item 7 (self-fencing): this instance was cut off from etcd for
  // as long as its lease (EtcdCoordination::on_isolated). Turns maintenance
  // on for the active stack of every group with auto_failover (self_fence
  // not off) whose active stack runs in this instance's site, so an isolated
  // old primary stops taking writes before another site can promote. Safe to
  // call from another thread while a pass runs: it reads the commit in force
  // through its own reference and makes its own drivers. Returns one line
  // per stack fenced (or failing to).
  std::vector<std::string> self_fence();

 private:
  Status restore_from_store();
  void adopt(std::string commit, std::string text, DesiredState d);
  // Why `head` may not replace the commit in force ("" = it may); `rewinds`
  // says it may only because --allow-rewind is not used up yet.
  std::string rewind_error(const std::string& head, bool& rewinds);
  void store_failed(const Status& s);
  // The stages of pass(): fetch, verify and load the branch head, adopting
  // it when it is valid (the error says why it is not; `bad_result` is the
  // run result for that error); observe → plan → apply against the commit in
  // force (the result and exit code); record the run and notify.
  std::string follow_head(PassReport& rep, std::string& bad_result);
  std::pair<std::string, int> apply_commit_in_force(PassReport& rep, const std::atomic<bool>* stop);
  PassReport finish(PassReport& rep, Clock::Duration t0, const std::string& result, int code);
  void notify(const PassReport& rep, const std::string& result);
  void load_holds(const DesiredState& d);
  // Who sees an outage: --instance, else "stackflip on <host>".
  const std::string& seen_by();
  // Issue 14: decides, per group with `auto_failover:`, whether to fail over
  // by itself (core/auto_failover.h), and commits and pushes the decisions
  // of this pass as one commit; GroupStatus::decision says what it did or
  // why a person decides.
  void auto_failover(PassReport& rep, const DesiredState& d, const std::vector<GroupRun>& runs);
  // Overrides (issue 14, item 4), in etcd or the state store: the desired
  // state of this pass with them applied (dropping those a commit agrees
  // with); and, after the pass's groups are filled in, saying so and pushing
  // them to Git.
  const DesiredState& effective_desired();
  void push_overrides(PassReport& rep);
  Result<std::map<std::string, std::string>> load_overrides();
  Status save_override(const std::string& group, const std::string& json);
  Status drop_override(const std::string& group);
  // Tracks since when each group's active stack is down and fills
  // GroupStatus::outage/decision (core/outage.h). `now`, `now_ms`: when the
  // pass's observation started.
  void note_outages(PassReport& rep, const DesiredState& d, const std::vector<GroupRun>& runs,
                    const std::string& now, int64_t now_ms);
  // Plans against the instances' shared commit in force when it is newer
  // than this instance's own (descends from it): a takeover never plans
  // against an older commit. Also when it is the branch's head `head` that
  // does not descend from this instance's commit: another instance adopted
  // a rewind (--allow-rewind, which only publishes over the shared commit),
  // and Git says the same.
  void follow_shared_commit(const std::string& head);
  // Publishes the commit in force unless the shared one is newer (or is
  // unknown here); then `behind_` says why this instance applies nothing. A
  // rewind this instance adopted with --allow-rewind is published over it.
  void share_commit_in_force();
  // observe → plan → apply → re-plan of every group, as independent
  // pipelines behind the bounded observation gate (see above).
  std::vector<GroupRun> run_groups(const DesiredState& d, const ObservedState* last_known,
                                   const std::atomic<bool>* stop);

  ConfigSource& source_;
  StateStore& store_;
  DriverFactory& factory_;
  Clock& clock_;
  ReconcileSettings s_;
  Notifier* notifier_;
  Coordination* coord_ = nullptr;
  std::string behind_;    // with etcd: why nothing is applied this pass ("" = apply)
  bool rewind_allowed_;   // --allow-rewind not used up yet
  bool rewound_ = false;  // a rewind was adopted and not yet shared (with etcd)
  // Group → when its active stack was first seen down (RFC 3339), while it is.
  std::map<std::string, std::string> down_since_;
  std::map<std::string, int64_t> down_since_ms_;  // the same, epoch ms
  // Group → its stacks found silent (StackObs::timed_out) by the pass that
  // committed its automatic failover. The next pass, the one that applies
  // it, gives them apply's silent_limit in its observation too (the plan's
  // observation of that apply; core/apply.h "Silent stacks"); then forgotten.
  std::map<std::string, std::set<std::string>> silent_next_;
  // The same while a failover waits for `after` (or the witnesses), from
  // an observation with the whole timeout only; `limited_now_`: the stacks
  // this pass observed with the limit, so the next one does not.
  std::map<std::string, std::set<std::string>> limited_now_;
  // Whether the group was converged in the pass before its active stack went
  // down (automatic failover never acts in a switch); `converged_` holds the
  // groups converged in the last pass.
  std::map<std::string, bool> settled_;
  std::set<std::string> converged_;
  bool converged_at_start_ = false;  // the store says the last pass converged
  std::string seen_by_;
  std::optional<std::string> outages_stored_;  // what the state store holds for `status`
  std::string store_error_;  // this pass's last state store failure
  std::string last_notice_;  // the last notification sent (also when the store fails)

  bool restored_ = false;
  std::string commit_;  // commit in force
  std::shared_ptr<const DesiredState> desired_;
  // What is planned against: desired_, or desired_ with the overrides of
  // automatic failovers not yet in Git applied to its text (effective_key_
  // says which: the commit and the overrides).
  std::shared_ptr<const DesiredState> effective_;
  std::string effective_key_;
  CommitInfo commit_info_;                        // of commit_ (commit_info_.sha says which)
  std::map<std::string, std::string> overrides_;  // this pass's: group → JSON
  std::mutex desired_mu_;  // guards the desired_ pointer against self_fence()
  Fleet fleet_;        // drivers of desired_, kept across passes (open connections)
  SwitchHolds holds_;  // this pass's holds (switch_hold.h), under the pass's pool lock
  bool holds_changed_ = false;
};

}  // namespace stackflip
