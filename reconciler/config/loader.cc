#include "config/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "config/embedded_schema.h"
#include "config/host_check.h"
#include "config/host_policy.h"
#include "config/schema_check.h"
#include "config/secret.h"
#include "config/yaml_doc.h"
#include "util/address.h"
#include "util/digest.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// "file:line:col", as a diagnostic names another place.
std::string place(const Mark& m) {
  return m.file + ":" + std::to_string(m.line) + ":" + std::to_string(m.column);
}

using Value = rapidjson::Value;

// Keys each provider type uses: on providers, on the stacks and traffic it
// serves; which of them are required; defaults of provider settings. The
// schema lists the union with descriptions; this table says who owns what.
struct TypeKeys {
  const char* type;
  bool serves_stacks;
  bool serves_traffic;
  std::vector<std::string> provider_keys, provider_required;
  std::vector<std::pair<std::string, std::string>> provider_defaults;
  std::vector<std::string> stack_keys, stack_required;
  std::vector<std::string> traffic_keys, traffic_required;
};

const std::vector<TypeKeys>& type_table() {
  static const std::vector<TypeKeys> table = {
      {"postgres",
       true,
       false,
       {"password", "connect_timeout_ms", "statement_timeout_ms", "pg_rewind"},
       {},
       {{"connect_timeout_ms", "2000"}, {"statement_timeout_ms", "5000"}, {"pg_rewind", "false"}},
       {"dsn", "password", "control_command", "pg_rewind", "bootstrap", "keep_old_data",
        "data_directory"},
       {"dsn"},
       {},
       {}},
      {"powerdns",
       false,
       true,
       {"url", "api_key", "server_id", "timeout_ms", "insecure", "ca_file", "create_zone"},
       {"url", "api_key"},
       {{"server_id", "localhost"},
        {"timeout_ms", "5000"},
        {"insecure", "false"},
        {"create_zone", "false"}},
       {},
       {},
       {"zone", "record", "record_type", "switch_ttl"},
       {"zone", "record"}},
      {"cloud66",
       true,
       true,
       {"token", "base_url", "address_api", "timeout_ms", "action_timeout_ms", "insecure"},
       {"token"},
       {{"base_url", "https://app.cloud66.com/api/3"},
        {"address_api", "failover_groups"},
        {"timeout_ms", "10000"},
        {"action_timeout_ms", "600000"},
        {"insecure", "false"}},
       {"stack_uid", "database_dsn", "database_password", "server"},
       {"stack_uid"},
       {"failover_group"},
       {"failover_group"}},
      {"command",
       true,
       true,
       {"commands", "timeout_ms"},
       {"commands"},
       {{"timeout_ms", "30000"}},
       {"settings"},
       {},
       {},
       {}},
      {"pgbouncer",
       false,
       true,
       {"admin_dsn", "password", "databases_file", "connect_timeout_ms", "timeout_ms",
        "pause_timeout_ms"},
       {"admin_dsn", "databases_file"},
       {{"connect_timeout_ms", "2000"}, {"timeout_ms", "5000"}, {"pause_timeout_ms", "5000"}},
       {},
       {},
       {"database", "dbname"},
       {"database"}},
  };
  return table;
}

const TypeKeys* keys_for(const std::string& type) {
  for (const auto& t : type_table())
    if (type == t.type) return &t;
  return nullptr;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

const Value* member(const Value& v, const char* name) {
  if (!v.IsObject()) return nullptr;
  auto it = v.FindMember(name);
  return it == v.MemberEnd() ? nullptr : &it->value;
}

std::string str(const Value* v) { return v && v->IsString() ? v->GetString() : ""; }

std::string scalar_text(const Value& v) {
  if (v.IsString()) return v.GetString();
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsUint64()) return std::to_string(v.GetUint64());
  if (v.IsDouble()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v.GetDouble());
    return buf;
  }
  return "";
}

// A libpq conninfo with a password in it: `password=...` or a URI's user:pass@.
bool dsn_has_password(const std::string& dsn) {
  std::string d = to_lower(dsn);
  for (size_t pos = d.find("password"); pos != std::string::npos;
       pos = d.find("password", pos + 1)) {
    bool starts = pos == 0 || std::isspace(static_cast<unsigned char>(d[pos - 1]));
    size_t i = pos + 8;
    while (i < d.size() && d[i] == ' ') ++i;
    if (starts && i < d.size() && d[i] == '=') return true;
  }
  if (d.rfind("postgres", 0) == 0) {
    size_t scheme = d.find("://");
    if (scheme != std::string::npos) {
      size_t at = d.find('@', scheme);
      size_t colon = d.find(':', scheme + 3);
      size_t slash = d.find('/', scheme + 3);
      if (at != std::string::npos && colon < at && (slash == std::string::npos || at < slash))
        return true;
    }
    if (d.find("password=") != std::string::npos) return true;
  }
  return false;
}

