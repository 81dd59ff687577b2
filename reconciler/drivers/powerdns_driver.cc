#include "drivers/powerdns_driver.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>

#include "config/loader.h"
#include "drivers/powerdns_zone.h"
#include "util/address.h"
#include "util/strings.h"

namespace stackflip {

namespace {

std::string absolute(std::string name) {
  if (!name.empty() && name.back() != '.') name += '.';
  return name;
}

class PowerDnsTrafficDriver : public TrafficDriver {
 public:
  PowerDnsTrafficDriver(std::shared_ptr<PowerDnsZones> zones, const ProviderConfig& provider,
                        const GroupSpec& group, const TrafficSpec& traffic)
      : zones_(std::move(zones)),
        group_(group),
        provider_(provider.name),
        create_zone_(provider.get("create_zone", provider_default("powerdns", "create_zone")) ==
                     "true") {
    zone_ = absolute(traffic.get("zone"));
    record_ = absolute(traffic.get("record"));
    key_ = to_lower(record_);
    type_ = dns_upper(traffic.get("record_type", "A"));
    ttl_ = traffic.ttl;
    name_ = traffic.name.empty() ? record_ + " " + type_ : traffic.name;
    // Each stack's values for this record type, canonical, in written order.
    const AddressKind kind = kind_for_record_type(type_);
    for (const auto& [sname, stack] : group.stacks)
      for (const auto& a : stack.addresses)
        if (address_kind(a) == kind) values_[sname].push_back(a);
  }

  TrafficObs observe() override { return observe_in(ObservePass{}); }

  TrafficObs observe_in(ObservePass pass) override {
    TrafficObs obs;
    obs.name = name_;
    auto zone = zones_->read(zone_, pass);
    if (!zone.ok()) {
      obs.reachable = false;
      obs.error = zone.error().message;
      obs.config_error = zone.error().config;
      return obs;
    }
    if (!(*zone)->exists) {
      // Not unreachable: the server answered that it has no such zone.
      if (create_zone_) {
        obs.absent = "zone";
        return obs;
      }
      obs.reachable = false;
      obs.config_error = true;  // only the operator can fix it: exit 1, not 3
      obs.error = "zone " + zone_ + " does not exist on PowerDNS (" + zones_->zone_url(zone_) +
                  ": HTTP 404): create it, or set `create_zone: true` on provider '" + provider_ +
                  "' to let stackflip create it";
      return obs;
    }
    bool has_rrset = false;
    auto rrsets = (*zone)->by_name.find(key_);
    if (rrsets != (*zone)->by_name.end()) {
      for (const PowerDnsRrset& rr : rrsets->second) {
        if (rr.type != type_) {
          if (obs.blocker.empty()) obs.blocker = cname_conflict(rr);
          continue;
        }
        has_rrset = has_rrset || !rr.records.empty();
        if (rr.ttl) obs.ttl = rr.ttl;
        for (const TrafficRecord& rec : rr.records) {
          TrafficRecord r = rec;
          r.stack = owner_of(r.content);
          obs.records.push_back(std::move(r));
        }
      }
    }
    if (obs.blocker.empty()) obs.blocker = foreign_values(obs.records);
    // Nothing at the name (or only types that may stand beside it): the
    // switch creates it. PowerDNS keeps no empty rrset, so none is absent.
    if (!has_rrset && obs.blocker.empty()) obs.absent = "record";
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

    std::vector<TrafficRecord> records;
    for (const auto& address : v->second) records.push_back({address, stack, false});
    // REPLACE creates the rrset when the name has none; with create_zone a
    // missing zone is created first (powerdns_zone.h).
    if (Status st = zones_->patch(zone_, rrset_body(records, ttl_), create_zone_); !st.ok())
      return st;

    TrafficObs after = observe();  // fresh: the change must be seen on the server
    if (!after.reachable) return Err("traffic.switch: verifying the change: " + after.error);
    if (after.target != stack)
      return Err("traffic.switch: " + name_ + " holds \"" + after.content +
                 "\" after the change, expected " + join(v->second));
    return Status::Ok();
  }

