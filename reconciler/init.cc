#include "init.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <regex>
#include <set>

#include "config/conninfo.h"
#include "config/diagnostics.h"
#include "config/host_policy.h"
#include "config/secret.h"
#include "core/observe.h"
#include "drivers/drivers.h"
#include "drivers/powerdns_zone.h"
#include "util/address.h"
#include "util/clock.h"
#include "util/strings.h"

namespace stackflip {

namespace {

constexpr size_t kMaxName = 63;

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// The schema's name pattern.
bool valid_name(const std::string& n) {
  static const std::regex re("^[a-z0-9]([a-z0-9_-]{0,62})$");
  return std::regex_match(n, re);
}

// Lower case, anything outside [a-z0-9_-] as '-', no leading '-' or '_',
// no runs of '-', at most 63 characters; "" when nothing is left.
std::string sanitize_name(const std::string& raw) {
  std::string out;
  for (char c : raw) {
    char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '_' || l == '-';
    l = ok ? l : '-';
    if (out.empty() && (l == '-' || l == '_')) continue;
    if (l == '-' && !out.empty() && out.back() == '-') continue;
    out += l;
  }
  if (out.size() > kMaxName) out.resize(kMaxName);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

// `base`, or base-2, base-3, ... when taken; registers the result.
std::string unique_name(std::string base, std::set<std::string>& taken) {
  if (base.empty()) base = "stack";
  std::string name = base;
  for (int i = 2; taken.count(name); ++i) {
    std::string suffix = "-" + std::to_string(i);
    name = base.substr(0, kMaxName - suffix.size()) + suffix;
  }
  taken.insert(name);
  return name;
}

std::string absolute(std::string name) {
  if (!name.empty() && name.back() != '.') name += '.';
  return name;
}

Status check_dns_name(const std::string& flag, const std::string& name, bool wildcard) {
  static const std::regex plain("^([A-Za-z0-9_-]+\\.)+$"), star("^([A-Za-z0-9_*-]+\\.)+$");
  if (name.size() <= 254 && std::regex_match(name, wildcard ? star : plain)) return Status::Ok();
  return Err(flag + " " + comment_safe(name, 80) +
             ": expected a DNS name such as shop.example.com. (letters, digits, '-', '_'" +
             (wildcard ? ", '*'" : "") + "; at most 253 characters)");
}

Status check_reference(const std::string& flag, const std::string& value) {
  if (value.empty() || is_secret_reference(value)) return Status::Ok();
  return Err(flag + " must be a secret reference (${env:NAME} or ${file:PATH}), not the secret");
}

// The DSN's value of `key` ("" when unset): the first host of a list.
std::string dsn_value(const Conninfo& c, const std::string& key) {
  for (const auto& [k, v] : c.options)
    if (k == key) return v.substr(0, v.find(','));
  return "";
}

// Checks one --postgres and fills the stack's dsn and password.
Status prepare_dsn(const std::string& flag, const std::string& dsn, InitStack& s, Conninfo& info) {
  if (!valid_utf8(dsn)) return Err(flag + ": the DSN is not valid UTF-8");
  auto c = parse_dsn(dsn);
  if (!c.ok()) return Err(flag + ": " + c.error().message);
  info = *c;
  bool has_password = false;
  for (const auto& [k, v] : info.options) {
    if (k == "password") {
      if (!is_secret_reference(v))
        return Err(flag +
                   ": the DSN holds a password; a config keeps secrets only as references: "
                   "write password=${env:NAME} (or ${file:PATH}) in the DSN, give "
                   "--password '${env:NAME}', or use a ~/.pgpass on the reconciler host");
      s.password = v;
      has_password = true;
    } else if (!dsn_keyword_allowed(k)) {
      return Err(flag + ": the DSN keyword `" + k +
                 "` names a file or credential on this host, which a config may not (set it "
                 "in stackflip's environment instead, e.g. PGSSLROOTCERT or PGPASSFILE)");
    }
  }
  s.dsn = dsn;
  if (has_password) {  // rebuilt without it: the reference goes to `password:`
    s.dsn.clear();
    for (const auto& [k, v] : info.options)
      if (k != "password") s.dsn += (s.dsn.empty() ? "" : " ") + k + "=" + quote_conninfo_value(v);
  }
  return Status::Ok();
}

// The stack's address from --address, else from the DSN when it holds an
// IP address of the record's family; else left to observe_init's lookup.
Status prepare_address(const std::string& flag, const InitRequest& r, size_t i,
                       const Conninfo& info, InitStack& s) {
  const AddressKind want = kind_for_record_type(r.record_type);
  if (i < r.addresses.size()) {
    if (address_kind(r.addresses[i]) != want)
      return Err("--address " + comment_safe(r.addresses[i], 80) + " (for " + flag +
                 "): expected " + to_string(want) + " for a " + r.record_type + " record");
    s.address = r.addresses[i];
    s.address_from = "from --address";
    return Status::Ok();
  }
  for (const char* key : {"hostaddr", "host"}) {
    std::string v = dsn_value(info, key);
    if (!v.empty() && address_kind(v) == want) {
      s.address = v;
      s.address_from = std::string("the DSN's ") + key;
      return Status::Ok();
    }
  }
  std::string host = dsn_value(info, "host");
  if (address_kind(host) != AddressKind::name)
    return Err(flag + ": the DSN's host is neither " + to_string(want) +
               " nor a host name to look up: give the stack's traffic address with --address " +
               "(one per --postgres, in order)");
  s.address_from = host;  // looked up by observe_init
  return Status::Ok();
}

std::string group_from_record(const std::string& record) {
  std::string name = sanitize_name(record.substr(0, record.find('.')));
  return name.empty() ? "group" : name;
}

// The zone `record` is guessed to be in before it is looked up: its parent.
std::string parent_zone(const std::string& record) {
  size_t dot = record.find('.');
  return dot + 1 < record.size() ? record.substr(dot + 1) : record;
}

Status check_flags(const InitRequest& r) {
  const size_t n = r.postgres.size();
  if (n < 2 || n > kMaxInitServers)
    return Err("--postgres: expected 2 to " + std::to_string(kMaxInitServers) +
               " servers (one per stack), got " + std::to_string(n));
  if (!r.names.empty() && r.names.size() != n)
    return Err("--name: expected one per --postgres (" + std::to_string(n) + "), got " +
               std::to_string(r.names.size()));
  if (!r.addresses.empty() && r.addresses.size() != n)
    return Err("--address: expected one per --postgres (" + std::to_string(n) + "), got " +
               std::to_string(r.addresses.size()));
  if (Status s = check_reference("--api-key", r.api_key); !s.ok()) return s;
  if (r.api_key.empty())
    return Err("--api-key: PowerDNS needs one, as ${env:NAME} or ${file:PATH}");
  if (Status s = check_reference("--password", r.password); !s.ok()) return s;
  if (auto u = url_origin(r.powerdns_url); !u.ok())
    return Err("--powerdns " + comment_safe(r.powerdns_url, 120) + ": " + u.error().message);
  if (r.record_type != "A" && r.record_type != "AAAA")
    return Err("--record-type " + comment_safe(r.record_type, 20) + ": expected A or AAAA");
  if (!r.group.empty() && !valid_name(r.group))
    return Err("--group " + comment_safe(r.group, 80) +
               ": use lowercase letters, digits, '_' and '-' (at most 63 characters)");
  if (!valid_utf8(r.schema) || r.schema.empty()) return Err("--schema: expected a URL or path");
  return Status::Ok();
}

Status prepare_zone(const InitRequest& r, InitFacts& f) {
  f.record = absolute(r.record);
  if (Status s = check_dns_name("--record", f.record, true); !s.ok()) return s;
  if (r.zone.empty()) {
    f.zone = parent_zone(f.record);
    f.zone_problem = "it was not looked up";
    return check_dns_name("--record", f.zone, false);
  }
  f.zone = absolute(r.zone);
  if (Status s = check_dns_name("--zone", f.zone, false); !s.ok()) return s;
  const std::string rec = to_lower(f.record), zone = to_lower(f.zone);
  if (rec != zone && (rec.size() < zone.size() + 1 ||
                      rec.compare(rec.size() - zone.size() - 1, std::string::npos, "." + zone)))
    return Err("--record " + f.record + " is not inside --zone " + f.zone);
  return Status::Ok();
}

// --- observation

Status look_up_address(InitStack& s, const std::string& record_type) {
  const std::string host = s.address_from;
  addrinfo hints{};
  hints.ai_family = record_type == "AAAA" ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0)
    return Err("stack " + s.name + ": its host " + host + " does not resolve (" + gai_strerror(rc) +
               "): give its traffic address with --address");
  std::set<std::string> found;
  for (addrinfo* a = res; a; a = a->ai_next) {
    char text[NI_MAXHOST];
    if (::getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) ==
        0)
      found.insert(text);
  }
  ::freeaddrinfo(res);
  if (found.size() != 1)
    return Err("stack " + s.name + ": its host " + host + " resolves to " +
               std::to_string(found.size()) +
               " addresses: give its traffic address with --address");
  s.address = *found.begin();
  s.address_from = "resolved from the DSN's host " + host;
  return Status::Ok();
}

// The longest suffix of the record that PowerDNS serves as a zone. A zone
// the server lacks is an answer (PowerDnsZoneData::exists false), not an
// error; an error (unreachable, the key refused) ends the search.
void look_up_zone(InitFacts& f, const ProviderConfig& dns) {
  PowerDnsZones zones(dns);
  std::string candidate = f.record;
  for (size_t asked = 0; asked < kMaxZoneLookups; ++asked) {
    auto z = zones.read(candidate, ObservePass{});
    if (!z.ok()) {
      f.zone_problem = "looking it up failed: " + z.error().message;
      return;
    }
    if ((*z)->exists) {
      f.zone = candidate;
      f.zone_problem.clear();
      return;
    }
    std::string parent = parent_zone(candidate);
    if (parent == candidate) break;
    candidate = parent;
  }
  f.zone_problem =
      "PowerDNS serves no zone that holds " + f.record + " (asked for each of its parent names)";
}

std::string load_errors(const std::vector<Diagnostic>& errors) {
  return "stackflip init: the config these flags make does not load:\n" +
         format_diagnostics(errors);
}

void write_summary(const InitOutput& o, const InitFacts& f, std::ostream& err) {
  err << "stackflip init: group " << f.group << ", active " << o.active << "\n";
  if (o.decide.empty()) {
    err << "Adopted as it is: the first plan is \"No changes\".\n";
    return;
  }
  err << o.decide.size() << " thing" << (o.decide.size() == 1 ? "" : "s")
      << " to decide (marked `# DECIDE:` in the config):\n";
  for (const auto& d : o.decide) err << "  - " << comment_safe(d, 600) << "\n";
  if (o.first_plan.empty()) return;
  err << "As written, the first plan would:\n";
  for (const auto& step : o.first_plan) err << "  - " << comment_safe(step, 600) << "\n";
}

}  // namespace

