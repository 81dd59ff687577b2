// The operation deadline (util/deadline.h) and the primitives that stop at
// it: a subprocess killed, an HTTP request not sent or cut, a poll loop
// ended, and apply's action stopped without a second attempt (issue 13: no
// driver call outlasts the etcd lease it started under).
#include "util/deadline.h"

#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <thread>

#include "answering_server.h"
#include "builders.h"
#include "core/apply.h"
#include "core/planner.h"
#include "fake_clock.h"
#include "fake_provider.h"
#include "sys/http_client.h"
#include "sys/subprocess.h"
#include "util/backoff.h"

using namespace stackflip;
using namespace stackflip::testing;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

namespace {

double seconds_since(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

// A deadline the test moves: one hour away until cut() makes it now.
struct MovableDeadline {
  std::atomic<Steady::rep> at{(Steady::now() + std::chrono::hours(1)).time_since_epoch().count()};
  Steady::time_point cut_at{};
  std::function<Steady::time_point()> fn() {
    return [this] { return Steady::time_point(Steady::duration(at.load())); };
  }
  void cut() {
    cut_at = Steady::now();
    at = cut_at.time_since_epoch().count();
  }
};

}  // namespace

TEST_CASE("deadline: none without a scope, nested scopes take the earliest and are restored") {
  CHECK_FALSE(operation_deadline());
  CHECK(operation_stopped().empty());
  CHECK(within_deadline(milliseconds(5000)) == milliseconds(5000));
  auto now = Steady::now();
  {
    DeadlineScope outer([now] { return now - std::chrono::seconds(1); }, "outer passed");
    CHECK(operation_stopped() == "stopped: outer passed");
    CHECK(within_deadline(milliseconds(5000)) == milliseconds(0));
    {
      DeadlineScope inner([now] { return now + std::chrono::hours(1); }, "inner later");
      CHECK(operation_stopped() == "stopped: outer passed");  // the earliest
    }
  }
  CHECK_FALSE(operation_deadline());
  {
    DeadlineScope later([now] { return now + std::chrono::hours(1); }, "later");
    CHECK(operation_stopped().empty());
    auto left = within_deadline(milliseconds(5000));
    CHECK(left == milliseconds(5000));
  }
  // Another thread never sees this thread's scope.
  DeadlineScope here([now] { return now - std::chrono::seconds(1); }, "here");
  bool other_sees = true;
  std::thread([&] { other_sees = operation_deadline().has_value(); }).join();
  CHECK_FALSE(other_sees);
}

TEST_CASE("deadline: a running command's process group is killed when it passes, not before") {
  MovableDeadline d;
  std::atomic<bool> returned{false};
  SubprocessResult r;
  auto t0 = Steady::now();
  std::thread cutter([&] {
    // The deadline is asked again while the command runs: an hour away at
    // the start, cut after 300 ms.
    std::this_thread::sleep_for(milliseconds(300));
    CHECK_FALSE(returned.load());
    d.cut();
  });
  {
    DeadlineScope scope(d.fn(), "the lease could expire");
    SubprocessOptions o;
    // The child's own child (sleep) must go too: its pid is printed first.
    o.argv = {"sh", "-c", "sleep 30 & echo $!; wait"};
    o.timeout = milliseconds(60000);
    auto res = run_subprocess(o);
    returned = true;
    REQUIRE(res.ok());
    r = *res;
  }
  cutter.join();
  const double after_cut = std::chrono::duration<double>(Steady::now() - d.cut_at).count();
  INFO("killed " << after_cut << " s after the cut, " << seconds_since(t0) << " s after the start");
  CHECK(r.timed_out);
  CHECK(r.stopped == "stopped: the lease could expire");
  CHECK(r.term_signal == SIGKILL);
  CHECK(after_cut < 5.0);  // polled every 10 ms; generous for a loaded machine
  const pid_t grandchild = static_cast<pid_t>(std::stol(r.out));
  // Gone (SIGKILL to the group): no such process, or a zombie not yet reaped
  // by whoever adopted it.
  bool alive = false;
  for (int i = 0; i < 100; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string line;
    alive = stat && std::getline(stat, line) && line.find(") Z ") == std::string::npos;
    if (!alive) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK_FALSE(alive);
}

TEST_CASE("deadline: a command is not started after it, and no request is sent after it") {
  auto now = Steady::now();
  DeadlineScope scope([now] { return now; }, "no time left");
  SubprocessOptions o;
  o.argv = {"sh", "-c", "exit 0"};
  auto r = run_subprocess(o);
  REQUIRE(r.ok());
  CHECK(r->stopped == "stopped: no time left");

  Answering server("{}");
  HttpClient client;
  HttpRequest req;
  req.method = "POST";
  req.url = server.url() + "/x";
  req.body = "{}";
  auto res = client.perform(req);
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().timeout);
  CHECK_THAT(res.error().message, Catch::Contains("not sent: stopped: no time left"));
  CHECK(server.seen().empty());
}

TEST_CASE("deadline: a request still waiting for its answer is cut at the deadline") {
  httplib::Server slow;
  slow.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(milliseconds(4000));
    res.set_content("{}", "application/json");
  });
  int port = slow.bind_to_any_port("127.0.0.1");
  std::thread t([&] { slow.listen_after_bind(); });
  while (!slow.is_running()) std::this_thread::sleep_for(milliseconds(1));

  auto start = Steady::now();
  double took = 0;
  Result<HttpResponse> res = Err("not run");
  {
    DeadlineScope scope([start] { return start + milliseconds(300); }, "lease");
    HttpClient client;
    HttpRequest req;
    req.method = "POST";
    req.url = "http://127.0.0.1:" + std::to_string(port) + "/x";
    req.body = "{}";
    req.timeout = milliseconds(10000);
    res = client.perform(req);
    took = seconds_since(start);
  }
  slow.stop();
  t.join();
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().timeout);
  CHECK_THAT(res.error().message, Catch::Contains("stopped: lease"));
  CHECK(took < 3.0);  // not the server's 4 s, nor the request's 10 s
}

