// model.h — the plain data types that flow between stackflip's stages.
//
//   YAML ──load──▶ DesiredState;  providers/snapshot ──observe──▶ ObservedState;
//   (DesiredState, ObservedState) ──plan──▶ Plan (see plan.h).
//
// These are values: no I/O, no pointers into other objects, cheap to copy for
// the planner's simulation. Maps are std::map so iteration order (and thus
// every output) is deterministic. Secret references (`${env:NAME}`,
// `${file:PATH}`) are kept unresolved here; drivers resolve them (secret.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stackflip {

// Where a value came from in a YAML file; line and column are 1-based.
struct Mark {
  std::string file;
  int line = 0;
  int column = 0;
};

// ---------------------------------------------------------------- desired

// A named connection from `providers:`. Scalar settings are kept as written
// (numbers and booleans as their YAML text); `lists` holds argument lists
// (e.g. the command driver's operation → argv).
struct ProviderConfig {
  std::string name;
  std::string type;  // postgres | powerdns | cloud66 | command
  std::map<std::string, std::string> settings;
  std::map<std::string, std::vector<std::string>> lists;
  Mark mark;

  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = settings.find(key);
    return it == settings.end() ? fallback : it->second;
  }
};

// An application health check (issue 14): `health: {url, timeout}`. The
// active stack fails it on anything but a 2xx answer to a GET within
// `timeout_ms` (a redirect is not followed). Its origin must be granted by
// the host (host_policy.h `health_urls:`): the config chooses where the
// reconciler sends requests only within what the operator allowed.
struct HealthSpec {
  std::string url;
  int64_t timeout_ms = 2000;
};

struct StackSpec {
  std::string name;
  std::string provider;  // serves this stack's maintenance and database
  // Provider-specific keys as written: dsn, password, stack_uid, ...
  std::map<std::string, std::string> settings;
  std::map<std::string, std::vector<std::string>> lists;  // e.g. control_command argv
  // Traffic targets while this stack is active, as written (`address:` is a
  // string or a list; a dual-stack stack has an IPv4 and an IPv6 address).
  // `address` is the first of them, or "".
  std::vector<std::string> addresses;
  std::string address;
  std::optional<bool> maintenance;  // explicit desired flag; see GroupSpec
  // The site (data centre, cloud region) the stack runs in: `site:`, or the
  // stack's name. With etcd, a group is led preferably from another site
  // than its active stack's (issue 13).
  std::string site;
  std::optional<HealthSpec> health;
  Mark mark;

  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = settings.find(key);
    return it == settings.end() ? fallback : it->second;
  }
};

struct ReplicationSpec {
  bool enabled = true;          // `replication: off` sets false
  std::string from;             // always filled by the loader: defaults to `active`
  std::vector<std::string> to;  // always filled: defaults to every other stack, sorted
  uint64_t max_lag_bytes = 0;   // promote guard for a planned switch
};

// One traffic address: one DNS rrset (name and type), one Cloud 66 failover
// group, one command target. A `record_type: [A, AAAA]` entry is loaded as
// two of these, one per type.
struct TrafficSpec {
  std::string provider;
  // zone, record, record_type (powerdns); failover_group (cloud66); ...
  std::map<std::string, std::string> settings;
  int ttl = 60;
  // TTL pre-lowering (issue 15, powerdns only): before a planned switch the
  // record's TTL is lowered to this, and the switch waits until resolvers
  // have forgotten answers with the previous TTL. Unset: no pre-lowering.
  std::optional<int> switch_ttl;
  std::string name;  // how messages call it: "shop.example.com. A", "failover group fg-1"
  Mark mark;

  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = settings.find(key);
    return it == settings.end() ? fallback : it->second;
  }
};

// `auto_failover:` (issue 14): when the group's leader may commit a failover
// by itself. Durations in milliseconds.
struct AutoFailoverSpec {
  int64_t after_ms = 0;                  // the active stack failing continuously this long
  int64_t cooldown_ms = 30 * 60 * 1000;  // at most one automatic failover in this time
  uint64_t max_data_loss_bytes = 0;      // last known lag allowed for the promotion
  int witnesses = 0;                     // 0 = a majority of the live instances (etcd)
  bool self_fence = true;                // fence the active stack when cut off from etcd
  Mark mark;
};

