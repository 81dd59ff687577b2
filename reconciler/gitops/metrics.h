// metrics.h — what the run loop exports on /metrics, in the Prometheus text
// format (version 0.0.4). Fed with each pass's report; rendered on request.
//
//   stackflip_reconcile_total                      passes run
//   stackflip_reconcile_errors_total               passes that ended failed or invalid, or
//                                                  could not use the state store
//   stackflip_state_store_errors_total             passes that could not read or write the
//                                                  state store (disk full, read-only, ...)
//   stackflip_reconcile_blocked_total              passes stopped by a guard
//   stackflip_reconcile_duration_seconds           histogram of pass durations
//   stackflip_last_success_timestamp_seconds       end of the last applied/no-changes/standby pass
//                                                  that the state store recorded
//   stackflip_group_active_stack{group,stack}      1 for the desired active stack
//   stackflip_group_converged{group}               1 when nothing is left to do
//   stackflip_group_drift_actions{group}           actions the last pass found necessary
//   stackflip_observe_duration_seconds             histogram of observation passes' wall time
//                                                  (each pass observes before planning and,
//                                                  when it applied, again after)
//   stackflip_observe_last_duration_seconds        the last observation pass's wall time
//   stackflip_provider_requests_total{provider,kind,method}
//                                                  HTTP requests sent to traffic/stack providers
//                                                  (PowerDNS, Cloud 66), retries included
//   stackflip_postgres_sessions{server}            PostgreSQL sessions open now, by host:port
//
// The last four are process-wide (provider_stats.h): a scrape shows them as
// they are, not as of the last pass.
//
// Thread safety: every method may be called from any thread (one mutex).
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>

#include "gitops/reconcile.h"

namespace stackflip {

class Metrics {
 public:
  // `unix_seconds` is the wall-clock time the pass ended.
  void record(const PassReport& report, double unix_seconds);
  std::string prometheus() const;

 private:
  static constexpr std::array<double, 10> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,  1,     2.5,  10};
  mutable std::mutex mu_;
  uint64_t total_ = 0, errors_ = 0, blocked_ = 0, store_errors_ = 0;
  std::array<uint64_t, kBuckets.size()> bucket_counts_{};
  double duration_sum_ = 0;
  double last_success_ = 0;
  std::map<std::string, GroupStatus> groups_;
};

}  // namespace stackflip