  // TTL pre-lowering: the same records, enabled or not, with a lower TTL.
  Result<int> lower_ttl(int ttl) override {
    TrafficObs now = observe();
    if (!now.reachable) return Err("traffic.ttl: " + now.error);
    // Nothing there to be cached with a higher TTL: as if already as low.
    if (!now.absent.empty()) return ttl;
    if (now.records.empty() || !now.ttl)
      return Refused("traffic.ttl: " + name_ + " holds no record whose TTL could be lowered");
    if (*now.ttl <= ttl) return *now.ttl;
    if (Status st = zones_->patch(zone_, rrset_body(now.records, ttl)); !st.ok()) return st.error();
    TrafficObs after = observe();
    if (!after.reachable) return Err("traffic.ttl: verifying the change: " + after.error);
    if (after.ttl != ttl || after.records != now.records)
      return Err("traffic.ttl: " + name_ + " holds \"" + after.content + "\" with TTL " +
                 (after.ttl ? std::to_string(*after.ttl) : std::string("unknown")) +
                 " after the change, expected TTL " + std::to_string(ttl) +
                 " and the values as before");
    return *now.ttl;
  }

 private:
  // A PATCH body that replaces the rrset with `records` and `ttl`.
  std::string rrset_body(const std::vector<TrafficRecord>& records, int ttl) const {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("rrsets");
    w.StartArray();
    w.StartObject();
    w.Key("name"), w.String(record_.c_str());
    w.Key("type"), w.String(type_.c_str());
    w.Key("ttl"), w.Int(ttl);
    w.Key("changetype"), w.String("REPLACE");
    w.Key("records");
    w.StartArray();
    for (const auto& r : records) {
      w.StartObject();
      w.Key("content"), w.String(r.content.c_str());
      w.Key("disabled"), w.Bool(r.disabled);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    w.EndArray();
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
  }

  // Why an rrset of another type at the name keeps this one from being
  // written, "" when it does not: a CNAME owns its name alone, and PowerDNS
  // refuses any other type beside it, so such a switch would fail in the
  // middle. Names what is there, so the operator knows what to remove.
  std::string cname_conflict(const PowerDnsRrset& rr) const {
    if ((rr.type != "CNAME" && type_ != "CNAME") || rr.type == "RRSIG" || rr.type == "NSEC")
      return "";
    return record_ + " holds a " + rr.type + " record, and PowerDNS keeps no " + type_ +
           " record beside " + (rr.type == "CNAME" ? "a CNAME" : "other types of a CNAME's name") +
           " (" + rr.type + " " + shown_values(rr.records) +
           "; remove it by hand, or change record_type)";
  }

  // Values of no stack of the group beside other values (an operator's
  // round robin, a second service at the name): a switch replaces the whole
  // rrset, so it would delete them. Refused, never overwritten (issue 17).
  // A single value of no stack is replaced: it is what a stack's address
  // changed in the config leaves behind, or the record stackflip adopts.
  std::string foreign_values(const std::vector<TrafficRecord>& records) const {
    if (records.size() < 2) return "";
    std::vector<TrafficRecord> foreign, own;
    for (const TrafficRecord& r : records) (r.stack ? own : foreign).push_back(r);
    if (foreign.empty()) return "";
    return record_ + " " + type_ + " holds " + shown_values(foreign) +
           (foreign.size() == 1 ? ", which is no stack's address, beside "
                                : ", which are no stack's addresses, beside ") +
           (own.empty() ? "each other" : shown_values(own)) +
           ": a switch replaces the whole rrset and would delete " +
           (foreign.size() == 1 ? "it" : "them") +
           " (remove them by hand, or add them to a stack's `address`)";
  }

  // Up to five values as "a, b (disabled), c and 4 more": a hostile zone's
  // rrset is bounded before it reaches a message.
  static std::string shown_values(const std::vector<TrafficRecord>& records) {
    constexpr size_t kShown = 5;
    std::string out;
    for (size_t i = 0; i < records.size() && i < kShown; ++i)
      out += (i ? ", " : "") + trim_for_message(records[i].content) +
             (records[i].disabled ? " (disabled)" : "");
    if (records.size() > kShown) out += " and " + std::to_string(records.size() - kShown) + " more";
    return out.empty() ? "(no value)" : out;
  }

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
      if (!held.count(canonical_address(a)))
        return std::nullopt;  // one of its addresses is missing
    return only;
  }

 private:
  std::shared_ptr<PowerDnsZones> zones_;
  GroupSpec group_;
  std::string provider_;  // its name, for messages
  bool create_zone_ = false;
  std::string zone_, record_, type_, name_;
  std::string key_;  // record_ as PowerDnsZoneData keys it (lower case)
  std::map<std::string, std::vector<std::string>> values_;  // stack -> its values for type_
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
                                                            const TrafficSpec& traffic,
                                                            std::shared_ptr<PowerDnsZones> zones) {
  if (!zones) zones = std::make_shared<PowerDnsZones>(provider);
  return std::make_unique<PowerDnsTrafficDriver>(std::move(zones), provider, group, traffic);
}

}  // namespace stackflip
