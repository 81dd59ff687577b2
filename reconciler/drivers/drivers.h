// drivers.h — the real DriverFactory: picks a driver by the provider's type.
//
//   stacks:  postgres, cloud66 (with `database_dsn`: maintenance and actions
//            through Cloud 66, database positions read directly from
//            PostgreSQL so the no-data-loss guard can be checked), command
//   traffic: powerdns, cloud66, command, pgbouncer
//
// Traffic drivers of one provider share what they read: one PowerDnsZones
// (powerdns_zone.h) per PowerDNS server, one Cloud66Lists per Cloud 66
// account, so an observation pass reads each zone or list once however many
// addresses the groups own. Sharing is keyed on every setting of the
// provider (a reload that changes its url or key gets a new reader); the
// factory holds readers weakly, so they live as long as the drivers using
// them. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/provider.h"

namespace stackflip {

class PowerDnsZones;
class Cloud66Lists;

class RealDriverFactory : public DriverFactory {
 public:
  Result<std::unique_ptr<StackDriver>> stack_driver(const DesiredState& desired,
                                                    const GroupSpec& group,
                                                    const std::string& stack) override;
  Result<std::unique_ptr<TrafficDriver>> traffic_driver(const DesiredState& desired,
                                                        const GroupSpec& group,
                                                        const TrafficSpec& traffic) override;
  std::unique_ptr<HealthProbe> health_probe(const StackSpec& stack) override;

 private:
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<PowerDnsZones>> zones_;
  std::map<std::string, std::weak_ptr<Cloud66Lists>> lists_;
};

}  // namespace stackflip
