#include "core/render.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

namespace stackflip {

namespace {

// Actions and skipped steps of one group, in plan order.
struct GroupView {
  std::vector<const Action*> actions;
  std::vector<const Skipped*> skipped;
  size_t blocked = 0;
  const std::string* group_blocked = nullptr;  // Plan::blocked_groups
  const std::string* config_error = nullptr;   // Plan::config_errors
};

std::map<std::string, GroupView> by_group(const Plan& plan) {
  std::map<std::string, GroupView> groups;
  for (const auto& a : plan.actions) {
    auto& g = groups[a.group];
    g.actions.push_back(&a);
    if (a.blocked) ++g.blocked;
  }
  for (const auto& s : plan.skipped) groups[s.group].skipped.push_back(&s);
  for (const auto& [name, why] : plan.blocked_groups) groups[name].group_blocked = &why;
  for (const auto& [name, why] : plan.config_errors) groups[name].config_error = &why;
  return groups;
}

std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

size_t count_blocked(const Plan& plan) {
  size_t n = 0;
  for (const auto& a : plan.actions) n += a.blocked ? 1 : 0;
  return n;
}

std::string summary_line(const Plan& plan, size_t groups) {
  if (plan.actions.empty()) {
    if (!plan.blocked_groups.empty())
      return "No actions to run; " + plural(plan.blocked_groups.size(), "group", "groups") +
             " blocked (see above).";
    if (plan.skipped.empty()) return "No changes. Observed state matches the desired state.";
    return "No actions to run; " + plural(plan.skipped.size(), "step", "steps") +
           " skipped (see above).";
  }
  return "Plan: " + plural(plan.actions.size(), "action", "actions") + " in " +
         plural(groups, "group", "groups") + ", " + std::to_string(count_blocked(plan)) +
         " blocked.";
}

std::string short_digest(const std::string& d) {
  if (d.empty()) return "(none)";
  return d.substr(0, 12);
}

// What an action acts on, e.g. "standby from primary" or "to standby".
std::string target_of(const Action& a) {
  if (a.kind == ActionKind::traffic_switch || a.kind == ActionKind::traffic_resume)
    return "to " + a.stack;
  if (a.kind == ActionKind::traffic_wait)
    return "up to " + std::to_string(a.wait_ms / 1000) + " s after the TTL was lowered";
  if (!a.source.empty()) return a.stack + " from " + a.source;
  return a.stack;
}

// Cuts at most `max` bytes without splitting a UTF-8 sequence.
std::string cut_utf8(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// ------------------------------------------------------------------ text

struct Ansi {
  bool on;
  std::string wrap(const char* code, const std::string& s) const {
    return on ? std::string("\x1b[") + code + "m" + s + "\x1b[0m" : s;
  }
  std::string bold(const std::string& s) const { return wrap("1", s); }
  std::string green(const std::string& s) const { return wrap("32", s); }
  std::string red(const std::string& s) const { return wrap("1;31", s); }
  std::string yellow(const std::string& s) const { return wrap("33", s); }
};

// One line of a free-text field; control characters (ESC included) are
// shown as spaces so a reason cannot inject terminal escapes.
std::string one_line(std::string_view s) {
  std::string out = redact_secrets(s);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

// ------------------------------------------------------------------ shared

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

template <class Map>
const typename Map::mapped_type* find_in(const Map& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

// What would unblock a group first: its Plan::blocked_groups reason, else its
// first blocked step's why_blocked (`step` 0 for the whole group).
struct Unblock {
  size_t step = 0;
  const Action* action = nullptr;
  const std::string* why = nullptr;
};

std::optional<Unblock> unblock_of(const GroupView& g) {
  if (g.group_blocked) return Unblock{0, nullptr, g.group_blocked};
  for (size_t i = 0; i < g.actions.size(); ++i)
    if (g.actions[i]->blocked) return Unblock{i + 1, g.actions[i], &g.actions[i]->why_blocked};
  return std::nullopt;
}

// The plan's first obstacle: the first blocked group in name order, what
// would unblock it, and how many other groups are blocked.
struct FirstObstacle {
  const std::string* group = nullptr;
  Unblock unblock;
  size_t more = 0;
};

std::optional<FirstObstacle> first_obstacle(const std::map<std::string, GroupView>& groups) {
  std::optional<FirstObstacle> first;
  for (const auto& [name, g] : groups) {
    auto u = unblock_of(g);
    if (!u) continue;
    if (first)
      ++first->more;
    else
      first = FirstObstacle{&name, *u, 0};
  }
  return first;
}

// One row of a group's before → after table, as raw text that each format
// escapes. Before is what was observed, after what the config asks for; a
// value observation does not give is "unknown", never inferred.
struct StateRow {
  std::string what;
  std::string before;
  std::string after;
};

const char* const kUnknown = "unknown";
const char* const kNotInConfig = "not in the config";

// An unreachable stack's value is its last known one, labelled so.
std::string unreachable(const std::string& last_known) {
  return last_known.empty() ? "unreachable" : "unreachable, last known: " + last_known;
}

std::string known_role(const StackObs& s) {
  if (!s.database || s.database->role == Role::unknown) return "";
  return to_string(s.database->role);
}

// The stacks observed as primary; unreachable and unknown stacks named with
// what is known of them, since any of them could be one.
std::string primary_before(const GroupObs& seen, const std::set<std::string>& stacks) {
  std::vector<std::string> primaries, doubts;
  for (const auto& name : stacks) {
    const StackObs* s = find_in(seen.stacks, name);
    if (!s)
      doubts.push_back(name + " " + kUnknown);
    else if (!s->reachable)
      doubts.push_back(name + " " + unreachable(known_role(*s)));
    else if (known_role(*s).empty())
      doubts.push_back(name + " " + kUnknown);
    else if (s->database->role == Role::primary)
      primaries.push_back(name);
  }
  if (primaries.empty() && !doubts.empty()) return join(doubts, "; ");
  std::string out = primaries.empty() ? "none" : join(primaries);
  if (!doubts.empty()) out += "; " + join(doubts, "; ");
  return out;
}

// Where a traffic observation points: "standby (127.0.0.2)", "mixed: a, b",
// or "" when it holds nothing.
std::string traffic_value(const TrafficObs& t) {
  std::string where;
  if (t.target) {
    where = *t.target;
  } else {
    auto stacks = traffic_stacks(t);
    if (stacks.size() > 1)
      where = "mixed: " + join(stacks);
    else if (stacks.size() == 1)
      where = "partly " + stacks[0];
    else if (!t.content.empty())
      where = "no stack of the group";
  }
  if (!t.content.empty()) where += " (" + t.content + ")";
  return where;
}

std::string traffic_before(const TrafficObs& t) {
  std::string v = traffic_value(t);
  if (!t.reachable) return unreachable(v);
  return v.empty() ? "none" : v;
}

std::string replication_value(const StackObs& s) {
  if (!s.database) return "";
  const DatabaseObs& db = *s.database;
  if (db.role == Role::primary) return "none (is primary)";
  if (db.role != Role::replica) return "";
  if (!db.upstream) return "stopped";
  return "from " + *db.upstream + (db.streaming == false ? ", not streaming" : "");
}

std::string maintenance_value(const StackObs& s) {
  if (!s.maintenance) return "";
  return *s.maintenance ? "on" : "off";
}

// A per-stack value before: unknown when the stack was not observed or the
// value is absent, unreachable (with the last known value) when it did not
// answer.
template <class Value>
std::string stack_before(const GroupObs* seen, const std::string& name, Value value) {
  const StackObs* s = seen ? find_in(seen->stacks, name) : nullptr;
  if (!s) return kUnknown;
  std::string v = value(*s);
  if (!s->reachable) return unreachable(v);
  return v.empty() ? kUnknown : v;
}

// The before → after rows of one group; none unless both states are given
// and one of them has the group.
std::vector<StateRow> state_rows(const std::string& group, const DesiredState* desired,
                                 const ObservedState* observed) {
  if (!desired || !observed) return {};
  const GroupSpec* spec = find_in(desired->groups, group);
  const GroupObs* seen = find_in(observed->groups, group);
  if (!spec && !seen) return {};
  std::set<std::string> stacks;
  if (spec)
    for (const auto& [name, _] : spec->stacks) stacks.insert(name);
  if (seen)
    for (const auto& [name, _] : seen->stacks) stacks.insert(name);

  std::vector<StateRow> rows;
  rows.push_back({"primary", seen ? primary_before(*seen, stacks) : kUnknown,
                  spec ? spec->active : kNotInConfig});
  std::string traffic_after = kNotInConfig;
  if (spec) {
    traffic_after = spec->active;
    if (const StackSpec* a = find_in(spec->stacks, spec->active); a && !a->addresses.empty())
      traffic_after += " (" + join(a->addresses) + ")";
  }
  rows.push_back(
      {"traffic target", seen ? traffic_before(seen->traffic) : kUnknown, traffic_after});
  for (const auto& name : stacks) {
    bool specified = spec && spec->stacks.count(name);
    std::string after = kNotInConfig;
    if (specified)
      after = spec->wants_replica(name) ? "from " + spec->replication.from
              : name == spec->active    ? "none (is primary)"
                                        : "none";
    rows.push_back(
        {"replication into " + name, stack_before(seen, name, replication_value), after});
  }
  for (const auto& name : stacks) {
    bool specified = spec && spec->stacks.count(name);
    std::string after = !specified ? kNotInConfig : spec->desired_maintenance(name) ? "on" : "off";
    rows.push_back({"maintenance of " + name, stack_before(seen, name, maintenance_value), after});
  }
  return rows;
}

// -------------------------------------------------------------- mermaid

// Decodes the UTF-8 sequence at s[i] into `cp`; returns its length. An
// invalid sequence is one byte of U+FFFD.
size_t decode_utf8(const std::string& s, size_t i, uint32_t& cp) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  size_t len = c >= 0xF0 && c <= 0xF4  ? 4
               : c >= 0xE0 && c < 0xF0 ? 3
               : c >= 0xC2 && c < 0xE0 ? 2
                                       : 0;
  if (len == 0 || i + len > s.size()) {
    cp = 0xFFFD;
    return 1;
  }
  cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      cp = 0xFFFD;
      return 1;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    cp = 0xFFFD;
    return 1;
  }
  return len;
}

// Text for a quoted Mermaid label ("...": one line). Letters, digits and a
// few punctuation marks that mean nothing to Mermaid or to the HTML it makes
// stay as they are; every other character, non-ASCII included, becomes
// Mermaid's #NNN; entity code. So no quote, bracket, pipe, `%%`, `-->`,
// backtick (a Markdown string) or tag in a name or a reason can end the
// label or add syntax.
std::string mermaid_text(std::string_view raw, size_t max = 160) {
  std::string s = one_line(raw);
  bool cut = s.size() > max;
  if (cut) s = cut_utf8(s, max);
  std::string out;
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        (c != '\0' && std::strchr(" .,:/=+'!?@_-", c))) {
      out += c;
      ++i;
      continue;
    }
    uint32_t cp = 0;
    i += decode_utf8(s, i, cp);
    out += "#" + std::to_string(cp) + ";";
  }
  if (cut) out += "#8230;";
  return out;
}

// A ```mermaid flowchart of a group's steps: node sN for step N, edges in
// order, the first blocked step and those that will not run after it in
// their own classes (dashed borders, not colour alone, and the words
// BLOCKED / not run in the label). Ids never come from user text.
std::string mermaid_steps(const GroupView& g) {
  if (g.actions.empty()) return "";
  std::string out = "```mermaid\nflowchart TD\n";
  std::vector<std::string> blocked, not_run;
  size_t blocked_step = 0;
  for (size_t i = 0; i < g.actions.size(); ++i) {
    const Action& a = *g.actions[i];
    std::string id = "s" + std::to_string(i + 1);
    std::string label = std::to_string(i + 1) + ". ";
    if (a.blocked) {
      label += "BLOCKED: ";
      blocked.push_back(id);
    } else if (blocked_step) {
      label += "not run: ";
      not_run.push_back(id);
    }
    label += std::string(to_string(a.kind)) + " " + target_of(a);
    out += "  " + id + "[\"" + mermaid_text(label) + "\"]\n";
    if (a.blocked && !blocked_step) blocked_step = i + 1;
  }
  for (size_t i = 1; i < g.actions.size(); ++i)
    out += "  s" + std::to_string(i) + " --> s" + std::to_string(i + 1) + "\n";
  if (!blocked.empty())
    out +=
        "  classDef blocked fill:#ffebe9,stroke:#cf222e,stroke-width:4px,stroke-dasharray:8 "
        "4,color:#82071e\n  class " +
        join(blocked, ",") + " blocked\n";
  if (!not_run.empty())
    out +=
        "  classDef notrun fill:#f6f8fa,stroke:#6e7781,stroke-dasharray:2 3,color:#57606a\n"
        "  class " +
        join(not_run, ",") + " notrun\n";
  return out + "```\n";
}

// ------------------------------------------------------------------ markdown

// For Markdown text (list items, table cells): backslash-escape Markdown
// punctuation, entity-escape HTML, fold newlines.
// Appends the HTML entity for &, <, > or " and says whether `c` was one.
bool html_entity(char c, std::string& out) {
  switch (c) {
    case '&':
      out += "&amp;";
      return true;
    case '<':
      out += "&lt;";
      return true;
    case '>':
      out += "&gt;";
      return true;
    case '"':
      out += "&quot;";
      return true;
    default:
      return false;
  }
}

std::string md(std::string_view raw, size_t max = 2000) {
  std::string s = one_line(raw);
  bool cut = s.size() > max;
  if (cut) s = cut_utf8(s, max);
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    if (c != '"' && html_entity(c, out)) continue;  // quotes need no escape in Markdown text
    switch (c) {
      case '|':
      case '`':
      case '\\':
      case '*':
      case '_':
      case '[':
      case ']':
      case '#':
      case '~':
        out += '\\';
        out += c;
        break;
      default:
        out += c;
    }
  }
  if (cut) out += "…";
  return out;
}

