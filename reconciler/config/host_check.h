// host_check.h — the checks that keep a config inside the trust boundary.
//
// A config may decide the desired state, nothing more (host_policy.h). Two
// passes over a loaded config, each problem a Diagnostic at file:line:col:
//
//  - check_config_safety: always, policy or not. A DSN names servers only (no
//    passfile, sslkey, service, ...: conninfo.h); a provider URL is http(s)
//    without user:password@. One owner per database server: no two stacks
//    (in one group or two) name the same server, by DSN endpoint (libpq's
//    reading: hostaddr over host, default port, lower case, each host of a
//    multi-host DSN) or by Cloud 66 stack_uid. It lives here, not in the
//    loader's Checker, because it needs libpq's parse of the DSN, which this
//    pass already makes for every stack. A pgbouncer provider's admin_dsn
//    names servers only, no password, and dbname=pgbouncer; in a group whose
//    traffic goes through PgBouncer each stack's DSN names one server whose
//    host can be written into a PgBouncer entry.
//  - check_host_grants: when a host policy is installed. Every program the
//    config names is allowed; every secret reference is granted and bound to
//    each endpoint it would be sent to (a database password to every server
//    its DSN names; PGPASSWORD in stackflip's environment counts as
//    `${env:PGPASSWORD}`, since libpq sends it to any server); files (ca_file)
//    and `insecure: true` are allowed by the host; so is every health check's
//    origin (`health_urls:`) and every PgBouncer databases_file stackflip
//    would write (`pgbouncer_files:`); a pgbouncer provider's password is
//    bound to its admin_dsn's servers.
#pragma once

#include <vector>

#include "config/diagnostics.h"
#include "config/host_policy.h"
#include "config/yaml_doc.h"
#include "core/model.h"

namespace stackflip {

void check_config_safety(const DesiredState& d, const YamlDocument& doc,
                         std::vector<Diagnostic>& errors);
void check_host_grants(const DesiredState& d, const YamlDocument& doc, const HostPolicy& policy,
                       std::vector<Diagnostic>& errors);

// The endpoints a stack's database password goes to ("postgres://host:port"),
// from its DSN (postgres: `dsn`, cloud66: `database_dsn`); empty when none.
std::vector<std::string> database_endpoints(const StackSpec& s);

}  // namespace stackflip
