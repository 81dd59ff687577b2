#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "drivers/cloud66_driver.h"
#include "fake_cloud66.h"

using namespace stackflip;
using stackflip::testing::FakeCloud66;
using std::chrono::milliseconds;

namespace {

const char* kToken = "c66-secret-token-value";

struct Fixture {
  FakeCloud66 fake{kToken};
  ProviderConfig provider;
  GroupSpec group;

  explicit Fixture(const std::string& address_api = "failover_groups") {
    setenv("CLOUD66_TOKEN", kToken, 1);
    provider.name = "c66";
    provider.type = "cloud66";
    provider.settings = {{"token", "${env:CLOUD66_TOKEN}"},
                         {"base_url", fake.base_url()},
                         {"address_api", address_api},
                         {"timeout_ms", "3000"},
                         {"action_timeout_ms", "3000"}};
    fake.add_stack({"uid-a", "shop-eu", false});
    fake.add_stack({"uid-b", "shop-us", true});
    fake.add_group({"fg-1", "shop.example.com", "uid-a", "uid-b", 1, false});
    group.name = "shop";
    group.active = "a";
    for (auto [name, uid, server] : {std::tuple{"a", "uid-a", "db-a"}, {"b", "uid-b", "db-b"}}) {
      StackSpec s;
      s.name = name;
      s.provider = "c66";
      s.settings = {{"stack_uid", uid}, {"server", server}};
      group.stacks[name] = s;
    }
    group.traffic.emplace_back();
    group.traffic[0].provider = "c66";
    group.traffic[0].settings["failover_group"] = "fg-1";
  }
  std::unique_ptr<StackDriver> stack(const std::string& name) {
    return make_cloud66_stack_driver(provider, group, name);
  }
  std::unique_ptr<TrafficDriver> traffic() {
    return make_cloud66_traffic_driver(provider, group, group.traffic[0]);
  }
};

}  // namespace

TEST_CASE("cloud66 observes stack maintenance and the failover group's target") {
  Fixture f;
  auto a = f.stack("a")->observe(), b = f.stack("b")->observe();
  REQUIRE(a.reachable);
  REQUIRE(b.reachable);
  CHECK(a.maintenance == false);
  CHECK(b.maintenance == true);
  CHECK_FALSE(a.database.has_value());  // Cloud 66 tells nothing about roles: absent, not guessed
  auto t = f.traffic()->observe();
  REQUIRE(t.reachable);
  CHECK(t.target == std::optional<std::string>("a"));
  CHECK(t.content == "shop.example.com");
  CHECK(f.fake.requests().at(0).path == "/stacks/uid-a.json");
}

TEST_CASE("cloud66 runs a planned switch in the seed's order") {
  Fixture f;
  auto a = f.stack("a"), b = f.stack("b");
  auto t = f.traffic();
  REQUIRE(a->set_maintenance(true).ok());
  REQUIRE(b->stop_replication().ok());
  REQUIRE(b->promote().ok());
  REQUIRE(b->set_maintenance(false).ok());
  REQUIRE(t->switch_to("b").ok());
  REQUIRE(a->start_replication(f.group.stacks.at("b")).ok());
  CHECK(f.fake.changes() ==
        std::vector<std::string>{
            R"(POST /stacks/uid-a/actions.json {"command":"maintenance_mode","value":1})",
            R"(POST /stacks/uid-b/actions.json {"command":"promote_slave_db","server_uid":"db-b"})",
            R"(POST /stacks/uid-b/actions.json {"command":"maintenance_mode","value":0})",
            R"(PUT /failover_groups/fg-1 {"current_stack":2})",
            R"(POST /stacks/uid-a/actions.json {"command":"resync_slave_db","server_uid":"db-a"})",
        });
  CHECK(f.fake.stack("uid-a").maintenance_mode);
  CHECK_FALSE(f.fake.stack("uid-b").maintenance_mode);
  CHECK(f.fake.group("fg-1").current_stack == 2);
  CHECK(t->observe().target == std::optional<std::string>("b"));
  // Actions were polled until finished, not fired and forgotten.
  bool polled = false;
  for (const auto& r : f.fake.requests()) polled |= r.path.find("/actions/") != std::string::npos;
  CHECK(polled);
}

