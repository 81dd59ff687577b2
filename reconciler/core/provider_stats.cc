#include "core/provider_stats.h"

#include <iterator>
#include <mutex>

namespace stackflip {

namespace {

std::mutex& mu() {
  static std::mutex m;
  return m;
}

ProviderStats& stats() {
  static ProviderStats s = [] {
    ProviderStats init;
    init.observe_buckets.assign(std::size(kObserveBuckets), 0);
    return init;
  }();
  return s;
}

}  // namespace

void count_provider_request(const std::string& provider, const std::string& kind,
                            const std::string& method) {
  std::lock_guard lock(mu());
  ++stats().requests[{provider, kind, method}];
}

void postgres_session_opened(const std::string& server) {
  std::lock_guard lock(mu());
  ++stats().postgres_sessions[server];
}

void postgres_session_closed(const std::string& server) {
  std::lock_guard lock(mu());
  --stats().postgres_sessions[server];
}

void record_observe_duration(double seconds) {
  std::lock_guard lock(mu());
  ProviderStats& s = stats();
  ++s.observe_passes;
  s.observe_seconds_sum += seconds;
  s.last_observe_seconds = seconds;
  for (size_t i = 0; i < std::size(kObserveBuckets); ++i)
    if (seconds <= kObserveBuckets[i]) ++s.observe_buckets[i];
}

ProviderStats provider_stats() {
  std::lock_guard lock(mu());
  return stats();
}

uint64_t provider_requests(const std::string& kind) {
  std::lock_guard lock(mu());
  uint64_t n = 0;
  for (const auto& [key, count] : stats().requests)
    if (key.kind == kind) n += count;
  return n;
}

}  // namespace stackflip
