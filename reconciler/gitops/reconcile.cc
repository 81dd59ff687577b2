#include "gitops/reconcile.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "config/diagnostics.h"
#include "config/failover_edit.h"
#include "config/loader.h"
#include "config/snapshot.h"
#include "core/auto_failover.h"
#include "core/outage.h"
#include "core/plan_json.h"
#include "core/planner.h"
#include "core/provider_stats.h"
#include "gitops/last_known.h"
#include "gitops/notify.h"
#include "gitops/switch_hold.h"
#include "util/digest.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

const char* kCommitKey = "gitops.commit";
const char* kConfigKey = "gitops.config";
const char* kFileKey = "gitops.file";
const char* kVerifiedKey = "gitops.verified";  // "1": the commit in force passed a signature check
const char* kConvergedKey = "gitops.converged";
// The outages of the last pass, for `stackflip status` (one fact and its
// decision per group, each on its own line; "" = none).
const char* kOutagesKey = "gitops.outages";
const char* kNoticeKey = "gitops.last_notice";
const char* kHeldKey = "gitops.held";  // switch_hold.h
// When stackflip last committed an automatic failover of a group (epoch ms),
// for its cooldown: "auto_failover.last.<group>".
const std::string kAutoFailoverKey = "auto_failover.last.";
// Without etcd, the overrides (group → JSON) as one JSON object.
const char* kOverridesKey = "auto_failover.overrides";

// An automatic failover not yet in Git.
struct Override {
  std::string active;
  bool allow_data_loss = false;
  std::string decided_by, decided_at, message;
};

std::string override_json(const Override& o) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  for (auto [k, v] : {std::pair<const char*, const std::string*>{"active", &o.active},
                      {"decided_by", &o.decided_by},
                      {"decided_at", &o.decided_at},
                      {"message", &o.message}}) {
    w.Key(k);
    w.String(v->c_str(), static_cast<rapidjson::SizeType>(v->size()));
  }
  w.Key("allow_data_loss");
  w.Bool(o.allow_data_loss);
  w.EndObject();
  return buf.GetString();
}

// nullopt for anything that is not an override we wrote (hostile input: etcd).
std::optional<Override> parse_override(const std::string& text) {
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = 65536;
  limits.max_depth = 2;
  if (parse_json_input(text, doc, limits) || !doc.IsObject()) return std::nullopt;
  Override o;
  for (auto [k, v] : {std::pair<const char*, std::string*>{"active", &o.active},
                      {"decided_by", &o.decided_by},
                      {"decided_at", &o.decided_at},
                      {"message", &o.message}}) {
    if (!doc.HasMember(k) || !doc[k].IsString()) return std::nullopt;
    *v = doc[k].GetString();
  }
  if (!doc.HasMember("allow_data_loss") || !doc["allow_data_loss"].IsBool()) return std::nullopt;
  o.allow_data_loss = doc["allow_data_loss"].GetBool();
  if (o.active.empty() || o.active.size() > 63) return std::nullopt;
  return o;
}

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
    for (const auto& a : last.actions)
      if (a.group == name) gs.left.push_back(a);
    for (const auto& sk : last.skipped)
      if (sk.group == name) gs.left_skipped.push_back(sk);
    rep.groups[name] = gs;
  }
}

}  // namespace

// One group's pipeline in a pass.
struct GroupRun {
  std::string name;
  const GroupSpec* spec = nullptr;
  bool observed = false;
  GroupObs first, last;                // the observation planned on; the latest one
  std::string block;                   // one server named by two groups (shared_server_blocks)
  std::vector<Action> actions, after;  // the first plan; the plan of `last`
  std::vector<Skipped> skipped, after_skipped;
  bool ran = false;       // handed to apply (actions, or blocked as a whole)
  std::string standby;    // with etcd: why this instance does not apply the group
  GroupApply result;      // of the last round
  size_t steps_ok = 0;    // over all rounds
  bool switched = false;  // a promotion or traffic switch succeeded
  double seconds = 0;
};

