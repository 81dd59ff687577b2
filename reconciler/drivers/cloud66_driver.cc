#include "drivers/cloud66_driver.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "config/diagnostics.h"
#include "config/host_policy.h"
#include "config/loader.h"
#include "config/secret.h"
#include "core/pass_cache.h"
#include "core/provider_stats.h"
#include "sys/http_client.h"
#include "util/backoff.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using rapidjson::Value;
using std::chrono::milliseconds;

constexpr int kMax5xxRetries = 3;
constexpr milliseconds kFirstBackoff{100}, kMaxBackoff{2000};
constexpr milliseconds kFirstPoll{25}, kMaxPoll{2000};

// A provider setting, else its default (config/loader.h: written once).
std::string setting(const ProviderConfig& p, const std::string& key) {
  return p.get(key, provider_default("cloud66", key));
}

int setting_ms(const ProviderConfig& p, const std::string& key) {
  return parse_int(setting(p, key), parse_int(provider_default("cloud66", key), 0));
}

std::string json_text(const rapidjson::Document& d) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  d.Accept(w);
  return buf.GetString();
}

// A Cloud 66 response is small; a deeper or bigger one is refused unparsed.
bool parse_reply(const std::string& body, rapidjson::Document& d) {
  return !parse_json_input(body, d);
}

// Only the delay-seconds form of Retry-After; an HTTP-date (or none) falls
// back to our own backoff.
std::optional<long> retry_after_s(const HttpResponse& r) {
  int s = parse_int(trim(r.header("Retry-After")), -1);
  return s >= 0 ? std::optional<long>(s) : std::nullopt;
}

// The few Cloud 66 API v3 calls this driver needs, over one HttpClient
// (http_client.h: one connection reused, the body capped).
class Client {
 public:
  Client(const ProviderConfig& p, Clock& clock)
      : provider_(p.name),
        token_ref_(p.get("token")),
        base_url_(setting(p, "base_url")),
        timeout_ms_(setting_ms(p, "timeout_ms")),
        action_timeout_ms_(setting_ms(p, "action_timeout_ms")),
        clock_(clock),
        http_(HttpClientOptions{p.get("insecure") == "true", ""}) {
    while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
    if (p.get("insecure") == "true")
      spdlog::warn(
          "provider {}: TLS certificate verification is DISABLED for {} (insecure: true); "
          "anyone on the path can read the Cloud 66 token and forge answers",
          provider_, base_url_);
  }

  long long action_timeout_ms() const { return action_timeout_ms_; }
  Clock& clock() { return clock_; }

  // Sends one API call and unwraps the envelope. `what` names the resource
  // for a 404 ("stack abc123"). Returns the whole document ("response",
  // "pagination"). A rejected token (401, 403) is a ConfigError.
  Result<rapidjson::Document> call(const std::string& method, const std::string& path,
                                   const std::string& body, const std::string& what) {
    if (token_ref_.empty()) return ConfigError("provider " + provider_ + ": `token` is not set");
    auto origin = url_origin(base_url_);
    if (!origin.ok())
      return ConfigError("provider " + provider_ + " base_url: " + origin.error().message);
    auto token = resolve_secret_for(token_ref_, {*origin});
    if (!token.ok()) return Err("provider " + provider_ + ": " + token.error().message);
    auto reply = with_retries(method, path, body, *token);
    if (!reply.ok()) return redact(reply.error(), *token);
    const long st = reply->status;
    if (st == 401 || st == 403)
      return redact(ConfigError("Cloud 66 rejected the token from " + token_ref_ + " (HTTP " +
                                std::to_string(st) + "): " + describe(reply->body)),
                    *token);
    if (st == 404)
      return redact(Refused("Cloud 66 has no " + what + " (HTTP 404 for " + method + " " + path +
                            "): " + describe(reply->body)),
                    *token);
    if (st < 200 || st >= 300) {
      Error e = Err("Cloud 66 answered HTTP " + std::to_string(st) + " to " + method + " " + path +
                    ": " + describe(reply->body));
      e.permanent = http_refusal(st);
      return redact(e, *token);
    }
    rapidjson::Document d;
    if (!parse_reply(reply->body, d) || !d.IsObject() || !d.HasMember("response"))
      return redact(Err("Cloud 66 answered " + method + " " + path +
                        " with something other than its JSON envelope: " + clip(reply->body)),
                    *token);
    return d;
  }