// For "unknown key" messages: offer only the keys of the provider type that
// serves the mapping (when that type is known), not the schema's union.
std::vector<std::string> narrow_expected(const YamlDocument& doc, const std::string& ptr,
                                         std::vector<std::string> keys) {
  const std::vector<std::string> t = pointer_tokens(ptr);
  const Value* providers = member(doc.json, "providers");
  auto type_of = [&](const std::string& provider) {
    const Value* p = providers ? member(*providers, provider.c_str()) : nullptr;
    return keys_for(str(p ? member(*p, "type") : nullptr));
  };
  auto group_member = [&](const std::string& g, const char* name) -> const Value* {
    const Value* groups = member(doc.json, "groups");
    const Value* group = groups ? member(*groups, g.c_str()) : nullptr;
    return group ? member(*group, name) : nullptr;
  };
  const TypeKeys* tk = nullptr;
  std::vector<std::string> allowed;
  if (t.size() == 2 && t[0] == "providers") {
    tk = type_of(t[1]);
    if (tk) allowed = tk->provider_keys, allowed.push_back("type");
  } else if (t.size() == 4 && t[0] == "groups" && t[2] == "stacks") {
    const Value* stacks = group_member(t[1], "stacks");
    const Value* stack = stacks ? member(*stacks, t[3].c_str()) : nullptr;
    tk = stack ? type_of(str(member(*stack, "provider"))) : nullptr;
    if (tk)
      allowed = tk->stack_keys,
      allowed.insert(allowed.end(), {"provider", "address", "maintenance", "site", "health"});
  } else if ((t.size() == 3 || t.size() == 4) && t[0] == "groups" && t[2] == "traffic") {
    const Value* traffic = group_member(t[1], "traffic");
    if (traffic && t.size() == 4) {
      const auto i = static_cast<rapidjson::SizeType>(std::atoi(t[3].c_str()));
      traffic = traffic->IsArray() && i < traffic->Size() ? &(*traffic)[i] : nullptr;
    }
    tk = traffic ? type_of(str(member(*traffic, "provider"))) : nullptr;
    if (tk) allowed = tk->traffic_keys, allowed.insert(allowed.end(), {"provider", "ttl"});
  }
  if (!tk) return keys;
  keys.erase(std::remove_if(keys.begin(), keys.end(),
                            [&](const std::string& k) { return !contains(allowed, k); }),
             keys.end());
  return keys;
}

// A powerdns traffic address's record types, as written (default A).
std::vector<std::string> record_types(const Value& t) {
  const Value* rt = member(t, "record_type");
  if (!rt) return {"A"};
  if (rt->IsString()) return {rt->GetString()};
  std::vector<std::string> out;
  if (rt->IsArray())
    for (const auto& x : rt->GetArray())
      if (x.IsString()) out.push_back(x.GetString());
  return out;
}

class Checker {
 public:
  Checker(const YamlDocument& doc, const std::set<std::string>& failed,
          std::vector<Diagnostic>& errors)
      : doc_(doc), failed_(failed), errors_(errors) {}

  void run() {
    const Value& root = doc_.json;
    const Value* providers = member(root, "providers");
    const Value* groups = member(root, "groups");
    if (providers && providers->IsObject())
      for (const auto& p : providers->GetObject()) provider(p.name.GetString(), p.value);
    if (groups && groups->IsObject())
      for (const auto& g : groups->GetObject()) group(g.name.GetString(), g.value);
  }

 private:
  void error(const Mark& m, std::string msg) { errors_.push_back({m, std::move(msg)}); }
  bool ok(const std::string& unit) const { return !failed_.count(unit); }

  // Reports keys of `obj` that are neither `common` nor used by the provider
  // type (`allowed`), and missing `required` keys; `role` is "stack",
  // "provider" or "traffic" and `name` how the mapping is named.
  void type_keys(const Value& obj, const std::string& ptr, const std::vector<std::string>& common,
                 const std::vector<std::string>& allowed, const std::vector<std::string>& required,
                 const std::string& type, const std::string& role, const std::string& name) {
    for (const auto& m : obj.GetObject()) {
      std::string key = m.name.GetString();
      if (contains(common, key) || contains(allowed, key)) continue;
      error(doc_.key_mark_of(pointer_append(ptr, key)),
            "key '" + key + "' is not used by " + type + " " + role + "s");
    }
    for (const auto& key : required)
      if (!obj.HasMember(key.c_str()))
        error(doc_.key_mark_of(ptr), type + " " + role + " " + name + " needs '" + key + "'");
  }

