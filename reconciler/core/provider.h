// provider.h — the narrow interfaces between apply/observe and the outside.
//
// A StackDriver serves one stack's maintenance flag and database; a
// HealthProbe asks a stack's application whether it is healthy; a
// TrafficDriver serves one traffic address of a group (a group may have
// several; GroupDrivers, observe.h, combines them). Each method maps to one
// planner action (plan.h) or to observation. Implementations: postgres,
// powerdns, cloud66, command, pgbouncer (real); in tests, the drivers of
// FakeDriverFactory and the FaultyStackDriver / FaultyTrafficDriver /
// SlowStackDriver wrappers (tests/support/fake_provider.h).
//
// Contract for every implementation:
// - observe() never fails: an unreachable provider is a state
//   (reachable=false, error set, no secrets in the message).
// - Actions return a Status whose message says what failed (SQL error, HTTP
//   status and body); `Error::timeout` is set when the call ran out of time.
// - Every call is bounded in time (connect and statement/request timeouts).
// - Actions are idempotent where the provider allows it: applying
//   maintenance.on to a stack already in maintenance succeeds.
// - A driver is used from one thread at a time; different drivers may be used
//   concurrently. Drivers may keep connections open across calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "core/model.h"
#include "util/result.h"

namespace stackflip {

class StackDriver {
 public:
  virtual ~StackDriver() = default;
  virtual StackObs observe() = 0;
  virtual Status set_maintenance(bool on) = 0;
  // Maintenance on, as fast as the provider can: the self-fence of an
  // instance cut off from etcd, racing its lease (nothing else first).
  virtual Status fence_now() { return set_maintenance(true); }
  virtual Status stop_replication() = 0;
  virtual Status promote() = 0;
  // Re-attach this stack as a replica streaming from `source` (a stack of the
  // same group, already primary), by the non-destructive path first.
  virtual Status start_replication(const StackSpec& source) = 0;
  // Issue 17: replace this stack's data with a base backup of `source` (a
  // stack of the same group, primary) and make it a replica streaming from
  // it, caught up with `source`'s position. Destructive; resumable: an
  // interrupted bootstrap (StackObs::bootstrap_phase) is taken up where it
  // stopped, and the old data is removed (or kept: keep_old_data) only once
  // the new replica streams. Drivers that cannot refuse for good.
  virtual Status bootstrap_replica(const StackSpec& source) {
    (void)source;
    return Refused("this provider cannot bootstrap a replica");
  }
  // What the last successful action did that the operator must know beyond
  // "ok" (the WAL pg_rewind discarded to re-attach a former primary), for
  // the step's report and the journal; "" when nothing. Cleared by the call.
  virtual std::string take_note() { return {}; }
};

// One observation pass (observe.h: observe_all). Drivers whose addresses
// share one provider list (the rrsets of a PowerDNS zone, a Cloud 66
// failover group list) read that list once per pass: the first reader
// fetches it, the others reuse the copy. No pass (id 0) always reads fresh:
// apply's re-observation before a step and its verification after a switch
// must see the provider as it is now.
struct ObservePass {
  uint64_t id = 0;
  static ObservePass begin() {
    static std::atomic<uint64_t> last{0};
    return ObservePass{++last};
  }
};

class TrafficDriver {
 public:
  virtual ~TrafficDriver() = default;
  // Every value the address holds (`records`, each with the stack it
  // belongs to), and `target` only when it holds exactly one stack's.
  // Always read fresh.
  virtual TrafficObs observe() = 0;
  // The same, within `pass`: a list shared with other addresses may come
  // from this pass's copy. Drivers without shared lists read fresh.
  virtual TrafficObs observe_in(ObservePass pass) {
    (void)pass;
    return observe();
  }
  // Point the address at `stack` (a stack of the group), replacing every
  // other value it holds.
  virtual Status switch_to(const std::string& stack) = 0;

  // TTL pre-lowering (issue 15): lower the address's TTL to `ttl` when it
  // is above, keeping every value it holds; returns the TTL it had (the
  // one resolvers may still hold). Only drivers whose addresses have a TTL
  // (powerdns); the others refuse for good.
  virtual Result<int> lower_ttl(int ttl) {
    (void)ttl;
    return Refused("this traffic provider has no TTL to lower");
  }
  // A connection pooler (PgBouncer, issue 15): pools() says so; pause()
  // holds the clients' new queries once the running transactions finished,
  // so the switch is a pause for them and not an error, and resume() lets
  // them go. Such a driver reports TrafficObs::paused. The others refuse
  // for good.
  virtual bool pools() const { return false; }
  virtual Status pause() { return Refused("this traffic provider cannot pause"); }
  virtual Status resume() { return Refused("this traffic provider cannot pause"); }
};

// Makes drivers for a desired state. The real factory (drivers.h) dispatches
// on the provider's `type`; tests pass a factory of fakes.
// An application health check (StackSpec::health). Bounded in time; used
// from one thread at a time.
class HealthProbe {
 public:
  virtual ~HealthProbe() = default;
  // "" when the stack answered healthy, else why not ("GET URL: HTTP 503").
  virtual std::string check() = 0;
};

class DriverFactory {
 public:
  virtual ~DriverFactory() = default;
  // The probe of `stack`'s health check; null when it has none. Made with
  // its stack's driver, kept as long.
  virtual std::unique_ptr<HealthProbe> health_probe(const StackSpec& stack) {
    (void)stack;
    return nullptr;
  }
  virtual Result<std::unique_ptr<StackDriver>> stack_driver(const DesiredState& desired,
                                                            const GroupSpec& group,
                                                            const std::string& stack) = 0;
  // The driver of one of `group.traffic`'s addresses.
  virtual Result<std::unique_ptr<TrafficDriver>> traffic_driver(const DesiredState& desired,
                                                                const GroupSpec& group,
                                                                const TrafficSpec& traffic) = 0;
  // Whether a group's stacks are observed on threads of their own, so their
  // round trips overlap. Drivers that answer from memory (tests) may say no:
  // a thread per stack and observation would cost more than the answer.
  virtual bool observe_concurrently() const { return true; }
};

}  // namespace stackflip
