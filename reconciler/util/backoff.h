// backoff.h — the one way stackflip waits between polls and retries.
//
// Intervals start at `first` and double up to `cap`: polls of a promotion or
// a switch start at 1 ms so the apply path stays fast, retries of a busy API
// start higher. With a deadline, sleep() never sleeps past it and expired()
// says when it has passed; all time comes from a Clock (clock.h), so tests
// run the waits without waiting. The calling thread's operation deadline
// (deadline.h, real time) ends the waits too.
//
//   Backoff poll(clock, std::chrono::seconds(10));     // 1 ms .. 50 ms, 10 s
//   while (!done()) {
//     if (poll.expired()) return Timeout("...");
//     poll.sleep();
//   }
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>

#include "util/clock.h"
#include "util/deadline.h"

namespace stackflip {

class Backoff {
 public:
  using ms = std::chrono::milliseconds;

  // Intervals only: the caller sleeps next() itself (or not at all).
  explicit Backoff(ms first = ms(1), ms cap = ms(50)) : next_(first), cap_(cap) {}
  // Intervals bounded by `clock.now() + limit`.
  Backoff(Clock& clock, Clock::Duration limit, ms first = ms(1), ms cap = ms(50))
      : next_(first), cap_(cap), clock_(&clock), deadline_(clock.now() + limit) {}

  // The next interval, doubling up to the cap.
  ms next() {
    ms d = next_;
    next_ = std::min(cap_, next_ * 2);
    return d;
  }
  // With a deadline: whether it has passed. Without one: never. Either way,
  // once the calling thread's operation deadline has passed (deadline.h).
  bool expired() const {
    return (clock_ && clock_->now() >= *deadline_) || !operation_stopped().empty();
  }
  // With a deadline: sleeps the next interval, cut at the deadline. Without:
  // sleeps the next interval on the real clock.
  void sleep() {
    Clock& c = clock_ ? *clock_ : real_clock();
    Clock::Duration d = next();
    if (deadline_) d = std::max(Clock::Duration(0), std::min(d, *deadline_ - c.now()));
    d = std::min<Clock::Duration>(d, within_deadline(next_));  // next_ without a deadline
    c.sleep_for(d);
  }

 private:
  ms next_, cap_;
  Clock* clock_ = nullptr;
  std::optional<Clock::Duration> deadline_;
};

}  // namespace stackflip
