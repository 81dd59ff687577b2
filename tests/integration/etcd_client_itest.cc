// etcd_client_itest — the etcd gateway client against a real etcd 3.4
// (issue 13). ETCD_ENDPOINTS (comma-separated http://127.0.0.1:PORT URLs,
// exported by scripts/harness.sh) names the cluster; without it every case
// passes trivially, as the driver cases do without the harness. Each case
// works under its own key prefix, so cases and runs do not see each other.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "coord/etcd_client.h"
#include "itest_env.h"

using namespace stackflip;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

namespace {

using itest::etcd_endpoints;

bool have_etcd() { return !etcd_endpoints().empty(); }

std::unique_ptr<EtcdClient> client(std::vector<std::string> endpoints = etcd_endpoints()) {
  EtcdOptions o;
  o.endpoints = std::move(endpoints);
  o.request_timeout = milliseconds(3000);
  auto c = EtcdClient::create(o);
  REQUIRE(c.ok());
  return std::move(*c);
}

// A prefix no other case or run uses.
std::string fresh_prefix(const char* name) {
  static std::mt19937_64 rng(std::random_device{}());
  return std::string("/itest/") + name + "/" + std::to_string(rng()) + "/";
}

// A loopback port nothing listens on.
std::string dead_endpoint() { return "http://127.0.0.1:9"; }

}  // namespace

TEST_CASE("etcd: put, range, prefix, newest first, limit and count only") {
  if (!have_etcd()) return;
  auto c = client();
  std::string p = fresh_prefix("kv");
  auto r1 = c->put(p + "a", "1");
  REQUIRE(r1.ok());
  auto r2 = c->put(p + "b", std::string("\0\xff\n", 3));
  REQUIRE(r2.ok());
  auto r3 = c->put(p + "c", "3");
  REQUIRE(r3.ok());
  CHECK(*r2 > *r1);
  CHECK(*r3 > *r2);
  REQUIRE(c->put(p.substr(0, p.size() - 1) + "0", "outside").ok());  // just past the prefix

  auto one = c->range(p + "b");
  REQUIRE(one.ok());
  REQUIRE(one->kvs.size() == 1);
  CHECK(one->kvs[0].value == std::string("\0\xff\n", 3));
  CHECK(one->kvs[0].create_revision == *r2);
  CHECK(one->kvs[0].mod_revision == *r2);
  CHECK(one->kvs[0].version == 1);
  CHECK(one->revision >= *r3);

  EtcdRangeOptions all;
  all.prefix = true;
  auto every = c->range(p, all);
  REQUIRE(every.ok());
  REQUIRE(every->kvs.size() == 3);
  CHECK(every->kvs[0].key == p + "a");
  CHECK(every->kvs[2].key == p + "c");
  CHECK(every->count == 3);
  CHECK_FALSE(every->more);

  EtcdRangeOptions newest = all;
  newest.newest_first = true;
  newest.limit = 2;
  auto top = c->range(p, newest);
  REQUIRE(top.ok());
  REQUIRE(top->kvs.size() == 2);
  CHECK(top->kvs[0].key == p + "c");
  CHECK(top->kvs[1].key == p + "b");
  CHECK(top->count == 3);
  CHECK(top->more);

  EtcdRangeOptions count = all;
  count.count_only = true;
  auto n = c->range(p, count);
  REQUIRE(n.ok());
  CHECK(n->count == 3);
  CHECK(n->kvs.empty());

  EtcdRangeOptions keys = all;
  keys.keys_only = true;
  auto k = c->range(p, keys);
  REQUIRE(k.ok());
  REQUIRE(k->kvs.size() == 3);
  CHECK(k->kvs[0].value.empty());

  auto missing = c->range(p + "zzz");
  REQUIRE(missing.ok());
  CHECK(missing->kvs.empty());
  CHECK(missing->count == 0);

  auto removed = c->remove(p, true);
  REQUIRE(removed.ok());
  CHECK(*removed == 3);
  CHECK(*c->remove(p + "a") == 0);
  REQUIRE(c->remove(p.substr(0, p.size() - 1) + "0").ok());
  CHECK(c->endpoint() == etcd_endpoints()[0]);
}

