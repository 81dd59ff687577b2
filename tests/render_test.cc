#include "core/render.h"

#include <catch2/catch.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "builders.h"
#include "core/plan.h"
#include "core/plan_json.h"
#include "core/planner.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

Action act(const std::string& group, ActionKind kind, const std::string& stack,
           const std::string& reason, const std::string& source = "") {
  Action a;
  a.group = group;
  a.kind = kind;
  a.stack = stack;
  a.source = source;
  a.reason = reason;
  a.guard = "stack " + stack + " is reachable";
  return a;
}

// The planned switch of DESIGN.md's runbook, primary → standby in group shop.
Plan planned_switch() {
  Plan p;
  p.desired_digest = "3f1a9c0e5b7d2a4c6e8f0a1b2c3d4e5f3f1a9c0e5b7d2a4c6e8f0a1b2c3d4e5f";
  p.observed_digest = "a0b1c2d3e4f5a0b1c2d3e4f5a0b1c2d3e4f5a0b1c2d3e4f5a0b1c2d3e4f5a0b1";
  p.actions = {
      act("shop", ActionKind::maintenance_on, "primary",
          "desired active: standby; primary serves writes"),
      act("shop", ActionKind::replication_wait, "standby", "standby replays 0/3000000 of 0/3000060",
          "primary"),
      act("shop", ActionKind::replication_stop, "standby",
          "standby must stop streaming before promotion"),
      act("shop", ActionKind::database_promote, "standby",
          "desired active: standby; observed role replica"),
      act("shop", ActionKind::maintenance_off, "standby", "active stack accepts writes"),
      act("shop", ActionKind::traffic_switch, "standby",
          "record shop.example.com. holds 203.0.113.10"),
      act("shop", ActionKind::replication_start, "primary", "replication.to includes primary",
          "standby"),
  };
  return p;
}

Plan blocked_failover() {
  Plan p = planned_switch();
  p.actions[3].blocked = true;
  p.actions[3].why_blocked =
      "primary is unreachable, its LSN is unknown; set allow_data_loss: true";
  Skipped s;
  s.group = "shop";
  s.kind = ActionKind::maintenance_on;
  s.stack = "primary";
  s.reason = "primary is unreachable; it is fenced when it comes back";
  p.skipped.push_back(s);
  return p;
}

}  // namespace

TEST_CASE("a JSON plan file reads back exactly as written", "[render]") {
  for (const Plan& p : {planned_switch(), blocked_failover(), Plan{}}) {
    for (bool pretty : {true, false}) {
      std::string json = plan_to_json(p, pretty);
      auto back = plan_from_json(json, "plan.json");
      REQUIRE(back.ok());
      REQUIRE(plan_to_json(*back, pretty) == json);
      REQUIRE(back->actions.size() == p.actions.size());
      for (size_t i = 0; i < p.actions.size(); ++i) {
        CHECK(back->actions[i].kind == p.actions[i].kind);
        CHECK(back->actions[i].source == p.actions[i].source);
        CHECK(back->actions[i].blocked == p.actions[i].blocked);
        CHECK(back->actions[i].why_blocked == p.actions[i].why_blocked);
      }
      REQUIRE(back->skipped.size() == p.skipped.size());
      CHECK(back->desired_digest == p.desired_digest);
    }
  }
}