namespace {

void fill_outcome(GroupStatus& gs, const GroupRun& g) {
  gs.steps = g.steps_ok;
  gs.seconds = g.seconds;
  if (!g.standby.empty() && !gs.converged) {
    gs.outcome = GroupOutcome::standby;
    gs.reason = g.standby;
    return;
  }
  if (!g.ran) {
    gs.outcome = GroupOutcome::converged;
    if (!g.after_skipped.empty()) {
      gs.outcome = GroupOutcome::pending;
      gs.reason = std::string(to_string(g.after_skipped.front().kind)) + " " +
                  g.after_skipped.front().stack + " skipped: " + g.after_skipped.front().reason;
    }
    return;
  }
  const std::string detail = g.result.steps.empty() ? "" : g.result.steps.back().detail;
  switch (g.result.stopped) {
    case StepOutcome::ok:
    case StepOutcome::started:
      gs.outcome = g.switched ? GroupOutcome::switched : GroupOutcome::applied;
      return;
    case StepOutcome::blocked:
      gs.outcome = GroupOutcome::blocked;
      break;
    case StepOutcome::interrupted:
      gs.outcome = GroupOutcome::interrupted;
      break;
    case StepOutcome::failed:
    case StepOutcome::timeout:
    case StepOutcome::stale:
      gs.outcome = GroupOutcome::failed;
      break;
  }
  gs.reason = detail;
  if (!g.result.steps.empty()) {
    const Action& a = g.result.steps.back().action;
    std::string step = std::string(to_string(a.kind)) + " " + a.stack;
    if (g.result.stopped == StepOutcome::timeout) step += " timed out";
    if (g.result.stopped == StepOutcome::stale) step += " went stale";
    // Driver errors already start with the step's name.
    if (gs.reason.rfind(step, 0) != 0) gs.reason = step + ": " + gs.reason;
  }
}

// A fixed pool of workers taking tasks in the order they were queued; a task
// may queue more. Runs until nothing is queued or running.
class TaskPool {
 public:
  void push(std::function<void()> task) {  // called with mu() held
    queue_.push_back(std::move(task));
    ++pending_;
    cv_.notify_one();
  }
  std::mutex& mu() { return mu_; }
  std::condition_variable& cv() { return cv_; }
  void run(size_t workers) {
    std::vector<std::thread> threads;
    for (size_t w = 0; w < workers; ++w)
      threads.emplace_back([this] {
        std::unique_lock lock(mu_);
        for (;;) {
          cv_.wait(lock, [&] { return !queue_.empty() || pending_ == 0; });
          if (queue_.empty()) return;
          auto task = std::move(queue_.front());
          queue_.pop_front();
          lock.unlock();
          task();
          lock.lock();
          if (--pending_ == 0) cv_.notify_all();
        }
      });
    for (auto& t : threads) t.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t pending_ = 0;  // queued or running
};

}  // namespace

const char* to_string(GroupOutcome o) {
  switch (o) {
    case GroupOutcome::converged:
      return "converged";
    case GroupOutcome::switched:
      return "switched";
    case GroupOutcome::applied:
      return "applied";
    case GroupOutcome::failed:
      return "failed";
    case GroupOutcome::blocked:
      return "blocked";
    case GroupOutcome::interrupted:
      return "interrupted";
    case GroupOutcome::pending:
      return "pending";
    case GroupOutcome::standby:
      return "standby";
  }
  return "?";
}

std::string format_group_outcomes(const PassReport& rep, bool all) {
  std::string out;
  size_t hidden = 0;
  char secs[32];
  for (const auto& [name, g] : rep.groups) {
    if (!all && g.outcome == GroupOutcome::converged && g.outage.empty() &&
        g.override_note.empty()) {
      ++hidden;
      continue;
    }
    // The fact first (issue 14 item 6), then what a person may commit.
    if (!g.outage.empty()) out += "  " + name + ": " + g.outage + "\n";
    if (!g.decision.empty()) out += "  " + name + ": " + g.decision + "\n";
    if (!g.override_note.empty()) out += "  " + name + ": " + g.override_note + "\n";
    out += "  " + name + ": " + to_string(g.outcome);
    if (g.steps) {
      std::snprintf(secs, sizeof secs, "%.3f", g.seconds);
      out += ", " + std::to_string(g.steps) + (g.steps == 1 ? " step" : " steps") + " in " + secs +
             " s";
    }
    if (!g.reason.empty()) out += ": " + g.reason.substr(0, g.reason.find('\n'));
    out += "\n";
  }
  if (hidden && !out.empty())
    out += "  (" + std::to_string(hidden) + " other group" + (hidden == 1 ? "" : "s") +
           " converged)\n";
  return out;
}

std::vector<GroupRun> Reconciler::run_groups(const DesiredState& d, const ObservedState* last_known,
                                             const std::atomic<bool>* stop) {
  std::vector<GroupRun> runs;
  for (const auto& [name, g] : d.groups) {
    runs.emplace_back();
    runs.back().name = name;
    runs.back().spec = &g;
  }
  if (runs.empty()) return runs;
  auto with_last_known = [&](const std::string& name, GroupObs o) {
    if (!last_known) return o;
    ObservedState one;
    one.groups.emplace(name, std::move(o));
    fill_last_known(one, *last_known);
    return std::move(one.groups.begin()->second);
  };
  ApplyOptions ao = s_.apply;
  if (coord_) {
    ao.act_until = [c = coord_] { return c->act_until(); };
    ao.act_until_why = "this instance's etcd lease could expire (keep-alives unanswered)";
  }
  ao.origin = commit_;
  ao.stop_requested = stop;
  ao.parallelism = 1;  // one group per Applier call; the pool runs groups in parallel
  TaskPool pool;
  size_t observed = 0;
  bool gate_open = false;
  bool marked = false;  // gitops.converged set to 0 for this pass

  // Plan, apply and re-plan group i: the whole switch of one group, on one worker.
  auto apply_group = [&](size_t i) {
    GroupRun& g = runs[i];
    {
      std::lock_guard lock(pool.mu());
      if (auto h = holds_.find(g.name); h != holds_.end()) {
        std::string why = hold_reason(h->second, *g.spec, g.first, commit_);
        if (why.empty())
          holds_.erase(h), holds_changed_ = true;
        else
          g.block = g.block.empty() ? why : g.block + "; " + why;
      }
    }
    plan_group(*g.spec, g.first, g.actions, g.skipped, g.block);
    g.last = g.first;
    g.after = g.actions;
    g.after_skipped = g.skipped;
    if (g.actions.empty() && g.block.empty()) return;
    if (!behind_.empty()) {
      g.standby = behind_;
      return;
    }
    if (coord_ && !coord_->leads(g.name, &g.standby)) {
      if (g.standby.empty()) g.standby = "another instance leads this group";
      return;
    }
    g.ran = true;
    {
      std::lock_guard lock(pool.mu());
      if (!marked)
        if (Status s = store_.put(kConvergedKey, "0"); !s.ok()) store_failed(s);
      marked = true;
    }
    auto t0 = clock_.now();
    Plan current;
    current.actions = g.actions;
    if (!g.block.empty()) current.blocked_groups[g.name] = g.block;
    // A step found stale (the state moved after the plan was made, e.g. the
    // fenced old primary wrote WAL after replication into the standby
    // stopped) is re-planned at once, up to twice, rather than at the next
    // pass: here the commit is the approval, not one particular plan.
    for (int round = 0;; ++round) {
      ActionLog* log = coord_ ? &coord_->journal() : static_cast<ActionLog*>(&store_);
      // What this plan was made from: a stack it found silent is given a
      // short time to answer at each guard (apply.h, "Silent stacks").
      ObservedState planned;
      planned.groups.emplace(g.name, round == 0 ? g.first : g.last);
      ApplyOptions group_options = ao;
      group_options.planned_from = &planned;
      ApplyResult ar = Applier(d, fleet_, log, clock_).apply(current, group_options);
      g.result =
          ar.groups.empty() ? GroupApply{g.name, {}, StepOutcome::ok, "", ""} : ar.groups.front();
      if (!g.result.failed_safe.empty()) {
        std::lock_guard lock(pool.mu());
        holds_[g.name] =
            SwitchHold{commit_, g.spec->active, g.result.reopened, g.result.failed_safe};
        holds_changed_ = true;
      }
      for (const auto& st : g.result.steps) {
        if (st.outcome != StepOutcome::ok) continue;
        ++g.steps_ok;
        g.switched |= st.action.kind == ActionKind::database_promote ||
                      st.action.kind == ActionKind::traffic_switch;
      }
      g.last = with_last_known(g.name, fleet_.at(g.name)->observe());
      g.after.clear();
      g.after_skipped.clear();
      plan_group(*g.spec, g.last, g.after, g.after_skipped, g.block);
      if (g.result.stopped == StepOutcome::stale && round < 2 && !g.after.empty() &&
          !(stop && stop->load())) {
        spdlog::warn("group {}: the state changed during the pass; planning again ({} actions)",
                     g.name, g.after.size());
        current.actions = g.after;
        continue;
      }
      break;
    }
    g.seconds = std::chrono::duration<double>(clock_.now() - t0).count();
  };
  // Under pool.mu(): the cross-group check over every group observed so far.
  auto check_and_queue = [&](const std::vector<size_t>& which) {
    ObservedState seen;
    for (const GroupRun& g : runs)
      if (g.observed) seen.groups.emplace(g.name, g.first);
    auto blocks = shared_server_blocks(seen);
    for (size_t i : which) {
      if (auto b = blocks.find(runs[i].name); b != blocks.end()) runs[i].block = b->second;
      pool.push([&apply_group, i] { apply_group(i); });
    }
  };
  auto open_gate = [&] {  // under pool.mu()
    gate_open = true;
    std::vector<size_t> waiting;
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].observed) waiting.push_back(i);
    check_and_queue(waiting);
  };
  // The first observations are one pass (provider.h): a zone or list that
  // many groups share is read once. Re-observation after apply reads fresh.
  const ObservePass pass = ObservePass::begin();
  const auto observe_started = std::chrono::steady_clock::now();
  size_t observed_all = 0;
  {
    std::lock_guard lock(pool.mu());
    for (size_t i = 0; i < runs.size(); ++i)
      pool.push([&, i] {
        GroupDrivers& drivers = *fleet_.at(runs[i].name);
        auto silent = silent_next_.find(runs[i].name);
        GroupObs o = with_last_known(
            runs[i].name,
            silent == silent_next_.end()
                ? drivers.observe(pass)
                : drivers.observe_limited(silent->second, s_.apply.silent_limit, pass));
        std::lock_guard lock(pool.mu());
        runs[i].first = std::move(o);
        runs[i].observed = true;
        if (++observed_all == runs.size())
          record_observe_duration(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - observe_started)
                  .count());
        if (gate_open) {
          check_and_queue({i});  // late: goes ahead at once
        } else if (++observed == runs.size()) {
          open_gate();
          pool.cv().notify_all();
        }
      });
  }
  // The gate's timer: opens it when the bound passes before every group is observed.
  std::thread timer([&] {
    std::unique_lock lock(pool.mu());
    auto deadline = std::chrono::steady_clock::now() + s_.observe_gate;
    if (!pool.cv().wait_until(lock, deadline, [&] { return gate_open; })) {
      spdlog::warn("{} of {} groups observed after {} ms; the others go ahead", observed,
                   runs.size(), s_.observe_gate.count());
      open_gate();
    }
  });
  pool.run(std::min<size_t>(runs.size(), static_cast<size_t>(std::max(1, s_.apply.parallelism))));
  timer.join();
  return runs;
}

