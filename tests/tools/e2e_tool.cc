// e2e_tool — the application side of the end-to-end tests.
//
//   e2e_tool writer  RECORD DNS_PORT PG_PORT ACKED_FILE STOP_FILE [FIRST_ID]
//     Inserts rows FIRST_ID (default 1), FIRST_ID+1, ... into app.public.writes, one transaction
//     each, into whichever database the DNS record points at (resolved through PowerDNS at
//     127.0.0.1:DNS_PORT before every attempt, as an application honouring a low TTL would). A row
//     id is appended to ACKED_FILE only after its COMMIT was acknowledged; a failed attempt
//     (read-only fence, connection lost) is retried with the same id after
//     1 ms. Stops when STOP_FILE exists; prints "acked N retries M".
//   e2e_tool monitor PG_PORT STOP_FILE
//     Polls both clusters (127.0.0.1 and 127.0.0.2) every 2 ms and counts the
//     polls at which both accepted writes (primary, default_transaction_read_only
//     off). Prints "observations N double_writable M"; exits 1 when M > 0.
//   e2e_tool waitswitch RECORD DNS_PORT PG_PORT NEW_ADDRESS
//     For the switchover benchmark, started just before `apply`: polls every
//     millisecond and prints "dns_ms N write_ms M": when the record first
//     answered NEW_ADDRESS, and when a write through the record was first
//     acknowledged by the database there (an application's view). Gives up
//     after 60 s (exit 1).
//   e2e_tool check PG_HOST PG_PORT ACKED_FILE
//     Counts acknowledged ids missing from the writes table at PG_HOST.
//     Prints "acked N missing M", and whether the missing rows are the last
//     acknowledged before any row this host holds by replication (written
//     elsewhere); exits 1 when M > 0.
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <resolv.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>

namespace {

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::string resolve(const std::string& record, int port) {
  struct __res_state rs;
  std::memset(&rs, 0, sizeof rs);
  if (res_ninit(&rs) != 0) return "";
  rs.nscount = 1;
  rs.nsaddr_list[0].sin_family = AF_INET;
  rs.nsaddr_list[0].sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &rs.nsaddr_list[0].sin_addr);
  rs.retrans = 1;
  rs.retry = 1;
  unsigned char answer[512];
  int len = res_nquery(&rs, record.c_str(), ns_c_in, ns_t_a, answer, sizeof answer);
  std::string out;
  ns_msg msg;
  if (len > 0 && ns_initparse(answer, len, &msg) == 0) {
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); ++i) {
      ns_rr rr;
      if (ns_parserr(&msg, ns_s_an, i, &rr) == 0 && ns_rr_type(rr) == ns_t_a &&
          ns_rr_rdlen(rr) == 4) {
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, ns_rr_rdata(rr), buf, sizeof buf);
        out = buf;
        break;
      }
    }
  }
  res_nclose(&rs);
  return out;
}

PGconn* connect(const std::string& host, int port) {
  std::string dsn = "host=" + host + " port=" + std::to_string(port) +
                    " user=stackflip dbname=app connect_timeout=2 application_name=e2e";
  PGconn* c = PQconnectdb(dsn.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    PQfinish(c);
    return nullptr;
  }
  return c;
}

