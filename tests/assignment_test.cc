// Issue 13: how failover groups are spread over the live instances.
#include "coord/assignment.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "coord/etcd_flags.h"

using namespace stackflip;

namespace {
std::map<std::string, std::string> groups_in(const std::string& site, int n) {
  std::map<std::string, std::string> g;
  for (int i = 0; i < n; ++i) g["g" + std::to_string(1000 + i)] = site;
  return g;
}
std::map<std::string, int> counts(const std::map<std::string, std::string>& a) {
  std::map<std::string, int> c;
  for (const auto& [g, i] : a) ++c[i];
  return c;
}
}  // namespace

TEST_CASE("issue 13: groups are spread over the instances balanced by count") {
  std::vector<InstanceInfo> three = {{"fra-1", "fra"}, {"ams-1", "ams"}, {"par-1", "par"}};
  std::map<std::string, std::string> groups;
  for (int i = 0; i < 300; ++i) groups["g" + std::to_string(i)] = i % 2 ? "fra" : "ams";
  auto a = assign_groups(three, groups);
  REQUIRE(a.size() == 300);
  for (const auto& [inst, n] : counts(a)) CHECK(n == 100);
}

TEST_CASE("issue 13: a group is led from outside its active stack's site when one has room") {
  std::vector<InstanceInfo> two = {{"fra-1", "fra"}, {"ams-1", "ams"}};
  std::map<std::string, std::string> groups = {{"shop", "fra"}, {"blog", "ams"}};
  auto a = assign_groups(two, groups);
  CHECK(a["shop"] == "ams-1");
  CHECK(a["blog"] == "fra-1");
  // All active in fra: balance wins over the preference for half of them.
  auto b = assign_groups(two, groups_in("fra", 10));
  CHECK(counts(b)["ams-1"] == 5);
  CHECK(counts(b)["fra-1"] == 5);
}

TEST_CASE(
    "issue 13: every instance computes the same assignment, whatever order it lists them in") {
  std::vector<InstanceInfo> x = {{"a", "s1"}, {"b", "s2"}, {"c", "s3"}};
  std::vector<InstanceInfo> y = {{"c", "s3"}, {"a", "s1"}, {"b", "s2"}};
  auto g = groups_in("s1", 50);
  CHECK(assign_groups(x, g) == assign_groups(y, g));
}

TEST_CASE("issue 13: when an instance goes, only its groups move") {
  std::vector<InstanceInfo> three = {{"a", "x"}, {"b", "x"}, {"c", "x"}};
  std::vector<InstanceInfo> two = {{"a", "x"}, {"b", "x"}};
  // Fewer groups than the caps bind: rendezvous hashing keeps a's and b's groups.
  auto g = groups_in("y", 9);
  auto before = assign_groups(three, g), after = assign_groups(two, g);
  size_t moved = 0;
  for (const auto& [group, inst] : before)
    if (inst != "c") moved += after[group] != inst;
  CHECK(moved <= 2);  // only what the new caps push over
  for (const auto& [group, inst] : after) CHECK(inst != "c");
}

TEST_CASE("issue 13: no instance, no leader") {
  CHECK(assign_groups({}, groups_in("x", 3)).empty());
}

TEST_CASE("issue 13: with etcd an action's timeouts fit half the lease, all attempts included") {
  ApplyOptions o;  // 30 s per action, 120 s to wait, 2 retries
  fit_to_lease(o, std::chrono::seconds(5));
  CHECK(o.retries == 1);
  Action promote;
  promote.kind = ActionKind::database_promote;
  Action wait;
  wait.kind = ActionKind::replication_wait;
  CHECK(action_budget(o, promote) <= std::chrono::milliseconds(2500));
  CHECK(action_budget(o, wait) <= std::chrono::milliseconds(2500));
  CHECK(o.action_timeout >= std::chrono::milliseconds(1000));
  ApplyOptions quick;
  quick.action_timeout = std::chrono::milliseconds(300);
  fit_to_lease(quick, std::chrono::seconds(60));
  CHECK(quick.action_timeout == std::chrono::milliseconds(300));  // never made longer
}

TEST_CASE("issue 13: etcd flags are checked before anything starts") {
  EtcdFlags f;
  f.endpoints = "http://127.0.0.1:2379,127.0.0.1:2380";
  auto bad = etcd_client_options(f);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("127.0.0.1:2380"));
  f.endpoints = "http://127.0.0.1:2379";
  f.instance = "";
  CHECK_FALSE(etcd_coordination_options(f).ok());
  f.instance = "fra-1";
  f.lease_ttl = "1500ms";
  CHECK_FALSE(etcd_coordination_options(f).ok());
  f.lease_ttl = "5s";
  f.prefix = "stackflip";
  CHECK_FALSE(etcd_coordination_options(f).ok());
  f.prefix = "/stackflip/";
  auto ok = etcd_coordination_options(f);
  REQUIRE(ok.ok());
  CHECK(ok->site == "fra-1");
  CHECK(ok->lease_ttl == std::chrono::seconds(5));
  f.user = "root";
  f.password = "hunter2";  // a literal password would show in ps
  CHECK_FALSE(etcd_client_options(f).ok());
}