namespace {
const std::string kOne = "1", kZero = "0";
}  // namespace

void Reconciler::adopt(std::string commit, std::string text, DesiredState d) {
  fleet_.clear();  // drivers refer to the old desired state
  {
    std::lock_guard lock(desired_mu_);
    desired_ = std::make_shared<const DesiredState>(std::move(d));
  }
  commit_ = std::move(commit);
  // Stored before anything is applied: a restart resumes toward this commit.
  for (auto [k, v] : {std::pair<const char*, const std::string*>{kCommitKey, &commit_},
                      {kConfigKey, &text},
                      {kFileKey, &desired_->source},
                      {kVerifiedKey, s_.require_signed ? &kOne : &kZero}})
    if (Status s = store_.put(k, *v); !s.ok()) {
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
  auto commit = store_.get(kCommitKey);
  auto text = store_.get(kConfigKey);
  auto file = store_.get(kFileKey);
  if (!commit.ok()) return commit.status();
  if (!text.ok()) return text.status();
  if (!commit->has_value() || !text->has_value()) return Status::Ok();
  // Signatures required now but the commit in force was adopted without a
  // check: do not trust it; the head is verified like a new commit.
  auto verified = store_.get(kVerifiedKey);
  if (s_.require_signed && !(verified.ok() && *verified && **verified == "1")) return Status::Ok();
  std::string name = file.ok() && file->has_value() ? **file : s_.file;
  LoadResult lr = load_desired_text(name, **text);
  if (!lr.desired)
    return Err("the stored config of commit " + short_sha(**commit) + " no longer loads:\n" +
               format_diagnostics(lr.errors));
  fleet_.clear();
  {
    std::lock_guard lock(desired_mu_);
    desired_ = std::make_shared<const DesiredState>(std::move(*lr.desired));
  }
  commit_ = **commit;
  // The last pass before the restart converged: a group found down now was
  // settled (automatic failover may act).
  auto converged = store_.get(kConvergedKey);
  converged_at_start_ = converged.ok() && *converged && **converged == "1";
  return Status::Ok();
}

PassReport Reconciler::pass(const std::atomic<bool>* stop) {
  PassReport rep;
  const auto t0 = clock_.now();
  rep.run.started_at = clock_.rfc3339_now();
  rep.run.ref = s_.ref;
  store_error_.clear();
  if (!restored_) {
    if (Status s = restore_from_store(); !s.ok()) store_failed(s);
  }
  std::string bad_result = "invalid";
  std::string error = follow_head(rep, bad_result);
  if (coord_ && !error.empty() && bad_result == "invalid")
    coord_->publish_invalid_head(rep.run.commit, error);
  if (!error.empty()) {
    rep.run.error = error;
    if (!desired_) return finish(rep, t0, bad_result, 1);
    rep.run.error +=
        "\n(drift is corrected against the last valid commit " + short_sha(commit_) + ")";
  }
  auto [result, code] = apply_commit_in_force(rep, stop);
  if (!error.empty()) return finish(rep, t0, bad_result, 1);
  return finish(rep, t0, result, code);
}

std::string Reconciler::follow_head(PassReport& rep, std::string& bad_result) {
  auto head = source_.fetch();
  if (!head.ok()) {
    bad_result = "failed";
    rep.run.commit = commit_;
    return head.error().message;
  }
  rep.run.commit = *head;
  if (coord_) follow_shared_commit(*head);  // after the fetch: the shared commit is here now
  if (*head == commit_ && desired_) {
    rep.idle = true;
    return "";
  }
  bool rewinds = false;
  if (std::string why = rewind_error(*head, rewinds); !why.empty()) return why;
  if (s_.require_signed) {
    auto sig = source_.signature(*head);
    Status verified = sig.ok() ? verify_commit_signature(*head, *sig, s_.trust) : sig.status();
    if (!verified.ok()) return verified.message();
  }
  auto text = source_.read_file(*head, s_.file);
  if (!text.ok()) return text.error().message;
  LoadResult lr = load_desired_text(s_.file, *text);
  if (!lr.desired) {
    std::string error =
        "commit " + short_sha(*head) + " is invalid:\n" + format_diagnostics(lr.errors);
    while (!error.empty() && error.back() == '\n') error.pop_back();
    return error;
  }
  if (rewinds) rewind_allowed_ = false;  // --allow-rewind is good for one rewind
  rewound_ = rewinds;
  adopt(*head, std::move(*text), std::move(*lr.desired));
  return "";
}

void Reconciler::share_commit_in_force() {
  behind_.clear();
  std::string shared = coord_->shared_commit();
  if (shared == commit_) {
    rewound_ = false;
    return;
  }
  if (rewound_) {
    spdlog::warn("--allow-rewind: commit {} replaces the shared commit in force {}",
                 short_sha(commit_), short_sha(shared));
    rewound_ = false;
  } else if (!shared.empty()) {
    auto newer = source_.descends_from(commit_, shared);
    if (!newer.ok() || !*newer) {
      behind_ = "the other instances apply commit " + short_sha(shared) +
                ", which this instance does not have (or which does not descend from " +
                short_sha(commit_) +
                "); applying nothing until it does (if that commit is gone from the branch for "
                "good, delete the shared key: etcdctl del <etcd-prefix>commit)";
      return;
    }
  }
  coord_->publish_commit(commit_);
}

void Reconciler::follow_shared_commit(const std::string& head) {
  std::string shared = coord_->shared_commit();
  if (shared.empty() || shared == commit_) return;
  if (!commit_.empty() && shared != head) {
    auto d = source_.descends_from(shared, commit_);
    if (!d.ok() || !*d) return;  // older, or not fetched yet: the head decides
  }
  if (s_.require_signed) {
    auto sig = source_.signature(shared);
    Status verified = sig.ok() ? verify_commit_signature(shared, *sig, s_.trust) : sig.status();
    if (!verified.ok()) return;
  }
  auto text = source_.read_file(shared, s_.file);
  if (!text.ok()) return;
  LoadResult lr = load_desired_text(s_.file, *text);
  if (!lr.desired) return;
  spdlog::info("following the commit in force of the other instances: {}", short_sha(shared));
  adopt(shared, std::move(*text), std::move(*lr.desired));
}

Result<std::map<std::string, std::string>> Reconciler::load_overrides() {
  if (coord_) return coord_->overrides();
  auto v = store_.get(kOverridesKey);
  if (!v.ok()) return v.error();
  std::map<std::string, std::string> out;
  rapidjson::Document doc;
  if (!*v || parse_json_input(**v, doc) || !doc.IsObject()) return out;
  for (const auto& m : doc.GetObject())
    if (m.value.IsString()) out[m.name.GetString()] = m.value.GetString();
  return out;
}

namespace {
std::string overrides_object(const std::map<std::string, std::string>& all) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  for (const auto& [g, j] : all) {
    w.Key(g.c_str());
    w.String(j.c_str(), static_cast<rapidjson::SizeType>(j.size()));
  }
  w.EndObject();
  return buf.GetString();
}
}  // namespace

