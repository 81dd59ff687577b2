// etcd_flags.h — the command line's etcd flags (`run`, `status`,
// `history`: --etcd, --instance, --site, --etcd-prefix, --lease-ttl,
// --etcd-cacert, --etcd-cert, --etcd-key, --etcd-user, --etcd-password)
// checked and turned into options, and apply's timeouts fitted to the lease.
#pragma once

#include <chrono>
#include <string>

#include "coord/etcd_client.h"
#include "coord/etcd_coordination.h"
#include "core/apply.h"
#include "util/result.h"

namespace stackflip {

struct EtcdFlags {
  std::string endpoints;  // "http://10.0.0.1:2379,http://10.0.0.2:2379"
  std::string instance, site;
  std::string prefix = "/stackflip/";
  std::string lease_ttl = "5s";
  std::string cacert, cert, key;
  std::string user, password;  // password: a secret reference (${env:NAME}, ${file:PATH})

  bool enabled() const { return !endpoints.empty(); }
};

// The client's options; an error names the flag that is wrong. `for_run`
// also requires --instance (a name etcd keys can hold).
Result<EtcdOptions> etcd_client_options(const EtcdFlags& f);
Result<EtcdCoordinationOptions> etcd_coordination_options(const EtcdFlags& f);

// With etcd an action starts only when the lease has more time left than the
// action may take, all attempts included (etcd_coordination.h). So the
// action and wait timeouts are cut to fit half the lease (at most one retry),
// and `budget` is what an action may take under those options.
void fit_to_lease(ApplyOptions& o, std::chrono::seconds lease_ttl);
std::chrono::milliseconds action_budget(const ApplyOptions& o, const Action& a);

}  // namespace stackflip
