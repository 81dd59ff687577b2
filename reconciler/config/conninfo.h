// conninfo.h — what a PostgreSQL connection string names, read with libpq's
// own parser (PQconninfoParse), so both the key=value and the URI forms mean
// exactly what they mean to libpq.
//
// Used by the host check (host_check.h): a DSN comes from Git, so it may only
// name servers, never files or credentials on the reconciler host.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "util/result.h"

namespace stackflip {

struct Conninfo {
  std::vector<std::pair<std::string, std::string>> options;  // keyword, value (set ones only)
  std::vector<std::string> endpoints;  // "postgres://host:port" per server it may reach
};

// Parses `dsn`. Unset host/port fall back to PGHOST/PGPORT, then to the
// Debian socket folder /var/run/postgresql and 5432, as libpq would.
Result<Conninfo> parse_dsn(const std::string& dsn);

// The endpoints of `dsn`, or none when it does not parse.
std::vector<std::string> dsn_endpoints(const std::string& dsn);

// Keywords a config may use in a DSN: they choose a server and how to talk to
// it. Everything else (passfile, sslkey, sslrootcert, service, ...) names a
// file or credential on the host and belongs to the operator (PGPASSFILE,
// PGSSLROOTCERT, ... in stackflip's environment).
bool dsn_keyword_allowed(const std::string& keyword);

// A conninfo value quoted for a key=value DSN: 'value', with \ and '
// escaped, so any value (spaces, quotes) stays one value.
std::string quote_conninfo_value(const std::string& v);

}  // namespace stackflip
