// The status page (issue 16): what it shows from a pass report and the
// journal, that hostile text stays text, the paging bounds, the timeline's
// figures, and the session cookie.
#include "gitops/status_page.h"

#include <catch2/catch.hpp>

#include "gitops/server.h"
#include "temp_dir.h"

using namespace stackflip;

namespace {

using stackflip::testing::TempDir;

// A journal row pair: started at `at` (ms after 12:00:00.000), `ms` long.
void step(std::vector<JournalEntry>& rows, const std::string& kind, const std::string& stack,
          int at, int ms, const std::string& result = "ok", const std::string& detail = "") {
  auto time = [](int t) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "2026-12-01T12:%02d:%02d.%03dZ", t / 60000, t / 1000 % 60,
                  t % 1000);
    return std::string(buf);
  };
  JournalEntry s;
  s.id = static_cast<int64_t>(rows.size()) + 1;
  s.time = time(at);
  s.group = "shop";
  s.kind = kind;
  s.stack = stack;
  s.phase = "started";
  s.open = result.empty();
  rows.push_back(s);
  if (result.empty()) return;
  JournalEntry f = s;
  f.id = s.id + 1;
  f.time = time(at + ms);
  f.phase = "finished";
  f.result = result;
  f.error = detail;
  f.duration_ms = ms;
  f.start_id = s.id;
  f.open = false;
  rows.push_back(f);
}

