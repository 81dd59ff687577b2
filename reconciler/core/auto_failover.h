// auto_failover.h — may the group's leader fail over by itself now (issue 14)?
//
// The rule, in order; the first that does not hold is the answer's `why`:
//   1. the group has `auto_failover:`;
//   2. without etcd, it says `witnesses: 1` (one instance decides alone);
//   3. the witnesses agree: with etcd a majority of the live instances, at
//      least one of them outside the active stack's site (and at least
//      `witnesses:` when written), have seen the active stack failing
//      continuously for `after`; without etcd this instance has;
//   4. the group was settled when its active stack went down (no switch in
//      progress, nothing blocked for another reason): never in a switch;
//   5. no automatic failover of the group within `cooldown`;
//   6. a standby can take over and the planner promotes it (takeover_of);
//   7. its last known lag is known and at most `max_data_loss_bytes`.
// Then the decision flips `active:` to that standby, with
// `allow_data_loss: true` only when the planner needs it (the old primary
// cannot be reached to verify its position). It never fails back: it only
// moves away from an active stack that is failing.
//
// Pure: no I/O, no clock (times are passed in, milliseconds since the epoch).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/model.h"

namespace stackflip {

// One instance's verdict on a group's active stack.
struct WitnessVerdict {
  std::string instance, site;
  bool failing = false;
  int64_t since_ms = 0;   // failing since (epoch ms); when it was last seen healthy otherwise
  std::string since;      // the same as RFC 3339, for the evidence
  std::string why;        // the error that makes it failing
};

struct AutoFailoverInput {
  bool coordinated = false;              // with etcd
  size_t live_instances = 1;             // with etcd: instances registered now
  std::vector<WitnessVerdict> verdicts;  // of live instances (this one's included)
  int64_t now_ms = 0;
  bool settled = false;                  // converged before the active stack went down
  std::optional<int64_t> last_auto_failover_ms;
  std::string decided_by;                // this instance, for the evidence
  std::string decided_at;                // RFC 3339
};

struct AutoFailoverDecision {
  bool go = false;
  std::string why;       // !go: why not ("" when the group has no auto_failover)
  std::string to;        // go: the new active stack
  bool allow_data_loss = false;
  std::string subject;   // go: the commit's first line
  std::string evidence;  // go: the commit message's body
  // !go, but the active stack is failing: a person must decide (the rule
  // that held it back is in `why`).
  bool person_decides = false;
};

AutoFailoverDecision decide_auto_failover(const GroupSpec& g, const GroupObs& obs,
                                          const AutoFailoverInput& in);

// "10s", "30m", "1h30m", "250ms": a duration as the config writes it.
std::string format_duration_ms(int64_t ms);

}  // namespace stackflip
