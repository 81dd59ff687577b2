// git_source.h — where the desired state comes from: a Git repository,
// mirrored into a local cache folder and read at the head of one branch.
//
// ConfigSource is the narrow interface the reconcile pass uses (reconcile.h);
// GitSource implements it on libgit2 (the only file including git2.h).
//
// GitSource keeps a bare repository in `cache_dir`: the first fetch() creates
// it ("clone once"), later ones fetch into it. Branches are fetched with a
// forced refspec (+refs/heads/*:refs/remotes/origin/*), so a force-push simply
// moves the branch. URLs: local paths, file://, https:// (token from a secret
// reference, sent as the password of user "x-access-token"; never logged),
// ssh:// and scp-like user@host:path (a key file, else the SSH agent).
//
// Credentials never reach the disk: the cache's config holds the URL without
// its userinfo (https://user:token@host/x is stored as https://host/x; an
// ssh:// URL keeps its user name, not a password), and whatever the URL
// carried is handed to libgit2 through the credential callback only. A cache
// written by an older stackflip with the credential URL is rewritten on open.
// The cache folder is created 0700 (tightened to 0700 when it exists), its
// config file 0600.
//
// Errors say what the operator can fix: the repository cannot be reached (with
// libgit2's reason), the branch does not exist, the file does not exist at the
// commit. Secrets never appear in them.
//
// Thread safety: one GitSource per thread; different objects may be used at once.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "util/result.h"

namespace stackflip {

// A commit's signature as git stores it (gpgsig header) and the bytes signed.
struct CommitSignature {
  std::string signature;    // armored: "-----BEGIN SSH SIGNATURE-----" or PGP
  std::string signed_data;  // the commit object without the gpgsig header
};

// A change to one file, committed on top of `parent` and pushed to the
// branch (issue 14: the failover commit).
struct CommitRequest {
  std::string parent;  // full sha the change is made on: the branch head as fetched
  std::string path;    // repository-relative file
  std::string text;    // its new bytes
  std::string message;
  std::string author_name = "stackflip", author_email = "stackflip@localhost";
  // An SSH private key file: the commit is signed with `ssh-keygen -Y sign
  // -n git` (gpg.format=ssh), so `--require-signed` accepts it when its
  // public key is in the allowed-signers file. "" = unsigned.
  std::string signing_key;
};

// Who made a commit and why, for the status page (issue 16). Untrusted
// text: escape it wherever it is shown.
struct CommitInfo {
  std::string sha;
  std::string author;   // "Name <email>"
  std::string summary;  // the message's first line, at most 200 bytes
  std::string time;     // the author time, RFC 3339 UTC
};

// Why a push did not land.
enum class PushFailure {
  none,
  moved,        // the branch is no longer at `parent` (fetch, rebase the change, again)
  unreachable,  // the repository could not be reached or refused us
  local,        // the commit could not be made here (signing, the cache)
};

struct PushResult {
  std::string commit;  // the new commit's sha (also when the push failed: made locally)
  PushFailure failure = PushFailure::none;
  std::string error;  // safe to log: no credentials
  bool ok() const { return failure == PushFailure::none; }
};

class ConfigSource {
 public:
  virtual ~ConfigSource() = default;
  // Brings the cache up to date; returns the full sha of the branch head.
  virtual Result<std::string> fetch() = 0;
  // The file's bytes at `commit`; `path` is relative to the repository root.
  virtual Result<std::string> read_file(const std::string& commit, const std::string& path) = 0;
  // The commit's signature, or nullopt when the commit is not signed.
  virtual Result<std::optional<CommitSignature>> signature(const std::string& commit) = 0;
  // Whether `commit` has `ancestor` in its history (false for the same
  // commit, and when `ancestor` is not in the repository at all: a branch
  // rewritten by a force-push no longer holds it).
  virtual Result<bool> descends_from(const std::string& commit, const std::string& ancestor) = 0;
  // "owner/repo@main" style description for messages (no credentials).
  virtual std::string describe() const = 0;
  // Who made `commit` and its message's first line.
  virtual Result<CommitInfo> commit_info(const std::string& commit) {
    return Err("no commit details from " + describe() + " for " + commit);
  }
  // Commits `r` and pushes it to the branch, never forced: a branch that
  // moved since `parent` refuses it (PushFailure::moved).
  virtual PushResult commit_and_push(const CommitRequest& /*r*/) {
    return {"", PushFailure::local, "cannot commit to " + describe()};
  }
};

struct GitSourceOptions {
  std::string url;
  std::string ref = "main";  // branch name (or refs/heads/NAME)
  std::string cache_dir;     // bare mirror; created when missing
  std::string token;         // HTTPS: a secret reference (${env:NAME} / ${file:PATH})
  std::string ssh_key;       // SSH: private key file; empty = the SSH agent
  std::string ssh_user;      // SSH: user when the URL names none ("git")
};

class GitSource : public ConfigSource {
 public:
  explicit GitSource(GitSourceOptions options);
  ~GitSource() override;
  GitSource(const GitSource&) = delete;
  GitSource& operator=(const GitSource&) = delete;

  Result<std::string> fetch() override;
  Result<std::string> read_file(const std::string& commit, const std::string& path) override;
  Result<std::optional<CommitSignature>> signature(const std::string& commit) override;
  Result<bool> descends_from(const std::string& commit, const std::string& ancestor) override;
  std::string describe() const override;
  Result<CommitInfo> commit_info(const std::string& commit) override;
  PushResult commit_and_push(const CommitRequest& r) override;

  // The branch head in the cache without fetching (nullopt before the first fetch).
  std::optional<std::string> cached_head();

 private:
  Status open_cache();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  GitSourceOptions o_;
};

// Removes "user:password@" from a URL, for messages.
std::string redact_url(const std::string& url);

// A URL split into what may be stored (the cache's config) and the
// credentials it carried (percent-decoded), given to libgit2 only through the
// credential callback. scp-like "user@host:path" keeps its user (not a secret).
struct UrlCredentials {
  std::string url;  // without userinfo; ssh:// keeps the user name
  std::string user, password;
};
UrlCredentials split_url_credentials(const std::string& url);

// The name OpenSSH files `host`'s key under in known_hosts for `url`:
// "host" on port 22 (and for scp-like "user@host:path", which has no port),
// "[host]:port" on any other port of an ssh:// URL (issue 12: a lookup by
// the bare host never found a key on another port).
std::string known_hosts_name(const std::string& url, const std::string& host);

}  // namespace stackflip
