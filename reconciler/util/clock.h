// clock.h — time behind an interface, so apply's polling and timeouts can be
// tested without waiting. The real clock is monotonic for durations and the
// system clock for timestamps.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace stackflip {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  virtual ~Clock() = default;
  virtual Duration now() = 0;  // monotonic
  virtual void sleep_for(Duration d) = 0;
  virtual std::string rfc3339_now() = 0;  // wall clock, UTC, e.g. 2026-11-26T18:00:00Z
  // Wall clock, milliseconds since the Unix epoch (times other instances
  // compare with theirs: automatic failover's witnesses).
  virtual int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

Clock& real_clock();

}  // namespace stackflip
