#include "sys/safe_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace stackflip {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

// A closed-on-scope-exit descriptor.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

bool valid_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// Why an existing `name` is not acceptable, from an lstat-like look that
// follows nothing ("" when it is a regular file of `uid` with one link).
std::string refusal(const struct stat& st, uid_t uid) {
  if (S_ISLNK(st.st_mode)) return "is a symbolic link";
  if (!S_ISREG(st.st_mode)) return "is not a regular file";
  if (st.st_nlink != 1) return "has " + std::to_string(st.st_nlink) + " hard links";
  if (st.st_uid != uid)
    return "is owned by uid " + std::to_string(st.st_uid) + ", not " + std::to_string(uid);
  return "";
}

// Opens an existing `name` for writing without following or blocking, and
// checks what was opened (not what the name pointed at a moment before).
Result<int> open_existing(int dir_fd, const std::string& name, uid_t uid) {
  int fd = openat(dir_fd, name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    struct stat st {};
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !refusal(st, uid).empty())
      return Err(refusal(st, uid));
    return Err(errno_text(e));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !refusal(st, uid).empty()) {
    std::string why = refusal(st, uid);
    close(fd);
    return Err(why.empty() ? "cannot stat it" : why);
  }
  return fd;
}

}  // namespace

OwnedDir& OwnedDir::operator=(OwnedDir&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.fd_;
    uid_ = o.uid_;
    gid_ = o.gid_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

OwnedDir::~OwnedDir() {
  if (fd_ >= 0) close(fd_);
}

Result<OwnedDir> open_owned_dir(const std::string& path, std::optional<uid_t> expected_uid) {
  const std::string what = "directory " + path;
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      return Err(what + " is a symbolic link: refused (name the real directory)");
    return Err(what + ": " + errno_text(e));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return Err(what + ": " + errno_text(e));
  }
  std::string why;
  if (expected_uid && st.st_uid != *expected_uid)
    why = "is owned by uid " + std::to_string(st.st_uid) + ", expected uid " +
          std::to_string(*expected_uid);
  else if (!expected_uid && st.st_uid == 0)
    why = "is owned by root, not by the service user that should own it";
  else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    why = "is writable by group or others";
  if (!why.empty()) {
    close(fd);
    return Err(what + " " + why + ": refused");
  }
  return OwnedDir(fd, st.st_uid, st.st_gid, path);
}

Status write_file_as_owner(int dir_fd, const std::string& name, std::string_view bytes, uid_t uid,
                           gid_t gid, WriteMode mode, mode_t perms) {
  const std::string what = "cannot write " + name;
  if (!valid_name(name)) return Err(what + ": not a single file name");
  int fd = -1;
  // Creating exclusively first: a name that exists is then opened without
  // O_CREAT and checked on the descriptor. A few rounds cover a name that is
  // removed or created between the two opens.
  for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
    fd = openat(dir_fd, name.c_str(),
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
                perms & 0700);
    if (fd >= 0) break;
    if (errno != EEXIST) return Err(what + ": " + errno_text(errno));
    if (mode == WriteMode::kCreate) {
      struct stat st {};
      std::string why = "it already exists";
      if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        why = "it is a symbolic link";
      return Err(what + ": " + why + ": refused");
    }
    auto existing = open_existing(dir_fd, name, uid);
    if (existing.ok()) {
      fd = *existing;
      break;
    }
    struct stat st {};
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) continue;
    return Err(what + ": it " + existing.error().message + ": refused");
  }
  if (fd < 0) return Err(what + ": the name keeps changing: refused");
  Fd guard(fd);
  struct stat st {};
  if (fstat(fd, &st) != 0) return Err(what + ": " + errno_text(errno));
  if ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) != 0)
    return Err(what + ": fchown to " + std::to_string(uid) + ":" + std::to_string(gid) + ": " +
               errno_text(errno));
  if ((st.st_mode & 07777) != perms && fchmod(fd, perms) != 0)
    return Err(what + ": fchmod: " + errno_text(errno));
  if (ftruncate(fd, 0) != 0) return Err(what + ": truncate: " + errno_text(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(what + ": " + errno_text(errno));
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return Err(what + ": fsync: " + errno_text(errno));
  guard.fd = -1;
  if (close(fd) != 0) return Err(what + ": close: " + errno_text(errno));
  return Status::Ok();
}

Result<std::string> read_owned_file(int dir_fd, const std::string& name, uid_t uid,
                                    size_t max_bytes) {
  const std::string what = "cannot read " + name;
  if (!valid_name(name)) return Err(what + ": not a single file name");
  int fd = openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    struct stat st {};
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !refusal(st, uid).empty())
      return Err(what + ": it " + refusal(st, uid) + ": refused");
    return Err(what + ": " + errno_text(e));
  }
  Fd guard(fd);
  struct stat st {};
  if (fstat(fd, &st) != 0) return Err(what + ": " + errno_text(errno));
  if (std::string why = refusal(st, uid); !why.empty())
    return Err(what + ": it " + why + ": refused");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return Err(what + ": larger than " + std::to_string(max_bytes) + " bytes");
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(what + ": " + errno_text(errno));
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      return Err(what + ": larger than " + std::to_string(max_bytes) + " bytes");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::vector<std::string>> list_dir(int dir_fd) {
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Err(std::string("cannot list the directory: ") + errno_text(errno));
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    int e = errno;
    close(fd);
    return Err("cannot list the directory: " + errno_text(e));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* ent = readdir(d)) {
    std::string n = ent->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  int e = errno;
  closedir(d);
  if (e != 0) return Err("cannot list the directory: " + errno_text(e));
  return names;
}

Status write_file(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Err("cannot write " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Err("cannot write " + path + ": " + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return Err("cannot write " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace stackflip
