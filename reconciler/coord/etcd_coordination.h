// etcd_coordination.h — several `stackflip run` instances, one per site,
// sharing the failover groups through etcd (issue 13; DESIGN.md "Sites, etcd
// and automatic failover"). Implements gitops/coordination.h.
//
// Keys, under the prefix (default "/stackflip/"):
//   live/instances/<instance>  {"site","pid"}  on the instance's lease
//   live/leader/<group>        "<instance>"    on the leader's lease
//   commit                     {"commit"}      the commit in force
//   invalid_head               {"commit","error"}
//   observed/<group>           {"observed_at","snapshot"} the group's last observation
//   journal/<instance>/<n>     {group, kind, stack, source, origin, instance,
//                               token, phase, result, error, duration_ms, time}
//   witness/<group>/<instance> {"since_ms","since","why"} on the instance's
//                               lease, while it sees the group's active
//                               stack failing (issue 14)
//   auto_failover/<group>      {"unix_ms","instance"} the last automatic
//                               failover committed
//   override/<group>           an automatic failover not yet in Git (no lease)
//
// Leadership. One lease per instance (--lease-ttl), kept alive every TTL/4.
// A group's leader key is created in a transaction only if absent
// (create_revision == 0), bound to that lease; its create revision is the
// fencing token. Groups are spread with assignment.h over the instances
// registered under live/instances/; an instance campaigns for the leaderless
// groups assigned to it, and for any group leaderless for longer than one
// lease TTL (so disagreement about the assignment cannot orphan a group).
// It gives up, at the start of a pass (never during one), the groups
// assigned to another live instance. A watch on live/ sees a leader key or
// an instance disappear (lease expired, or revoked at a clean stop) and
// campaigns at once, not on the next interval; gaining a group triggers a
// pass (on_change).
//
// Fencing. Before every action (journal().begin) the leader
//   - refuses when its last keep-alive failed (it stays quiet until one
//     succeeds), or when its lease has no more time left than the action's
//     budget: the lease is counted from when the last successful keep-alive
//     was *sent*, so our count runs out no later than etcd's. Before it
//     refuses for the budget, it asks for a keep-alive at once and waits for
//     its answer (at most until the lease's end by that count): a keep-alive
//     slow to be answered does not stop a switch half-way;
//   - in one transaction compares the group's leader key's create revision
//     with its token and records the action under journal/ — a lost key
//     means the action does not start, and the group is no longer led.
// The end of the action is recorded under the same comparison, so nothing is
// recorded for an instance after its token was superseded. While the action
// runs, act_until() is the lease's end by our count less a stop margin
// (max(250 ms, TTL/10)): apply runs the driver calls under it
// (util/deadline.h), so when keep-alives stop being answered a running
// command is killed, a statement cancelled, a request cut, before etcd can
// let another instance take the group. A lease kept alive moves it later, so
// a long action (pg_rewind) runs as long as etcd answers.
//
// Every etcd failure is an error value: no instance starts an action without
// etcd, and the loop still observes and serves /status and /metrics, which
// say why.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coord/assignment.h"
#include "coord/etcd_client.h"
#include "gitops/coordination.h"
#include "gitops/state_store.h"

namespace stackflip {

struct EtcdCoordinationOptions {
  std::string instance;  // --instance: unique among the instances
  std::string site;      // --site: where this instance runs
  std::string prefix = "/stackflip/";
  std::chrono::seconds lease_ttl{5};
  // The most time an action may take (all its attempts): it starts only when
  // the lease has more left than this.
  std::function<std::chrono::milliseconds(const Action&)> budget;
  // Tests only: false starts no watch, so this instance's view of the leader
  // keys stays as its own campaigns left it (a stale view, as when frozen).
  bool watch = true;
};

class EtcdCoordination : public Coordination {
 public:
  // `local` is this instance's own journal and memory (the SQLite store).
  EtcdCoordination(EtcdClient& etcd, StateStore& local, EtcdCoordinationOptions options);
  ~EtcdCoordination() override;

