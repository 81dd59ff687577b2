#include "drivers/drivers.h"

#include "drivers/cloud66_driver.h"
#include "drivers/command_driver.h"
#include "drivers/health_probe.h"
#include "drivers/pgbouncer_driver.h"
#include "drivers/postgres_driver.h"
#include "drivers/powerdns_driver.h"
#include "drivers/powerdns_zone.h"

namespace stackflip {

namespace {

// A Cloud 66 stack whose database is also reachable directly: Cloud 66 serves
// maintenance and the database actions, PostgreSQL tells role and position.
class Cloud66WithDatabase : public StackDriver {
 public:
  Cloud66WithDatabase(std::unique_ptr<StackDriver> c66, std::unique_ptr<StackDriver> pg)
      : c66_(std::move(c66)), pg_(std::move(pg)) {}
  StackObs observe() override {
    StackObs s = c66_->observe();
    StackObs db = pg_->observe();
    if (db.reachable)
      s.database = db.database;
    else if (s.reachable) {
      s.error = "database: " + db.error;
      s.config_error = db.config_error;  // e.g. the database password rejected (issue 12)
    }
    return s;
  }
  Status set_maintenance(bool on) override { return c66_->set_maintenance(on); }
  Status stop_replication() override { return c66_->stop_replication(); }
  Status promote() override { return c66_->promote(); }
  Status start_replication(const StackSpec& source) override {
    return c66_->start_replication(source);
  }

 private:
  std::unique_ptr<StackDriver> c66_, pg_;
};

// The group as the postgres driver sees it: each stack's `database_dsn` as its
// dsn, so upstreams map back to stack names.
GroupSpec database_view(const GroupSpec& g) {
  GroupSpec v = g;
  for (auto& [name, s] : v.stacks) {
    s.settings["dsn"] = s.get("database_dsn");
    s.settings.erase("password");
    if (s.settings.count("database_password")) s.settings["password"] = s.get("database_password");
  }
  return v;
}

// Everything that makes two providers read the same data the same way.
std::string sharing_key(const ProviderConfig& p) {
  std::string key = p.type + '\n' + p.name;
  for (const auto& [k, v] : p.settings) key += '\n' + k + '=' + v;
  return key;
}

template <class T, class Make>
std::shared_ptr<T> shared_reader(std::mutex& mu, std::map<std::string, std::weak_ptr<T>>& readers,
                                 const ProviderConfig& p, Make make) {
  std::lock_guard lock(mu);
  for (auto it = readers.begin(); it != readers.end();)
    it = it->second.expired() ? readers.erase(it) : std::next(it);
  std::weak_ptr<T>& slot = readers[sharing_key(p)];
  std::shared_ptr<T> reader = slot.lock();
  if (!reader) {
    reader = make();
    slot = reader;
  }
  return reader;
}

const ProviderConfig* provider_of(const DesiredState& d, const std::string& name) {
  auto it = d.providers.find(name);
  return it == d.providers.end() ? nullptr : &it->second;
}

}  // namespace

Result<std::unique_ptr<StackDriver>> RealDriverFactory::stack_driver(const DesiredState& desired,
                                                                     const GroupSpec& group,
                                                                     const std::string& stack) {
  const StackSpec& spec = group.stacks.at(stack);
  const ProviderConfig* p = provider_of(desired, spec.provider);
  if (!p) return Err("stack " + stack + ": unknown provider " + spec.provider);
  if (p->type == "postgres") return make_postgres_stack_driver(*p, group, stack);
  if (p->type == "command") return make_command_stack_driver(*p, group, stack);
  if (p->type == "cloud66") {
    auto c66 = make_cloud66_stack_driver(*p, group, stack);
    if (spec.get("database_dsn").empty()) return c66;
    ProviderConfig pg{p->name + ".database", "postgres", {}, {}, p->mark};
    GroupSpec view = database_view(group);
    return std::unique_ptr<StackDriver>(std::make_unique<Cloud66WithDatabase>(
        std::move(c66), make_postgres_stack_driver(pg, view, stack)));
  }
  return Err("stack " + stack + ": provider " + p->name + " of type " + p->type +
             " cannot serve a stack");
}

Result<std::unique_ptr<TrafficDriver>> RealDriverFactory::traffic_driver(
    const DesiredState& desired, const GroupSpec& group, const TrafficSpec& traffic) {
  const ProviderConfig* p = provider_of(desired, traffic.provider);
  if (!p) return Err("traffic: unknown provider " + traffic.provider);
  if (p->type == "powerdns") {
    auto zones =
        shared_reader(mu_, zones_, *p, [&] { return std::make_shared<PowerDnsZones>(*p); });
    return make_powerdns_traffic_driver(*p, group, traffic, std::move(zones));
  }
  if (p->type == "cloud66") {
    auto lists = shared_reader(mu_, lists_, *p, [&] { return make_cloud66_lists(*p); });
    return make_cloud66_traffic_driver(*p, group, traffic, std::move(lists));
  }
  if (p->type == "command") return make_command_traffic_driver(*p, group, traffic);
  if (p->type == "pgbouncer") return make_pgbouncer_traffic_driver(*p, group, traffic);
  return Err("traffic: provider " + p->name + " of type " + p->type + " cannot serve traffic");
}

std::unique_ptr<HealthProbe> RealDriverFactory::health_probe(const StackSpec& stack) {
  return stack.health ? make_http_health_probe(*stack.health) : nullptr;
}

}  // namespace stackflip
