// fake_powerdns.h — a PowerDNS Authoritative HTTP API stand-in on 127.0.0.1
// for tests that count requests.
//
// Serves GET and PATCH (changetype REPLACE / DELETE) on
// /api/v1/servers/localhost/zones/{zone id} for the zones added with
// set_rrset() or add_zone(); any other zone is a 404 "Not Found", as
// PowerDNS answers. GET /api/v1/servers/localhost answers (another server
// id is a 404), and POST /api/v1/servers/localhost/zones creates a zone
// (201; 409 when it exists). Counts GETs and PATCHes per zone, and POSTs.
// `get_delay` holds each GET that long (to make concurrent readers overlap);
// fail_gets(status) answers every GET with that status until reset with 0.
//
// Thread safety: every method may be called while the server runs (one
// mutex). The server stops in the destructor.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace stackflip::testing {

class FakePowerDns {
 public:
  FakePowerDns();
  ~FakePowerDns();
  FakePowerDns(const FakePowerDns&) = delete;
  FakePowerDns& operator=(const FakePowerDns&) = delete;

  std::string url() const;  // http://127.0.0.1:PORT

  // Sets the `type` rrset of `name` in `zone` (both absolute) to `contents`.
  void set_rrset(const std::string& zone, const std::string& name, const std::string& type,
                 std::vector<std::string> contents, int ttl = 60);
  std::vector<std::string> rrset(const std::string& zone, const std::string& name,
                                 const std::string& type);
  int rrset_ttl(const std::string& zone, const std::string& name, const std::string& type);
  void delete_rrset(const std::string& zone, const std::string& name, const std::string& type);
  void add_zone(const std::string& zone);  // empty, as a zone PowerDNS was asked to make
  void delete_zone(const std::string& zone);
  bool has_zone(const std::string& zone);
  int posts();

  int gets(const std::string& zone);
  int patches(const std::string& zone);
  void set_get_delay(std::chrono::milliseconds d);
  void fail_gets(int status);

 private:
  struct Rrset {
    int ttl = 60;
    std::vector<std::string> contents;
  };
  using Zone = std::map<std::pair<std::string, std::string>, Rrset>;  // (name, type)

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;

  std::mutex mu_;
  std::map<std::string, Zone> zones_;  // by zone id as in the URL
  std::map<std::string, int> gets_, patches_;
  int posts_ = 0;
  std::chrono::milliseconds get_delay_{0};
  int fail_status_ = 0;
};

}  // namespace stackflip::testing
