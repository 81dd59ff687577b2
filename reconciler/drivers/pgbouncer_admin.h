// pgbouncer_admin.h — one connection to PgBouncer's admin console (the
// virtual database `pgbouncer`), for the pgbouncer driver (issue 15).
//
// Not the postgres driver's PgConnection: the console speaks only the
// simple query protocol and refuses startup parameters it does not track,
// such as the `options` every PostgresSession sends. So a command is one
// PQsendQuery, its answer awaited on the socket within a limit; the
// connection is made with PQconnectStartParams and polled, to the
// millisecond. Both are also cut by the operation deadline (util/deadline.h)
// when the caller asks for it (`honour`).
//
// Errors name `where` and carry libpq's or PgBouncer's message, never the
// password. A rejected login ("password authentication failed", "login
// rejected", "no such user", "unsupported startup parameter") and a user
// that is not an admin ("admin access needed") are Error::config: only the
// operator can fix them. Running out of time is Error::timeout.
//
// Thread safety: used by one thread at a time. Owns its libpq connection.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "drivers/pgbouncer_entry.h"
#include "util/result.h"

struct pg_conn;  // libpq's PGconn

namespace stackflip {

using PgBouncerRows = std::vector<std::vector<std::optional<std::string>>>;  // nullopt = NULL

// A command's answer: the column names and the rows.
struct PgBouncerAnswer {
  std::vector<std::string> columns;
  PgBouncerRows rows;
};

class PgBouncerAdmin {
 public:
  PgBouncerAdmin() = default;
  PgBouncerAdmin(const PgBouncerAdmin&) = delete;
  PgBouncerAdmin& operator=(const PgBouncerAdmin&) = delete;
  ~PgBouncerAdmin() { close(); }

  // Whether a connection is open and libpq still considers it usable.
  bool alive() const;
  // Whether the last exec() was sent and then cut before its answer: the
  // command may still be running in PgBouncer (a PAUSE still waiting).
  bool cut() const { return cut_; }
  void close();

  // Connects to `dsn` (expanded as libpq does) within `limit`.
  Status open(const std::string& dsn, const std::optional<std::string>& password,
              std::chrono::milliseconds limit, bool honour, const std::string& where);
  // Runs one command within `limit`. When it is cut the connection is
  // closed: nothing else can be sent on it while the command is pending.
  Result<PgBouncerAnswer> exec(const std::string& sql, std::chrono::milliseconds limit, bool honour,
                               const std::string& where);

 private:
  pg_conn* conn_ = nullptr;
  bool cut_ = false;
};

// One row of SHOW DATABASES.
struct PgBouncerRow {
  PgBouncerEntry entry;
  bool paused = false;
  bool disabled = false;
  std::string pool_mode;  // the database's own pool_mode; "" when it uses the default
};

// The row of `database` in a SHOW DATABASES answer, or nullopt when there is
// none. An error when the answer lacks a column read here (name, host, port,
// database, paused, disabled): the admin_dsn does not lead to a PgBouncer
// admin console.
Result<std::optional<PgBouncerRow>> find_pgbouncer_row(const std::vector<std::string>& columns,
                                                       const PgBouncerRows& rows,
                                                       const std::string& database);

}  // namespace stackflip