  // The schema's pattern already rejects literals; this keeps the rule even
  // if the schema is loosened, with the same message (never the value).
  void secrets(const Value& obj, const std::string& ptr, std::initializer_list<const char*> keys) {
    for (const char* key : keys)
      if (const Value* v = member(obj, key);
          v && v->IsString() && !is_secret_reference(v->GetString()))
        error(doc_.mark_of(pointer_append(ptr, key)),
              std::string("a literal secret in '") + key + "'; write ${env:NAME} or ${file:PATH}");
  }

  void provider(const std::string& name, const Value& p) {
    const std::string ptr = pointer_append("/providers", name);
    if (!ok(ptr)) return;
    const std::string type = str(member(p, "type"));
    const TypeKeys* tk = keys_for(type);
    if (!tk) return;
    types_[name] = type;
    secrets(p, ptr, {"password", "api_key", "token"});
    type_keys(p, ptr, {"type"}, tk->provider_keys, tk->provider_required, type, "provider",
              "'" + name + "'");
  }

  // Type of a declared, valid provider; "" when unknown (reported once by the caller).
  std::string provider_type(const std::string& name) const {
    auto it = types_.find(name);
    return it == types_.end() ? "" : it->second;
  }
  bool provider_declared(const std::string& name) const {
    const Value* providers = member(doc_.json, "providers");
    return providers && providers->IsObject() && providers->HasMember(name.c_str());
  }
  std::string provider_list() const {
    std::vector<std::string> names;
    if (const Value* providers = member(doc_.json, "providers"); providers && providers->IsObject())
      for (const auto& p : providers->GetObject()) names.push_back(p.name.GetString());
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none declared" : "declared: " + out;
  }

  void group(const std::string& gname, const Value& g) {
    const std::string gp = pointer_append("/groups", gname);
    if (!g.IsObject()) return;
    const Value* stacks = member(g, "stacks");
    const Value* traffic = member(g, "traffic");

    // Traffic first: whether stacks need an address, and of which kinds,
    // depends on it.
    Uses uses;
    if (traffic && ok(gp + "/traffic")) {
      if (traffic->IsObject()) {
        check_traffic(gname, *traffic, gp + "/traffic", uses);
      } else if (traffic->IsArray()) {
        rapidjson::SizeType i = 0;
        for (const auto& t : traffic->GetArray()) {
          const std::string tp = gp + "/traffic/" + std::to_string(i++);
          if (ok(tp) && t.IsObject()) check_traffic(gname, t, tp, uses);
        }
      }
    }

    if (stacks && stacks->IsObject()) {
      std::map<std::string, std::string> address_owner;  // canonical address -> stack
      for (const auto& s : stacks->GetObject())
        check_stack(gname, s.name.GetString(), s.value, uses, address_owner);
    }

    if (!ok(gp)) return;
    const std::string active = str(member(g, "active"));
    std::string names;
    for (const auto& s : stacks->GetObject())
      names += (names.empty() ? "" : ", ") + std::string(s.name.GetString());
    if (!stacks->HasMember(active.c_str()))
      error(doc_.mark_of(gp + "/active"), "active stack '" + active +
                                              "' is not a stack of group '" + gname +
                                              "' (stacks: " + names + ")");

    const Value* repl = member(g, "replication");
    if (repl && repl->IsObject() && ok(gp + "/replication")) {
      const std::string rp = gp + "/replication";
      if (const Value* from = member(*repl, "from"); from && active != from->GetString())
        error(doc_.mark_of(rp + "/from"), "replication flows from the active stack '" + active +
                                              "', not from '" + from->GetString() +
                                              "' (leave 'from' out; it follows 'active')");
      if (const Value* to = member(*repl, "to")) {
        rapidjson::SizeType i = 0;
        for (const auto& t : to->GetArray()) {
          const std::string target = t.GetString();
          const Mark m = doc_.mark_of(rp + "/to/" + std::to_string(i++));
          if (target == active)
            error(m, "replication into the active stack '" + active +
                         "' is not possible: it holds the writable database");
          else if (!stacks->HasMember(target.c_str()))
            error(m, "replication target '" + target + "' is not a stack of group '" + gname +
                         "' (stacks: " + names + ")");
        }
      }
    }

    const Value* af = member(g, "auto_failover");
    if (af && af->IsObject() && ok(gp + "/auto_failover")) {
      const std::string ap = gp + "/auto_failover";
      for (const char* key : {"after", "cooldown"})
        if (const Value* d = member(*af, key);
            d && d->IsString() && !parse_duration(d->GetString()).ok())
          error(doc_.mark_of(ap + "/" + key),
                std::string("'") + key + "' must be longer than zero (e.g. 10s, 30m)");
      if (repl && repl->IsString())
        error(doc_.key_mark_of(ap),
              "auto_failover needs replication: with 'replication: off' no "
              "standby holds the active stack's data");
    }
  }

