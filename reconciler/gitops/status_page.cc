#include "gitops/status_page.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>

#include "core/render.h"  // escape_html
#include "util/digest.h"
#include "util/strings.h"

namespace stackflip {

namespace {

constexpr size_t kGroupsPerPage = 100;
constexpr size_t kRunsPerPage = 20;
constexpr size_t kMaxRunPages = 500;
constexpr size_t kJournalPerPage = 50;
constexpr size_t kTextLimit = 1000;  // bytes of one free text shown

// Escaped, redacted, one line, at most kTextLimit bytes of the original.
std::string e(const std::string& s, size_t limit = kTextLimit) {
  if (s.size() <= limit) return escape_html(s);
  size_t n = limit;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return escape_html(s.substr(0, n)) + "…";
}

std::string group_href(const std::string& name) { return "/group?name=" + url_encode(name); }

bool all_digits(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool hex_digit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// "2026-12-01T17:02:10.123Z" → epoch ms; nullopt when not that shape.
std::optional<int64_t> parse_time_ms(const std::string& t) {
  std::tm tm{};
  int ms = 0;
  if (t.size() < 20) return std::nullopt;
  if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return std::nullopt;
  if (t[19] == '.') {
    int digits = 0;
    for (size_t i = 20; i < t.size() && std::isdigit(static_cast<unsigned char>(t[i])); ++i)
      if (digits < 3) ms = ms * 10 + (t[i] - '0'), ++digits;
    while (digits++ < 3) ms *= 10;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t secs = timegm(&tm);
  if (secs == static_cast<time_t>(-1)) return std::nullopt;
  return static_cast<int64_t>(secs) * 1000 + ms;
}

std::string seconds_text(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

std::string size_t_text(uint64_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

// ------------------------------------------------------------------ shell

const char* kStyle = R"CSS(
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--run:#0969da;--card:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--run:#4493f8;--card:#151b23}}
body{background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,sans-serif;margin:0 auto;
max-width:1100px;padding:0 16px 32px}
header{border-bottom:1px solid var(--line);padding:12px 0;display:flex;flex-wrap:wrap;
gap:4px 24px;align-items:baseline}
header h1{font-size:18px;margin:0}
a{color:var(--run)}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;margin:8px 0 16px}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{font-weight:600}
code{font-size:13px}
.state{font-weight:600;white-space:nowrap}
.state-ok{color:var(--ok)}.state-pending,.state-interrupted{color:var(--warn)}
.state-blocked,.state-failed{color:var(--bad)}.state-running,.state-standby{color:var(--run)}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 12px;
margin:8px 0}
.pager a{margin-right:12px}
#live[data-state=error]{color:var(--bad)}
svg text{fill:var(--fg);font:12px system-ui,sans-serif}
svg .axis{stroke:var(--line)}
svg .bar-ok{fill:var(--ok)}svg .bar-failed{fill:url(#hatch);stroke:var(--bad);stroke-width:2}
svg .bar-running{fill:none;stroke:var(--run);stroke-width:2;stroke-dasharray:4 3}
svg line.mark-stop{stroke:var(--bad);stroke-width:2;stroke-dasharray:6 3}
svg line.mark-resume{stroke:var(--ok);stroke-width:2}
svg .mark-stop text{fill:var(--bad)}svg .mark-resume text{fill:var(--ok)}
svg .loss{fill:var(--bad);opacity:.18}
svg #hatch path{stroke:var(--bad);stroke-width:2}
)CSS";

// Polls the page itself every 2 s and swaps its <main>: what the live page
// shows is what the server renders, with no second format to keep in step.
const char* kScript =
    "(function(){var live=document.getElementById('live');"
    "function tick(){fetch(location.href,{cache:'no-store',credentials:'same-origin'})"
    ".then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.text();})"
    ".then(function(t){var d=new DOMParser().parseFromString(t,'text/html');"
    "var m=d.getElementById('main');if(m){document.getElementById('main').replaceWith(m);"
    "document.title=d.title;}live.textContent='live: updated '+new Date().toLocaleTimeString();"
    "live.dataset.state='ok';})"
    ".catch(function(e){live.textContent='live: update failed ('+e.message+'), retrying';"
    "live.dataset.state='error';})"
    ".finally(function(){setTimeout(tick,2000);});}"
    "live.textContent='live: refreshing every 2 s';live.dataset.state='ok';"
    "setTimeout(tick,2000);})();";

std::string document(const std::string& title, const std::string& header, const std::string& main,
                 bool live = true) {
  std::string out;
  out.reserve(main.size() + 4096);
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  out += "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">";
  if (live) out += "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>";
  out += "<title>" + title + "</title><style>" + std::string(kStyle) + "</style></head>\n<body>";
  out += header;
  out += "<main id=\"main\">" + main + "</main>\n";
  if (live) out += "<script>" + std::string(kScript) + "</script>";
  out += "</body></html>\n";
  return out;
}

std::string header_html(const StatusPageInput& in) {
  std::string h = "<header><h1><a href=\"/\">stackflip</a></h1>";
  h += "<span>repository <code>" + e(in.repo) + "</code></span>";
  h += "<span id=\"live\" data-state=\"static\">static page: reload for news (refreshes every 10 "
       "s)</span>";
  h += "</header>\n";
  return h;
}

// "rendered at …; a pass is running since …" and the commit in force.
std::string pass_card(const StatusPageInput& in) {
  std::string s = "<div class=\"card\" id=\"pass\">";
  if (!in.pass_started.empty())
    s += "<p id=\"pass-running\"><span class=\"state state-running\">⟳ pass running</span> "
         "since " +
         e(in.pass_started) + "</p>";
  const PassReport* r = in.last;
  if (!r) {
    s += "<p id=\"last-pass\">No pass has finished yet.</p>";
  } else {
    s += "<p id=\"last-pass\">Last pass: <b data-result=\"" + e(r->run.result) + "\">" +
         e(r->run.result) + "</b> at " + e(r->run.started_at) + " in " +
         seconds_text(r->run.duration_ms) + ", " + std::to_string(r->run.actions) + " actions";
    if (!r->run.error.empty()) s += "<br><span class=\"state-failed\">" + e(r->run.error) + "</span>";
    s += "</p>";
    const CommitInfo& c = r->commit_info;
    s += "<p id=\"commit\">Commit in force: ";
    if (r->commit_in_force.empty()) {
      s += "none (no valid commit seen yet)";
    } else {
      s += "<code>" + e(r->commit_in_force.substr(0, 12)) + "</code>";
      if (!c.summary.empty()) s += " “<span class=\"commit-message\">" + e(c.summary) + "</span>”";
      if (!c.author.empty()) s += " by <span class=\"commit-author\">" + e(c.author) + "</span>";
      if (!c.time.empty()) s += " at " + e(c.time);
    }
    s += "</p>";
  }
  s += "<p class=\"muted\">Rendered at " + e(in.now) + ".</p></div>\n";
  return s;
}

// ------------------------------------------------------------------ state

struct Leaders {
  std::map<std::string, std::string> of;  // group → instance
  std::string instance;
  bool etcd = false;
};

Leaders parse_leaders(const std::string& json) {
  Leaders l;
  if (json.empty()) return l;
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return l;
  l.etcd = true;
  if (doc.HasMember("instance") && doc["instance"].IsString()) l.instance = doc["instance"].GetString();
  if (!doc.HasMember("groups") || !doc["groups"].IsObject()) return l;
  for (const auto& m : doc["groups"].GetObject()) {
    if (!m.value.IsObject() || !m.value.HasMember("leader")) continue;
    const auto& leader = m.value["leader"];
    l.of[m.name.GetString()] = leader.IsString() ? leader.GetString() : "";
  }
  return l;
}

struct StateBadge {
  const char* css;  // state-ok, ...
  std::string text;
};

// The group's state in one badge: symbol and word, so colour is never the
// only sign. `running`: an action of the group is in progress now.
StateBadge badge(const GroupStatus& g, const std::string& running) {
  if (!running.empty()) return {"state-running", "⟳ in progress: " + running};
  switch (g.outcome) {
    case GroupOutcome::failed:
      return {"state-failed", "✕ failed"};
    case GroupOutcome::blocked:
      return {"state-blocked", "▲ blocked"};
    case GroupOutcome::interrupted:
      return {"state-interrupted", "◐ interrupted"};
    case GroupOutcome::standby:
      if (!g.converged) return {"state-standby", "◇ standby (another instance leads)"};
      break;
    default:
      break;
  }
  if (g.converged) return {"state-ok", "✓ converged"};
  for (const auto& a : g.left)
    if (a.blocked) return {"state-blocked", "▲ blocked"};
  return {"state-pending",
          "● pending: " + std::to_string(g.left.size() + g.left_skipped.size()) + " steps left"};
}

const char* badge_key(const char* css) { return css + 6; }  // "state-ok" → "ok"

// The stack serving writes: primary, reachable, out of maintenance.
std::string serving_stack(const GroupObs& g) {
  for (const auto& [name, s] : g.stacks)
    if (s.reachable && s.database && s.database->role == Role::primary && s.maintenance == false)
      return name;
  return "";
}

// Whether each stack but the one serving could take over now, in a few
// words with a symbol: "✓ standby: streaming from primary, lag 0 bytes".
std::string standby_text(const GroupObs& g, const std::string& serving) {
  std::string out;
  for (const auto& [name, s] : g.stacks) {
    if (name == serving) continue;
    std::string line;
    if (!s.reachable) {
      line = "✕ " + name + ": " + (s.config_error ? "configuration error" : "unreachable");
    } else if (!s.database || s.database->role == Role::unknown) {
      line = "? " + name + ": database role not observed";
    } else if (s.database->role == Role::primary) {
      line = "▲ " + name + ": also a primary" +
             (s.maintenance == true ? " (in maintenance)" : " accepting writes");
    } else if (!s.database->upstream) {
      line = "▲ " + name + ": replica, replication stopped";
    } else {
      const std::string& up = *s.database->upstream;
      const bool streaming = s.database->streaming.value_or(false);
      line = (streaming ? "✓ " : "▲ ") + name + ": " + (streaming ? "streaming" : "not streaming") +
             " from " + up;
      auto u = g.stacks.find(up);
      if (u != g.stacks.end() && u->second.database && u->second.database->lsn && s.database->lsn)
        line += ", lag " + size_t_text(*u->second.database->lsn > *s.database->lsn
                                           ? *u->second.database->lsn - *s.database->lsn
                                           : 0);
    }
    out += (out.empty() ? "" : "; ") + line;
  }
  return out.empty() ? "none" : out;
}

std::string traffic_text(const TrafficObs& t) {
  if (!t.absent.empty())
    return t.absent == "zone" ? "does not exist, nor its zone" : "does not exist";
  std::string s;
  if (!t.reachable) s += "unreachable (" + t.error + "); last known ";
  s += t.target ? *t.target : (t.records.empty() ? "nothing" : "mixed: " + t.content);
  if (t.ttl) s += ", TTL " + std::to_string(*t.ttl) + " s";
  if (t.paused && *t.paused) s += ", paused";
  return s;
}

// Actions of each group running now ("traffic.wait fra"): the group's
// newest journal row, open, and started in the pass running now. An open
// row from before it is an action whose process died (the journal shows it
// as "no end recorded"), not one in progress.
std::map<std::string, std::string> running_actions(const StatusPageInput& in) {
  std::map<std::string, std::string> out;
  if (!in.store || in.pass_started.empty()) return out;
  const auto since = parse_time_ms(in.pass_started);
  auto rows = in.store->history(200);
  if (!since || !rows.ok()) return out;
  std::set<std::string> seen;
  for (const auto& r : *rows) {
    if (!seen.insert(r.group).second) continue;  // only the group's newest row counts
    const auto at = parse_time_ms(r.time);
    if (r.open && at && *at >= *since) out[r.group] = r.kind + " " + r.stack;
  }
  return out;
}

std::string pager(const std::string& base, const std::string& param, size_t page, bool more,
                  const std::string& what) {
  std::string s = "<p class=\"pager\">";
  if (page > 1)
    s += "<a rel=\"prev\" href=\"" + base + param + "=" + std::to_string(page - 1) + "\">← newer " +
         what + "</a>";
  if (more)
    s += "<a rel=\"next\" href=\"" + base + param + "=" + std::to_string(page + 1) + "\">older " +
         what + " →</a>";
  return s + "</p>";
}

size_t page_number(const std::string& query, const std::string& name) {
  std::string v = query_param(query, name);
  if (v.empty() || v.size() > 6 || !all_digits(v)) return 1;
  return std::max<size_t>(1, std::stoul(v));
}

std::string runs_table(const StatusPageInput& in, size_t page, const std::string& base) {
  if (!in.store) return "";
  // SQLite skips an OFFSET row by row, on the endpoint's one thread: the
  // pages reach back 10,000 passes (`stackflip status` and the state store
  // hold the rest).
  page = std::min(page, kMaxRunPages);
  auto runs = in.store->runs(kRunsPerPage + 1, (page - 1) * kRunsPerPage);
  std::string s = "<h2 id=\"passes\">Passes</h2>";
  if (!runs.ok()) return s + "<p class=\"state-failed\">" + e(runs.error().message) + "</p>";
  bool more = runs->size() > kRunsPerPage;
  if (more) runs->pop_back();
  s += "<table id=\"runs\"><thead><tr><th>started</th><th>result</th><th>duration</th>"
       "<th>actions</th><th>commit</th><th>error</th></tr></thead><tbody>";
  for (const auto& r : *runs)
    s += "<tr><td>" + e(r.started_at) + "</td><td>" + e(r.result) + "</td><td>" +
         seconds_text(r.duration_ms) + "</td><td>" + std::to_string(r.actions) +
         "</td><td><code>" + e(r.commit.substr(0, 12)) + "</code></td><td>" + e(r.error, 300) +
         "</td></tr>";
  s += "</tbody></table>";
  return s + pager(base, "runs", page, more && page < kMaxRunPages, "passes");
}

}  // namespace

// ------------------------------------------------------------------ query

std::string query_param(const std::string& query, const std::string& name) {
  size_t i = 0;
  while (i <= query.size()) {
    size_t end = query.find('&', i);
    if (end == std::string::npos) end = query.size();
    std::string part = query.substr(i, end - i);
    size_t eq = part.find('=');
    std::string key = part.substr(0, eq);
    if (key == name) {
      std::string raw = eq == std::string::npos ? "" : part.substr(eq + 1), out;
      for (size_t k = 0; k < raw.size(); ++k) {
        if (raw[k] == '+') {
          out += ' ';
        } else if (raw[k] == '%' && k + 2 < raw.size() && hex_digit(raw[k + 1]) &&
                   hex_digit(raw[k + 2])) {
          out += static_cast<char>(std::stoi(raw.substr(k + 1, 2), nullptr, 16));
          k += 2;
        } else {
          out += raw[k];
        }
      }
      return out;
    }
    i = end + 1;
  }
  return "";
}

const std::string& page_csp() {
  static const std::string csp =
      "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; "
      "base-uri 'none'; frame-ancestors 'none'; script-src 'sha256-" +
      sha256_base64(kScript) + "'";
  return csp;
}

// ------------------------------------------------------------------ overview

std::string render_overview_page(const StatusPageInput& in, const std::string& query) {
  const size_t page = page_number(query, "page");
  const size_t runs_page = page_number(query, "runs");
  Leaders leaders = parse_leaders(in.coordination_json);
  auto running = running_actions(in);
  std::string m = pass_card(in);
  size_t total = 0, converged = 0;
  std::string rows;
  if (in.last) {
    total = in.last->groups.size();
    // Groups that need a look first, then the converged ones, by name.
    std::vector<const std::pair<const std::string, GroupStatus>*> order;
    for (const auto& g : in.last->groups) {
      order.push_back(&g);
      converged += g.second.converged;
    }
    std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) {
      bool ra = !a->second.converged || running.count(a->first);
      bool rb = !b->second.converged || running.count(b->first);
      return ra > rb;
    });
    size_t from = (page - 1) * kGroupsPerPage;
    for (size_t i = from; i < order.size() && i < from + kGroupsPerPage; ++i) {
      const auto& [name, g] = *order[i];
      auto run = running.find(name);
      StateBadge b = badge(g, run == running.end() ? "" : run->second);
      std::string serving = "unknown", traffic = "unknown", standbys = "unknown";
      if (in.last->observed) {
        auto o = in.last->observed->groups.find(name);
        if (o != in.last->observed->groups.end()) {
          serving = serving_stack(o->second);
          standbys = standby_text(o->second, serving);
          if (serving.empty()) serving = "none";
          traffic = traffic_text(o->second.traffic);
        }
      }
      rows += "<tr data-group=\"" + e(name) + "\" data-state=\"" + badge_key(b.css) +
              "\"><td><a href=\"" + e(group_href(name)) + "\">" + e(name, 200) +
              "</a></td><td class=\"desired\">" + e(g.active, 200) + "</td><td class=\"serving\">" +
              e(serving, 200) + "</td><td class=\"standbys\">" + e(standbys, 600) +
              "</td><td class=\"traffic\">" + e(traffic, 300) + "</td><td><span class=\"state " +
              b.css + "\">" + e(b.text, 300) + "</span>";
      if (!g.reason.empty()) rows += "<br><span class=\"reason\">" + e(g.reason, 300) + "</span>";
      if (!g.outage.empty()) rows += "<br><span class=\"outage\">" + e(g.outage, 300) + "</span>";
      rows += "</td>";
      if (leaders.etcd) {
        auto l = leaders.of.find(name);
        rows += "<td class=\"leader\">" +
                (l == leaders.of.end() || l->second.empty() ? std::string("none")
                                                            : e(l->second, 200)) +
                "</td>";
      }
      rows += "</tr>";
    }
  }
  m += "<h2 id=\"groups\">Groups</h2><p id=\"summary\">" + std::to_string(converged) + " of " +
       std::to_string(total) + " groups converged.</p>";
  if (total) {
    m += "<table id=\"group-table\"><thead><tr><th>group</th><th>desired active</th>"
         "<th>serving writes</th><th>standbys</th><th>traffic</th><th>state</th>";
    if (leaders.etcd) m += "<th>leader</th>";
    m += "</tr></thead><tbody>" + rows + "</tbody></table>";
    m += pager("/?", "page", page, page * kGroupsPerPage < total, "groups");
  }
  if (leaders.etcd)
    m += "<p id=\"instance\" class=\"muted\">This instance: " + e(leaders.instance, 200) +
         " (etcd coordination).</p>";
  m += runs_table(in, runs_page, "/?");
  std::string title = "stackflip — " + std::to_string(converged) + "/" + std::to_string(total) +
                      " converged";
  return document(e(title), header_html(in), m);
}

// ------------------------------------------------------------------ group page

namespace {

std::string stacks_table(const GroupSpec* spec, const GroupObs* obs, const GroupStatus& g) {
  std::set<std::string> names;
  if (spec)
    for (const auto& [n, s] : spec->stacks) names.insert(n);
  if (obs)
    for (const auto& [n, s] : obs->stacks) names.insert(n);
  std::string s =
      "<table id=\"stacks\"><thead><tr><th>stack</th><th>desired</th><th>role</th>"
      "<th>maintenance</th><th>replication</th><th>lag</th><th>reachable</th></tr></thead><tbody>";
  for (const auto& name : names) {
    const StackObs* so = nullptr;
    if (obs) {
      auto it = obs->stacks.find(name);
      if (it != obs->stacks.end()) so = &it->second;
    }
    std::string desired = name == g.active ? "active" : "standby";
    std::string role = "unknown", maint = "unknown", repl = "—", lag = "—",
                reach = "not observed";
    if (so) {
      reach = so->reachable ? "yes" : (so->config_error ? "configuration error: " : "no: ") + so->error;
      if (!so->reachable) reach += so->database ? " (last known values shown)" : "";
      if (!so->health_error.empty()) reach += "; health check failing: " + so->health_error;
      if (so->maintenance) maint = *so->maintenance ? "on (writes refused)" : "off";
      if (so->database) {
        const DatabaseObs& db = *so->database;
        role = to_string(db.role);
        if (db.role == Role::replica) {
          repl = db.upstream ? "from " + *db.upstream : "stopped";
          if (db.streaming) repl += *db.streaming ? ", streaming" : ", not streaming";
          if (db.upstream && obs) {
            auto up = obs->stacks.find(*db.upstream);
            if (up != obs->stacks.end() && up->second.database && up->second.database->lsn &&
                db.lsn)
              lag = size_t_text(*up->second.database->lsn > *db.lsn
                                    ? *up->second.database->lsn - *db.lsn
                                    : 0);
          }
        }
      }
    }
    s += "<tr data-stack=\"" + e(name) + "\"><td>" + e(name, 200) + "</td><td>" + desired +
         "</td><td class=\"role\">" + e(role) + "</td><td class=\"maintenance\">" + e(maint) +
         "</td><td class=\"replication\">" + e(repl, 300) + "</td><td class=\"lag\">" + e(lag) +
         "</td><td>" + e(reach, 300) + "</td></tr>";
  }
  return s + "</tbody></table>";
}

std::string left_list(const GroupStatus& g) {
  if (g.converged) return "<p id=\"left\">Nothing left to do: observed state matches the desired state.</p>";
  std::string s = "<ol id=\"left\">";
  size_t shown = 0;
  for (const auto& a : g.left) {
    if (++shown > 50) break;
    s += "<li" + std::string(a.blocked ? " class=\"blocked\"" : "") + "><code>" +
         to_string(a.kind) + "</code> " + e(a.stack, 200) + " — " + e(a.reason, 300);
    if (a.blocked)
      s += "<br><span class=\"state state-blocked\">▲ BLOCKED:</span> " + e(a.why_blocked, 500);
    s += "</li>";
  }
  s += "</ol>";
  if (g.left.size() > 50) s += "<p>… " + std::to_string(g.left.size() - 50) + " more steps.</p>";
  for (const auto& k : g.left_skipped)
    s += "<p class=\"skipped\">skipped <code>" + std::string(to_string(k.kind)) + "</code> " +
         e(k.stack, 200) + " — " + e(k.reason, 300) + "</p>";
  return s;
}

std::string journal_table(const StateStore& store, const std::string& group, int64_t before,
                          const std::string& base) {
  auto rows = store.history(kJournalPerPage + 1, group, before);
  std::string s = "<h2 id=\"journal\">Actions</h2>";
  if (!rows.ok()) return s + "<p class=\"state-failed\">" + e(rows.error().message) + "</p>";
  bool more = rows->size() > kJournalPerPage;
  if (more) rows->pop_back();
  s += "<table id=\"journal-table\"><thead><tr><th>time</th><th>action</th><th>stack</th>"
       "<th>result</th><th>duration</th><th>detail</th><th>origin</th></tr></thead><tbody>";
  // One row per action: its end (time, result, duration, detail), or its
  // start while no end is recorded. A start whose end is on this page or
  // the newer one is not repeated.
  for (const auto& r : *rows) {
    if (r.phase == "started" && !r.open) continue;
    std::string result = r.open ? "no end recorded (running, or the process died)" : r.result;
    s += "<tr data-kind=\"" + e(r.kind) + "\"><td>" + e(r.time) + "</td><td><code>" + e(r.kind) +
         "</code></td><td>" + e(r.stack + (r.source.empty() ? "" : " from " + r.source), 200) +
         "</td><td>" + e(result) + "</td><td>" +
         (r.phase == "finished" ? seconds_text(r.duration_ms) : std::string()) + "</td><td>" +
         e(r.error, 300) + "</td><td><code>" + e(r.origin.substr(0, 40)) + "</code></td></tr>";
  }
  s += "</tbody></table><p class=\"pager\">";
  if (before) s += "<a href=\"" + base + "\">← newest</a>";
  if (more && !rows->empty())
    s += "<a rel=\"next\" href=\"" + base + "&amp;before=" + std::to_string(rows->back().id) +
         "\">older actions →</a>";
  return s + "</p>";
}

}  // namespace

std::optional<std::string> render_group_page(const StatusPageInput& in, const std::string& query) {
  const std::string name = query_param(query, "name");
  const GroupStatus* g = nullptr;
  if (in.last) {
    auto it = in.last->groups.find(name);
    if (it != in.last->groups.end()) g = &it->second;
  }
  if (!g) return std::nullopt;
  const GroupSpec* spec = nullptr;
  if (in.last->desired) {
    auto it = in.last->desired->groups.find(name);
    if (it != in.last->desired->groups.end()) spec = &it->second;
  }
  const GroupObs* obs = nullptr;
  if (in.last->observed) {
    auto it = in.last->observed->groups.find(name);
    if (it != in.last->observed->groups.end()) obs = &it->second;
  }
  Leaders leaders = parse_leaders(in.coordination_json);
  auto running = running_actions(in);
  auto run = running.find(name);
  StateBadge b = badge(*g, run == running.end() ? "" : run->second);

  std::string m = "<h2 id=\"group\" data-group=\"" + e(name) + "\">Group " + e(name, 200) +
                  " <span class=\"state " + b.css + "\" id=\"state\" data-state=\"" +
                  badge_key(b.css) + "\">" + e(b.text, 300) + "</span></h2>";
  std::string serving = obs ? serving_stack(*obs) : "";
  m += "<p id=\"active\">Desired active stack: <b class=\"desired\">" + e(g->active, 200) +
       "</b>; serving writes: <b class=\"serving\">" +
       (serving.empty() ? std::string("none") : e(serving, 200)) + "</b>";
  if (obs) m += "; traffic: <b class=\"traffic\">" + e(traffic_text(obs->traffic), 300) + "</b>";
  m += "</p>";
  if (obs) m += "<p id=\"standbys\">Standbys: " + e(standby_text(*obs, serving), 1000) + "</p>";
  if (!g->reason.empty()) m += "<p id=\"reason\">Why: " + e(g->reason, 2000) + "</p>";
  if (!g->outage.empty()) m += "<p id=\"outage\">" + e(g->outage, 2000) + "</p>";
  if (!g->decision.empty()) m += "<p id=\"decision\">" + e(g->decision, 2000) + "</p>";
  if (!g->override_note.empty()) m += "<p id=\"override\">" + e(g->override_note, 2000) + "</p>";
  if (leaders.etcd) {
    auto l = leaders.of.find(name);
    m += "<p id=\"leader\">Leader: " +
         (l == leaders.of.end() || l->second.empty() ? std::string("none") : e(l->second, 200)) +
         " (this instance: " + e(leaders.instance, 200) + ")</p>";
  }
  m += pass_card(in);
  m += "<h2>Stacks</h2>" + stacks_table(spec, obs, *g);
  if (obs) {
    m += "<h2>Traffic</h2><ul id=\"traffic\">";
    const auto& parts = obs->traffic.parts.empty() ? std::vector<TrafficObs>{obs->traffic}
                                                   : obs->traffic.parts;
    for (const auto& p : parts)
      m += "<li>" + (p.name.empty() ? std::string() : e(p.name, 200) + ": ") +
           e(traffic_text(p), 500) + "</li>";
    m += "</ul>";
  }
  m += "<h2>Left to do</h2>" + left_list(*g);
  // While an action of the group runs, the sequence it belongs to (the
  // switch under way); otherwise the last switch.
  const bool underway = run != running.end();
  m += underway ? "<h2 id=\"timeline\">Switch under way</h2>"
                : "<h2 id=\"timeline\">Last switch</h2>";
  std::string svg;
  if (in.store) {
    auto rows = underway ? in.store->history(200, name) : in.store->last_switch(name);
    if (rows.ok()) {
      if (underway) std::reverse(rows->begin(), rows->end());
      svg = switch_timeline_svg(*rows);
    }
  }
  m += svg.empty() ? "<p id=\"no-switch\">No switch recorded for this group.</p>" : svg;
  if (in.store) {
    std::string before = query_param(query, "before");
    int64_t before_id = 0;
    if (!before.empty() && before.size() < 19 && all_digits(before))
      before_id = std::stoll(before);
    m += journal_table(*in.store, name, before_id, e(group_href(name)));
  }
  return document(e("stackflip — " + name + ": " + b.text, 300), header_html(in), m);
}

// ------------------------------------------------------------------ timeline

namespace {

struct Step {
  std::string kind, stack, source, result, detail;
  int64_t start = 0, end = 0;  // epoch ms
  bool open = false;
};

bool is_switch(const std::string& kind) {
  return kind == "database.promote" || kind == "traffic.switch";
}

}  // namespace

std::string switch_timeline_svg(const std::vector<JournalEntry>& rows) {
  // Pair each started row with its end.
  std::map<int64_t, const JournalEntry*> ends;
  for (const auto& r : rows)
    if (r.phase == "finished") ends[r.start_id] = &r;
  std::vector<Step> steps;
  for (const auto& r : rows) {
    if (r.phase != "started") continue;
    auto t = parse_time_ms(r.time);
    if (!t) continue;
    Step s{r.kind, r.stack, r.source, "running", "", *t, *t, true};
    if (auto f = ends.find(r.id); f != ends.end()) {
      s.open = false;
      s.result = f->second->result;
      s.detail = f->second->error;
      s.end = *t + std::max<int64_t>(0, f->second->duration_ms);
    }
    steps.push_back(std::move(s));
  }
  // The sequence around the last switch: no gap over 10 minutes.
  size_t sw = steps.size();
  for (size_t i = steps.size(); i-- > 0;)
    if (is_switch(steps[i].kind)) {
      sw = i;
      break;
    }
  // A step running now, after it, anchors the sequence instead: the switch
  // under way (its promotion may not have started yet).
  if (!steps.empty() && steps.back().open && (sw == steps.size() || sw + 1 < steps.size()))
    sw = steps.size() - 1;
  if (sw == steps.size()) return "";
  constexpr int64_t kGap = 10 * 60 * 1000;
  size_t first = sw, last = sw;
  while (first > 0 && steps[first].start - steps[first - 1].end <= kGap) --first;
  while (last + 1 < steps.size() && steps[last + 1].start - steps[last].end <= kGap) ++last;
  steps = std::vector<Step>(steps.begin() + static_cast<std::ptrdiff_t>(first),
                            steps.begin() + static_cast<std::ptrdiff_t>(last) + 1);
  if (steps.size() > 64) steps.resize(64);

  int64_t t0 = steps.front().start, t1 = t0;
  for (const auto& s : steps) t1 = std::max({t1, s.end, s.start});
  const int64_t span = std::max<int64_t>(1, t1 - t0);
  // Writes stop when the old primary is fenced (maintenance.on on another
  // stack than the promoted one, before the promotion) and are accepted
  // again when the promoted stack leaves maintenance.
  std::string promoted, loss;
  for (const auto& s : steps)
    if (s.kind == "database.promote" && s.result == "ok") {
      promoted = s.stack;
      if (s.detail.rfind("data loss accepted: ", 0) == 0) loss = s.detail.substr(20);
    }
  // A switch that failed safe re-opens the fenced stack instead: writes
  // are accepted again there (apply.h, "Fail safe").
  std::optional<int64_t> stopped, resumed, promoted_at;
  std::string fenced;
  for (const auto& s : steps) {
    if (s.result != "ok") continue;
    if (s.kind == "maintenance.on" && s.stack != promoted && !stopped) {
      stopped = s.end;
      fenced = s.stack;
    }
    if (s.kind == "database.promote" && s.stack == promoted) promoted_at = s.end;
    const bool reopened = s.stack == fenced && !promoted_at;
    if (s.kind == "maintenance.off" && stopped && !resumed &&
        ((s.stack == promoted && promoted_at) || reopened))
      resumed = s.end;
  }

  const int label_w = 230, chart_w = 560, right_w = 170, row_h = 24, top = 34;
  const int rows_n = static_cast<int>(steps.size());
  const int extra = loss.empty() ? 0 : 1;
  const int height = top + (rows_n + extra) * row_h + 30;
  const int width = label_w + chart_w + right_w;
  auto x_of = [&](int64_t t) {
    return label_w + static_cast<int>(static_cast<double>(t - t0) * chart_w / static_cast<double>(span));
  };
  char buf[256];
  std::string svg = "<figure id=\"switch-timeline\"><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"" +
                    std::to_string(width) + "\" height=\"" + std::to_string(height) +
                    "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
                    "\"><title>Timeline of the last switch: " + std::to_string(rows_n) +
                    " steps over " + seconds_text(span) + "</title>";
  svg += "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
         "patternTransform=\"rotate(45)\"><path d=\"M0 0V6\"/></pattern></defs>";
  // Axis with the start, the middle and the end.
  std::snprintf(buf, sizeof buf, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
                label_w, top - 8, label_w + chart_w, top - 8);
  svg += buf;
  for (int k = 0; k <= 2; ++k) {
    int64_t t = t0 + span * k / 2;
    std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"%d\" text-anchor=\"%s\">+%s</text>", x_of(t),
                  top - 14, k == 0 ? "start" : k == 2 ? "end" : "middle",
                  seconds_text(t - t0).c_str());
    svg += buf;
  }
  for (int i = 0; i < rows_n; ++i) {
    const Step& s = steps[static_cast<size_t>(i)];
    const int y = top + i * row_h;
    const std::string cls = s.open ? "running" : s.result == "ok" ? "ok" : "failed";
    const std::string symbol = s.open ? "… running" : s.result == "ok" ? "✓ ok" : "✕ " + s.result;
    const int x = x_of(s.start);
    const int w = std::max(3, x_of(s.end) - x);
    svg += "<g class=\"step\" data-kind=\"" + e(s.kind) + "\" data-result=\"" + e(cls) + "\">";
    svg += "<title>" + e(s.kind + " " + s.stack + (s.source.empty() ? "" : " from " + s.source)) +
           ": " + e(symbol) + ", " + seconds_text(s.end - s.start) +
           (s.detail.empty() ? "" : " — " + e(s.detail, 300)) + "</title>";
    std::snprintf(buf, sizeof buf, "<text x=\"4\" y=\"%d\">", y + 15);
    svg += buf + e(s.kind + " " + s.stack, 60) + "</text>";
    std::snprintf(buf, sizeof buf,
                  "<rect class=\"bar-%s\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"2\"/>",
                  cls.c_str(), x, y + 4, w, row_h - 8);
    svg += buf;
    std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"%d\">", label_w + chart_w + 6, y + 15);
    svg += buf + e(symbol, 40) + " " + seconds_text(s.end - s.start) + "</text></g>";
  }
  const int bottom = top + rows_n * row_h;
  auto mark = [&](int64_t t, const char* cls, const std::string& label, int label_y) {
    std::snprintf(buf, sizeof buf,
                  "<g class=\"marker %s\"><line class=\"%s\" x1=\"%d\" y1=\"%d\" x2=\"%d\" "
                  "y2=\"%d\"/><text x=\"%d\" y=\"%d\" text-anchor=\"end\">",
                  cls, cls, x_of(t), top - 6, x_of(t), bottom, x_of(t) - 3, label_y);
    svg += buf + e(label) + "</text></g>";
  };
  if (stopped) mark(*stopped, "mark-stop", "writes stopped", bottom + 14);
  if (resumed)
    mark(*resumed, "mark-resume",
         "writes accepted again" + (stopped ? " (+" + seconds_text(*resumed - *stopped) + ")" : ""),
         bottom + 26);
  if (!loss.empty() && promoted_at) {
    const int y = bottom;
    std::snprintf(buf, sizeof buf,
                  "<g class=\"data-loss\"><rect class=\"loss\" x=\"%d\" y=\"%d\" width=\"%d\" "
                  "height=\"%d\"/><text x=\"%d\" y=\"%d\">",
                  label_w, y + 2, std::max(3, x_of(*promoted_at) - label_w), row_h - 4, 4, y + 15);
    svg += buf + e("data loss accepted: " + loss, 200) + "</text></g>";
  }
  svg += "</svg><figcaption>";
  svg += "From " + e(steps.front().kind) + " to " + e(steps.back().kind) + ", " +
         seconds_text(span) + "; ";
  if (stopped && resumed)
    svg += "<span id=\"write-gap\">writes refused for " + seconds_text(*resumed - *stopped) +
           "</span>";
  else if (stopped)
    svg += "<span id=\"write-gap\">writes stopped, not yet accepted again</span>";
  else
    svg += "no fence recorded";
  if (!loss.empty()) svg += "; <span id=\"data-loss\">data loss accepted: " + e(loss, 300) + "</span>";
  svg += ".</figcaption></figure>";
  return svg;
}

// ------------------------------------------------------------------ login

std::string render_login_page(bool failed) {
  std::string m = "<h2>Sign in</h2><p>This status page needs the API token "
                  "(<code>--api-token</code> of <code>stackflip run</code>).</p>";
  if (failed) m += "<p class=\"state state-failed\" id=\"login-failed\">✕ wrong token</p>";
  m += "<form method=\"post\" action=\"/login\"><label>Token <input type=\"password\" "
       "name=\"token\" autocomplete=\"current-password\" required></label> "
       "<button type=\"submit\">Sign in</button></form>";
  return document("stackflip — sign in", "<header><h1>stackflip</h1></header>", m, false);
}

}  // namespace stackflip
