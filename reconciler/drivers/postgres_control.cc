#include "drivers/postgres_control.h"

#include <fcntl.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "config/host_policy.h"
#include "sys/safe_file.h"
#include "sys/subprocess.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kRestartLimit{60000};
constexpr milliseconds kRewindLimit{300000};
constexpr milliseconds kBootstrapLimit{6 * 3600 * 1000};

// The configured control_command with its program checked against the host
// policy (host_policy.h) and replaced by its real path.
Result<std::vector<std::string>> control_argv(std::vector<std::string> argv) {
  if (argv.empty()) return Err("empty control_command");
  if (const HostPolicy* policy = host_policy()) {
    auto program = policy->allow_command(argv[0]);
    if (!program.ok()) return program.error();
    argv[0] = *program;
  }
  return argv;
}

// Runs argv (subprocess.h) with the host policy's command_env; ok when it
// exited 0. Otherwise an Error naming `what` and the program, with the end
// of its stderr. `out`, when given, receives its standard output.
Status run_command(const std::vector<std::string>& argv, milliseconds limit,
                   const std::string& what, std::string* out = nullptr) {
  if (argv.empty()) return Err(what + ": empty command");
  SubprocessOptions options;
  options.argv = argv;
  options.timeout = limit;
  options.max_output = 64 * 1024;
  if (const HostPolicy* policy = host_policy()) options.pass_env = policy->command_env;
  auto r = run_subprocess(options);
  if (!r.ok()) return Err(what + ": " + r.error().message);
  std::string tail = trim(r->err);
  std::replace(tail.begin(), tail.end(), '\n', ' ');
  if (tail.size() > 500) tail = "..." + tail.substr(tail.size() - 500);
  const std::string& cmd = argv[0];
  if (!r->stopped.empty())
    return Timeout(what + ": " + cmd + " killed before it finished: " + r->stopped);
  if (r->timed_out)
    return Timeout(what + ": " + cmd + " did not finish within " +
                   std::to_string(limit.count() / 1000) + " s; killed" +
                   (tail.empty() ? "" : ": " + tail));
  if (r->ok()) {
    if (out) *out = r->out;
    return Status::Ok();
  }
  std::string how = r->exit_code >= 0 ? "exited with status " + std::to_string(r->exit_code)
                                      : "killed by signal " + std::to_string(r->term_signal);
  return Err(what + ": " + cmd + " " + how + (tail.empty() ? "" : ": " + tail));
}

std::string find_pg_ctl() {
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      std::string dir = p.substr(start, end - start);
      if (!dir.empty()) {
        std::string cand = dir + "/pg_ctl";
        if (access(cand.c_str(), X_OK) == 0) return cand;
      }
      start = end + 1;
    }
  }
  return "/usr/lib/postgresql/15/bin/pg_ctl";
}

// The data directory as root may touch it: opened once without following
// a link (safe_file.h), owned by the user PostgreSQL runs as (as root: any
// user but root; otherwise ourselves), and holding a PG_VERSION of that
// user. Every file stackflip itself reads or writes there goes through
// this descriptor; PostgreSQL's own programs run as that user.
Result<OwnedDir> open_data_dir(const std::string& data_dir, const std::string& where) {
  const std::string what = where + ": data directory " + data_dir;
  if (data_dir.empty()) return Err(where + ": unknown data_directory");
  std::optional<uid_t> expected;
  if (geteuid() != 0) expected = geteuid();
  auto dir = open_owned_dir(data_dir, expected);
  if (!dir.ok()) return Err(where + ": " + dir.error().message);
  struct stat st {};
  if (fstatat(dir->fd(), "PG_VERSION", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
      st.st_uid != dir->uid())
    return Err(what + " has no PG_VERSION file of its owner: not a PostgreSQL data directory");
  return dir;
}

// standby.signal must be absent or a regular file of the owner before the
// server is stopped: a planted link is refused while the server still runs.
Status check_signal_name(const OwnedDir& dir, const std::string& where) {
  struct stat st {};
  if (fstatat(dir.fd(), "standby.signal", &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::Ok();
  if (S_ISREG(st.st_mode) && st.st_uid == dir.uid() && st.st_nlink == 1) return Status::Ok();
  return Err(where + ": " + dir.path() + "/standby.signal " +
             (S_ISLNK(st.st_mode) ? "is a symbolic link" : "is not a regular file of the owner") +
             ": refused, the server was left running (remove it and apply again)");
}

// argv prefixed, as root, to run as the data directory's owner.
class AsOwner {
 public:
  explicit AsOwner(const OwnedDir& dir) {
    if (geteuid() == 0 && dir.uid() != 0)
      if (passwd* pw = getpwuid(dir.uid())) prefix_ = {"runuser", "-u", pw->pw_name, "--"};
  }
  std::vector<std::string> operator()(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), prefix_.begin(), prefix_.end());
    return argv;
  }

 private:
  std::vector<std::string> prefix_;
};

// The data directory's *.conf files that are regular files of its owner:
// name → contents. Others are skipped with a warning.
Result<std::map<std::string, std::string>> read_confs(const OwnedDir& dir,
                                                      const std::string& what) {
  auto names = list_dir(dir.fd());
  if (!names.ok()) return Err(what + ": " + dir.path() + ": " + names.error().message);
  std::map<std::string, std::string> confs;
  for (const std::string& name : *names) {
    if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".conf") != 0) continue;
    auto text = read_owned_file(dir.fd(), name, dir.uid(), 16 << 20);
    if (!text.ok()) {
      spdlog::warn("{}: not kept across pg_rewind: {}/{}", what, dir.path(), text.error().message);
      continue;
    }
    confs[name] = std::move(*text);
  }
  return confs;
}