  // What a group's traffic asks of its stacks' addresses: each DNS record
  // (name and type) it switches, and whether every address is a DNS record.
  struct Use {
    std::string ptr, record, type, provider;
  };
  struct Uses {
    std::vector<Use> records;
    bool only_dns = true;  // no other kind of traffic address reads `address`
  };

  // Checks one traffic address at `tp` and records what it asks of the
  // stacks in `uses`.
  void check_traffic(const std::string& gname, const Value& t, const std::string& tp, Uses& uses) {
    const std::string pname = str(member(t, "provider"));
    if (!provider_declared(pname)) {
      error(doc_.mark_of(tp + "/provider"), "traffic of group '" + gname +
                                                "' uses unknown provider '" + pname + "' (" +
                                                provider_list() + ")");
      uses.only_dns = false;
      return;
    }
    const std::string type = provider_type(pname);
    const TypeKeys* tk = keys_for(type);
    if (type != "powerdns") uses.only_dns = false;
    if (!tk) return;
    if (!tk->serves_traffic) {
      error(doc_.mark_of(tp + "/provider"),
            "provider '" + pname + "' is a " + type +
                " provider and cannot hold traffic (use powerdns, cloud66, command or pgbouncer)");
      return;
    }
    size_t before = errors_.size();
    type_keys(t, tp, {"provider", "ttl"}, tk->traffic_keys, tk->traffic_required, type, "traffic",
              "of group '" + gname + "'");
    if (errors_.size() != before) return;

    std::string owner_key, owned_ptr, what;
    if (const Value* sw = member(t, "switch_ttl")) {
      const Value* ttl = member(t, "ttl");
      const int want = ttl && ttl->IsInt() ? ttl->GetInt() : 60;
      if (sw->IsInt() && sw->GetInt() > want)
        error(doc_.mark_of(tp + "/switch_ttl"),
              "switch_ttl " + std::to_string(sw->GetInt()) + " is above the record's ttl " +
                  std::to_string(want) +
                  ": pre-lowering lowers the TTL before a switch; write at most " +
                  std::to_string(want));
    }
    if (type == "powerdns") {
      const std::string zone = to_lower(str(member(t, "zone")));
      const std::string record = to_lower(str(member(t, "record")));
      bool inside =
          record == zone || (record.size() > zone.size() &&
                             record.compare(record.size() - zone.size(), zone.size(), zone) == 0 &&
                             record[record.size() - zone.size() - 1] == '.');
      if (!inside)
        error(doc_.mark_of(tp + "/record"), "record '" + str(member(t, "record")) +
                                                "' is not inside zone '" + str(member(t, "zone")) +
                                                "'");
      // The name, whatever the type: two groups steering one name conflict.
      owner_key = pname + "\n" + zone + "\n" + record;
      owned_ptr = tp + "/record";
      what = "record '" + str(member(t, "record")) + "'";
      // In one group, each type of a name once, and a CNAME alone.
      auto& types = group_types_[gname][owner_key];
      auto& listed = listed_at_[gname][owner_key];
      for (const std::string& rt : record_types(t)) {
        if (std::find(types.begin(), types.end(), rt) != types.end()) {
          error(doc_.mark_of(owned_ptr),
                what + " (type " + rt + ") is listed twice in the traffic of group '" + gname +
                    "' (first at " + place(doc_.mark_of(listed[rt])) + ")");
          continue;
        }
        types.push_back(rt);
        listed[rt] = owned_ptr;
        uses.records.push_back({tp, str(member(t, "record")), rt, pname});
      }
      if (types.size() > 1 && std::find(types.begin(), types.end(), "CNAME") != types.end())
        error(doc_.mark_of(member(t, "record_type") ? tp + "/record_type" : owned_ptr),
              what + " cannot be a CNAME and hold other types: a CNAME owns its name alone");
    } else if (type == "cloud66") {
      owner_key = pname + "\n" + str(member(t, "failover_group"));
      owned_ptr = tp + "/failover_group";
      what = "failover group '" + str(member(t, "failover_group")) + "'";
      if (!group_types_[gname].emplace(owner_key, std::vector<std::string>{}).second)
        error(doc_.mark_of(owned_ptr),
              what + " is listed twice in the traffic of group '" + gname + "'");
    } else if (type == "pgbouncer") {
      // A databases file holds one entry, rewritten whole at each switch:
      // two addresses writing one file would overwrite each other.
      const Value* providers = member(doc_.json, "providers");
      const Value* p = providers ? member(*providers, pname.c_str()) : nullptr;
      const std::string file = str(p ? member(*p, "databases_file") : nullptr);
      owner_key = "pgbouncer\n" + file;
      owned_ptr = tp + "/database";
      what = "PgBouncer databases_file '" + file + "'";
      if (!group_types_[gname].emplace(owner_key, std::vector<std::string>{}).second)
        error(doc_.mark_of(owned_ptr),
              what + " is listed twice in the traffic of group '" + gname +
                  "' (it holds one database entry: give each its own file)");
    }
    if (!owner_key.empty()) {
      auto [it, inserted] = owners_.emplace(owner_key, std::pair{gname, owned_ptr});
      if (!inserted && it->second.first != gname) {
        const Mark first = doc_.mark_of(it->second.second);
        error(doc_.mark_of(owned_ptr), what + " of provider '" + pname +
                                           "' is already owned by group '" + it->second.first +
                                           "' (" + place(first) + ")");
      }
    }
  }

