#include "drivers/command_driver.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <optional>

#include "config/diagnostics.h"
#include "config/host_policy.h"
#include "config/loader.h"
#include "config/snapshot.h"
#include "sys/subprocess.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using rapidjson::Value;

// A millisecond setting, else its default (config/loader.h: written once).
long long setting_ms(const ProviderConfig& p, const std::string& key) {
  return parse_int(p.get(key), parse_int(provider_default("command", key), 0));
}

std::optional<JsonInputError> parse_answer(const std::string& out, rapidjson::Document& d) {
  JsonLimits limits;
  limits.max_bytes = kMaxCommandAnswerBytes;
  return parse_json_input(out, d, limits);
}

struct Request {
  std::string operation;
  rapidjson::Document doc;
  explicit Request(std::string op) : operation(std::move(op)) {
    doc.SetObject();
    add("operation", operation);
  }
  void add(const char* key, const std::string& value) {
    auto& a = doc.GetAllocator();
    doc.AddMember(Value(key, a), Value(value.c_str(), a), a);
  }
  void add_int(const char* key, long long value) {
    auto& a = doc.GetAllocator();
    doc.AddMember(Value(key, a), Value(int64_t(value)), a);
  }
  void add_map(const char* key, const std::map<std::string, std::string>& m) {
    auto& a = doc.GetAllocator();
    Value obj(rapidjson::kObjectType);
    for (const auto& [k, v] : m) obj.AddMember(Value(k.c_str(), a), Value(v.c_str(), a), a);
    doc.AddMember(Value(key, a), obj, a);
  }
  std::string text() const {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    doc.Accept(w);
    return buf.GetString();
  }
};

// Runs the configured argv for `req.operation`; stdout on success.
class Runner {
 public:
  Runner(const ProviderConfig& p) : provider_(p), timeout_ms_(setting_ms(p, "timeout_ms")) {}

  // `answer`: the operation answers on stdout (observe, observe_traffic), so
  // an answer cut at the output cap is an error, never a prefix to parse.
  Result<std::string> run(const Request& req, bool answer = false) const {
    auto it = provider_.lists.find(req.operation);
    if (it == provider_.lists.end() || it->second.empty())
      return Err("provider " + provider_.name + ": no `" + req.operation + "` command configured");
    SubprocessOptions o;
    o.argv = it->second;
    if (const HostPolicy* policy = host_policy()) {
      auto program = policy->allow_command(o.argv[0]);
      if (!program.ok()) return Err("provider " + provider_.name + ": " + program.error().message);
      o.argv[0] = *program;
      o.pass_env = policy->command_env;
    }
    o.stdin_data = req.text();
    o.timeout = std::chrono::milliseconds(timeout_ms_);
    o.max_output = kMaxCommandAnswerBytes + 1;  // one byte more shows the cut
    auto r = run_subprocess(o);
    std::string what =
        "provider " + provider_.name + ": " + req.operation + " command `" + o.argv[0] + "`";
    if (!r.ok()) return Err(what + ": " + r.error().message);
    if (!r->stopped.empty())
      return Timeout(what + " was killed before it finished (its process group): " + r->stopped);
    if (r->timed_out)
      return Timeout(what + " timed out after " + std::to_string(timeout_ms_) +
                     " ms (its process group was killed)");
    if (r->exit_code != 0) {
      std::string why = r->exit_code >= 0
                            ? "exited with status " + std::to_string(r->exit_code)
                            : "was killed by signal " + std::to_string(r->term_signal);
      std::string err = trim_output(r->err);
      Error e = Err(what + " " + why + (err.empty() ? "" : ": " + err));
      // Exit status 100 is the documented refusal (command_driver.h): not retried.
      e.permanent = r->exit_code == kCommandRefusedExit;
      if (e.permanent) e.message += " (refused)";
      return e;
    }
    if (answer && r->out.size() > kMaxCommandAnswerBytes)
      return Err(what + " printed more than " + format_byte_size(kMaxCommandAnswerBytes) +
                 " on stdout (the limit for an answer); nothing of it was read");
    return r->out;
  }

 private:
  ProviderConfig provider_;
  long long timeout_ms_;
};

class CommandStackDriver : public StackDriver {
 public:
  CommandStackDriver(const ProviderConfig& p, const GroupSpec& g, const std::string& stack)
      : runner_(p), group_(g.name), spec_(g.stacks.at(stack)) {}

  StackObs observe() override {
    StackObs s;
    auto out = runner_.run(request("observe"), /*answer=*/true);
    if (!out.ok()) {
      s.error = out.error().message;
      s.timed_out = out.error().timeout;
      return s;
    }
    rapidjson::Document d;
    if (auto e = parse_answer(*out, d)) {
      s.error = "observe command printed invalid JSON: " + e->what + " at offset " +
                std::to_string(e->offset);
      return s;
    }
    auto parsed = stack_obs_from_json(d, "observe command output");
    if (!parsed.ok()) {
      s.error = parsed.error().message;
      return s;
    }
    return *parsed;
  }
  Status set_maintenance(bool on) override {
    return runner_.run(request(on ? "maintenance_on" : "maintenance_off")).status();
  }
  Status stop_replication() override { return runner_.run(request("replication_stop")).status(); }
  Status promote() override { return runner_.run(request("promote")).status(); }
  Status start_replication(const StackSpec& source) override {
    Request r = request("replication_start");
    r.add("source", source.name);
    r.add_map("source_settings", source.settings);
    r.add("source_address", source.address);
    return runner_.run(r).status();
  }

