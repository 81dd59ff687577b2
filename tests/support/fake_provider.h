// fake_provider.h — in-memory providers for unit tests of plan and apply.
//
// A FakeWorld holds the true state of every stack (database role, upstream,
// position, maintenance, whether it is up) and of each group's traffic. The
// drivers made by FakeDriverFactory act on it like real providers would and
// record every call ("maintenance.on shop/primary"), so tests assert on what
// was done. FaultyStackDriver / FaultyTrafficDriver wrap a driver and fail or
// time out chosen calls. The drivers lock the world (FakeWorld::mu), so
// groups may be observed and applied from several threads at once, as the
// Reconciler does; a test touches the world directly only while nothing runs.
// SlowStackDriver delays calls (real time, outside the lock) so tests can
// show that one slow group does not hold the others; SilentStackDriver
// plays a host whose packets are dropped (each call costs its timeout).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/provider.h"
#include "util/deadline.h"

namespace stackflip::testing {

struct FakeStack {
  bool up = true;
  bool maintenance = false;
  Role role = Role::replica;
  std::string upstream;  // "" = replication stopped
  uint64_t lsn = 100;
  int64_t timeline = 1;
  // Issue 17. Which PostgreSQL cluster the server is (its system
  // identifier is "sys<cluster>"); a replica streams only from its own.
  int cluster = 1;
  // A copy of its cluster that wrote past its upstream's fork and cannot
  // follow it (observed as DatabaseObs::cannot_follow while up).
  bool diverged = false;
  // An interrupted bootstrap's phase ("" = none); observed also while down.
  std::string bootstrap_phase = "";
};

struct FakeTraffic {
  bool up = true;
  std::string target;  // "" = none
  int ttl = 60;
  // Further stacks the address reaches too (mixed traffic: observed with
  // no target, each value with its stack). A switch clears them.
  std::vector<std::string> also = {};
  // A pooler (PgBouncer): whether it holds its clients. Null: cannot pause.
  std::optional<bool> paused = std::nullopt;
  // The record does not exist (issue 17): observed reachable, holding
  // nothing, `absent` "record". A switch creates it.
  bool absent = false;
};

// A recursive mutex that a copy of its owner does not share (copies get their own).
struct WorldMutex {
  std::recursive_mutex m;
  WorldMutex() = default;
  WorldMutex(const WorldMutex&) {}
  WorldMutex& operator=(const WorldMutex&) { return *this; }
};

struct FakeWorld {
  WorldMutex mu;  // held by every driver call and by observe()
  std::map<std::string, std::map<std::string, FakeStack>> stacks;  // group -> stack -> state
  std::map<std::string, FakeTraffic> traffic;                      // group -> traffic
  std::vector<std::string> calls;                                  // "kind group/stack[ from x]"
  // When true, a replica streaming from an up primary has replayed
  // everything each time it is observed (apply's replication.wait succeeds).
  bool instant_replay = true;

  GroupObs observe(const std::string& group);
  ObservedState observe_all();
};

// A health probe answering what `answer` holds at each check ("" = healthy):
// a test changes it between passes.
class ScriptedHealthProbe : public HealthProbe {
 public:
  explicit ScriptedHealthProbe(std::shared_ptr<std::string> answer) : answer_(std::move(answer)) {}
  std::string check() override { return *answer_; }