 private:
  static std::string clip(const std::string& s) {
    return escape_control(s.size() > 500 ? s.substr(0, 500) + "…" : s);
  }
  // The documented error body {"error", "error_description"} (the Go client
  // also reads "details"), else the raw body.
  static std::string describe(const std::string& body) {
    rapidjson::Document d;
    if (parse_reply(body, d) && d.IsObject()) {
      for (const char* k : {"error_description", "details", "error"})
        if (d.HasMember(k) && d[k].IsString() && d[k].GetStringLength() > 0)
          return clip(d[k].GetString());
    }
    return body.empty() ? "(empty body)" : clip(body);
  }
  static Error redact(Error e, const std::string& token) {
    if (token.size() >= 4)
      for (size_t at; (at = e.message.find(token)) != std::string::npos;)
        e.message.replace(at, token.size(), "[redacted]");
    return e;
  }

  // 503 is throttling: the request was not served, so every method is
  // retried, after Retry-After when given. Other 5xx are retried only for GET
  // and PUT (idempotent): a POST may have started an action already.
  Result<HttpResponse> with_retries(const std::string& method, const std::string& path,
                                    const std::string& body, const std::string& token) {
    const auto deadline = clock_.now() + milliseconds(timeout_ms_);
    Backoff backoff(kFirstBackoff, kMaxBackoff);
    int retries_5xx = 0;
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - clock_.now());
      if (left.count() <= 0)
        return Timeout("Cloud 66 did not answer " + method + " " + path + " within " +
                       std::to_string(timeout_ms_) + " ms");
      auto r = once(method, path, body, token, left);
      if (!r.ok()) return r;
      const long st = r->status;
      if (st < 500) return r;
      milliseconds wait = backoff.next();
      std::string why;
      if (st == 503) {
        auto after = retry_after_s(*r);
        if (after) wait = milliseconds(*after * 1000);
        why = "Cloud 66 is throttling requests (HTTP 503" +
              (after ? ", Retry-After " + std::to_string(*after) + " s" : "") + ")";
      } else {
        if (method == "POST" || ++retries_5xx > kMax5xxRetries)
          return Err(
              "Cloud 66 answered HTTP " + std::to_string(st) + " to " + method + " " + path +
              (method == "POST" ? "" : " (after " + std::to_string(kMax5xxRetries) + " retries)") +
              ": " + describe(r->body));
        why = "Cloud 66 answered HTTP " + std::to_string(st);
      }
      if (clock_.now() + wait >= deadline)
        return Err(why + " to " + method + " " + path + "; giving up within the " +
                   std::to_string(timeout_ms_) + " ms timeout: " + describe(r->body));
      spdlog::debug("provider {}: {} to {} {}; retrying in {} ms", provider_, why, method, path,
                    wait.count());
      clock_.sleep_for(wait);
    }
  }

  Result<HttpResponse> once(const std::string& method, const std::string& path,
                            const std::string& body, const std::string& token,
                            milliseconds budget) {
    if (!first_bad_header({{"Authorization", token}}).empty())
      return ConfigError("provider " + provider_ +
                         ": refused to send header \"Authorization\": " + "the token from " +
                         token_ref_ + " holds a control character (CR, LF, ...)");
    count_provider_request(provider_, "cloud66", method);
    HttpRequest req;
    req.method = method;
    req.url = base_url_ + path;
    req.timeout = budget;
    req.headers = {{"Authorization", "Bearer " + token}, {"Accept", "application/json"}};
    if (method != "GET") {
      req.headers.emplace_back("Content-Type", "application/json");
      req.body = body;
    }
    auto r = http_.perform(req);
    if (r.ok()) return r;
    if (r.error().timeout)
      return Timeout("Cloud 66 did not answer " + method + " " + path + " within " +
                     std::to_string(budget.count()) + " ms");
    return Err("cannot reach Cloud 66 at " + base_url_ + ": " + r.error().message);
  }

  std::string provider_, token_ref_, base_url_;
  long long timeout_ms_, action_timeout_ms_;
  Clock& clock_;
  HttpClient http_;
};

