// powerdns_zone.h — the zones of one PowerDNS server as every traffic driver
// of that server sees them: observation reads each zone once per pass
// however many records of it the groups own, and one connection pool serves
// them all instead of one connection per record.
//
// A PowerDnsZones is made per provider (url, server_id, api_key, TLS and
// timeout settings: RealDriverFactory keys it on all of them) and shared by
// that provider's traffic drivers. read() with a pass (provider.h
// ObservePass) fetches the zone on its first call in that pass; callers of
// the same pass that come while the fetch is in flight wait for it instead
// of fetching again; later ones reuse the parsed rrsets, or the error (one
// timeout per zone per pass, not one per record). read() without a pass
// always fetches. patch() drops the zone's copy before and after it sends,
// so nothing read after a change is served from before it, and sends one
// change per zone at a time (PowerDNS's SQLite backend refuses concurrent
// writers with HTTP 500). A zone the server lacks is data, not an error
// (PowerDnsZoneData::exists); patch() creates it when asked (the provider's
// `create_zone`, issue 17), under the same one-writer rule.
//
// Requests are counted in provider_stats.h (kind "powerdns") and in
// requests(). The API key is resolved from its secret reference on first use
// and never appears in messages. Thread safety: every method may be called
// from any thread; requests run concurrently on pooled HTTP connections (one
// per concurrent caller, kept for reuse).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/pass_cache.h"
#include "core/provider.h"
#include "sys/http_client.h"

namespace stackflip {

// ASCII upper case, for DNS record types ("aaaa" -> "AAAA").
std::string dns_upper(std::string s);

struct PowerDnsRrset {
  std::string type;  // upper case
  std::optional<int> ttl;
  std::vector<TrafficRecord> records;  // content and disabled; `stack` unset
};

// A zone's rrsets by owner name (absolute, lower case). `exists` false: the
// server answered that it has no such zone (HTTP 404 for the zone while the
// server itself answers), which is an observation, not an error (issue 17).
struct PowerDnsZoneData {
  bool exists = true;
  std::map<std::string, std::vector<PowerDnsRrset>> by_name;
};

class PowerDnsZones {
 public:
  explicit PowerDnsZones(const ProviderConfig& provider);
  ~PowerDnsZones();
  PowerDnsZones(const PowerDnsZones&) = delete;
  PowerDnsZones& operator=(const PowerDnsZones&) = delete;

  // The rrsets of `zone` (absolute name), or why they cannot be read (HTTP
  // status and body, transport error, unreadable answer). A 404 for the
  // zone is asked again of the server (GET /servers/ID): when the server
  // answers, the zone is missing (`exists` false); when it does not,
  // `server_id` is wrong and that is the error.
  Result<std::shared_ptr<const PowerDnsZoneData>> read(const std::string& zone, ObservePass pass);

  // PATCHes `body` (an rrsets change) to `zone`; any non-2xx is an error
  // with the status and body. `create_missing`: when the PATCH finds no
  // such zone (HTTP 404), create it (create_zone) and PATCH again.
  Status patch(const std::string& zone, std::string body, bool create_missing = false);

  // The zone's API URL; messages name it.
  std::string zone_url(const std::string& zone) const;
  // The server's API URL (/api/v1/servers/ID).
  std::string server_url() const;

  // Requests this object has sent (GET, PATCH and POST).
  uint64_t requests() const;

 private:
  struct Zone {
    PassCache<std::shared_ptr<const PowerDnsZoneData>> reads;
    std::mutex writer;  // one PATCH to the zone at a time
  };
  Zone& zone(const std::string& name);  // made on first use, never removed

  Result<std::shared_ptr<const PowerDnsZoneData>> fetch(const std::string& zone);
  // POSTs a Native zone without records (PowerDNS adds its default SOA); a
  // zone that exists meanwhile (HTTP 409) is success.
  Status create(const std::string& zone);
  // One request to `url`; a non-2xx answer is an error (401/403: a
  // ConfigError), with `status` set to the HTTP status whenever one came.
  Result<HttpResponse> call(const std::string& method, const std::string& url, std::string body,
                            long* status = nullptr);
  Result<std::string> api_key();

  std::string provider_, base_url_, api_key_ref_, server_id_;
  HttpClientOptions client_options_;
  std::chrono::milliseconds timeout_{5000};

  mutable std::mutex mu_;  // guards everything below
  std::map<std::string, std::unique_ptr<Zone>> zones_;
  std::vector<std::unique_ptr<HttpClient>> idle_clients_;
  std::optional<std::string> api_key_;
  uint64_t requests_ = 0;
};

}  // namespace stackflip
