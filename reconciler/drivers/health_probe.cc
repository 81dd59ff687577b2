#include "drivers/health_probe.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "config/host_policy.h"
#include "sys/http_client.h"
#include "util/strings.h"

namespace stackflip {

namespace {

class HttpHealthProbe : public HealthProbe {
 public:
  explicit HttpHealthProbe(HealthSpec spec)
      : spec_(std::move(spec)), shown_(trim_for_message(spec_.url, 160)) {}

  std::string check() override {
    auto origin = url_origin(spec_.url);
    const HostPolicy* policy = host_policy();
    if (!origin.ok() || (policy && !policy->health_allowed(*origin))) {
      if (!refused_logged_)
        spdlog::error("health check {}: not allowed on this host; not checked", shown_);
      refused_logged_ = true;
      return "";
    }
    HttpRequest r;
    r.url = spec_.url;
    r.timeout = std::chrono::milliseconds(spec_.timeout_ms);
    r.max_body = 64 << 10;  // of a non-2xx answer
    // A 2xx body's first bytes end the transfer: the status was the answer.
    // (Empty chunks are the stream's ticks while it waits.)
    auto resp = client_.stream(r, [](std::string_view chunk) { return chunk.empty(); });
    if (!resp.ok()) return trim_for_message(resp.error().message, 400);  // names GET and the URL
    if (resp->status < 200 || resp->status > 299)
      return "GET " + shown_ + ": HTTP " + std::to_string(resp->status);
    return "";
  }

 private:
  HealthSpec spec_;
  std::string shown_;
  HttpClient client_;
  bool refused_logged_ = false;
};

}  // namespace

std::unique_ptr<HealthProbe> make_http_health_probe(const HealthSpec& spec) {
  return std::make_unique<HttpHealthProbe>(spec);
}

}  // namespace stackflip
