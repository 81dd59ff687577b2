// planner.h — the pure function (DesiredState, ObservedState) → Plan.
//
// No I/O, no clock, no randomness: the same input gives the same plan, byte
// for byte. Groups are planned independently, in name order.
//
// For each group the planner walks the runbook of DESIGN.md as phases over a
// simulated copy of the observation, applying each action's expected effect
// before choosing the next one. Because every phase starts from what is
// observed, a half-finished failover resumes where reality is, and a
// converged group yields no actions.
//
//   1. fence    every reachable non-active stack that is a writable primary
//               (the old active, or a former primary that came back), then
//               every non-active stack whose maintenance drifted off;
//   2. promote  the desired active stack if it is not primary: wait until it
//               replayed the fenced old primary's position, stop replication,
//               promote. Blocked (safety invariant 3) when the old primary's
//               position is unknown or cannot be reached, unless the group
//               says `allow_data_loss: true`;
//   3. maintenance of the active stack as desired;
//   4. traffic  to the active stack (and its TTL as desired);
//   5. replication into the other stacks as desired (re-attaching a fenced
//               former primary), or stopped where it is not wanted.
//
// An action on an unreachable stack is never planned: a fence is skipped
// (with a note, it happens when the stack returns), anything else is
// blocked. Once one action of a group is blocked, every later action of that
// group is blocked too, naming the step it waits on.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/plan.h"

namespace stackflip {

// Groups that shared_server_blocks names are in Plan::blocked_groups and
// every action of theirs is blocked with that reason.
Plan make_plan(const DesiredState& desired, const ObservedState& observed);

// One group, appending to `actions` and `skipped`. A group missing from the
// observation is planned as if nothing of it could be reached. When `block`
// is not empty, or two stacks of the group are observed to be one server,
// every action of the group is blocked with the reason.
void plan_group(const GroupSpec& group, const GroupObs& observed, std::vector<Action>& actions,
                std::vector<Skipped>& skipped, const std::string& block = "");

// One owner per database server, on observation (issue 11). validate refuses
// two stacks whose DSNs name one server; names that differ (a host name and
// its address, localhost and 127.0.0.1, a proxy) are caught here: two
// reachable stacks, in one group or two, whose databases report the same
// system identifier AND the same postmaster start time are one server.
// The system identifier alone is not enough: a streaming replica shares its
// primary's (it is a copy of the same cluster); the start time tells the
// replica's postmaster from the primary's. Returns group -> why, for every
// group with such a stack; empty when no server is named twice.
std::map<std::string, std::string> shared_server_blocks(const ObservedState& observed);

// True when `fresh` (a plan of a new observation) still begins with `action`:
// the action is pending there and everything before it in its group is a
// replication.wait that `observed` shows satisfied, or a step this apply
// already ran whose effect cannot be observed (`done_unobservable`: e.g. a
// promotion on a stack whose database is not observed). This is the guard
// that apply re-checks before each action.
bool still_next(const Action& action, const std::vector<Action>& fresh, const GroupSpec& group,
                const GroupObs& observed, const std::vector<Action>& done_unobservable = {});

// Bytes `stack` is behind `source` in `observed`, when both positions are known.
std::optional<uint64_t> lag_bytes(const GroupObs& observed, const std::string& stack,
                                  const std::string& source);

}  // namespace stackflip
