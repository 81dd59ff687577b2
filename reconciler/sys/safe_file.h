// safe_file.h — file operations by a privileged process (stackflip running
// as root) inside a directory that a less privileged user controls: a
// PostgreSQL data directory, owned by the postgres user.
//
// Whoever owns that directory can put a symbolic link, a hard link or a FIFO
// at any name in it at any moment. A root process that opens or chowns a
// path there follows the link and writes, truncates or gives away a file
// anywhere on the host (issue 10, item 11). So nothing here takes a path
// below the directory: the directory is opened once (O_DIRECTORY |
// O_NOFOLLOW, ownership checked on the open descriptor) and every file is
// reached relative to that descriptor with O_NOFOLLOW; a file created for
// the owner is created exclusively and handed over with fchown() on the
// open descriptor, never chown() by path. A name that is a symbolic link,
// not a regular file, hard-linked elsewhere or owned by someone else is
// refused with an error naming it; nothing is followed or replaced.
//
// The directory's own path is trusted up to its last component (the
// operator's layout); its last component must not be a link.
//
// Thread safety: functions only; an OwnedDir is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace stackflip {

// An open directory and the owner its files are created for. Move-only;
// closes the descriptor.
class OwnedDir {
 public:
  OwnedDir() = default;
  OwnedDir(int fd, uid_t uid, gid_t gid, std::string path)
      : fd_(fd), uid_(uid), gid_(gid), path_(std::move(path)) {}
  OwnedDir(OwnedDir&& o) noexcept { *this = std::move(o); }
  OwnedDir& operator=(OwnedDir&& o) noexcept;
  OwnedDir(const OwnedDir&) = delete;
  OwnedDir& operator=(const OwnedDir&) = delete;
  ~OwnedDir();

  int fd() const { return fd_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::string path_;
};

// Opens `path` as a directory without following a symbolic link at its last
// component. Refused (error naming the path) when it is a link or not a
// directory, when it is writable by group or others, when `expected_uid` is
// given and it is owned by anyone else, and — without `expected_uid` — when
// it is owned by root (a directory a service user controls is what this is
// for; a root-owned one means the path leads somewhere else). The owner and
// group of the directory become the OwnedDir's uid and gid.
Result<OwnedDir> open_owned_dir(const std::string& path, std::optional<uid_t> expected_uid);

enum class WriteMode {
  kCreate,   // the name must not exist (O_EXCL)
  kReplace,  // created, or an existing regular file of the owner is truncated
};

// Writes `bytes` to `name` (one path component) in `dir` so that the file
// ends up a regular file with a single link, owned by `uid`:`gid`, with mode
// `mode`, and synced to disk. An existing name is accepted only under
// kReplace and only when it is a regular file with one link owned by `uid`;
// a symbolic link, FIFO, device, directory, hard link or another user's file
// is refused and left as it is. Ownership is set with fchown() on the open
// descriptor (needs root when `uid` is not the caller's).
Status write_file_as_owner(int dir_fd, const std::string& name, std::string_view bytes, uid_t uid,
                           gid_t gid, WriteMode mode, mode_t perms = 0600);

// Reads `name` (one path component) in `dir`: a regular file with one link,
// owned by `uid`, at most `max_bytes` long. A symbolic link (never followed),
// a FIFO (never blocked on) or anything else is refused.
Result<std::string> read_owned_file(int dir_fd, const std::string& name, uid_t uid,
                                    size_t max_bytes);

// Writes `bytes` to `path` (created or truncated, mode 0600 when created),
// flushed. For files the operator asked for by name (`plan --out`) and
// private temporary files; the error names the path and the reason.
Status write_file(const std::string& path, std::string_view bytes);

// The names in `dir` (without "." and ".."), unsorted.
Result<std::vector<std::string>> list_dir(int dir_fd);

}  // namespace stackflip
