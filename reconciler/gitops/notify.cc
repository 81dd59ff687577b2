#include "gitops/notify.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include "config/secret.h"
#include "core/render.h"

namespace stackflip {

std::string slack_payload(const std::string& text) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("text");
  w.String(text.c_str(), static_cast<rapidjson::SizeType>(text.size()));
  w.EndObject();
  return buf.GetString();
}

WebhookNotifier::WebhookNotifier(std::string url) : url_(std::move(url)) {}

void WebhookNotifier::notify(const std::string& event, const std::string& text) {
  std::string url = url_;
  if (is_secret_reference(url_)) {
    auto r = resolve_secret(url_);
    if (!r.ok()) {
      spdlog::warn("notification ({}) not sent: {}", event, r.error().message);
      return;
    }
    url = *r;
  }
  HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.headers = {{"Content-Type", "application/json"}};
  req.body = slack_payload(redact_secrets(text));
  req.timeout = std::chrono::milliseconds(5000);
  auto r = client_.perform(req);
  // The URL may be a credential: report neither it nor libcurl's message (which quotes it).
  if (!r.ok())
    spdlog::warn("notification ({}) not sent: the webhook could not be reached{}", event,
                 r.error().timeout ? " (timeout)" : "");
  else if (r->status < 200 || r->status >= 300)
    spdlog::warn("notification ({}) rejected by the webhook: HTTP {}", event, r->status);
}

}  // namespace stackflip
