// init.h — `stackflip init` (issue 17): discover an existing PostgreSQL pair
// behind a PowerDNS record and write a first stackflip.yaml.
//
//   stackflip init --postgres 'host=10.0.0.5 user=stackflip dbname=app'
//                  --postgres 'host=10.1.0.5 user=stackflip dbname=app'
//                  --powerdns http://127.0.0.1:8081 --api-key '${env:PDNS_API_KEY}'
//                  --record shop.example.com. > stackflip.yaml
//
// Three steps:
//  1. prepare_init (pure, no I/O): checks the flags and settles what does not
//     need the servers: stack names (--name, else from each DSN's host),
//     addresses (--address, else the DSN's hostaddr or host when it is an IP
//     address of the record's family), the group name (--group, else the
//     record's first label), the zone (--zone, else a guess to be looked up).
//     Secrets only as references: --api-key and --password must be
//     `${env:NAME}` / `${file:PATH}`; a DSN's `password=` is moved to the
//     stack's `password:` when it is a reference and refused otherwise (the
//     message never repeats it). A DSN may use only the keywords a config may
//     (conninfo.h: no passfile, sslkey, service, ...).
//  2. observe_init (I/O): host names of DSNs without an IP address are
//     resolved (getaddrinfo; one address, else the operator gives
//     --address). The config to be written, without observations, is loaded
//     with the real loader, so the host policy (host_policy.h) is checked
//     exactly as for `plan` before anything is contacted: the API key and
//     passwords must be granted for the endpoints they go to. Then the zone
//     is looked up (the longest suffix of the record that PowerDNS serves),
//     and the servers and the record are observed through the real drivers
//     (observe_all), as `plan` observes them.
//  3. write_init_config (init_config.h, pure): the config and its decisions.
//
// Exit codes (DECISION, README "Adopting an existing pair"): 0 when the
// config adopts the pair as it is (its first plan is "No changes"); 2 when
// it was written but something must be decided first (`# DECIDE:` comments
// in it, a summary on stderr); 1 on an error (bad flags, a config the host
// policy refuses), with nothing written. 2 and not 1 so that a script can
// tell "review the notes" from "failed".
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "core/provider.h"
#include "init_config.h"
#include "util/result.h"

namespace stackflip {

struct InitRequest {
  std::vector<std::string> postgres;   // DSNs, one per stack, in order
  std::vector<std::string> names;      // --name: none, or one per --postgres
  std::vector<std::string> addresses;  // --address: none, or one per --postgres
  std::string password;                // --password: the postgres provider's reference
  std::string powerdns_url, api_key;   // --powerdns, --api-key (a reference)
  std::string record, record_type = "A", zone, group;
  std::string schema = kInitSchemaUrl;
};

// At most this many --postgres: a group is a few stacks.
constexpr size_t kMaxInitServers = 16;
// At most this many zones are asked for when looking up the record's zone.
constexpr size_t kMaxZoneLookups = 16;

// Step 1: the facts that need no server; errors name the flag and what was
// expected. Stacks whose address needs a lookup have `address` empty and
// `address_from` set to the host name.
Result<InitFacts> prepare_init(const InitRequest& request);

// A name derived from a DSN's host: the first label of a host name, an IP
// address with '.' and ':' as '-', "local" for a socket folder, made to
// match the schema's name pattern. Not yet unique.
std::string init_stack_name(const std::string& host);

// Step 2: fills the addresses to look up, the zone and the observations.
// Throws Fatal when the config cannot even be loaded (the host policy
// refuses a secret, a DSN names one server twice, ...).
void observe_init(InitFacts& facts, DriverFactory& factory);

// The command: writes the config to `out` and the summary to `err`;
// returns the exit code above.
int run_init(const InitRequest& request, std::ostream& out, std::ostream& err);

}  // namespace stackflip
