#include "reconcile.h"

#include <spdlog/spdlog.h>

#include "diagnostics.h"
#include "digest.h"
#include "loader.h"
#include "notify.h"
#include "plan_json.h"
#include "planner.h"
#include "snapshot.h"
#include "switch_hold.h"

namespace stackflip {

namespace {

const char* kCommitKey = "gitops.commit";
const char* kConfigKey = "gitops.config";
const char* kFileKey = "gitops.file";
const char* kVerifiedKey = "gitops.verified";  // "1": the commit in force passed a signature check
const char* kConvergedKey = "gitops.converged";
const char* kObservedKey = "gitops.observed";
const char* kNoticeKey = "gitops.last_notice";
const char* kHeldKey = "gitops.held";  // switch_hold.h

std::string short_sha(const std::string& sha) { return sha.substr(0, 12); }

void fill_groups(PassReport& rep, const DesiredState& d, const Plan& first, const Plan& last,
                 const ObservedState& obs) {
  for (const auto& [name, g] : d.groups) {
    GroupStatus gs;
    gs.active = g.active;
    gs.converged = true;
    for (const auto& a : first.actions) gs.drift += a.group == name;
    for (const auto& a : last.actions) gs.converged &= a.group != name;
    // A skipped step (its stack is unreachable) is work left to do, as in
    // `plan --detailed-exitcode`: a stopped database is not "converged".
    for (const auto& sk : last.skipped) gs.converged &= sk.group != name;
    auto it = obs.groups.find(name);
    if (it != obs.groups.end()) gs.traffic = it->second.traffic.target;
    rep.groups[name] = gs;
  }
}

}  // namespace

namespace {
const std::string kOne = "1", kZero = "0";
}  // namespace

void Reconciler::adopt(std::string commit, std::string text, DesiredState d) {
  fleet_.clear();  // drivers refer to the old desired state
  desired_ = std::make_unique<DesiredState>(std::move(d));
  commit_ = std::move(commit);
  // Stored before anything is applied: a restart resumes toward this commit.
  for (auto [k, v] : {std::pair<const char*, const std::string*>{kCommitKey, &commit_},
                      {kConfigKey, &text},
                      {kFileKey, &desired_->source},
                      {kVerifiedKey, s_.require_signed ? &kOne : &kZero}})
    if (Status s = journal_.put(k, *v); !s.ok()) {
      store_failed(Err("cannot store the commit in force: " + s.message()));
      break;
    }
}

void Reconciler::store_failed(const Status& s) {
  spdlog::error("state store: {}", s.message());
  store_error_ = s.message();
}

std::string Reconciler::rewind_error(const std::string& head, bool& rewinds) {
  rewinds = false;
  if (commit_.empty() || head == commit_) return "";
  auto d = source_.descends_from(head, commit_);
  if (!d.ok()) return d.error().message;
  if (*d) return "";
  std::string what = "commit " + short_sha(head) + " does not descend from the commit in force " +
                     short_sha(commit_) + ": the branch was rewound or rewritten (force-push)";
  if (!rewind_allowed_)
    return what +
           "; refusing it. To adopt it on purpose, reconcile once with --allow-rewind on the "
           "reconciler host";
  spdlog::warn("{}; adopting it (--allow-rewind)", what);
  rewinds = true;
  return "";
}

Status Reconciler::restore_from_store() {
  restored_ = true;
  auto commit = journal_.get(kCommitKey);
  auto text = journal_.get(kConfigKey);
  auto file = journal_.get(kFileKey);
  if (!commit.ok()) return commit.status();
  if (!text.ok()) return text.status();
  if (!commit->has_value() || !text->has_value()) return Status::Ok();
  // Signatures required now but the commit in force was adopted without a
  // check: do not trust it; the head is verified like a new commit.
  auto verified = journal_.get(kVerifiedKey);
  if (s_.require_signed && !(verified.ok() && *verified && **verified == "1")) return Status::Ok();
  std::string name = file.ok() && file->has_value() ? **file : s_.file;
  LoadResult lr = load_desired_text(name, **text);
  if (!lr.desired)
    return Err("the stored config of commit " + short_sha(**commit) + " no longer loads:\n" +
               format_diagnostics(lr.errors));
  fleet_.clear();
  desired_ = std::make_unique<DesiredState>(std::move(*lr.desired));
  commit_ = **commit;
  return Status::Ok();
}

PassReport Reconciler::pass(const std::atomic<bool>* stop) {
  PassReport rep;
  auto t0 = clock_.now();
  rep.run.started_at = clock_.rfc3339_now();
  rep.run.ref = s_.ref;
  store_error_.clear();
  if (!restored_) {
    if (Status s = restore_from_store(); !s.ok()) store_failed(s);
  }

  // fetch → verify → load. `error` set means the head is not usable.
  std::string error, bad_result = "invalid";
  auto head = source_.fetch();
  if (!head.ok()) {
    error = head.error().message;
    bad_result = "failed";
    rep.run.commit = commit_;
  } else {
    rep.run.commit = *head;
    if (*head == commit_ && desired_) {
      rep.idle = true;
    } else {
      Status verified;
      bool rewinds = false;
      if (std::string why = rewind_error(*head, rewinds); !why.empty()) verified = Err(why);
      if (verified.ok() && s_.require_signed) {
        auto sig = source_.signature(*head);
        verified = sig.ok() ? verify_commit_signature(*head, *sig, s_.trust) : sig.status();
      }
      if (!verified.ok()) {
        error = verified.message();
      } else if (auto text = source_.read_file(*head, s_.file); !text.ok()) {
        error = text.error().message;
      } else {
        LoadResult lr = load_desired_text(s_.file, *text);
        if (!lr.desired) {
          error = "commit " + short_sha(*head) + " is invalid:\n" + format_diagnostics(lr.errors);
          while (!error.empty() && error.back() == '\n') error.pop_back();
        } else {
          if (rewinds) rewind_allowed_ = false;  // --allow-rewind is good for one rewind
          adopt(*head, std::move(*text), std::move(*lr.desired));
        }
      }
    }
  }

  auto finish = [&](const std::string& result, int code) {
    rep.run.result = result;
    rep.exit_code = code;
    rep.run.finished_at = clock_.rfc3339_now();
    rep.run.duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - t0).count();
    auto add_error = [&](const std::string& e) {
      if (!rep.run.error.empty()) rep.run.error += "\n";
      rep.run.error += e;
    };
    if (!store_error_.empty()) add_error("state store: " + store_error_);
    if (Status s = journal_.record_run(rep.run); !s.ok()) {
      store_failed(Err("cannot record the run: " + s.message()));
      add_error("state store: " + store_error_);
    }
    // A pass that cannot keep its record is not a success, whatever it did.
    rep.state_store_error = store_error_;
    if (!store_error_.empty() && rep.exit_code == 0) rep.exit_code = 1;
    // Notify on applied, failed/invalid and blocked, and on state store
    // failures; the same outcome for the same commit (an invalid head seen
    // every pass) is told once.
    std::string notice = result + " " + rep.run.commit + " " + rep.run.error;
    auto repeated = [&] {
      if (result == "applied") return false;
      if (notice == last_notice_) return true;
      auto last = journal_.get(kNoticeKey);
      return last.ok() && *last && **last == notice;
    };
    if (notifier_ && (result != "no-changes" || !store_error_.empty()) && !repeated()) {
      last_notice_ = notice;
      (void)journal_.put(kNoticeKey, notice);
      std::string text =
          "stackflip " + source_.describe() + " @ " + short_sha(rep.run.commit) + ": " + result;
      if (rep.run.actions) text += " (" + std::to_string(rep.run.actions) + " actions)";
      if (!rep.run.error.empty()) text += "\n" + rep.run.error;
      notifier_->notify(result == "invalid" || result == "no-changes" ? "failed" : result, text);
    }
    return rep;
  };