  // Every address of a stack whose group switches DNS records: of a kind
  // some record holds, and each record finds one (issue 11: an IPv6 address
  // on an A record is a typo that would fail in the middle of a switch).
  void check_addresses(const std::string& gname, const std::string& sname, const Value& s,
                       const std::string& sp, const Uses& uses,
                       std::map<std::string, std::string>& address_owner) {
    const Value* a = member(s, "address");
    if (!a) {
      error(doc_.key_mark_of(sp), "stack '" + sname + "' needs 'address': traffic of group '" +
                                      gname + "' goes through powerdns provider '" +
                                      uses.records.front().provider + "'");
      return;
    }
    std::vector<std::pair<std::string, std::string>> addresses;  // value, pointer
    if (a->IsString())
      addresses.emplace_back(a->GetString(), sp + "/address");
    else if (a->IsArray())
      for (rapidjson::SizeType i = 0; i < a->Size(); ++i)
        if ((*a)[i].IsString())
          addresses.emplace_back((*a)[i].GetString(), sp + "/address/" + std::to_string(i));
    auto records_text = [&] {
      std::string out;
      for (const Use& u : uses.records) out += (out.empty() ? "" : ", ") + u.record + " " + u.type;
      return out;
    };
    bool bad = false;
    std::map<AddressKind, int> count;
    for (const auto& [value, ptr] : addresses) {
      const AddressKind kind = address_kind(value);
      if (kind == AddressKind::invalid) {
        error(doc_.mark_of(ptr), "address '" + escape_control(value) + "' is " + to_string(kind));
        bad = true;
        continue;
      }
      ++count[kind];
      bool held = false;
      for (const Use& u : uses.records) held |= kind_for_record_type(u.type) == kind;
      if (!held && uses.only_dns) {
        const char* type = kind == AddressKind::ipv4   ? "A"
                           : kind == AddressKind::ipv6 ? "AAAA"
                                                       : "CNAME";
        error(doc_.mark_of(ptr),
              "address '" + value + "' is " + to_string(kind) + ", but no record of group '" +
                  gname + "' holds one (" + records_text() + "); for " + to_string(kind) +
                  " the record needs record_type: " + type +
                  (kind == AddressKind::name ? "" : ", or [A, AAAA] for both families"));
        bad = true;
      }
      const std::string canon = canonical_address(value);
      auto [it, inserted] = address_owner.emplace(canon, sname);
      if (!inserted && it->second != sname) {
        error(doc_.mark_of(ptr), "address '" + value + "' is also stack '" + it->second +
                                     "''s: traffic could not tell the two stacks apart");
        bad = true;
      }
    }
    if (bad) return;
    for (const Use& u : uses.records) {
      const AddressKind want = kind_for_record_type(u.type);
      const int n = count[want];
      if (n == 0)
        error(doc_.mark_of(sp + "/address"), "stack '" + sname + "' has no address for record " +
                                                 u.record + " " + u.type + " (expected " +
                                                 to_string(want) + ")");
      else if (want == AddressKind::name && n > 1)
        error(doc_.mark_of(sp + "/address"), "stack '" + sname + "' has " + std::to_string(n) +
                                                 " host names, but the CNAME " + u.record +
                                                 " holds one");
    }
  }