 private:
  Request request(const std::string& op) const {
    Request r(op);
    r.add("group", group_);
    r.add("stack", spec_.name);
    r.add_map("settings", spec_.settings);
    r.add("address", spec_.address);
    return r;
  }
  Runner runner_;
  std::string group_;
  StackSpec spec_;
};

class CommandTrafficDriver : public TrafficDriver {
 public:
  CommandTrafficDriver(const ProviderConfig& p, const GroupSpec& g, const TrafficSpec& t)
      : runner_(p), group_(g), traffic_(t) {}

  TrafficObs observe() override {
    TrafficObs t = observe_answer();
    t.name = traffic_.name;
    return t;
  }

  TrafficObs observe_answer() {
    TrafficObs t;
    auto out = runner_.run(request("observe_traffic"), /*answer=*/true);
    if (!out.ok()) return unreachable(out.error().message);
    rapidjson::Document d;
    if (auto e = parse_answer(*out, d))
      return unreachable("observe_traffic command printed invalid JSON: " + e->what +
                         " at offset " + std::to_string(e->offset));
    if (!d.IsObject()) return unreachable("observe_traffic command output: expected a JSON object");
    if (d.HasMember("target")) {
      const Value& v = d["target"];
      if (v.IsString()) {
        if (!group_.stacks.count(v.GetString()))
          return unreachable("observe_traffic command output/target: \"" +
                             escape_control(v.GetString()) + "\" is not a stack of group " +
                             group_.name);
        t.target = v.GetString();
      } else if (!v.IsNull()) {
        return unreachable("observe_traffic command output/target: expected a stack name or null");
      }
    }
    if (d.HasMember("ttl")) {
      if (!d["ttl"].IsInt() || d["ttl"].GetInt() < 0)
        return unreachable("observe_traffic command output/ttl: expected an integer >= 0");
      t.ttl = d["ttl"].GetInt();
    }
    if (d.HasMember("content")) {
      if (!d["content"].IsString())
        return unreachable("observe_traffic command output/content: expected a string");
      t.content = d["content"].GetString();
    }
    // `targets`: every stack the address sends traffic to now (several =
    // mixed). Without it, `target` alone is what it reaches.
    if (d.HasMember("targets")) {
      const Value& v = d["targets"];
      if (!v.IsArray() || v.Size() > group_.stacks.size())
        return unreachable("observe_traffic command output/targets: expected a list of at most " +
                           std::to_string(group_.stacks.size()) + " stack names");
      for (const auto& x : v.GetArray()) {
        if (!x.IsString() || !group_.stacks.count(x.GetString()))
          return unreachable(
              "observe_traffic command output/targets: expected stack names of group " +
              group_.name);
        t.records.push_back(TrafficRecord{x.GetString(), std::string(x.GetString()), false});
      }
      if (t.target && (t.records.size() != 1 || t.records[0].content != *t.target))
        return unreachable("observe_traffic command output: `target` " + *t.target +
                           " disagrees with `targets`");
      if (t.records.size() == 1) t.target = t.records[0].content;
    } else if (t.target) {
      t.records.push_back(TrafficRecord{*t.target, t.target, false});
    }
    return t;
  }

  Status switch_to(const std::string& stack) override {
    auto it = group_.stacks.find(stack);
    if (it == group_.stacks.end()) return Err("group " + group_.name + " has no stack " + stack);
    Request r = request("traffic_switch");
    r.add("target", stack);
    r.add("address", it->second.address);
    return runner_.run(r).status();
  }

 private:
  static TrafficObs unreachable(std::string why) {
    TrafficObs t;
    t.reachable = false;
    t.error = std::move(why);
    return t;
  }
  Request request(const std::string& op) const {
    Request r(op);
    r.add("group", group_.name);
    r.add_map("settings", traffic_.settings);
    std::map<std::string, std::string> addresses;
    for (const auto& [name, s] : group_.stacks) addresses[name] = s.address;
    r.add_map("addresses", addresses);
    r.add_int("ttl", traffic_.ttl);
    return r;
  }
  Runner runner_;
  GroupSpec group_;
  TrafficSpec traffic_;
};

}  // namespace

std::unique_ptr<StackDriver> make_command_stack_driver(const ProviderConfig& provider,
                                                       const GroupSpec& group,
                                                       const std::string& stack) {
  return std::make_unique<CommandStackDriver>(provider, group, stack);
}

std::unique_ptr<TrafficDriver> make_command_traffic_driver(const ProviderConfig& provider,
                                                           const GroupSpec& group,
                                                           const TrafficSpec& traffic) {
  return std::make_unique<CommandTrafficDriver>(provider, group, traffic);
}

}  // namespace stackflip