  if (!error.empty()) {
    rep.run.error = error;
    if (!desired_) return finish(bad_result, 1);
    rep.run.error +=
        "\n(drift is corrected against the last valid commit " + short_sha(commit_) + ")";
  }

  // observe → plan → apply against the commit in force.
  const DesiredState& d = *desired_;
  rep.commit_in_force = commit_;
  rep.run.desired_digest = d.digest;
  if (fleet_.empty()) fleet_ = make_fleet(d, factory_);
  std::string observe_store_error;
  auto observe = [&] {
    ObservedState o = observe_with_last_known(d, fleet_, clock_, s_.apply.parallelism, &journal_,
                                              true, &observe_store_error);
    if (!observe_store_error.empty()) store_error_ = observe_store_error;
    return o;
  };
  ObservedState obs = observe();
  // Groups whose switch failed safe on this commit are held (switch_hold.h).
  SwitchHolds holds;
  if (auto held = journal_.get(kHeldKey); !held.ok())
    store_failed(held.status());
  else if (*held)
    holds = holds_from_json(**held);
  bool holds_changed = false;
  auto plan_with_holds = [&](const ObservedState& o) {
    Plan p = make_plan(d, o);
    holds_changed |= apply_holds(p, d, o, commit_, holds);
    return p;
  };
  Plan plan = plan_with_holds(obs);
  rep.run.plan_digest = sha256_hex(plan_to_json(plan, false));
  rep.run.actions = static_cast<int>(plan.actions.size());
  Plan after = plan;
  std::string result = "no-changes";
  int code = 0;
  if (!plan.empty() || !plan.blocked_groups.empty()) {  // a blocked group is reported, converged or not
    if (Status s = journal_.put(kConvergedKey, "0"); !s.ok()) store_failed(s);
    ApplyOptions ao = s_.apply;
    ao.origin = commit_;
    ao.stop_requested = stop;
    // A step found stale (the state moved after the plan was made, e.g. the
    // fenced old primary wrote WAL after replication into the standby
    // stopped) is re-planned at once, up to twice, rather than at the next
    // pass: here the commit is the approval, not one particular plan.
    Plan current = plan;
    for (int round = 0;; ++round) {
      ApplyResult ar = Applier(d, fleet_, &journal_, clock_).apply(current, ao);
      code = ar.exit_code();
      for (const auto& g : ar.groups)
        if (!g.failed_safe.empty() && d.groups.count(g.group)) {
          holds[g.group] =
              SwitchHold{commit_, d.groups.at(g.group).active, g.reopened, g.failed_safe};
          holds_changed = true;
        }
      obs = observe();
      after = plan_with_holds(obs);
      bool stale = false;
      for (const auto& g : ar.groups) stale |= g.stopped == StepOutcome::stale;
      if (stale && round < 2 && !after.empty() && !(stop && stop->load())) {
        spdlog::warn("the state changed during the pass; planning again ({} actions)",
                     after.actions.size());
        current = after;
        continue;
      }
      for (const auto& g : ar.groups)
        if (g.stopped != StepOutcome::ok && !g.steps.empty()) {
          if (!rep.run.error.empty()) rep.run.error += "\n";
          rep.run.error += "group " + g.group + " stopped (" + to_string(g.stopped) +
                           "): " + g.steps.back().detail;
        }
      break;
    }
    result = code == 0 ? "applied" : code == 3 ? "blocked" : "failed";
  }
  if (holds_changed)
    if (Status s = journal_.put(kHeldKey, holds_to_json(holds)); !s.ok()) store_failed(s);
  fill_groups(rep, d, plan, after, obs);
  rep.observed = obs;
  if (Status s = journal_.put(kConvergedKey, rep.converged() ? "1" : "0"); !s.ok()) store_failed(s);
  if (!error.empty()) return finish(bad_result, 1);
  return finish(result, code);
}

ObservedState observe_with_last_known(const DesiredState& desired, Fleet& fleet, Clock& clock,
                                      int parallelism, Journal* journal, bool remember,
                                      std::string* store_error) {
  ObservedState obs = observe_all(desired, fleet, clock, parallelism);
  if (!journal) return obs;
  auto failed = [&](const Status& s) {
    spdlog::error("state store: {}", s.message());
    if (store_error) *store_error = s.message();
  };
  if (auto last = journal->get(kObservedKey); !last.ok()) {
    failed(last.status());
  } else if (*last) {
    auto parsed = parse_snapshot("state store snapshot", **last);
    if (parsed.ok()) fill_last_known(obs, *parsed);
  }
  if (remember)
    if (Status s = journal->put(kObservedKey, snapshot_to_json(obs)); !s.ok()) failed(s);
  return obs;
}

}  // namespace stackflip
