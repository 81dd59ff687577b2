// Issue 15 part 2: the pgbouncer traffic provider. The config names a
// PgBouncer admin console and a databases file; the host grants the file;
// the driver writes the one entry it manages and reads SHOW DATABASES. The
// driver against a real PgBouncer: tests/integration/pgbouncer_driver_itest.cc.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "closed_port.h"
#include "config/host_policy.h"
#include "config/loader.h"
#include "config_text.h"
#include "drivers/drivers.h"
#include "drivers/pgbouncer_admin.h"
#include "drivers/pgbouncer_driver.h"
#include "drivers/pgbouncer_entry.h"

using namespace stackflip;
using stackflip::testing::closed_port;
using stackflip::testing::edit;
using stackflip::testing::first_error;

namespace {

const std::string kConfig =
    "apiVersion: stackflip/v1\n"                                                     // 1
    "providers:\n"                                                                   // 2
    "  db: {type: postgres}\n"                                                       // 3
    "  pgb:\n"                                                                       // 4
    "    type: pgbouncer\n"                                                          // 5
    "    admin_dsn: \"host=127.0.0.1 port=6432 user=sf dbname=pgbouncer\"\n"         // 6
    "    password: \"${env:PGB_PW}\"\n"                                              // 7
    "    databases_file: /etc/pgbouncer/stackflip.ini\n"                             // 8
    "groups:\n"                                                                      // 9
    "  shop:\n"                                                                      // 10
    "    active: primary\n"                                                          // 11
    "    stacks:\n"                                                                  // 12
    "      primary: {provider: db, dsn: \"host=10.0.0.5 port=5433 dbname=shop\"}\n"  // 13
    "      standby: {provider: db, dsn: \"host=10.0.0.6 dbname=shop\"}\n"            // 14
    "    traffic: {provider: pgb, database: shop}\n";                                // 15

HostPolicy granting(std::vector<std::string> files) {
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PGB_PW}"] = {"postgres://127.0.0.1:6432"};
  p.pgbouncer_files = std::move(files);
  return p;
}

}  // namespace

TEST_CASE("pgbouncer config loads with the type table's defaults", "[pgbouncer]") {
  LoadResult r = load_desired_text("c.yaml", kConfig);
  REQUIRE(r.errors.empty());
  const ProviderConfig& p = r.desired->providers.at("pgb");
  CHECK(p.get("connect_timeout_ms") == "2000");
  CHECK(p.get("timeout_ms") == "5000");
  CHECK(p.get("pause_timeout_ms") == "5000");
  CHECK(provider_default("pgbouncer", "pause_timeout_ms") == "5000");
  const TrafficSpec& t = r.desired->groups.at("shop").traffic.at(0);
  CHECK(t.name == "PgBouncer database shop");
  CHECK(t.get("database") == "shop");
}