 private:
  std::shared_ptr<std::string> answer_;
};

class FakeDriverFactory : public DriverFactory {
 public:
  explicit FakeDriverFactory(FakeWorld& w) : world_(w) {}
  Result<std::unique_ptr<StackDriver>> stack_driver(const DesiredState&, const GroupSpec& g,
                                                    const std::string& stack) override;
  Result<std::unique_ptr<TrafficDriver>> traffic_driver(const DesiredState&, const GroupSpec& g,
                                                        const TrafficSpec&) override;
  bool observe_concurrently() const override { return concurrent; }
  // The health probes of stacks with `health:` (null: none made).
  std::unique_ptr<HealthProbe> health_probe(const StackSpec& stack) override {
    return stack.health && make_health ? make_health(stack) : nullptr;
  }
  std::function<std::unique_ptr<HealthProbe>(const StackSpec&)> make_health;
  // False: each group's stacks are observed one after another (the
  // exhaustive check, where a thread per stack would dominate its time).
  bool concurrent = true;
  // Wraps the next drivers made: return the driver itself or a wrapper.
  std::function<std::unique_ptr<StackDriver>(std::unique_ptr<StackDriver>, const std::string&)>
      wrap_stack;
  std::function<std::unique_ptr<TrafficDriver>(std::unique_ptr<TrafficDriver>)> wrap_traffic;
  // The same, told the group too (applied after the hooks above).
  std::function<std::unique_ptr<StackDriver>(std::unique_ptr<StackDriver>, const std::string& group,
                                             const std::string& stack)>
      wrap_group_stack;
  std::function<std::unique_ptr<TrafficDriver>(std::unique_ptr<TrafficDriver>,
                                               const std::string& group)>
      wrap_group_traffic;

 private:
  FakeWorld& world_;
};

// Which calls of a wrapped driver fail, and how: the Nth call (1-based) and,
// when `sticky`, every call after it; a refusal for good with `permanent`
// (Refused, result.h: "injected refusal"), else a timeout or a failure.
class InjectedFaults {
 public:
  InjectedFaults(int fail_call, bool timeout, bool sticky, bool permanent)
      : fail_call_(fail_call), timeout_(timeout), sticky_(sticky), permanent_(permanent) {}
  int calls() const { return calls_; }
  // Counts a call; the injected error when it is to fail, nullopt otherwise.
  std::optional<Status> next() {
    ++calls_;
    if (calls_ != fail_call_ && !(sticky_ && calls_ > fail_call_)) return std::nullopt;
    if (permanent_) return Status(Refused("injected refusal"));
    return timeout_ ? Status(Timeout("injected timeout")) : Status(Err("injected failure"));
  }

 private:
  int fail_call_, calls_ = 0;
  bool timeout_, sticky_, permanent_;
};

// Fails chosen calls (InjectedFaults; every method but observe counts).
class FaultyStackDriver : public StackDriver {
 public:
  FaultyStackDriver(std::unique_ptr<StackDriver> inner, int fail_call, bool timeout = false,
                    bool sticky = false, bool permanent = false)
      : inner_(std::move(inner)), faults_(fail_call, timeout, sticky, permanent) {}
  int calls() const { return faults_.calls(); }
  StackObs observe() override { return inner_->observe(); }
  Status set_maintenance(bool on) override {
    if (auto e = faults_.next()) return *e;
    return inner_->set_maintenance(on);
  }
  Status stop_replication() override {
    if (auto e = faults_.next()) return *e;
    return inner_->stop_replication();
  }
  Status promote() override {
    if (auto e = faults_.next()) return *e;
    return inner_->promote();
  }
  Status start_replication(const StackSpec& s) override {
    if (auto e = faults_.next()) return *e;
    return inner_->start_replication(s);
  }
  Status bootstrap_replica(const StackSpec& s) override {
    if (auto e = faults_.next()) return *e;
    return inner_->bootstrap_replica(s);
  }

 private:
  std::unique_ptr<StackDriver> inner_;
  InjectedFaults faults_;
};

// The traffic twin of FaultyStackDriver: switch_to(), lower_ttl(), pause()
// and resume() calls count.
class FaultyTrafficDriver : public TrafficDriver {
 public:
  FaultyTrafficDriver(std::unique_ptr<TrafficDriver> inner, int fail_call, bool timeout = false,
                      bool sticky = false, bool permanent = false)
      : inner_(std::move(inner)), faults_(fail_call, timeout, sticky, permanent) {}
  int calls() const { return faults_.calls(); }
  TrafficObs observe() override { return inner_->observe(); }
  TrafficObs observe_in(ObservePass pass) override { return inner_->observe_in(pass); }
  Status switch_to(const std::string& stack) override {
    if (auto e = faults_.next()) return *e;
    return inner_->switch_to(stack);
  }
  Result<int> lower_ttl(int ttl) override {
    if (auto e = faults_.next()) return e->error();
    return inner_->lower_ttl(ttl);
  }
  bool pools() const override { return inner_->pools(); }
  Status pause() override {
    if (auto e = faults_.next()) return *e;
    return inner_->pause();
  }
  Status resume() override {
    if (auto e = faults_.next()) return *e;
    return inner_->resume();
  }

