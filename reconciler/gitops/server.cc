#include "gitops/server.h"

#include <fcntl.h>
#include <pthread.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <iostream>
#include <mutex>
#include <random>
#include <regex>
#include <thread>

#include "config/snapshot.h"
#include "core/render.h"
#include "gitops/status_page.h"
#include "util/digest.h"

namespace stackflip {

// ------------------------------------------------------------------ lock

Result<std::unique_ptr<StateLock>> StateLock::acquire(const std::string& state_db) {
  std::string path = state_db + ".lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Err("cannot open the lock file " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    ::close(fd);
    return Err("another stackflip process (pid " + pid + ") is reconciling with " + state_db +
               " (lock " + path + "); refusing to start a second one");
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, me.data(), me.size(), 0);
  return std::unique_ptr<StateLock>(new StateLock(fd));
}

StateLock::~StateLock() { ::close(fd_); }

// ------------------------------------------------------------------ helpers

bool webhook_signature_ok(const std::string& secret, const std::string& body,
                          const std::string& header) {
  const std::string prefix = "sha256=";
  if (secret.empty() || header.rfind(prefix, 0) != 0) return false;
  return constant_time_equal(header.substr(prefix.size()), hmac_sha256_hex(secret, body));
}

bool gitlab_token_ok(const std::string& token, const std::string& header) {
  // Hashing both first keeps the comparison's time independent of the length.
  return !token.empty() && constant_time_equal(sha256_hex(header), sha256_hex(token));
}

bool bearer_token_ok(const std::string& token, const std::string& authorization) {
  if (token.empty()) return true;
  const std::string scheme = "bearer ";
  if (authorization.size() < scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i]) return false;
  size_t start = authorization.find_first_not_of(' ', scheme.size());
  if (start == std::string::npos) return false;
  return constant_time_equal(sha256_hex(authorization.substr(start)), sha256_hex(token));
}

std::string session_cookie_value(const std::string& token) {
  return hmac_sha256_hex(token, "stackflip status page session v1");
}

bool session_cookie_ok(const std::string& token, const std::string& cookie_header) {
  if (token.empty()) return true;
  const std::string name = "stackflip_session=";
  size_t at = 0;
  while ((at = cookie_header.find(name, at)) != std::string::npos) {
    if (at == 0 || cookie_header[at - 1] == ' ' || cookie_header[at - 1] == ';') {
      size_t start = at + name.size();
      size_t end = cookie_header.find(';', start);
      std::string value = cookie_header.substr(start, end == std::string::npos ? end : end - start);
      return constant_time_equal(sha256_hex(value), sha256_hex(session_cookie_value(token)));
    }
    at += name.size();
  }
  return false;
}

EndpointResponse answer_webhook(const RunSettings& rs, const EndpointRequest& req, bool* trigger) {
  *trigger = false;
  if (rs.webhook_secret.empty() && rs.gitlab_token.empty())
    return EndpointResponse::text(
        404, "webhook not configured (--webhook-secret, --gitlab-webhook-token)\n");
  std::string gitlab = req.header("X-Gitlab-Token");
  std::string github = req.header("X-Hub-Signature-256");
  bool ok = !gitlab.empty() ? gitlab_token_ok(rs.gitlab_token, gitlab)
                            : webhook_signature_ok(rs.webhook_secret, req.body, github);
  if (!ok) {
    spdlog::warn("webhook from {} refused: {}", req.remote,
                 !gitlab.empty()   ? "wrong X-Gitlab-Token"
                 : !github.empty() ? "bad X-Hub-Signature-256"
                                   : "no X-Hub-Signature-256 or X-Gitlab-Token");
    return EndpointResponse::text(401, "bad signature or token\n");
  }
  *trigger = true;
  return EndpointResponse::text(202, "reconcile triggered\n");
}