TEST_CASE("pgbouncer config errors name their place", "[pgbouncer]") {
  CHECK_THAT(first_error(edit(kConfig, "    databases_file: /etc/pgbouncer/stackflip.ini\n", "")),
             Catch::StartsWith("4:3: ") && Catch::Contains("needs 'databases_file'"));
  CHECK_THAT(first_error(edit(kConfig, ", database: shop", "")),
             Catch::StartsWith("15:") && Catch::Contains("needs 'database'"));
  CHECK_THAT(first_error(edit(kConfig, "database: shop", "database: \"shop; KILL x\"")),
             Catch::StartsWith("15:") && Catch::Contains("letters, digits and '_'"));
  CHECK_THAT(first_error(edit(kConfig, "database: shop", "database: shop, record: x.")),
             Catch::StartsWith("15:") && Catch::Contains("'record' is not used by pgbouncer"));
  CHECK_THAT(first_error(edit(kConfig, "/etc/pgbouncer/stackflip.ini", "stackflip.ini")),
             Catch::StartsWith("8:") && Catch::Contains("absolute path"));
  CHECK_THAT(first_error(edit(kConfig, "\"${env:PGB_PW}\"", "hunter2")),
             Catch::StartsWith("7:") && Catch::Contains("${env:NAME}"));
  CHECK_THAT(first_error(edit(kConfig, "dbname=pgbouncer", "dbname=shop")),
             Catch::StartsWith("6:") && Catch::Contains("dbname=pgbouncer (not shop)"));
  CHECK_THAT(first_error(edit(kConfig, "dbname=pgbouncer", "dbname=pgbouncer password=x")),
             Catch::StartsWith("6:") && Catch::Contains("a password inside 'admin_dsn'"));
  CHECK_THAT(first_error(edit(kConfig, "dbname=pgbouncer", "dbname=pgbouncer passfile=/x")),
             Catch::StartsWith("6:") && Catch::Contains("'passfile' is not allowed"));
  // The stacks' servers are what the entry points at: one each.
  CHECK_THAT(first_error(edit(kConfig, "host=10.0.0.6 dbname", "host=10.0.0.6,10.0.0.7 dbname")),
             Catch::StartsWith("14:") && Catch::Contains("names 2 servers"));
  // pgbouncer serves traffic only; the traffic message lists it.
  CHECK_THAT(first_error(edit(kConfig, "primary: {provider: db", "primary: {provider: pgb")),
             Catch::StartsWith("13:") && Catch::Contains("cannot serve stack 'primary'"));
  CHECK_THAT(first_error(edit(kConfig, "{provider: pgb, database: shop}", "{provider: db}")),
             Catch::Contains("(use powerdns, cloud66, command or pgbouncer)"));
}

TEST_CASE("one pgbouncer databases file is one group's one address", "[pgbouncer]") {
  const std::string two_groups = kConfig +
                                 "  blog:\n"
                                 "    active: a\n"
                                 "    stacks:\n"
                                 "      a: {provider: db, dsn: \"host=10.0.1.5 dbname=blog\"}\n"
                                 "      b: {provider: db, dsn: \"host=10.0.1.6 dbname=blog\"}\n"
                                 "    traffic: {provider: pgb, database: blog}\n";
  CHECK_THAT(first_error(two_groups),
             Catch::Contains("PgBouncer databases_file '/etc/pgbouncer/stackflip.ini' of "
                             "provider 'pgb' is already owned by group"));
  CHECK_THAT(first_error(edit(kConfig, "    traffic: {provider: pgb, database: shop}\n",
                              "    traffic:\n"
                              "      - {provider: pgb, database: shop}\n"
                              "      - {provider: pgb, database: shop2}\n")),
             Catch::StartsWith("17:") && Catch::Contains("listed twice"));
}

TEST_CASE("pgbouncer: the host grants the databases file and the password's servers",
          "[pgbouncer]") {
  HostPolicy none = granting({});
  CHECK_THAT(first_error(kConfig, &none),
             Catch::StartsWith("8:21: file /etc/pgbouncer/stackflip.ini may not be written by "
                               "stackflip on this host (host policy host.yaml; list it under "
                               "`pgbouncer_files:`)"));
  HostPolicy granted = granting({"/etc/pgbouncer/stackflip.ini"});
  CHECK(first_error(kConfig, &granted).empty());
  HostPolicy elsewhere = granted;
  elsewhere.secrets["${env:PGB_PW}"] = {"postgres://127.0.0.1:5432"};
  CHECK_THAT(first_error(kConfig, &elsewhere),
             Catch::StartsWith("7:") && Catch::Contains("may not be sent to "
                                                        "postgres://127.0.0.1:6432"));

  // In the policy file: exact absolute paths, one spelling each.
  char tmpl[] = "/tmp/stackflip-pgb-XXXXXX";
  REQUIRE(::mkdtemp(tmpl));
  const std::string dir = tmpl, good = dir + "/good.yaml", bad = dir + "/bad.yaml";
  std::ofstream(good) << "pgbouncer_files: [/etc/pgbouncer/stackflip.ini]\n";
  auto p = load_host_policy(good, nullptr);
  REQUIRE(p.ok());
  CHECK(p->pgbouncer_file_allowed("/etc/pgbouncer/stackflip.ini"));
  CHECK_FALSE(p->pgbouncer_file_allowed("/etc/pgbouncer/../pgbouncer/stackflip.ini"));
  std::ofstream(bad) << "pgbouncer_files:\n  - /etc/pgbouncer/ok.ini\n  - relative.ini\n"
                        "  - /etc/pgbouncer/../passwd\n  - /etc/pgbouncer/\n";
  std::vector<Diagnostic> errors;
  CHECK_FALSE(load_host_policy(bad, &errors).ok());
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].mark.line == 3);
  CHECK(errors[1].mark.line == 4);
  CHECK_THAT(errors[1].message, Catch::Contains("without '.', '..' or '//'"));
  CHECK(errors[2].mark.line == 5);
  std::filesystem::remove_all(dir);
}