TEST_CASE("etcd: txn on create_revision 0 takes the key once, the loser reads the holder") {
  if (!have_etcd()) return;
  auto c = client();
  std::string key = fresh_prefix("txn") + "leader";
  EtcdCompare absent{key, EtcdCompare::Target::create_revision, EtcdCompare::Op::equal, 0, ""};
  EtcdOp take{EtcdOp::Kind::put, key, "me", 0, false};
  EtcdOp read{EtcdOp::Kind::range, key, "", 0, false};

  auto first = c->txn({absent}, {take, read}, {read});
  REQUIRE(first.ok());
  CHECK(first->succeeded);
  REQUIRE(first->ranges.size() == 1);  // the success branch's range
  REQUIRE(first->ranges[0].kvs.size() == 1);
  CHECK(first->ranges[0].kvs[0].value == "me");
  const int64_t created = first->ranges[0].kvs[0].create_revision;
  CHECK(created == first->revision);

  EtcdOp other{EtcdOp::Kind::put, key, "you", 0, false};
  auto second = c->txn({absent}, {other}, {read});
  REQUIRE(second.ok());
  CHECK_FALSE(second->succeeded);
  REQUIRE(second->ranges.size() == 1);  // the failure branch's range
  REQUIRE(second->ranges[0].kvs.size() == 1);
  CHECK(second->ranges[0].kvs[0].value == "me");
  CHECK(second->ranges[0].kvs[0].create_revision == created);

  // Fencing shape: write only while the key is still the one we created.
  EtcdCompare mine{key, EtcdCompare::Target::create_revision, EtcdCompare::Op::equal, created, ""};
  EtcdCompare value{key, EtcdCompare::Target::value, EtcdCompare::Op::equal, 0, "me"};
  auto fenced = c->txn({mine, value}, {EtcdOp{EtcdOp::Kind::put, key, "me2", 0, false}});
  REQUIRE(fenced.ok());
  CHECK(fenced->succeeded);
  CHECK(fenced->ranges.empty());
  EtcdCompare stale{key, EtcdCompare::Target::create_revision, EtcdCompare::Op::equal, created - 1,
                    ""};
  auto refused = c->txn({stale}, {EtcdOp{EtcdOp::Kind::remove, key, "", 0, false}});
  REQUIRE(refused.ok());
  CHECK_FALSE(refused->succeeded);
  CHECK(c->range(key)->kvs.size() == 1);
  EtcdCompare newer{key, EtcdCompare::Target::mod_revision, EtcdCompare::Op::greater, created, ""};
  auto cleaned = c->txn({newer}, {EtcdOp{EtcdOp::Kind::remove, key, "", 0, false}});
  REQUIRE(cleaned.ok());
  CHECK(cleaned->succeeded);
  CHECK(c->range(key)->kvs.empty());
}

TEST_CASE("etcd: lease grant, keep-alive, time-to-live, revoke, the bound key disappears") {
  if (!have_etcd()) return;
  auto c = client();
  std::string key = fresh_prefix("lease") + "member";
  auto lease = c->grant(seconds(10));
  REQUIRE(lease.ok());
  CHECK(*lease != 0);
  REQUIRE(c->put(key, "alive", *lease).ok());
  auto bound = c->range(key);
  REQUIRE(bound.ok());
  REQUIRE(bound->kvs.size() == 1);
  CHECK(bound->kvs[0].lease == *lease);

  auto ttl = c->keep_alive(*lease);
  REQUIRE(ttl.ok());
  CHECK(*ttl == 10);
  auto left = c->time_to_live(*lease);
  REQUIRE(left.ok());
  CHECK(*left > 0);
  CHECK(*left <= 10);

  REQUIRE(c->revoke(*lease).ok());
  CHECK(c->range(key)->kvs.empty());
  CHECK(*c->time_to_live(*lease) == -1);
  auto gone = c->keep_alive(*lease);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().message.find("expired") != std::string::npos);
  CHECK(c->revoke(*lease).ok());  // revoking a lease that is gone is what was wanted

  // A put on a lease that does not exist is the member's error, carried.
  auto orphan = c->put(key, "x", *lease);
  REQUIRE_FALSE(orphan.ok());
  CHECK(orphan.error().message.find("lease not found") != std::string::npos);
}

TEST_CASE("etcd: keep-alive of a lease that expired by itself is an Error") {
  if (!have_etcd()) return;
  auto c = client();
  auto lease = c->grant(seconds(1));
  REQUIRE(lease.ok());
  // etcd may round a 1 s TTL up to its minimum; wait for it to run out.
  auto start = Clock::now();
  while (*c->time_to_live(*lease) != -1 && Clock::now() - start < seconds(10))
    std::this_thread::sleep_for(milliseconds(200));
  auto r = c->keep_alive(*lease);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("expired") != std::string::npos);
}