// For text inside an HTML element (<summary>): entities only, since Markdown
// escapes are not processed there.
std::string html(std::string_view raw) { return escape_html(raw); }

std::string md_step(size_t n, const Action& a, size_t blocked_step) {
  std::string s = std::to_string(n) + ". `" + to_string(a.kind) + "` " + md(target_of(a)) + "\n";
  s += "   - reason: " + md(a.reason) + "\n";
  s += "   - guard: " + md(a.guard) + "\n";
  if (a.blocked)
    s += "   - **BLOCKED: " + md(a.why_blocked) + "**\n";
  else if (blocked_step)
    s += "   - not run: step " + std::to_string(blocked_step) + " is blocked\n";
  return s;
}

std::string md_skipped(const Skipped& s) {
  return "- skipped `" + std::string(to_string(s.kind)) + "` " + md(s.stack) + " — " +
         md(s.reason) + "\n";
}

// "step 4 `database.promote` standby — why", or "the whole group — why".
std::string md_unblock(const Unblock& u, size_t max_why) {
  std::string where = u.action
                          ? "step " + std::to_string(u.step) + " `" + to_string(u.action->kind) +
                                "` " + md(target_of(*u.action), 200)
                          : "the whole group";
  return where + " — " + md(*u.why, max_why);
}

