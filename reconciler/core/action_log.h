// action_log.h — where apply records each action before and after it
// (safety invariant 5). The state store (gitops/state_store.h) implements it; tests
// use an in-memory one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/plan.h"
#include "util/result.h"

namespace stackflip {

class ActionLog {
 public:
  virtual ~ActionLog() = default;
  // Recorded (and durable) before the action starts; no entry, no action.
  virtual Result<int64_t> begin(const Action& a, const std::string& origin) = 0;
  // `error`: a failed action's error, or what an ok one reports beyond "ok"
  // (StackDriver::take_note: the WAL a re-attach discarded); `history`
  // shows it as DETAIL.
  virtual Status finish(int64_t id, const std::string& result, const std::string& error,
                        int64_t duration_ms) = 0;

  // The last action of `kind` on `group` that finished ok: how long ago it
  // finished (by the log's own clock) and its detail. Nullopt when there is
  // none or the log cannot tell; callers then assume the worst (traffic.wait
  // waits its whole time from now).
  struct Finished {
    int64_t ms_ago = 0;
    std::string detail;
  };
  virtual std::optional<Finished> last_ok(const std::string& group, ActionKind kind) {
    (void)group;
    (void)kind;
    return std::nullopt;
  }
};

}  // namespace stackflip
