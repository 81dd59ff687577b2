#include "config/host_check.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <set>

#include "config/conninfo.h"
#include "config/yaml_doc.h"

namespace stackflip {

namespace {

std::string provider_ptr(const std::string& name, const std::string& key = "") {
  std::string p = pointer_append("/providers", name);
  return key.empty() ? p : pointer_append(p, key);
}
std::string stack_ptr(const GroupSpec& g, const StackSpec& s, const std::string& key = "") {
  std::string p = pointer_append(pointer_append("/groups", g.name) + "/stacks", s.name);
  return key.empty() ? p : pointer_append(p, key);
}

// The mark of `ptr` when it was written, else of `fallback` (a defaulted or
// inherited setting).
Mark mark_at(const YamlDocument& doc, const std::string& ptr, const std::string& fallback) {
  return doc.marks.find(ptr) ? doc.mark_of(ptr) : doc.key_mark_of(fallback);
}

const char* dsn_key(const std::string& type) { return type == "cloud66" ? "database_dsn" : "dsn"; }
const char* password_key(const std::string& type) {
  return type == "cloud66" ? "database_password" : "password";
}

// One server a stack names: "postgres://host:port" from its DSN, or a Cloud 66
// stack ("cloud66:<api origin>/<stack_uid>"), and where it is written.
struct ServerName {
  std::string key, shown;
  Mark mark;
  std::string group, stack;
};

std::string place(const Mark& m) {
  return m.file + ":" + std::to_string(m.line) + ":" + std::to_string(m.column);
}

// One owner per database server (issue 11): a promotion is per server, not
// per database, so two stacks naming one server would fence and promote it
// from two plans. Reported at the later place (document order), naming the
// earlier one, as for two groups owning one DNS record. Names are compared
// as libpq resolves them (hostaddr over host, default port, lower case);
// names that differ but reach one server are caught at observe time
// (planner.h: shared_server_blocks).
void check_one_owner(std::vector<ServerName> names, std::vector<Diagnostic>& errors) {
  std::stable_sort(names.begin(), names.end(), [](const ServerName& a, const ServerName& b) {
    return a.mark.line != b.mark.line ? a.mark.line < b.mark.line : a.mark.column < b.mark.column;
  });
  std::map<std::string, const ServerName*> owner;
  std::set<std::string> reported;  // "group/stack -> group/stack", once per pair
  for (const ServerName& n : names) {
    auto [it, inserted] = owner.emplace(n.key, &n);
    if (inserted) continue;
    const ServerName& first = *it->second;
    if (first.group == n.group && first.stack == n.stack) continue;  // a DSN listing a host twice
    if (!reported.insert(first.group + "/" + first.stack + " " + n.group + "/" + n.stack).second)
      continue;
    errors.push_back(
        {n.mark, "stack '" + n.stack + "' of group '" + n.group + "' names " + n.shown +
                     ", which stack '" + first.stack + "' of group '" + first.group +
                     "' already names (" + place(first.mark) +
                     "): a promotion is per server, so stacks sharing a database server "
                     "fail over together; give each server one stack (applications that "
                     "share a database pair belong in one group)"});
  }
}

// A pgbouncer provider's admin_dsn (issue 15): a server only, as any DSN
// from the config, no password inside (it belongs in `password`), and the
// admin console's database.
void check_admin_dsn(const ProviderConfig& p, const YamlDocument& doc,
                     std::vector<Diagnostic>& errors) {
  const Mark m = mark_at(doc, provider_ptr(p.name, "admin_dsn"), provider_ptr(p.name));
  auto c = parse_dsn(p.get("admin_dsn"));
  if (!c.ok()) {
    errors.push_back({m, "'admin_dsn': " + c.error().message});
    return;
  }
  std::string dbname;
  for (const auto& [k, v] : c->options) {
    if (k == "dbname") dbname = v;
    if (k == "password")
      errors.push_back({m,
                        "a password inside 'admin_dsn'; put it in 'password' as ${env:NAME} "
                        "or ${file:PATH}"});
    else if (!dsn_keyword_allowed(k))
      errors.push_back({m, "'" + k +
                               "' is not allowed in 'admin_dsn': it names a file or a "
                               "credential on the reconciler host, which the operator sets there"});
  }
  if (dbname != "pgbouncer")
    errors.push_back({m, "'admin_dsn' must name PgBouncer's admin console: dbname=pgbouncer" +
                             (dbname.empty() ? std::string() : " (not " + dbname + ")")});
}

// Characters a host may have to be written into a PgBouncer entry unquoted.
bool plain_host(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  for (char c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
          c == ':' || c == '/' || c == '[' || c == ']'))
      return false;
  return true;
}

// A group whose traffic goes through PgBouncer: each stack's DSN names the
// one server the entry is pointed at while the stack is active.
void check_pgbouncer_stacks(const DesiredState& d, const YamlDocument& doc,
                            std::vector<Diagnostic>& errors) {
  for (const auto& [gname, g] : d.groups) {
    bool pgbouncer = false;
    for (const auto& t : g.traffic) pgbouncer |= d.providers.at(t.provider).type == "pgbouncer";
    if (!pgbouncer) continue;
    for (const auto& [sname, s] : g.stacks) {
      const char* key = s.settings.count("dsn") ? "dsn" : "database_dsn";
      const std::string sp = stack_ptr(g, s);
      if (!s.settings.count(key)) {
        errors.push_back({doc.key_mark_of(sp),
                          "stack '" + sname + "' needs a dsn: traffic of group '" + gname +
                              "' goes through PgBouncer, which is pointed at the server of the "
                              "active stack's dsn"});
        continue;
      }
      const Mark m = mark_at(doc, stack_ptr(g, s, key), sp);
      const std::vector<std::string> endpoints = database_endpoints(s);
      if (endpoints.size() > 1)
        errors.push_back({m, "stack '" + sname + "' names " + std::to_string(endpoints.size()) +
                                 " servers; the PgBouncer entry of group '" + gname +
                                 "' points at exactly one"});
      for (const auto& e : endpoints)
        if (!plain_host(e.substr(std::string("postgres://").size())))
          errors.push_back({m, "stack '" + sname + "': " + e +
                                   " cannot be written into a PgBouncer entry (letters, digits, "
                                   "'.', '-', '_', ':' and '/' only)"});
    }
  }
}

}  // namespace

