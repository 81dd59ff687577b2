// action_log.h — where apply records each action before and after it
// (safety invariant 5). The state store (gitops/state_store.h) implements it; tests
// use an in-memory one.
#pragma once

#include <cstdint>
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
};

}  // namespace stackflip