struct GroupSpec {
  std::string name;
  std::string active;                       // the line a failover commit flips
  std::map<std::string, StackSpec> stacks;  // by name
  ReplicationSpec replication;
  bool allow_data_loss = false;
  // Every address the traffic step switches, in the order written (at least
  // one). All of them point at the active stack when the group converged.
  std::vector<TrafficSpec> traffic;
  std::optional<AutoFailoverSpec> auto_failover;  // nullopt: a person decides
  Mark mark;

  // Desired maintenance flag: explicit value, else off on the active stack
  // and on elsewhere.
  bool desired_maintenance(const std::string& stack) const {
    const StackSpec& s = stacks.at(stack);
    if (s.maintenance) return *s.maintenance;
    return stack != active;
  }
  // True when `stack` should be a replica streaming from `replication.from`.
  bool wants_replica(const std::string& stack) const {
    if (!replication.enabled) return false;
    for (const auto& t : replication.to)
      if (t == stack) return true;
    return false;
  }
};

struct DesiredState {
  std::string source;  // file path as given
  std::string digest;  // sha256 of the file's bytes, hex
  std::map<std::string, ProviderConfig> providers;
  std::map<std::string, GroupSpec> groups;
};

// ---------------------------------------------------------------- observed

enum class Role { primary, replica, unknown };
const char* to_string(Role r);
std::optional<Role> parse_role(const std::string& s);

// PostgreSQL-style LSN "X/Y" (hex) <-> 64-bit position.
std::string format_lsn(uint64_t lsn);
std::optional<uint64_t> parse_lsn(const std::string& s);

struct DatabaseObs {
  Role role = Role::unknown;
  std::optional<std::string> upstream;  // stack replicated from; null = replication stopped
  std::optional<uint64_t> lsn;          // write position (primary) / replayed (replica)
  std::optional<int64_t> timeline;
  // Replica only: its WAL receiver is streaming now. A replica configured
  // for an upstream that is not streaming (e.g. it diverged from the
  // upstream's timeline) has not converged.
  std::optional<bool> streaming;
  // Which running server answered (issue 11), so that two stacks whose DSNs
  // differ but reach one server are found. `system_id` is
  // pg_control_system()'s system identifier: a primary and its streaming
  // replicas share it, so it alone does not tell servers apart. `started_at`
  // is the postmaster's start time (epoch seconds, microseconds; separate
  // servers are started separately). Same server = both equal.
  std::optional<std::string> system_id;
  std::optional<std::string> started_at;
  // Issue 17, observed only on stacks with `bootstrap: basebackup` that do
  // not stream. `databases`: what a bootstrap would remove, the largest
  // first, at most kMaxDatabasesListed (the rest summed up in one entry
  // named "(N more)"); template databases are not listed. Empty: not
  // observed. `cannot_follow`: why this server cannot follow the group's
  // active stack although it is a copy of the same cluster (it wrote WAL
  // past the point where the active stack's timeline forked, and pg_rewind
  // is off): only a new base backup makes it a replica.
  struct DatabaseSize {
    std::string name;
    uint64_t bytes = 0;
    bool operator==(const DatabaseSize&) const = default;
  };
  static constexpr size_t kMaxDatabasesListed = 16;
  std::vector<DatabaseSize> databases{};
  std::optional<std::string> cannot_follow{};
};

