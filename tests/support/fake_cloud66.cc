#include "fake_cloud66.h"

#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <stdexcept>

namespace stackflip::testing {

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
constexpr const char* kPrefix = "/api/3";
constexpr const char* kTime = "2026-11-26T18:00:00Z";

void error_body(httplib::Response& res, int status, const std::string& error,
                const std::string& description) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("error");
  w.String(error.c_str());
  w.Key("error_description");
  w.String(description.c_str());
  w.EndObject();
  res.status = status;
  res.set_content(buf.GetString(), "application/json");
}

// {"response": <raw>} for single objects.
void envelope(httplib::Response& res, const std::string& raw) {
  res.set_content("{\"response\":" + raw + "}", "application/json");
}

}  // namespace

FakeCloud66::FakeCloud66(std::string token, int port)
    : token_(std::move(token)), server_(new httplib::Server) {
  install_routes();
  if (port > 0)
    port_ = server_->bind_to_port("127.0.0.1", port) ? port : -1;
  else
    port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0)
    throw std::runtime_error("fake Cloud 66: cannot bind 127.0.0.1" +
                             (port > 0 ? ":" + std::to_string(port) : std::string()));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

FakeCloud66::~FakeCloud66() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FakeCloud66::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + kPrefix;
}

void FakeCloud66::add_stack(const C66Stack& s) {
  std::lock_guard<std::mutex> l(mu_);
  stacks_[s.uid] = s;
}
void FakeCloud66::add_group(const C66Group& g) {
  std::lock_guard<std::mutex> l(mu_);
  groups_.push_back({g, 0, {}});
}
C66Stack FakeCloud66::stack(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  settle();
  return stacks_.at(uid);
}
C66Group FakeCloud66::group(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  settle();
  for (auto& g : groups_)
    if (g.g.uid == uid) return g.g;
  throw std::out_of_range("no fake group " + uid);
}
void FakeCloud66::set_per_page(int n) {
  std::lock_guard<std::mutex> l(mu_);
  per_page_ = n;
}
void FakeCloud66::set_action_delay(std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> l(mu_);
  action_delay_ = d;
}
void FakeCloud66::set_toggle_delay(std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> l(mu_);
  toggle_delay_ = d;
}
void FakeCloud66::fail_next_action(const std::string& message) {
  std::lock_guard<std::mutex> l(mu_);
  fail_next_ = true;
  fail_next_message_ = message;
}
void FakeCloud66::refuse_action(const std::string& stack_uid, const std::string& command,
                                const std::string& message) {
  std::lock_guard<std::mutex> l(mu_);
  refusals_[{stack_uid, command}] = message;
}
void FakeCloud66::throttle_next(int n, int retry_after_seconds) {
  std::lock_guard<std::mutex> l(mu_);
  throttle_n_ = n;
  throttle_retry_after_ = retry_after_seconds;
}
void FakeCloud66::error_next(int n, int status) {
  std::lock_guard<std::mutex> l(mu_);
  error_n_ = n;
  error_status_ = status;
}
void FakeCloud66::set_busy(const std::string& group_uid, std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& g : groups_)
    if (g.g.uid == group_uid) {
      g.g.busy_toggling = true;
      g.pending_current = 0;
      g.busy_until = Clock::now() + d;
    }
}
std::vector<RecordedRequest> FakeCloud66::requests() {
  std::lock_guard<std::mutex> l(mu_);
  return requests_;
}
std::vector<std::string> FakeCloud66::changes() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& r : requests_)
    if (r.method != "GET")
      out.push_back(r.method + " " + r.path + (r.body.empty() ? "" : " " + r.body));
  return out;
}
void FakeCloud66::clear_requests() {
  std::lock_guard<std::mutex> l(mu_);
  requests_.clear();
}

void FakeCloud66::settle() {
  auto now = Clock::now();
  for (auto& [id, a] : actions_) {
    if (a.finished || now < a.finish_at) continue;
    a.finished = true;
    if (a.success && a.command == "maintenance_mode")
      stacks_[a.stack_uid].maintenance_mode = a.value != 0;
  }
  for (auto& g : groups_) {
    if (!g.g.busy_toggling || now < g.busy_until) continue;
    g.g.busy_toggling = false;
    if (g.pending_current) g.g.current_stack = g.pending_current;
    g.pending_current = 0;
  }
}

