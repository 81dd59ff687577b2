// plan_bench — load + plan for 1, 100 and 10,000 groups: time and peak memory.
//
//   plan_bench            runs every size, each in a fresh child process so
//                         peak RSS belongs to that size alone
//   plan_bench N [REPS]   one size: generates a config and a snapshot with N
//                         two-stack groups (half of them mid-switch, so the
//                         planner has work), then times REPS rounds of
//                         load config + read snapshot + plan, and prints medians.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/loader.h"
#include "config/snapshot.h"
#include "core/planner.h"

using namespace stackflip;
using Clock = std::chrono::steady_clock;

namespace {

std::string make_config(int n) {
  std::string y =
      "apiVersion: stackflip/v1\n"
      "providers:\n"
      "  db: {type: postgres}\n"
      "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: \"${env:PDNS_API_KEY}\"}\n"
      "groups:\n";
  for (int i = 0; i < n; ++i) {
    std::string g = "g" + std::to_string(i);
    std::string active = i % 2 ? "standby" : "primary";
    y += "  " + g + ":\n    active: " + active + "\n    stacks:\n" +
         "      primary: {provider: db, dsn: \"host=" + g + "-a.db.test port=5432 dbname=" + g +
         "\", address: 10.0.0.1}\n" + "      standby: {provider: db, dsn: \"host=" + g +
         "-b.db.test port=5432 dbname=" + g + "\", address: 10.0.0.2}\n" +
         "    replication: {max_lag_bytes: 0}\n" +
         "    traffic: {provider: dns, zone: example.test., record: " + g +
         ".example.test., ttl: 60}\n";
  }
  return y;
}

std::string make_snapshot(int n) {
  std::string s =
      "{\"apiVersion\":\"stackflip/v1\",\"observed_at\":\"2026-11-26T18:00:00Z\",\"groups\":{";
  for (int i = 0; i < n; ++i) {
    if (i) s += ",";
    s += "\"g" + std::to_string(i) +
         "\":{\"stacks\":{\"primary\":{\"reachable\":true,\"maintenance\":false,\"database\":"
         "{\"role\":\"primary\",\"upstream\":null,\"lsn\":\"0/3000060\",\"timeline\":1}},"
         "\"standby\":{\"reachable\":true,\"maintenance\":true,\"database\":{\"role\":"
         "\"replica\",\"upstream\":\"primary\",\"lsn\":\"0/3000060\",\"timeline\":1}}},"
         "\"traffic\":{\"target\":\"primary\",\"ttl\":60}}";
  }
  return s + "}}";
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run_size(int n, int reps) {
  const std::string config = make_config(n), snapshot = make_snapshot(n);
  std::vector<double> load, read, plan, total;
  size_t actions = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    LoadResult d = load_desired_text("bench.yaml", config);
    double t_load = ms_since(t0);
    auto t1 = Clock::now();
    auto o = parse_snapshot("bench.json", snapshot);
    double t_read = ms_since(t1);
    if (!d.desired || !o.ok()) {
      std::fprintf(
          stderr, "bench input invalid\n%s\n",
          d.errors.empty() ? o.error().message.c_str() : format_diagnostics(d.errors).c_str());
      return 1;
    }
    auto t2 = Clock::now();
    Plan p = make_plan(*d.desired, *o);
    double t_plan = ms_since(t2);
    actions = p.actions.size();
    load.push_back(t_load);
    read.push_back(t_read);
    plan.push_back(t_plan);
    total.push_back(t_load + t_read + t_plan);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "%6d groups  %6zu actions  load %8.2f ms  snapshot %8.2f ms  plan %8.2f ms  "
      "total %8.2f ms  peak RSS %6.1f MB  (median of %d)\n",
      n, actions, median(load), median(read), median(plan), median(total), ru.ru_maxrss / 1024.0,
      reps);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2) return run_size(std::atoi(argv[1]), argc >= 3 ? std::atoi(argv[2]) : 5);
  for (int n : {1, 100, 10000}) {
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      std::string ns = std::to_string(n);
      execl("/proc/self/exe", argv[0], ns.c_str(), n >= 10000 ? "5" : "21", (char*)nullptr);
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  return 0;
}
