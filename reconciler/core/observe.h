// observe.h — drivers of a desired state, and observation through them.
//
// GroupDrivers owns the drivers of one group, made once through a
// DriverFactory and kept for the whole run so connections stay open across
// observation and apply. A group's stacks and traffic are observed
// concurrently; groups are observed concurrently by a small worker pool.
// Observation never fails: what cannot be reached is observed as
// unreachable. A driver that cannot even be made (bad secret reference, ...)
// is observed as unreachable with that error. The active stack's health
// check (StackSpec::health), if any, is asked after its database answered,
// in observe() (not in observe_stack(), which apply uses to verify a step).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/provider.h"
#include "util/clock.h"
#include "util/result.h"

namespace stackflip {

class GroupDrivers {
 public:
  GroupDrivers(const DesiredState& desired, const GroupSpec& group, DriverFactory& factory);

  // Null when the driver could not be made; `stack_error()` says why.
  StackDriver* stack(const std::string& name);
  const std::string& stack_error(const std::string& name) const;

  StackObs observe_stack(const std::string& name);
  // Every traffic address of the group, combined (combine_traffic). Within
  // `pass` (observe_all), lists shared with other addresses are read once
  // per pass (provider.h ObservePass); without one, everything is fresh.
  TrafficObs observe_traffic(ObservePass pass = {});
  GroupObs observe(ObservePass pass = {});  // everything, concurrently
  // observe(), but each stack named in `limited` has `limit` from now
  // to answer: it is observed under a DeadlineScope (util/deadline.h), so its
  // connection, statements, requests and commands stop there, and it is
  // unreachable (timed_out) if it has not answered by then. For stacks
  // already found silent (StackObs::timed_out), whose every observation
  // would otherwise cost the driver's whole timeout (apply.h).
  GroupObs observe_limited(const std::set<std::string>& limited, std::chrono::milliseconds limit,
                           ObservePass pass = {});

  // Points every traffic address that does not hold exactly `stack`'s
  // values (or has another TTL) at it, in the order written. One that
  // fails does not stop the others; the error names every address that
  // failed (permanent only when every failure is). A re-run switches the
  // rest.
  Status switch_traffic(const std::string& stack);
  // traffic.ttl (issue 15): every address whose TTL is above its
  // `switch_ttl` gets that TTL, its values unchanged. `detail` names each
  // change with "(previous TTL N s)", which traffic.wait reads back from
  // the journal.
  Status lower_traffic_ttl(std::string& detail);
  // traffic.pause / traffic.resume: every address that can hold its
  // clients (TrafficDriver::pools) pauses, or resumes.
  Status pause_traffic(bool on);

 private:
  static Status combined(const std::vector<Error>& failed);
  struct Traffic {
    const TrafficSpec* spec;
    std::unique_ptr<TrafficDriver> driver;  // null when it could not be made
    std::string error;                      // why not
  };
  TrafficObs observe_one(Traffic& t, ObservePass pass);
  // Everything; the stacks of `limited` (may be null) by `until`.
  GroupObs observe_group(ObservePass pass, const std::set<std::string>* limited,
                         std::chrono::steady_clock::time_point until, const std::string& why);
  StackObs observe_checked(const std::string& name,
                           const std::chrono::steady_clock::time_point* until,
                           const std::string& why);

  const GroupSpec& group_;
  bool concurrent_;  // DriverFactory::observe_concurrently
  std::map<std::string, std::unique_ptr<StackDriver>> stacks_;
  std::map<std::string, std::string> stack_errors_;
  std::vector<Traffic> traffic_;
  std::unique_ptr<HealthProbe> health_;     // the active stack's health check, if any
  std::atomic<bool> health_passed_{false};  // it passed once since these drivers were made
};

using Fleet = std::map<std::string, std::unique_ptr<GroupDrivers>>;

// Makes the drivers of every group of `desired`.
Fleet make_fleet(const DesiredState& desired, DriverFactory& factory);

// Observes every group of `desired` through `fleet`, `parallelism` groups at
// a time, as one pass (ObservePass): each PowerDNS zone and Cloud 66 list is
// read once. Its wall time goes to provider_stats.h.
ObservedState observe_all(const DesiredState& desired, Fleet& fleet, Clock& clock,
                          int parallelism = 32);

// DESIGN.md: an unreachable stack has its other fields "as last known".
// Fills the maintenance flag and database of every unreachable stack of
// `now` (and the target/TTL of unreachable traffic) from `last`, where `last`
// knows them. Reachable facts are never touched.
void fill_last_known(ObservedState& now, const ObservedState& last);

// Where observation keeps what it saw between runs, so that a stack
// unreachable now is planned with the facts it had when last reached (the
// unplanned-failover guard reads its last known position). The state store
// implements it (gitops/last_known.h); tests use an in-memory one.
class LastKnown {
 public:
  virtual ~LastKnown() = default;
  // The observation last remembered; nullopt when there is none (or it no
  // longer parses: a stale memory is forgotten, not an error).
  virtual Result<std::optional<ObservedState>> load() = 0;
  virtual Status remember(const ObservedState& obs) = 0;
};

// observe_all, then fill_last_known from `memory` (when given) and, with
// `remember`, store the new observation there for the next run. Observation
// still never fails: a memory that cannot be read or written is logged and,
// when `memory_error` is given, its message is written there.
ObservedState observe_with_last_known(const DesiredState& desired, Fleet& fleet, Clock& clock,
                                      int parallelism, LastKnown* memory, bool remember,
                                      std::string* memory_error = nullptr);

// Runs fn(i) for i in [0, n) on up to `parallelism` threads.
void parallel_for(size_t n, int parallelism, const std::function<void(size_t)>& fn);

}  // namespace stackflip
