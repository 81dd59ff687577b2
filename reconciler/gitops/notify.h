// notify.h — tells people what the loop did: a Slack-compatible webhook
// (POST {"text": "..."}) on applied, failed (including an invalid commit) and
// blocked passes. Quiet passes (no changes) send nothing.
//
// Messages name the repository (without credentials), the commit, the result
// and the error; they go through redact_secrets() and never contain resolved
// secrets. The webhook URL itself may be a secret reference (`${env:NAME}`,
// Slack URLs are credentials) and is never written into logs or errors.
// Delivery failures are logged as warnings and never fail a pass.
#pragma once

#include <memory>
#include <string>

#include "sys/http_client.h"

namespace stackflip {

class Notifier {
 public:
  virtual ~Notifier() = default;
  // `event` is "applied", "failed" or "blocked".
  virtual void notify(const std::string& event, const std::string& text) = 0;
};

class WebhookNotifier : public Notifier {
 public:
  // `url` is a URL or a secret reference to one; resolved at each call.
  explicit WebhookNotifier(std::string url);
  void notify(const std::string& event, const std::string& text) override;

 private:
  std::string url_;
  HttpClient client_;
};

// {"text": "<text>"} with JSON escaping.
std::string slack_payload(const std::string& text);

}  // namespace stackflip