std::string md_section_head(const std::string& name, const GroupView& g) {
  std::string s =
      "<details><summary>" + html(name) + " — " + plural(g.actions.size(), "action", "actions");
  if (g.blocked) s += ", " + std::to_string(g.blocked) + " blocked";
  s += "</summary>\n\n";
  if (g.group_blocked) s += "**GROUP BLOCKED: " + md(*g.group_blocked) + "**\n\n";
  if (g.config_error) s += "**CONFIGURATION ERROR: " + md(*g.config_error) + "**\n\n";
  if (auto u = unblock_of(g)) s += "**To unblock:** " + md_unblock(*u, 2000) + "\n\n";
  return s;
}

// The plan's first obstacle, under the title; "" when nothing is blocked.
std::string md_plan_unblock(const std::map<std::string, GroupView>& groups) {
  auto first = first_obstacle(groups);
  if (!first) return "";
  std::string s =
      "**To unblock:** " + md(*first->group, 200) + ", " + md_unblock(first->unblock, 1000);
  if (first->more)
    s += " (and " + plural(first->more, "more blocked group", "more blocked groups") + ")";
  return s + "\n\n";
}

// A group's before → after table, one item per line so that a cut keeps
// whole rows. A changed value is bold. No items without both states.
std::vector<std::string> md_state_table(const std::vector<StateRow>& rows) {
  if (rows.empty()) return {};
  std::vector<std::string> items{
      "| state | before (observed) | after (desired) |\n|---|---|---|\n"};
  for (const auto& r : rows) {
    std::string after = md(r.after, 300);
    if (r.before != r.after) after = "**" + after + "**";
    items.push_back("| " + md(r.what, 300) + " | " + md(r.before, 300) + " | " + after + " |\n");
  }
  items.push_back("\n");
  return items;
}