TEST_CASE("deadline: a poll loop ends at it, whatever its own clock says") {
  FakeClock clock;
  Backoff poll(clock, std::chrono::hours(1));
  CHECK_FALSE(poll.expired());
  auto now = Steady::now();
  DeadlineScope scope([now] { return now; }, "passed");
  CHECK(poll.expired());
}

namespace {

// maintenance.on runs a real `sleep 30` (as a control command would run
// pg_ctl): only a kill ends it early.
class SlowCommandStack : public StackDriver {
 public:
  SlowCommandStack(std::unique_ptr<StackDriver> inner, std::atomic<int>& runs)
      : inner_(std::move(inner)), runs_(runs) {}
  StackObs observe() override { return inner_->observe(); }
  Status set_maintenance(bool on) override {
    SubprocessOptions o;
    o.argv = {"sleep", "30"};
    o.timeout = milliseconds(60000);
    auto r = run_subprocess(o);
    if (!r.ok()) return r.error();
    ++runs_;
    if (!r->stopped.empty()) return Timeout("sleep killed: " + r->stopped);
    return inner_->set_maintenance(on);
  }
  Status stop_replication() override { return inner_->stop_replication(); }
  Status promote() override { return inner_->promote(); }
  Status start_replication(const StackSpec& s) override { return inner_->start_replication(s); }

 private:
  std::unique_ptr<StackDriver> inner_;
  std::atomic<int>& runs_;
};

}  // namespace

TEST_CASE("apply: an action still running at act_until is stopped and not tried again") {
  FakeWorld world;
  world.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
  world.stacks["shop"]["standby"] = FakeStack{true, false, Role::replica, "primary", 100, 1};
  world.traffic["shop"] = FakeTraffic{true, "primary", 60};
  DesiredState desired = make_desired({make_group("primary")});
  FakeDriverFactory factory{world};
  std::atomic<int> runs{0};
  factory.wrap_stack = [&](std::unique_ptr<StackDriver> d, const std::string& stack) {
    if (stack != "standby") return d;
    return std::unique_ptr<StackDriver>(std::make_unique<SlowCommandStack>(std::move(d), runs));
  };
  FakeClock clock;
  Fleet fleet = make_fleet(desired, factory);
  Plan plan = make_plan(desired, world.observe_all());
  REQUIRE(plan.actions.size() == 1);  // maintenance.on standby
  ApplyOptions o;
  o.origin = "config:test";
  o.retries = 2;
  auto start = Steady::now();
  o.act_until = [start] { return start + milliseconds(300); };
  o.act_until_why = "the test's lease could expire";
  ApplyResult r = Applier(desired, fleet, nullptr, clock).apply(plan, o);
  const double took = seconds_since(start);
  REQUIRE(r.groups.size() == 1);
  CHECK(r.groups[0].stopped == StepOutcome::timeout);
  const std::string detail = r.groups[0].steps.back().detail;
  INFO(detail);
  CHECK_THAT(detail, Catch::Contains("stopped: the test's lease could expire"));
  CHECK_THAT(detail, Catch::Contains("not started"));  // the retry did not run the command
  CHECK(runs == 1);
  CHECK(took < 5.0);
  CHECK_FALSE(world.stacks["shop"]["standby"].maintenance);
}
