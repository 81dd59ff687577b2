// assignment.h — which live instance should lead which failover group
// (issue 13). Every instance computes the same answer from the same inputs
// (the live instances registered in etcd, the groups of the commit in force),
// so no instance has to hand groups out.
//
// Rules, in order:
//   - balanced by count: no instance gets more than ceil(groups / instances);
//   - an instance outside the group's active site is preferred, since the
//     active stack's site is the one that may fail (when every instance with
//     room is in that site, one of them is used);
//   - among equals, rendezvous hashing of (group, instance) decides, so a
//     group moves only when the instances it could go to change.
// Groups are placed in name order; instances are identified by name.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace stackflip {

struct InstanceInfo {
  std::string name, site;
};

// group → instance name; empty when there is no instance.
std::map<std::string, std::string> assign_groups(
    const std::vector<InstanceInfo>& instances,
    const std::map<std::string, std::string>& group_active_site);

}  // namespace stackflip
