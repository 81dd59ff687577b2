// assignment.cc — see assignment.h.
#include "coord/assignment.h"

#include <algorithm>
#include <cstdint>

namespace stackflip {

namespace {
// FNV-1a over "group\0instance", then a 64-bit finaliser (splitmix): cheap,
// stable across builds and platforms (std::hash is not).
uint64_t weight(const std::string& group, const std::string& instance) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  mix(group);
  h = (h ^ 0) * 1099511628211ull;
  mix(instance);
  h += 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}
}  // namespace

std::map<std::string, std::string> assign_groups(
    const std::vector<InstanceInfo>& instances,
    const std::map<std::string, std::string>& group_active_site) {
  std::map<std::string, std::string> out;
  if (instances.empty()) return out;
  std::vector<InstanceInfo> sorted = instances;
  std::sort(sorted.begin(), sorted.end(),
            [](const InstanceInfo& a, const InstanceInfo& b) { return a.name < b.name; });
  const size_t cap = (group_active_site.size() + sorted.size() - 1) / sorted.size();
  std::vector<size_t> load(sorted.size(), 0);
  for (const auto& [group, site] : group_active_site) {
    size_t best = sorted.size();
    bool best_outside = false;
    uint64_t best_weight = 0;
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (load[i] >= cap) continue;
      bool outside = sorted[i].site != site;
      uint64_t w = weight(group, sorted[i].name);
      if (best == sorted.size() || (outside && !best_outside) ||
          (outside == best_outside && w > best_weight)) {
        best = i;
        best_outside = outside;
        best_weight = w;
      }
    }
    ++load[best];
    out[group] = sorted[best].name;
  }
  return out;
}

}  // namespace stackflip
