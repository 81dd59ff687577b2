// server.h — `stackflip run`: the periodic reconcile job and its HTTP endpoint.
//
// The loop runs a pass (reconcile.h) at start, then every `interval` plus a
// random jitter of up to `jitter` × interval, and at once when triggered: a
// webhook POST with a valid GitHub-style signature, or SIGHUP. Triggers that
// arrive during a pass coalesce into one pass after it.
//
// SIGTERM / SIGINT: the running action finishes (ApplyOptions::stop_requested),
// no further action or pass starts, the pass is recorded, and run() returns 0.
// Signals are taken by a dedicated thread (sigwait), so no work happens in a
// signal handler.
//
// HTTP (cpp-httplib, loopback or wherever --listen says):
//   GET  /healthz   "ok" once the loop runs
//   GET  /status    JSON: last commit, commit in force, last result/error,
//                   per group the active stack, converged, drift
//   GET  /metrics   Prometheus text (metrics.h)
//   GET  /observed  the latest observed snapshot (snapshot.h JSON) — for
//                   pull-request jobs to plan without production credentials
//   POST /webhook   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>;
//                   202 and a pass starts, 401 on a missing or bad signature,
//                   404 when no webhook secret is configured
//
// StateLock: only one process applies to a state store at a time (an flock on
// "<state db>.lock", released by the kernel when the process dies, so a
// SIGKILLed run never blocks its restart).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "journal.h"
#include "metrics.h"
#include "reconcile.h"
#include "result.h"

namespace stackflip {

class StateLock {
 public:
  // Refuses when another process holds it; the message names the holder's pid.
  static Result<std::unique_ptr<StateLock>> acquire(const std::string& state_db);
  ~StateLock();

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

struct RunSettings {
  std::chrono::milliseconds interval{30000};
  double jitter = 0.1;           // fraction of interval added at random
  std::string listen;            // "127.0.0.1:9090"; empty = no HTTP endpoint
  std::string webhook_secret;    // resolved; empty = /webhook disabled
  std::string repo_description;  // for /status
};

// True when `header` is "sha256=<hex>" and hex is the HMAC-SHA256 of `body`
// with `secret` (compared in constant time).
bool webhook_signature_ok(const std::string& secret, const std::string& body,
                          const std::string& header);

// "30s", "5m", "1h", "250ms", "2" (seconds). Errors for anything else or zero.
Result<std::chrono::milliseconds> parse_duration(const std::string& text);

// Runs until SIGTERM/SIGINT. Returns 0 after a clean stop, 1 when the HTTP
// endpoint cannot listen. `on_pass` (may be empty) sees every report.
int run_loop(Reconciler& reconciler, const RunSettings& settings,
             const std::function<void(const PassReport&)>& on_pass = {});

// The /status JSON of a report (also used by tests).
std::string status_json(const PassReport* last, const std::string& repo);

}  // namespace stackflip