TEST_CASE("the JSON plan lists DESIGN.md's fields, source and why_blocked only when set",
          "[render]") {
  std::string json = plan_to_json(blocked_failover(), false);
  CHECK(json.rfind(R"({"apiVersion":"stackflip/v1","desired_digest":")", 0) == 0);
  CHECK(json.find(R"("summary":{"groups":1,"actions":7,"blocked":1})") != std::string::npos);
  CHECK(json.find(R"({"group":"shop","kind":"maintenance.on","stack":"primary","reason":)") !=
        std::string::npos);
  CHECK(json.find(R"("kind":"replication.wait","stack":"standby","source":"primary")") !=
        std::string::npos);
  CHECK(json.find(R"("status":"blocked","why_blocked":"primary is unreachable)") !=
        std::string::npos);
  CHECK(json.find(R"("status":"pending","why_blocked")") == std::string::npos);
}

TEST_CASE("a plan file with an unknown kind or status is rejected, naming where", "[render]") {
  std::string json = plan_to_json(planned_switch(), false);
  auto bad_kind = json;
  bad_kind.replace(bad_kind.find("database.promote"), 16, "database.demote");
  auto r = plan_from_json(bad_kind, "p.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find(
            "p.json: /actions/3/kind: unknown action kind \"database.demote\"") == 0);

  auto bad_status = json;
  bad_status.replace(bad_status.find("\"pending\""), 9, "\"done\"");
  r = plan_from_json(bad_status, "p.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("/actions/0/status: unknown status \"done\"") != std::string::npos);

  r = plan_from_json(json.substr(0, 40), "p.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("p.json: offset ") == 0);

  auto edited = json;
  edited.replace(edited.find("\"actions\":7"), 11, "\"actions\":6");
  r = plan_from_json(edited, "p.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("/summary/actions") != std::string::npos);

  r = plan_from_json(R"({"apiVersion":"stackflip/v1","bogus":1})", "p.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("/bogus: unknown member") != std::string::npos);
}

TEST_CASE("text rendering reads like terraform plan", "[render]") {
  std::string t = render_text(planned_switch());
  CHECK(t.find("Group shop (7 actions)\n") != std::string::npos);
  CHECK(t.find("  1. maintenance.on     primary\n") != std::string::npos);
  CHECK(t.find("       reason: desired active: standby; primary serves writes\n") !=
        std::string::npos);
  CHECK(t.find("       guard:  stack primary is reachable\n") != std::string::npos);
  CHECK(t.find("  2. replication.wait   standby from primary\n") != std::string::npos);
  CHECK(t.find("  6. traffic.switch     to standby\n") != std::string::npos);
  CHECK(t.find("Plan: 7 actions in 1 group, 0 blocked.\n") != std::string::npos);
}

TEST_CASE("a blocked step says why and the steps after it say they will not run", "[render]") {
  std::string t = render_text(blocked_failover());
  CHECK(t.find("  4. database.promote   standby   BLOCKED: primary is unreachable") !=
        std::string::npos);
  CHECK(t.find("not run: step 4 is blocked") != std::string::npos);
  CHECK(t.find("  skipped: maintenance.on primary — primary is unreachable;") != std::string::npos);
  CHECK(t.find("Plan: 7 actions in 1 group, 1 blocked.") != std::string::npos);
  std::string m = render_markdown(blocked_failover());
  CHECK(m.find("**BLOCKED: primary is unreachable, its LSN is unknown; set allow\\_data\\_loss: "
               "true**") != std::string::npos);
  CHECK(m.find("<details><summary>shop — 7 actions, 1 blocked</summary>") != std::string::npos);
}

TEST_CASE("an empty plan says there is nothing to do", "[render]") {
  Plan p;
  CHECK(render_text(p).find("No changes. Observed state matches the desired state.") !=
        std::string::npos);
  std::string m = render_markdown(p);
  CHECK(m.find("### No changes. Observed state matches the desired state.") == 0);
  CHECK(m.find("<details>") == std::string::npos);
}

TEST_CASE("without colour there is no escape byte, with colour BLOCKED is red", "[render]") {
  Plan p = blocked_failover();
  p.actions[0].reason = "a reason with an embedded \x1b[2J escape";
  CHECK(render_text(p, {.color = false}).find('\x1b') == std::string::npos);
  CHECK(render_markdown(p).find('\x1b') == std::string::npos);
  std::string colored = render_text(p, {.color = true});
  CHECK(colored.find("\x1b[1;31mBLOCKED: ") != std::string::npos);
  CHECK(colored.find("\x1b[32mmaintenance.on") != std::string::npos);
  CHECK(colored.find("\x1b[2J") == std::string::npos);
}

TEST_CASE("rendering is deterministic", "[render]") {
  Plan p = blocked_failover();
  CHECK(render_text(p) == render_text(blocked_failover()));
  CHECK(render_markdown(p) == render_markdown(blocked_failover()));
  CHECK(plan_to_json(p) == plan_to_json(blocked_failover()));
}

TEST_CASE("markdown puts the summary table first and escapes reasons", "[render]") {
  Plan p = planned_switch();
  p.actions[0].reason = "a|b <script>&c `code`";
  std::string m = render_markdown(p);
  CHECK(m.find("### Plan: 7 actions in 1 group, 0 blocked.") == 0);
  size_t table = m.find("| group | actions | blocked | first step |");
  CHECK(table != std::string::npos);
  CHECK(table < m.find("<details>"));
  CHECK(m.find("| shop | 7 | 0 | `maintenance.on` primary |") != std::string::npos);
  CHECK(m.find("a\\|b &lt;script&gt;&amp;c \\`code\\`") != std::string::npos);
  CHECK(m.find("<script>") == std::string::npos);
  CHECK(m.find("1. `maintenance.on` primary\n") != std::string::npos);
  CHECK(m.find("</details>") != std::string::npos);
}

TEST_CASE("markdown of 10,000 groups stays under the limit and says what it cut", "[render]") {
  Plan p;
  for (int i = 0; i < 10000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "g%05d", i);
    p.actions.push_back(act(name, ActionKind::maintenance_on, "primary", std::string(3000, 'x')));
    p.actions.push_back(act(name, ActionKind::database_promote, "standby", std::string(3000, 'y')));
  }
  std::string m = render_markdown(p);
  CHECK(m.size() <= 65000);
  CHECK(m.find("| group | actions | blocked | first step |") != std::string::npos);
  CHECK(m.find("more groups not in this table") != std::string::npos);
  CHECK(
      m.find(
          "… 10000 groups not shown (plan has 20000 actions; see the full plan in the job log)") !=
      std::string::npos);

  // Few groups with huge reasons: the table is whole, sections are cut.
  Plan q;
  for (int i = 0; i < 200; ++i)
    for (int k = 0; k < 20; ++k)
      q.actions.push_back(act("group" + std::to_string(1000 + i), ActionKind::maintenance_on,
                              "s" + std::to_string(k), std::string(5000, 'z')));
  m = render_markdown(q);
  CHECK(m.size() <= 65000);
  CHECK(m.find("not in this table") == std::string::npos);
  CHECK(m.find("<details>") != std::string::npos);
  CHECK(m.find("more groups not shown (plan has 4000 actions;") != std::string::npos);
  CHECK(m.find("steps shown)") != std::string::npos);

  for (size_t limit : {0, 10, 300, 1000, 5000})
    CHECK(render_markdown(q, {.markdown_limit = limit}).size() <= limit);
}

TEST_CASE("secret values are redacted, secret references are kept", "[render]") {
  CHECK(redact_secrets("dsn host=db password=hunter2 user=x") == "dsn host=db password=*** user=x");
  CHECK(redact_secrets("PASSWORD='a b c' next") == "PASSWORD='***' next");
  CHECK(redact_secrets("url?api_key=abc123&x=1") == "url?api_key=***&x=1");
  CHECK(redact_secrets("access_token=eyJhbGciOi.x.y") == "access_token=***");
  CHECK(redact_secrets("HTTP 401: Authorization: Bearer abc.def") ==
        "HTTP 401: Authorization: Bearer ***");
  CHECK(redact_secrets("api_key=${env:PDNS_API_KEY} token=${file:/run/token}") ==
        "api_key=${env:PDNS_API_KEY} token=${file:/run/token}");
  CHECK(redact_secrets("Bearer ${env:CLOUD66_TOKEN}") == "Bearer ${env:CLOUD66_TOKEN}");
  CHECK(redact_secrets("nothing secret here") == "nothing secret here");

  Plan p = planned_switch();
  p.actions[0].reason = "driver said: password=hunter2 rejected";
  CHECK(render_text(p).find("hunter2") == std::string::npos);
  CHECK(render_markdown(p).find("hunter2") == std::string::npos);
  CHECK(render_markdown(p).find("password=\\*\\*\\*") != std::string::npos);
}

// ------------------------------------------------------------------ issue 16

namespace {

// Text that tries every way out of a Markdown table, a Mermaid label, a
// fenced block and HTML.
const std::string kHostile =
    "a|b`c\"d-->e\nf<script>alert(1)</script>]);%%{init: {}}%%\n```\n#quot;&amp;"
    "[x](https://evil.example/) <img src=x> |---| \\\" end \u2028";

// The desired and observed state of a planned switch of "shop" from primary
// to standby, and its plan.
struct Switch {
  DesiredState desired = make_desired({make_group("standby")});
  ObservedState observed;
  Plan plan;
  Switch() {
    observed.groups["shop"] =
        GroupObs{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
                 traffic_at("primary")};
    observed.groups["shop"].traffic.content = "127.0.0.1";
    plan = make_plan(desired, observed);
  }
};

// The lines of the Markdown table that starts with `header`, header and
// delimiter row included, up to the blank line that ends it.
std::vector<std::string> table_lines(const std::string& md, const std::string& header) {
  std::vector<std::string> lines;
  size_t at = md.find(header);
  if (at == std::string::npos) return lines;
  std::istringstream in(md.substr(at));
  std::string line;
  while (std::getline(in, line) && !line.empty()) lines.push_back(line);
  return lines;
}

// Cell separators of a GFM table row: pipes not escaped by a backslash.
size_t unescaped_pipes(const std::string& row) {
  size_t n = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == '\\') {
      ++i;
      continue;
    }
    n += row[i] == '|';
  }
  return n;
}

