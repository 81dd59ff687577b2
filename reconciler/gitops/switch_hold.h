// switch_hold.h — what the GitOps loop does after a switch failed safe
// (issue 11).
//
// When apply re-opens the old primary because a switch could not finish
// (apply.h, "Fail safe"), the next pass of `run` would plan the same switch
// again: fence, fail, re-open, every interval, each time taking writes away
// for a moment, with nobody asked to look. Instead the loop holds the group:
// while the commit in force is the one whose switch failed safe, its
// `active:` is unchanged, and the group is still as the fail safe left it
// (the re-opened stack reachable, serving, not a replica; the desired active
// stack not primary), every pass reports the group blocked with the reason
// (result "blocked", exit 3, notified once) and applies nothing to it.
//
// The hold ends by itself, and the planner's normal rules apply again, when
// a new commit is in force (a fix, or `active:` flipped back), or when the
// state moves (the operator promoted by hand, the re-opened stack died or
// was fenced). `stackflip apply` run by the operator on the host does not
// consult holds: it is the way to try the same switch again once the cause
// is fixed; if that apply succeeds the state has moved and the hold lapses.
//
// Holds are kept in the state store (kv "gitops.held", JSON), so a restart
// keeps them. Plain functions on values; no I/O.
#pragma once

#include <map>
#include <string>

#include "core/model.h"
#include "core/plan.h"

namespace stackflip {

struct SwitchHold {
  std::string commit;    // the commit in force when the switch failed safe
  std::string active;    // its desired active stack (the switch's candidate)
  std::string reopened;  // the old primary that was re-opened
  std::string reason;    // GroupApply::failed_safe
};
using SwitchHolds = std::map<std::string, SwitchHold>;  // by group

std::string holds_to_json(const SwitchHolds& holds);
// An unreadable text gives no holds (the loop then plans as usual).
SwitchHolds holds_from_json(const std::string& text);

// Why `group` is held ("" when the hold no longer applies: see above).
std::string hold_reason(const SwitchHold& hold, const GroupSpec& group, const GroupObs& observed,
                        const std::string& commit);

// Blocks in `plan` (Plan::blocked_groups and every action of the group)
// each group whose hold applies, and erases the holds that no longer apply
// (or whose group is gone). Returns true when `holds` changed.
bool apply_holds(Plan& plan, const DesiredState& desired, const ObservedState& observed,
                 const std::string& commit, SwitchHolds& holds);

}  // namespace stackflip
