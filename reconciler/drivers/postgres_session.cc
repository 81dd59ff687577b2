#include "drivers/postgres_session.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "config/conninfo.h"
#include "config/secret.h"
#include "core/provider_stats.h"
#include "util/deadline.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// libpq's messages end in a newline and may span lines: one line for the
// operator's message.
std::string one_line(const char* text) {
  std::string s = trim(text ? text : "");
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// Whether a failed connection failed at authentication (SQLSTATE class 28;
// libpq gives no SQLSTATE for a failed connection, so its message tells).
bool authentication_failed(PGconn* c, const std::string& message) {
  if (PQconnectionNeedsPassword(c)) return true;  // "fe_sendauth: no password supplied"
  static const char* const kSigns[] = {
      "password authentication failed",  // 28P01
      "authentication failed for user",  // peer, ident, ldap, cert, ... (28000)
      "no pg_hba.conf entry",            // 28000
      "pg_hba.conf rejects connection",  // 28000
  };
  for (const char* s : kSigns)
    if (message.find(s) != std::string::npos) return true;
  // 28000: role "x" does not exist.
  const size_t role = message.find("role \"");
  return role != std::string::npos && message.find("\" does not exist", role) != std::string::npos;
}

// The kept session's socket gave up: nothing it sent was acknowledged
// within tcp_user_timeout, or keep-alives went unanswered (ETIMEDOUT, as
// strerror words it in the C locale). The server did not answer, as opposed
// to closing the connection or refusing a new one.
bool tcp_timed_out(const std::string& message) {
  return message.find("Connection timed out") != std::string::npos;
}

// After a cancel request, how long the server has to answer before the
// connection is given up.
constexpr std::chrono::milliseconds kCancelGrace{1000};

// PQexec under an operation deadline (util/deadline.h): the statement is
// sent, the answer awaited on the socket with the deadline asked every
// 20 ms; when it passes the server is asked to cancel the statement, and if
// no answer comes within kCancelGrace the caller must drop the connection
// (`gave_up`). Returns the last result, as PQexec does (null when the
// connection failed); `stopped` says why when the deadline cut it.
ResultPtr exec_before_deadline(PGconn* conn, const std::string& sql, std::string& stopped,
                               bool& gave_up) {
  using Steady = std::chrono::steady_clock;
  if (!PQsendQuery(conn, sql.c_str())) return nullptr;
  ResultPtr last;
  Steady::time_point give_up_at = Steady::time_point::max();
  for (;;) {
    if (!PQconsumeInput(conn)) return nullptr;
    while (!PQisBusy(conn)) {
      PGresult* r = PQgetResult(conn);
      if (!r) return last;
      last.reset(r);
    }
    if (stopped.empty()) {
      stopped = operation_stopped();
      if (!stopped.empty()) {
        // PQcancel connects to the server with a blocking connect(), under
        // none of the connection's timeouts (libpq 15): to a silent host
        // (a partition) it waits for the kernel's SYN retries, minutes.
        // The request goes from its own thread; the caller waits
        // kCancelGrace for the answer either way. One thread per cut
        // statement, and a cut session is dropped (gave_up) or answers.
        if (PGcancel* c = PQgetCancel(conn)) {
          std::thread([c] {
            char err[256];
            PQcancel(c, err, sizeof err);
            PQfreeCancel(c);
          }).detach();
        }
        give_up_at = Steady::now() + kCancelGrace;
      }
    } else if (Steady::now() >= give_up_at) {
      gave_up = true;
      return nullptr;
    }
    pollfd p{PQsocket(conn), POLLIN, 0};
    ::poll(&p, 1, 20);
  }
}

// Drives a connection begun with PQconnectStartParams until it is made or
// has failed (true), or until `limit` has passed with it still pending
// (false). As libpq's own blocking connect does, but to the millisecond.
bool connect_within(PGconn* conn, std::chrono::milliseconds limit) {
  using Steady = std::chrono::steady_clock;
  const Steady::time_point until = Steady::now() + limit;
  if (PQstatus(conn) == CONNECTION_BAD) return true;
  // Before the first PQconnectPoll, libpq says: as if it asked to write.
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) return true;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Steady::now()).count();
    if (left <= 0) return false;
    // The socket may change between calls (the next host of a dsn).
    pollfd p{PQsocket(conn), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000))) <= 0) continue;
    st = PQconnectPoll(conn);
  }
}

}  // namespace

PgConnection::PgConnection(PgConnection&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)), server_(std::move(other.server_)) {}

PgConnection& PgConnection::operator=(PgConnection&& other) noexcept {
  if (this != &other) {
    reset();
    conn_ = std::exchange(other.conn_, nullptr);
    server_ = std::move(other.server_);
  }
  return *this;
}