std::string init_stack_name(const std::string& host) {
  if (host.empty() || host[0] == '/' || host[0] == '@') return "local";
  AddressKind kind = address_kind(host);
  if (kind == AddressKind::ipv4 || kind == AddressKind::ipv6) return sanitize_name(host);
  return sanitize_name(host.substr(0, host.find('.')));
}

Result<InitFacts> prepare_init(const InitRequest& r) {
  if (Status s = check_flags(r); !s.ok()) return s.error();
  InitFacts f;
  f.schema = r.schema;
  f.powerdns_url = r.powerdns_url;
  f.api_key = r.api_key;
  f.password = r.password;
  f.record_type = r.record_type;
  if (Status s = prepare_zone(r, f); !s.ok()) return s.error();
  f.group = r.group.empty() ? group_from_record(f.record) : r.group;
  std::set<std::string> taken;
  for (size_t i = 0; i < r.postgres.size(); ++i) {
    const std::string flag = "--postgres #" + std::to_string(i + 1);
    InitStack s;
    Conninfo info;
    if (Status st = prepare_dsn(flag, r.postgres[i], s, info); !st.ok()) return st.error();
    if (Status st = prepare_address(flag, r, i, info, s); !st.ok()) return st.error();
    if (!r.names.empty()) {
      if (!valid_name(r.names[i]) || taken.count(r.names[i]))
        return Err("--name " + comment_safe(r.names[i], 80) + " (for " + flag +
                   "): expected a unique name of lowercase letters, digits, '_' and '-' (at "
                   "most 63 characters)");
      s.name = r.names[i];
      taken.insert(s.name);
    } else {
      std::string host = dsn_value(info, "host");
      s.name =
          unique_name(init_stack_name(host.empty() ? dsn_value(info, "hostaddr") : host), taken);
    }
    f.stacks.push_back(std::move(s));
  }
  return f;
}

