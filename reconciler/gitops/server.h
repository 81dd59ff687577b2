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
// HTTP (endpoint.h: one poll() thread, bounded bodies, heads, connections
// and times; loopback or wherever --listen says). What each endpoint reveals:
//   GET  /healthz   "ok" once the loop runs; nothing else. Always open.
//   GET  /metrics   Prometheus text (metrics.h): pass counts and durations,
//                   per group the active stack and convergence. Always open
//                   (scrapers), so it names groups and stacks but no hosts.
//   GET  /status    JSON: repository URL (without credentials), last commit,
//                   commit in force, last result and error (redacted), per
//                   group the active stack, converged, drift, traffic, and
//                   what the last pass did to it: outcome (converged,
//                   switched, applied, failed, blocked, interrupted, pending),
//                   steps, seconds, reason (redacted; null when none)
//   GET  /observed  the latest observed snapshot (snapshot.h JSON): hosts,
//                   ports, WAL positions, provider answers — for pull-request
//                   jobs to plan without production credentials
//   GET  /          the status page (status_page.h): per group the desired
//                   and serving stack, traffic, state and why, the etcd
//                   leader; the last pass, the commit in force with its
//                   author and message, the passes (paged). HTML, no
//                   external assets.
//   GET  /group     ?name=NAME: one group's page: each stack's role,
//                   maintenance, replication and lag, what is left to do,
//                   the timeline of the last switch, its journal (paged:
//                   actions with their stacks, results, durations and
//                   errors, redacted). Everything /status and the journal
//                   reveal, but no hosts or DSNs.
//   POST /login     a form with the api token: sets the session cookie the
//                   pages accept instead of the bearer header (browsers
//                   cannot send one); 404 without an api token.
//   POST /webhook   202 and a pass starts when either
//                   - X-Hub-Signature-256 is "sha256=<hex HMAC-SHA256 of the raw
//                     body>" with the --webhook-secret (GitHub; any Content-Type,
//                     form-encoded pushes included), or
//                   - X-Gitlab-Token equals the --gitlab-webhook-token (GitLab);
//                   401 otherwise, 404 when neither secret is configured.
//                   Reveals nothing. The body is never parsed.
// With an api token (--api-token), /, /group, /status and /observed answer 401
// unless the request carries "Authorization: Bearer <token>" (compared in
// constant time) or the session cookie /login set: "stackflip_session=" the
// HMAC-SHA256 of a fixed text keyed by the token (HttpOnly, SameSite=Strict),
// so the cookie is not the token and changes when the token does. The pages
// answer 401 with the sign-in form. Over anything but loopback, serve them
// behind TLS: the cookie, like the header, is sent in the clear otherwise.
// /webhook has its own authentication (GitHub and GitLab cannot send a bearer
// token). With a webhook listener (--webhook-listen), /webhook is served there
// only, so the main listener can stay on loopback or a management network.
//
// StateLock: only one process applies to a state store at a time (an flock on
// "<state db>.lock", released by the kernel when the process dies, so a
// SIGKILLed run never blocks its restart).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "gitops/endpoint.h"
#include "gitops/metrics.h"
#include "gitops/reconcile.h"
#include "gitops/state_store.h"
#include "util/result.h"
#include "util/strings.h"  // parse_duration

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
  std::string webhook_listen;    // separate listener for /webhook; empty = on `listen`
  std::string webhook_secret;    // resolved; empty = no GitHub signatures accepted
  std::string gitlab_token;      // resolved; empty = no GitLab tokens accepted
  std::string api_token;         // resolved; empty = /status and /observed open
  std::string repo_description;  // for /status
  const StateStore* store = nullptr;  // the journal and passes the pages show; null = none
  EndpointLimits limits;
  // With etcd (issue 13): /status gets a "coordination" member (this JSON
  // object), /metrics these lines, and `wake` is handed the loop's trigger
  // (a pass at once when this instance gains a group; nullptr at the end).
  std::function<std::string()> coordination_status, coordination_metrics;
  std::function<void(std::function<void()>)> wake;
};

// True when `header` is "sha256=<hex>" and hex is the HMAC-SHA256 of `body`
// with `secret` (compared in constant time).
bool webhook_signature_ok(const std::string& secret, const std::string& body,
                          const std::string& header);

// True when `header` equals `token` (constant time, also in its length);
// never for an empty token.
bool gitlab_token_ok(const std::string& token, const std::string& header);

// True when `token` is empty, or `authorization` is "Bearer <token>" (scheme
// in any case; constant-time comparison).
bool bearer_token_ok(const std::string& token, const std::string& authorization);

// The session cookie's value for `token`, and whether a Cookie header holds it.
std::string session_cookie_value(const std::string& token);
bool session_cookie_ok(const std::string& token, const std::string& cookie_header);

// What POST /webhook answers; `*trigger` is set when a pass should start.
EndpointResponse answer_webhook(const RunSettings& settings, const EndpointRequest& req,
                                bool* trigger);

// Runs until SIGTERM/SIGINT. Returns 0 after a clean stop, 1 when an HTTP
// listener cannot listen. `on_pass` (may be empty) sees every report.
int run_loop(Reconciler& reconciler, const RunSettings& settings,
             const std::function<void(const PassReport&)>& on_pass = {});

// The /status JSON of a report (also used by tests).
std::string status_json(const PassReport* last, const std::string& repo,
                        const std::string& coordination = "");

}  // namespace stackflip
