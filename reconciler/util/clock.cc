#include "util/clock.h"

#include <ctime>
#include <thread>

namespace stackflip {

namespace {
class RealClock : public Clock {
 public:
  Duration now() override { return std::chrono::steady_clock::now().time_since_epoch(); }
  void sleep_for(Duration d) override { std::this_thread::sleep_for(d); }
  std::string rfc3339_now() override {
    std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }
};
}  // namespace

Clock& real_clock() {
  static RealClock clock;
  return clock;
}

}  // namespace stackflip