Status Reconciler::save_override(const std::string& group, const std::string& json) {
  if (coord_) return coord_->put_override(group, json);
  auto all = load_overrides();
  if (!all.ok()) return all.error();
  (*all)[group] = json;
  return store_.put(kOverridesKey, overrides_object(*all));
}

Status Reconciler::drop_override(const std::string& group) {
  if (coord_) return coord_->delete_override(group);
  auto all = load_overrides();
  if (!all.ok()) return all.error();
  all->erase(group);
  return store_.put(kOverridesKey, overrides_object(*all));
}

const DesiredState& Reconciler::effective_desired() {
  overrides_.clear();
  // Only automatic failovers make overrides: without a group that has
  // auto_failover nothing is read (no etcd request per pass for them).
  const bool any_auto =
      std::any_of(desired_->groups.begin(), desired_->groups.end(),
                  [](const auto& g) { return g.second.auto_failover.has_value(); });
  auto all = any_auto
                 ? load_overrides()
                 : Result<std::map<std::string, std::string>>(std::map<std::string, std::string>());
  if (!all.ok()) {
    // Unknown overrides: keep planning against what was planned last (an
    // override seen before stays in force; none is dropped).
    spdlog::error("automatic failover overrides cannot be read: {}", all.error().message);
    if (effective_ && effective_key_.rfind(commit_, 0) == 0) return *effective_;
    all = std::map<std::string, std::string>();
  }
  std::string key = commit_;
  std::string text;
  for (const auto& [group, json] : *all) {
    auto o = parse_override(json);
    auto g = desired_->groups.find(group);
    if (!o || g == desired_->groups.end() || g->second.active == o->active) {
      // A commit agrees (or the group is gone, or it is not ours): done.
      spdlog::info("group {}: the override of the automatic failover is over ({})", group,
                   !o ? "unreadable"
                   : g == desired_->groups.end()
                       ? "no such group any more"
                       : "commit " + short_sha(commit_) + " has the same active:");
      if (Status st = drop_override(group); !st.ok())
        spdlog::error("group {}: cannot delete the override: {}", group, st.message());
      continue;
    }
    overrides_[group] = json;
    key += "\n" + group + "\n" + json;
  }
  if (key != effective_key_) {
    fleet_.clear();  // drivers refer to the desired state they were made for
    effective_key_ = key;
    effective_ = desired_;
    if (!overrides_.empty()) {
      auto t = source_.read_file(commit_, s_.file);
      std::string edited = t.ok() ? *t : "";
      std::string error = t.ok() ? "" : t.error().message;
      for (const auto& [group, json] : overrides_) {
        if (!error.empty()) break;
        auto o = parse_override(json);
        auto e = edit_failover(s_.file, edited, group, o->active, o->allow_data_loss);
        if (e.ok())
          edited = std::move(*e);
        else
          error = e.error().message;
      }
      LoadResult lr;
      if (error.empty()) lr = load_desired_text(s_.file, edited);
      if (error.empty() && lr.desired)
        effective_ = std::make_shared<const DesiredState>(std::move(*lr.desired));
      else
        spdlog::error("the overrides cannot be applied to commit {}: {}", short_sha(commit_),
                      error.empty() ? format_diagnostics(lr.errors) : error);
    }
  }
  return *effective_;
}