TEST_CASE("etcd: watch sees a PUT, then the DELETE of a revoked lease, and stops promptly") {
  if (!have_etcd()) return;
  auto c = client();
  std::string p = fresh_prefix("watch");
  auto lease = c->grant(seconds(30));
  REQUIRE(lease.ok());
  auto at = c->range(p, EtcdRangeOptions{true});
  REQUIRE(at.ok());

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<EtcdWatchEvent> events;
  std::vector<int64_t> revisions;
  Status result;
  std::thread watcher([&] {
    result = c->watch(
        p, true, at->revision + 1,
        [&](const std::vector<EtcdWatchEvent>& batch, int64_t revision) {
          std::lock_guard<std::mutex> lock(mu);
          events.insert(events.end(), batch.begin(), batch.end());
          revisions.push_back(revision);
          return true;
        },
        stop, seconds(20));
  });
  auto put_rev = c->put(p + "x", "v1", *lease);
  REQUIRE(put_rev.ok());
  REQUIRE(c->revoke(*lease).ok());
  auto seen = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return events.size();
  };
  auto start = Clock::now();
  while (seen() < 2 && Clock::now() - start < seconds(5))
    std::this_thread::sleep_for(milliseconds(10));
  std::this_thread::sleep_for(milliseconds(300));  // idle stream
  auto stopped = Clock::now();
  stop = true;
  watcher.join();
  double took = itest::ms_since(stopped);
  itest::timing("etcd watch return after stop", took);
  CHECK(result.ok());
  CHECK(took < 250);
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(events.size() == 2);
  CHECK_FALSE(events[0].removed);
  CHECK(events[0].kv.key == p + "x");
  CHECK(events[0].kv.value == "v1");
  CHECK(events[0].kv.lease == *lease);
  CHECK(events[0].kv.mod_revision == *put_rev);
  CHECK(events[1].removed);
  CHECK(events[1].kv.key == p + "x");
  CHECK(events[1].kv.mod_revision > *put_rev);
  // One batch or two: a watch that connects after both happened gets them
  // replayed together. Either way the last revision is the DELETE's.
  REQUIRE_FALSE(revisions.empty());
  CHECK(revisions.size() <= 2);
  CHECK(revisions.back() == events[1].kv.mod_revision);
}

TEST_CASE("etcd: watch from the past replays, max_time ends an idle watch") {
  if (!have_etcd()) return;
  auto c = client();
  std::string p = fresh_prefix("replay");
  auto r1 = c->put(p + "a", "1");
  REQUIRE(r1.ok());
  REQUIRE(c->put(p + "a", "2").ok());
  std::atomic<bool> stop{false};
  std::vector<std::string> values;
  auto start = Clock::now();
  Status s = c->watch(
      p + "a", false, *r1,
      [&](const std::vector<EtcdWatchEvent>& batch, int64_t) {
        for (const auto& e : batch) values.push_back(e.kv.value);
        return true;
      },
      stop, milliseconds(600));
  double took = itest::ms_since(start);
  CHECK(s.ok());
  CHECK(values == std::vector<std::string>{"1", "2"});
  CHECK(took >= 550);
  CHECK(took < 1500);
}

TEST_CASE("etcd: a dead first endpoint fails over to a live one, for calls and for watch") {
  if (!have_etcd()) return;
  auto eps = etcd_endpoints();
  auto c = client({dead_endpoint(), eps[0]});
  std::string key = fresh_prefix("failover") + "k";
  auto put = c->put(key, "v");
  REQUIRE(put.ok());
  CHECK(c->endpoint() == eps[0]);
  CHECK(c->requests() == 2);

  auto w = client({dead_endpoint(), eps[0]});
  std::atomic<bool> stop{false};
  int64_t seen = 0;
  Status s = w->watch(
      key, false, *put,
      [&](const std::vector<EtcdWatchEvent>& batch, int64_t revision) {
        seen = revision;
        (void)batch;
        return false;
      },
      stop, seconds(5));
  CHECK(s.ok());
  CHECK(seen == *put);
  CHECK(w->endpoint() == eps[0]);
  REQUIRE(c->remove(key).ok());
}
