// cloud66_driver.h — the `cloud66` provider: stacks and failover groups
// through the Cloud 66 API v3 (sys/http_client.h, bearer token).
//
// Provider settings: `token` (a ${env:..}/${file:..} reference, resolved at
// each call, never logged or put into messages: errors name the reference),
// `base_url` (default https://app.cloud66.com/api/3), `address_api`
// (failover_groups | elastic_addresses, default failover_groups),
// `timeout_ms` (per request, and the budget for retrying one; default 10000),
// `action_timeout_ms` (how long an asynchronous stack action or a failover
// group toggle may take; default 600000), `insecure` ("true" disables TLS
// verification, with a warning).
// Stack settings: `stack_uid` (required), `server` (the database server
// sent as `server_uid` with promote_slave_db / resync_slave_db),
// `database_dsn` (optional; not used here: Cloud 66 exposes no replication
// role or lag, so observe() leaves `database` absent and the lead's observer
// combines a postgres observation from that DSN for the lag guard).
// Traffic settings: `failover_group` (the group's / elastic address's uid).
//
// Mapping: maintenance = the stack's `maintenance_mode`; set_maintenance =
// the `maintenance_mode` stack action; promote = `promote_slave_db`;
// start_replication = `resync_slave_db` (Cloud 66 resyncs from the stack's
// configured master; the source is not sent). Cloud 66's API cannot enable
// replication: observe() says how it is done in the dashboard
// (StackObs::attach_by_hand), so the plan names that step for a stack that
// is no replica, and a failed resync says it too (issue 17);
// stop_replication is a no-op
// (promote_slave_db detaches the replica itself). Actions are asynchronous:
// the driver polls the action with short, growing intervals until
// finished_at is set. Traffic target = the stack whose stack_uid is the
// group's primary (current_stack 1/"primary") or secondary (2/"secondary").
//
// Hostile answers and configs (issue 10): `stack_uid` and `failover_group`
// are percent-encoded into URL paths; an answer over 8 MiB stops the
// transfer, one deeper than 64 levels is refused unparsed (json_input.h); a
// token with a control character is never sent.
//
// HTTP 503 (throttling) is retried honouring Retry-After and other 5xx a few
// times with backoff, within `timeout_ms`. HTTP 401 and 403 (the token is
// rejected) are ConfigError (result.h): the observation says so
// (StackObs/TrafficObs::config_error) and the run exits 1, not 3 (issue 12).
// All waits (retries, action polls, a busy failover group) go through
// `clock` (clock.h), so tests can run them without waiting. Thread safety:
// as provider.h; a driver keeps one HttpClient (connection reuse) and must
// not be shared.
#pragma once

#include <memory>
#include <string>

#include "core/model.h"
#include "core/provider.h"
#include "util/clock.h"

namespace stackflip {

std::unique_ptr<StackDriver> make_cloud66_stack_driver(const ProviderConfig& provider,
                                                       const GroupSpec& group,
                                                       const std::string& stack,
                                                       Clock& clock = real_clock());
// The failover group (elastic address) list of one provider, shared by its
// traffic drivers: observe_in(pass) reads it once per pass (every page) for
// all of them; observe() and switch_to() read fresh, and a switch drops the
// shared copy. Thread-safe.
class Cloud66Lists;
std::shared_ptr<Cloud66Lists> make_cloud66_lists(const ProviderConfig& provider,
                                                 Clock& clock = real_clock());

// `lists` null makes one for this driver alone.
std::unique_ptr<TrafficDriver> make_cloud66_traffic_driver(
    const ProviderConfig& provider, const GroupSpec& group, const TrafficSpec& traffic,
    std::shared_ptr<Cloud66Lists> lists = nullptr, Clock& clock = real_clock());

}  // namespace stackflip
