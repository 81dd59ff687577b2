// Issue 10, item 11: root file operations in a directory another user
// controls (a PostgreSQL data directory) must not follow what that user
// planted there.
#include "sys/safe_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace stackflip;

namespace {

// A scratch tree: ROOT/outside/canary (the file an attacker aims at) and
// ROOT/data (the directory they control).
struct Tree {
  std::string root, data, canary;
  Tree() {
    std::string tmpl = std::filesystem::temp_directory_path().string() + "/safe_file_test.XXXXXX";
    root = mkdtemp(tmpl.data());
    data = root + "/data";
    mkdir(data.c_str(), 0700);
    mkdir((root + "/outside").c_str(), 0700);
    canary = root + "/outside/canary";
    std::ofstream(canary) << "canary\n";
    chmod(canary.c_str(), 0644);
  }
  ~Tree() { std::filesystem::remove_all(root); }
  std::string canary_text() const {
    std::ifstream in(canary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  struct stat canary_stat() const {
    struct stat st {};
    lstat(canary.c_str(), &st);
    return st;
  }
};

struct stat lstat_of(const std::string& p) {
  struct stat st {};
  REQUIRE(lstat(p.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("issue 10: a symlink planted at the target name is refused and its target left alone") {
  Tree t;
  REQUIRE(symlink(t.canary.c_str(), (t.data + "/standby.signal").c_str()) == 0);
  const struct stat before = t.canary_stat();
  auto dir = open_owned_dir(t.data, geteuid());
  REQUIRE(dir.ok());
  for (WriteMode mode : {WriteMode::kCreate, WriteMode::kReplace}) {
    Status s = write_file_as_owner(dir->fd(), "standby.signal", "", geteuid(), getegid(), mode);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("standby.signal") != std::string::npos);
    CHECK(s.message().find("symbolic link") != std::string::npos);
  }
  CHECK(t.canary_text() == "canary\n");
  const struct stat after = t.canary_stat();
  CHECK(after.st_uid == before.st_uid);
  CHECK(after.st_gid == before.st_gid);
  CHECK(after.st_mode == before.st_mode);
  CHECK(after.st_size == before.st_size);
  CHECK(S_ISLNK(lstat_of(t.data + "/standby.signal").st_mode));  // left as it was

  auto read = read_owned_file(dir->fd(), "standby.signal", geteuid(), 1 << 20);
  REQUIRE_FALSE(read.ok());
  CHECK(read.error().message.find("symbolic link") != std::string::npos);
}

TEST_CASE("issue 10: a data directory that is itself a symlink is refused") {
  Tree t;
  const std::string link = t.root + "/data-link";
  REQUIRE(symlink(t.data.c_str(), link.c_str()) == 0);
  auto dir = open_owned_dir(link, geteuid());
  REQUIRE_FALSE(dir.ok());
  CHECK(dir.error().message.find("symbolic link") != std::string::npos);
  CHECK(open_owned_dir(t.data, geteuid()).ok());
}

TEST_CASE("issue 10: a data directory owned by someone else, or writable by others, is refused") {
  Tree t;
  auto other = open_owned_dir(t.data, geteuid() + 1);
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().message.find("owned by uid") != std::string::npos);
  chmod(t.data.c_str(), 0777);
  auto open_dir = open_owned_dir(t.data, geteuid());
  REQUIRE_FALSE(open_dir.ok());
  CHECK(open_dir.error().message.find("writable by group or others") != std::string::npos);
  if (geteuid() == 0) {  // root-owned without an expected owner: not a service user's directory
    chmod(t.data.c_str(), 0700);
    auto rooted = open_owned_dir(t.data, std::nullopt);
    REQUIRE_FALSE(rooted.ok());
    CHECK(rooted.error().message.find("owned by root") != std::string::npos);
  }
}

TEST_CASE("issue 10: a created file is handed to the owner on its descriptor, mode 0600") {
  Tree t;
  auto dir = open_owned_dir(t.data, geteuid());
  REQUIRE(dir.ok());
  // As root the file goes to another user; otherwise to ourselves.
  const uid_t uid = geteuid() == 0 ? 4242 : geteuid();
  const gid_t gid = geteuid() == 0 ? 4343 : getegid();
  REQUIRE(write_file_as_owner(dir->fd(), "standby.signal", "x", uid, gid, WriteMode::kCreate).ok());
  struct stat st = lstat_of(t.data + "/standby.signal");
  CHECK(S_ISREG(st.st_mode));
  CHECK(st.st_uid == uid);
  CHECK(st.st_gid == gid);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_size == 1);
  // kCreate never reuses a name; kReplace truncates the owner's own file.
  CHECK_FALSE(
      write_file_as_owner(dir->fd(), "standby.signal", "", uid, gid, WriteMode::kCreate).ok());
  REQUIRE(
      write_file_as_owner(dir->fd(), "standby.signal", "abc", uid, gid, WriteMode::kReplace).ok());
  CHECK(lstat_of(t.data + "/standby.signal").st_size == 3);
  auto back = read_owned_file(dir->fd(), "standby.signal", uid, 1 << 20);
  REQUIRE(back.ok());
  CHECK(*back == "abc");
}

TEST_CASE("issue 10: a hard link, a FIFO or another user's file at the name is refused") {
  Tree t;
  auto dir = open_owned_dir(t.data, geteuid());
  REQUIRE(dir.ok());
  REQUIRE(link(t.canary.c_str(), (t.data + "/hard.conf").c_str()) == 0);
  Status s = write_file_as_owner(dir->fd(), "hard.conf", "evil", geteuid(), getegid(),
                                 WriteMode::kReplace);
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("hard links") != std::string::npos);
  CHECK(t.canary_text() == "canary\n");
  CHECK_FALSE(read_owned_file(dir->fd(), "hard.conf", geteuid(), 1 << 20).ok());

  REQUIRE(mkfifo((t.data + "/fifo.conf").c_str(), 0600) == 0);  // must not block
  CHECK_FALSE(
      write_file_as_owner(dir->fd(), "fifo.conf", "x", geteuid(), getegid(), WriteMode::kReplace)
          .ok());
  CHECK_FALSE(read_owned_file(dir->fd(), "fifo.conf", geteuid(), 1 << 20).ok());

  std::ofstream(t.data + "/theirs.conf") << "theirs";
  CHECK_FALSE(write_file_as_owner(dir->fd(), "theirs.conf", "x", geteuid() + 1, getegid(),
                                  WriteMode::kReplace)
                  .ok());
  CHECK_FALSE(
      write_file_as_owner(dir->fd(), "../escape", "x", geteuid(), getegid(), WriteMode::kCreate)
          .ok());
}

TEST_CASE("issue 10: list_dir names the entries without following them") {
  Tree t;
  std::ofstream(t.data + "/a.conf") << "a";
  REQUIRE(symlink(t.canary.c_str(), (t.data + "/b.conf").c_str()) == 0);
  auto dir = open_owned_dir(t.data, geteuid());
  REQUIRE(dir.ok());
  auto names = list_dir(dir->fd());
  REQUIRE(names.ok());
  std::sort(names->begin(), names->end());
  CHECK(*names == std::vector<std::string>{"a.conf", "b.conf"});
}
