#include "gitops/signature.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sys/safe_file.h"
#include "sys/subprocess.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// A private temporary folder, removed when it goes out of scope.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/stackflip-verify.XXXXXX";
    if (::mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Status verify_ssh(const std::string& commit, const CommitSignature& sig, const TrustConfig& t) {
  if (t.allowed_signers.empty())
    return Err("commit " + short_sha(commit) +
               " has an SSH signature but no --allowed-signers file is configured");
  TempDir dir;
  std::string sigfile = dir.path() + "/commit.sig";
  if (dir.path().empty() || !write_file(sigfile, sig.signature).ok())
    return Err("cannot write a temporary file to check the signature");
  SubprocessOptions find;
  find.argv = {"ssh-keygen", "-Y", "find-principals", "-f", t.allowed_signers, "-s", sigfile};
  find.timeout = std::chrono::milliseconds(10000);
  auto f = run_subprocess(find);
  if (!f.ok()) return Err("cannot check the signature: " + f.error().message);
  std::string principal = f->out.substr(0, f->out.find('\n'));
  if (!f->ok() || principal.empty())
    return Err("commit " + short_sha(commit) + " is signed by a key that is not in " +
               t.allowed_signers);
  SubprocessOptions verify;
  verify.argv = {"ssh-keygen", "-Y",  "verify", "-f",   t.allowed_signers, "-I", principal,
                 "-n",         "git", "-s",     sigfile};
  verify.stdin_data = sig.signed_data;
  verify.timeout = std::chrono::milliseconds(10000);
  auto v = run_subprocess(verify);
  if (!v.ok()) return Err("cannot check the signature: " + v.error().message);
  if (!v->ok())
    return Err("commit " + short_sha(commit) + " has a bad signature for " + principal + ": " +
               trim_output(v->err + v->out, 300));
  return Status::Ok();
}

Status verify_gpg(const std::string& commit, const CommitSignature& sig, const TrustConfig& t) {
  if (t.gpg_keyring.empty())
    return Err("commit " + short_sha(commit) +
               " has an OpenPGP signature but no --gpg-keyring is configured");
  TempDir dir;
  std::string sigfile = dir.path() + "/commit.sig";
  if (dir.path().empty() || !write_file(sigfile, sig.signature).ok())
    return Err("cannot write a temporary file to check the signature");
  std::string keyring = std::filesystem::absolute(t.gpg_keyring).string();
  SubprocessOptions so;
  so.argv = {"gpg",       "--batch",     "--no-tty",
             "--homedir", dir.path(),    "--no-default-keyring",
             "--keyring", keyring,       "--trust-model",
             "always",    "--status-fd", "1",
             "--verify",  sigfile,       "-"};
  so.stdin_data = sig.signed_data;
  so.timeout = std::chrono::milliseconds(10000);
  auto r = run_subprocess(so);
  if (!r.ok()) return Err("cannot check the signature: " + r.error().message);
  if (r->ok() && r->out.find("[GNUPG:] VALIDSIG ") != std::string::npos &&
      r->out.find("[GNUPG:] GOODSIG ") != std::string::npos)
    return Status::Ok();
  if (r->out.find("[GNUPG:] NO_PUBKEY") != std::string::npos ||
      r->out.find("[GNUPG:] ERRSIG") != std::string::npos)
    return Err("commit " + short_sha(commit) + " is signed by a key that is not in " +
               t.gpg_keyring);
  return Err("commit " + short_sha(commit) +
             " has a bad OpenPGP signature: " + trim_output(r->err, 300));
}

}  // namespace

Status verify_commit_signature(const std::string& commit, const std::optional<CommitSignature>& sig,
                               const TrustConfig& trust) {
  if (!sig) return Err("commit " + short_sha(commit) + " is not signed (signatures are required)");
  if (sig->signature.rfind("-----BEGIN SSH SIGNATURE-----", 0) == 0)
    return verify_ssh(commit, *sig, trust);
  if (sig->signature.rfind("-----BEGIN PGP SIGNATURE-----", 0) == 0)
    return verify_gpg(commit, *sig, trust);
  return Err("commit " + short_sha(commit) + " has a signature of an unsupported kind (x509?)");
}

}  // namespace stackflip