  void check_stack(const std::string& gname, const std::string& sname, const Value& s,
                   const Uses& uses, std::map<std::string, std::string>& address_owner) {
    const std::string sp = pointer_append(pointer_append("/groups", gname) + "/stacks", sname);
    if (!ok(sp) || !s.IsObject()) return;
    if (!uses.records.empty()) check_addresses(gname, sname, s, sp, uses, address_owner);
    if (const Value* h = member(s, "health"); h && h->IsObject() && ok(sp + "/health")) {
      const std::string hp = sp + "/health";
      if (const Value* u = member(*h, "url"); u && u->IsString())
        if (auto o = url_origin(u->GetString()); !o.ok())
          error(doc_.mark_of(hp + "/url"), "health check 'url': " + o.error().message);
      if (const Value* t = member(*h, "timeout"); t && t->IsString()) {
        auto d = parse_duration(t->GetString());
        if (!d.ok() || *d > std::chrono::seconds(30))
          error(doc_.mark_of(hp + "/timeout"),
                "health check 'timeout' must be longer than zero and at most 30s (e.g. 2s)");
      }
    }
    const std::string pname = str(member(s, "provider"));
    if (!provider_declared(pname)) {
      error(doc_.mark_of(sp + "/provider"), "stack '" + sname + "' uses unknown provider '" +
                                                pname + "' (" + provider_list() + ")");
      return;
    }
    const std::string type = provider_type(pname);
    const TypeKeys* tk = keys_for(type);
    if (!tk) return;
    if (!tk->serves_stacks) {
      error(doc_.mark_of(sp + "/provider"), "provider '" + pname + "' is a " + type +
                                                " provider and cannot serve stack '" + sname +
                                                "' (use postgres, cloud66 or command)");
      return;
    }
    secrets(s, sp, {"password", "database_password"});
    type_keys(s, sp, {"provider", "address", "maintenance", "site", "health"}, tk->stack_keys,
              tk->stack_required, type, "stack", "'" + sname + "'");
    for (const auto& [dsn_key, pw_key] :
         {std::pair{"dsn", "password"}, {"database_dsn", "database_password"}})
      if (const Value* dsn = member(s, dsn_key);
          dsn && dsn->IsString() && dsn_has_password(dsn->GetString()))
        error(doc_.mark_of(sp + "/" + dsn_key), std::string("a password inside '") + dsn_key +
                                                    "'; put the password in '" + pw_key +
                                                    "' as ${env:NAME} or ${file:PATH}");
    // Issue 17: a bootstrap must find an interrupted one of its own while
    // the server is down, beside the data directory: it needs its path.
    const Value* dd = member(s, "data_directory");
    if (member(s, "bootstrap") && !dd)
      error(doc_.key_mark_of(sp + "/bootstrap"),
            "stack '" + sname +
                "' has 'bootstrap' but no 'data_directory': name the server's data directory "
                "(SHOW data_directory), so that a bootstrap interrupted while the server is "
                "down is found and finished");
    if (member(s, "bootstrap") && !member(s, "control_command"))
      error(doc_.key_mark_of(sp + "/bootstrap"),
            "stack '" + sname +
                "' has 'bootstrap' but no 'control_command': a bootstrap runs through the "
                "stack's control command (scripts/pg-control.sh implements it)");
    if (dd && dd->IsString()) {
      const std::string path = dd->GetString();
      const std::string padded = path + "/";
      const bool clean = !path.empty() && path[0] == '/' && path.back() != '/' &&
                         padded.find("/./") == std::string::npos &&
                         padded.find("/../") == std::string::npos &&
                         path.find("//") == std::string::npos;
      if (!clean)
        error(doc_.mark_of(sp + "/data_directory"),
              "'data_directory' must be an absolute path without '.', '..' or a trailing '/'");
    }
  }

  const YamlDocument& doc_;
  const std::set<std::string>& failed_;
  std::vector<Diagnostic>& errors_;
  std::map<std::string, std::string> types_;  // valid provider name -> type
  std::map<std::string, std::pair<std::string, std::string>>
      owners_;  // traffic identity -> group, pointer
  // group -> traffic identity -> record types listed (powerdns)
  std::map<std::string, std::map<std::string, std::vector<std::string>>> group_types_;
  // group -> traffic identity -> record type -> where it is first listed
  std::map<std::string, std::map<std::string, std::map<std::string, std::string>>> listed_at_;
};

// ------------------------------------------------------------------ build
// Runs only on a document without errors, so shapes are as the schema says.