const char* kSectionEnd = "\n</details>\n\n";

}  // namespace

std::string redact_secrets(std::string_view text) { return redact(text); }

std::string escape_html(std::string_view raw) {
  std::string s = one_line(raw);
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    if (!html_entity(c, out)) out += c;
  return out;
}

std::string render_text(const Plan& plan, const RenderOptions& o) {
  Ansi c{o.color};
  auto groups = by_group(plan);
  std::string out = c.bold("stackflip plan") + " (desired " + short_digest(plan.desired_digest) +
                    ", observed " + short_digest(plan.observed_digest) + ")\n";
  for (const auto& [name, g] : groups) {
    out += "\n" + c.bold("Group " + one_line(name)) + " (" +
           plural(g.actions.size(), "action", "actions") + ")\n";
    if (g.group_blocked) out += "  " + c.red("GROUP BLOCKED: " + one_line(*g.group_blocked)) + "\n";
    if (g.config_error)
      out += "  " + c.red("CONFIGURATION ERROR: " + one_line(*g.config_error)) + "\n";
    size_t blocked_step = 0;
    for (size_t i = 0; i < g.actions.size(); ++i) {
      const Action& a = *g.actions[i];
      std::string num = std::to_string(i + 1) + ". ";
      std::string kind = pad(to_string(a.kind), 19);
      out += "  " + num + (a.blocked ? c.red(kind) : c.green(kind)) + one_line(target_of(a));
      if (a.blocked) out += "   " + c.red("BLOCKED: " + one_line(a.why_blocked));
      out += "\n";
      std::string indent(2 + num.size() + 2, ' ');
      out += indent + "reason: " + one_line(a.reason) + "\n";
      out += indent + "guard:  " + one_line(a.guard) + "\n";
      if (!a.blocked && blocked_step)
        out += indent + "not run: step " + std::to_string(blocked_step) + " is blocked\n";
      if (a.blocked && !blocked_step) blocked_step = i + 1;
    }
    for (const Skipped* s : g.skipped)
      out += "  " + c.yellow("skipped:") + " " + to_string(s->kind) + " " + one_line(s->stack) +
             " — " + one_line(s->reason) + "\n";
  }
  out += "\n" + c.bold(summary_line(plan, groups.size())) + "\n";
  if (!plan.config_errors.empty())
    out += c.red("Error: " + plural(plan.config_errors.size(), "group has", "groups have") +
                 " a configuration error (credentials rejected or settings wrong; see above): "
                 "fix it on the host or in the config.") +
           "\n";
  return out;
}

