// pass_cache.h — one read per observation pass, shared by every caller.
//
// Providers that many traffic addresses share (a PowerDNS zone, a Cloud 66
// failover-group list) are read once per pass (provider.h ObservePass):
// the first caller of a pass fetches, callers that come while that fetch is
// in flight wait for it instead of fetching again, later callers of the
// same pass reuse its result (an error too: a dead provider costs one
// timeout per pass, not one per address). A call outside a pass (id 0)
// always fetches and leaves the cache alone; drop() forgets the result, so
// the next caller of the pass fetches again (after a change was sent).
//
// Thread safety: every method may be called from any thread; `fetch` runs
// without the lock held.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "core/provider.h"
#include "util/result.h"

namespace stackflip {

template <class T>
class PassCache {
 public:
  template <class Fetch>
  Result<T> read(ObservePass pass, Fetch&& fetch) {
    if (pass.id == 0) return fetch();
    std::shared_ptr<Flight> flight;
    bool mine = false;
    {
      std::lock_guard lock(mu_);
      if (!flight_ || pass_ != pass.id) {
        pass_ = pass.id;
        flight_ = std::make_shared<Flight>();
        mine = true;
      }
      flight = flight_;
    }
    if (mine) {
      Result<T> r = fetch();
      {
        std::lock_guard lock(mu_);
        flight->result = r;
        flight->done = true;
      }
      done_.notify_all();
      return r;
    }
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return flight->done; });
    return flight->result;
  }

  void drop() {
    std::lock_guard lock(mu_);
    flight_.reset();
  }

 private:
  struct Flight {
    bool done = false;
    Result<T> result{Err("not read yet")};
  };
  std::mutex mu_;
  std::condition_variable done_;
  uint64_t pass_ = 0;
  std::shared_ptr<Flight> flight_;
};

}  // namespace stackflip
