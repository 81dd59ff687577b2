// status_page.h — the HTML status page `stackflip run` serves at `/` and
// `/group?name=NAME` (issue 16): what an operator leaves open on a screen.
//
// Pure functions of what the loop knows (the last PassReport, the etcd
// status) and what the state store holds (the journal and the passes), so
// tests render pages without a server. The page is one self-contained
// document: its CSS and its one script are inline (the script is allowed by
// its hash in the Content-Security-Policy, page_csp()), it loads nothing
// else, and it reads in full without JavaScript. With JavaScript it reloads
// its `<main>` every 2 s (polling the page itself, so what the script shows
// is exactly what the server renders); without, a <noscript> refresh
// reloads it every 10 s.
//
// Per group the overview shows the desired and the serving stack, traffic,
// the state (converged, pending, blocked, failed, in progress, standby) in
// words and by a symbol as well as by colour, and the etcd leader; the group
// page adds each stack's role, maintenance, replication (upstream,
// streaming, lag in bytes), what is left to do and why, the commit in force
// with its author and message, the timeline of the last switch
// (switch_timeline_svg), and the group's journal, paged.
//
// Every text that came from a config, a provider, Git or the journal is
// escaped (escape_html, which also redacts secrets) and cut to a bound, so
// a hostile name or error can neither inject markup nor grow the page
// without limit. Long lists are paged: 100 groups, 20 passes, 50 journal
// rows a page.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "gitops/reconcile.h"
#include "gitops/state_store.h"

namespace stackflip {

struct StatusPageInput {
  const PassReport* last = nullptr;   // null before the first pass ended
  std::string repo;                   // without credentials
  std::string coordination_json;      // EtcdCoordination::status_json(); "" without etcd
  const StateStore* store = nullptr;  // journal and passes; null = not shown
  std::string pass_started;           // RFC 3339 when a pass runs now; "" otherwise
  std::string now;                    // RFC 3339, shown as "rendered at"
};

// GET /. `query`: page=N (groups, from 1), runs=N (passes).
std::string render_overview_page(const StatusPageInput& in, const std::string& query);

// GET /group. `query`: name=NAME, before=ID (the journal's next page).
// Nullopt when no group of that name is known (the caller answers 404).
std::optional<std::string> render_group_page(const StatusPageInput& in, const std::string& query);

// The timeline of one switch as an SVG element: a bar per step (start,
// duration, result by fill, symbol and words), when writes stopped (the old
// primary fenced) and were accepted again (the new primary out of
// maintenance), and the data loss accepted by a forced promotion, if any.
// `rows`: the journal rows of the switch, oldest first
// (StateStore::last_switch); steps more than 10 minutes apart from the
// switch's sequence are left out. A step still running after the last
// switch anchors the sequence instead (a switch under way). "" when the
// rows hold neither.
std::string switch_timeline_svg(const std::vector<JournalEntry>& rows);

// The Content-Security-Policy of the pages: nothing from elsewhere, inline
// styles, and only the page's own script (by its hash).
const std::string& page_csp();

// The value of `name` in a query string ("a=1&b=x%20y"), percent- and
// plus-decoded; "" when absent.
std::string query_param(const std::string& query, const std::string& name);

// The login form shown instead of a page when a bearer token is required
// and the browser has no session cookie (server.cc). `failed`: a token was
// sent and was wrong.
std::string render_login_page(bool failed);

}  // namespace stackflip