std::string render_markdown(const Plan& plan, const RenderOptions& o) {
  return render_markdown(plan, nullptr, nullptr, o);
}

std::string render_markdown(const Plan& plan, const DesiredState* desired,
                            const ObservedState* observed, const RenderOptions& o) {
  const size_t limit = o.markdown_limit;
  auto groups = by_group(plan);
  std::string footer = "<sub>stackflip · desired " + md(short_digest(plan.desired_digest)) +
                       " · observed " + md(short_digest(plan.observed_digest)) + "</sub>\n";
  // Room kept for the footer and up to two "not shown" lines.
  const size_t reserve = footer.size() + 2 * 200;
  const size_t budget = limit > reserve ? limit - reserve : 0;

  std::string out = "### " + md(summary_line(plan, groups.size())) + "\n\n";
  if (groups.empty()) return cut_utf8(out + footer, limit);
  out += md_plan_unblock(groups);

  // Summary table first; cut it when it alone does not fit.
  out += "| group | actions | blocked | first step |\n|---|---:|---:|---|\n";
  size_t rows = 0;
  for (const auto& [name, g] : groups) {
    std::string first = g.actions.empty() ? "—"
                                          : "`" + std::string(to_string(g.actions[0]->kind)) +
                                                "` " + md(target_of(*g.actions[0]), 200);
    std::string row = "| " + md(name, 200) + " | " + std::to_string(g.actions.size()) + " | " +
                      std::to_string(g.blocked) + " | " + first + " |\n";
    if (out.size() + row.size() > budget) break;
    out += row;
    ++rows;
  }
  if (rows < groups.size())
    out += "| … | " + plural(groups.size() - rows, "more group", "more groups") +
           " not in this table | | |\n";
  out += "\n";

  // One collapsible section per group, as many as fit.
  size_t shown = 0;
  bool partial = false;
  for (const auto& [name, g] : groups) {
    if (rows < groups.size()) break;  // the table alone filled the budget
    std::string head = md_section_head(name, g);
    // Table rows, steps, skipped steps, the diagram: what a cut keeps first.
    std::vector<std::string> items = md_state_table(state_rows(name, desired, observed));
    const size_t first_step = items.size();
    size_t blocked_step = 0;
    for (size_t i = 0; i < g.actions.size(); ++i) {
      items.push_back(md_step(i + 1, *g.actions[i], blocked_step));
      if (g.actions[i]->blocked && !blocked_step) blocked_step = i + 1;
    }
    if (!g.skipped.empty()) items.push_back("\n");
    for (const Skipped* s : g.skipped) items.push_back(md_skipped(*s));
    if (!g.actions.empty()) items.push_back("\n" + mermaid_steps(g));
    size_t total = head.size() + std::char_traits<char>::length(kSectionEnd);
    for (const auto& it : items) total += it.size();
    if (out.size() + total <= budget) {
      out += head;
      for (const auto& it : items) out += it;
      out += kSectionEnd;
      ++shown;
      continue;
    }
    // Does not fit whole: show its first steps when at least one fits.
    std::string section = head;
    size_t n = 0;
    while (n < items.size() &&
           out.size() + section.size() + items[n].size() + std::strlen(kSectionEnd) <= budget)
      section += items[n++];
    if (n > 0) {
      out += section;
      size_t steps = std::min(n > first_step ? n - first_step : 0, g.actions.size());
      out += "\n… the rest of " + md(name, 200) + " is not shown (" + std::to_string(steps) +
             " of " + plural(g.actions.size(), "step", "steps") + " shown)\n";
      out += kSectionEnd;
      partial = true;
    }
    break;
  }
  size_t not_shown = groups.size() - shown - (partial ? 1 : 0);
  if (not_shown > 0)
    out += "… " +
           (shown || partial ? plural(not_shown, "more group", "more groups")
                             : plural(not_shown, "group", "groups")) +
           " not shown (plan has " + plural(plan.actions.size(), "action", "actions") +
           "; see the full plan in the job log)\n\n";
  out += footer;
  return cut_utf8(out, limit);
}

