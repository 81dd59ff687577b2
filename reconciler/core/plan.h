// plan.h — the plan: an ordered list of guarded actions per group.
//
// A Plan is produced by the pure planner (planner.h) and consumed by the
// renderers (render.h) and by apply (apply.h). Actions of one group run in
// order; a `blocked` action and everything after it in its group do not run.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stackflip {

enum class ActionKind {
  maintenance_on,     // stack: stop new writes
  replication_wait,   // stack: until it replayed `source`'s write position
  replication_stop,   // stack: stop streaming from its upstream
  database_promote,   // stack: become the writable primary
  maintenance_off,    // stack: accept writes again
  traffic_switch,     // group: point traffic at `stack`
  replication_start,  // stack: stream from `source`
  // Issue 15: what clients see during a planned switch.
  traffic_ttl,     // group: lower each address's TTL to its switch_ttl (`stack`: where it points)
  traffic_wait,    // group: until resolvers forgot answers with the previous TTL (wait_ms)
  traffic_pause,   // group: a pooler holds its clients' queries (PgBouncer PAUSE)
  traffic_resume,  // group: the pooler lets them go (RESUME), to `stack`
  // Issue 17: replace `stack`'s data with a base backup of `source` and make
  // it a replica streaming from it (opt-in: `bootstrap: basebackup`).
  // Destructive: Action::removes says what it removes.
  replication_bootstrap,
};
const char* to_string(ActionKind k);  // "maintenance.on", ...
std::optional<ActionKind> parse_action_kind(const std::string& s);

struct Action {
  std::string group;
  ActionKind kind = ActionKind::maintenance_on;
  std::string stack;   // target stack (traffic.switch: the stack traffic goes to)
  std::string source;  // replication.wait/start: the stack replicated from
  std::string reason;  // which desired field and which observed fact
  std::string guard;   // what must hold just before it runs
  // traffic.wait: the previous TTL, counted from when traffic.ttl lowered it
  // (apply reads that moment from the journal: ActionLog::last_ok).
  int64_t wait_ms = 0;
  // database.promote forced by `allow_data_loss: true`: what it may lose
  // ("up to 1.2 MiB (last known lag)"); apply journals it with the step, so
  // the status page's timeline shows the window. "" = no loss accepted.
  // Not part of a saved plan (plan_json.h).
  std::string data_loss;
  // replication.bootstrap (issue 17): the step destroys data on its stack;
  // `removes` says what ("databases shop (1.2 GiB), postgres (7.4 MiB)").
  // Saved in a plan file as `destructive` and `removes`.
  bool destructive = false;
  std::string removes;
  bool blocked = false;
  std::string why_blocked;
};

// A step of the runbook the planner left out, and why (e.g. fencing an
// unreachable old primary). Shown to the operator; never executed.
struct Skipped {
  std::string group;
  ActionKind kind = ActionKind::maintenance_on;
  std::string stack;
  std::string reason;
};

struct Plan {
  std::string desired_digest;   // sha256 of the config file
  std::string observed_digest;  // sha256 of the canonical observed snapshot
  std::vector<Action> actions;  // groups in name order, each in execution order
  std::vector<Skipped> skipped;
  // Groups blocked as a whole, with why (e.g. two stacks observed to be one
  // database server: planner.h shared_server_blocks). Their actions are all
  // blocked too; a converged group is listed all the same.
  std::map<std::string, std::string> blocked_groups;
  // Groups whose observation holds a configuration error (model.h
  // config_error_of: credentials rejected, ...), with what. Not a guard: an
  // error the operator must fix. plan, apply and run exit 1 for it, never 3
  // (issue 12).
  std::map<std::string, std::string> config_errors;

  bool empty() const { return actions.empty(); }
  bool any_blocked() const {
    if (!blocked_groups.empty()) return true;
    for (const auto& a : actions)
      if (a.blocked) return true;
    return false;
  }
};

}  // namespace stackflip
