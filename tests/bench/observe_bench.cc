// observe_bench — one observation pass over RECORDS PowerDNS records in one
// zone, spread over GROUPS groups, with in-process fake stacks and the real
// PowerDNS of the harness: wall time per pass and requests per pass.
//
//   source DIR/env   (scripts/harness.sh start DIR: PDNS_API_URL, PDNS_API_KEY, ZONE)
//   observe_bench [RECORDS [GROUPS [REPS]]]     defaults 1000 500 7
//
// Creates the records through the API first (one PATCH) and deletes them at
// the end. Measures, in the same run:
//   shared      observe_all: one pass, each zone read once (issue 11, item 6)
//   per-record  every group observed outside a pass, 8 groups at a time as
//               observe_all does: each record reads the zone itself (the
//               reads before the shared zone reader)
// and prints the median wall time, the requests the driver counted per pass,
// and PowerDNS's own count of API requests per pass when its statistics
// have one. Exit 77 when the harness environment is missing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/observe.h"
#include "core/provider_stats.h"
#include "drivers/drivers.h"
#include "fake_provider.h"
#include "sys/http_client.h"

using namespace stackflip;
using stackflip::testing::FakeDriverFactory;
using stackflip::testing::FakeWorld;
using SteadyClock = std::chrono::steady_clock;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Fake stacks, real PowerDNS traffic drivers.
class BenchFactory : public DriverFactory {
 public:
  explicit BenchFactory(FakeWorld& w) : fake_(w) {}
  Result<std::unique_ptr<StackDriver>> stack_driver(const DesiredState& d, const GroupSpec& g,
                                                    const std::string& s) override {
    return fake_.stack_driver(d, g, s);
  }
  Result<std::unique_ptr<TrafficDriver>> traffic_driver(const DesiredState& d, const GroupSpec& g,
                                                        const TrafficSpec& t) override {
    return real_.traffic_driver(d, g, t);
  }

 private:
  FakeDriverFactory fake_;
  RealDriverFactory real_;
};

std::string ip(int group, int stack) {
  return "10." + std::to_string(stack) + "." + std::to_string(group / 250) + "." +
         std::to_string(group % 250 + 1);
}

std::string record_name(int r, int g, const std::string& zone) {
  return "obsbench-r" + std::to_string(r) + "-g" + std::to_string(g) + "." + zone;
}

Result<HttpResponse> api(HttpClient& http, const std::string& method, const std::string& path,
                         std::string body = "") {
  HttpRequest req;
  req.method = method;
  req.url = env("PDNS_API_URL") + path;
  req.body = std::move(body);
  req.timeout = std::chrono::milliseconds(30000);
  req.headers = {{"X-API-Key", env("PDNS_API_KEY")}, {"Accept", "application/json"}};
  if (!req.body.empty()) req.headers.emplace_back("Content-Type", "application/json");
  return http.perform(req);
}

// One PATCH creating (REPLACE) or deleting every record of the bench.
bool change_records(HttpClient& http, const std::string& zone, int records, int groups,
                    bool remove) {
  const int per_group = records / groups;
  std::string body = "{\"rrsets\": [";
  for (int g = 0; g < groups; ++g)
    for (int r = 0; r < per_group; ++r) {
      if (body.back() != '[') body += ",";
      body += "{\"name\": \"" + record_name(r, g, zone) + "\", \"type\": \"A\", \"ttl\": 60, ";
      body += remove ? "\"changetype\": \"DELETE\"}"
                     : "\"changetype\": \"REPLACE\", \"records\": [{\"content\": \"" + ip(g, 0) +
                           "\", \"disabled\": false}]}";
    }
  body += "]}";
  auto r = api(http, "PATCH", "/api/v1/servers/localhost/zones/" + zone, body);
  if (!r.ok() || r->status / 100 != 2) {
    std::fprintf(stderr, "observe_bench: PATCH of %d records failed: %s\n", records,
                 r.ok() ? (std::to_string(r->status) + " " + r->body.substr(0, 300)).c_str()
                        : r.error().message.c_str());
    return false;
  }
  return true;
}

