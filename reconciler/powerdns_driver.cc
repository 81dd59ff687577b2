#include "powerdns_driver.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <optional>
#include <set>

#include "address.h"
#include "http_client.h"
#include "host_policy.h"
#include "json_input.h"
#include "secret.h"

namespace stackflip {

namespace {

std::string absolute(std::string name) {
  if (!name.empty() && name.back() != '.') name += '.';
  return name;
}

bool iequals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

int parse_int(const std::string& text, int fallback) {
  try {
    return text.empty() ? fallback : std::stoi(text);
  } catch (const std::exception&) {
    return fallback;
  }
}

class PowerDnsTrafficDriver : public TrafficDriver {
 public:
  PowerDnsTrafficDriver(const ProviderConfig& provider, const GroupSpec& group,
                        const TrafficSpec& traffic)
      : group_(group),
        client_(HttpClientOptions{provider.get("insecure") == "true", provider.get("ca_file")}) {
    base_url_ = provider.get("url");
    while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
    api_key_ref_ = provider.get("api_key");
    server_id_ = provider.get("server_id", "localhost");
    timeout_ = std::chrono::milliseconds(parse_int(provider.get("timeout_ms"), 5000));
    zone_ = absolute(traffic.get("zone"));
    record_ = absolute(traffic.get("record"));
    type_ = upper(traffic.get("record_type", "A"));
    ttl_ = traffic.ttl;
    name_ = traffic.name.empty() ? record_ + " " + type_ : traffic.name;
    // Each stack's values for this record type, canonical, in written order.
    const AddressKind kind = kind_for_record_type(type_);
    for (const auto& [sname, stack] : group.stacks)
      for (const auto& a : stack.addresses)
        if (address_kind(a) == kind) values_[sname].push_back(a);
  }

  TrafficObs observe() override {
    TrafficObs obs;
    obs.name = name_;
    auto response = call("GET", "");
    if (!response.ok()) {
      obs.reachable = false;
      obs.error = response.error().message;
      return obs;
    }
    rapidjson::Document doc;
    if (auto e = parse_json_input(response->body, doc)) {
      obs.reachable = false;
      obs.error = "PowerDNS " + zone_url() + ": the answer is not JSON we can read (" +
                  e->message() + "): " + trim_for_message(response->body);
      return obs;
    }
    if (!doc.IsObject() || !doc.HasMember("rrsets") || !doc["rrsets"].IsArray()) {
      obs.reachable = false;
      obs.error = "PowerDNS " + zone_url() +
                  ": unexpected response (no rrsets array): " + trim_for_message(response->body);
      return obs;
    }
    for (const auto& rr : doc["rrsets"].GetArray()) {
      if (!rr.IsObject() || !rr.HasMember("name") || !rr.HasMember("type")) continue;
      if (!rr["name"].IsString() || !rr["type"].IsString()) continue;
      if (!iequals(rr["name"].GetString(), record_)) continue;
      const std::string type = upper(rr["type"].GetString());
      if (type != type_) {
        // A CNAME owns its name alone: PowerDNS refuses any other type
        // beside it, so such a switch would fail in the middle.
        if ((type == "CNAME" || type_ == "CNAME") && obs.blocker.empty() && type != "RRSIG" && type != "NSEC")
          obs.blocker = record_ + " holds a " + type + " record, and PowerDNS keeps no " + type_ +
                        " record beside " + (type == "CNAME" ? "a CNAME" : "other types of a CNAME's name") +
                        " (remove it by hand, or change record_type)";
        continue;
      }
      if (rr.HasMember("ttl") && rr["ttl"].IsInt()) obs.ttl = rr["ttl"].GetInt();
      if (rr.HasMember("records") && rr["records"].IsArray()) {
        for (const auto& rec : rr["records"].GetArray()) {
          if (!rec.IsObject() || !rec.HasMember("content") || !rec["content"].IsString()) continue;
          TrafficRecord r;
          r.content = rec["content"].GetString();
          r.disabled = rec.HasMember("disabled") && rec["disabled"].IsBool() && rec["disabled"].GetBool();
          r.stack = owner_of(r.content);
          if (obs.records.size() >= kMaxRecords) break;
          obs.records.push_back(std::move(r));
        }
      }
    }
    for (const auto& r : obs.records)
      if (!r.disabled) obs.content += (obs.content.empty() ? "" : ", ") + r.content;
    obs.target = exact_target(obs.records);
    return obs;
  }

