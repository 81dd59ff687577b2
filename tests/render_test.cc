#include "core/render.h"

#include <catch2/catch.hpp>

#include "core/plan.h"
#include "core/plan_json.h"

using namespace stackflip;

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

TEST_CASE("a JSON plan file reads back exactly as written") {
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

TEST_CASE("the JSON plan lists DESIGN.md's fields, source and why_blocked only when set") {
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

TEST_CASE("a plan file with an unknown kind or status is rejected, naming where") {
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

TEST_CASE("text rendering reads like terraform plan") {
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

TEST_CASE("a blocked step says why and the steps after it say they will not run") {
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

TEST_CASE("an empty plan says there is nothing to do") {
  Plan p;
  CHECK(render_text(p).find("No changes. Observed state matches the desired state.") !=
        std::string::npos);
  std::string m = render_markdown(p);
  CHECK(m.find("### No changes. Observed state matches the desired state.") == 0);
  CHECK(m.find("<details>") == std::string::npos);
}

TEST_CASE("without colour there is no escape byte, with colour BLOCKED is red") {
  Plan p = blocked_failover();
  p.actions[0].reason = "a reason with an embedded \x1b[2J escape";
  CHECK(render_text(p, {.color = false}).find('\x1b') == std::string::npos);
  CHECK(render_markdown(p).find('\x1b') == std::string::npos);
  std::string colored = render_text(p, {.color = true});
  CHECK(colored.find("\x1b[1;31mBLOCKED: ") != std::string::npos);
  CHECK(colored.find("\x1b[32mmaintenance.on") != std::string::npos);
  CHECK(colored.find("\x1b[2J") == std::string::npos);
}

TEST_CASE("rendering is deterministic") {
  Plan p = blocked_failover();
  CHECK(render_text(p) == render_text(blocked_failover()));
  CHECK(render_markdown(p) == render_markdown(blocked_failover()));
  CHECK(plan_to_json(p) == plan_to_json(blocked_failover()));
}

TEST_CASE("markdown puts the summary table first and escapes reasons") {
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

TEST_CASE("markdown of 10,000 groups stays under the limit and says what it cut") {
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

TEST_CASE("secret values are redacted, secret references are kept") {
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
