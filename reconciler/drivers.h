// drivers.h — the real DriverFactory: picks a driver by the provider's type.
//
//   stacks:  postgres, cloud66 (with `database_dsn`: maintenance and actions
//            through Cloud 66, database positions read directly from
//            PostgreSQL so the no-data-loss guard can be checked), command
//   traffic: powerdns, cloud66, command
#pragma once

#include "provider.h"

namespace stackflip {

class RealDriverFactory : public DriverFactory {
 public:
  Result<std::unique_ptr<StackDriver>> stack_driver(const DesiredState& desired,
                                                    const GroupSpec& group,
                                                    const std::string& stack) override;
  Result<std::unique_ptr<TrafficDriver>> traffic_driver(const DesiredState& desired,
                                                        const GroupSpec& group,
                                                        const TrafficSpec& traffic) override;
};

}  // namespace stackflip