std::string FakeCloud66::action_json(const Action& a) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("id"), w.Int(a.id);
  w.Key("user"), w.String(a.user.c_str());
  w.Key("resource_type"), w.String("Stack");
  w.Key("resource_id"), w.String(a.stack_uid.c_str());
  w.Key("action"), w.String(a.command.c_str());
  w.Key("started_via"), w.String("api");
  w.Key("started_at"), w.String(kTime);
  w.Key("finished_at");
  a.finished ? w.String(kTime) : w.Null();
  w.Key("finished_success");
  a.finished ? w.Bool(a.success) : w.Null();
  w.Key("finished_message");
  a.finished ? w.String(a.message.c_str()) : w.Null();
  w.EndObject();
  return buf.GetString();
}

std::string FakeCloud66::group_json(const GroupState& gs, bool elastic) {
  const C66Group& g = gs.g;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("uid"), w.String(g.uid.c_str());
  w.Key("address"), w.String(g.address.c_str());
  w.Key("primary_stack_uid"), w.String(g.primary_stack_uid.c_str());
  w.Key("secondary_stack_uid"), w.String(g.secondary_stack_uid.c_str());
  w.Key("current_stack");
  if (elastic)
    w.String(g.current_stack == 1 ? "primary" : "secondary");
  else
    w.Int(g.current_stack);
  w.Key("busy_toggling"), w.Bool(g.busy_toggling);
  w.Key("readonly"), w.Bool(false);
  w.Key("created_at"), w.String(kTime);
  w.Key("updated_at"), w.String(kTime);
  w.EndObject();
  return buf.GetString();
}

void FakeCloud66::record_body(const std::string& method, const std::string& target,
                              const std::string& body) {
  const std::string path = target.substr(std::string(kPrefix).size());
  for (auto it = requests_.rbegin(); it != requests_.rend(); ++it)
    if (it->method == method && it->path == path && it->body.empty()) {
      it->body = body;
      return;
    }
}