bool exec_ok(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

int writer(const std::string& record, int dns_port, int pg_port, const std::string& acked_path,
           const std::string& stop, long first_id) {
  std::ofstream acked(acked_path, std::ios::app);
  PGconn* conn = nullptr;
  std::string conn_host;
  long id = first_id, retries = 0;
  while (!exists(stop)) {
    std::string host = resolve(record, dns_port);
    if (host.empty()) {
      ++retries;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (!conn || host != conn_host || PQstatus(conn) != CONNECTION_OK) {
      if (conn) PQfinish(conn);
      conn = connect(host, pg_port);
      conn_host = host;
      if (!conn) {
        ++retries;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
    }
    // One transaction per row; acknowledged only when COMMIT returns OK.
    if (exec_ok(conn, "INSERT INTO writes(id, host) VALUES (" + std::to_string(id) + ", '" + host +
                          "')")) {
      acked << id << "\n" << std::flush;
      ++id;
    } else {
      ++retries;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (conn) PQfinish(conn);
  std::printf("acked %ld retries %ld\n", id - first_id, retries);
  return 0;
}

int monitor(int pg_port, const std::string& stop) {
  const char* hosts[] = {"127.0.0.1", "127.0.0.2"};
  PGconn* conns[2] = {nullptr, nullptr};
  long observations = 0, double_writable = 0;
  while (!exists(stop)) {
    int writable = 0;
    for (int i = 0; i < 2; ++i) {
      if (!conns[i] || PQstatus(conns[i]) != CONNECTION_OK) {
        if (conns[i]) PQfinish(conns[i]);
        conns[i] = connect(hosts[i], pg_port);
        if (!conns[i]) continue;
      }
      PGresult* r = PQexec(conns[i],
                           "SELECT NOT pg_is_in_recovery() AND "
                           "current_setting('default_transaction_read_only') = 'off'");
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        writable += std::strcmp(PQgetvalue(r, 0, 0), "t") == 0;
      PQclear(r);
      // A new session sees the current config; an old one may not (reload is
      // asynchronous), so reconnect to read what a new client would get.
      PQfinish(conns[i]);
      conns[i] = nullptr;
    }
    ++observations;
    double_writable += writable > 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf("observations %ld double_writable %ld\n", observations, double_writable);
  return double_writable > 0 ? 1 : 0;
}

int waitswitch(const std::string& record, int dns_port, int pg_port, const std::string& addr) {
  auto t0 = std::chrono::steady_clock::now();
  auto ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  double dns_ms = -1;
  PGconn* conn = nullptr;
  while (ms() < 60000) {
    if (resolve(record, dns_port) == addr) {
      if (dns_ms < 0) dns_ms = ms();
      if (!conn || PQstatus(conn) != CONNECTION_OK) {
        if (conn) PQfinish(conn);
        conn = connect(addr, pg_port);
      }
      if (conn && exec_ok(conn,
                          "INSERT INTO writes(id, host) VALUES (-2, 'bench') "
                          "ON CONFLICT (id) DO UPDATE SET at = now()")) {
        std::printf("dns_ms %.1f write_ms %.1f\n", dns_ms, ms());
        PQfinish(conn);
        return 0;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (conn) PQfinish(conn);
  std::printf("dns_ms %.1f write_ms -1\n", dns_ms);
  return 1;
}

int check(const std::string& host, int port, const std::string& acked_path) {
  PGconn* c = connect(host, port);
  if (!c) {
    std::fprintf(stderr, "cannot connect to %s:%d\n", host.c_str(), port);
    return 2;
  }
  std::set<long> present, replicated;  // replicated: written on another host
  PGresult* r = PQexec(c, "SELECT id, host FROM writes");
  for (int i = 0; i < PQntuples(r); ++i) {
    present.insert(std::atol(PQgetvalue(r, i, 0)));
    if (host != PQgetvalue(r, i, 1)) replicated.insert(std::atol(PQgetvalue(r, i, 0)));
  }
  PQclear(r);
  PQfinish(c);
  std::ifstream in(acked_path);
  long acked = 0, missing = 0, id;
  // Whether every missing row was acknowledged after every row that reached
  // this host by replication (the loss of an asynchronous failover: the last
  // writes before it, never older ones).
  bool tail = true;
  while (in >> id) {
    ++acked;
    if (!present.count(id))
      ++missing;
    else if (replicated.count(id))
      tail = tail && missing == 0;
  }
  std::printf("acked %ld missing %ld%s\n", acked, missing,
              missing ? (tail ? " (the last acknowledged)" : " (not only the last)") : "");
  return missing > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "writer" && (argc == 7 || argc == 8))
    return writer(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argv[5], argv[6],
                  argc == 8 ? std::atol(argv[7]) : 1);
  if (cmd == "monitor" && argc == 4) return monitor(std::atoi(argv[2]), argv[3]);
  if (cmd == "waitswitch" && argc == 6)
    return waitswitch(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argv[5]);
  if (cmd == "check" && argc == 5) return check(argv[2], std::atoi(argv[3]), argv[4]);
  std::fprintf(stderr,
               "usage: e2e_tool writer RECORD DNS_PORT PG_PORT ACKED STOP | monitor PG_PORT STOP | "
               "check HOST PORT ACKED\n");
  return 2;
}