// PowerDNS's own count of API requests, when its statistics have one
// (-1 when not: the figure is then the driver's count alone).
long long pdns_api_requests(HttpClient& http) {
  auto r = api(http, "GET", "/api/v1/servers/localhost/statistics");
  if (!r.ok() || r->status != 200) return -1;
  for (const char* stat : {"\"name\": \"api-requests\"", "\"name\":\"api-requests\""}) {
    auto at = r->body.find(stat);
    if (at == std::string::npos) continue;
    auto v = r->body.find("\"value\"", at);
    if (v == std::string::npos) return -1;
    auto q = r->body.find('"', r->body.find(':', v) + 1);
    return std::atoll(r->body.c_str() + q + 1);
  }
  return -1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Figures {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double requests_per_pass = 0, pdns_requests_per_pass = -1;
  int wrong = 0;  // groups not observed on their active stack
};

template <class Pass>
Figures measure(HttpClient& http, int reps, Pass pass) {
  Figures f;
  std::vector<double> ms;
  const uint64_t req0 = provider_requests("powerdns");
  const long long pdns0 = pdns_api_requests(http);
  for (int i = 0; i < reps; ++i) {
    auto t0 = SteadyClock::now();
    f.wrong = pass();
    ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
  }
  const long long pdns1 = pdns_api_requests(http);
  f.median_ms = median(ms);
  f.min_ms = *std::min_element(ms.begin(), ms.end());
  f.max_ms = *std::max_element(ms.begin(), ms.end());
  f.requests_per_pass = double(provider_requests("powerdns") - req0) / reps;
  // The statistics GET itself is one API request.
  if (pdns0 >= 0 && pdns1 >= 0) f.pdns_requests_per_pass = double(pdns1 - pdns0 - 1) / reps;
  return f;
}

void print(const char* mode, int records, int groups, int reps, const Figures& f) {
  std::printf(
      "%-10s records=%d groups=%d reps=%d  median %.1f ms (min %.1f, max %.1f)  "
      "requests/pass: driver %.1f, PowerDNS %s  wrong=%d\n",
      mode, records, groups, reps, f.median_ms, f.min_ms, f.max_ms, f.requests_per_pass,
      f.pdns_requests_per_pass < 0 ? "n/a" : std::to_string(f.pdns_requests_per_pass).c_str(),
      f.wrong);
}

}  // namespace

int main(int argc, char** argv) {
  const int records = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int groups = argc > 2 ? std::atoi(argv[2]) : 500;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 7;
  std::string zone = env("ZONE");
  if (env("PDNS_API_URL").empty() || env("PDNS_API_KEY").empty() || zone.empty()) {
    std::fprintf(stderr,
                 "observe_bench: skipped: source the harness env (PDNS_API_URL, "
                 "PDNS_API_KEY, ZONE) first\n");
    return 77;
  }
  if (zone.back() != '.') zone += '.';
  if (groups <= 0 || records < groups || records % groups) {
    std::fprintf(stderr, "observe_bench: RECORDS must be a multiple of GROUPS\n");
    return 2;
  }
  const int per_group = records / groups;

  HttpClient http;
  if (!change_records(http, zone, records, groups, false)) return 1;

  DesiredState d;
  d.providers["dns"] =
      ProviderConfig{"dns",
                     "powerdns",
                     {{"url", env("PDNS_API_URL")}, {"api_key", "${env:PDNS_API_KEY}"}},
                     {},
                     {}};
  d.providers["db"] = ProviderConfig{"db", "fake", {}, {}, {}};
  FakeWorld world;
  world.instant_replay = false;  // observation only reads the world
  for (int g = 0; g < groups; ++g) {
    GroupSpec gs;
    gs.name = "g" + std::to_string(g);
    gs.active = "primary";
    for (int s = 0; s < 2; ++s) {
      StackSpec st;
      st.name = s ? "standby" : "primary";
      st.provider = "db";
      st.address = ip(g, s);
      st.addresses = {st.address};
      gs.stacks[st.name] = st;
      world.stacks[gs.name][st.name] = s ? testing::FakeStack{true, false, Role::replica, "primary"}
                                         : testing::FakeStack{true, false, Role::primary, ""};
    }
    world.traffic[gs.name] = testing::FakeTraffic{};
    for (int r = 0; r < per_group; ++r) {
      TrafficSpec t;
      t.provider = "dns";
      t.settings = {{"zone", zone}, {"record", record_name(r, g, zone)}};
      t.name = record_name(r, g, zone) + " A";
      gs.traffic.push_back(t);
    }
    d.groups[gs.name] = gs;
  }
  BenchFactory factory(world);
  Fleet fleet = make_fleet(d, factory);
  auto wrong = [&](const std::map<std::string, GroupObs>& obs) {
    int n = 0;
    for (const auto& [name, g] : obs)
      if (g.traffic.target != std::optional<std::string>("primary")) ++n;
    return n;
  };

  // Warm up: connections, secret resolution.
  observe_all(d, fleet, real_clock(), 8);

  Figures shared =
      measure(http, reps, [&] { return wrong(observe_all(d, fleet, real_clock(), 8).groups); });
  std::vector<std::string> names;
  for (const auto& [name, g] : d.groups) names.push_back(name);
  Figures per_record = measure(http, reps, [&] {
    std::map<std::string, GroupObs> obs;
    std::vector<GroupObs> results(names.size());
    parallel_for(names.size(), 8, [&](size_t i) { results[i] = fleet.at(names[i])->observe(); });
    for (size_t i = 0; i < names.size(); ++i) obs[names[i]] = std::move(results[i]);
    return wrong(obs);
  });

  print("shared", records, groups, reps, shared);
  print("per-record", records, groups, reps, per_record);
  const bool ok = change_records(http, zone, records, groups, true);
  return ok && shared.wrong == 0 && per_record.wrong == 0 ? 0 : 1;
}