// ---------------------------------------------------------------- stacks

class Cloud66StackDriver : public StackDriver {
 public:
  Cloud66StackDriver(const ProviderConfig& p, const GroupSpec& g, const std::string& stack,
                     Clock& clock)
      : client_(p, clock), name_(stack) {
    const StackSpec& s = g.stacks.at(stack);
    uid_ = s.get("stack_uid");
    server_ = s.get("server");
  }

  StackObs observe() override {
    StackObs s;
    if (uid_.empty()) {
      s.error = missing_uid();
      return s;
    }
    auto d = client_.call("GET", "/stacks/" + path_uid() + ".json", "", "stack " + uid_);
    if (!d.ok()) {
      s.error = d.error().message;
      s.config_error = d.error().config;
      s.timed_out = d.error().timeout;
      return s;
    }
    const Value& r = (*d)["response"];
    if (!r.IsObject()) {
      s.error = "Cloud 66 answered GET /stacks/" + path_uid() + ".json without a stack object";
      return s;
    }
    s.reachable = true;
    if (r.HasMember("maintenance_mode") && r["maintenance_mode"].IsBool())
      s.maintenance = r["maintenance_mode"].GetBool();
    s.attach_by_hand = attach_by_hand();
    // No `database`: Cloud 66 reports neither the role nor replication lag,
    // and a guess here could unblock a promotion. See the header.
    return s;
  }

  Status set_maintenance(bool on) override { return run_action("maintenance_mode", on ? 1 : 0); }

  // promote_slave_db detaches the replica from its master itself; there is
  // no separate Cloud 66 call to stop replication, so this step succeeds
  // without a request.
  Status stop_replication() override { return Status::Ok(); }

  Status promote() override { return run_action("promote_slave_db", std::nullopt); }

  // Cloud 66 resyncs the replica from the stack's configured master; the
  // source cannot be named in the call, and a database that is no replica
  // (replication never set up, or a former master) cannot be made one
  // through the API: the failure then says how it is done by hand.
  Status start_replication(const StackSpec&) override {
    Status st = run_action("resync_slave_db", std::nullopt);
    if (st.ok()) return st;
    Error e = st.error();
    if (!e.config && !e.timeout) e.message += "; " + attach_by_hand();
    return e;
  }

 private:
  // Cloud 66's API has no call that enables replication (between stacks it
  // is set up in the dashboard); resync_slave_db only re-syncs a replica
  // whose master is configured. See StackObs::attach_by_hand.
  std::string attach_by_hand() const {
    return "Cloud 66 cannot enable replication through its API: in the Cloud 66 dashboard, "
           "open stack " +
           trim_for_message(uid_, 64) +
           ", its database server group (e.g. PostgreSQL server), and use \"Configure data "
           "replication\" with the source stack's database as the master (between "
           "applications: https://help.cloud66.com/docs/databases/database-replication); "
           "stackflip re-syncs it with resync_slave_db from then on";
  }

  std::string missing_uid() const { return "stack " + name_ + ": `stack_uid` is not set"; }
  std::string path_uid() const { return percent_encode_path_segment(uid_); }