  Status switch_to(const std::string& stack) override {
    auto it = group_.stacks.find(stack);
    if (it == group_.stacks.end())
      return Err("traffic.switch: stack \"" + stack + "\" is not in group " + group_.name);
    auto v = values_.find(stack);
    if (v == values_.end() || v->second.empty())
      return Err("traffic.switch: stack \"" + stack + "\" has no address for " + name_ + " (" +
                 to_string(kind_for_record_type(type_)) + ")");

    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("rrsets");
    w.StartArray();
    w.StartObject();
    w.Key("name"), w.String(record_.c_str());
    w.Key("type"), w.String(type_.c_str());
    w.Key("ttl"), w.Int(ttl_);
    w.Key("changetype"), w.String("REPLACE");
    w.Key("records");
    w.StartArray();
    for (const auto& address : v->second) {
      w.StartObject();
      w.Key("content"), w.String(address.c_str());
      w.Key("disabled"), w.Bool(false);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    w.EndArray();
    w.EndObject();

    auto response = call("PATCH", buf.GetString());
    if (!response.ok()) return response.error();

    TrafficObs after = observe();
    if (!after.reachable) return Err("traffic.switch: verifying the change: " + after.error);
    if (after.target != stack)
      return Err("traffic.switch: " + name_ + " holds \"" + after.content +
                 "\" after the change, expected " + join(v->second));
    return Status::Ok();
  }

 private:
  // A zone's rrset is bounded by what the HTTP client reads; this bounds
  // what one record keeps of it.
  static constexpr size_t kMaxRecords = 1000;

  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  }

  std::optional<std::string> owner_of(const std::string& content) const {
    const std::string c = canonical_address(content);
    for (const auto& [sname, vals] : values_)
      for (const auto& a : vals)
        if (canonical_address(a) == c) return sname;
    return std::nullopt;
  }

  // The stack whose values the enabled records are, exactly.
  std::optional<std::string> exact_target(const std::vector<TrafficRecord>& records) const {
    std::optional<std::string> only;
    std::set<std::string> held;
    for (const auto& r : records) {
      if (r.disabled) continue;
      if (!r.stack || (only && *only != *r.stack)) return std::nullopt;
      only = r.stack;
      held.insert(canonical_address(r.content));
    }
    if (!only) return std::nullopt;
    for (const auto& a : values_.at(*only))
      if (!held.count(canonical_address(a))) return std::nullopt;  // one of its addresses is missing
    return only;
  }

 private:
  // Both ids are encoded, so neither can reach another path ("../x").
  std::string zone_url() const {
    return base_url_ + "/api/v1/servers/" + percent_encode_path_segment(server_id_) + "/zones/" +
           powerdns_zone_id(zone_);
  }

  // Performs a request against the zone; non-2xx statuses become errors
  // carrying the status and the (trimmed) body.
  Result<HttpResponse> call(const std::string& method, std::string body) {
    if (base_url_.empty()) return Err("PowerDNS provider: `url` is not set");
    if (!api_key_) {
      auto origin = url_origin(base_url_);
      if (!origin.ok()) return Err("PowerDNS provider url: " + origin.error().message);
      auto key = resolve_secret_for(api_key_ref_, {*origin});
      if (!key.ok()) return Err("PowerDNS provider api_key: " + key.error().message);
      api_key_ = *key;
    }
    HttpRequest req;
    req.method = method;
    req.url = zone_url();
    req.timeout = timeout_;
    req.body = std::move(body);
    req.headers = {{"X-API-Key", *api_key_}, {"Accept", "application/json"}};
    if (!req.body.empty()) req.headers.emplace_back("Content-Type", "application/json");
    auto response = client_.perform(req);
    if (!response.ok()) {
      Error e = response.error();
      e.message = "PowerDNS " + e.message;
      return e;
    }
    if (response->status < 200 || response->status > 299) {
      Error e = Err("PowerDNS " + req.url + ": HTTP " + std::to_string(response->status) + ": " +
                    trim_for_message(response->body));
      e.permanent = http_refusal(response->status);  // e.g. 422: asking again cannot help
      return e;
    }
    return response;
  }

  GroupSpec group_;
  HttpClient client_;
  std::string base_url_, api_key_ref_, server_id_, zone_, record_, type_, name_;
  std::map<std::string, std::vector<std::string>> values_;  // stack -> its values for type_
  std::optional<std::string> api_key_;
  std::chrono::milliseconds timeout_{5000};
  int ttl_ = 60;
};

}  // namespace

std::string powerdns_zone_id(const std::string& zone) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string id;
  for (unsigned char c : zone) {
    if (std::isalnum(c) || c == '.' || c == '-') {
      id += static_cast<char>(c);
    } else {
      id += '=';
      id += kHex[c >> 4];
      id += kHex[c & 15];
    }
  }
  if (id.empty() || id.back() != '.') id += '.';
  // The root zone is "=2E" in the API; any all-dots id would be a "." or
  // ".." path segment.
  if (id.find_first_not_of('.') == std::string::npos) {
    std::string dots;
    for (size_t i = 0; i < id.size(); ++i) dots += "=2E";
    id = dots;
  }
  return id;
}

std::unique_ptr<TrafficDriver> make_powerdns_traffic_driver(const ProviderConfig& provider,
                                                            const GroupSpec& group,
                                                            const TrafficSpec& traffic) {
  return std::make_unique<PowerDnsTrafficDriver>(provider, group, traffic);
}

}  // namespace stackflip
