#include "gitops/git_source.h"

#include <git2.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <regex>

#include "config/secret.h"
#include "sys/subprocess.h"
#include "util/strings.h"

namespace stackflip {

namespace {

void init_libgit2() {
  static std::once_flag once;
  std::call_once(once, [] { git_libgit2_init(); });
}

std::string last_git_error() {
  const git_error* e = git_error_last();
  return e && e->message ? e->message : "unknown libgit2 error";
}

std::string branch_ref(const std::string& ref) {
  const std::string heads = "refs/heads/";
  return ref.rfind(heads, 0) == 0 ? ref.substr(heads.size()) : ref;
}

std::string base64(const unsigned char* p, size_t n) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out += t[v >> 18 & 63];
    out += t[v >> 12 & 63];
    out += i + 1 < n ? t[v >> 6 & 63] : '=';
    out += i + 2 < n ? t[v & 63] : '=';
  }
  return out;
}

// The key type ("ssh-ed25519", ...) an SSH public key blob starts with.
std::string ssh_key_type(const char* blob, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(blob);
  if (n < 4) return "";
  size_t len = size_t{p[0]} << 24 | size_t{p[1]} << 16 | size_t{p[2]} << 8 | p[3];
  if (len == 0 || len > 64 || len > n - 4) return "";
  return std::string(blob + 4, len);
}

struct CallbackState {
  const GitSourceOptions* o;
  const UrlCredentials* url;  // userinfo the configured URL carried
  int credential_calls = 0;
  std::string error;  // set by a callback that refused
};

int credentials_cb(git_credential** out, const char* url, const char* user_from_url,
                   unsigned int allowed, void* payload) {
  auto* st = static_cast<CallbackState*>(payload);
  if (++st->credential_calls > 1) {  // libgit2 asks again after a rejection
    st->error = "authentication failed for " + redact_url(url ? url : "");
    return GIT_EUSER;
  }
  const GitSourceOptions& o = *st->o;
  if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && !o.token.empty()) {
    auto token = resolve_secret(o.token);
    if (!token.ok()) {
      st->error = "git token: " + token.error().message;
      return GIT_EUSER;
    }
    return git_credential_userpass_plaintext_new(out, "x-access-token", token->c_str());
  }
  const UrlCredentials& in_url = *st->url;
  if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && !in_url.user.empty())
    return git_credential_userpass_plaintext_new(out, in_url.user.c_str(), in_url.password.c_str());
  std::string user = user_from_url && *user_from_url ? user_from_url
                     : !in_url.user.empty()          ? in_url.user
                     : o.ssh_user.empty()            ? "git"
                                                     : o.ssh_user;
  if (allowed & GIT_CREDENTIAL_USERNAME) return git_credential_username_new(out, user.c_str());
  if (allowed & GIT_CREDENTIAL_SSH_KEY) {
    if (!o.ssh_key.empty())
      return git_credential_ssh_key_new(out, user.c_str(), nullptr, o.ssh_key.c_str(), nullptr);
    return git_credential_ssh_key_from_agent(out, user.c_str());
  }
  st->error = "no credentials for " + redact_url(url ? url : "") +
              " (HTTPS: --git-token ${env:NAME}; SSH: --ssh-key FILE or an agent)";
  return GIT_EUSER;
}

