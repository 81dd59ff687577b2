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
  virtual Duration now() = 0;  // monotonic
  virtual void sleep_for(Duration d) = 0;
  virtual std::string rfc3339_now() = 0;  // wall clock, UTC, e.g. 2026-11-26T18:00:00Z
};

Clock& real_clock();

}  // namespace stackflip