namespace {

// ------------------------------------------------------------------ html

// Free text for an HTML element: escape_html() of at most `max` bytes.
std::string h(std::string_view raw, size_t max = 2000) {
  std::string s = one_line(raw);
  bool cut = s.size() > max;
  if (cut) s = cut_utf8(s, max);
  return escape_html(s) + (cut ? "…" : "");
}

// Colours only repeat what text and border shape say: a blocked step is
// labelled BLOCKED and has a thick double border, a step that will not run
// says so and has a dashed one. No '<' or '>' in here (a test scans tags).
const char* const kHtmlStyle = R"css(
:root { --bg: #ffffff; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --bad: #cf222e; --badbg: #ffebe9; --ok: #1a7f37; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --soft: #151b23;
    --bad: #ff7b72; --badbg: #3c1618; --ok: #3fb950; }
}
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .9em;
  background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 0 .3em; }
table { border-collapse: collapse; margin: .8rem 0 1.2rem; }
th, td { border: 1px solid var(--line); padding: .3rem .7rem; text-align: left; vertical-align: top; }
thead th { background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
tr.changed td.after { font-weight: 700; }
.mark { font-size: .8rem; font-weight: 600; border: 1px solid currentColor; border-radius: 1em;
  padding: 0 .45em; margin-left: .4em; white-space: nowrap; }
details { border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem; margin: 1rem 0; }
summary { font-weight: 600; font-size: 1.1rem; cursor: pointer; }
.alert, .unblock { border-left: 6px solid var(--bad); background: var(--badbg); padding: .45rem .8rem;
  margin: .8rem 0; }
ol.steps { list-style: none; padding: 0; margin: 1rem 0; }
li.step { border: 2px solid var(--ok); border-radius: 8px; padding: .5rem .8rem; margin: 0 0 1.9rem;
  position: relative; max-width: 50rem; }
li.step:not(:last-child)::after { content: "\2193"; position: absolute; left: 1.2rem; bottom: -1.8rem;
  font-size: 1.3rem; line-height: 1.8rem; color: var(--muted); }
li.step.blocked { border: 5px double var(--bad); background: var(--badbg); }
li.step.notrun { border: 2px dashed var(--muted); color: var(--muted); }
.step-head { font-weight: 600; }
.detail { font-size: .92rem; color: var(--muted); margin-left: 1.6rem; }
li.step.blocked .detail.why { color: var(--fg); font-weight: 600; }
ul.skipped { padding-left: 1.2rem; }
a { color: inherit; }
footer { color: var(--muted); font-size: .85rem; margin-top: 2rem; }
)css";

