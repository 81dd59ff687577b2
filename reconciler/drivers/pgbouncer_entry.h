// pgbouncer_entry.h — the PgBouncer database entry the pgbouncer driver
// manages (issue 15): which server it names, and the databases file that
// holds it.
//
// The file is PgBouncer's `%include`d [databases] section. stackflip writes
// it whole: a header comment saying so, the section, and the one entry,
//   ; Written by stackflip: ...
//   [databases]
//   shop = host=127.0.0.2 port=5432 dbname=shop
// Hosts and ports are written unquoted, so only characters that cannot end
// a value or a line are accepted (letters, digits, '.', '-', '_', ':', '/').
//
// Functions only; no state.
#pragma once

#include <optional>
#include <string>

#include "core/model.h"
#include "util/result.h"

namespace stackflip {

// What a PgBouncer database entry names: the server and its database.
struct PgBouncerEntry {
  std::string host;  // a name, an IPv4/IPv6 address (no brackets), or a socket folder
  std::string port;
  std::string dbname;
  bool operator==(const PgBouncerEntry&) const = default;
};

// The same server and database (host names compared in lower case).
bool same_pgbouncer_entry(const PgBouncerEntry& a, const PgBouncerEntry& b);

// "host:port" ("[v6]:port"), and "/dbname" when it is not `dbname`.
std::string pgbouncer_entry_text(const PgBouncerEntry& e, const std::string& dbname);

// The entry of `stack` for server-side database `dbname`: the host and port
// of its DSN (`dsn`, else `database_dsn`). Errors: no DSN, a DSN that does
// not parse or names several servers, a host or port that cannot be written
// into an entry.
Result<PgBouncerEntry> pgbouncer_entry_of(const StackSpec& stack, const std::string& dbname);

// The databases file stackflip writes for `database`.
std::string pgbouncer_databases_file(const std::string& database, const PgBouncerEntry& e);

// The entry for `database` in a databases file's text (the first line
// `database = key=value ...` of a [databases] section; values may be
// single-quoted), or nullopt when it has none. The port defaults to 5432
// and the dbname to `database`, as PgBouncer's do.
std::optional<PgBouncerEntry> parse_pgbouncer_databases_file(const std::string& text,
                                                             const std::string& database);

// Replaces the file at absolute `path` with `text`: a new file beside it
// (".NAME.stackflip-new", created exclusively, synced) renamed over it, so
// PgBouncer reads the old file or the new one, never half of one. Nothing
// is followed: the folder is opened with O_NOFOLLOW and a link, FIFO or
// folder at the name is refused. As root the new file gets the old one's
// owner, group and mode (PgBouncer must still read it); otherwise, or when
// there is none, it is the caller's, mode 0644 (it holds no secret).
Status replace_pgbouncer_databases_file(const std::string& path, const std::string& text);

}  // namespace stackflip
