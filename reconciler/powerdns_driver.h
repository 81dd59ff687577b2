// powerdns_driver.h — TrafficDriver for one record of a PowerDNS
// Authoritative server, through its HTTP API v1.
//
// Provider settings: `url` (API base, e.g. http://127.0.0.1:8081), `api_key`
// (secret reference, sent as X-API-Key), `server_id` (default "localhost"),
// `timeout_ms` (per request, default 5000), `insecure` ("true" disables TLS
// verification), `ca_file`. Traffic settings: `zone`, `record`,
// `record_type` (default A); the TTL comes from TrafficSpec::ttl. Zone and
// record names are made absolute (trailing dot) as the API requires.
//
// observe() reads the zone and maps the record's first enabled content to
// the stack whose `address` equals it (target null when the rrset is missing
// or holds an address of no stack). switch_to() replaces the whole rrset
// with the stack's address (changetype REPLACE, one record) and then
// re-observes to verify. DNS resolvers keep the old answer for up to the old
// TTL: the driver only changes the authoritative data.
//
// `server_id` and `zone` go into the URL path: the server id
// percent-encoded, the zone as the API's own zone id (powerdns_zone_id), so
// neither can name another path. The answer is read through
// parse_json_input (json_input.h): at most 8 MiB (http_client.h) and 64
// levels deep, else the record is unreachable with the reason.
//
// The API key is resolved from its secret reference on first use and never
// appears in messages or logs. One HTTP connection is kept across calls.
// Used from one thread at a time (provider.h).
#pragma once

#include <memory>
#include <string>

#include "model.h"
#include "provider.h"

namespace stackflip {

// The zone id PowerDNS uses in URLs (its apiZoneNameToId): the name with a
// trailing dot, every byte but letters, digits, '.' and '-' as "=XX"; the
// root zone "." is "=2E".
std::string powerdns_zone_id(const std::string& zone);

std::unique_ptr<TrafficDriver> make_powerdns_traffic_driver(const ProviderConfig& provider,
                                                            const GroupSpec& group,
                                                            const TrafficSpec& traffic);

}  // namespace stackflip
