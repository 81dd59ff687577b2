#include "drivers/powerdns_zone.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>

#include "config/host_policy.h"
#include "config/loader.h"
#include "config/secret.h"
#include "core/provider_stats.h"
#include "drivers/powerdns_driver.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// A zone's rrset is bounded by what the HTTP client reads; this bounds what
// one rrset keeps of it.
constexpr size_t kMaxRecords = 1000;

}  // namespace

std::string dns_upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

PowerDnsZones::PowerDnsZones(const ProviderConfig& provider)
    : provider_(provider.name),
      client_options_{provider.get("insecure") == "true", provider.get("ca_file")} {
  base_url_ = provider.get("url");
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
  api_key_ref_ = provider.get("api_key");
  server_id_ = provider.get("server_id", provider_default("powerdns", "server_id"));
  const int fallback_ms = parse_int(provider_default("powerdns", "timeout_ms"), 0);
  timeout_ = std::chrono::milliseconds(parse_int(provider.get("timeout_ms"), fallback_ms));
}

PowerDnsZones::~PowerDnsZones() = default;

std::string PowerDnsZones::server_url() const {
  return base_url_ + "/api/v1/servers/" + percent_encode_path_segment(server_id_);
}

std::string PowerDnsZones::zone_url(const std::string& zone) const {
  // Both ids are encoded, so neither can reach another path ("../x").
  return server_url() + "/zones/" + powerdns_zone_id(zone);
}

uint64_t PowerDnsZones::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

PowerDnsZones::Zone& PowerDnsZones::zone(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& z = zones_[name];
  if (!z) z = std::make_unique<Zone>();
  return *z;
}

Result<std::shared_ptr<const PowerDnsZoneData>> PowerDnsZones::read(const std::string& name,
                                                                    ObservePass pass) {
  return zone(name).reads.read(pass, [&] { return fetch(name); });
}

Status PowerDnsZones::patch(const std::string& name, std::string body, bool create_missing) {
  // One change to a zone at a time: PowerDNS's SQLite backend has one
  // writer, and concurrent PATCHes to one zone (a site-wide failover of
  // groups sharing it) fail with HTTP 500 "database is locked"; seen in
  // scripts/bench-groups.sh. A PATCH takes milliseconds, so queueing the
  // groups' changes costs little.
  Zone& z = zone(name);
  std::lock_guard one_writer(z.writer);
  // Dropped before, so no reader of this pass starts from the old copy, and
  // after, so none keeps a copy fetched while the change was under way.
  z.reads.drop();
  long status = 0;
  auto r = call("PATCH", zone_url(name), body, &status);
  if (!r.ok() && status == 404 && create_missing) {
    // PATCH first, create on its 404: a switch into a zone that exists
    // (every one but the first) costs no extra request.
    if (Status made = create(name); !made.ok()) {
      z.reads.drop();
      return made;
    }
    r = call("PATCH", zone_url(name), std::move(body));
  }
  z.reads.drop();
  return r.ok() ? Status::Ok() : Status(r.error());
}

Status PowerDnsZones::create(const std::string& name) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("name"), w.String(name.c_str());
  w.Key("kind"), w.String("Native");
  w.Key("nameservers"), w.StartArray(), w.EndArray();
  w.EndObject();
  long status = 0;
  auto r =
      call("POST", server_url() + "/zones", std::string(buf.GetString(), buf.GetSize()), &status);
  if (r.ok() || status == 409) return Status::Ok();  // 409: made meanwhile (another group)
  Error e = r.error();
  e.message = "creating zone " + name + " (create_zone: true): " + e.message;
  return e;
}

