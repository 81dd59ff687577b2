// deadline.h — a deadline for everything the calling thread runs, however
// deep: the blocking primitives stop at it.
//
// With etcd an instance may act on a group only while its lease is certainly
// its own (issue 13). apply opens a DeadlineScope around each action, and
// every blocking call beneath it asks this header: a subprocess's process
// group is killed (sys/subprocess.h), an HTTP request is not sent or is cut
// (sys/http_client.h), a PostgreSQL statement is cancelled and a connection
// not attempted (drivers/postgres_session.h), a poll loop stops
// (util/backoff.h), all with the scope's reason. The deadline is a function,
// asked again whenever it is consulted, because a lease kept alive moves it
// later. The loops (subprocess, statement, polls) ask every few ms; a
// request's or connection's timeout is cut once, at its start, which is
// safe as long as the deadline only moves later, as a living lease's does.
//
// Scopes nest (the earliest deadline wins) and belong to one thread: a thread
// the operation starts does not inherit them. Without a scope nothing changes.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace stackflip {

using SteadyTime = std::chrono::steady_clock::time_point;

class DeadlineScope {
 public:
  // `why` completes "stopped: ..." in the errors of what it stops.
  DeadlineScope(std::function<SteadyTime()> until, std::string why);
  ~DeadlineScope();
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;

 private:
  friend struct DeadlineNow;
  std::function<SteadyTime()> until_;
  std::string why_;
  DeadlineScope* outer_;
};

// The calling thread's deadline, asked now: the earliest of its scopes;
// none without a scope.
std::optional<SteadyTime> operation_deadline();
// "" while the deadline has not passed (or there is none); else the reason,
// "stopped: <why>".
std::string operation_stopped();
// `limit`, cut to the time left before the deadline (0 once it has passed).
std::chrono::milliseconds within_deadline(std::chrono::milliseconds limit);
// "stopped: <why>" of the earliest scope, passed or not ("" without one):
// for a timeout that within_deadline() cut, which may fire a little early.
std::string deadline_reason();

}  // namespace stackflip
