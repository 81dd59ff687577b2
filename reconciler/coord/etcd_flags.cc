// etcd_flags.cc — see etcd_flags.h.
#include "coord/etcd_flags.h"

#include <regex>

#include "config/secret.h"
#include "util/strings.h"  // parse_duration

namespace stackflip {

namespace {
const std::regex kName("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$");
}

Result<EtcdOptions> etcd_client_options(const EtcdFlags& f) {
  EtcdOptions o;
  size_t start = 0;
  while (start <= f.endpoints.size()) {
    size_t comma = f.endpoints.find(',', start);
    std::string url =
        f.endpoints.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
      return Err("--etcd: \"" + url +
                 "\" is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)");
    while (!url.empty() && url.back() == '/') url.pop_back();
    o.endpoints.push_back(url);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  o.cacert = f.cacert;
  o.cert = f.cert;
  o.key = f.key;
  if (f.cert.empty() != f.key.empty()) return Err("--etcd-cert and --etcd-key go together");
  o.user = f.user;
  if (!f.password.empty()) {
    if (f.user.empty()) return Err("--etcd-password needs --etcd-user");
    if (!is_secret_reference(f.password))
      return Err("--etcd-password must be a secret reference (${env:NAME} or ${file:PATH})");
    auto pw = resolve_secret(f.password);
    if (!pw.ok()) return Err("--etcd-password: " + pw.error().message);
    o.password = *pw;
  } else if (!f.user.empty()) {
    return Err("--etcd-user needs --etcd-password");
  }
  return o;
}

Result<EtcdCoordinationOptions> etcd_coordination_options(const EtcdFlags& f) {
  EtcdCoordinationOptions o;
  if (!std::regex_match(f.instance, kName))
    return Err("--etcd needs --instance NAME (letters, digits, '.', '_', '-'; at most 63): got \"" +
               f.instance + "\"");
  o.instance = f.instance;
  o.site = f.site.empty() ? f.instance : f.site;
  if (!std::regex_match(o.site, kName)) return Err("--site: \"" + f.site + "\" is not a site name");
  if (f.prefix.empty() || f.prefix.front() != '/' || f.prefix.back() != '/')
    return Err("--etcd-prefix must start and end with '/': got \"" + f.prefix + "\"");
  o.prefix = f.prefix;
  auto ttl = parse_duration(f.lease_ttl);
  if (!ttl.ok()) return Err("--lease-ttl: " + ttl.error().message);
  if (*ttl < std::chrono::seconds(2) || ttl->count() % 1000 != 0)
    return Err("--lease-ttl: etcd leases count whole seconds, at least 2 s: got " + f.lease_ttl);
  o.lease_ttl = std::chrono::duration_cast<std::chrono::seconds>(*ttl);
  return o;
}

void fit_to_lease(ApplyOptions& o, std::chrono::seconds lease_ttl) {
  o.retries = std::min(o.retries, 1);
  auto half = std::chrono::duration_cast<std::chrono::milliseconds>(lease_ttl) / 2;
  auto per_attempt = (half - std::chrono::milliseconds(100) * o.retries) / (o.retries + 1);
  o.action_timeout = std::min(o.action_timeout, per_attempt);
  o.wait_timeout = std::min(o.wait_timeout, per_attempt);
}

std::chrono::milliseconds action_budget(const ApplyOptions& o, const Action& a) {
  auto each = a.kind == ActionKind::replication_wait ? o.wait_timeout : o.action_timeout;
  // Backoff between attempts: 100 ms, doubling (apply.h).
  std::chrono::milliseconds backoff{0}, step{100};
  for (int i = 0; i < o.retries; ++i, step *= 2) backoff += step;
  return each * (o.retries + 1) + backoff;
}

}  // namespace stackflip
