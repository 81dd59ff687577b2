#include "sys/subprocess.h"

#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <thread>

using namespace stackflip;
using namespace std::chrono_literals;

namespace {
// True when `pid` no longer runs (gone, or a zombie awaiting its reaper).
bool process_gone(pid_t pid) {
  for (int i = 0; i < 100; ++i) {
    if (::kill(pid, 0) != 0) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z')
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}
}  // namespace

TEST_CASE("a command gets stdin and its stdout, stderr and exit status are captured") {
  SubprocessOptions o;
  o.argv = {"sh", "-c", "cat; echo oops >&2; exit 3"};
  o.stdin_data = "hello";
  auto r = run_subprocess(o);
  REQUIRE(r.ok());
  CHECK(r->out == "hello");
  CHECK(trim_output(r->err) == "oops");
  CHECK(r->exit_code == 3);
  CHECK_FALSE(r->timed_out);
}

TEST_CASE("arguments are passed as they are, never through a shell") {
  SubprocessOptions o;
  o.argv = {"printf", "%s|", "a b", "$HOME", ";true"};
  auto r = run_subprocess(o);
  REQUIRE(r.ok());
  CHECK(r->out == "a b|$HOME|;true|");
}

TEST_CASE("a missing program is an error naming it") {
  SubprocessOptions o;
  o.argv = {"/nonexistent/stackflip-helper"};
  auto r = run_subprocess(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("/nonexistent/stackflip-helper") != std::string::npos);
}

TEST_CASE("a command that ignores its stdin does not break the writer") {
  SubprocessOptions o;
  o.argv = {"true"};
  o.stdin_data = std::string(1 << 20, 'x');  // more than a pipe holds
  auto r = run_subprocess(o);
  REQUIRE(r.ok());
  CHECK(r->exit_code == 0);
}

TEST_CASE("a hanging command is killed at its timeout together with its children") {
  std::string pidfile = "/tmp/stackflip-subprocess-test-" + std::to_string(::getpid());
  SubprocessOptions o;
  o.argv = {"sh", "-c", "sleep 30 & echo $! > \"$1\"; wait", "sh", pidfile};
  // Long enough for the shell to start its child on a loaded machine (200 ms
  // was not, under AddressSanitizer on two busy cores).
  o.timeout = 1s;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_subprocess(o);
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(r.ok());
  CHECK(r->timed_out);
  CHECK(took < 4s);
  std::ifstream in(pidfile);
  pid_t child = 0;
  in >> child;
  std::remove(pidfile.c_str());
  REQUIRE(child > 0);
  CHECK(process_gone(child));
}

TEST_CASE(
    "a background child left behind by a finished command is killed and does not hold the caller") {
  SubprocessOptions o;
  o.argv = {"sh", "-c", "sleep 30 & echo started"};
  o.timeout = 5s;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_subprocess(o);
  REQUIRE(r.ok());
  CHECK(r->exit_code == 0);
  CHECK(r->out == "started\n");
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
}
