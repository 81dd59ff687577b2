// render.h — a Plan for people: terminal text (`plan`, `apply` preview) and a
// Markdown pull-request comment (`plan -o markdown`).
//
// Both are pure functions of the Plan and the options: the same input gives
// the same bytes. Every free-text field (reason, guard, why_blocked, skipped
// reason) goes through redact_secrets() first, as a second line of defence:
// the planner never puts secrets into reasons, but a driver error quoted in a
// reason might.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/model.h"
#include "core/plan.h"
#include "util/redact.h"

namespace stackflip {

struct RenderOptions {
  bool color = false;             // ANSI colours; when false no escape byte is written
  size_t markdown_limit = 65000;  // hard upper bound on render_markdown's size in bytes
};

// Like `terraform plan`: a header, each group with numbered steps (reason,
// guard, BLOCKED and why), skipped steps, and a one-line summary ("Plan: N
// actions in G groups, B blocked." or "No changes. …").
std::string render_text(const Plan& plan, const RenderOptions& o = {});

// A PR comment: title with the summary, a table (group, actions, blocked,
// first step), then one collapsible <details> per group. User text is escaped
// for Markdown/HTML. Never longer than o.markdown_limit bytes (and so never
// more characters): what does not fit is cut and the last line says how many
// groups were left out and points to the full plan in the job log.
std::string render_markdown(const Plan& plan, const RenderOptions& o = {});

// Text for an HTML element or a quoted attribute: secrets redacted, control
// characters shown as spaces, and &, <, >, " as entities.
std::string escape_html(std::string_view raw);

// redact() of redact.h (kept under this name for the renderers' callers).
std::string redact_secrets(std::string_view text);

// `observe -o text`'s traffic lines for one group: "  traffic: fra
// (192.0.2.10), ttl 60", or with several addresses one line each; mixed
// values are listed with the stack each belongs to.
std::string describe_traffic(const TrafficObs& t);

}  // namespace stackflip
