// command_driver.h — the `command` provider: each operation runs an
// operator's argv with a JSON request on stdin, so any infrastructure can be
// plugged in without writing C++.
//
// Config: ProviderConfig::lists maps an operation to its argv — observe,
// maintenance_on, maintenance_off, replication_stop, replication_start,
// promote (stack operations); observe_traffic, traffic_switch (traffic).
// Setting `timeout_ms` (default 30000) bounds every run.
//
// Request on stdin (one JSON object):
//   {"operation": "promote", "group": "shop", "stack": "standby",
//    "settings": {...the stack's settings...}, "address": "198.51.100.7",
//    "source": "primary"    (replication_start: the stack to stream from, with
//                            "source_settings" and "source_address"),
//    "target": "standby"    (traffic_switch: the stack to point traffic at)}
// Traffic operations carry no "stack"; their "settings" are the group's
// traffic settings, plus "addresses" ({stack: address}) and "ttl", so a
// script can map what it finds back to a stack name.
//
// Answer: exit 0 is success; any other exit status is a failure whose message
// carries the trimmed stderr. Exit status 100 (kCommandRefusedExit) says the
// operation was refused for good (e.g. "no replica to promote"): apply does
// not try it again (Error::permanent, issue 11); any other failure is
// retried. `observe` prints one stack object of the observed schema
// ({"reachable": true, "maintenance": false, "database": {...}});
// `observe_traffic` prints {"target": "stack"|null, "ttl": N, "content":
// "...", "targets": ["stack", ...]}, where the optional `targets` lists every
// stack the address reaches now (two or more: mixed traffic, which the
// traffic step replaces). A group with several traffic addresses runs the
// traffic commands once per address, each with its own settings. A run past
// `timeout_ms` has its whole process group
// killed and returns Error{timeout=true}. An answer is at most
// kMaxCommandAnswerBytes and kMaxJsonDepth (json_input.h) deep; a longer one
// is an error (never a prefix parsed), a deeper one a parse error.
//
// Thread safety: as provider.h; a driver holds only configuration.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/model.h"
#include "core/provider.h"

namespace stackflip {

constexpr size_t kMaxCommandAnswerBytes = size_t{1} << 20;  // 1 MiB
constexpr int kCommandRefusedExit = 100;                    // "refused for good": not retried

std::unique_ptr<StackDriver> make_command_stack_driver(const ProviderConfig& provider,
                                                       const GroupSpec& group,
                                                       const std::string& stack);
std::unique_ptr<TrafficDriver> make_command_traffic_driver(const ProviderConfig& provider,
                                                           const GroupSpec& group,
                                                           const TrafficSpec& traffic);

}  // namespace stackflip
