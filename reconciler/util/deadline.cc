#include "util/deadline.h"

#include <algorithm>

namespace stackflip {

namespace {
thread_local DeadlineScope* innermost = nullptr;
}  // namespace

DeadlineScope::DeadlineScope(std::function<SteadyTime()> until, std::string why)
    : until_(std::move(until)), why_(std::move(why)), outer_(innermost) {
  innermost = this;
}

DeadlineScope::~DeadlineScope() { innermost = outer_; }

// The earliest deadline over the thread's scopes and the scope it comes from.
struct DeadlineNow {
  static std::optional<SteadyTime> earliest(std::string* why) {
    std::optional<SteadyTime> best;
    for (const DeadlineScope* s = innermost; s; s = s->outer_) {
      SteadyTime t = s->until_();
      if (!best || t < *best) {
        best = t;
        if (why) *why = s->why_;
      }
    }
    return best;
  }
};

std::optional<SteadyTime> operation_deadline() { return DeadlineNow::earliest(nullptr); }

std::string operation_stopped() {
  std::string why;
  auto t = DeadlineNow::earliest(&why);
  if (!t || std::chrono::steady_clock::now() < *t) return "";
  return "stopped: " + why;
}

std::string deadline_reason() {
  std::string why;
  return DeadlineNow::earliest(&why) ? "stopped: " + why : "";
}

std::chrono::milliseconds within_deadline(std::chrono::milliseconds limit) {
  auto t = operation_deadline();
  if (!t) return limit;
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(*t - std::chrono::steady_clock::now());
  return std::clamp(left, std::chrono::milliseconds(0), limit);
}

}  // namespace stackflip
