// postgres_session.h — libpq sessions of the postgres driver: connect with
// the configured timeouts and secret, run a statement, keep one session open
// across calls and retry a statement once when the connection was lost.
//
// Every session sets application_name stackflip and statement_timeout
// through `options` (after the dsn's own options), and connect_timeout in
// whole seconds (rounded up). The dsn is passed with expand_dbname, so it
// may be a URI or key=value text. The password secret is resolved only when
// connecting, for the dsn's endpoints (host_policy.h), and never appears in
// messages. Every session that opened is counted in provider_stats.h by its
// "host:port" until it is closed.
//
// Errors: a connection that could not be made is an Error naming `where`
// and libpq's message (folded to one line). An authentication failure (a
// rejected or missing password, no pg_hba.conf entry, an unknown role:
// SQLSTATE class 28) is Error::config (result.h): only the operator can fix
// it. A statement's error carries its SQL error; SQLSTATE 57014 (statement
// timeout) sets Error::timeout, class 42 and 0A000 set Error::permanent,
// class 28 sets Error::config.
//
// Under an operation deadline (util/deadline.h) no connection is started and
// no statement sent after it, and a statement still running when it passes
// is cancelled (the connection is dropped if the server does not answer the
// cancel within a second): Error::timeout, with the deadline's reason.
//
// Thread safety: a PgConnection or PostgresSession is used by one thread at
// a time.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

struct pg_conn;  // libpq's PGconn

namespace stackflip {

using PgRow = std::vector<std::optional<std::string>>;  // nullopt = SQL NULL
using PgRows = std::vector<PgRow>;

struct PgTimeouts {
  int connect_ms = 0;
  int statement_ms = 0;
};

// Where to connect: a dsn and an optional password secret reference.
struct PgLogin {
  std::string dsn;
  std::string password_ref;  // "" = no password (trust, cert, .pgpass)
};

// One open connection. Closing it (destruction, reset) counts it closed.
class PgConnection {
 public:
  PgConnection() = default;
  PgConnection(PgConnection&& other) noexcept;
  PgConnection& operator=(PgConnection&& other) noexcept;
  ~PgConnection();

  // Whether a connection is open and libpq still considers it usable.
  bool alive() const;
  void reset();
  // Runs one statement; errors as in the file comment, prefixed by `where`.
  Result<PgRows> exec(const std::string& sql, const std::string& where);
  // `text` as an SQL string literal for this connection's server.
  Result<std::string> quote_literal(const std::string& text, const std::string& where);

 private:
  friend Result<PgConnection> pg_connect(const PgLogin&, const PgTimeouts&, const std::string&,
                                         const std::string&);
  pg_conn* conn_ = nullptr;
  std::string server_;  // "host:port", counted open
};

// Opens a connection. `stack` names the stack in dsn and password errors
// ("postgres stack NAME dsn: ..."), `where` prefixes connection errors.
Result<PgConnection> pg_connect(const PgLogin& login, const PgTimeouts& timeouts,
                                const std::string& stack, const std::string& where);

// The session a driver keeps to its own server.
class PostgresSession {
 public:
  PostgresSession(PgLogin login, PgTimeouts timeouts, std::string stack, std::string where)
      : login_(std::move(login)),
        timeouts_(timeouts),
        stack_(std::move(stack)),
        where_(std::move(where)) {}

  // Runs `sql` on the kept session, (re)connecting first when it is closed or
  // dropped. With `retry`, a statement that failed because the connection was
  // lost runs once more on a fresh session (every statement the driver sends
  // is idempotent); a session that dropped is closed either way.
  Result<PgRows> exec(const std::string& sql, bool retry = true);
  // A new connection, not kept: to this server, or to another `login` (a
  // replication source) with the same timeouts.
  Result<PgConnection> connect() { return connect(login_); }
  Result<PgConnection> connect(const PgLogin& login) {
    return pg_connect(login, timeouts_, stack_, where_);
  }
  // `text` as an SQL string literal, on the kept session (connecting first).
  Result<std::string> quote_literal(const std::string& text);
  // Closes the kept session (before the server goes down, and so that its
  // socket is not inherited by a child).
  void close() { conn_.reset(); }

  const PgTimeouts& timeouts() const { return timeouts_; }

 private:
  Status ensure_open();

  PgLogin login_;
  PgTimeouts timeouts_;
  std::string stack_, where_;
  PgConnection conn_;
};

}  // namespace stackflip
