// fake_clock.h — a Clock (util/clock.h) for tests: time passes only when
// something sleeps, by exactly what it asked for, so apply's polls,
// retries and timeouts run at once and deterministically.
#pragma once

#include <string>

#include "util/clock.h"

namespace stackflip::testing {

class FakeClock : public Clock {
 public:
  Duration now() override { return t_; }
  void sleep_for(Duration d) override { t_ += d; }
  std::string rfc3339_now() override { return "2026-11-26T18:00:00Z"; }

 private:
  Duration t_{0};
};

}  // namespace stackflip::testing
