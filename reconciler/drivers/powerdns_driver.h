// powerdns_driver.h — TrafficDriver for one record of a PowerDNS
// Authoritative server, through its HTTP API v1.
//
// Provider settings: `url` (API base, e.g. http://127.0.0.1:8081), `api_key`
// (secret reference, sent as X-API-Key), `server_id` (default "localhost"),
// `timeout_ms` (per request, default 5000), `insecure` ("true" disables TLS
// verification), `ca_file`, `create_zone` ("true": a missing zone is created
// by the switch). Traffic settings: `zone`, `record`,
// `record_type` (default A); the TTL comes from TrafficSpec::ttl. Zone and
// record names are made absolute (trailing dot) as the API requires.
//
// observe() reads the zone and reports every record of the rrset, each with
// the stack whose address it is; the target is the stack whose addresses
// the enabled records are, exactly. Reads go through the provider's shared
// PowerDnsZones (powerdns_zone.h): observe_in(pass) shares one GET of the
// zone with every record of it observed in that pass; observe() reads
// fresh. switch_to() replaces the whole rrset with the stack's addresses
// (changetype REPLACE), which drops the zone's shared copy, and then
// re-observes fresh to verify. DNS resolvers keep the old answer for up to the old
// TTL: the driver only changes the authoritative data.
//
// What is not there (issue 17): a name without an rrset of the type is
// observed reachable and `absent` ("record"), and switch_to() creates it
// (REPLACE creates an rrset). A zone the server lacks is `absent` "zone"
// with `create_zone`, and switch_to() creates it first; without, it is a
// configuration error naming the zone and the setting. What is there but
// not stackflip's is a `blocker`, never overwritten: a CNAME at the name
// (or another type beside a CNAME record_type), or values of no stack
// beside other values.
//
// `server_id` and `zone` go into the URL path: the server id
// percent-encoded, the zone as the API's own zone id (powerdns_zone_id), so
// neither can name another path. The answer is read through
// parse_json_input (json_input.h): at most 8 MiB (http_client.h) and 64
// levels deep, else the record is unreachable with the reason.
//
// The API key is resolved from its secret reference on first use and never
// appears in messages or logs. HTTP 401 or 403 (the key is rejected) is a
// ConfigError (result.h): the observation carries TrafficObs::config_error
// and the run exits 1, not 3 (issue 12). HTTP connections are pooled per provider and
// kept across calls. Used from one thread at a time (provider.h); drivers
// sharing a PowerDnsZones may run concurrently.
#pragma once

#include <memory>
#include <string>

#include "core/model.h"
#include "core/provider.h"

namespace stackflip {

class PowerDnsZones;

// The zone id PowerDNS uses in URLs (its apiZoneNameToId): the name with a
// trailing dot, every byte but letters, digits, '.' and '-' as "=XX"; the
// root zone "." is "=2E".
std::string powerdns_zone_id(const std::string& zone);

// `zones` is the provider's shared zone reader (powerdns_zone.h); null
// makes one for this driver alone.
std::unique_ptr<TrafficDriver> make_powerdns_traffic_driver(
    const ProviderConfig& provider, const GroupSpec& group, const TrafficSpec& traffic,
    std::shared_ptr<PowerDnsZones> zones = nullptr);

}  // namespace stackflip