void Reconciler::push_overrides(PassReport& rep) {
  for (const auto& [group, json] : overrides_) {
    auto o = parse_override(json);
    rep.groups[group].override_note =
        "override in force, not yet in Git: `active: " + o->active + "`" +
        (o->allow_data_loss ? " with `allow_data_loss: true`" : "") + " (automatic failover by " +
        o->decided_by + " at " + o->decided_at + ")";
  }
  // Only on the commit in force as the branch head (Git answered this
  // pass), and with etcd only by the groups' leader: one instance pushes.
  if (overrides_.empty() || rep.run.commit != commit_) return;
  if (coord_)
    for (const auto& [group, json] : overrides_)
      if (!coord_->leads(group, nullptr)) return;
  auto text = source_.read_file(commit_, s_.file);
  if (!text.ok()) return;
  std::string edited = *text, message;
  for (const auto& [group, json] : overrides_) {
    auto o = parse_override(json);
    auto e = edit_failover(s_.file, edited, group, o->active, o->allow_data_loss);
    if (!e.ok()) return;
    edited = std::move(*e);
    message += (message.empty() ? "" : "\n\n") + o->message;
  }
  CommitRequest c;
  c.parent = commit_;
  c.path = s_.file;
  c.text = edited;
  while (!message.empty() && message.back() == '\n') message.pop_back();
  c.message = message +
              "\n\n(Pushed after Git could not be reached; in force as an override "
              "until now.)\n";
  c.signing_key = s_.commit_signing_key;
  PushResult pushed = source_.commit_and_push(c);
  for (const auto& [group, json] : overrides_) {
    std::string& note = rep.groups[group].override_note;
    note += pushed.ok() ? "; pushed as " + short_sha(pushed.commit) + " now"
                        : "; pushing it: " + pushed.error;
  }
  if (pushed.ok()) {
    spdlog::warn("automatic failover override pushed as {}", short_sha(pushed.commit));
    rep.again = true;  // the next pass adopts it, which ends the override
  }
}

std::vector<std::string> Reconciler::self_fence() {
  std::shared_ptr<const DesiredState> d;
  {
    std::lock_guard lock(desired_mu_);
    d = desired_;
  }
  std::vector<std::string> out;
  if (!d || s_.site.empty()) return out;
  for (const auto& [name, g] : d->groups) {
    auto active = g.stacks.find(g.active);
    if (!g.auto_failover || !g.auto_failover->self_fence || active == g.stacks.end() ||
        active->second.site != s_.site)
      continue;
    // On record in this instance's own journal (the shared one, in etcd,
    // is what it was cut off from). The fence does not wait for the
    // record: a journal that cannot be written is logged, and the fence
    // goes ahead (it only ever stops writes).
    Action a;
    a.group = name;
    a.kind = ActionKind::maintenance_on;
    a.stack = g.active;
    const std::string origin = "self-fence: cut off from etcd in site " + s_.site;
    auto entry = store_.begin(a, origin);
    if (!entry.ok())
      spdlog::error("self-fencing: group {}: journal: {}", name, entry.error().message);
    const auto t0 = std::chrono::steady_clock::now();
    auto driver = factory_.stack_driver(*d, g, g.active);
    Status st = driver.ok() ? (*driver)->fence_now() : driver.status();
    if (entry.ok()) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count();
      if (Status s =
              store_.finish(*entry, st.ok() ? "ok" : "failed", st.ok() ? "" : st.message(), ms);
          !s.ok())
        spdlog::error("self-fencing: group {}: journal: {}", name, s.message());
    }
    std::string line = "self-fencing: group " + name + ": maintenance on " + g.active +
                       (st.ok() ? "" : " failed: " + st.message());
    if (st.ok())
      spdlog::warn("{} (cut off from etcd in site {}; another site may promote)", line, s_.site);
    else
      spdlog::error("{}", line);
    out.push_back(std::move(line));
  }
  return out;
}

const std::string& Reconciler::seen_by() {
  if (seen_by_.empty()) {
    seen_by_ = s_.instance;
    if (seen_by_.empty()) {
      char host[256] = {0};
      ::gethostname(host, sizeof host - 1);
      seen_by_ = "stackflip on " + std::string(host);
    }
  }
  return seen_by_;
}

