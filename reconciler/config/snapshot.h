// snapshot.h — ObservedState <-> the snapshot JSON of DESIGN.md.
//
// Reading is JSON (RapidJSON, validated against schema/observed.schema.json);
// a snapshot with a problem is read again through the same path as configs
// (yaml_doc.h: yaml-cpp parse with marks, schema_check.h), so it is reported
// as file:line:col like a bad config. Writing is
// canonical (sorted keys, no whitespace variance), so its sha256 is the
// observed digest that plans record.
#pragma once

#include <rapidjson/document.h>

#include <string>
#include <vector>

#include "core/model.h"
#include "core/plan.h"
#include "util/result.h"

namespace stackflip {

// Parses one stack object of the observed schema (definitions/stack). Errors
// name the JSON pointer under `where`.
Result<StackObs> stack_obs_from_json(const rapidjson::Value& v, const std::string& where = "");
void stack_obs_to_json(const StackObs& s, rapidjson::Value& out,
                       rapidjson::Document::AllocatorType& alloc);

// Converts a document already checked against the observed schema.
Result<ObservedState> snapshot_from_json(const rapidjson::Value& doc);

// Snapshots larger than this are refused (a 10,000-group snapshot is about
// 3 MiB); deeper than kMaxJsonDepth (json_input.h) too.
constexpr size_t kMaxSnapshotBytes = size_t{64} << 20;

// Reads a snapshot file. Errors are "file:line:col: error: ..." lines, all of them.
Result<ObservedState> read_snapshot(const std::string& path);
Result<ObservedState> parse_snapshot(const std::string& name, const std::string& text);

// Canonical JSON text (one line) / indented JSON text for humans.
std::string snapshot_to_json(const ObservedState& obs, bool pretty = false);
// sha256 of the canonical form without observed_at and LSNs: positions move
// with every write, so a saved plan is checked against the facts it decided
// on (reachability, roles, upstreams, maintenance, traffic) and apply's
// guards re-check the positions.
std::string observed_digest(const ObservedState& obs);

// make_plan (core/planner.h) with Plan::observed_digest stamped, as `plan
// --out` saves it and `apply --plan` checks it. The stamping lives here, not
// in the planner, so the pure planner needs no JSON, schema or digest code.
Plan make_plan_with_digest(const DesiredState& desired, const ObservedState& observed);

}  // namespace stackflip