  Status run_action(const std::string& command, std::optional<int> value) {
    if (uid_.empty()) return Err(missing_uid());
    rapidjson::Document body(rapidjson::kObjectType);
    auto& a = body.GetAllocator();
    body.AddMember("command", Value(command.c_str(), a), a);
    if (value) body.AddMember("value", *value, a);
    if (!value && !server_.empty()) body.AddMember("server_uid", Value(server_.c_str(), a), a);
    const std::string what = "stack " + uid_;
    auto started =
        client_.call("POST", "/stacks/" + path_uid() + "/actions.json", json_text(body), what);
    if (!started.ok()) return started.error();
    const Value* act = &(*started)["response"];
    if (!act->IsObject() || !act->HasMember("id") || !(*act)["id"].IsInt64())
      return Err("Cloud 66 started " + command + " on stack " + uid_ +
                 " but returned no action id");
    const int64_t id = (*act)["id"].GetInt64();
    const std::string poll_path =
        "/stacks/" + path_uid() + "/actions/" + std::to_string(id) + ".json";
    const auto deadline = client_.clock().now() + milliseconds(client_.action_timeout_ms());
    Backoff backoff(kFirstPoll, kMaxPoll);
    rapidjson::Document latest;
    for (;;) {
      if (act->HasMember("finished_at") && !(*act)["finished_at"].IsNull()) {
        bool ok = act->HasMember("finished_success") && (*act)["finished_success"].IsBool() &&
                  (*act)["finished_success"].GetBool();
        if (ok) return Status::Ok();
        std::string msg =
            act->HasMember("finished_message") && (*act)["finished_message"].IsString()
                ? (*act)["finished_message"].GetString()
                : "(no message)";
        // Cloud 66 ran the action and it failed (e.g. promote_slave_db: "no
        // slave database server to promote"): the same request gets the same
        // answer, so it is a refusal, not retried (issue 11).
        return Refused("Cloud 66 action " + command + " on stack " + uid_ + " failed: " + msg);
      }
      auto wait = backoff.next();
      if (client_.clock().now() + wait >= deadline)
        return Timeout("Cloud 66 action " + command + " on stack " + uid_ + " (action " +
                       std::to_string(id) + ") did not finish within " +
                       std::to_string(client_.action_timeout_ms()) + " ms");
      client_.clock().sleep_for(wait);
      auto polled =
          client_.call("GET", poll_path, "", "action " + std::to_string(id) + " of " + what);
      if (!polled.ok()) return polled.error();
      latest = std::move(*polled);
      act = &latest["response"];
      if (!act->IsObject()) return Err("Cloud 66 answered GET " + poll_path + " without an action");
    }
  }

  Client client_;
  std::string name_, uid_, server_;
};

// ---------------------------------------------------------------- traffic

struct GroupInfo {
  std::string address, primary_uid, secondary_uid;
  int current = 0;  // 1 primary, 2 secondary, 0 unknown
  bool busy = false;
};

// current_stack is an integer (1/2) in the Go client and "primary"/"secondary"
// in the newer docs; accept either from both endpoints.
int parse_current(const Value& v) {
  if (v.IsInt()) return v.GetInt() == 1 || v.GetInt() == 2 ? v.GetInt() : 0;
  if (v.IsString()) {
    std::string s = v.GetString();
    if (iequals(s, "primary") || s == "1") return 1;
    if (iequals(s, "secondary") || s == "2") return 2;
  }
  return 0;
}

std::string str_field(const Value& o, const char* k) {
  return o.HasMember(k) && o[k].IsString() ? o[k].GetString() : "";
}

bool is_elastic(const ProviderConfig& p) {
  return setting(p, "address_api") == "elastic_addresses";
}

// The Go client lists /failover_groups.json and updates /failover_groups/{uid};
// the elastic address docs use /elastic_addresses without a suffix.
std::string list_path(bool elastic) {
  return elastic ? "/elastic_addresses" : "/failover_groups.json";
}

GroupInfo group_info(const Value& g) {
  GroupInfo info;
  info.address = str_field(g, "address");
  info.primary_uid = str_field(g, "primary_stack_uid");
  info.secondary_uid = str_field(g, "secondary_stack_uid");
  if (g.HasMember("current_stack")) info.current = parse_current(g["current_stack"]);
  info.busy =
      g.HasMember("busy_toggling") && g["busy_toggling"].IsBool() && g["busy_toggling"].GetBool();
  return info;
}

// Pages through the failover group (elastic address) list, calling
// `each(item)` for every object until it returns false. Returns the pages
// read.
template <class Each>
Result<int> for_each_page(Client& client, bool elastic, Each each) {
  const std::string path = list_path(elastic);
  const std::string noun = elastic ? "elastic address list" : "failover group list";
  int page = 1, pages_seen = 0;
  while (pages_seen < 1000) {
    auto d = client.call("GET", path + "?page=" + std::to_string(page), "", noun);
    if (!d.ok()) return d.error();
    ++pages_seen;
    const Value& items = (*d)["response"];
    if (!items.IsArray()) return Err("Cloud 66 answered " + path + " without a list");
    for (const auto& g : items.GetArray())
      if (g.IsObject() && !each(g)) return pages_seen;
    // Follow pagination as the Go client does: while current < next.
    if (!d->HasMember("pagination") || !(*d)["pagination"].IsObject()) break;
    const Value& pg = (*d)["pagination"];
    int cur = pg.HasMember("current") && pg["current"].IsInt() ? pg["current"].GetInt() : page;
    int next = pg.HasMember("next") && pg["next"].IsInt() ? pg["next"].GetInt() : 0;
    if (next <= cur) break;
    page = next;
  }
  return pages_seen;
}