PassReport report_with(const std::vector<std::string>& groups) {
  PassReport rep;
  rep.run.result = "applied";
  rep.run.started_at = "2026-12-01T12:00:00Z";
  rep.commit_in_force = "0123456789abcdef0123456789abcdef01234567";
  rep.commit_info = {rep.commit_in_force, "Ops <ops@example.test>", "fail over shop", ""};
  ObservedState obs;
  for (const auto& g : groups) {
    GroupStatus gs;
    gs.active = "standby";
    gs.converged = true;
    rep.groups[g] = gs;
    GroupObs go;
    StackObs p, s;
    p.reachable = s.reachable = true;
    p.maintenance = true;
    s.maintenance = false;
    p.database = DatabaseObs{Role::replica, "standby", 1000, 2, true, {}, {}};
    s.database = DatabaseObs{Role::primary, std::nullopt, 1300, 2, {}, {}, {}};
    go.stacks["primary"] = p;
    go.stacks["standby"] = s;
    go.traffic.target = "standby";
    go.traffic.ttl = 60;
    obs.groups[g] = go;
  }
  rep.observed = obs;
  return rep;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("query_param decodes percent and plus, and ignores what it does not know") {
  CHECK(query_param("name=a%20b&page=2", "name") == "a b");
  CHECK(query_param("name=a+b", "name") == "a b");
  CHECK(query_param("page=2", "name").empty());
  CHECK(query_param("name=%zz%4", "name") == "%zz%4");  // malformed escapes kept as text
  CHECK(query_param("xname=1&name=2", "name") == "2");
  CHECK(query_param("", "name").empty());
}

TEST_CASE("the timeline marks when writes stopped and were accepted again") {
  std::vector<JournalEntry> rows;
  step(rows, "maintenance.on", "primary", 0, 200);
  step(rows, "replication.wait", "standby", 200, 50);
  step(rows, "replication.stop", "standby", 250, 30);
  step(rows, "database.promote", "standby", 280, 100);
  step(rows, "maintenance.off", "standby", 380, 40);
  step(rows, "traffic.switch", "standby", 420, 20);
  std::string svg = switch_timeline_svg(rows);
  REQUIRE_FALSE(svg.empty());
  CHECK(count(svg, "<g class=\"step\"") == 6);
  CHECK(count(svg, "data-result=\"ok\"") == 6);
  // Fence ended at 200 ms, the new primary left maintenance at 420 ms.
  CHECK(svg.find("writes refused for 0.220 s") != std::string::npos);
  CHECK(count(svg, "class=\"marker mark-stop\"") == 1);
  CHECK(count(svg, "class=\"marker mark-resume\"") == 1);
  CHECK(svg.find("data-loss") == std::string::npos);
}

TEST_CASE("the timeline shows an accepted data loss, a failed and a running step") {
  std::vector<JournalEntry> rows;
  step(rows, "replication.stop", "standby", 0, 30);
  step(rows, "database.promote", "standby", 30, 100, "ok", "data loss accepted: 4096 bytes");
  step(rows, "maintenance.off", "standby", 130, 40, "failed", "connection refused");
  step(rows, "traffic.switch", "standby", 170, 0, "");  // no end recorded
  std::string svg = switch_timeline_svg(rows);
  CHECK(svg.find("id=\"data-loss\">data loss accepted: 4096 bytes") != std::string::npos);
  CHECK(svg.find("data-kind=\"maintenance.off\" data-result=\"failed\"") != std::string::npos);
  CHECK(svg.find("✕ failed") != std::string::npos);
  CHECK(svg.find("data-kind=\"traffic.switch\" data-result=\"running\"") != std::string::npos);
  CHECK(svg.find("… running") != std::string::npos);
  // No fence in this sequence: no write gap is claimed.
  CHECK(svg.find("writes refused") == std::string::npos);
}

TEST_CASE("a switch that failed safe shows writes accepted again on the re-opened stack") {
  std::vector<JournalEntry> rows;
  step(rows, "maintenance.on", "primary", 0, 100);
  step(rows, "replication.stop", "standby", 100, 20);
  step(rows, "database.promote", "standby", 120, 300, "failed", "refused");
  step(rows, "maintenance.off", "primary", 420, 30);  // the fail safe
  std::string svg = switch_timeline_svg(rows);
  CHECK(svg.find("writes refused for 0.350 s") != std::string::npos);
  CHECK(svg.find("data-kind=\"database.promote\" data-result=\"failed\"") != std::string::npos);
}

TEST_CASE("the passes table pages back 10,000 passes at most") {
  TempDir dir;
  auto store = StateStore::open(dir.file("state.db"));
  REQUIRE(store.ok());
  for (int i = 0; i < 45; ++i) {
    RunRecord r;
    r.result = "no-changes";
    r.commit = "c" + std::to_string(i);
    REQUIRE((*store)->record_run(r).ok());
  }
  PassReport rep = report_with({"shop"});
  StatusPageInput in;
  in.last = &rep;
  in.store = store->get();
  std::string p1 = render_overview_page(in, "");
  CHECK(count(p1.substr(p1.find("id=\"runs\"")), "<tr><td>") == 20);
  CHECK(p1.find("href=\"/?runs=2\"") != std::string::npos);
  std::string p3 = render_overview_page(in, "runs=3");
  CHECK(count(p3.substr(p3.find("id=\"runs\"")), "<tr><td>") == 5);
  CHECK(p3.find("href=\"/?runs=4\"") == std::string::npos);
  // Far beyond: the last page allowed, empty here, and no further link.
  std::string far = render_overview_page(in, "runs=999999");
  CHECK(far.find("href=\"/?runs=501\"") == std::string::npos);
}

TEST_CASE("a step running after the last switch draws the switch under way") {
  std::vector<JournalEntry> rows;
  step(rows, "traffic.switch", "primary", 0, 10);  // a TTL correction, long ago
  step(rows, "traffic.ttl", "primary", 30 * 60000, 20);
  step(rows, "traffic.wait", "primary", 30 * 60000 + 20, 0, "");
  std::string svg = switch_timeline_svg(rows);
  CHECK(count(svg, "<g class=\"step\"") == 2);
  CHECK(svg.find("data-kind=\"traffic.wait\" data-result=\"running\"") != std::string::npos);
}

TEST_CASE("the timeline keeps to the switch's own sequence") {
  std::vector<JournalEntry> rows;
  step(rows, "maintenance.on", "standby", 0, 10);  // 20 minutes before: another episode
  step(rows, "maintenance.on", "primary", 20 * 60000, 100);
  step(rows, "database.promote", "standby", 20 * 60000 + 100, 100);
  std::string svg = switch_timeline_svg(rows);
  CHECK(count(svg, "<g class=\"step\"") == 2);
  CHECK(switch_timeline_svg({}).empty());
  std::vector<JournalEntry> no_switch;
  step(no_switch, "maintenance.on", "standby", 0, 10);
  CHECK(switch_timeline_svg(no_switch).empty());
}

TEST_CASE("hostile names, errors and commit messages stay text on the pages") {
  const std::string evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
  PassReport rep = report_with({evil});
  rep.groups[evil].converged = false;
  rep.groups[evil].outcome = GroupOutcome::failed;
  rep.groups[evil].reason = evil + " password=hunter2";
  rep.commit_info.summary = evil;
  rep.commit_info.author = evil;
  rep.observed->groups[evil].stacks["primary"].reachable = false;
  rep.observed->groups[evil].stacks["primary"].error = evil;
  StatusPageInput in;
  in.last = &rep;
  in.repo = evil;
  for (const std::string& html :
       {render_overview_page(in, ""), *render_group_page(in, "name=" + evil)}) {
    CHECK(html.find("<script>alert") == std::string::npos);
    CHECK(html.find("<img") == std::string::npos);
    CHECK(html.find("&lt;script&gt;alert(1)") != std::string::npos);
    CHECK(html.find("hunter2") == std::string::npos);  // redacted
    CHECK(count(html, "<script>") == 1);               // the page's own
    // Self-contained: nothing is loaded from anywhere.
    CHECK(html.find("src=\"http") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
  }
  std::string huge(1 << 20, 'x');
  rep.groups[evil].reason = huge;
  CHECK(render_overview_page(in, "").size() < 64 * 1024);
}

TEST_CASE("the overview shows each group's stacks and state, and pages through many groups") {
  std::vector<std::string> names;
  for (int i = 0; i < 250; ++i) names.push_back("g" + std::to_string(1000 + i));
  PassReport rep = report_with(names);
  rep.groups["g1200"].converged = false;
  rep.groups["g1200"].outcome = GroupOutcome::blocked;
  rep.groups["g1200"].reason = "the standby lags";
  StatusPageInput in;
  in.last = &rep;
  std::string p1 = render_overview_page(in, "");
  CHECK(count(p1, "<tr data-group=") == 100);
  CHECK(p1.find("249 of 250 groups converged") != std::string::npos);
  // The group that needs a look comes first, blocked by symbol and word.
  CHECK(p1.find("data-group=\"g1200\" data-state=\"blocked\"") < p1.find("data-group=\"g1000\""));
  CHECK(p1.find("▲ blocked") != std::string::npos);
  CHECK(p1.find("rel=\"next\" href=\"/?page=2\"") != std::string::npos);
  CHECK(count(render_overview_page(in, "page=3"), "<tr data-group=") == 50);
  CHECK(count(render_overview_page(in, "page=999999"), "<tr data-group=") == 0);
  CHECK(count(render_overview_page(in, "page=99999999999"), "<tr data-group=") == 100);  // → 1
  std::string row = p1.substr(p1.find("data-group=\"g1000\""), 600);
  CHECK(row.find("<td class=\"serving\">standby</td>") != std::string::npos);
  CHECK(row.find("standby, TTL 60 s") != std::string::npos);
  CHECK(row.find("✓ primary: streaming from standby, lag 300 bytes") != std::string::npos);
  rep.observed->groups["g1000"].stacks["primary"].database->streaming = false;
  rep.observed->groups["g1001"].stacks["primary"].reachable = false;
  std::string again = render_overview_page(in, "");
  CHECK(again.find("▲ primary: not streaming from standby") != std::string::npos);
  CHECK(again.find("✕ primary: unreachable") != std::string::npos);
  rep.observed->groups["g1002"].traffic = TrafficObs{};
  rep.observed->groups["g1002"].traffic.absent = "record";
  CHECK(render_overview_page(in, "").find("<td class=\"traffic\">does not exist</td>") !=
        std::string::npos);
}

TEST_CASE("the group page shows roles, lag, the journal one row per action, and paging") {
  TempDir dir;
  auto store = StateStore::open((dir.path / "state.db").string());
  REQUIRE(store.ok());
  Action a;
  a.group = "shop";
  a.stack = "standby";
  for (int i = 0; i < 60; ++i) {
    a.kind = i % 2 ? ActionKind::maintenance_off : ActionKind::database_promote;
    auto id = (*store)->begin(a, "c0ffee");
    REQUIRE(id.ok());
    REQUIRE((*store)->finish(*id, "ok", "", 5).ok());
  }
  PassReport rep = report_with({"shop"});
  StatusPageInput in;
  in.last = &rep;
  in.store = store->get();
  CHECK_FALSE(render_group_page(in, "name=nope"));
  std::string html = *render_group_page(in, "name=shop");
  CHECK(html.find("<td class=\"role\">replica</td>") != std::string::npos);
  CHECK(html.find("<td class=\"lag\">300 bytes</td>") != std::string::npos);
  CHECK(html.find("from standby, streaming") != std::string::npos);
  CHECK(html.find("id=\"switch-timeline\"") != std::string::npos);
  size_t journal = html.find("id=\"journal-table\"");
  REQUIRE(journal != std::string::npos);
  CHECK(count(html.substr(journal), "<tr data-kind=") == 25);  // 50 rows, 25 actions
  size_t next = html.find("before=", journal);
  REQUIRE(next != std::string::npos);
  std::string before = html.substr(next + 7, html.find('"', next) - next - 7);
  // 120 rows: 50, 50 and 20 a page.
  std::string older = *render_group_page(in, "name=shop&before=" + before);
  std::string rest = older.substr(older.find("id=\"journal-table\""));
  CHECK(count(rest, "<tr data-kind=") == 25);
  next = rest.find("before=");
  REQUIRE(next != std::string::npos);
  before = rest.substr(next + 7, rest.find('"', next) - next - 7);
  std::string oldest = *render_group_page(in, "name=shop&before=" + before);
  rest = oldest.substr(oldest.find("id=\"journal-table\""));
  CHECK(count(rest, "<tr data-kind=") == 10);
  CHECK(rest.find("rel=\"next\"") == std::string::npos);
}

TEST_CASE("the state store pages the journal and the passes, and finds the last switch") {
  TempDir dir;
  auto store = StateStore::open((dir.path / "state.db").string());
  REQUIRE(store.ok());
  Action a;
  a.group = "shop";
  a.stack = "primary";
  for (ActionKind k : {ActionKind::maintenance_on, ActionKind::database_promote,
                       ActionKind::maintenance_off}) {
    a.kind = k;
    auto id = (*store)->begin(a, "c1");
    REQUIRE((*store)->finish(*id, "ok", "", 1).ok());
  }
  a.group = "blog";
  a.kind = ActionKind::maintenance_on;
  REQUIRE((*store)->begin(a, "c1").ok());
  auto sw = (*store)->last_switch("shop");
  REQUIRE(sw.ok());
  CHECK(sw->size() == 6);
  auto none = (*store)->last_switch("blog");
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto page1 = (*store)->history(4, "shop");
  REQUIRE(page1.ok());
  REQUIRE(page1->size() == 4);
  auto page2 = (*store)->history(4, "shop", page1->back().id);
  REQUIRE(page2.ok());
  CHECK(page2->size() == 2);
  CHECK(page2->front().id < page1->back().id);
  for (int i = 0; i < 5; ++i) {
    RunRecord r;
    r.result = "applied";
    r.commit = "c" + std::to_string(i);
    REQUIRE((*store)->record_run(r).ok());
  }
  auto runs = (*store)->runs(2, 2);
  REQUIRE(runs.ok());
  REQUIRE(runs->size() == 2);
  CHECK(runs->front().commit == "c2");
}

TEST_CASE("the session cookie proves the token without being it") {
  const std::string token = "s3cret";
  const std::string value = session_cookie_value(token);
  CHECK(value.find(token) == std::string::npos);
  CHECK(session_cookie_ok(token, "stackflip_session=" + value));
  CHECK(session_cookie_ok(token, "a=b; stackflip_session=" + value + "; c=d"));
  CHECK_FALSE(session_cookie_ok(token, "stackflip_session=" + token));
  CHECK_FALSE(session_cookie_ok(token, "xstackflip_session=" + value));
  CHECK_FALSE(session_cookie_ok(token, ""));
  CHECK_FALSE(session_cookie_ok("other", "stackflip_session=" + value));
  CHECK(session_cookie_ok("", ""));  // no token configured: open
}

TEST_CASE("the page's script is allowed by its hash, and nothing else is") {
  const std::string& csp = page_csp();
  CHECK(csp.find("default-src 'none'") != std::string::npos);
  CHECK(csp.find("script-src 'sha256-") != std::string::npos);
  CHECK(csp.find("unsafe-inline'; connect") != std::string::npos);  // styles only
  CHECK(csp.find("script-src 'unsafe-inline'") == std::string::npos);
}

TEST_CASE("with etcd the pages name each group's leader") {
  PassReport rep = report_with({"shop", "blog"});
  StatusPageInput in;
  in.last = &rep;
  in.coordination_json =
      R"({"instance":"fra-1","site":"fra","groups":{"shop":{"leader":"ams-1"},"blog":{"leader":null}}})";
  std::string html = render_overview_page(in, "");
  CHECK(html.find("<th>leader</th>") != std::string::npos);
  CHECK(html.find("<td class=\"leader\">ams-1</td>") != std::string::npos);
  CHECK(html.find("<td class=\"leader\">none</td>") != std::string::npos);
  CHECK(render_group_page(in, "name=shop")->find("Leader: ams-1 (this instance: fra-1)") !=
        std::string::npos);
  in.coordination_json = "{not json";
  CHECK(render_overview_page(in, "").find("<th>leader</th>") == std::string::npos);
  in.coordination_json.clear();
  CHECK(render_overview_page(in, "").find("<th>leader</th>") == std::string::npos);
}

TEST_CASE("an open journal row is in progress only within the pass running now") {
  TempDir dir;
  auto store = StateStore::open(dir.file("state.db"));
  REQUIRE(store.ok());
  Action a;
  a.group = "shop";
  a.kind = ActionKind::database_promote;
  a.stack = "standby";
  REQUIRE((*store)->begin(a, "c0ffee").ok());  // never finished: running, or its process died
  PassReport rep = report_with({"shop"});
  StatusPageInput in;
  in.last = &rep;
  in.store = store->get();
  const std::string running = "in progress: database.promote standby";
  // No pass running: a process died mid-action; the group is not shown busy.
  CHECK(render_overview_page(in, "").find(running) == std::string::npos);
  CHECK(render_group_page(in, "name=shop")->find("no end recorded") != std::string::npos);
  in.pass_started = "2000-01-01T00:00:00Z";  // the row started in this pass
  CHECK(render_overview_page(in, "").find(running) != std::string::npos);
  CHECK(render_group_page(in, "name=shop")->find("Switch under way") != std::string::npos);
  in.pass_started = "2999-01-01T00:00:00Z";  // a pass that began after it
  CHECK(render_overview_page(in, "").find(running) == std::string::npos);
}