std::vector<std::string> database_endpoints(const StackSpec& s) {
  for (const char* key : {"dsn", "database_dsn"}) {
    std::string dsn = s.get(key);
    if (dsn.empty()) continue;
    auto c = parse_dsn(dsn);
    if (c.ok()) return c->endpoints;
  }
  return {};
}

void check_config_safety(const DesiredState& d, const YamlDocument& doc,
                         std::vector<Diagnostic>& errors) {
  for (const auto& [name, p] : d.providers)
    for (const char* key : {"url", "base_url"}) {
      if (!p.settings.count(key)) continue;
      auto o = url_origin(p.get(key));
      if (!o.ok())
        errors.push_back({mark_at(doc, provider_ptr(name, key), provider_ptr(name)),
                          std::string("'") + key + "': " + o.error().message});
    }
  for (const auto& [name, p] : d.providers)
    if (p.type == "pgbouncer") check_admin_dsn(p, doc, errors);
  check_pgbouncer_stacks(d, doc, errors);
  std::vector<ServerName> servers;
  for (const auto& [gname, g] : d.groups)
    for (const auto& [sname, s] : g.stacks) {
      const ProviderConfig& provider = d.providers.at(s.provider);
      const std::string type = provider.type;
      if (type == "cloud66" && s.settings.count("stack_uid")) {
        auto origin = url_origin(provider.get("base_url"));
        const std::string uid = s.get("stack_uid");
        servers.push_back(
            {"cloud66:" + (origin.ok() ? *origin : provider.get("base_url")) + "/" + uid,
             "Cloud 66 stack '" + uid + "'",
             mark_at(doc, stack_ptr(g, s, "stack_uid"), stack_ptr(g, s)), gname, sname});
      }
      const char* key = dsn_key(type);
      if (!s.settings.count(key)) continue;
      const Mark m = mark_at(doc, stack_ptr(g, s, key), stack_ptr(g, s));
      auto c = parse_dsn(s.get(key));
      if (!c.ok()) {
        errors.push_back({m, c.error().message});
        continue;
      }
      for (const auto& e : c->endpoints)
        servers.push_back({e, "database server " + e, m, gname, sname});
      for (const auto& [k, v] : c->options)
        if (!dsn_keyword_allowed(k))
          errors.push_back(
              {m, "'" + k +
                      "' is not allowed in a DSN from the config: it names a file or a "
                      "credential on the reconciler host, which the operator sets there (e.g. "
                      "PGPASSFILE, PGSSLROOTCERT in stackflip's environment); allowed: host, "
                      "hostaddr, "
                      "port, dbname, user, sslmode, connect_timeout, application_name, "
                      "target_session_attrs, keepalives*, ..."});
    }
  check_one_owner(std::move(servers), errors);
}