void FakeCloud66::install_routes() {
  using httplib::Request;
  using httplib::Response;
  auto& s = *server_;

  s.set_pre_routing_handler([this](const Request& req, Response& res) {
    std::lock_guard<std::mutex> l(mu_);
    requests_.push_back({req.method, req.target.substr(std::string(kPrefix).size()), req.body});
    if (throttle_n_ > 0) {
      --throttle_n_;
      if (throttle_retry_after_ >= 0)
        res.set_header("Retry-After", std::to_string(throttle_retry_after_));
      error_body(res, 503, "rate_limited", "Too many requests: 3,000 an hour");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (error_n_ > 0) {
      --error_n_;
      error_body(res, error_status_, "server_error", "Something went wrong on our side");
      return httplib::Server::HandlerResponse::Handled;
    }
    std::string auth = req.get_header_value("Authorization");
    if (auth != "Bearer " + token_ && auth != "bearer " + token_) {
      error_body(res, 401, "invalid_token", "The access token is invalid");
      return httplib::Server::HandlerResponse::Handled;
    }
    settle();
    return httplib::Server::HandlerResponse::Unhandled;
  });

  const std::string p = kPrefix;
  s.Get(p + R"(/stacks/([^/]+)\.json)", [this](const Request& req, Response& res) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = stacks_.find(req.matches[1]);
    if (it == stacks_.end()) return error_body(res, 404, "not_found", "Stack not found");
    rapidjson::StringBuffer buf;
    Writer w(buf);
    w.StartObject();
    w.Key("uid"), w.String(it->second.uid.c_str());
    w.Key("name"), w.String(it->second.name.c_str());
    w.Key("status"), w.Int(1);
    w.Key("health"), w.Int(3);
    w.Key("maintenance_mode"), w.Bool(it->second.maintenance_mode);
    bool busy = false;
    for (auto& [id, a] : actions_) busy |= a.stack_uid == it->second.uid && !a.finished;
    w.Key("is_busy"), w.Bool(busy);
    w.EndObject();
    envelope(res, buf.GetString());
  });

  s.Post(p + R"(/stacks/([^/]+)/actions\.json)", [this](const Request& req, Response& res) {
    std::lock_guard<std::mutex> l(mu_);
    record_body(req.method, req.target, req.body);
    std::string uid = req.matches[1];
    if (!stacks_.count(uid)) return error_body(res, 404, "not_found", "Stack not found");
    rapidjson::Document d;
    d.Parse(req.body.c_str());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("command") || !d["command"].IsString())
      return error_body(res, 400, "bad_request", "command is required");
    Action a;
    a.id = next_action_id_++;
    a.stack_uid = uid;
    a.command = d["command"].GetString();
    if (a.command == "maintenance_mode") {
      if (!d.HasMember("value") || !d["value"].IsInt())
        return error_body(res, 400, "bad_request", "value is required");
      a.value = d["value"].GetInt();
    } else if (a.command != "promote_slave_db" && a.command != "resync_slave_db") {
      return error_body(res, 400, "bad_request", "unknown command " + a.command);
    }
    a.finish_at = Clock::now() + action_delay_;
    if (auto r = refusals_.find({uid, a.command}); r != refusals_.end()) {
      a.success = false;
      a.message = r->second;
    } else if (fail_next_) {
      fail_next_ = false;
      a.success = false;
      a.message = fail_next_message_;
    } else {
      a.message = a.command + " finished";
    }
    actions_[a.id] = a;
    envelope(res, action_json(a));
  });

  s.Get(p + R"(/stacks/([^/]+)/actions/(\d+)\.json)", [this](const Request& req, Response& res) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = actions_.find(std::stoi(req.matches[2]));
    if (it == actions_.end() || it->second.stack_uid != req.matches[1])
      return error_body(res, 404, "not_found", "Action not found");
    envelope(res, action_json(it->second));
  });

  auto list = [this](bool elastic) {
    return [this, elastic](const Request& req, Response& res) {
      std::lock_guard<std::mutex> l(mu_);
      int total = int(groups_.size());
      int pages = std::max(1, (total + per_page_ - 1) / per_page_);
      int page = req.has_param("page") ? std::stoi(req.get_param_value("page")) : 1;
      std::string items;
      for (int i = (page - 1) * per_page_; i < std::min(total, page * per_page_); ++i)
        items += (items.empty() ? "" : ",") + group_json(groups_[size_t(i)], elastic);
      auto num_or_null = [](int v, bool ok) {
        return ok ? std::to_string(v) : std::string("null");
      };
      std::string body =
          "{\"response\":[" + items + "],\"count\":" + std::to_string(total) +
          ",\"pagination\":{\"previous\":" + num_or_null(page - 1, page > 1) +
          ",\"next\":" + num_or_null(page + 1, page < pages) +
          ",\"current\":" + std::to_string(page) + ",\"per_page\":" + std::to_string(per_page_) +
          ",\"count\":" + std::to_string(total) + ",\"pages\":" + std::to_string(pages) + "}}";
      res.set_content(body, "application/json");
    };
  };
  s.Get(p + R"(/failover_groups(\.json)?)", list(false));
  s.Get(p + R"(/elastic_addresses(\.json)?)", list(true));

  auto update = [this](bool elastic) {
    return [this, elastic](const Request& req, Response& res) {
      std::lock_guard<std::mutex> l(mu_);
      record_body(req.method, req.target, req.body);
      std::string uid = req.matches[1];
      GroupState* gs = nullptr;
      for (auto& g : groups_)
        if (g.g.uid == uid) gs = &g;
      if (!gs) return error_body(res, 404, "not_found", "Failover group not found");
      rapidjson::Document d;
      d.Parse(req.body.c_str());
      int want = 0;
      if (!d.HasParseError() && d.IsObject() && d.HasMember("current_stack")) {
        const auto& v = d["current_stack"];
        if (!elastic && v.IsInt()) want = v.GetInt();
        if (elastic && v.IsString())
          want = std::string(v.GetString()) == "primary"     ? 1
                 : std::string(v.GetString()) == "secondary" ? 2
                                                             : 0;
      }
      if (want != 1 && want != 2)
        return error_body(res, 400, "bad_request", "invalid current_stack");
      if (gs->g.busy_toggling)
        return error_body(res, 409, "conflict", "Failover group is busy toggling");
      if (want != gs->g.current_stack) {
        gs->g.busy_toggling = true;
        gs->pending_current = want;
        gs->busy_until = Clock::now() + toggle_delay_;
      }
      envelope(res, group_json(*gs, elastic));
    };
  };
  s.Put(p + R"(/failover_groups/([^/.]+)(?:\.json)?)", update(false));
  s.Put(p + R"(/elastic_addresses/([^/.]+)(?:\.json)?)", update(true));
}

}  // namespace stackflip::testing