TEST_CASE("pgbouncer databases file: the one entry under a header, read back", "[pgbouncer]") {
  const PgBouncerEntry e{"127.0.0.2", "5432", "shop"};
  const std::string text = pgbouncer_databases_file("shop", e);
  CHECK_THAT(text, Catch::StartsWith("; Written by stackflip"));
  CHECK_THAT(text, Catch::EndsWith("\n[databases]\nshop = host=127.0.0.2 port=5432 dbname=shop\n"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  CHECK(parse_pgbouncer_databases_file(text, "shop") == e);
  CHECK_FALSE(parse_pgbouncer_databases_file(text, "blog"));

  // A hand-written file: other sections, comments, quotes, defaults.
  const std::string hand =
      "; by hand\n"
      "[pgbouncer]\n"
      "shop = host=10.9.9.9\n"
      "[Databases]\n"
      "# a comment\n"
      "blog = host=10.0.0.7 port=6000\n"
      "  shop  =  dbname='my db' host = '10.0.0.8'  \n"
      "shop = host=10.0.0.9\n";
  CHECK(parse_pgbouncer_databases_file(hand, "shop") ==
        PgBouncerEntry{"10.0.0.8", "5432", "my db"});
  CHECK(parse_pgbouncer_databases_file(hand, "blog") == PgBouncerEntry{"10.0.0.7", "6000", "blog"});
  CHECK_FALSE(parse_pgbouncer_databases_file("shop = host=1.2.3.4\n", "shop"));

  CHECK(pgbouncer_entry_text(e, "shop") == "127.0.0.2:5432");
  CHECK(pgbouncer_entry_text({"::1", "5432", "other"}, "shop") == "[::1]:5432/other");
}

TEST_CASE("pgbouncer entry of a stack: its dsn's one server", "[pgbouncer]") {
  StackSpec s;
  s.name = "primary";
  s.settings["dsn"] = "host=DB.example.com port=5433 user=x dbname=y";
  auto e = pgbouncer_entry_of(s, "shop");
  REQUIRE(e.ok());
  CHECK(*e == PgBouncerEntry{"db.example.com", "5433", "shop"});
  s.settings["dsn"] = "postgresql://[2001:db8::5]:5432/shop";
  REQUIRE(pgbouncer_entry_of(s, "shop").ok());
  CHECK(pgbouncer_entry_of(s, "shop")->host == "2001:db8::5");
  s.settings["dsn"] = "host=10.0.0.5,10.0.0.6";
  CHECK_THAT(pgbouncer_entry_of(s, "shop").error().message, Catch::Contains("names 2 servers"));
  s.settings["dsn"] = "host='10.0.0.5\nadmin_users=x'";
  CHECK_THAT(pgbouncer_entry_of(s, "shop").error().message,
             Catch::Contains("cannot be written into a PgBouncer entry"));
  s.settings.erase("dsn");
  CHECK_THAT(pgbouncer_entry_of(s, "shop").error().message, Catch::Contains("has no dsn"));
  s.settings["database_dsn"] = "host=10.0.0.7";  // a Cloud 66 stack's database
  CHECK(pgbouncer_entry_of(s, "shop")->host == "10.0.0.7");
}

TEST_CASE("SHOW DATABASES: the row of the database, paused and disabled", "[pgbouncer]") {
  const std::vector<std::string> columns = {"name",
                                            "host",
                                            "port",
                                            "database",
                                            "force_user",
                                            "pool_size",
                                            "min_pool_size",
                                            "reserve_pool",
                                            "pool_mode",
                                            "max_connections",
                                            "current_connections",
                                            "paused",
                                            "disabled"};
  using Row = std::vector<std::optional<std::string>>;
  auto row = [](const char* name, std::optional<std::string> host, const char* paused,
                const char* disabled) {
    return Row{name, host,         "6432", name, std::nullopt, "20",    "0",
               "0",  std::nullopt, "0",    "0",  paused,       disabled};
  };
  const std::vector<Row> rows = {row("pgbouncer", std::nullopt, "0", "0"),
                                 row("shop", "127.0.0.2", "1", "0"),
                                 row("blog", "10.0.0.1", "0", "1")};
  auto shop = find_pgbouncer_row(columns, rows, "shop");
  REQUIRE(shop.ok());
  REQUIRE(*shop);
  CHECK((*shop)->entry == PgBouncerEntry{"127.0.0.2", "6432", "shop"});
  CHECK((*shop)->paused);
  CHECK_FALSE((*shop)->disabled);
  CHECK((*find_pgbouncer_row(columns, rows, "blog"))->disabled);
  CHECK((*find_pgbouncer_row(columns, rows, "pgbouncer"))->entry.host.empty());
  CHECK_FALSE(*find_pgbouncer_row(columns, rows, "nope"));
  // Not PgBouncer's admin console (a PostgreSQL server answering SHOW ...).
  auto wrong = find_pgbouncer_row({"databases"}, {}, "shop");
  CHECK_THAT(wrong.error().message, Catch::Contains("dbname=pgbouncer"));
}

TEST_CASE("pgbouncer unreachable is a state, without the password", "[pgbouncer]") {
  ::setenv("PGB_TEST_PW", "s3cret-value", 1);
  LoadResult r = load_desired_text(
      "c.yaml", edit(edit(kConfig, "port=6432", "port=" + std::to_string(closed_port())), "PGB_PW",
                     "PGB_TEST_PW"));
  REQUIRE(r.errors.empty());
  const GroupSpec& g = r.desired->groups.at("shop");
  RealDriverFactory factory;
  auto d = factory.traffic_driver(*r.desired, g, g.traffic.at(0));
  REQUIRE(d.ok());
  TrafficObs o = (*d)->observe();
  CHECK_FALSE(o.reachable);
  CHECK_FALSE(o.config_error);
  CHECK_THAT(o.error, Catch::StartsWith("PgBouncer pgb at 127.0.0.1:"));
  CHECK_THAT(o.error, !Catch::Contains("s3cret"));
  CHECK_FALSE(o.paused);
  CHECK_FALSE((*d)->pause().ok());
  CHECK_FALSE((*d)->switch_to("standby").ok());
  CHECK_THAT((*d)->lower_ttl(5).error().message, Catch::Contains("no TTL"));
  CHECK((*d)->pools());

  // The host binds the password elsewhere: refused before any connection.
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PGB_TEST_PW}"] = {"postgres://10.9.9.9:6432"};
  install_host_policy(p);
  o = (*d)->observe();
  clear_host_policy();
  CHECK(o.config_error);
  CHECK_THAT(o.error, Catch::Contains("may not be sent to"));
  ::unsetenv("PGB_TEST_PW");
}

namespace {

// A server speaking just enough of PostgreSQL's protocol to be an admin
// console that never stops answering: after the login, a query gets a
// one-column row description and then `rows` rows of `width` bytes.
class FloodingServer {
 public:
  FloodingServer(size_t rows, size_t width) : rows_(rows), width_(width) {
    listen_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    ::listen(listen_, 1);
    thread_ = std::thread([this] { serve(); });
  }
  ~FloodingServer() {
    shutdown(listen_, SHUT_RDWR);
    close(listen_);
    thread_.join();
  }
  int port = 0;
  size_t sent = 0;  // rows written before the client went away

 private:
  static void put32(std::string& s, uint32_t v) {
    for (int i = 3; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  static void put16(std::string& s, uint16_t v) {
    s += static_cast<char>(v >> 8);
    s += static_cast<char>(v & 0xff);
  }
  static std::string message(char type, const std::string& body) {
    std::string m(1, type);
    put32(m, static_cast<uint32_t>(body.size() + 4));
    return m + body;
  }
  static bool read_exact(int fd, char* buf, size_t n) {
    for (size_t got = 0; got < n;) {
      ssize_t r = ::read(fd, buf + got, n - got);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  static bool send_all(int fd, const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return false;
      off += static_cast<size_t>(w);
    }
    return true;
  }
  static uint32_t get32(const char* b) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | uint8_t(b[i]);
    return v;
  }
  static bool read_query_body(int fd, const char* len) {
    uint32_t n = get32(len);
    if (n < 4 || n > 10000) return false;
    std::string body(n - 4, '\0');
    return read_exact(fd, body.data(), body.size());
  }
  // A startup packet: length, then the rest; an SSL request is declined.
  static bool startup(int fd) {
    for (;;) {
      char len[4];
      if (!read_exact(fd, len, 4)) return false;
      uint32_t n = get32(len);
      if (n < 8 || n > 10000) return false;
      std::string rest(n - 4, '\0');
      if (!read_exact(fd, rest.data(), rest.size())) return false;
      if (rest.compare(0, 4, std::string("\x04\xd2\x16\x2f", 4)) == 0) {  // SSLRequest
        if (!send_all(fd, "N")) return false;
        continue;
      }
      return true;
    }
  }
  void serve() {
    int fd = accept(listen_, nullptr, nullptr);
    if (fd < 0) return;
    std::string ok;
    put32(ok, 0);
    std::string ready = message('R', ok) + message('Z', "I");
    if (startup(fd) && send_all(fd, ready)) {
      char type;
      char len[4];
      // The whole query is read: a socket closed with unread input resets.
      if (read_exact(fd, &type, 1) && read_exact(fd, len, 4) && read_query_body(fd, len)) {
        std::string desc;
        put16(desc, 1);
        desc += std::string("name") + '\0';
        put32(desc, 0), put16(desc, 0), put32(desc, 25), put16(desc, 0xffff),
            put32(desc, 0xffffffff), put16(desc, 0);
        std::string row;
        put16(row, 1);
        put32(row, static_cast<uint32_t>(width_));
        row += std::string(width_, 'x');
        const std::string data_row = message('D', row);
        bool open = send_all(fd, message('T', desc));
        for (; open && sent < rows_; ++sent) open = send_all(fd, data_row);
        if (open) send_all(fd, message('C', std::string("SELECT 1") + '\0') + message('Z', "I"));
      }
    }
    close(fd);
  }
  int listen_;
  size_t rows_, width_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("an admin console answer past the bounds is refused as it comes", "[pgbouncer]") {
  auto dsn = [](int port) {
    return "host=127.0.0.1 port=" + std::to_string(port) + " user=sf dbname=pgbouncer";
  };
  SECTION("too many rows") {
    FloodingServer server(1000000, 8);
    PgBouncerAdmin admin;
    REQUIRE(admin.open(dsn(server.port), std::nullopt, std::chrono::seconds(5), false, "t").ok());
    auto r = admin.exec("SHOW DATABASES", std::chrono::seconds(20), false, "t");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains("answered more than 10000 rows or 4 MiB"));
    CHECK_FALSE(admin.alive());  // the rest is not read
  }
  SECTION("too many bytes") {
    FloodingServer server(100000, 64 * 1024);
    PgBouncerAdmin admin;
    REQUIRE(admin.open(dsn(server.port), std::nullopt, std::chrono::seconds(5), false, "t").ok());
    auto r = admin.exec("SHOW DATABASES", std::chrono::seconds(20), false, "t");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains("not PgBouncer's admin console"));
  }
  SECTION("within the bounds: every row") {
    FloodingServer server(3, 8);
    PgBouncerAdmin admin;
    REQUIRE(admin.open(dsn(server.port), std::nullopt, std::chrono::seconds(5), false, "t").ok());
    auto r = admin.exec("SHOW DATABASES", std::chrono::seconds(20), false, "t");
    INFO((r.ok() ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->columns == std::vector<std::string>{"name"});
    CHECK(r->rows.size() == 3);
    CHECK(r->rows.at(2).at(0) == std::string(8, 'x'));
  }
}
