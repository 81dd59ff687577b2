#include "sys/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "util/deadline.h"

namespace stackflip {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long the group may linger after the command exited while holding its
// output pipes, and how long SIGTERM gets before SIGKILL.
constexpr milliseconds kLingerGrace{100};
constexpr milliseconds kKillGrace{250};

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

bool make_pipe(Fd& r, Fd& w) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return false;
  r.fd = p[0];
  w.fd = p[1];
  return true;
}

// Writes to a pipe with SIGPIPE blocked for this thread; a SIGPIPE raised by
// the write is consumed so it is never delivered later.
ssize_t write_no_sigpipe(int fd, const char* data, size_t len) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t n = ::write(fd, data, len);
  int saved = errno;
  if (n < 0 && saved == EPIPE) {
    const timespec zero{0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return n;
}

void read_into(Fd& fd, std::string& out, size_t max) {
  char buf[8192];
  ssize_t n = ::read(fd.fd, buf, sizeof buf);
  if (n > 0) {
    size_t keep = out.size() < max ? std::min(max - out.size(), size_t(n)) : 0;
    out.append(buf, keep);
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    fd.reset();
  }
}

}  // namespace

std::string trim_output(const std::string& s, size_t max_len) {
  const char* ws = " \t\r\n\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  std::string t = s.substr(b, e - b + 1);
  if (t.size() > max_len) t = t.substr(0, max_len) + "…";
  return t;
}

std::vector<std::string> child_environment(const std::vector<std::string>& pass_env) {
  std::vector<std::string> env;
  auto add = [&](const std::string& name) {
    for (const auto& e : env)
      if (e.compare(0, name.size() + 1, name + "=") == 0) return;
    if (const char* v = std::getenv(name.c_str())) env.push_back(name + "=" + v);
  };
  for (const char* name : {"PATH", "HOME", "LANG"}) add(name);
  for (const auto& name : pass_env) add(name);
  return env;
}

Result<SubprocessResult> run_subprocess(const SubprocessOptions& options) {
  if (options.argv.empty()) return Err("cannot run a command: empty argument list");
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::vector<std::string> env_strings = child_environment(options.pass_env);
  std::vector<char*> envp;
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  Fd in_r, in_w, out_r, out_w, err_r, err_w, exec_r, exec_w;
  if (!make_pipe(in_r, in_w) || !make_pipe(out_r, out_w) || !make_pipe(err_r, err_w) ||
      !make_pipe(exec_r, exec_w))
    return Err(std::string("cannot run `") + options.argv[0] + "`: pipe: " + strerror(errno));

  const auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0)
    return Err(std::string("cannot run `") + options.argv[0] + "`: fork: " + strerror(errno));
  if (pid == 0) {
    // Child: only async-signal-safe calls from here to exec.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    ::dup2(in_r.fd, 0);
    ::dup2(out_w.fd, 1);
    ::dup2(err_w.fd, 2);
    // Nothing else of ours reaches the command, whatever a library opened
    // without O_CLOEXEC: a server it starts may outlive us (pg_ctl start).
    // exec_w stays open (it is close-on-exec) to report a failed exec.
    if (exec_w.fd > 3) ::close_range(3, unsigned(exec_w.fd) - 1, 0);
    ::close_range(unsigned(exec_w.fd) + 1, ~0U, 0);
    ::execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    ssize_t ignored = ::write(exec_w.fd, &e, sizeof e);
    (void)ignored;
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so kill(-pid) works at once
  in_r.reset();
  out_w.reset();
  err_w.reset();
  exec_w.reset();

  int exec_errno = 0;
  if (::read(exec_r.fd, &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
    ::waitpid(pid, nullptr, 0);
    return Err(std::string("cannot run `") + options.argv[0] + "`: " + strerror(exec_errno));
  }

  ::fcntl(in_w.fd, F_SETFL, O_NONBLOCK);
  SubprocessResult res;
  size_t written = 0;
  if (options.stdin_data.empty()) in_w.reset();

  const auto deadline = start + options.timeout;
  bool reaped = false, term_sent = false, kill_sent = false;
  Clock::time_point exited_at{}, term_at{};
  int wstatus = 0;

  for (;;) {
    auto now = Clock::now();
    if (!reaped && !term_sent && now >= deadline) {
      res.timed_out = true;
      term_sent = true;
      term_at = now;
      ::kill(-pid, SIGTERM);
    }
    if (!reaped && !kill_sent) {
      if (std::string why = operation_stopped(); !why.empty()) {
        res.timed_out = true;
        res.stopped = why;
        term_sent = kill_sent = true;
        ::kill(-pid, SIGKILL);
      }
    }
    if (term_sent && !kill_sent && now >= term_at + kKillGrace) {
      kill_sent = true;
      ::kill(-pid, SIGKILL);
    }
    if (reaped && now >= exited_at + kLingerGrace) break;  // output held by an escaped process
    if (reaped && out_r.fd < 0 && err_r.fd < 0) break;

    pollfd fds[3];
    int n = 0;
    int i_in = -1, i_out = -1, i_err = -1;
    if (in_w.fd >= 0) fds[i_in = n++] = {in_w.fd, POLLOUT, 0};
    if (out_r.fd >= 0) fds[i_out = n++] = {out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) fds[i_err = n++] = {err_r.fd, POLLIN, 0};
    int wait_ms = reaped ? 5 : 10;
    if (!term_sent) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - now).count();
      wait_ms = int(std::clamp<long long>(left, 0, wait_ms));
    }
    if (n > 0) {
      ::poll(fds, n, wait_ms);
    } else {
      std::this_thread::sleep_for(milliseconds(std::max(wait_ms, 1)));
    }
    if (i_in >= 0 && (fds[i_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write_no_sigpipe(in_w.fd, options.stdin_data.data() + written,
                                   options.stdin_data.size() - written);
      if (w > 0) written += size_t(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == options.stdin_data.size())
        in_w.reset();
    }
    if (i_out >= 0 && fds[i_out].revents) read_into(out_r, res.out, options.max_output);
    if (i_err >= 0 && fds[i_err].revents) read_into(err_r, res.err, options.max_output);
    if (!reaped) {
      // Detect the exit without reaping, so the group id stays reserved while
      // the rest of the group is killed; then reap.
      siginfo_t info{};
      if (::waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid) {
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &wstatus, 0);
        reaped = true;
        exited_at = Clock::now();
        in_w.reset();
      }
    }
  }
  if (WIFEXITED(wstatus)) res.exit_code = WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) res.term_signal = WTERMSIG(wstatus);
  return res;
}

}  // namespace stackflip