 private:
  std::unique_ptr<TrafficDriver> inner_;
  InjectedFaults faults_;
};

// Sleeps before chosen calls of `inner` (never holding the world's lock):
// the first `slow_observes` observe() calls wait `observe_delay`, every
// promote() waits `promote_delay`. `promotes_running` (may be null) counts
// promotions in progress and `max_promotes` the most seen at once, across
// every driver that shares them.
class SlowStackDriver : public StackDriver {
 public:
  struct Delays {
    std::chrono::milliseconds observe_delay{0};
    int slow_observes = 0;
    std::chrono::milliseconds promote_delay{0};
    std::atomic<int>* promotes_running = nullptr;
    std::atomic<int>* max_promotes = nullptr;
  };
  SlowStackDriver(std::unique_ptr<StackDriver> inner, Delays d) : inner_(std::move(inner)), d_(d) {}
  StackObs observe() override {
    if (observes_++ < d_.slow_observes) std::this_thread::sleep_for(d_.observe_delay);
    return inner_->observe();
  }
  Status set_maintenance(bool on) override { return inner_->set_maintenance(on); }
  Status stop_replication() override { return inner_->stop_replication(); }
  Status promote() override {
    int now = d_.promotes_running ? ++*d_.promotes_running : 0;
    if (d_.max_promotes) {
      int seen = d_.max_promotes->load();
      while (now > seen && !d_.max_promotes->compare_exchange_weak(seen, now)) {
      }
    }
    std::this_thread::sleep_for(d_.promote_delay);
    Status s = inner_->promote();
    if (d_.promotes_running) --*d_.promotes_running;
    return s;
  }
  Status start_replication(const StackSpec& s) override { return inner_->start_replication(s); }

 private:
  std::unique_ptr<StackDriver> inner_;
  Delays d_;
  int observes_ = 0;
};

// A host whose packets are dropped, while `*silent` holds: every call waits
// `timeout` (real time, outside the world's lock; less when the calling
// thread's operation deadline, util/deadline.h, comes first, as the real
// drivers' connections stop there) and then fails as timed out: observe()
// unreachable with `timed_out`, an action Error::timeout. Otherwise the
// calls go to `inner`. `waits` counts the calls that waited, `cut` those
// of them that a deadline cut short.
class SilentStackDriver : public StackDriver {
 public:
  SilentStackDriver(std::unique_ptr<StackDriver> inner, const std::atomic<bool>* silent,
                    std::chrono::milliseconds timeout, std::atomic<int>* waits = nullptr,
                    std::atomic<int>* cut = nullptr)
      : inner_(std::move(inner)), silent_(silent), timeout_(timeout), waits_(waits), cut_(cut) {}
  StackObs observe() override {
    if (!*silent_) return inner_->observe();
    StackObs s;
    s.error = wait();
    s.timed_out = true;
    return s;
  }
  Status set_maintenance(bool on) override {
    return *silent_ ? Status(Timeout(wait())) : inner_->set_maintenance(on);
  }
  Status stop_replication() override {
    return *silent_ ? Status(Timeout(wait())) : inner_->stop_replication();
  }
  Status promote() override { return *silent_ ? Status(Timeout(wait())) : inner_->promote(); }
  Status start_replication(const StackSpec& s) override {
    return *silent_ ? Status(Timeout(wait())) : inner_->start_replication(s);
  }

 private:
  std::string wait() {
    if (waits_) ++*waits_;
    auto until = std::chrono::steady_clock::now() + timeout_;
    if (auto d = operation_deadline(); d && *d < until) {
      until = *d;
      if (cut_) ++*cut_;
    }
    std::this_thread::sleep_until(until);
    return "no answer within " + std::to_string(timeout_.count()) + " ms (silent)";
  }
  std::unique_ptr<StackDriver> inner_;
  const std::atomic<bool>* silent_;
  std::chrono::milliseconds timeout_;
  std::atomic<int>* waits_;
  std::atomic<int>* cut_;
};

}  // namespace stackflip::testing