Result<std::shared_ptr<const PowerDnsZoneData>> PowerDnsZones::fetch(const std::string& zone) {
  long status = 0;
  auto response = call("GET", zone_url(zone), "", &status);
  if (!response.ok() && status == 404) {
    // PowerDNS answers a plain "Not Found" both for a zone it lacks and for
    // a server id it does not know: the server's own URL tells them apart.
    long server_status = 0;
    auto server = call("GET", server_url(), "", &server_status);
    if (server.ok()) {
      auto missing = std::make_shared<PowerDnsZoneData>();
      missing->exists = false;
      return std::shared_ptr<const PowerDnsZoneData>(std::move(missing));
    }
    if (server_status == 404)  // only the operator can fix it: exit 1, not 3
      return ConfigError(response.error().message + "; and " + server_url() +
                         " is not found either: PowerDNS has no server \"" + server_id_ +
                         "\" (provider setting `server_id`; PowerDNS's own is \"localhost\")");
    return response.error();
  }
  if (!response.ok()) return response.error();
  rapidjson::Document doc;
  if (auto e = parse_json_input(response->body, doc))
    return Err("PowerDNS " + zone_url(zone) + ": the answer is not JSON we can read (" +
               e->message() + "): " + trim_for_message(response->body));
  if (!doc.IsObject() || !doc.HasMember("rrsets") || !doc["rrsets"].IsArray())
    return Err("PowerDNS " + zone_url(zone) +
               ": unexpected response (no rrsets array): " + trim_for_message(response->body));
  auto data = std::make_shared<PowerDnsZoneData>();
  for (const auto& rr : doc["rrsets"].GetArray()) {
    if (!rr.IsObject() || !rr.HasMember("name") || !rr.HasMember("type")) continue;
    if (!rr["name"].IsString() || !rr["type"].IsString()) continue;
    PowerDnsRrset set;
    set.type = dns_upper(rr["type"].GetString());
    if (rr.HasMember("ttl") && rr["ttl"].IsInt()) set.ttl = rr["ttl"].GetInt();
    if (rr.HasMember("records") && rr["records"].IsArray()) {
      for (const auto& rec : rr["records"].GetArray()) {
        if (!rec.IsObject() || !rec.HasMember("content") || !rec["content"].IsString()) continue;
        if (set.records.size() >= kMaxRecords) break;
        TrafficRecord r;
        r.content = rec["content"].GetString();
        r.disabled =
            rec.HasMember("disabled") && rec["disabled"].IsBool() && rec["disabled"].GetBool();
        set.records.push_back(std::move(r));
      }
    }
    data->by_name[to_lower(rr["name"].GetString())].push_back(std::move(set));
  }
  return std::shared_ptr<const PowerDnsZoneData>(std::move(data));
}

Result<std::string> PowerDnsZones::api_key() {
  {
    std::lock_guard lock(mu_);
    if (api_key_) return *api_key_;
  }
  auto origin = url_origin(base_url_);
  if (!origin.ok()) return Err("PowerDNS provider url: " + origin.error().message);
  auto key = resolve_secret_for(api_key_ref_, {*origin});
  if (!key.ok()) return Err("PowerDNS provider api_key: " + key.error().message);
  std::lock_guard lock(mu_);
  api_key_ = *key;
  return *key;
}

Result<HttpResponse> PowerDnsZones::call(const std::string& method, const std::string& url,
                                         std::string body, long* status) {
  if (base_url_.empty()) return Err("PowerDNS provider: `url` is not set");
  auto key = api_key();
  if (!key.ok()) return key.error();
  HttpRequest req;
  req.method = method;
  req.url = url;
  req.timeout = timeout_;
  req.body = std::move(body);
  req.headers = {{"X-API-Key", *key}, {"Accept", "application/json"}};
  if (!req.body.empty()) req.headers.emplace_back("Content-Type", "application/json");

  std::unique_ptr<HttpClient> client;
  {
    std::lock_guard lock(mu_);
    ++requests_;
    if (!idle_clients_.empty()) {
      client = std::move(idle_clients_.back());
      idle_clients_.pop_back();
    }
  }
  if (!client) client = std::make_unique<HttpClient>(client_options_);
  count_provider_request(provider_, "powerdns", method);
  auto response = client->perform(req);
  {
    std::lock_guard lock(mu_);
    idle_clients_.push_back(std::move(client));
  }
  if (!response.ok()) {
    Error e = response.error();
    e.message = "PowerDNS " + e.message;
    return e;
  }
  if (status) *status = response->status;
  if (response->status == 401 || response->status == 403)
    return ConfigError("PowerDNS " + req.url + ": HTTP " + std::to_string(response->status) +
                       ", the api_key from " + api_key_ref_ +
                       " was rejected: " + trim_for_message(response->body));
  if (response->status < 200 || response->status > 299) {
    Error e = Err("PowerDNS " + req.url + ": HTTP " + std::to_string(response->status) + ": " +
                  trim_for_message(response->body));
    e.permanent = http_refusal(response->status);  // e.g. 422: asking again cannot help
    return e;
  }
  return response;
}

}  // namespace stackflip