std::string html_unblock(const Unblock& u, size_t max_why) {
  std::string where = u.action ? "step " + std::to_string(u.step) + " <code>" +
                                     to_string(u.action->kind) + "</code> " +
                                     h(target_of(*u.action), 200)
                               : "the whole group";
  return where + " — " + h(*u.why, max_why);
}

std::string html_summary_table(const std::map<std::string, GroupView>& groups) {
  std::string s =
      "<table class=\"summary\">\n<thead><tr><th scope=\"col\">group</th>"
      "<th scope=\"col\">actions</th><th scope=\"col\">blocked</th>"
      "<th scope=\"col\">first step</th></tr></thead>\n<tbody>\n";
  size_t n = 0;
  for (const auto& [name, g] : groups) {
    std::string first = g.actions.empty() ? "—"
                                          : "<code>" + std::string(to_string(g.actions[0]->kind)) +
                                                "</code> " + h(target_of(*g.actions[0]), 200);
    s += "<tr><td><a href=\"#group-" + std::to_string(++n) + "\">" + h(name, 200) +
         "</a></td><td class=\"num\">" + std::to_string(g.actions.size()) +
         "</td><td class=\"num\">" + std::to_string(g.blocked) + "</td><td>" + first +
         "</td></tr>\n";
  }
  return s + "</tbody>\n</table>\n";
}

std::string html_state_table(const std::vector<StateRow>& rows) {
  if (rows.empty()) return "";
  std::string s =
      "<table class=\"states\">\n<caption>before → after</caption>\n<thead><tr>"
      "<th scope=\"col\">state</th><th scope=\"col\">before (observed)</th>"
      "<th scope=\"col\">after (desired)</th></tr></thead>\n<tbody>\n";
  for (const auto& r : rows) {
    bool changed = r.before != r.after;
    s += std::string(changed ? "<tr class=\"changed\">" : "<tr>") + "<th scope=\"row\">" +
         h(r.what, 300) + "</th><td>" + h(r.before, 300) + "</td><td class=\"after\">" +
         h(r.after, 300) + (changed ? " <span class=\"mark\">changes</span>" : "") + "</td></tr>\n";
  }
  return s + "</tbody>\n</table>\n";
}

// The steps as boxes joined by arrows: the diagram of render_markdown drawn
// with HTML and CSS alone.
std::string html_steps(const GroupView& g) {
  if (g.actions.empty()) return "";
  std::string s = "<ol class=\"steps\">\n";
  size_t blocked_step = 0;
  for (size_t i = 0; i < g.actions.size(); ++i) {
    const Action& a = *g.actions[i];
    const char* cls = a.blocked ? "step blocked" : blocked_step ? "step notrun" : "step pending";
    const char* mark = a.blocked ? "✖ BLOCKED" : blocked_step ? "not run" : "pending";
    s += std::string("<li class=\"") + cls + "\"><div class=\"step-head\">" +
         std::to_string(i + 1) + ". <code>" + to_string(a.kind) + "</code> " + h(target_of(a)) +
         " <span class=\"mark\">" + mark + "</span></div>\n";
    s += "<div class=\"detail\">reason: " + h(a.reason) + "</div>\n";
    s += "<div class=\"detail\">guard: " + h(a.guard) + "</div>\n";
    if (a.blocked)
      s += "<div class=\"detail why\">BLOCKED: " + h(a.why_blocked) + "</div>\n";
    else if (blocked_step)
      s += "<div class=\"detail\">not run: step " + std::to_string(blocked_step) +
           " is blocked</div>\n";
    s += "</li>\n";
    if (a.blocked && !blocked_step) blocked_step = i + 1;
  }
  return s + "</ol>\n";
}