TEST_CASE("cloud66 follows pagination to find a failover group on page 2") {
  Fixture f;
  f.fake.set_per_page(1);
  f.fake.add_group({"fg-2", "other.example.com", "uid-x", "uid-y", 1, false});
  f.fake.add_group({"fg-3", "third.example.com", "uid-a", "uid-b", 2, false});
  f.group.traffic[0].settings["failover_group"] = "fg-3";
  auto t = f.traffic()->observe();
  REQUIRE(t.reachable);
  CHECK(t.target == std::optional<std::string>("b"));
  CHECK(t.content == "third.example.com");
  std::vector<std::string> paths;
  for (const auto& r : f.fake.requests()) paths.push_back(r.path);
  CHECK(paths == std::vector<std::string>{"/failover_groups.json?page=1",
                                          "/failover_groups.json?page=2",
                                          "/failover_groups.json?page=3"});
  f.group.traffic[0].settings["failover_group"] = "fg-missing";
  auto missing = f.traffic()->observe();
  CHECK_FALSE(missing.reachable);
  CHECK(missing.error.find("fg-missing") != std::string::npos);
}

TEST_CASE("cloud66 switches through the elastic_addresses API with primary/secondary names") {
  Fixture f("elastic_addresses");
  auto t = f.traffic();
  CHECK(t->observe().target == std::optional<std::string>("a"));
  REQUIRE(t->switch_to("b").ok());
  CHECK(f.fake.changes() ==
        std::vector<std::string>{R"(PUT /elastic_addresses/fg-1 {"current_stack":"secondary"})"});
  CHECK(t->observe().target == std::optional<std::string>("b"));
}

TEST_CASE("cloud66 waits out throttling (503) honouring Retry-After") {
  Fixture f;
  f.fake.throttle_next(1, 1);
  auto t0 = std::chrono::steady_clock::now();
  auto a = f.stack("a")->observe();
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(a.reachable);
  CHECK(took >= milliseconds(950));
  CHECK(f.fake.requests().size() == 2);
}

TEST_CASE(
    "cloud66 retries a 500 twice, then succeeds, a persistent 500 is an error with the body") {
  Fixture f;
  f.fake.error_next(2, 500);
  REQUIRE(f.stack("a")->observe().reachable);
  CHECK(f.fake.requests().size() == 3);
  f.fake.error_next(10, 502);
  auto a = f.stack("a")->observe();
  CHECK_FALSE(a.reachable);
  CHECK(a.error.find("HTTP 502") != std::string::npos);
  CHECK(a.error.find("Something went wrong") != std::string::npos);
}

TEST_CASE("cloud66 names the token's source on 401 and never the token") {
  Fixture f;
  setenv("CLOUD66_TOKEN", "wrong-token-value", 1);
  auto a = f.stack("a")->observe();
  CHECK_FALSE(a.reachable);
  CHECK(a.error.find("Cloud 66 rejected the token from ${env:CLOUD66_TOKEN} (HTTP 401)") !=
        std::string::npos);
  CHECK(a.error.find("The access token is invalid") != std::string::npos);
  CHECK(a.error.find("wrong-token-value") == std::string::npos);
  CHECK(a.error.find(kToken) == std::string::npos);
  Status s = f.stack("a")->set_maintenance(true);
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("wrong-token-value") == std::string::npos);
}

TEST_CASE("cloud66 reports an unknown stack uid by name") {
  Fixture f;
  f.group.stacks["a"].settings["stack_uid"] = "uid-gone";
  auto a = f.stack("a")->observe();
  CHECK_FALSE(a.reachable);
  CHECK(a.error.find("stack uid-gone") != std::string::npos);
  CHECK(a.error.find("404") != std::string::npos);
}

