// render.h — a Plan for people: terminal text (`plan`, `apply` preview), a
// Markdown pull-request comment (`plan -o markdown`) and a self-contained
// HTML page for CI artifacts (`plan -o html`).
//
// All are pure functions of their arguments: the same input gives the same
// bytes. Every free-text field (reason, guard, why_blocked, skipped
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

// The same comment with, when both states are given, a "before → after"
// table per group (rows: primary, traffic target, and per stack its
// replication and maintenance; before from `observed`, after from
// `desired`; what was not observed says "unknown", an unreachable stack
// "unreachable" with its last known value labelled as such), then the steps,
// then a ```mermaid flowchart of the steps (one node per step in order,
// blocked steps labelled BLOCKED and styled apart; labels carry only letters,
// digits and a few safe punctuation marks, everything else as Mermaid's
// #NNN; codes, so no name or reason can break the diagram). A blocked plan
// says first what would unblock it ("To unblock: ..."). Either state may be
// null: then there is no table. The size bound is the same.
std::string render_markdown(const Plan& plan, const DesiredState* desired,
                            const ObservedState* observed, const RenderOptions& o = {});

// The same content as render_markdown as one HTML5 document: inline CSS
// only, no external reference, no script; the steps drawn as an HTML/CSS
// flow; states told by text and border shape, not colour alone; dark mode
// through prefers-color-scheme. Every free text escaped with escape_html()
// and cut at 2,000 bytes. No overall size bound: it is the full plan, for an
// artifact, not a comment.
std::string render_html(const Plan& plan, const DesiredState* desired,
                        const ObservedState* observed, const RenderOptions& o = {});

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
