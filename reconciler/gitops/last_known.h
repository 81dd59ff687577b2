// last_known.h — observation's memory (core/observe.h LastKnown) kept in the
// state store, as the canonical snapshot JSON (config/snapshot.h) under the
// key "observe.last_known".
//
// Before issue 12 the same snapshot lived under "gitops.observed"; a store
// that has only the old key is read from it, and the next remember() writes
// the new one. A stored snapshot that no longer parses (written by another
// version) is forgotten: load() returns nullopt, not an error.
#pragma once

#include "core/observe.h"
#include "gitops/state_store.h"

namespace stackflip {

class StoredLastKnown : public LastKnown {
 public:
  explicit StoredLastKnown(StateStore& store) : store_(store) {}
  Result<std::optional<ObservedState>> load() override;
  Status remember(const ObservedState& obs) override;

 private:
  StateStore& store_;
};

}  // namespace stackflip