void Reconciler::note_outages(PassReport& rep, const DesiredState& d,
                              const std::vector<GroupRun>& runs, const std::string& now,
                              int64_t now_ms) {
  for (const GroupRun& g : runs) {
    if (!g.observed) continue;
    const GroupSpec& spec = d.groups.at(g.name);
    auto active = g.last.stacks.find(spec.active);
    const bool down = active != g.last.stacks.end() && stack_failing(active->second);
    if (!down) {
      down_since_.erase(g.name);
      down_since_ms_.erase(g.name);
      settled_.erase(g.name);
      continue;
    }
    // DECISION (issue 14): failing since the start of the observation that
    // found it failing, not its end. A stack that does not answer is seen so
    // only when the driver's timeout runs out (2 s, twice over for a kept
    // session that first has to time out itself), yet nothing it was asked
    // from the start on was answered: it has been failing for all that time,
    // and `after` counts from there. When the pass's first observation still
    // saw it up (it went down during this pass's apply), from now.
    auto at_start = g.first.stacks.find(spec.active);
    const bool down_at_start = at_start != g.first.stacks.end() && stack_failing(at_start->second);
    auto [since, first] = down_since_.emplace(g.name, down_at_start ? now : clock_.rfc3339_now());
    if (first) {
      down_since_ms_[g.name] = down_at_start ? now_ms : clock_.unix_ms();
      settled_[g.name] = converged_at_start_ || converged_.count(g.name);
    }
    if (auto advice = advise_outage(spec, g.last, since->second, seen_by())) {
      rep.groups[g.name].outage = advice->fact;
      rep.groups[g.name].decision = advice->decision;
    }
  }
  push_overrides(rep);
  auto_failover(rep, d, runs);
  std::string text;
  for (const auto& [name, gs] : rep.groups) {
    if (!gs.outage.empty())
      text += gs.outage + "\n" + (gs.decision.empty() ? "" : gs.decision + "\n");
    if (!gs.override_note.empty()) text += "group " + name + ": " + gs.override_note + "\n";
  }
  if (text != outages_stored_) {  // written when it changes, not every pass
    if (Status s = store_.put(kOutagesKey, text); !s.ok())
      store_failed(s);
    else
      outages_stored_ = text;
  }
}

void Reconciler::auto_failover(PassReport& rep, const DesiredState& d,
                               const std::vector<GroupRun>& runs) {
  struct Go {
    const GroupSpec* spec;
    AutoFailoverDecision decision;
    std::set<std::string> silent;  // its stacks that timed out in this pass
  };
  std::vector<Go> go;
  const int64_t now = clock_.unix_ms();
  // This instance's verdicts: what it saw of every group with auto_failover.
  auto own_verdict = [&](const GroupRun& g, int64_t since) {
    const StackObs& a = g.last.stacks.at(d.groups.at(g.name).active);
    return WitnessVerdict{seen_by(),
                          s_.site.empty() ? "unknown" : s_.site,
                          true,
                          since,
                          down_since_[g.name],
                          a.reachable ? "health check: " + a.health_error : a.error};
  };
  if (coord_) {
    std::map<std::string, WitnessVerdict> failing;
    for (const GroupRun& g : runs)
      if (auto since = down_since_ms_.find(g.name);
          since != down_since_ms_.end() && d.groups.at(g.name).auto_failover && g.observed)
        failing.emplace(g.name, own_verdict(g, since->second));
    coord_->publish_verdicts(failing);
  }
  for (const GroupRun& g : runs) {
    const GroupSpec& spec = d.groups.at(g.name);
    auto since = down_since_ms_.find(g.name);
    if (!spec.auto_failover || !g.observed || since == down_since_ms_.end()) continue;
    if (coord_ && !coord_->leads(g.name, nullptr)) continue;  // its leader decides
    GroupStatus& gs = rep.groups[g.name];
    auto not_now = [&](const std::string& why) {
      gs.decision =
          "automatic failover held back: " + why + (gs.decision.empty() ? "" : "; " + gs.decision);
    };
    if (coord_ && s_.lease_ttl.count() > 0 &&
        spec.auto_failover->after_ms < s_.lease_ttl.count() + 1000) {
      not_now("auto_failover.after " + format_duration_ms(spec.auto_failover->after_ms) +
              " is not longer than the etcd lease (" + format_duration_ms(s_.lease_ttl.count()) +
              ") plus 1s: an old primary cut off with its site might not be fenced by its own "
              "instance before another site promotes");
      continue;
    }
    AutoFailoverInput in;
    in.coordinated = coord_ != nullptr;
    if (coord_) {
      auto v = coord_->verdicts(g.name);
      if (!v.ok()) {
        not_now(v.error().message);
        continue;
      }
      in.verdicts = std::move(*v);
      in.live_instances = in.verdicts.size();
    } else {
      in.verdicts.push_back(own_verdict(g, since->second));
    }
    in.now_ms = now;
    in.settled = settled_[g.name];
    if (coord_) {
      auto last = coord_->last_auto_failover(g.name);
      if (!last.ok()) {
        not_now("its cooldown cannot be read from etcd: " + last.error().message);
        continue;
      }
      in.last_auto_failover_ms = *last;
    } else {
      auto last = store_.get(kAutoFailoverKey + g.name);
      if (!last.ok()) {
        store_failed(last.status());
        not_now("its cooldown cannot be read from the state store");
        continue;
      }
      if (*last) in.last_auto_failover_ms = std::strtoll((*last)->c_str(), nullptr, 10);
    }
    in.decided_by = seen_by();
    in.decided_at = clock_.rfc3339_now();
    AutoFailoverDecision dec = decide_auto_failover(spec, g.last, in);
    if (dec.go) {
      std::set<std::string> silent;
      for (const auto& [name, st] : g.last.stacks)
        if (!st.reachable && st.timed_out) silent.insert(name);
      go.push_back({&spec, std::move(dec), std::move(silent)});
    } else if (dec.person_decides) {
      not_now(dec.why);
    } else if (!dec.why.empty()) {
      const int64_t left =
          std::max<int64_t>(0, spec.auto_failover->after_ms - (now - since->second));
      gs.decision = "automatic failover in " + format_duration_ms(std::max<int64_t>(left, 1)) +
                    " if " + spec.active + " stays down (" + dec.why + ")" +
                    (gs.decision.empty() ? "" : "; else " + gs.decision);
      const auto wait = std::chrono::milliseconds(left + 50);
      if (!rep.next_within || wait < *rep.next_within) rep.next_within = wait;
      // The pass that may decide it observes what was silent just now with
      // the short limit too (silent_next_), but only after an observation
      // with the whole timeout: a stack that answers, slowly, is never
      // taken for down by limited observations alone.
      for (const auto& [name, st] : g.last.stacks)
        if (!st.reachable && st.timed_out &&
            !(limited_now_.count(spec.name) && limited_now_.at(spec.name).count(name)))
          silent_next_[spec.name].insert(name);
    }
  }
  if (go.empty()) return;
  auto held = [&](const std::string& why) {
    for (const Go& g : go) {
      GroupStatus& gs = rep.groups[g.spec->name];
      gs.decision = "automatic failover to " + g.decision.to + " held back: " + why +
                    (gs.decision.empty() ? "" : "; " + gs.decision);
    }
  };
  // With signatures required, an unsigned commit of ours would be refused by
  // this very loop: the failover would never apply.
  if (s_.require_signed && s_.commit_signing_key.empty()) {
    held(
        "with --require-signed, stackflip's own commit needs --commit-signing-key (its public "
        "key in the allowed signers); a person decides");
    return;
  }
  // One commit, on the commit in force only: a branch head that is not (an
  // invalid commit, a change not adopted yet) is a person's work under way.
  if (rep.run.commit != commit_) {
    held("the branch head " + short_sha(rep.run.commit) + " is not the commit in force " +
         short_sha(commit_) + ": a person decides");
    return;
  }
  auto text = source_.read_file(commit_, s_.file);
  if (!text.ok()) return held("cannot read " + s_.file + ": " + text.error().message);
  std::string edited = *text, subject, body;
  for (const Go& g : go) {
    auto e =
        edit_failover(s_.file, edited, g.spec->name, g.decision.to, g.decision.allow_data_loss);
    if (!e.ok()) return held(e.error().message);
    edited = std::move(*e);
    subject = g.decision.subject;
    body += (body.empty() ? "" : "\n") + g.decision.evidence;
  }
  if (go.size() > 1) {
    subject = "stackflip: fail over " + std::to_string(go.size()) + " groups:";
    for (const Go& g : go) subject += " " + g.spec->name;
  }
  CommitRequest c;
  c.parent = commit_;
  c.path = s_.file;
  c.text = edited;
  c.message = subject + "\n\n" + body;
  c.signing_key = s_.commit_signing_key;
  PushResult pushed = source_.commit_and_push(c);
  if (!pushed.ok() && pushed.failure != PushFailure::unreachable) {
    spdlog::error("automatic failover: {}", pushed.error);
    if (pushed.failure == PushFailure::moved) rep.again = true;  // decide again on the new head
    return held(pushed.error + "; trying again next pass");
  }
  if (!pushed.ok()) {
    // Git cannot be reached: the failover happens all the same, as an
    // override that wins over the commit in force until a commit agrees.
    spdlog::error("automatic failover: {}; keeping it as an override", pushed.error);
    for (const Go& g : go) {
      Override o{g.decision.to, g.decision.allow_data_loss, seen_by(), clock_.rfc3339_now(),
                 g.decision.subject + "\n\n" + g.decision.evidence};
      if (Status st = save_override(g.spec->name, override_json(o)); !st.ok()) {
        GroupStatus& gs = rep.groups[g.spec->name];
        gs.decision = "automatic failover to " + g.decision.to + " held back: " + pushed.error +
                      ", and it cannot be kept as an override: " + st.message() + "; " +
                      gs.decision;
        go.erase(
            std::remove_if(go.begin(), go.end(), [&](const Go& x) { return x.spec == g.spec; }),
            go.end());
        break;  // `go` changed; the others are told below
      }
    }
  }
  const std::string at = std::to_string(now);
  for (const Go& g : go) {
    // The next pass applies the failover: what did not answer just now
    // gets a short time to answer there too (silent_next_).
    if (!g.silent.empty()) silent_next_[g.spec->name] = g.silent;
    if (Status s = store_.put(kAutoFailoverKey + g.spec->name, at); !s.ok()) store_failed(s);
    if (coord_)
      if (Status s = coord_->record_auto_failover(g.spec->name, now); !s.ok())
        spdlog::error("automatic failover of {}: cannot record it in etcd for its cooldown: {}",
                      g.spec->name, s.message());
    GroupStatus& gs = rep.groups[g.spec->name];
    if (!pushed.ok()) {
      gs.decision = "stackflip decided the failover to " + g.decision.to +
                    (g.decision.allow_data_loss ? " with `allow_data_loss: true`" : "") +
                    " but cannot push it (" + pushed.error + "): it is in force as an override " +
                    (coord_ ? "in etcd" : "in the state store") +
                    " from the next pass on, and pushed when Git answers";
      spdlog::warn("group {}: automatic failover to {} kept as an override", g.spec->name,
                   g.decision.to);
      continue;
    }
    gs.decision = "stackflip committed the failover to " + g.decision.to +
                  (g.decision.allow_data_loss ? " with `allow_data_loss: true`" : "") + " as " +
                  short_sha(pushed.commit) + (c.signing_key.empty() ? "" : " (signed)") +
                  "; the next pass applies it";
    spdlog::warn("group {}: automatic failover to {} committed as {}", g.spec->name, g.decision.to,
                 short_sha(pushed.commit));
  }
  rep.again = true;
}