std::string status_json(const PassReport* last, const std::string& repo,
                        const std::string& coordination) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto str = [&](const char* k, const std::string& v) {
    w.Key(k);
    w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  str("repository", repo);
  if (!coordination.empty()) {  // our own JSON object (etcd_coordination.h)
    w.Key("coordination");
    w.RawValue(coordination.c_str(), coordination.size(), rapidjson::kObjectType);
  }
  if (!last) {
    w.Key("last_run");
    w.Null();
  } else {
    str("last_commit", last->run.commit);
    str("commit_in_force", last->commit_in_force);
    str("last_result", last->run.result);
    str("last_error", redact_secrets(last->run.error));
    w.Key("state_store_error");
    if (last->state_store_error.empty())
      w.Null();
    else
      w.String(redact_secrets(last->state_store_error).c_str());
    str("last_started_at", last->run.started_at);
    w.Key("last_duration_ms");
    w.Int64(last->run.duration_ms);
    w.Key("converged");
    w.Bool(last->converged());
    w.Key("groups");
    w.StartObject();
    for (const auto& [name, g] : last->groups) {
      w.Key(name.c_str());
      w.StartObject();
      str("active", g.active);
      w.Key("converged");
      w.Bool(g.converged);
      w.Key("drift_actions");
      w.Uint64(g.drift);
      w.Key("traffic");
      if (g.traffic)
        w.String(g.traffic->c_str());
      else
        w.Null();
      str("outcome", to_string(g.outcome));
      w.Key("steps");
      w.Uint64(g.steps);
      w.Key("seconds");
      w.Double(std::round(g.seconds * 1000) / 1000);
      w.Key("reason");
      if (g.reason.empty())
        w.Null();
      else
        w.String(redact_secrets(g.reason).c_str());
      w.Key("config_error");  // credentials or configuration rejected (issue 12)
      w.Bool(g.config_error);
      // The active stack down: the fact and the change to commit (issue 14).
      w.Key("outage");
      if (g.outage.empty())
        w.Null();
      else
        w.String(redact_secrets(g.outage).c_str());
      w.Key("decision");
      if (g.decision.empty())
        w.Null();
      else
        w.String(redact_secrets(g.decision).c_str());
      // An automatic failover in force as an override, not yet in Git.
      w.Key("override");
      if (g.override_note.empty())
        w.Null();
      else
        w.String(redact_secrets(g.override_note).c_str());
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndObject();
  return std::string(buf.GetString()) + "\n";
}

// ------------------------------------------------------------------ loop

namespace {

struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  bool triggered = false;
  std::atomic<bool> stop{false};
  std::unique_ptr<PassReport> last;
  std::shared_ptr<const std::string> observed_json;  // shared with responses being written
  std::string pass_started;  // RFC 3339 while a pass runs, "" between passes

  void trigger() {
    std::lock_guard lock(mu);
    triggered = true;
    cv.notify_all();
  }
  void request_stop() {
    std::lock_guard lock(mu);
    stop = true;
    cv.notify_all();
  }
};

std::string rfc3339_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  char buf[32];
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

namespace {

// Signals go to one thread that sigwait()s on `set` (blocked in every
// thread before any is created, so all inherit the mask). SIGUSR2 ends it.
std::thread start_signal_thread(const sigset_t& set, Shared& sh) {
  return std::thread([&set, &sh] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGUSR2) return;  // shutdown of this thread
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP: reconciling now");
        sh.trigger();
      } else {
        std::cout << "stopping: " << (sig == SIGTERM ? "SIGTERM" : "SIGINT")
                  << " received; the running action finishes first" << std::endl;
        sh.request_stop();
      }
    }
  });
}

