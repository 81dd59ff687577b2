#include "config/conninfo.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <memory>

#include "config/host_policy.h"

namespace stackflip {

namespace {
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(',', start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}
}  // namespace

bool dsn_keyword_allowed(const std::string& k) {
  static const char* const kAllowed[] = {"host",
                                         "hostaddr",
                                         "port",
                                         "dbname",
                                         "user",
                                         "connect_timeout",
                                         "client_encoding",
                                         "options",
                                         "application_name",
                                         "fallback_application_name",
                                         "keepalives",
                                         "keepalives_idle",
                                         "keepalives_interval",
                                         "keepalives_count",
                                         "tcp_user_timeout",
                                         "sslmode",
                                         "sslcompression",
                                         "sslsni",
                                         "ssl_min_protocol_version",
                                         "ssl_max_protocol_version",
                                         "gssencmode",
                                         "channel_binding",
                                         "target_session_attrs",
                                         "load_balance_hosts"};
  for (const char* a : kAllowed)
    if (k == a) return true;
  return false;
}

Result<Conninfo> parse_dsn(const std::string& dsn) {
  char* err = nullptr;
  std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption*)> opts(
      PQconninfoParse(dsn.c_str(), &err), PQconninfoFree);
  if (!opts) {
    std::string why = err ? err : "out of memory";
    if (err) PQfreemem(err);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return Err("not a valid PostgreSQL connection string: " + why);
  }
  Conninfo c;
  std::string host, hostaddr, port;
  for (PQconninfoOption* o = opts.get(); o->keyword; ++o) {
    if (!o->val) continue;
    std::string k = o->keyword, v = o->val;
    c.options.emplace_back(k, v);
    if (k == "host") host = v;
    if (k == "hostaddr") hostaddr = v;
    if (k == "port") port = v;
  }
  if (host.empty() && hostaddr.empty()) host = std::getenv("PGHOST") ? std::getenv("PGHOST") : "";
  if (port.empty()) port = std::getenv("PGPORT") ? std::getenv("PGPORT") : "5432";
  std::vector<std::string> hosts = split_commas(host), addrs = split_commas(hostaddr),
                           ports = split_commas(port);
  size_t n = std::max(hosts.size(), addrs.size());
  for (size_t i = 0; i < n; ++i) {
    // libpq connects to hostaddr when given (host is then only for TLS/auth).
    std::string h = i < addrs.size() && !addrs[i].empty() ? addrs[i]
                    : i < hosts.size()                    ? hosts[i]
                                                          : "";
    if (h.empty()) h = "/var/run/postgresql";
    std::string p = ports.size() == 1 ? ports[0] : i < ports.size() ? ports[i] : "5432";
    c.endpoints.push_back(postgres_origin(h, p.empty() ? "5432" : p));
  }
  return c;
}

std::vector<std::string> dsn_endpoints(const std::string& dsn) {
  auto c = parse_dsn(dsn);
  return c.ok() ? c->endpoints : std::vector<std::string>{};
}

std::string quote_conninfo_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

}  // namespace stackflip
