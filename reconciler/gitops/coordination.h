// coordination.h — what the loop asks of the other instances it shares the
// groups with (issue 13). Without --etcd there is no Coordination and the
// loop behaves as a single instance; coord/etcd_coordination.h implements it
// on etcd.
//
// Per pass, the Reconciler
//   1. reads the shared commit in force (shared_commit) and, when it is
//      newer than its own and descends from it, plans against it — so an
//      instance that takes over never plans against an older commit;
//   2. publishes each group's active site (set_groups), so the groups are
//      spread over the live instances;
//   3. observes and plans every group, and applies only the groups it leads
//      (leads); the others are reported "standby" with the leader's name;
//   4. journals every action through journal(): the fencing check and the
//      shared journal entry come before the local one, and a failed check
//      means the action does not start; the action's driver calls run
//      under act_until(), so none outlasts the leadership;
//   5. publishes the commit it adopted and an invalid head it saw;
//   6. publishes its witness verdicts, and for the groups it leads with
//      auto_failover, reads everyone's (core/auto_failover.h).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/action_log.h"
#include "core/auto_failover.h"
#include "core/observe.h"
#include "util/result.h"

namespace stackflip {

struct GroupSite {
  std::string group;
  std::string active_site;  // the site of the group's active stack
};

class Coordination {
 public:
  virtual ~Coordination() = default;

  // The groups of the commit in force and their active sites; leadership is
  // campaigned for and released (rebalanced) from here.
  virtual void set_groups(const std::vector<GroupSite>& groups) = 0;
  // Whether this instance may apply `group` now; if not, `why` says who
  // leads it or why nobody may ("etcd unreachable: ...").
  virtual bool leads(const std::string& group, std::string* why) = 0;
  // The journal apply writes through: begin() checks the fencing token and
  // the lease's remaining time, and records the action in etcd, before the
  // local journal (`local`) records it.
  virtual ActionLog& journal() = 0;
  // The observation memory shared by all instances (per group, newest wins).
  virtual LastKnown& last_known() = 0;
  // Until when an action of this instance may run (ApplyOptions::act_until):
  // a running action is stopped then, so it never outlasts the leadership it
  // started under. Asked again and again while an action runs.
  virtual std::chrono::steady_clock::time_point act_until() = 0;

  // The commit in force as shared by the instances ("" when none yet or etcd
  // cannot be read).
  virtual std::string shared_commit() = 0;
  virtual void publish_commit(const std::string& commit) = 0;
  virtual void publish_invalid_head(const std::string& commit, const std::string& error) = 0;

  // Automatic failover (issue 14). Every instance is a witness: it publishes
  // its verdicts on the active stacks of the groups with auto_failover (the
  // failing ones, group → verdict; a group left out is healthy), kept under
  // its lease and written only when they change. The leader of a group reads
  // every live instance's verdict on it (a live instance with none:
  // healthy); an error when etcd cannot be read (then nobody decides).
  virtual void publish_verdicts(const std::map<std::string, WitnessVerdict>& failing) = 0;
  virtual Result<std::vector<WitnessVerdict>> verdicts(const std::string& group) = 0;
  // When any instance last committed an automatic failover of `group`
  // (epoch ms), for its cooldown whoever leads it next.
  virtual Result<std::optional<int64_t>> last_auto_failover(const std::string& group) = 0;
  virtual Status record_auto_failover(const std::string& group, int64_t unix_ms) = 0;
  // Overrides (issue 14, item 4): an automatic failover decided while Git
  // could not be reached, group → its JSON (reconcile.cc), kept without a
  // lease until a commit on the branch has the same `active:`.
  virtual Result<std::map<std::string, std::string>> overrides() = 0;
  virtual Status put_override(const std::string& group, const std::string& json) = 0;
  virtual Status delete_override(const std::string& group) = 0;
};

}  // namespace stackflip