// /healthz and /metrics open; /status and /observed behind the bearer token
// when one is set; /webhook on its own listener when one is configured.
void add_routes(HttpEndpoint& main_http, HttpEndpoint& hook_on, const RunSettings& rs, Shared& sh,
                Metrics& metrics) {
  auto authorized = [&rs](const EndpointRequest& req) {
    return bearer_token_ok(rs.api_token, req.header("Authorization")) ||
           session_cookie_ok(rs.api_token, req.header("Cookie"));
  };
  auto guarded = [authorized](std::function<EndpointResponse(const EndpointRequest&)> f) {
    return [authorized, f = std::move(f)](const EndpointRequest& req) {
      if (!authorized(req)) {
        EndpointResponse r = EndpointResponse::text(401, "missing or wrong bearer token\n");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"stackflip\"");
        return r;
      }
      return f(req);
    };
  };
  main_http.handle("GET", "/healthz",
                   [](const EndpointRequest&) { return EndpointResponse::text(200, "ok\n"); });
  main_http.handle("GET", "/metrics", [&metrics, &rs](const EndpointRequest&) {
    std::string text = metrics.prometheus();
    if (rs.coordination_metrics) text += rs.coordination_metrics();
    return EndpointResponse::shared(std::make_shared<const std::string>(redact(text)),
                                    "text/plain; version=0.0.4");
  });
  auto status = [&sh, &rs](const EndpointRequest&) {
    std::string coordination = rs.coordination_status ? rs.coordination_status() : "";
    std::lock_guard lock(sh.mu);
    return EndpointResponse::shared(std::make_shared<const std::string>(redact(status_json(
                                        sh.last.get(), rs.repo_description, coordination))),
                                    "application/json");
  };
  auto observed = [&sh](const EndpointRequest&) {
    std::lock_guard lock(sh.mu);
    if (!sh.observed_json) return EndpointResponse::text(503, "nothing observed yet\n");
    return EndpointResponse::shared(sh.observed_json, "application/json");
  };
  main_http.handle("GET", "/status", guarded(status));
  // The pages: the sign-in form instead of 401 text, and headers that keep
  // them from loading or being framed by anything else.
  auto html = [](int code, std::string body) {
    EndpointResponse r = EndpointResponse::shared(
        std::make_shared<const std::string>(std::move(body)), "text/html; charset=utf-8");
    r.status = code;
    r.headers = {{"Content-Security-Policy", page_csp()},
                 {"X-Content-Type-Options", "nosniff"},
                 {"Referrer-Policy", "no-referrer"},
                 {"Cache-Control", "no-store"}};
    return r;
  };
  auto page_input = [&rs]() {
    StatusPageInput in;
    in.repo = rs.repo_description;
    in.coordination_json = rs.coordination_status ? rs.coordination_status() : "";
    in.store = rs.store;
    in.now = rfc3339_now();
    return in;
  };
  auto pages = [&sh, authorized, html, page_input](bool group) {
    return [&sh, authorized, html, page_input, group](const EndpointRequest& req) {
      if (!authorized(req)) {
        EndpointResponse r = html(401, render_login_page(false));
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"stackflip\"");
        return r;
      }
      StatusPageInput in = page_input();
      std::lock_guard lock(sh.mu);
      in.last = sh.last.get();
      in.pass_started = sh.pass_started;
      if (!group) return html(200, render_overview_page(in, req.query));
      auto body = render_group_page(in, req.query);
      if (!body)
        return html(404,
                    "<!DOCTYPE html><title>no such group</title><p>No such group.</p>"
                    "<p><a href=\"/\">All groups</a></p>\n");
      return html(200, std::move(*body));
    };
  };
  main_http.handle("GET", "/", pages(false));
  main_http.handle("GET", "/group", pages(true));
  main_http.handle("POST", "/login", [&rs, html](const EndpointRequest& req) {
    if (rs.api_token.empty()) {
      EndpointResponse r = EndpointResponse::text(303, "no token needed\n");
      r.headers.emplace_back("Location", "/");
      return r;
    }
    if (!bearer_token_ok(rs.api_token, "Bearer " + query_param(req.body, "token"))) {
      spdlog::warn("status page sign-in from {} refused: wrong token", req.remote);
      return html(401, render_login_page(true));
    }
    EndpointResponse r = EndpointResponse::text(303, "signed in\n");
    r.headers.emplace_back("Location", "/");
    r.headers.emplace_back("Set-Cookie", "stackflip_session=" + session_cookie_value(rs.api_token) +
                                             "; Path=/; HttpOnly; SameSite=Strict");
    return r;
  });
  main_http.handle("GET", "/observed", guarded(observed));
  hook_on.handle("POST", "/webhook", [&rs, &sh](const EndpointRequest& req) {
    bool trigger = false;
    EndpointResponse r = answer_webhook(rs, req, &trigger);
    if (trigger) sh.trigger();
    return r;
  });
}

