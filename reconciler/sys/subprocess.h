// subprocess.h — run one argv (never through a shell) with data on stdin,
// capture stdout and stderr, and bound it in time.
//
// The child runs in its own process group. When the deadline passes the whole
// group gets SIGTERM and, after a short grace period, SIGKILL, so helpers the
// command started (a `sleep`, an ssh) do not outlive it. When the command
// itself exits, whatever is left in its process group is killed too: an
// operation's processes never outlive the operation (a script that must leave
// a daemon behind starts it with `setsid`). The calling thread's operation
// deadline (util/deadline.h), asked every 10 ms, stops it too: the group gets
// SIGKILL at once, since that deadline is a safety bound, not a courtesy.
//
// Thread safety: run_subprocess() may be called from several threads at once.
// While writing to the child's stdin SIGPIPE is blocked for the calling thread
// only (and a pending one consumed), so the process-wide disposition is left
// alone. The child starts with an empty signal mask.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "util/result.h"

namespace stackflip {

struct SubprocessOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH (execvp)
  std::string stdin_data;         // written to the child's stdin, then closed
  std::chrono::milliseconds timeout{30000};
  size_t max_output = 1 << 20;  // bytes kept per stream; the rest is read and dropped
  // The child's environment is PATH, HOME and LANG plus these variables (when
  // set), never the whole of stackflip's: secrets such as PGPASSWORD or the
  // webhook secret stay in this process (host_policy.h: command_env).
  std::vector<std::string> pass_env;
};

// The environment a child gets: PATH, HOME, LANG and `pass_env`, as
// "NAME=value" strings, from this process's environment.
std::vector<std::string> child_environment(const std::vector<std::string>& pass_env);

struct SubprocessResult {
  int exit_code = -1;   // when the child exited normally, else -1
  int term_signal = 0;  // when the child was killed by a signal
  bool timed_out = false;
  std::string stopped;   // when the operation deadline stopped it: why (timed_out too)
  std::string out, err;  // captured stdout / stderr (possibly truncated)
  bool ok() const { return !timed_out && exit_code == 0; }
};

// Runs the command and waits for it. Errors only when it could not be started
// (empty argv, fork/pipe failure, exec failure: "cannot run `x`: No such file
// or directory"); a non-zero exit or a timeout is a SubprocessResult.
Result<SubprocessResult> run_subprocess(const SubprocessOptions& options);

// Trims ASCII whitespace at both ends (for stderr in messages).
std::string trim_output(const std::string& s, size_t max_len = 2000);

}  // namespace stackflip