struct Cloud66List {
  std::map<std::string, GroupInfo> by_uid;
  int pages = 0;
};

}  // namespace

// Read once per pass like PowerDnsZones (powerdns_zone.h): the first
// reader of a pass fetches every page, concurrent readers of that pass wait
// for it, later ones reuse it; a switch drops the copy.
class Cloud66Lists {
 public:
  Cloud66Lists(const ProviderConfig& p, Clock& clock)
      : client_(p, clock), elastic_(is_elastic(p)) {}

  Result<std::shared_ptr<const Cloud66List>> read(ObservePass pass) {
    return reads_.read(pass, [this] { return fetch(); });
  }

  void invalidate() { reads_.drop(); }

 private:
  Result<std::shared_ptr<const Cloud66List>> fetch() {
    std::lock_guard lock(client_mu_);  // one curl handle
    auto list = std::make_shared<Cloud66List>();
    auto pages = for_each_page(client_, elastic_, [&](const Value& g) {
      std::string uid = str_field(g, "uid");
      if (!uid.empty()) list->by_uid.emplace(uid, group_info(g));
      return true;
    });
    if (!pages.ok()) return pages.error();
    list->pages = *pages;
    return std::shared_ptr<const Cloud66List>(std::move(list));
  }

  std::mutex client_mu_;
  Client client_;
  bool elastic_;
  PassCache<std::shared_ptr<const Cloud66List>> reads_;
};

namespace {

class Cloud66TrafficDriver : public TrafficDriver {
 public:
  Cloud66TrafficDriver(const ProviderConfig& p, const GroupSpec& g, const TrafficSpec& t,
                       std::shared_ptr<Cloud66Lists> lists, Clock& clock)
      : client_(p, clock),
        lists_(std::move(lists)),
        group_(g),
        uid_(t.get("failover_group")),
        name_(t.name),
        elastic_(is_elastic(p)) {}

  TrafficObs observe() override { return observe_in(ObservePass{}); }

  TrafficObs observe_in(ObservePass pass) override {
    TrafficObs t;
    t.name = name_;
    auto info = pass.id ? find_in(pass) : find();
    if (!info.ok()) {
      t.reachable = false;
      t.error = info.error().message;
      t.config_error = info.error().config;
      return t;
    }
    t.content = info->address;
    // A failover group serves one stack at a time: its current one. The
    // record is that stack's uid (and whose it is); a uid of no stack of the
    // group is traffic going elsewhere.
    const std::string& live = info->current == 1 ? info->primary_uid : info->secondary_uid;
    if (info->current != 0 && !live.empty()) {
      TrafficRecord r;
      r.content = live;
      for (const auto& [name, s] : group_.stacks)
        if (s.get("stack_uid") == live) r.stack = name;
      t.target = r.stack;
      t.records.push_back(std::move(r));
    }
    return t;
  }

