// clock.h — time behind an interface, so apply's polling and timeouts can be
// tested without waiting. The real clock is monotonic for durations and the
// system clock for timestamps.
#pragma once

#include <chrono>
#include <string>

namespace stackflip {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  virtual ~Clock() = default;
  virtual Duration now() = 0;                 // monotonic
  virtual void sleep_for(Duration d) = 0;
  virtual std::string rfc3339_now() = 0;      // wall clock, UTC, e.g. 2026-11-26T18:00:00Z
};

Clock& real_clock();

// Polling with short, growing intervals: 1 ms doubling to `cap`.
class Backoff {
 public:
  explicit Backoff(std::chrono::milliseconds cap = std::chrono::milliseconds(50)) : cap_(cap) {}
  std::chrono::milliseconds next() {
    auto d = next_;
    next_ = std::min(cap_, next_ * 2);
    return d;
  }

 private:
  std::chrono::milliseconds next_{1}, cap_;
};

}  // namespace stackflip
