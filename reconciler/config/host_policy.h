// host_policy.h — what the operator allows on the reconciler host.
//
// The config comes from Git: whoever can merge there decides which stack is
// active, nothing more. Everything a config could use to reach beyond that is
// granted here, by the operator, on the host (a file such as
// /etc/stackflip/host.yaml, never from the repository):
//
//   commands:                      # programs a config may run (command
//     - /usr/local/lib/stackflip/* #   providers, control_command); globs on
//                                  #   the absolute, symlink-free path
//   command_env: [PGPASSFILE]      # variables children get besides PATH,
//                                  #   HOME and LANG (never stackflip's own)
//   secrets:                       # every reference a config may use, and
//     "${env:PDNS_API_KEY}": ["http://127.0.0.1:8081"]   # the endpoints it
//     "${env:PGPASSWORD}": ["postgres://10.0.0.5:5432"]  # may be sent to
//   files: [/etc/ssl/pdns-ca.pem]  # files a config may name (ca_file)
//   health_urls:                   # origins a stack's health check may GET
//     - https://fra.example.com    #   (no secret is ever sent with it)
//   pgbouncer_files:               # files a pgbouncer provider may rewrite
//     - /etc/pgbouncer/stackflip-databases.ini  # (databases_file; exact
//                                  #   absolute paths, issue 15)
//   insecure_tls: false            # may a config turn TLS verification off
//
// Endpoints are origins: `http://host:port`, `https://host:port` (default
// ports may be left out) and `postgres://host:port` (port 5432 by default;
// for a Unix socket the host is the socket folder, e.g.
// `postgres:///var/run/postgresql:5432`). Host names are compared as written,
// lower-cased: grant the name the config uses.
//
// With no policy installed nothing is checked (validate and plan against a
// snapshot in a pull-request job). Commands that reach providers install the
// host's policy, or an empty one that grants nothing, before loading a config;
// check_host_grants() (host_check.h) then refuses what is not granted at load
// time, and the drivers check again before they run a program or send a
// secret.
//
// Thread safety: install_host_policy() is called once, before any thread
// starts; host_policy() may then be read from any thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/diagnostics.h"
#include "util/result.h"

namespace stackflip {

struct HostPolicy {
  std::string source;                    // the file it came from ("" = flags only)
  std::vector<std::string> commands;     // fnmatch globs on absolute program paths
  std::vector<std::string> command_env;  // names passed through to children
  std::map<std::string, std::vector<std::string>> secrets;  // reference -> origins
  std::vector<std::string> files;                           // exact absolute paths
  std::vector<std::string> health_urls;                     // origins (normalized)
  // Files stackflip may write for PgBouncer (a pgbouncer provider's
  // databases_file): exact absolute paths without "." or ".." parts. The
  // config chooses which of them, never another file on the host.
  std::vector<std::string> pgbouncer_files;
  bool insecure_tls = false;

  // Resolves `program` as execvp would (a bare name through PATH, a relative
  // path against the working folder), then to its real path, and checks it
  // against `commands`. Returns the real path to execute, or an error that
  // names the program and the allow-list.
  Result<std::string> allow_command(const std::string& program) const;

  // True when `reference` is granted and may be sent to `origin` (normalized).
  bool secret_allowed(const std::string& reference, const std::string& origin) const;
  bool secret_granted(const std::string& reference) const { return secrets.count(reference) > 0; }
  // True when a health check may GET a URL of `origin` (url_origin's form).
  bool health_allowed(const std::string& origin) const;
  // True when a pgbouncer provider may rewrite `path` (compared as written).
  bool pgbouncer_file_allowed(const std::string& path) const;

  // "where this policy comes from" for messages: the file, or the flags.
  std::string describe() const;
};

// Reads a policy file (YAML, at most 64 KiB). Every problem is a Diagnostic
// with file:line:col.
Result<HostPolicy> load_host_policy(const std::string& path, std::vector<Diagnostic>* errors);

// The policy in force, or nullptr when none is installed.
const HostPolicy* host_policy();
void install_host_policy(HostPolicy policy);
void clear_host_policy();  // tests only

// Normalizes an http(s) URL to its origin "scheme://host:port". Errors for
// other schemes, userinfo (`user:pass@`), a missing host, a bad port, or a
// space or control character anywhere in the URL.
Result<std::string> url_origin(const std::string& url);

// Normalizes an endpoint as written in a policy (http, https or postgres).
Result<std::string> normalize_endpoint(const std::string& endpoint);

// "postgres://host:port" for one database server.
std::string postgres_origin(const std::string& host, const std::string& port);

}  // namespace stackflip