void Reconciler::load_holds(const DesiredState& d) {
  holds_.clear();
  holds_changed_ = false;
  if (auto held = store_.get(kHeldKey); !held.ok())
    store_failed(held.status());
  else if (*held)
    holds_ = holds_from_json(**held);
  for (auto it = holds_.begin(); it != holds_.end();)  // groups gone from the config
    if (!d.groups.count(it->first))
      it = holds_.erase(it), holds_changed_ = true;
    else
      ++it;
}

std::pair<std::string, int> Reconciler::apply_commit_in_force(PassReport& rep,
                                                              const std::atomic<bool>* stop) {
  const DesiredState& d = effective_desired();
  rep.commit_in_force = commit_;
  rep.desired = effective_;
  if (commit_info_.sha != commit_) {  // once per commit: it never changes
    auto info = source_.commit_info(commit_);
    commit_info_ = info.ok() ? *info : CommitInfo{commit_, "", "", ""};
  }
  rep.commit_info = commit_info_;
  if (coord_) share_commit_in_force();
  rep.run.desired_digest = d.digest;
  if (fleet_.empty()) fleet_ = make_fleet(d, factory_);
  // DESIGN.md: unreachable stacks "as last known", from the last observation.
  StoredLastKnown stored(store_);
  LastKnown& memory = coord_ ? coord_->last_known() : stored;
  if (coord_) {
    std::vector<GroupSite> sites;
    for (const auto& [name, g] : d.groups) {
      auto st = g.stacks.find(g.active);
      sites.push_back({name, st == g.stacks.end() ? g.active : st->second.site});
    }
    coord_->set_groups(sites);
  }
  std::optional<ObservedState> last_known;
  if (auto last = memory.load(); !last.ok())
    store_failed(last.status());
  else
    last_known = std::move(*last);
  // Groups whose switch failed safe on this commit are held (switch_hold.h).
  load_holds(d);
  std::string observed_at = clock_.rfc3339_now();
  const int64_t observed_ms = clock_.unix_ms();
  std::vector<GroupRun> runs = run_groups(d, last_known ? &*last_known : nullptr, stop);
  limited_now_ = std::move(silent_next_);  // for one pass only
  silent_next_.clear();
  if (holds_changed_)
    if (Status s = store_.put(kHeldKey, holds_to_json(holds_)); !s.ok()) store_failed(s);

  // The pass as a whole, assembled in group name order as make_plan orders it.
  ObservedState first_obs, obs;
  first_obs.observed_at = observed_at;
  obs.observed_at = clock_.rfc3339_now();
  Plan plan, after;
  plan.desired_digest = after.desired_digest = d.digest;
  ApplyResult applied;
  bool any_work = false;
  for (GroupRun& g : runs) {
    first_obs.groups[g.name] = g.first;
    obs.groups[g.name] = g.last;
    plan.actions.insert(plan.actions.end(), g.actions.begin(), g.actions.end());
    plan.skipped.insert(plan.skipped.end(), g.skipped.begin(), g.skipped.end());
    after.actions.insert(after.actions.end(), g.after.begin(), g.after.end());
    after.skipped.insert(after.skipped.end(), g.after_skipped.begin(), g.after_skipped.end());
    if (!g.block.empty()) plan.blocked_groups[g.name] = after.blocked_groups[g.name] = g.block;
    if (std::string e = config_error_of(g.first); !e.empty()) {
      plan.config_errors[g.name] = e;
      if (!rep.run.error.empty()) rep.run.error += "\n";
      rep.run.error += "group " + g.name + ": configuration error: " + e;
    }
    if (!g.ran) continue;
    any_work = true;
    applied.groups.push_back(g.result);
    if (g.result.stopped != StepOutcome::ok && !g.result.steps.empty()) {
      if (!rep.run.error.empty()) rep.run.error += "\n";
      rep.run.error += "group " + g.name + " stopped (" + to_string(g.result.stopped) +
                       "): " + g.result.steps.back().detail;
    }
  }
  plan.observed_digest = observed_digest(first_obs);
  after.observed_digest = observed_digest(obs);
  if (Status s = memory.remember(obs); !s.ok()) store_failed(s);
  rep.run.plan_digest = sha256_hex(plan_to_json(plan, false));
  rep.run.actions = static_cast<int>(plan.actions.size());
  // A rejected credential is an error, not a guard (issue 12): exit 1, "failed".
  int code = plan.config_errors.empty() ? applied.exit_code() : 1;
  // With etcd: work found, none of it this instance's to do (another leads
  // it, or etcd is unreachable) is "standby", not "no-changes".
  bool standing_by = std::any_of(runs.begin(), runs.end(), [](const GroupRun& g) {
    return !g.standby.empty() && !g.actions.empty();
  });
  std::string result = !any_work && code == 0 ? (standing_by ? "standby" : "no-changes")
                       : code == 0            ? "applied"
                       : code == 3            ? "blocked"
                                              : "failed";
  fill_groups(rep, d, plan, after, obs);
  for (const GroupRun& g : runs) fill_outcome(rep.groups[g.name], g);
  note_outages(rep, d, runs, observed_at, observed_ms);
  for (const auto& [name, e] : plan.config_errors) {
    GroupStatus& gs = rep.groups[name];
    gs.config_error = true;
    gs.outcome = GroupOutcome::failed;
    gs.reason = "configuration error: " + e;
  }
  rep.observed = obs;
  converged_.clear();
  converged_at_start_ = false;
  for (const auto& [name, gs] : rep.groups)
    if (gs.converged) converged_.insert(name);
  if (Status s = store_.put(kConvergedKey, rep.converged() ? "1" : "0"); !s.ok()) store_failed(s);
  return {result, code};
}