void observe_init(InitFacts& f, DriverFactory& factory) {
  for (auto& s : f.stacks)
    if (s.address.empty())
      if (Status st = look_up_address(s, f.record_type); !st.ok()) throw Fatal(st.message());
  // Loaded before anything is contacted: the host policy's checks of `plan`.
  InitOutput probe = write_init_config(f);
  if (!probe.desired) throw Fatal(load_errors(probe.errors));
  DesiredState& d = *probe.desired;
  if (!f.zone_problem.empty()) look_up_zone(f, d.providers.at("dns"));
  d.groups.at(f.group).traffic.at(0).settings["zone"] = f.zone;
  Fleet fleet = make_fleet(d, factory);
  ObservedState obs = observe_all(d, fleet, real_clock(), 1);
  const GroupObs& g = obs.groups.at(f.group);
  for (auto& s : f.stacks) {
    s.obs = g.stacks.at(s.name);
    s.observed = true;
  }
  f.traffic = g.traffic;
  f.traffic_observed = true;
  f.observed_at = obs.observed_at;
}

int run_init(const InitRequest& request, std::ostream& out, std::ostream& err) {
  auto facts = prepare_init(request);
  if (!facts.ok()) throw Fatal(facts.error().message);
  RealDriverFactory factory;
  observe_init(*facts, factory);
  InitOutput o = write_init_config(*facts);
  if (!o.desired) throw Fatal(load_errors(o.errors));
  out << o.yaml << std::flush;
  write_summary(o, *facts, err);
  return o.decide.empty() ? 0 : 2;
}

}  // namespace stackflip