Status start_as_standby(const OwnedDir& dir, const AsOwner& as_owner, const std::string& stack,
                        const std::string& where) {
  Status s = write_file_as_owner(dir.fd(), "standby.signal", "", dir.uid(), dir.gid(),
                                 WriteMode::kReplace);
  if (!s.ok()) return Err(where + ": start as standby: " + dir.path() + ": " + s.message());
  const std::string log =
      (std::filesystem::path(dir.path()).parent_path() / (stack + "-restart.log")).string();
  return run_command(as_owner({find_pg_ctl(), "-D", dir.path(), "-w", "-l", log, "start"}),
                     kRestartLimit, where + ": start as standby");
}

}  // namespace

Status PostgresControl::restart_as_standby(const std::string& data_dir) const {
  const std::string what = where_ + ": restart-as-standby";
  if (data_dir.empty()) return Err(what + ": unknown data_directory");
  if (!control_command_.empty()) {
    auto argv = control_argv(control_command_);
    if (!argv.ok()) return Err(what + ": " + argv.error().message);
    argv->push_back("restart-as-standby");
    argv->push_back(data_dir);
    return run_command(*argv, kRestartLimit, what);
  }
  // Local pg_ctl, immediate stop on purpose (see the header).
  auto dir = open_data_dir(data_dir, where_);
  if (!dir.ok()) return dir.error();
  if (Status s = check_signal_name(*dir, where_); !s.ok()) return s;
  const AsOwner as_owner(*dir);
  Status s = run_command(as_owner({find_pg_ctl(), "-D", data_dir, "-m", "immediate", "-w", "stop"}),
                         kRestartLimit, what + " (stop)");
  if (!s.ok()) return s;
  spdlog::debug("{}: stopped", where_);
  return start_as_standby(*dir, as_owner, stack_, where_);
}

Status PostgresControl::rewind_as_standby(const std::string& data_dir,
                                          const std::string& source_conninfo) const {
  const std::string what = where_ + ": rewind";
  if (data_dir.empty()) return Err(what + ": unknown data_directory");
  if (!control_command_.empty()) {
    auto argv = control_argv(control_command_);
    if (!argv.ok()) return Err(what + ": " + argv.error().message);
    argv->insert(argv->end(), {"rewind", data_dir, source_conninfo});
    return run_command(*argv, kRewindLimit, what);
  }
  auto dir = open_data_dir(data_dir, where_);
  if (!dir.ok()) return dir.error();
  if (Status s = check_signal_name(*dir, where_); !s.ok()) return s;
  const AsOwner as_owner(*dir);
  const std::filesystem::path pg_ctl = find_pg_ctl();
  const std::string bin = pg_ctl.has_parent_path() ? pg_ctl.parent_path().string() + "/" : "";
  Status s = run_command(as_owner({pg_ctl.string(), "-D", data_dir, "-m", "fast", "-w", "stop"}),
                         kRestartLimit, what + " (stop)");
  if (!s.ok()) return s;
  auto confs = read_confs(*dir, what);
  if (!confs.ok()) return confs.error();
  s = run_command(as_owner({bin + "pg_rewind", "--target-pgdata=" + data_dir,
                            "--source-server=" + source_conninfo}),
                  kRewindLimit, what + " (pg_rewind)");
  // pg_rewind copied the source's configuration: put this server's back.
  for (const auto& [name, text] : *confs) {
    Status w =
        write_file_as_owner(dir->fd(), name, text, dir->uid(), dir->gid(), WriteMode::kReplace);
    if (!w.ok() && s.ok()) s = Err(what + ": restoring " + dir->path() + ": " + w.message());
  }
  if (!s.ok()) return s;
  return start_as_standby(*dir, as_owner, stack_, where_);
}

namespace {
Result<std::vector<std::string>> bootstrap_argv(const std::vector<std::string>& control,
                                                const std::string& what) {
  if (control.empty())
    return Refused(what +
                   ": a bootstrap runs through the stack's control_command (it is not "
                   "built for a local pg_ctl)");
  auto argv = control_argv(control);
  if (!argv.ok()) return Err(what + ": " + argv.error().message);
  return argv;
}
}  // namespace

Status PostgresControl::bootstrap(const std::string& data_dir,
                                  const std::string& source_conninfo) const {
  const std::string what = where_ + ": bootstrap";
  auto argv = bootstrap_argv(control_command_, what);
  if (!argv.ok()) return argv.error();
  argv->insert(argv->end(), {"bootstrap", data_dir, source_conninfo});
  return run_command(*argv, kBootstrapLimit, what);
}

Status PostgresControl::bootstrap_finish(const std::string& data_dir, bool keep_old_data) const {
  const std::string what = where_ + ": bootstrap-finish";
  auto argv = bootstrap_argv(control_command_, what);
  if (!argv.ok()) return argv.error();
  argv->insert(argv->end(), {"bootstrap-finish", data_dir, keep_old_data ? "keep" : "remove"});
  return run_command(*argv, kRestartLimit, what);
}

Result<std::optional<std::string>> PostgresControl::bootstrap_phase(
    const std::string& data_dir) const {
  const std::string what = where_ + ": bootstrap-state";
  auto argv = bootstrap_argv(control_command_, what);
  if (!argv.ok()) return argv.error();
  argv->insert(argv->end(), {"bootstrap-state", data_dir});
  std::string out;
  if (Status s = run_command(*argv, milliseconds(10000), what, &out); !s.ok()) return s.error();
  out = trim(out);
  if (out.empty() || out == "none") return std::optional<std::string>();
  if (out.size() > 64) out.resize(64);
  return std::optional<std::string>(out);
}

}  // namespace stackflip