PgConnection::~PgConnection() { reset(); }

bool PgConnection::alive() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

void PgConnection::reset() {
  if (!conn_) return;
  PQfinish(conn_);
  conn_ = nullptr;
  if (!server_.empty()) postgres_session_closed(server_);
  server_.clear();
}

Result<PgRows> PgConnection::exec(const std::string& sql, const std::string& where) {
  if (!conn_) return Err(where + ": not connected");
  std::string stopped;
  bool gave_up = false;
  ResultPtr res;
  if (operation_deadline()) {
    stopped = operation_stopped();
    if (!stopped.empty()) return Timeout(where + ": not sent: " + stopped);
    res = exec_before_deadline(conn_, sql, stopped, gave_up);
  } else {
    res.reset(PQexec(conn_, sql.c_str()));
  }
  if (gave_up) {
    reset();
    return Timeout(where + ": cancelled, no answer within " + std::to_string(kCancelGrace.count()) +
                   " ms; connection closed; " + stopped);
  }
  if (!res) {
    Error e = Err(where + ": " + one_line(PQerrorMessage(conn_)));
    e.timeout = tcp_timed_out(e.message);
    return e;
  }
  auto st = PQresultStatus(res.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    const char* code = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    const std::string message = where + ": " + one_line(PQresultErrorMessage(res.get()));
    // Class 28: invalid authorization (a role that lost its login, say).
    if (code && std::strncmp(code, "28", 2) == 0) return ConfigError(message);
    Error e = Err(message + (stopped.empty() ? "" : "; " + stopped));
    // 57014 = query_canceled (statement_timeout, or our cancel).
    if (code && std::strcmp(code, "57014") == 0) e.timeout = true;
    if (!code && tcp_timed_out(message)) e.timeout = true;  // the connection timed out
    // Errors that asking again cannot change (issue 11), not retried by
    // apply: class 42 (insufficient privilege, e.g. pg_promote not granted;
    // undefined function) and 0A000 (feature not supported).
    if (code && (std::strncmp(code, "42", 2) == 0 || std::strcmp(code, "0A000") == 0))
      e.permanent = true;
    return e;
  }
  PgRows rows;
  for (int i = 0; i < PQntuples(res.get()); ++i) {
    PgRow row;
    for (int j = 0; j < PQnfields(res.get()); ++j)
      row.push_back(PQgetisnull(res.get(), i, j)
                        ? std::nullopt
                        : std::optional<std::string>(PQgetvalue(res.get(), i, j)));
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<std::string> PgConnection::quote_literal(const std::string& text, const std::string& where) {
  if (!conn_) return Err(where + ": not connected");
  char* lit = PQescapeLiteral(conn_, text.c_str(), text.size());
  if (!lit) return Err(where + ": cannot quote a literal: " + one_line(PQerrorMessage(conn_)));
  std::string out = lit;
  PQfreemem(lit);
  return out;
}

Result<PgConnection> pg_connect(const PgLogin& login, const PgTimeouts& timeouts,
                                const std::string& stack, const std::string& where) {
  auto info = parse_dsn(login.dsn);
  if (!info.ok()) return Err("postgres stack " + stack + " dsn: " + info.error().message);
  std::optional<std::string> password;
  if (!login.password_ref.empty()) {
    auto pw = resolve_secret_for(login.password_ref, info->endpoints);
    if (!pw.ok()) return Err("postgres stack " + stack + " password: " + pw.error().message);
    password = *pw;
  }
  std::string options;
  for (const auto& [k, v] : info->options)
    if (k == "options" && !v.empty()) options = v + " ";
  options += "-c statement_timeout=" + std::to_string(timeouts.statement_ms);
  // Under an operation deadline (util/deadline.h) no connection is started
  // after it, and the wait is cut to it, to the millisecond (connect_within:
  // libpq's connect_timeout counts whole seconds, at least 2, so a deadline
  // 300 ms away would cost 2 s of a silent host; apply.h). The cut wait is
  // for the connection as a whole, not per host of a multi-host dsn.
  if (std::string stopped = operation_stopped(); !stopped.empty())
    return Timeout(where + ": not connected: " + stopped);
  const bool cut = operation_deadline().has_value();
  long long connect_ms = timeouts.connect_ms;
  if (cut)
    connect_ms = std::max<long long>(
        1, within_deadline(std::chrono::milliseconds(connect_ms ? connect_ms : 3600000)).count());
  const std::string connect_timeout = std::to_string((connect_ms + 999) / 1000);
  // A kept session to a server cut off by a partition: what we send is
  // never acknowledged, and without a limit a query waits for TCP to give
  // up (about 15 minutes), holding the pass and any failover with it. The
  // time a server has to accept a connection is also the time its kernel
  // has to acknowledge what we sent (a slow server still acknowledges at
  // once); idle sessions are probed the same way. A dsn may set its own.
  const long long ack_ms = timeouts.connect_ms;
  const std::string user_timeout = std::to_string(ack_ms);
  const std::string idle_s = std::to_string(std::max<long long>(1, ack_ms / 1000));

  // Order matters: keywords before dbname may be overridden by the dsn,
  // keywords after it override the dsn.
  std::vector<const char*> keys = {"connect_timeout", "application_name"};
  std::vector<const char*> vals = {connect_timeout.c_str(), "stackflip"};
  if (ack_ms > 0) {
    for (const char* k : {"tcp_user_timeout", "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count"})
      keys.push_back(k);
    for (const char* v : {user_timeout.c_str(), "1", idle_s.c_str(), "1", "2"}) vals.push_back(v);
  }
  keys.push_back("dbname");
  vals.push_back(login.dsn.c_str());
  keys.push_back("options");
  vals.push_back(options.c_str());
  if (password) {
    keys.push_back("password");
    vals.push_back(password->c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  PgConnection c;
  c.conn_ = cut ? PQconnectStartParams(keys.data(), vals.data(), /*expand_dbname=*/1)
                : PQconnectdbParams(keys.data(), vals.data(), /*expand_dbname=*/1);
  if (!c.conn_) return Err(where + ": out of memory");
  if (cut && !connect_within(c.conn_, std::chrono::milliseconds(connect_ms))) {
    const bool shortened = timeouts.connect_ms == 0 || connect_ms < timeouts.connect_ms;
    return Timeout(where + ": no connection within " + std::to_string(connect_ms) + " ms" +
                   (shortened ? " (" + deadline_reason() + ")" : ""));
  }
  if (PQstatus(c.conn_) != CONNECTION_OK) {
    const std::string message = one_line(PQerrorMessage(c.conn_));
    if (authentication_failed(c.conn_, message))
      return ConfigError(where + ": authentication failed: " + message);
    Error e = Err(where + ": " + message);
    // libpq's connect_timeout ran out: the server did not answer (a silent
    // host), as opposed to refusing (model.h StackObs::timed_out).
    e.timeout = message.find("timeout expired") != std::string::npos;
    return e;
  }
  const char* host = PQhost(c.conn_);
  const char* port = PQport(c.conn_);
  c.server_ = std::string(host ? host : "") + ":" + (port ? port : "");
  postgres_session_opened(c.server_);
  return c;
}

Status PostgresSession::ensure_open() {
  if (conn_.alive()) return Status::Ok();
  conn_.reset();
  auto c = connect();
  if (!c.ok()) return c.error();
  conn_ = std::move(*c);
  return Status::Ok();
}

Result<PgRows> PostgresSession::exec(const std::string& sql, bool retry) {
  std::optional<std::chrono::milliseconds> connect_limit;  // the retry's, see below
  for (int attempt = 0;; ++attempt) {
    {
      // Only the connection is limited, never the statement sent on it.
      std::optional<DeadlineScope> brief;
      if (connect_limit)
        brief.emplace([t = std::chrono::steady_clock::now() + *connect_limit] { return t; },
                      "the kept session timed out; a new one was given " +
                          std::to_string(connect_limit->count()) + " ms");
      if (Status s = ensure_open(); !s.ok()) return s.error();
    }
    auto r = conn_.exec(sql, where_);
    if (r.ok() || conn_.alive() || !retry || attempt > 0) {
      if (!r.ok() && !conn_.alive()) conn_.reset();
      return r;
    }
    conn_.reset();
    // DECISION (issue 14): the kept session died of a TCP timeout (a silent
    // host: a partition). A new connection would almost surely wait its
    // whole connect timeout too, on top of the seconds the old one took to
    // time out, and every observation of a silent active stack delays a
    // failover by that much. So the new one gets a quarter of the connect
    // timeout, at least 300 ms, to connect: a server that is up answers well
    // within it; one that does not is reported unreachable (timed out) for
    // this call, and the next call connects with the whole timeout again.
    if (r.error().timeout)
      connect_limit = std::chrono::milliseconds(
          std::max<long long>(300, static_cast<long long>(timeouts_.connect_ms) / 4));
  }
}

Result<std::string> PostgresSession::quote_literal(const std::string& text) {
  if (Status s = ensure_open(); !s.ok()) return s.error();
  return conn_.quote_literal(text, where_);
}

}  // namespace stackflip