PassReport Reconciler::finish(PassReport& rep, Clock::Duration t0, const std::string& result,
                              int code) {
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
  if (Status s = store_.record_run(rep.run); !s.ok()) {
    store_failed(Err("cannot record the run: " + s.message()));
    add_error("state store: " + store_error_);
  }
  // A pass that cannot keep its record is not a success, whatever it did.
  rep.state_store_error = store_error_;
  if (!store_error_.empty() && rep.exit_code == 0) rep.exit_code = 1;
  notify(rep, result);
  return rep;
}

// Notifies on applied, failed/invalid and blocked, and on state store
// failures; the same outcome for the same commit (an invalid head seen every
// pass) is told once.
void Reconciler::notify(const PassReport& rep, const std::string& result) {
  // Outages of the groups this instance leads lead the message (issue 14
  // item 6); one that goes on is told once, as its "down since" stays.
  std::string outages;
  for (const auto& [name, g] : rep.groups)
    if (!g.outage.empty() && g.outcome != GroupOutcome::standby &&
        (!coord_ || coord_->leads(name, nullptr)))
      outages += g.outage + (g.decision.empty() ? "" : "\n" + g.decision) + "\n";
  std::string notice = result + " " + rep.run.commit + " " + rep.run.error + " " + outages;
  auto repeated = [&] {
    if (result == "applied") return false;
    if (notice == last_notice_) return true;
    auto last = store_.get(kNoticeKey);
    return last.ok() && *last && **last == notice;
  };
  bool quiet =
      (result == "no-changes" || result == "standby") && outages.empty();  // the leader tells
  if (!notifier_ || (quiet && store_error_.empty()) || repeated()) return;
  last_notice_ = notice;
  (void)store_.put(kNoticeKey, notice);
  std::string text = outages + "stackflip " + source_.describe() + " @ " +
                     short_sha(rep.run.commit) + ": " + result;
  if (rep.run.actions) text += " (" + std::to_string(rep.run.actions) + " actions)";
  if (!rep.run.error.empty()) text += "\n" + rep.run.error;
  notifier_->notify(result == "invalid" || result == "no-changes" ? "failed" : result, text);
}

}  // namespace stackflip