void split_settings(const Value& obj, const std::vector<std::string>& skip,
                    std::map<std::string, std::string>& settings,
                    std::map<std::string, std::vector<std::string>>* lists) {
  for (const auto& m : obj.GetObject()) {
    std::string key = m.name.GetString();
    if (contains(skip, key)) continue;
    if (m.value.IsArray() && lists) {
      auto& l = (*lists)[key];
      for (const auto& x : m.value.GetArray()) l.push_back(scalar_text(x));
    } else if (!m.value.IsObject() && !m.value.IsArray()) {
      settings[key] = scalar_text(m.value);
    }
  }
}

DesiredState build(const YamlDocument& doc, const std::string& text) {
  DesiredState d;
  d.source = doc.file;
  d.digest = sha256_hex(text);
  for (const auto& p : doc.json["providers"].GetObject()) {
    ProviderConfig pc;
    pc.name = p.name.GetString();
    pc.type = p.value["type"].GetString();
    pc.mark = doc.key_mark_of(pointer_append("/providers", pc.name));
    split_settings(p.value, {"type", "commands"}, pc.settings, nullptr);
    if (const Value* cmds = member(p.value, "commands"))
      for (const auto& c : cmds->GetObject()) {
        auto& argv = pc.lists[c.name.GetString()];
        for (const auto& a : c.value.GetArray()) argv.push_back(a.GetString());
      }
    for (const auto& [k, v] : keys_for(pc.type)->provider_defaults) pc.settings.emplace(k, v);
    d.providers.emplace(pc.name, std::move(pc));
  }
  for (const auto& g : doc.json["groups"].GetObject()) {
    GroupSpec gs;
    gs.name = g.name.GetString();
    const std::string gp = pointer_append("/groups", gs.name);
    gs.mark = doc.key_mark_of(gp);
    gs.active = g.value["active"].GetString();
    for (const auto& s : g.value["stacks"].GetObject()) {
      StackSpec ss;
      ss.name = s.name.GetString();
      ss.mark = doc.key_mark_of(pointer_append(gp + "/stacks", ss.name));
      ss.provider = s.value["provider"].GetString();
      if (const Value* a = member(s.value, "address")) {
        if (a->IsString())
          ss.addresses.push_back(a->GetString());
        else
          for (const auto& x : a->GetArray()) ss.addresses.push_back(x.GetString());
      }
      if (!ss.addresses.empty()) ss.address = ss.addresses.front();
      if (const Value* m = member(s.value, "maintenance")) ss.maintenance = m->GetBool();
      ss.site = ss.name;
      if (const Value* site = member(s.value, "site")) ss.site = site->GetString();
      if (const Value* h = member(s.value, "health")) {
        HealthSpec hs;
        hs.url = (*h)["url"].GetString();
        if (const Value* t = member(*h, "timeout"))
          if (auto d = parse_duration(t->GetString()); d.ok()) hs.timeout_ms = d->count();
        ss.health = hs;
      }
      split_settings(s.value, {"provider", "address", "maintenance", "site", "health", "settings"},
                     ss.settings, &ss.lists);
      if (const Value* extra = member(s.value, "settings"))
        for (const auto& e : extra->GetObject())
          ss.settings[e.name.GetString()] = e.value.GetString();
      // A postgres provider's password is the default of its stacks.
      const ProviderConfig& served_by = d.providers.at(ss.provider);
      if (served_by.type == "postgres" && served_by.settings.count("password"))
        ss.settings.emplace("password", served_by.get("password"));
      gs.stacks.emplace(ss.name, std::move(ss));
    }
    ReplicationSpec& r = gs.replication;
    r.from = gs.active;
    const Value* repl = member(g.value, "replication");
    if (repl && repl->IsString()) r.enabled = false;
    const Value* to = repl && repl->IsObject() ? member(*repl, "to") : nullptr;
    if (to) {
      for (const auto& t : to->GetArray()) r.to.push_back(t.GetString());
    } else {
      for (const auto& [name, _] : gs.stacks)
        if (name != gs.active) r.to.push_back(name);
    }
    if (const Value* lag = repl && repl->IsObject() ? member(*repl, "max_lag_bytes") : nullptr)
      r.max_lag_bytes = lag->GetUint64();
    if (const Value* adl = member(g.value, "allow_data_loss")) gs.allow_data_loss = adl->GetBool();
    if (const Value* af = member(g.value, "auto_failover")) {
      AutoFailoverSpec a;
      a.mark = doc.key_mark_of(gp + "/auto_failover");
      // The schema's pattern admits only what parse_duration reads; a zero
      // is refused in check() with its place.
      auto ms = [](const Value& v) {
        auto d = parse_duration(v.GetString());
        return d.ok() ? static_cast<int64_t>(d->count()) : 0;
      };
      a.after_ms = ms((*af)["after"]);
      if (const Value* c = member(*af, "cooldown")) a.cooldown_ms = ms(*c);
      if (const Value* m = member(*af, "max_data_loss_bytes"))
        a.max_data_loss_bytes = m->GetUint64();
      if (const Value* w = member(*af, "witnesses")) a.witnesses = w->GetInt();
      if (const Value* f = member(*af, "self_fence")) a.self_fence = f->GetBool();
      gs.auto_failover = a;
    }
    const Value& traffic = g.value["traffic"];
    auto add_traffic = [&](const Value& t, const std::string& tp, Mark mark) {
      TrafficSpec ts;
      ts.provider = t["provider"].GetString();
      ts.mark = std::move(mark);
      if (const Value* ttl = member(t, "ttl")) ts.ttl = ttl->GetInt();
      if (const Value* sw = member(t, "switch_ttl")) ts.switch_ttl = sw->GetInt();
      split_settings(t, {"provider", "ttl", "record_type", "switch_ttl"}, ts.settings, nullptr);
      const std::string& type = d.providers.at(ts.provider).type;
      if (type == "powerdns") {
        // One address per record type: [A, AAAA] is two rrsets of one name.
        for (const std::string& rt : record_types(t)) {
          TrafficSpec one = ts;
          one.settings["record_type"] = rt;
          one.name = one.get("record") + " " + rt;
          gs.traffic.push_back(std::move(one));
        }
        return;
      }
      ts.name = type == "cloud66"     ? "failover group " + ts.get("failover_group")
                : type == "pgbouncer" ? "PgBouncer database " + ts.get("database")
                : tp == gp + "/traffic"
                    ? "traffic command"
                    : "traffic command #" + std::to_string(gs.traffic.size() + 1);
      gs.traffic.push_back(std::move(ts));
    };
    if (traffic.IsObject()) {
      add_traffic(traffic, gp + "/traffic", doc.key_mark_of(gp + "/traffic"));
    } else {
      for (rapidjson::SizeType i = 0; i < traffic.Size(); ++i) {
        const std::string tp = gp + "/traffic/" + std::to_string(i);
        add_traffic(traffic[i], tp, doc.mark_of(tp));
      }
    }
    d.groups.emplace(gs.name, std::move(gs));
  }
  return d;
}

}  // namespace