TEST_CASE("cloud66 turns an action that finished unsuccessfully into an error with its message") {
  Fixture f;
  f.fake.fail_next_action("No slave database server found");
  Status s = f.stack("b")->promote();
  REQUIRE_FALSE(s.ok());
  CHECK_FALSE(s.error().timeout);
  CHECK(s.message().find("promote_slave_db") != std::string::npos);
  CHECK(s.message().find("No slave database server found") != std::string::npos);
}

TEST_CASE("cloud66 times out an action that never finishes") {
  Fixture f;
  f.provider.settings["action_timeout_ms"] = "150";
  f.fake.set_action_delay(milliseconds(5000));
  Status s = f.stack("a")->set_maintenance(true);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().timeout);
}

TEST_CASE("cloud66 waits while the failover group is busy toggling before switching") {
  Fixture f;
  f.fake.set_busy("fg-1", milliseconds(200));
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(f.traffic()->switch_to("b").ok());
  CHECK(std::chrono::steady_clock::now() - t0 >= milliseconds(200));
  CHECK(f.fake.group("fg-1").current_stack == 2);
  CHECK(f.fake.changes() ==
        std::vector<std::string>{R"(PUT /failover_groups/fg-1 {"current_stack":2})"});
}

TEST_CASE(
    "cloud66 refuses to switch to a stack outside the failover group, and a no-op switch sends "
    "nothing") {
  Fixture f;
  f.group.stacks["b"].settings["stack_uid"] = "uid-elsewhere";
  Status s = f.traffic()->switch_to("b");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("neither the primary") != std::string::npos);
  REQUIRE(f.traffic()->switch_to("a").ok());
  CHECK(f.fake.changes().empty());
}

TEST_CASE("issue 11: cloud66 marks a refused action and a 4xx permanent, a 5xx not") {
  Fixture f;
  f.fake.refuse_action("uid-b", "promote_slave_db", "no slave database server to promote");
  Status s = f.stack("b")->promote();
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().permanent);
  CHECK(s.message().find("no slave database server to promote") != std::string::npos);
  REQUIRE(f.stack("a")->set_maintenance(true).ok());  // other actions still work
  CHECK(f.fake.stack("uid-a").maintenance_mode);
  f.group.stacks["a"].settings["stack_uid"] = "uid-gone";
  Status gone = f.stack("a")->set_maintenance(true);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().permanent);  // 404
  f.fake.error_next(1, 500);
  Status busy = f.stack("b")->set_maintenance(true);  // POST + 500: not retried by the driver
  REQUIRE_FALSE(busy.ok());
  CHECK_FALSE(busy.error().permanent);
}

TEST_CASE(
    "issue 17: cloud66 says how replication is enabled in the dashboard, since its API cannot") {
  Fixture f;
  StackObs a = f.stack("a")->observe();
  REQUIRE(a.reachable);
  CHECK(a.attach_by_hand.find("Cloud 66 cannot enable replication through its API") !=
        std::string::npos);
  CHECK(a.attach_by_hand.find("open stack uid-a, its database server group") != std::string::npos);
  CHECK(a.attach_by_hand.find("https://help.cloud66.com/docs/databases/database-replication") !=
        std::string::npos);

  // A resync of a database that is no replica fails; the failure names the
  // dashboard step instead of leaving only Cloud 66's message.
  f.fake.refuse_action("uid-a", "resync_slave_db", "server is not a slave");
  Status s = f.stack("a")->start_replication(f.group.stacks.at("b"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().permanent);
  CHECK(s.message().find("server is not a slave") != std::string::npos);
  CHECK(s.message().find("in the Cloud 66 dashboard, open stack uid-a") != std::string::npos);
}
