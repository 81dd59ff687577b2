#include "core/render.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
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

std::string md_section_head(const std::string& name, const GroupView& g) {
  std::string s =
      "<details><summary>" + html(name) + " — " + plural(g.actions.size(), "action", "actions");
  if (g.blocked) s += ", " + std::to_string(g.blocked) + " blocked";
  s += "</summary>\n\n";
  if (g.group_blocked) s += "**GROUP BLOCKED: " + md(*g.group_blocked) + "**\n\n";
  if (g.config_error) s += "**CONFIGURATION ERROR: " + md(*g.config_error) + "**\n\n";
  return s;
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
  const size_t limit = o.markdown_limit;
  auto groups = by_group(plan);
  std::string footer = "<sub>stackflip · desired " + md(short_digest(plan.desired_digest)) +
                       " · observed " + md(short_digest(plan.observed_digest)) + "</sub>\n";
  // Room kept for the footer and up to two "not shown" lines.
  const size_t reserve = footer.size() + 2 * 200;
  const size_t budget = limit > reserve ? limit - reserve : 0;

  std::string out = "### " + md(summary_line(plan, groups.size())) + "\n\n";
  if (groups.empty()) return cut_utf8(out + footer, limit);

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
    std::vector<std::string> items;
    size_t blocked_step = 0;
    for (size_t i = 0; i < g.actions.size(); ++i) {
      items.push_back(md_step(i + 1, *g.actions[i], blocked_step));
      if (g.actions[i]->blocked && !blocked_step) blocked_step = i + 1;
    }
    if (!g.skipped.empty()) items.push_back("\n");
    for (const Skipped* s : g.skipped) items.push_back(md_skipped(*s));
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
      size_t steps = std::min(n, g.actions.size());
      out += "\n… the rest of " + html(name) + " is not shown (" + std::to_string(steps) + " of " +
             plural(g.actions.size(), "step", "steps") + " shown)\n";
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

void traffic_line(std::ostringstream& out, const TrafficObs& t, const std::string& label) {
  out << label;
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