  // Grants the lease, registers the instance and starts the keep-alive and
  // watch threads. An error when etcd cannot be reached at all: the caller
  // may still start and retry (start() again) on every pass.
  Status start();
  // Revokes the lease (the other instances take over at once) and stops the threads.
  void stop();
  // Called (from a coordination thread) when this instance gains a group.
  void on_change(std::function<void()> f);
  // Issue 14, self-fencing: called once (from the keep-alive thread) when
  // this instance, after it held a lease, has had no keep-alive answered
  // until its own count of that lease ran out (the lease's end less the stop
  // margin, act_until()): before etcd can let another instance take its
  // groups. Armed again by the next keep-alive answered. A keep-alive in
  // flight is cut at that moment (util/deadline.h), so a hung request does
  // not delay it.
  void on_isolated(std::function<void()> f);

  void set_groups(const std::vector<GroupSite>& groups) override;
  bool leads(const std::string& group, std::string* why) override;
  ActionLog& journal() override;
  LastKnown& last_known() override;
  std::chrono::steady_clock::time_point act_until() override;
  std::string shared_commit() override;
  void publish_commit(const std::string& commit) override;
  void publish_invalid_head(const std::string& commit, const std::string& error) override;
  void publish_verdicts(const std::map<std::string, WitnessVerdict>& failing) override;
  Result<std::vector<WitnessVerdict>> verdicts(const std::string& group) override;
  Result<std::optional<int64_t>> last_auto_failover(const std::string& group) override;
  Status record_auto_failover(const std::string& group, int64_t unix_ms) override;
  Result<std::map<std::string, std::string>> overrides() override;
  Status put_override(const std::string& group, const std::string& json) override;
  Status delete_override(const std::string& group) override;

  // /status's "coordination" member (a JSON object) and /metrics lines.
  std::string status_json();
  std::string prometheus();
  // Groups this instance leads now.
  size_t groups_led();

 private:
  class Journal;
  class Memory;
  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Leader {
    std::string instance;
    int64_t token = 0, lease = 0;
  };

  std::string key(const std::string& rest) const { return o_.prefix + rest; }
  Status register_instance();  // grant + put, under no lock
  void keepalive_loop();
  void watch_loop();
  // Reads live/ whole; the revision to watch from.
  Result<int64_t> reload_live();
  void apply_event(const EtcdWatchEvent& e);  // under mu_
  // Campaigns for the groups this instance should lead and is not leading.
  void campaign();
  void release_foreign();  // at pass start
  // A fencing comparison failed: `group` is no longer ours (if `token` is still recorded).
  void lost(const std::string& group, int64_t token);
  std::string lease_left_text(SteadyTime now) const;  // under mu_
  SteadyTime act_until_locked() const;                // under mu_
  SteadyTime fence_at_locked() const;  // cut off from then on: self-fence (under mu_)
  // Not quiet, and the lease has more than `budget` left (takes mu_).
  bool lease_covers(std::chrono::milliseconds budget);

  EtcdClient& etcd_;
  StateStore& local_;
  EtcdCoordinationOptions o_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<Memory> memory_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::thread keepalive_, watch_;
  std::function<void()> on_change_, on_isolated_;
  bool isolated_ = false;  // on_isolated_ ran for the lease we lost (under mu_)
  // Under mu_.
  int64_t lease_ = 0;
  SteadyTime lease_expires_{};
  bool quiet_ = true;           // the last keep-alive failed (or none yet): start nothing
  bool keepalive_now_ = false;  // begin() asks for a keep-alive before the period is up
  std::string etcd_error_;      // why, when quiet_
  std::map<std::string, InstanceInfo> instances_;
  std::map<std::string, Leader> leaders_;           // group → leader key
  std::map<std::string, std::string> group_sites_;  // of the commit in force
  std::map<std::string, SteadyTime> leaderless_since_;
  std::set<std::string> gained_;                  // groups led since the memory last loaded
  std::map<std::string, std::string> published_;  // key → value last written by us
  std::map<std::string, std::string> verdicts_;   // witness key → value we hold in etcd
  int64_t verdicts_lease_ = 0;                    // the lease they are under
  std::string last_commit_;
};

// The shared journal, newest first (`history` with --etcd).
Result<std::vector<JournalEntry>> etcd_history(EtcdClient& etcd, const std::string& prefix,
                                               size_t limit, const std::string& group);

}  // namespace stackflip