void check_host_grants(const DesiredState& d, const YamlDocument& doc, const HostPolicy& policy,
                       std::vector<Diagnostic>& errors) {
  auto secret = [&](const Mark& m, const std::string& field, const std::string& ref,
                    const std::vector<std::string>& origins) {
    if (!policy.secret_granted(ref)) {
      errors.push_back({m, "secret " + ref + " in '" + field + "' is not granted on this host (" +
                               policy.describe() +
                               "; list it under `secrets:` with the endpoints it may be sent to)"});
      return;
    }
    for (const auto& o : origins)
      if (!policy.secret_allowed(ref, o))
        errors.push_back({m, "secret " + ref + " in '" + field + "' may not be sent to " + o +
                                 " (" + policy.describe() + " binds it to other endpoints)"});
  };
  auto command = [&](const Mark& m, const std::vector<std::string>& argv) {
    if (argv.empty()) return;
    auto r = policy.allow_command(argv[0]);
    if (!r.ok()) errors.push_back({m, r.error().message});
  };

  for (const auto& [name, p] : d.providers) {
    const std::string pp = provider_ptr(name);
    if (p.get("insecure") == "true" && !policy.insecure_tls)
      errors.push_back(
          {mark_at(doc, provider_ptr(name, "insecure"), pp),
           "'insecure: true' turns TLS verification off, which this host does not allow (" +
               policy.describe() + ": insecure_tls)"});
    if (p.settings.count("ca_file")) {
      bool ok = false;
      for (const auto& f : policy.files) ok |= f == p.get("ca_file");
      if (!ok)
        errors.push_back({mark_at(doc, provider_ptr(name, "ca_file"), pp),
                          "file " + p.get("ca_file") + " is not allowed on this host (" +
                              policy.describe() + "; list it under `files:`)"});
    }
    for (const auto& [key, url_key] : {std::pair{"api_key", "url"}, {"token", "base_url"}}) {
      if (!p.settings.count(key)) continue;
      auto origin = url_origin(p.get(url_key));
      if (!origin.ok()) continue;  // reported by check_config_safety
      secret(mark_at(doc, provider_ptr(name, key), pp), key, p.get(key), {*origin});
    }
    for (const auto& [op, argv] : p.lists) {
      const std::string ptr = pointer_append(provider_ptr(name, "commands"), op) + "/0";
      command(mark_at(doc, ptr, pp), argv);
    }
    if (p.type == "pgbouncer") {
      // The admin console's password goes to the admin_dsn's servers; the
      // databases file is written only where the host allows.
      const std::vector<std::string> endpoints = dsn_endpoints(p.get("admin_dsn"));
      if (p.settings.count("password"))
        secret(mark_at(doc, provider_ptr(name, "password"), pp), "password", p.get("password"),
               endpoints);
      else if (const char* pw = std::getenv("PGPASSWORD"); pw)
        for (const auto& o : endpoints)
          if (!policy.secret_allowed("${env:PGPASSWORD}", o))
            errors.push_back(
                {mark_at(doc, provider_ptr(name, "admin_dsn"), pp),
                 "PGPASSWORD is set in stackflip's environment and libpq sends it to every server "
                 "without its own password; " +
                     o + " is not among the endpoints " + policy.describe() +
                     " binds ${env:PGPASSWORD} to"});
      if (!policy.pgbouncer_file_allowed(p.get("databases_file")))
        errors.push_back({mark_at(doc, provider_ptr(name, "databases_file"), pp),
                          "file " + p.get("databases_file") +
                              " may not be written by stackflip on this host (" +
                              policy.describe() + "; list it under `pgbouncer_files:`)"});
    }
  }

  const char* ambient = std::getenv("PGPASSWORD");
  for (const auto& [gname, g] : d.groups)
    for (const auto& [sname, s] : g.stacks) {
      const std::string type = d.providers.at(s.provider).type;
      const std::string sp = stack_ptr(g, s);
      if (auto it = s.lists.find("control_command"); it != s.lists.end())
        command(mark_at(doc, stack_ptr(g, s, "control_command") + "/0", sp), it->second);
      if (s.health) {
        auto origin = url_origin(s.health->url);
        if (origin.ok() && !policy.health_allowed(*origin))
          errors.push_back({mark_at(doc, stack_ptr(g, s, "health") + "/url", sp),
                            "health check of stack '" + sname + "': this host does not allow " +
                                "requests to " + *origin + " (" + policy.describe() +
                                "; list the origin under `health_urls:`)"});
      }
      if (type != "postgres" && type != "cloud66") continue;
      if (!s.settings.count(dsn_key(type))) continue;
      std::vector<std::string> endpoints = database_endpoints(s);
      const std::string pw = password_key(type);
      // Re-attaching a stack as a replica writes the source's password into
      // the replica's server (primary_conninfo): with replication, a stack's
      // password reaches every database server of its group.
      std::vector<std::string> reach = endpoints;
      if (g.replication.enabled)
        for (const auto& [oname, other] : g.stacks)
          if (oname != sname)
            for (auto& o : database_endpoints(other)) reach.push_back(std::move(o));
      if (s.settings.count(pw)) {
        // Written on the stack, or inherited from the postgres provider.
        Mark m = doc.marks.find(stack_ptr(g, s, pw))
                     ? doc.mark_of(stack_ptr(g, s, pw))
                     : mark_at(doc, provider_ptr(s.provider, pw), sp);
        secret(m, pw, s.get(pw), reach);
      } else if (ambient) {
        const std::string ref = "${env:PGPASSWORD}";
        const Mark m = mark_at(doc, stack_ptr(g, s, dsn_key(type)), sp);
        for (const auto& o : endpoints)
          if (!policy.secret_allowed(ref, o))
            errors.push_back(
                {m,
                 "PGPASSWORD is set in stackflip's environment and libpq sends it to every server "
                 "without its own password; " +
                     o + " is not among the endpoints " + policy.describe() +
                     " binds ${env:PGPASSWORD} to"});
      }
    }
}

}  // namespace stackflip