std::string provider_default(const std::string& type, const std::string& key) {
  if (const TypeKeys* t = keys_for(type))
    for (const auto& [k, v] : t->provider_defaults)
      if (k == key) return v;
  return "";
}

namespace {
LoadResult too_large(const std::string& file, size_t size) {
  LoadResult out;
  out.errors.push_back({Mark{file, 0, 0}, "the config is " + std::to_string(size) +
                                              " bytes; at most " + std::to_string(kMaxConfigBytes) +
                                              " are read (split it, or ask why it is so large)"});
  return out;
}
}  // namespace

LoadResult load_desired_text(const std::string& file, const std::string& text) {
  if (text.size() > kMaxConfigBytes) return too_large(file, text.size());
  LoadResult out;
  YamlParse parsed = parse_yaml(file, text);
  out.errors = std::move(parsed.errors);
  if (parsed.doc) {
    const YamlDocument& doc = *parsed.doc;
    SchemaCheck sc =
        check_schema_units(doc, embedded_schema("stackflip"),
                           [&doc](const std::string& ptr, std::vector<std::string> keys) {
                             return narrow_expected(doc, ptr, std::move(keys));
                           });
    out.errors.insert(out.errors.end(), sc.errors.begin(), sc.errors.end());
    Checker(*parsed.doc, sc.failed_units, out.errors).run();
    if (out.errors.empty()) {
      DesiredState d = build(doc, text);
      check_config_safety(d, doc, out.errors);
      if (const HostPolicy* policy = host_policy()) check_host_grants(d, doc, *policy, out.errors);
      if (out.errors.empty()) out.desired = std::move(d);
    }
  }
  sort_diagnostics(out.errors);
  return out;
}

LoadResult load_desired_file(const std::string& path) {
  auto text = read_regular_file(path, kMaxConfigBytes);
  if (!text.ok()) {
    LoadResult out;
    out.errors.push_back({Mark{path, 0, 0}, "cannot read " + text.error().message});
    return out;
  }
  return load_desired_text(path, *text);
}

}  // namespace stackflip
