// outage.h — what a person must know, first, when a group's active stack is
// down (issue 14, item 6): the fact, then the exact change to commit.
//
//   fact:     "active stack fra of group billing down since
//              2026-11-30T14:00:00Z (seen by fra-1): fra is unreachable (...);
//              last known lag 0 bytes: standby ams caught up"
//   decision: "to fail over, commit `active: ams` with `allow_data_loss:
//              true` for group billing (stackflip.yaml:12): it accepts losing
//              the writes ams has not replayed (...)"
//
// The decision is the planner's own verdict (make_plan on the group with
// `active:` flipped to the standby furthest ahead), never a second opinion:
// `allow_data_loss: true` is in it exactly when the promotion guard would
// block the flip without it, and the window it accepts is the guard's.
// Pure: no I/O, no clock.
#pragma once

#include <optional>
#include <string>

#include "core/model.h"

namespace stackflip {

struct OutageAdvice {
  std::string fact;
  std::string decision;  // "" when no stack can take over; `fact` says why
};

// Who would take over from `g`'s unreachable active stack, and on what terms:
// the reachable replica furthest ahead (ties: the first by name), its last
// known lag behind the active stack's last write position (nullopt when
// either was never observed), and the planner's verdict on promoting it.
struct Takeover {
  std::string candidate;  // "" when no stack can take over (`others` says why)
  std::string others;     // "; ams is unreachable" ... for the stacks left out
  std::optional<uint64_t> lag;
  bool written_known = false;  // the active stack's last write position was observed
  bool possible = false;        // the planner promotes it (with allow_data_loss if needed)
  bool needs_data_loss = false;  // only with `allow_data_loss: true`
  std::string reason;      // the planner's reason for the promotion it would run
  std::string why_not;     // when !possible: the guard's words
};
Takeover takeover_of(const GroupSpec& g, const GroupObs& obs);

// nullopt while `g`'s active stack is not failing (stack_failing: reachable
// and passing its health check, or misconfigured: that is a configuration
// error, reported as such). `obs` is the group's observation
// with unreachable stacks as last known (fill_last_known); `down_since` is
// when the active stack was first seen down (RFC 3339), `seen_by` who saw it.
std::optional<OutageAdvice> advise_outage(const GroupSpec& g, const GroupObs& obs,
                                          const std::string& down_since,
                                          const std::string& seen_by);

}  // namespace stackflip
