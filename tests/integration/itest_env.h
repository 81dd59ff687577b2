// itest_env.h — the harness environment (tests/integration/run.sh exports
// it from scripts/harness.sh's DIR/env) as stackflip config values, shared
// by the driver integration tests.
//
// Stacks: "primary" = pg1 on PG1_HOST, "standby" = pg2 on PG2_HOST; their
// traffic addresses are the hosts themselves (the harness record starts at
// 127.0.0.1). A test that changes roles or the record restores them before
// it ends, so test cases stay independent.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/model.h"

namespace itest {

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// True when run under run.sh; test cases skip (pass trivially) otherwise.
inline bool have_harness() {
  static const bool debug = [] {
    if (!env("ITEST_DEBUG").empty()) spdlog::set_level(spdlog::level::debug);
    return true;
  }();
  (void)debug;
  return !env("HARNESS_DIR").empty() && !env("PG_PORT").empty();
}

inline std::string dsn(const std::string& host) {
  return "host=" + host + " port=" + env("PG_PORT") + " user=" + env("PG_USER") +
         " dbname=" + env("PG_DB");
}

inline stackflip::ProviderConfig pg_provider() {
  stackflip::ProviderConfig p;
  p.name = "db";
  p.type = "postgres";
  p.settings["connect_timeout_ms"] = "2000";
  p.settings["statement_timeout_ms"] = "5000";
  return p;
}

inline stackflip::ProviderConfig pdns_provider(const std::string& key_ref = "${env:PDNS_API_KEY}",
                                               const std::string& url = env("PDNS_API_URL")) {
  stackflip::ProviderConfig p;
  p.name = "dns";
  p.type = "powerdns";
  p.settings["url"] = url;
  p.settings["api_key"] = key_ref;
  p.settings["timeout_ms"] = "1000";
  return p;
}

inline stackflip::GroupSpec group() {
  stackflip::GroupSpec g;
  g.name = "shop";
  g.active = "primary";
  for (auto [name, host] : {std::pair<std::string, std::string>{"primary", env("PG1_HOST")},
                            {"standby", env("PG2_HOST")}}) {
    stackflip::StackSpec s;
    s.name = name;
    s.provider = "db";
    s.settings["dsn"] = dsn(host);
    s.address = host;
    s.addresses = {host};
    // No control_command: re-attach uses the driver's local pg_ctl path. The
    // harness's pg-control.sh stops with -m fast, whose shutdown checkpoint
    // lands after the new primary's fork point, so the re-attached server
    // cannot follow the new timeline (see postgres_driver.h).
    if (!env("ITEST_CONTROL_COMMAND").empty())
      s.lists["control_command"] = {env("ITEST_CONTROL_COMMAND")};
    g.stacks[name] = s;
  }
  g.replication.from = "primary";
  g.replication.to = {"standby"};
  g.traffic.emplace_back();
  g.traffic[0].provider = "dns";
  g.traffic[0].settings["zone"] = env("ZONE");
  g.traffic[0].settings["record"] = env("RECORD");
  g.traffic[0].ttl = 60;
  return g;
}

// Wall-clock milliseconds since `start`.
// Output of a shell command, trailing newlines and spaces dropped.
inline std::string run(const std::string& cmd) {
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return "";
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) out += buf;
  pclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

inline double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

inline void timing(const char* what, double ms) {
  std::printf("TIMING %-52s %8.1f ms\n", what, ms);
  std::fflush(stdout);
}

// The harness's etcd members (ETCD_ENDPOINTS, comma-separated); empty
// without the harness, and then the etcd cases pass trivially.
inline std::vector<std::string> etcd_endpoints() {
  std::vector<std::string> out;
  std::string all = env("ETCD_ENDPOINTS");
  for (size_t start = 0; start < all.size();) {
    size_t comma = all.find(',', start);
    if (comma == std::string::npos) comma = all.size();
    if (comma > start) out.push_back(all.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace itest
