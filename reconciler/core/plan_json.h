// plan_json.h — the JSON plan file of DESIGN.md (`plan -o json`, `--out PLAN`,
// `apply PLAN`).
//
// Format (keys always in this order, so the same Plan gives the same bytes):
//   {"apiVersion":"stackflip/v1","desired_digest":"…","observed_digest":"…",
//    "summary":{"groups":G,"actions":N,"blocked":B},
//    "actions":[{"group","kind","stack","source"?,"reason","guard",
//                "status":"pending"|"blocked","why_blocked"?}…],
//    "skipped":[{"group","kind","stack","reason"}…]}
// `source` is written only when non-empty; `why_blocked` only when the action
// is blocked (a non-blocked action's why_blocked is not part of the file).
// `summary.groups` counts the distinct groups named by actions and skipped
// steps. Strings are written as they are (no redaction): the file must
// round-trip exactly, and reasons hold no secrets by construction.
//
// Pure functions; safe to call from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "core/plan.h"
#include "util/result.h"

namespace stackflip {

std::string plan_to_json(const Plan& plan, bool pretty = true);

// Plan files larger than this are refused (10,000 groups switching need
// about 25 MiB); deeper than kMaxJsonDepth (json_input.h) too.
constexpr size_t kMaxPlanBytes = size_t{64} << 20;

// Reads what plan_to_json writes, strictly: unknown members, unknown kinds or
// statuses, missing members, wrong types and a summary that disagrees with the
// lists are errors. Messages start with `file` and say where: the byte offset
// for malformed JSON, a JSON pointer (e.g. /actions/3/kind) otherwise.
Result<Plan> plan_from_json(const std::string& text, const std::string& file);

}  // namespace stackflip
