// provider_stats.h — process-wide counts of what observation costs: requests
// sent to each provider, PostgreSQL sessions open per server, and the wall
// time of observation passes. Metrics (metrics.h) renders them on /metrics;
// benchmarks and tests read them to count requests per pass.
//
// Process-wide on purpose, as a Prometheus client's default registry is: the
// drivers that count are made deep inside DriverFactory and live in any
// number of fleets, and what /metrics must show is the process's total.
//
// Thread safety: every function may be called from any thread (one mutex;
// the counted events are network round trips, so it is never contended).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace stackflip {

struct ProviderRequestKey {
  std::string provider;  // the provider's name in the configuration
  std::string kind;      // its type: powerdns, cloud66, ...
  std::string method;    // GET, PATCH, PUT, POST
  bool operator<(const ProviderRequestKey& o) const {
    return std::tie(provider, kind, method) < std::tie(o.provider, o.kind, o.method);
  }
};

// One HTTP request sent to a provider (each attempt of a retried request).
void count_provider_request(const std::string& provider, const std::string& kind,
                            const std::string& method);
// PostgreSQL sessions: opened successfully / closed, by "host:port".
void postgres_session_opened(const std::string& server);
void postgres_session_closed(const std::string& server);
// One observation pass (observe_all) took `seconds`.
void record_observe_duration(double seconds);

struct ProviderStats {
  std::map<ProviderRequestKey, uint64_t> requests;
  std::map<std::string, int64_t> postgres_sessions;  // server -> open now (entries stay at 0)
  uint64_t observe_passes = 0;
  double observe_seconds_sum = 0;
  double last_observe_seconds = 0;
  std::vector<uint64_t> observe_buckets;  // counts per kObserveBuckets bound (cumulative)
};

inline constexpr double kObserveBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

ProviderStats provider_stats();
// Requests sent to providers of `kind` so far (all providers, all methods).
uint64_t provider_requests(const std::string& kind);

}  // namespace stackflip
