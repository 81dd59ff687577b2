// signature.h — is a commit signed by a trusted key? Checked by the standard
// verifiers run as subprocesses (never a shell, never our own cryptography):
//
//   SSH signatures (gpg.format=ssh): `ssh-keygen -Y find-principals` then
//     `ssh-keygen -Y verify -n git` against an allowed-signers file, exactly
//     as `git verify-commit` does with gpg.ssh.allowedSignersFile;
//   OpenPGP signatures: `gpg --verify` with only the given keyring (a
//     temporary GNUPGHOME, trust model "always": the keyring is the trust set).
//
// The verdict is a Status: ok only for a good signature by a trusted key; the
// message otherwise says why (unsigned, unknown key, bad signature, no trust
// configured for this signature kind) and is safe to record and notify.
#pragma once

#include <string>

#include "gitops/git_source.h"
#include "util/result.h"

namespace stackflip {

struct TrustConfig {
  std::string allowed_signers;  // ssh-keygen allowed-signers file
  std::string gpg_keyring;      // OpenPGP keyring file (gpg --export > FILE)
  bool any() const { return !allowed_signers.empty() || !gpg_keyring.empty(); }
};

// `commit` is only used in messages. `sig` is nullopt for an unsigned commit.
Status verify_commit_signature(const std::string& commit, const std::optional<CommitSignature>& sig,
                               const TrustConfig& trust);

}  // namespace stackflip
