// page_bench — what the status page (issue 16) costs the endpoint's one
// thread: the overview and a group page for 1, 100 and 10,000 groups, with
// a state store of 10,000 journal rows and 1,000 passes; and the plan
// comment (-o markdown, with its before → after tables) for as many groups.
// Prints the median of REPS renders and the page size.
//
//   page_bench [REPS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/planner.h"
#include "core/render.h"
#include "gitops/status_page.h"

using namespace stackflip;
using Steady = std::chrono::steady_clock;

namespace {

double median_ms(int reps, const std::function<size_t()>& f, size_t* bytes) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Steady::now();
    *bytes = f();
    t.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void fill(int n, PassReport& rep, DesiredState& d, ObservedState& obs) {
  for (int i = 0; i < n; ++i) {
    std::string name = "g" + std::to_string(i);
    GroupSpec g;
    g.name = name;
    g.active = i % 2 ? "standby" : "primary";  // half of them mid-switch
    for (const char* s : {"primary", "standby"}) {
      StackSpec st;
      st.name = s;
      st.provider = "db";
      st.address = st.addresses.emplace_back(std::string(s) == "primary" ? "10.0.0.1" : "10.0.0.2");
      g.stacks[s] = st;
    }
    g.replication.from = g.active;
    g.replication.to = {g.active == "primary" ? "standby" : "primary"};
    TrafficSpec t;
    t.provider = "dns";
    g.traffic.push_back(t);
    d.groups[name] = g;
    GroupObs go;
    StackObs p, s;
    p.reachable = s.reachable = true;
    p.maintenance = false;
    s.maintenance = true;
    p.database = DatabaseObs{Role::primary, std::nullopt, 5000, 1, {}, {}, {}};
    s.database = DatabaseObs{Role::replica, "primary", 4000, 1, true, {}, {}};
    go.stacks["primary"] = p;
    go.stacks["standby"] = s;
    go.traffic.target = "primary";
    go.traffic.ttl = 60;
    obs.groups[name] = go;
    GroupStatus gs;
    gs.active = g.active;
    gs.converged = i % 2 == 0;
    rep.groups[name] = gs;
  }
  rep.observed = obs;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  auto dir = std::filesystem::temp_directory_path() / "stackflip-page-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto store = StateStore::open((dir / "state.db").string());
  if (!store.ok()) return 1;
  Action a;
  a.group = "g0";
  a.stack = "standby";
  for (int i = 0; i < 5000; ++i) {
    a.kind = static_cast<ActionKind>(i % 7);
    auto id = (*store)->begin(a, "c0ffee");
    if (!id.ok() || !(*store)->finish(*id, "ok", "", 3).ok()) return 1;
  }
  for (int i = 0; i < 1000; ++i) {
    RunRecord r;
    r.result = "no-changes";
    if (!(*store)->record_run(r).ok()) return 1;
  }
  std::printf("%-8s %-28s %10s %12s\n", "groups", "render", "median ms", "bytes");
  for (int n : {1, 100, 10000}) {
    PassReport rep;
    DesiredState d;
    ObservedState obs;
    fill(n, rep, d, obs);
    StatusPageInput in;
    in.last = &rep;
    in.store = store->get();
    size_t bytes = 0;
    double ms = median_ms(reps, [&] { return render_overview_page(in, "").size(); }, &bytes);
    std::printf("%-8d %-28s %10.3f %12zu\n", n, "overview (/)", ms, bytes);
    ms = median_ms(reps, [&] { return render_group_page(in, "name=g0")->size(); }, &bytes);
    std::printf("%-8d %-28s %10.3f %12zu\n", n, "group page (/group)", ms, bytes);
    Plan plan = make_plan(d, obs);
    ms = median_ms(reps, [&] { return render_markdown(plan, &d, &obs).size(); }, &bytes);
    std::printf("%-8d %-28s %10.3f %12zu\n", n, "plan comment (-o markdown)", ms, bytes);
    ms = median_ms(reps, [&] { return render_html(plan, &d, &obs).size(); }, &bytes);
    std::printf("%-8d %-28s %10.3f %12zu\n", n, "plan page (-o html)", ms, bytes);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