// The bodies of the ```mermaid blocks of a comment; `fences_ok` is false
// when a block is not closed or a fence line appears outside a block pair.
std::vector<std::string> mermaid_blocks(const std::string& md, bool& fences_ok) {
  std::vector<std::string> blocks;
  fences_ok = true;
  std::istringstream in(md);
  std::string line, body;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      if (!inside && line == "```mermaid") {
        inside = true;
        body.clear();
      } else if (inside && line == "```") {
        inside = false;
        blocks.push_back(body);
      } else {
        fences_ok = false;
      }
    } else if (inside) {
      body += line + "\n";
    }
  }
  if (inside) fences_ok = false;
  return blocks;
}

// A strict checker for the Mermaid subset render_markdown writes (Debian has
// no Mermaid CLI): the header `flowchart TD`, nodes `id["label"]` whose
// label holds only letters, digits, ` .,:/=+'!?@_-` and #NNN; codes, edges
// `a --> b` between defined nodes, `classDef name prop:value,...` and
// `class id,id name` naming defined nodes and classes. Returns the first
// problem, or "" when the block is valid; fills the labels, decoded, and the
// class of each node.
struct Mermaid {
  std::vector<std::string> labels;
  size_t edges = 0;
  std::map<std::string, std::string> class_of;
};

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string mermaid_problem(const std::string& block, Mermaid& m) {
  static const std::regex node(
      R"re(  ([A-Za-z0-9_]+)\["((?:[A-Za-z0-9 .,:/=+'!?@_-]|#[0-9]{1,7};)*)"\])re");
  static const std::regex edge(R"re(  ([A-Za-z0-9_]+) --> ([A-Za-z0-9_]+))re");
  static const std::regex class_def(
      R"re(  classDef ([A-Za-z0-9_]+) [a-z-]+:[#A-Za-z0-9. ]+(?:,[a-z-]+:[#A-Za-z0-9. ]+)*)re");
  static const std::regex class_line(
      R"re(  class ([A-Za-z0-9_]+(?:,[A-Za-z0-9_]+)*) ([A-Za-z0-9_]+))re");
  static const std::regex code(R"re(#([0-9]+);)re");
  std::istringstream in(block);
  std::string line;
  if (!std::getline(in, line) || line != "flowchart TD") return "no flowchart TD header: " + line;
  std::set<std::string> nodes, classes;
  std::smatch mm;
  while (std::getline(in, line)) {
    if (std::regex_match(line, mm, node)) {
      if (!nodes.insert(mm[1]).second) return "node defined twice: " + line;
      std::string label, raw = mm[2];
      size_t at = 0;
      for (std::sregex_iterator it(raw.begin(), raw.end(), code), end; it != end; ++it) {
        label += raw.substr(at, it->position() - at);
        unsigned long cp = std::stoul((*it)[1]);
        if (cp == 0 || cp > 0x10FFFF) return "bad entity code: " + line;
        append_utf8(label, static_cast<uint32_t>(cp));
        at = it->position() + it->length();
      }
      m.labels.push_back(label + raw.substr(at));
    } else if (std::regex_match(line, mm, edge)) {
      if (!nodes.count(mm[1]) || !nodes.count(mm[2])) return "edge to an undefined node: " + line;
      ++m.edges;
    } else if (std::regex_match(line, mm, class_def)) {
      classes.insert(mm[1]);
    } else if (std::regex_match(line, mm, class_line)) {
      if (!classes.count(mm[2])) return "class not defined: " + line;
      std::istringstream ids(mm[1]);
      for (std::string id; std::getline(ids, id, ',');) {
        if (!nodes.count(id)) return "class of an undefined node: " + line;
        m.class_of[id] = mm[2];
      }
    } else {
      return "not in the subset: " + line;
    }
  }
  return "";
}

// The Mermaid blocks of `md`, each checked; fails the test on a problem.
std::vector<Mermaid> checked_mermaid(const std::string& md) {
  bool fences_ok = false;
  std::vector<Mermaid> out;
  for (const auto& b : mermaid_blocks(md, fences_ok)) {
    Mermaid m;
    INFO(b);
    CHECK(mermaid_problem(b, m) == "");
    out.push_back(m);
  }
  CHECK(fences_ok);
  return out;
}

// Tags of an HTML document that render_html may write.
const std::set<std::string> kHtmlTags = {
    "html",  "head",   "meta", "title", "style", "body", "main",    "h1",      "table",   "thead",
    "tbody", "tr",     "th",   "td",    "a",     "code", "caption", "section", "details", "summary",
    "p",     "strong", "ol",   "li",    "div",   "span", "ul",      "footer"};

// Checks that every tag is one render_html writes, with plain quoted
// attributes (no src, a href only to an anchor of the page), and that tags
// nest and close. Returns the first problem or "".
std::string html_problem(const std::string& doc) {
  static const std::regex attrs(R"re((?: [a-z-]+(?:="[^"<>]*")?)*)re");
  static const std::regex href(R"re(href="([^"]*)")re");
  std::vector<std::string> open;
  size_t i = 0;
  if (doc.rfind("<!DOCTYPE html>\n", 0) != 0) return "no doctype";
  i = doc.find('\n') + 1;
  while ((i = doc.find('<', i)) != std::string::npos) {
    size_t end = doc.find('>', i);
    if (end == std::string::npos) return "unclosed tag at " + std::to_string(i);
    std::string tag = doc.substr(i + 1, end - i - 1);
    bool closing = !tag.empty() && tag[0] == '/';
    if (closing) tag.erase(0, 1);
    size_t name_end = tag.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789");
    std::string name = tag.substr(0, name_end);
    std::string rest = name_end == std::string::npos ? "" : tag.substr(name_end);
    if (!kHtmlTags.count(name)) return "unexpected tag <" + tag + ">";
    if (!std::regex_match(rest, attrs) || (closing && !rest.empty()))
      return "unexpected attributes in <" + tag + ">";
    if (rest.find("src=") != std::string::npos) return "src in <" + tag + ">";
    std::smatch mm;
    if (std::regex_search(rest, mm, href) && mm[1].str().rfind('#', 0) != 0)
      return "link off the page in <" + tag + ">";
    i = end + 1;
    if (name == "meta") continue;  // void
    if (closing) {
      if (open.empty() || open.back() != name) return "</" + name + "> does not close the open tag";
      open.pop_back();
    } else {
      open.push_back(name);
      if (name == "style") {  // raw text up to </style>
        size_t close = doc.find("</style>", i);
        if (close == std::string::npos) return "unclosed style";
        if (doc.substr(i, close - i).find('<') != std::string::npos) return "'<' in the style";
        i = close;
      }
    }
  }
  if (!open.empty()) return "<" + open.back() + "> not closed";
  return "";
}

bool self_contained(const std::string& doc) {
  for (const char* ref : {"http://", "https://", "src=", "url(", "@import", "<link", "<script",
                          "<img", "<iframe", "<object"})
    if (doc.find(ref) != std::string::npos) return false;
  return true;
}

}  // namespace

TEST_CASE("issue 16: the PR comment shows each group's state before and after a planned switch",
          "[render]") {
  Switch s;
  std::string m = render_markdown(s.plan, &s.desired, &s.observed);
  auto rows = table_lines(m, "| state | before (observed) | after (desired) |");
  CHECK(rows == std::vector<std::string>{
                    "| state | before (observed) | after (desired) |",
                    "|---|---|---|",
                    "| primary | primary | **standby** |",
                    "| traffic target | primary (127.0.0.1) | **standby (127.0.0.2)** |",
                    "| replication into primary | none (is primary) | **from standby** |",
                    "| replication into standby | from primary | **none (is primary)** |",
                    "| maintenance of primary | off | **on** |",
                    "| maintenance of standby | on | **off** |",
                });
  // Inside the group's section: the table, then the steps, then the diagram.
  size_t details = m.find("<details><summary>shop — 7 actions</summary>");
  size_t table = m.find("| state | before (observed)");
  size_t steps = m.find("1. `maintenance.on` primary\n");
  size_t diagram = m.find("```mermaid\nflowchart TD\n");
  CHECK(details < table);
  CHECK(table < steps);
  CHECK(steps < diagram);
  CHECK(diagram < m.find("</details>"));
  CHECK(m.find("To unblock") == std::string::npos);
  // A value that stays is not bold.
  Switch converged;
  converged.desired = make_desired({make_group("primary")});
  m = render_markdown(make_plan(converged.desired, converged.observed), &converged.desired,
                      &converged.observed);
  CHECK(m.find("before (observed)") == std::string::npos);  // a converged group has no section
}

TEST_CASE("issue 16: without the states the comment is as before: no table", "[render]") {
  Switch s;
  CHECK(render_markdown(s.plan) == render_markdown(s.plan, nullptr, nullptr));
  CHECK(render_markdown(s.plan).find("before (observed)") == std::string::npos);
  CHECK(render_markdown(s.plan, &s.desired, nullptr).find("before (observed)") ==
        std::string::npos);
  CHECK(render_markdown(s.plan, nullptr, &s.observed).find("before (observed)") ==
        std::string::npos);
  // The diagram does not need the states.
  CHECK(checked_mermaid(render_markdown(s.plan)).size() == 1);
}

TEST_CASE("issue 16: unreachable and unobserved values are shown as such, never guessed",
          "[render]") {
  Switch s;
  GroupObs& g = s.observed.groups["shop"];
  g.stacks["primary"] = unreachable(primary(false));
  g.stacks["standby"].maintenance.reset();
  g.stacks["standby"].database.reset();
  g.traffic.reachable = false;
  s.plan = make_plan(s.desired, s.observed);
  std::string m = render_markdown(s.plan, &s.desired, &s.observed);
  auto rows = table_lines(m, "| state | before (observed) | after (desired) |");
  REQUIRE(rows.size() == 8);
  CHECK(rows[2] ==
        "| primary | primary unreachable, last known: primary; standby unknown | "
        "**standby** |");
  CHECK(rows[3] ==
        "| traffic target | unreachable, last known: primary (127.0.0.1) | **standby (127.0.0.2)** "
        "|");
  CHECK(rows[4] ==
        "| replication into primary | unreachable, last known: none (is primary) | "
        "**from standby** |");
  CHECK(rows[5] == "| replication into standby | unknown | **none (is primary)** |");
  CHECK(rows[6] == "| maintenance of primary | unreachable, last known: off | **on** |");
  CHECK(rows[7] == "| maintenance of standby | unknown | **off** |");

  // A group the observation does not have at all, and a stack the config
  // does not have.
  ObservedState none;
  m = render_markdown(s.plan, &s.desired, &none);
  rows = table_lines(m, "| state | before (observed) | after (desired) |");
  REQUIRE(rows.size() == 8);
  for (size_t i = 2; i < rows.size(); ++i)
    CHECK(rows[i].find(" | unknown | ") != std::string::npos);
  Switch extra;
  extra.observed.groups["shop"].stacks["old"] = replica(true, "primary");
  extra.plan = make_plan(extra.desired, extra.observed);
  m = render_markdown(extra.plan, &extra.desired, &extra.observed);
  CHECK(m.find("| replication into old | from primary | **not in the config** |") !=
        std::string::npos);
}

TEST_CASE("issue 16: a blocked plan says first what would unblock it", "[render]") {
  Plan p = blocked_failover();
  std::string m = render_markdown(p);
  const std::string why =
      "primary is unreachable, its LSN is unknown; set allow\\_data\\_loss: true";
  size_t top = m.find("**To unblock:** shop, step 4 `database.promote` standby — " + why + "\n");
  CHECK(top != std::string::npos);
  CHECK(top < m.find("| group | actions |"));
  CHECK(m.find("**To unblock:** step 4 `database.promote` standby — " + why + "\n") >
        m.find("<details>"));
  std::string page = render_html(p, nullptr, nullptr);
  CHECK(page.find("<p class=\"unblock\"><strong>To unblock:</strong> shop, step 4 "
                  "<code>database.promote</code> standby — primary is unreachable") !=
        std::string::npos);

  // A group blocked as a whole says its Plan::blocked_groups reason; the
  // other blocked groups are counted.
  Plan q = planned_switch();
  for (auto& a : q.actions) {
    a.blocked = true;
    a.why_blocked = "stacks primary and standby are one database server";
  }
  q.blocked_groups["shop"] = "stacks primary and standby are one database server";
  q.actions.push_back(act("zoo", ActionKind::database_promote, "b", "promote"));
  q.actions.back().blocked = true;
  q.actions.back().why_blocked = "b lags";
  m = render_markdown(q);
  CHECK(m.find("**To unblock:** shop, the whole group — stacks primary and standby are one "
               "database server (and 1 more blocked group)\n") != std::string::npos);
  CHECK(m.find("**To unblock:** step 1 `database.promote` b — b lags\n") != std::string::npos);
  CHECK(render_html(q, nullptr, nullptr).find("shop, the whole group — stacks primary") !=
        std::string::npos);
}

TEST_CASE("issue 16: the Mermaid diagram passes a strict syntax check and marks blocked steps",
          "[render]") {
  auto ok = checked_mermaid(render_markdown(planned_switch()));
  REQUIRE(ok.size() == 1);
  CHECK(ok[0].labels.size() == 7);
  CHECK(ok[0].edges == 6);
  CHECK(ok[0].labels[0] == "1. maintenance.on primary");
  CHECK(ok[0].labels[5] == "6. traffic.switch to standby");
  CHECK(ok[0].class_of.empty());

  auto blocked = checked_mermaid(render_markdown(blocked_failover()));
  REQUIRE(blocked.size() == 1);
  CHECK(blocked[0].labels[3] == "4. BLOCKED: database.promote standby");
  CHECK(blocked[0].labels[4] == "5. not run: maintenance.off standby");
  CHECK(blocked[0].class_of ==
        std::map<std::string, std::string>{
            {"s4", "blocked"}, {"s5", "notrun"}, {"s6", "notrun"}, {"s7", "notrun"}});
}

TEST_CASE("issue 16: hostile names and reasons cannot break the table, the diagram or the HTML",
          "[render]") {
  // Stack and group names from a hostile config or snapshot, reasons from
  // provider errors.
  Plan p;
  const std::string group = "g" + kHostile;
  for (int i = 0; i < 3; ++i) {
    Action a =
        act(group, ActionKind::replication_start, kHostile + std::to_string(i), kHostile, kHostile);
    a.guard = kHostile;
    a.blocked = i == 1;
    a.why_blocked = kHostile;
    p.actions.push_back(a);
  }
  p.blocked_groups[group] = kHostile;
  p.config_errors[group] = kHostile;
  DesiredState d = make_desired({make_group(kHostile, false, {kHostile, "b|c"}, group)});
  ObservedState obs;
  obs.groups[group] = GroupObs{{{kHostile, primary(false)}, {"b|c", replica(true, kHostile)}},
                               traffic_at(kHostile)};
  obs.groups[group].traffic.content = kHostile;

  auto count = [&](const std::string& doc, const std::string& what) {
    size_t n = 0;
    for (size_t at = doc.find(what); at != std::string::npos; at = doc.find(what, at + 1)) ++n;
    return n;
  };
  std::string m = render_markdown(p, &d, &obs);
  // Each table row still has exactly its cells.
  auto rows = table_lines(m, "| state | before (observed) | after (desired) |");
  REQUIRE(rows.size() == 8);
  for (const auto& r : rows) {
    INFO(r);
    CHECK(unescaped_pipes(r) == 4);
  }
  auto summary = table_lines(m, "| group | actions | blocked | first step |");
  REQUIRE(summary.size() == 3);
  CHECK(unescaped_pipes(summary[2]) == 5);
  // No tag, fence or link of the attacker's survives; the diagram is valid
  // and its labels read back as the (one-line) text.
  CHECK(m.find("<script") == std::string::npos);
  CHECK(m.find("<img") == std::string::npos);
  // (The <summary> line is raw HTML, where Markdown makes no link.)
  std::string markdown_text = std::regex_replace(m, std::regex("<summary>.*</summary>"), "");
  CHECK(count(markdown_text, "](https://") == count(markdown_text, "\\](https://"));
  auto diagrams = checked_mermaid(m);
  REQUIRE(diagrams.size() == 1);
  std::string one_line = kHostile;
  for (char& c : one_line)
    if (c == '\n') c = ' ';
  CHECK(diagrams[0].labels[0].find("1. replication.start " + one_line.substr(0, 80)) == 0);
  CHECK(diagrams[0].labels[1].find("2. BLOCKED: replication.start") == 0);
  // <details> and <summary> open and close in pairs.
  CHECK(count(m, "<details>") == count(m, "</details>"));
  CHECK(count(m, "<summary>") == count(m, "</summary>"));

  std::string page = render_html(p, &d, &obs);
  CHECK(html_problem(page) == "");
  CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(page.find("<script") == std::string::npos);
  CHECK(page.find("<img") == std::string::npos);
}

TEST_CASE("issue 16: the HTML plan is one well-formed, self-contained page", "[render]") {
  Switch s;
  std::string page = render_html(s.plan, &s.desired, &s.observed);
  CHECK(html_problem(page) == "");
  CHECK(self_contained(page));
  CHECK(page.find("@media (prefers-color-scheme: dark)") != std::string::npos);
  CHECK(page.find("<h1>Plan: 7 actions in 1 group, 0 blocked.</h1>") != std::string::npos);
  CHECK(page.find("<tr class=\"changed\"><th scope=\"row\">primary</th><td>primary</td>"
                  "<td class=\"after\">standby <span class=\"mark\">changes</span></td></tr>") !=
        std::string::npos);
  CHECK(page.find("<tr><th scope=\"row\">primary</th>") == std::string::npos);
  CHECK(
      page.find("<li class=\"step pending\"><div class=\"step-head\">1. "
                "<code>maintenance.on</code> primary <span class=\"mark\">pending</span></div>") !=
      std::string::npos);
  CHECK(page == render_html(s.plan, &s.desired, &s.observed));

  // Blocked and not-run steps are told by text (and shape), not colour.
  std::string blocked = render_html(blocked_failover(), nullptr, nullptr);
  CHECK(html_problem(blocked) == "");
  CHECK(self_contained(blocked));
  CHECK(
      blocked.find("<li class=\"step blocked\"><div class=\"step-head\">4. "
                   "<code>database.promote</code> standby <span class=\"mark\">✖ BLOCKED</span>") !=
      std::string::npos);
  CHECK(blocked.find("<div class=\"detail\">not run: step 4 is blocked</div>") !=
        std::string::npos);
  CHECK(blocked.find("<li>skipped <code>maintenance.on</code> primary — primary is unreachable") !=
        std::string::npos);
  CHECK(html_problem(render_html(Plan{}, nullptr, nullptr)) == "");

  // Secrets are redacted here too.
  Plan p = planned_switch();
  p.actions[0].reason = "driver said: password=hunter2 rejected";
  CHECK(render_html(p, nullptr, nullptr).find("hunter2") == std::string::npos);
}

TEST_CASE("issue 16: with the states and hostile text the comment stays under 65,000 bytes",
          "[render]") {
  // Thousands of groups, each with its states and huge hostile reasons.
  Plan p;
  DesiredState d = make_desired({});
  ObservedState obs;
  for (int i = 0; i < 3000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "g%05d", i);
    d.groups[name] = make_group("standby", false, {"primary", "standby"}, name);
    obs.groups[name] =
        GroupObs{{{"primary", primary(false)}, {"standby", replica(true, "primary")}},
                 traffic_at("primary")};
    for (auto kind : {ActionKind::maintenance_on, ActionKind::database_promote}) {
      Action a = act(name, kind, "standby", kHostile + std::string(3000, '|'));
      a.why_blocked = std::string(5000, '`');
      a.blocked = kind == ActionKind::database_promote;
      p.actions.push_back(a);
    }
  }
  std::string m = render_markdown(p, &d, &obs);
  CHECK(m.size() <= 65000);
  CHECK(m.find("**To unblock:** g00000, step 2 `database.promote` standby — ") !=
        std::string::npos);
  CHECK(m.find("more groups not in this table") != std::string::npos);
  checked_mermaid(m);

  // Few groups: sections with tables and diagrams until the budget, then cut.
  Plan q;
  for (int i = 0; i < 40; ++i)
    for (int k = 0; k < 20; ++k)
      q.actions.push_back(act("group" + std::to_string(1000 + i), ActionKind::maintenance_on,
                              "s" + std::to_string(k) + kHostile, std::string(900, '%')));
  DesiredState dq = make_desired({});
  ObservedState oq;
  for (int i = 0; i < 40; ++i) {
    std::string name = "group" + std::to_string(1000 + i);
    dq.groups[name] = make_group("b", false, {"a", "b"}, name);
    oq.groups[name] = GroupObs{{{"a", primary(false)}, {"b", replica(true, "a")}}, traffic_at("a")};
  }
  m = render_markdown(q, &dq, &oq);
  CHECK(m.size() <= 65000);
  CHECK(m.size() > 60000);
  CHECK(m.find("| state | before (observed) | after (desired) |") != std::string::npos);
  CHECK(m.find("steps shown)") != std::string::npos);
  CHECK(m.find("more groups not shown") != std::string::npos);
  CHECK(checked_mermaid(m).size() >= 1);
  for (size_t limit : {0, 10, 300, 1000, 5000, 20000})
    CHECK(render_markdown(q, &dq, &oq, {.markdown_limit = limit}).size() <= limit);
}

TEST_CASE("observe's traffic line says when the record or its zone does not exist", "[render]") {
  TrafficObs t;
  t.absent = "record";
  CHECK(describe_traffic(t) == "  traffic: does not exist\n");
  t.absent = "zone";
  CHECK(describe_traffic(t) == "  traffic: does not exist, nor its zone\n");
}
