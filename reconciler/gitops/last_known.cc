#include "gitops/last_known.h"

#include "config/snapshot.h"

namespace stackflip {

namespace {
constexpr const char* kKey = "observe.last_known";
constexpr const char* kKeyBeforeIssue12 = "gitops.observed";
}  // namespace

Result<std::optional<ObservedState>> StoredLastKnown::load() {
  auto text = store_.get(kKey);
  if (text.ok() && !*text) text = store_.get(kKeyBeforeIssue12);
  if (!text.ok()) return text.error();
  if (!*text) return std::optional<ObservedState>();
  auto parsed = parse_snapshot("state store snapshot", **text);
  if (!parsed.ok()) return std::optional<ObservedState>();
  return std::optional<ObservedState>(std::move(*parsed));
}

Status StoredLastKnown::remember(const ObservedState& obs) {
  return store_.put(kKey, snapshot_to_json(obs));
}

}  // namespace stackflip