// Listens on each configured address; 1 (and a message) when one fails.
int start_listeners(HttpEndpoint& main_http, HttpEndpoint& hook_http, const RunSettings& rs) {
  for (auto [endpoint, address] :
       {std::pair{&main_http, rs.listen}, {&hook_http, rs.webhook_listen}}) {
    if (address.empty()) continue;
    if (Status st = endpoint->listen(address); !st.ok()) {
      std::cerr << st.error().message << "\n";
      return 1;
    }
    endpoint->start();
    std::cout << "listening on " << address << (endpoint == &hook_http ? " (webhook)" : "")
              << std::endl;
  }
  return 0;
}

// Logs a pass and makes it what /status and /observed serve.
void publish(PassReport rep, Shared& sh, Metrics& metrics,
             const std::function<void(const PassReport&)>& on_pass) {
  metrics.record(rep, unix_now());
  if (on_pass) on_pass(rep);
  std::cout << "pass: " << rep.run.result << " at " << rep.run.commit.substr(0, 12) << " in "
            << rep.run.duration_ms << " ms" << (rep.idle ? " (idle)" : "")
            << (rep.run.actions ? ", " + std::to_string(rep.run.actions) + " actions" : "")
            << (rep.run.error.empty() ? "" : ": " + rep.run.error) << "\n"
            << format_group_outcomes(rep, false) << std::flush;
  std::shared_ptr<const std::string> observed;
  if (rep.observed)
    observed = std::make_shared<const std::string>(redact(snapshot_to_json(*rep.observed, true)));
  std::lock_guard lock(sh.mu);
  if (observed) sh.observed_json = std::move(observed);
  sh.last = std::make_unique<PassReport>(std::move(rep));
  sh.pass_started.clear();
}

}  // namespace

int run_loop(Reconciler& reconciler, const RunSettings& rs,
             const std::function<void(const PassReport&)>& on_pass) {
  sigset_t set, old;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR2}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, &old);

  Shared sh;
  Metrics metrics;
  std::thread signals = start_signal_thread(set, sh);
  // Two listeners at most: the main one, and /webhook's own when asked for.
  HttpEndpoint main_http(rs.limits), hook_http(rs.limits);
  add_routes(main_http, rs.webhook_listen.empty() ? main_http : hook_http, rs, sh, metrics);
  int rc = start_listeners(main_http, hook_http, rs);
  if (rc) sh.stop = true;
  if (rs.wake) rs.wake([&sh] { sh.trigger(); });

  std::mt19937_64 rng{std::random_device{}()};
  while (!sh.stop) {
    {
      std::lock_guard lock(sh.mu);
      sh.pass_started = rfc3339_now();
    }
    PassReport rep = reconciler.pass(&sh.stop);
    // A pushed failover commit is applied at once; a failing active stack
    // with automatic failover is looked at again when `after` runs out.
    const bool again = rep.again;
    const auto within = rep.next_within;
    publish(std::move(rep), sh, metrics, on_pass);
    if (again) continue;
    auto extra = std::chrono::milliseconds(static_cast<int64_t>(
        std::uniform_real_distribution<double>(0, rs.jitter)(rng) * rs.interval.count()));
    auto wait = rs.interval + extra;
    if (within && *within < wait) wait = *within;
    auto deadline = std::chrono::steady_clock::now() + wait;
    std::unique_lock lock(sh.mu);
    sh.cv.wait_until(lock, deadline, [&] { return sh.triggered || sh.stop.load(); });
    sh.triggered = false;
  }

  if (rs.wake) rs.wake(nullptr);
  main_http.stop();
  hook_http.stop();
  pthread_kill(signals.native_handle(), SIGUSR2);
  signals.join();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc == 0) std::cout << "stopped" << std::endl;
  return rc;
}

}  // namespace stackflip