  Status switch_to(const std::string& stack) override {
    auto it = group_.stacks.find(stack);
    if (it == group_.stacks.end()) return Err("group " + group_.name + " has no stack " + stack);
    const std::string stack_uid = it->second.get("stack_uid");
    if (stack_uid.empty()) return Err("stack " + stack + ": `stack_uid` is not set");

    const auto deadline = client_.clock().now() + milliseconds(client_.action_timeout_ms());
    Backoff backoff(kFirstPoll, kMaxPoll);
    auto info = find();
    if (!info.ok()) return info.error();
    int want = stack_uid == info->primary_uid ? 1 : stack_uid == info->secondary_uid ? 2 : 0;
    if (!want)
      return Err("stack " + stack + " (" + stack_uid + ") is neither the primary (" +
                 info->primary_uid + ") nor the secondary (" + info->secondary_uid + ") stack of " +
                 noun() + " " + uid_);
    // Someone (Cloud 66 itself, another operator) may be toggling: wait.
    auto wait_idle = [&](const char* phase) -> Status {
      while (info->busy) {
        auto w = backoff.next();
        if (client_.clock().now() + w >= deadline)
          return Timeout(noun() + " " + uid_ + " was still busy toggling " + phase + " after " +
                         std::to_string(client_.action_timeout_ms()) + " ms");
        client_.clock().sleep_for(w);
        info = find();
        if (!info.ok()) return info.error();
      }
      return Status::Ok();
    };
    if (Status s = wait_idle("before the switch"); !s.ok()) return s;
    if (info->current == want) return Status::Ok();

    rapidjson::Document body(rapidjson::kObjectType);
    auto& a = body.GetAllocator();
    if (elastic_)
      body.AddMember("current_stack", Value(want == 1 ? "primary" : "secondary", a), a);
    else
      body.AddMember("current_stack", want, a);
    lists_->invalidate();
    auto put = client_.call("PUT", list_base() + "/" + percent_encode_path_segment(uid_),
                            json_text(body), noun() + " " + uid_);
    lists_->invalidate();
    if (!put.ok()) return put.error();

    backoff = Backoff(kFirstPoll, kMaxPoll);
    for (;;) {
      info = find();
      if (!info.ok()) return info.error();
      if (Status s = wait_idle("after the switch"); !s.ok()) return s;
      if (info->current == want) return Status::Ok();
      // Idle but not switched: Cloud 66 did not take the change.
      return Err(noun() + " " + uid_ + " still points at the " +
                 (info->current == 1 ? "primary" : "secondary") + " stack after the switch");
    }
  }

 private:
  std::string noun() const { return elastic_ ? "elastic address" : "failover group"; }
  std::string list_base() const { return elastic_ ? "/elastic_addresses" : "/failover_groups"; }

  // Pages through the list until the group is found (a fresh read).
  Result<GroupInfo> find() {
    if (uid_.empty()) return Err("group " + group_.name + ": traffic `failover_group` is not set");
    std::optional<GroupInfo> found;
    auto pages = for_each_page(client_, elastic_, [&](const Value& g) {
      if (str_field(g, "uid") != uid_) return true;
      found = group_info(g);
      return false;
    });
    if (!pages.ok()) return pages.error();
    if (found) return *found;
    return not_found(*pages);
  }

  // The group from the provider's list as read once in `pass`.
  Result<GroupInfo> find_in(ObservePass pass) {
    if (uid_.empty()) return Err("group " + group_.name + ": traffic `failover_group` is not set");
    auto list = lists_->read(pass);
    if (!list.ok()) return list.error();
    auto it = (*list)->by_uid.find(uid_);
    if (it == (*list)->by_uid.end()) return not_found((*list)->pages);
    return it->second;
  }

  Error not_found(int pages) const {
    return Err("Cloud 66 has no " + noun() + " " + uid_ + " (searched " + std::to_string(pages) +
               " page(s) of " + list_path(elastic_) + ")");
  }

  Client client_;
  std::shared_ptr<Cloud66Lists> lists_;
  GroupSpec group_;
  std::string uid_, name_;
  bool elastic_;
};

}  // namespace

std::unique_ptr<StackDriver> make_cloud66_stack_driver(const ProviderConfig& provider,
                                                       const GroupSpec& group,
                                                       const std::string& stack, Clock& clock) {
  return std::make_unique<Cloud66StackDriver>(provider, group, stack, clock);
}

std::shared_ptr<Cloud66Lists> make_cloud66_lists(const ProviderConfig& provider, Clock& clock) {
  return std::make_shared<Cloud66Lists>(provider, clock);
}

std::unique_ptr<TrafficDriver> make_cloud66_traffic_driver(const ProviderConfig& provider,
                                                           const GroupSpec& group,
                                                           const TrafficSpec& traffic,
                                                           std::shared_ptr<Cloud66Lists> lists,
                                                           Clock& clock) {
  if (!lists) lists = make_cloud66_lists(provider, clock);
  return std::make_unique<Cloud66TrafficDriver>(provider, group, traffic, std::move(lists), clock);
}

}  // namespace stackflip
