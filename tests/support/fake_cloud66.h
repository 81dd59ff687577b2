// fake_cloud66.h — an in-memory Cloud 66 API v3 on 127.0.0.1 for tests.
//
// Serves what the cloud66 driver uses: GET /stacks/{uid}.json, POST
// /stacks/{uid}/actions.json, GET /stacks/{uid}/actions/{id}.json,
// GET /failover_groups.json (current_stack 1|2), PUT /failover_groups/{uid},
// GET /elastic_addresses, PUT /elastic_addresses/{uid} (current_stack
// "primary"|"secondary"). Envelopes, errors and pagination as documented.
// Actions finish `action_delay` after they start (finished_at null until
// then) and take effect when they finish; a failover group switch keeps
// busy_toggling true for `toggle_delay`, and a PUT while busy is refused
// (409), so a driver must wait. Faults can be injected, and every request is
// recorded so tests assert on what a driver did.
//
// Thread safety: all methods may be called while the server runs; state is
// guarded by one mutex. The server stops in the destructor.
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

struct C66Stack {
  std::string uid, name;
  bool maintenance_mode = false;
};

struct C66Group {
  std::string uid, address, primary_stack_uid, secondary_stack_uid;
  int current_stack = 1;  // 1 = primary, 2 = secondary
  bool busy_toggling = false;
};

struct RecordedRequest {
  std::string method, path, body;  // path includes the query string
};

class FakeCloud66 {
 public:
  // Listens on 127.0.0.1:`port`, or on a free port when `port` is 0.
  explicit FakeCloud66(std::string token = "test-token", int port = 0);
  ~FakeCloud66();
  FakeCloud66(const FakeCloud66&) = delete;
  FakeCloud66& operator=(const FakeCloud66&) = delete;

  std::string base_url() const;  // http://127.0.0.1:PORT/api/3
  int port() const { return port_; }

  void add_stack(const C66Stack& s);
  void add_group(const C66Group& g);
  C66Stack stack(const std::string& uid);
  C66Group group(const std::string& uid);

  void set_per_page(int n);
  void set_action_delay(std::chrono::milliseconds d);
  void set_toggle_delay(std::chrono::milliseconds d);
  // The next action started finishes with finished_success=false and `message`.
  void fail_next_action(const std::string& message);
  // Every `command` action on stack `stack_uid` finishes with
  // finished_success=false and `message`, and changes nothing (e.g.
  // promote_slave_db: "no slave database server to promote").
  void refuse_action(const std::string& stack_uid, const std::string& command,
                     const std::string& message);
  // The next n requests are answered 503 with Retry-After (seconds; <0: no header).
  void throttle_next(int n, int retry_after_seconds);
  // The next n requests are answered with `status` (a 5xx) and an error body.
  void error_next(int n, int status = 500);
  // The group stays busy_toggling for `d` (as if someone else were switching it).
  void set_busy(const std::string& group_uid, std::chrono::milliseconds d);

  std::vector<RecordedRequest> requests();
  // Recorded requests that change something (not GET), as "METHOD path body".
  std::vector<std::string> changes();
  void clear_requests();

 private:
  using Clock = std::chrono::steady_clock;
  struct Action {
    int id = 0;
    std::string stack_uid, command, user = "stackflip@example.com";
    int value = 0;
    Clock::time_point finish_at;
    bool finished = false, success = true;
    std::string message;
  };
  struct GroupState {
    C66Group g;
    int pending_current = 0;
    Clock::time_point busy_until{};
  };
  void settle();  // finishes due actions and toggles; caller holds mu_
  static std::string action_json(const Action& a);
  static std::string group_json(const GroupState& g, bool elastic);
  void install_routes();
  // httplib reads a request body after the pre-routing handler that records
  // the request; handlers fill the body in here. Caller holds mu_.
  void record_body(const std::string& method, const std::string& target, const std::string& body);

  std::string token_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;

  std::mutex mu_;
  std::map<std::string, C66Stack> stacks_;
  std::vector<GroupState> groups_;  // in insertion order, for pagination
  std::map<int, Action> actions_;
  int next_action_id_ = 1000;
  int per_page_ = 30;
  std::chrono::milliseconds action_delay_{20}, toggle_delay_{20};
  std::string fail_next_message_;
  std::map<std::pair<std::string, std::string>, std::string>
      refusals_;  // (uid, command) -> message
  bool fail_next_ = false;
  int throttle_n_ = 0, throttle_retry_after_ = -1, error_n_ = 0, error_status_ = 500;
  std::vector<RecordedRequest> requests_;
};

}  // namespace stackflip::testing
