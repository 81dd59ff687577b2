#include "gitops/metrics.h"

#include <cstdio>
#include <iterator>
#include <sstream>

#include "core/provider_stats.h"

namespace stackflip {

namespace {
// Label values: backslash, double quote and newline escaped.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}
}  // namespace

void Metrics::record(const PassReport& r, double unix_seconds) {
  std::lock_guard lock(mu_);
  ++total_;
  const std::string& res = r.run.result;
  const bool store_failed = !r.state_store_error.empty();
  if (res == "failed" || res == "invalid" || store_failed) ++errors_;
  if (store_failed) ++store_errors_;
  if (res == "blocked") ++blocked_;
  if ((res == "applied" || res == "no-changes" || res == "standby") && !store_failed)
    last_success_ = unix_seconds;
  double s = r.run.duration_ms / 1000.0;
  duration_sum_ += s;
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (s <= kBuckets[i]) ++bucket_counts_[i];
  if (!r.groups.empty()) groups_ = r.groups;
}

std::string Metrics::prometheus() const {
  std::lock_guard lock(mu_);
  std::ostringstream o;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " counter\n"
      << name << ' ' << v << '\n';
  };
  counter("stackflip_reconcile_total", "Reconcile passes run.", total_);
  counter("stackflip_reconcile_errors_total",
          "Passes that failed, met an invalid commit or could not use the state store.", errors_);
  counter("stackflip_state_store_errors_total",
          "Passes that could not read or write the state store.", store_errors_);
  counter("stackflip_reconcile_blocked_total", "Passes stopped by a guard.", blocked_);
  o << "# HELP stackflip_reconcile_duration_seconds Duration of reconcile passes.\n"
       "# TYPE stackflip_reconcile_duration_seconds histogram\n";
  for (size_t i = 0; i < kBuckets.size(); ++i)
    o << "stackflip_reconcile_duration_seconds_bucket{le=\"" << num(kBuckets[i]) << "\"} "
      << bucket_counts_[i] << '\n';
  o << "stackflip_reconcile_duration_seconds_bucket{le=\"+Inf\"} " << total_ << '\n'
    << "stackflip_reconcile_duration_seconds_sum " << num(duration_sum_) << '\n'
    << "stackflip_reconcile_duration_seconds_count " << total_ << '\n';
  o << "# HELP stackflip_last_success_timestamp_seconds End of the last successful pass.\n"
       "# TYPE stackflip_last_success_timestamp_seconds gauge\n"
       "stackflip_last_success_timestamp_seconds "
    << num(last_success_) << '\n';
  o << "# HELP stackflip_group_active_stack The desired active stack of each group.\n"
       "# TYPE stackflip_group_active_stack gauge\n";
  for (const auto& [g, s] : groups_)
    o << "stackflip_group_active_stack{group=\"" << label(g) << "\",stack=\"" << label(s.active)
      << "\"} 1\n";
  o << "# HELP stackflip_group_converged 1 when the group needs no action.\n"
       "# TYPE stackflip_group_converged gauge\n";
  for (const auto& [g, s] : groups_)
    o << "stackflip_group_converged{group=\"" << label(g) << "\"} " << (s.converged ? 1 : 0)
      << '\n';
  o << "# HELP stackflip_group_config_error 1 when a provider rejected the group's credentials or "
       "configuration (exit 1, not blocked).\n"
       "# TYPE stackflip_group_config_error gauge\n";
  for (const auto& [g, s] : groups_)
    o << "stackflip_group_config_error{group=\"" << label(g) << "\"} " << (s.config_error ? 1 : 0)
      << '\n';
  o << "# HELP stackflip_group_drift_actions Actions the last pass found necessary.\n"
       "# TYPE stackflip_group_drift_actions gauge\n";
  for (const auto& [g, s] : groups_)
    o << "stackflip_group_drift_actions{group=\"" << label(g) << "\"} " << s.drift << '\n';

  const ProviderStats ps = provider_stats();
  o << "# HELP stackflip_observe_duration_seconds Wall time of observation passes.\n"
       "# TYPE stackflip_observe_duration_seconds histogram\n";
  for (size_t i = 0; i < std::size(kObserveBuckets); ++i)
    o << "stackflip_observe_duration_seconds_bucket{le=\"" << num(kObserveBuckets[i]) << "\"} "
      << ps.observe_buckets[i] << '\n';
  o << "stackflip_observe_duration_seconds_bucket{le=\"+Inf\"} " << ps.observe_passes << '\n'
    << "stackflip_observe_duration_seconds_sum " << num(ps.observe_seconds_sum) << '\n'
    << "stackflip_observe_duration_seconds_count " << ps.observe_passes << '\n';
  o << "# HELP stackflip_observe_last_duration_seconds Wall time of the last observation pass.\n"
       "# TYPE stackflip_observe_last_duration_seconds gauge\n"
       "stackflip_observe_last_duration_seconds "
    << num(ps.last_observe_seconds) << '\n';
  o << "# HELP stackflip_provider_requests_total HTTP requests sent to providers.\n"
       "# TYPE stackflip_provider_requests_total counter\n";
  for (const auto& [k, n] : ps.requests)
    o << "stackflip_provider_requests_total{provider=\"" << label(k.provider) << "\",kind=\""
      << label(k.kind) << "\",method=\"" << label(k.method) << "\"} " << n << '\n';
  o << "# HELP stackflip_postgres_sessions PostgreSQL sessions open, by server.\n"
       "# TYPE stackflip_postgres_sessions gauge\n";
  for (const auto& [server, n] : ps.postgres_sessions)
    o << "stackflip_postgres_sessions{server=\"" << label(server) << "\"} " << n << '\n';
  return o.str();
}

}  // namespace stackflip