struct StackObs {
  bool reachable = false;
  std::optional<bool> maintenance;      // as last known when unreachable
  std::optional<DatabaseObs> database;  // as last known when unreachable
  std::string error;                    // why unreachable (never contains secrets)
  // The provider rejected our credentials or our configuration
  // (Error::config: HTTP 401/403, a PostgreSQL authentication failure):
  // `error` says how. The stack is not "unreachable" but misconfigured; the
  // plan names it so and the run exits 1, not 3 (issue 12).
  bool config_error = false;
  // The active stack's health check (HealthSpec) failed: how ("GET URL:
  // HTTP 503"). Empty when it passed, or the stack has none or is not active.
  std::string health_error{};
  // The health check has not passed once since this config was adopted (a
  // typo in its URL looks like this): the stack counts as failing for the
  // notice, but not for an automatic failover (auto_failover.cc).
  bool health_never_passed = false;
  // The provider's API cannot make this stack a replica of another: how a
  // person does it (Cloud 66 has no call that enables replication; its
  // resync_slave_db only re-syncs a replica already configured). "" when
  // start_replication can attach it from any state. The planner then plans
  // no replication.start into a stack that is not a replica, and names this
  // step instead (issue 17).
  std::string attach_by_hand{};
  // Unreachable because the provider did not answer in time (the call ran
  // out of time: Error::timeout), not because it refused: a silent host,
  // whose packets are dropped, costs the whole timeout of every call.
  // apply re-observes such a stack with a short limit (apply.h). A fact of
  // this one observation: not in snapshots, not remembered.
  bool timed_out = false;
  // Issue 17: an interrupted bootstrap (replication.bootstrap) of this
  // stack: the phase its marker records ("stop", "copy", "start",
  // "finish"), found beside the data directory also while the server is
  // down (its old data may be moved aside). Null: none under way.
  std::optional<std::string> bootstrap_phase{};
};

// The stack is failing, as automatic failover and the outage notice count
// it: unreachable (not misconfigured), or failing its health check.
inline bool stack_failing(const StackObs& s) {
  return (!s.reachable && !s.config_error) || !s.health_error.empty();
}

// One value a traffic address holds, and whose it is.
struct TrafficRecord {
  std::string content;               // an address, a name, a provider's stack id
  std::optional<std::string> stack;  // the stack it belongs to; null = no stack of the group
  bool disabled = false;             // present but not served (PowerDNS `disabled`)
  bool operator==(const TrafficRecord&) const = default;
};

// What traffic addresses hold. A driver observes one address and leaves
// `parts` empty; a group's observation (GroupObs::traffic) is the
// combination of its addresses, each in `parts` in the order of
// GroupSpec::traffic (see combine_traffic).
struct TrafficObs {
  bool reachable = true;
  // The stack whose addresses it holds exactly (every enabled record that
  // stack's, none missing). Null when it holds nothing, values of no stack,
  // or values of several stacks ("mixed"); then `records` says what.
  std::optional<std::string> target;
  std::optional<int> ttl;
  std::string content;  // the enabled values, comma-separated, for messages
  std::string error;
  bool config_error = false;  // as StackObs::config_error; on the combination: any part's
  // Why pointing this address at a stack cannot succeed, seen by observing
  // it (the name holds a CNAME, so an A record cannot be added, ...): the
  // plan blocks the switch before its first step instead of failing in it.
  std::string blocker;
  // The address does not exist at the provider (a PowerDNS name without an
  // rrset of its type): "record"; and its zone neither, which the driver
  // may create (`create_zone: true`): "zone". "" when it exists. Absent is
  // reachable and holds nothing: the plan creates it pointing at the active
  // stack; it is never taken for unreachable, nor as the record of a
  // switch (issue 17).
  std::string absent;
  std::string name;  // which address (TrafficSpec::name); "" on the combination
  // A connection pooler that can hold its clients' queries (PgBouncer's
  // PAUSE, issue 15): whether it holds them now. Null for addresses that
  // cannot pause (DNS). On the combination: true when any part is paused.
  std::optional<bool> paused;
  std::vector<TrafficRecord> records;
  std::vector<TrafficObs> parts;
};

// Combines one group's per-address observations: reachable when all are,
// the target when all name the same one, the TTL and records of all.
TrafficObs combine_traffic(std::vector<TrafficObs> parts);

// The stacks any enabled record of `t` (or of its parts) points at, sorted.
std::vector<std::string> traffic_stacks(const TrafficObs& t);

struct GroupObs {
  std::map<std::string, StackObs> stacks;
  TrafficObs traffic;
};

struct ObservedState {
  std::string observed_at;  // RFC 3339 UTC
  std::map<std::string, GroupObs> groups;
};

// The configuration errors observed in a group (StackObs/TrafficObs::
// config_error), one message: "stack london: Cloud 66 rejected the token
// ...; traffic: ...", or "" when there are none.
std::string config_error_of(const GroupObs& g);

}  // namespace stackflip