// SSH host keys must be in ~/.ssh/known_hosts (or $SSH_KNOWN_HOSTS): looked
// up with `ssh-keygen -F`, which understands hashed entries.
int certificate_cb(git_cert* cert, int valid, const char* host, void* payload) {
  auto* st = static_cast<CallbackState*>(payload);
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) return valid ? 0 : GIT_PASSTHROUGH;
  auto* hk = reinterpret_cast<git_cert_hostkey*>(cert);
  if (!(hk->type & GIT_CERT_SSH_RAW) || !hk->hostkey) {
    st->error = "SSH host key of " + std::string(host) + " cannot be checked";
    return GIT_EUSER;
  }
  std::string key = base64(reinterpret_cast<const unsigned char*>(hk->hostkey), hk->hostkey_len);
  std::string known = std::getenv("SSH_KNOWN_HOSTS") ? std::getenv("SSH_KNOWN_HOSTS")
                      : std::getenv("HOME") ? std::string(std::getenv("HOME")) + "/.ssh/known_hosts"
                                            : "";
  SubprocessOptions so;
  const std::string name = known_hosts_name(st->url->url, host);
  so.argv = {"ssh-keygen", "-F", name, "-f", known};
  so.timeout = std::chrono::milliseconds(5000);
  auto r = run_subprocess(so);
  if (!r.ok()) {
    st->error = "SSH host key of " + name + " cannot be checked: " + r.error().message;
    return GIT_EUSER;
  }
  if (r->out.find(" " + key) != std::string::npos) return 0;
  // An entry of the same key type with another key: the server's key
  // changed, or another server answers for it (issue 12: say so, not "not in").
  const std::string type = ssh_key_type(hk->hostkey, hk->hostkey_len);
  bool changed = false;
  size_t at = 0;
  while (!changed && at < r->out.size()) {
    size_t end = r->out.find('\n', at);
    if (end == std::string::npos) end = r->out.size();
    std::string line = r->out.substr(at, end - at);
    changed = !line.empty() && line[0] != '#' && !type.empty() &&
              line.find(" " + type + " ") != std::string::npos;
    at = end + 1;
  }
  st->error = changed ? "SSH host key of " + name + " does not match the key " + known +
                            " holds for it: the server's key changed, or another server "
                            "answers (check its fingerprint before replacing the entry)"
                      : "SSH host key of " + name + " is not in " + known +
                            " (add it with ssh-keyscan after checking its fingerprint)";
  return GIT_EUSER;
}

}  // namespace

std::string redact_url(const std::string& url) {
  static const std::regex creds(R"(^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@)");
  return std::regex_replace(url, creds, "$1***@");
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
std::string percent_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < s.size() && (hi = hex_value(s[i + 1])) >= 0 &&
        (lo = hex_value(s[i + 2])) >= 0) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}
}  // namespace

