// postgres_control.h — server control of one postgres stack: restart a
// fenced former primary as a standby, or pg_rewind it from the new primary
// and start it as a standby. Used by the postgres driver's re-attach
// (postgres_driver.h); everything runs through run_subprocess (subprocess.h:
// argv, no shell, stackflip's environment never passed on, the command's
// process group killed when it ends or times out).
//
// With a `control_command` (the stack's argv, its program checked against
// the host policy and replaced by its real path, host_policy.h) the work is
// the command's: `CMD... restart-as-standby DATA_DIR` (60 s limit) and
// `CMD... rewind DATA_DIR SOURCE_CONNINFO` (300 s). Without one it is done
// locally with pg_ctl from PATH (else PostgreSQL 15's Debian path) and
// pg_rewind beside it, as the data directory's owner when run as root
// (runuser):
// - restart-as-standby: `pg_ctl stop -m immediate`, standby.signal, `pg_ctl
//   start -l DATA_DIR/../STACK-restart.log`. Immediate on purpose: a fast
//   shutdown writes a shutdown checkpoint record after the point where the
//   new primary's timeline forked, and the server could then never follow
//   it. The server is fenced; crash recovery replays everything committed.
// - rewind: `pg_ctl stop -m fast` (pg_rewind needs a clean shutdown), the
//   server's own *.conf files read, pg_rewind, the *.conf files written back
//   (pg_rewind copies the source's), then started as above.
// A server left running by a control command must be started in its own
// session (pg_ctl does so): the command's process group is killed when the
// command exits.
//
// Files in the data directory (issue 10): the directory is opened once
// without following a link and must be owned by a user other than root (as
// root; by ourselves otherwise) and hold that user's PG_VERSION. standby.signal
// and the kept *.conf files are reached through that descriptor without
// following links and written as the owner (safe_file.h). A planted link at
// standby.signal is refused before the server is stopped; a *.conf that is
// not a regular file of the owner is not kept (warning).
//
// Errors name `where`, the step and the command, with the last 500 bytes of
// its stderr on one line. Thread safety: one thread at a time.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace stackflip {

class PostgresControl {
 public:
  // `stack` names the restart log; `where` prefixes messages
  // ("postgres stack NAME (host:port)"); `control_command` may be empty.
  PostgresControl(std::string stack, std::string where, std::vector<std::string> control_command)
      : stack_(std::move(stack)),
        where_(std::move(where)),
        control_command_(std::move(control_command)) {}

  // Restarts the server of `data_dir` as a standby (immediate stop).
  Status restart_as_standby(const std::string& data_dir) const;
  // Stops the server of `data_dir`, rewinds it from `source_conninfo`
  // (libpq conninfo of the new primary) and starts it as a standby.
  Status rewind_as_standby(const std::string& data_dir, const std::string& source_conninfo) const;

  // Issue 17, through the control command only (`CMD... bootstrap DATA_DIR
  // SOURCE_CONNINFO`, 6 h limit; `CMD... bootstrap-finish DATA_DIR
  // remove|keep` and `CMD... bootstrap-state DATA_DIR`, 60 s). The command
  // owns the data directory's layout and makes the steps resumable
  // (scripts/pg-control.sh). DECISION: no local variant yet; the loader
  // refuses `bootstrap` without a control_command, and these refuse too.
  // bootstrap: the server's data replaced by a base backup of the source,
  // started as a standby; the old data stays aside.
  Status bootstrap(const std::string& data_dir, const std::string& source_conninfo) const;
  // Once the new standby streams: the old data removed (or kept), the
  // marker gone.
  Status bootstrap_finish(const std::string& data_dir, bool keep_old_data) const;
  // The phase of an interrupted bootstrap ("copy"), or nullopt when none
  // is under way; an error when it cannot be told.
  Result<std::optional<std::string>> bootstrap_phase(const std::string& data_dir) const;

 private:
  std::string stack_, where_;
  std::vector<std::string> control_command_;
};

}  // namespace stackflip