std::string html_section(size_t n, const std::string& name, const GroupView& g,
                         const DesiredState* desired, const ObservedState* observed) {
  std::string s = "<section class=\"group\" id=\"group-" + std::to_string(n) +
                  "\">\n<details open>\n<summary>" + h(name, 200) + " — " +
                  plural(g.actions.size(), "action", "actions");
  if (g.blocked) s += ", " + std::to_string(g.blocked) + " blocked";
  s += "</summary>\n";
  if (g.group_blocked)
    s += "<p class=\"alert\"><strong>GROUP BLOCKED:</strong> " + h(*g.group_blocked) + "</p>\n";
  if (g.config_error)
    s +=
        "<p class=\"alert\"><strong>CONFIGURATION ERROR:</strong> " + h(*g.config_error) + "</p>\n";
  if (auto u = unblock_of(g))
    s += "<p class=\"unblock\"><strong>To unblock:</strong> " + html_unblock(*u, 2000) + "</p>\n";
  s += html_state_table(state_rows(name, desired, observed));
  s += html_steps(g);
  if (!g.skipped.empty()) {
    s += "<ul class=\"skipped\">\n";
    for (const Skipped* k : g.skipped)
      s += "<li>skipped <code>" + std::string(to_string(k->kind)) + "</code> " + h(k->stack, 200) +
           " — " + h(k->reason) + "</li>\n";
    s += "</ul>\n";
  }
  return s + "</details>\n</section>\n";
}

}  // namespace

std::string render_html(const Plan& plan, const DesiredState* desired,
                        const ObservedState* observed, const RenderOptions&) {
  auto groups = by_group(plan);
  const std::string summary = h(summary_line(plan, groups.size()));
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta name=\"color-scheme\" content=\"light dark\">\n<title>stackflip plan: " +
      summary + "</title>\n<style>" + kHtmlStyle + "</style>\n</head>\n<body>\n<main>\n<h1>" +
      summary + "</h1>\n";
  if (auto first = first_obstacle(groups)) {
    out += "<p class=\"unblock\"><strong>To unblock:</strong> " + h(*first->group, 200) + ", " +
           html_unblock(first->unblock, 1000);
    if (first->more)
      out += " (and " + plural(first->more, "more blocked group", "more blocked groups") + ")";
    out += "</p>\n";
  }
  if (!groups.empty()) out += html_summary_table(groups);
  size_t n = 0;
  for (const auto& [name, g] : groups) out += html_section(++n, name, g, desired, observed);
  out += "<footer>stackflip · desired " + h(short_digest(plan.desired_digest)) + " · observed " +
         h(short_digest(plan.observed_digest)) + "</footer>\n</main>\n</body>\n</html>\n";
  return out;
}

namespace {

void traffic_line(std::ostringstream& out, const TrafficObs& t, const std::string& label) {
  out << label;
  if (!t.absent.empty()) {  // reachable and empty: the plan creates it (issue 17)
    out << (t.absent == "zone" ? "does not exist, nor its zone" : "does not exist") << "\n";
    return;
  }
  if (!t.reachable)
    out << (t.config_error ? "CONFIGURATION ERROR (" : "UNREACHABLE (") << t.error
        << "); last known ";
  std::vector<const TrafficRecord*> enabled;
  for (const auto& r : t.records)
    if (!r.disabled) enabled.push_back(&r);
  if (t.target || enabled.size() <= 1) {
    out << (t.target ? *t.target : std::string("no stack"));
    if (!t.content.empty()) out << " (" << t.content << ")";
  } else {
    out << "MIXED:";
    for (size_t i = 0; i < enabled.size(); ++i)
      out << (i ? ", " : " ") << enabled[i]->content << " ("
          << (enabled[i]->stack ? *enabled[i]->stack : std::string("no stack")) << ")";
  }
  size_t disabled = t.records.size() - enabled.size();
  if (disabled) out << ", " << disabled << " disabled";
  if (t.ttl) out << ", ttl " << *t.ttl;
  if (!t.blocker.empty()) out << "; cannot switch: " << t.blocker;
  out << "\n";
}

}  // namespace

std::string describe_traffic(const TrafficObs& t) {
  std::ostringstream out;
  if (t.parts.size() <= 1) {
    traffic_line(out, t, "  traffic: ");
    return out.str();
  }
  out << "  traffic: " << (t.target ? "all on " + *t.target : std::string("not all on one stack"))
      << "\n";
  for (const TrafficObs& p : t.parts) traffic_line(out, p, "    " + p.name + ": ");
  return out.str();
}

}  // namespace stackflip