std::string known_hosts_name(const std::string& url, const std::string& host) {
  // ssh://[user@]host[:port]/path (also git+ssh://, ssh+git://); the host
  // may be a bracketed IPv6 literal.
  static const std::regex with_port(
      R"(^[a-zA-Z+]*ssh[a-zA-Z+]*://(?:[^/@]*@)?(\[[^\]]*\]|[^/:]*):([0-9]+)(/.*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, with_port) || m[2] == "22") return host;
  return "[" + host + "]:" + m[2].str();
}

UrlCredentials split_url_credentials(const std::string& url) {
  static const std::regex with_userinfo(R"(^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/@]*)@(.*)$)");
  std::smatch m;
  if (!std::regex_match(url, m, with_userinfo)) return {url, "", ""};
  std::string scheme = m[1], userinfo = m[2], rest = m[3];
  auto colon = userinfo.find(':');
  UrlCredentials c;
  c.user = percent_decode(userinfo.substr(0, colon));
  if (colon != std::string::npos) c.password = percent_decode(userinfo.substr(colon + 1));
  for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // An SSH user name is not a secret and the server needs it; keep it.
  bool ssh = scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git";
  c.url = m[1].str() + "://" +
          (ssh && !c.user.empty() ? userinfo.substr(0, colon) + "@" : std::string()) + rest;
  return c;
}

struct GitSource::Impl {
  git_repository* repo = nullptr;
  UrlCredentials url;  // url.url is what the cache's config holds
  ~Impl() { git_repository_free(repo); }
};

GitSource::GitSource(GitSourceOptions options) : impl_(new Impl), o_(std::move(options)) {
  init_libgit2();
  o_.ref = branch_ref(o_.ref);
  impl_->url = split_url_credentials(o_.url);
}
GitSource::~GitSource() = default;

std::string GitSource::describe() const { return redact_url(o_.url) + "@" + o_.ref; }

Status GitSource::open_cache() {
  if (impl_->repo) return Status::Ok();
  if (o_.cache_dir.empty()) return Err("git: no cache folder given");
  // The folder is ours alone whatever the umask: 0700, tightened if it exists.
  struct stat sb;
  if (::mkdir(o_.cache_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Err("git cache " + o_.cache_dir + ": cannot create it: " + std::strerror(errno));
  if (::stat(o_.cache_dir.c_str(), &sb) == 0 && (sb.st_mode & 077))
    (void)::chmod(o_.cache_dir.c_str(), sb.st_mode & 0700);
  int rc = ::stat((o_.cache_dir + "/HEAD").c_str(), &sb) == 0
               ? git_repository_open_bare(&impl_->repo, o_.cache_dir.c_str())
               : git_repository_init(&impl_->repo, o_.cache_dir.c_str(), /*bare=*/1);
  if (rc < 0) return Err("git cache " + o_.cache_dir + ": " + last_git_error());
  // The cache's config names no remote (fetch() uses an in-memory one), so
  // it never holds the URL or credentials. A cache written by an older
  // version has an `origin` with the URL, possibly with credentials: drop it.
  git_config* cfg = nullptr;
  if (git_repository_config(&cfg, impl_->repo) == 0) {
    // git_config_delete_entry, not a regex-matching call: libgit2 1.5
    // leaks a pcre2 block per regex that does not match (see fetch()).
    for (const char* key : {"remote.origin.url", "remote.origin.fetch"}) {
      git_config_entry* e = nullptr;
      if (git_config_get_entry(&e, cfg, key) == 0) {
        git_config_entry_free(e);
        (void)git_config_delete_entry(cfg, key);
      }
    }
    git_config_free(cfg);
  }
  (void)::chmod((o_.cache_dir + "/config").c_str(), 0600);
  return Status::Ok();
}

std::optional<std::string> GitSource::cached_head() {
  if (!open_cache().ok()) return std::nullopt;
  git_oid oid;
  std::string name = "refs/remotes/origin/" + o_.ref;
  if (git_reference_name_to_id(&oid, impl_->repo, name.c_str()) < 0) return std::nullopt;
  return std::string(git_oid_tostr_s(&oid));
}

Result<std::string> GitSource::fetch() {
  // The cache is opened afresh at each fetch: libgit2 keeps every pack it has
  // read open (one descriptor and its index per fetched commit) for as long
  // as the repository object lives, so a long `run` ran out of descriptors.
  git_repository_free(impl_->repo);
  impl_->repo = nullptr;
  if (Status s = open_cache(); !s.ok()) return s.error();
  // An in-memory remote, made anew each pass, without url.insteadOf: libgit2
  // 1.5 (Debian 12) leaks a pcre2 match block (about 20 KB with pcre2 10.42)
  // for every config entry its insteadOf glob does not match, and both
  // git_remote_lookup and a remote created with insteadOf run that glob:
  // 125 KB per pass, forever, in `run` (fixed upstream in libgit2 1.6.1).
  // The refspec keeps the branches under refs/remotes/origin/ as before.
  git_remote* remote = nullptr;
  git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
  ro.repository = impl_->repo;
  ro.fetchspec = "+refs/heads/*:refs/remotes/origin/*";
  ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
  // The URL without credentials: they go through the credential callback.
  if (git_remote_create_with_opts(&remote, impl_->url.url.c_str(), &ro) < 0)
    return Err("git cache " + o_.cache_dir + ": " + last_git_error());
  CallbackState st{&o_, &impl_->url, 0, {}};
  git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
  fo.callbacks.credentials = credentials_cb;
  fo.callbacks.certificate_check = certificate_cb;
  fo.callbacks.payload = &st;
  fo.prune = GIT_FETCH_PRUNE;
  fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  int rc = git_remote_fetch(remote, nullptr, &fo, "stackflip fetch");
  git_remote_free(remote);
  if (rc < 0)
    return Err("cannot fetch " + redact_url(o_.url) + ": " +
               (st.error.empty() ? last_git_error() : st.error));
  auto head = cached_head();
  if (!head) return Err("branch '" + o_.ref + "' not found in " + redact_url(o_.url));
  return *head;
}

namespace {
Result<git_commit*> lookup_commit(git_repository* repo, const std::string& sha) {
  git_oid oid;
  git_commit* c = nullptr;
  if (git_oid_fromstr(&oid, sha.c_str()) < 0 || git_commit_lookup(&c, repo, &oid) < 0)
    return Err("commit " + short_sha(sha) + ": " + last_git_error());
  return c;
}
}  // namespace

Result<std::string> GitSource::read_file(const std::string& commit, const std::string& path) {
  if (Status s = open_cache(); !s.ok()) return s.error();
  auto c = lookup_commit(impl_->repo, commit);
  if (!c.ok()) return c.error();
  git_tree* tree = nullptr;
  git_tree_entry* entry = nullptr;
  git_blob* blob = nullptr;
  std::optional<std::string> out;
  std::string error;
  if (git_commit_tree(&tree, *c) < 0) {
    error = last_git_error();
  } else if (git_tree_entry_bypath(&entry, tree, path.c_str()) < 0) {
    error = path + " does not exist at commit " + short_sha(commit) + " of " + describe();
  } else if (git_tree_entry_type(entry) != GIT_OBJECT_BLOB ||
             git_blob_lookup(&blob, impl_->repo, git_tree_entry_id(entry)) < 0) {
    error = path + " at commit " + short_sha(commit) + " is not a file";
  } else {
    out = std::string(static_cast<const char*>(git_blob_rawcontent(blob)),
                      static_cast<size_t>(git_blob_rawsize(blob)));
  }
  git_blob_free(blob);
  git_tree_entry_free(entry);
  git_tree_free(tree);
  git_commit_free(*c);
  if (!out) return Err(error);
  return *out;
}

Result<bool> GitSource::descends_from(const std::string& commit, const std::string& ancestor) {
  if (Status s = open_cache(); !s.ok()) return s.error();
  git_oid c, a;
  if (git_oid_fromstr(&c, commit.c_str()) < 0) return Err("not a commit id: " + commit);
  if (git_oid_fromstr(&a, ancestor.c_str()) < 0) return Err("not a commit id: " + ancestor);
  // An ancestor no longer in the cache (gone with a rewritten branch, or a
  // fresh cache) cannot be in the head's history: not a descendant.
  git_commit* probe = nullptr;
  if (git_commit_lookup(&probe, impl_->repo, &a) < 0) return false;
  git_commit_free(probe);
  int rc = git_graph_descendant_of(impl_->repo, &c, &a);
  if (rc < 0)
    return Err("cannot tell whether commit " + short_sha(commit) + " descends from " +
               short_sha(ancestor) + ": " + last_git_error());
  return rc == 1;
}

Result<std::optional<CommitSignature>> GitSource::signature(const std::string& commit) {
  if (Status s = open_cache(); !s.ok()) return s.error();
  git_oid oid;
  if (git_oid_fromstr(&oid, commit.c_str()) < 0) return Err("not a commit id: " + commit);
  git_buf sig = GIT_BUF_INIT, data = GIT_BUF_INIT;
  int rc = git_commit_extract_signature(&sig, &data, impl_->repo, &oid, nullptr);
  if (rc == GIT_ENOTFOUND) {
    // Either unsigned, or the commit itself is missing.
    git_commit* c = nullptr;
    if (git_commit_lookup(&c, impl_->repo, &oid) < 0)
      return Err("commit " + short_sha(commit) + ": " + last_git_error());
    git_commit_free(c);
    return std::optional<CommitSignature>();
  }
  if (rc < 0) return Err("commit " + short_sha(commit) + ": " + last_git_error());
  CommitSignature cs{std::string(sig.ptr, sig.size), std::string(data.ptr, data.size)};
  git_buf_dispose(&sig);
  git_buf_dispose(&data);
  return std::optional<CommitSignature>(std::move(cs));
}

Result<CommitInfo> GitSource::commit_info(const std::string& commit) {
  if (Status s = open_cache(); !s.ok()) return s.error();
  git_oid oid;
  if (git_oid_fromstr(&oid, commit.c_str()) < 0) return Err("not a commit id: " + commit);
  git_commit* c = nullptr;
  if (git_commit_lookup(&c, impl_->repo, &oid) < 0)
    return Err("commit " + short_sha(commit) + ": " + last_git_error());
  CommitInfo info;
  info.sha = commit;
  if (const git_signature* a = git_commit_author(c)) {
    info.author = std::string(a->name ? a->name : "") + " <" + (a->email ? a->email : "") + ">";
    std::time_t t = static_cast<std::time_t>(a->when.time);
    std::tm tm{};
    char buf[32];
    if (gmtime_r(&t, &tm) && std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
      info.time = buf;
  }
  const char* summary = git_commit_summary(c);
  info.summary = summary ? summary : "";
  if (info.summary.size() > 200) info.summary = info.summary.substr(0, 200) + "…";
  if (info.author.size() > 200) info.author = info.author.substr(0, 200) + "…";
  git_commit_free(c);
  return info;
}

namespace {

struct PushState {
  CallbackState creds;
  std::string rejected;  // the server's reason for refusing the update
};

int push_update_cb(const char* refname, const char* status, void* payload) {
  auto* st = static_cast<PushState*>(payload);
  if (status) st->rejected = std::string(refname ? refname : "?") + ": " + status;
  return 0;
}

int push_credentials_cb(git_credential** out, const char* url, const char* user,
                        unsigned int allowed, void* payload) {
  return credentials_cb(out, url, user, allowed, &static_cast<PushState*>(payload)->creds);
}

int push_certificate_cb(git_cert* cert, int valid, const char* host, void* payload) {
  return certificate_cb(cert, valid, host, &static_cast<PushState*>(payload)->creds);
}

// The armored SSH signature of `data` by `key` (namespace "git", as git
// signs commits with gpg.format=ssh).
Result<std::string> ssh_sign(const std::string& key, const std::string& data) {
  SubprocessOptions so;
  so.argv = {"ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", key};
  so.stdin_data = data;
  so.timeout = std::chrono::milliseconds(10000);
  auto r = run_subprocess(so);
  if (!r.ok()) return r.error();
  if (!r->ok() || r->out.find("-----BEGIN SSH SIGNATURE-----") == std::string::npos)
    return Err("signing with " + key + " failed: " +
               trim_for_message(r->err.empty() ? r->out : r->err));
  return r->out;
}

}  // namespace

PushResult GitSource::commit_and_push(const CommitRequest& r) {
  PushResult out;
  auto local = [&](const std::string& why) {
    out.failure = PushFailure::local;
    out.error = "cannot make the commit: " + why;
    return out;
  };
  if (Status s = open_cache(); !s.ok()) return local(s.error().message);
  git_repository* repo = impl_->repo;
  auto parent = lookup_commit(repo, r.parent);
  if (!parent.ok()) return local(parent.error().message);
  git_tree* base = nullptr;
  git_tree* tree = nullptr;
  git_signature* who = nullptr;
  git_buf buf = GIT_BUF_INIT;
  git_oid blob, tree_id, commit;
  std::string error;
  const git_commit* parents[] = {*parent};
  if (git_commit_tree(&base, *parent) < 0 ||
      git_blob_create_from_buffer(&blob, repo, r.text.data(), r.text.size()) < 0) {
    error = last_git_error();
  } else {
    git_tree_update up{};
    up.action = GIT_TREE_UPDATE_UPSERT;
    up.id = blob;
    up.filemode = GIT_FILEMODE_BLOB;
    up.path = r.path.c_str();
    if (git_tree_create_updated(&tree_id, repo, base, 1, &up) < 0 ||
        git_tree_lookup(&tree, repo, &tree_id) < 0 ||
        git_signature_now(&who, r.author_name.c_str(), r.author_email.c_str()) < 0 ||
        git_commit_create_buffer(&buf, repo, who, who, nullptr, r.message.c_str(), tree, 1,
                                 parents) < 0)
      error = last_git_error();
  }
  std::string body = error.empty() ? std::string(buf.ptr, buf.size) : "";
  git_buf_dispose(&buf);
  git_signature_free(who);
  git_tree_free(tree);
  git_tree_free(base);
  git_commit_free(*parent);
  if (!error.empty()) return local(error);
  std::string sig;
  if (!r.signing_key.empty()) {
    auto s = ssh_sign(r.signing_key, body);
    if (!s.ok()) return local(s.error().message);
    sig = *s;
  }
  if (git_commit_create_with_signature(&commit, repo, body.c_str(),
                                       sig.empty() ? nullptr : sig.c_str(), nullptr) < 0)
    return local(last_git_error());
  out.commit = git_oid_tostr_s(&commit);

  // Pushed from a ref of our own; the remote takes it only as a fast-forward.
  const std::string src = "refs/stackflip/push";
  git_reference* ref = nullptr;
  if (git_reference_create(&ref, repo, src.c_str(), &commit, 1, "stackflip commit") < 0)
    return local(last_git_error());
  git_reference_free(ref);
  git_remote* remote = nullptr;
  git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
  ro.repository = repo;
  ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
  if (git_remote_create_with_opts(&remote, impl_->url.url.c_str(), &ro) < 0)
    return local(last_git_error());
  PushState st{{&o_, &impl_->url, 0, {}}, {}};
  git_push_options po = GIT_PUSH_OPTIONS_INIT;
  po.callbacks.credentials = push_credentials_cb;
  po.callbacks.certificate_check = push_certificate_cb;
  po.callbacks.push_update_reference = push_update_cb;
  po.callbacks.payload = &st;
  const std::string spec = src + ":refs/heads/" + o_.ref;
  char* specs[] = {const_cast<char*>(spec.c_str())};
  git_strarray refspecs{specs, 1};
  int rc = git_remote_push(remote, &refspecs, &po);
  git_remote_free(remote);
  if (rc < 0) {
    const std::string why = st.creds.error.empty() ? last_git_error() : st.creds.error;
    // libgit2's smart transports report a refused update through the
    // callback; the local one fails the push when the branch moved.
    const bool moved = why.find("non-fast-forward") != std::string::npos ||
                       why.find("not fast-forward") != std::string::npos ||
                       why.find("fastforward") != std::string::npos ||
                       why.find("reference has changed") != std::string::npos ||
                       why.find("current value does not match") != std::string::npos;
    out.failure = moved ? PushFailure::moved : PushFailure::unreachable;
    out.error = "cannot push to " + redact_url(o_.url) + ": " + why;
    return out;
  }
  if (!st.rejected.empty()) {
    out.failure = PushFailure::moved;
    out.error = "the branch " + o_.ref + " of " + redact_url(o_.url) + " refused the commit (" +
                trim_for_message(st.rejected) + "): it moved since " + short_sha(r.parent);
    return out;
  }
  // The cache now has the branch where we put it, as a fetch would.
  const std::string tracking = "refs/remotes/origin/" + o_.ref;
  if (git_reference_create(&ref, repo, tracking.c_str(), &commit, 1, "stackflip push") == 0)
    git_reference_free(ref);
  return out;
}

}  // namespace stackflip
