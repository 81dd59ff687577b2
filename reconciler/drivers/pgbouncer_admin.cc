#include "drivers/pgbouncer_admin.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "util/deadline.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using Ms = std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

// What an answer may hold: PgBouncer's SHOW DATABASES lists one row per
// configured database, a few hundred bytes each. Anything past this is not
// the admin console answering (hostile input, bounded like every answer).
constexpr size_t kMaxAnswerRows = 10000;
constexpr size_t kMaxAnswerBytes = 4 << 20;

std::string one_line(const char* text) {
  std::string s = trim(text ? text : "");
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// A login PgBouncer refused: only the operator can fix it.
bool authentication_failed(PGconn* c, const std::string& message) {
  if (PQconnectionNeedsPassword(c)) return true;
  for (const char* s : {"authentication failed", "login rejected", "no such user",
                        "unsupported startup parameter", "no pg_hba.conf entry"})
    if (message.find(s) != std::string::npos) return true;
  return false;
}

}  // namespace

bool PgBouncerAdmin::alive() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

void PgBouncerAdmin::close() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

Status PgBouncerAdmin::open(const std::string& dsn, const std::optional<std::string>& password,
                            Ms limit, bool honour, const std::string& where) {
  close();
  if (honour) {
    if (std::string stopped = operation_stopped(); !stopped.empty())
      return Timeout(where + ": not connected: " + stopped);
    limit = std::max(Ms(1), within_deadline(limit));
  }
  const std::string seconds = std::to_string((limit.count() + 999) / 1000);
  std::vector<const char*> keys = {"connect_timeout", "application_name", "dbname"};
  std::vector<const char*> vals = {seconds.c_str(), "stackflip", dsn.c_str()};
  if (password) {
    keys.push_back("password");
    vals.push_back(password->c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), vals.data(), /*expand_dbname=*/1);
  if (!conn_) return Err(where + ": out of memory");
  const Steady::time_point until = Steady::now() + limit;
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (PQstatus(conn_) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
         st != PGRES_POLLING_FAILED) {
    const auto left = std::chrono::ceil<Ms>(until - Steady::now()).count();
    if (left <= 0) {
      close();
      return Timeout(where + ": no connection within " + std::to_string(limit.count()) + " ms");
    }
    pollfd p{PQsocket(conn_), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT),
             0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100))) <= 0) continue;
    st = PQconnectPoll(conn_);
  }
  if (PQstatus(conn_) == CONNECTION_OK) return Status::Ok();
  const std::string message = one_line(PQerrorMessage(conn_));
  const bool auth = authentication_failed(conn_, message);
  close();
  if (auth) return ConfigError(where + ": authentication failed: " + message);
  Error e = Err(where + ": " + message);
  e.timeout = message.find("timeout expired") != std::string::npos;
  return e;
}

Result<PgBouncerAnswer> PgBouncerAdmin::exec(const std::string& sql, Ms limit, bool honour,
                                             const std::string& where) {
  cut_ = false;
  if (!conn_) return Err(where + ": not connected");
  if (honour)
    if (std::string stopped = operation_stopped(); !stopped.empty())
      return Timeout(where + ": " + sql + " not sent: " + stopped);
  if (!PQsendQuery(conn_, sql.c_str())) return Err(where + ": " + one_line(PQerrorMessage(conn_)));
  // Row by row, so that an answer past the bounds is refused as it comes
  // instead of held whole.
  PQsetSingleRowMode(conn_);
  const Steady::time_point until = Steady::now() + limit;
  PGresult* last = nullptr;
  PgBouncerAnswer a;
  size_t bytes = 0;
  auto fail = [&](Error e) -> Result<PgBouncerAnswer> {
    if (last) PQclear(last);
    return e;
  };
  for (;;) {
    if (!PQconsumeInput(conn_)) return fail(Err(where + ": " + one_line(PQerrorMessage(conn_))));
    bool done = false;
    while (!PQisBusy(conn_)) {
      PGresult* r = PQgetResult(conn_);
      if (!r) {
        done = true;
        break;
      }
      if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
        if (a.columns.empty())
          for (int j = 0; j < PQnfields(r); ++j) a.columns.push_back(PQfname(r, j));
        std::vector<std::optional<std::string>> row;
        for (int j = 0; j < PQnfields(r); ++j) {
          bytes += static_cast<size_t>(PQgetlength(r, 0, j));
          row.push_back(PQgetisnull(r, 0, j) ? std::nullopt
                                             : std::optional<std::string>(PQgetvalue(r, 0, j)));
        }
        PQclear(r);
        a.rows.push_back(std::move(row));
        if (a.rows.size() > kMaxAnswerRows || bytes > kMaxAnswerBytes) {
          close();  // the rest of the answer is not read
          return fail(Err(where + ": " + sql + " answered more than " +
                          std::to_string(kMaxAnswerRows) + " rows or " +
                          std::to_string(kMaxAnswerBytes >> 20) +
                          " MiB: not PgBouncer's admin console"));
        }
        continue;
      }
      if (last) PQclear(last);
      last = r;
    }
    if (done) break;
    std::string cut = honour ? operation_stopped() : "";
    if (!cut.empty() || Steady::now() >= until) {
      close();
      cut_ = true;
      return fail(Timeout(where + ": " + sql + " had no answer within " +
                          std::to_string(limit.count()) + " ms" +
                          (cut.empty() ? "" : " (" + cut + ")")));
    }
    pollfd p{PQsocket(conn_), POLLIN, 0};
    ::poll(&p, 1, 20);
  }
  if (!last) return Err(where + ": " + sql + ": no answer");
  const ExecStatusType st = PQresultStatus(last);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    const std::string message = one_line(PQresultErrorMessage(last));
    Error e = Err(where + ": " + sql + ": " + message);
    if (message.find("admin access needed") != std::string::npos) e = ConfigError(e.message);
    return fail(e);
  }
  // The closing result of single-row mode has no rows, but its columns (an
  // answer without rows still says which columns it has).
  if (a.columns.empty())
    for (int j = 0; j < PQnfields(last); ++j) a.columns.push_back(PQfname(last, j));
  PQclear(last);
  return a;
}

Result<std::optional<PgBouncerRow>> find_pgbouncer_row(const std::vector<std::string>& columns,
                                                       const PgBouncerRows& rows,
                                                       const std::string& database) {
  std::map<std::string, size_t> at;
  for (const char* name : {"name", "host", "port", "database", "paused", "disabled"}) {
    auto it = std::find(columns.begin(), columns.end(), name);
    if (it == columns.end())
      return Err(std::string("SHOW DATABASES answered without a column '") + name +
                 "': admin_dsn does not lead to PgBouncer's admin console (dbname=pgbouncer)");
    at[name] = static_cast<size_t>(it - columns.begin());
  }
  auto mode = std::find(columns.begin(), columns.end(), "pool_mode");
  for (const auto& row : rows) {
    auto get = [&](size_t i) { return i < row.size() && row[i] ? *row[i] : std::string(); };
    if (get(at["name"]) != database) continue;
    PgBouncerRow r;
    r.entry = {get(at["host"]), get(at["port"]), get(at["database"])};
    r.paused = get(at["paused"]) == "1";
    r.disabled = get(at["disabled"]) == "1";
    if (mode != columns.end()) r.pool_mode = get(static_cast<size_t>(mode - columns.begin()));
    return std::optional<PgBouncerRow>(std::move(r));
  }
  return std::optional<PgBouncerRow>();
}
}  // namespace stackflip
