#include "core/plan_json.h"

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <initializer_list>
#include <optional>
#include <set>

#include "util/json_input.h"

namespace stackflip {

namespace {

constexpr const char* kApiVersion = "stackflip/v1";

template <class W>
void write_string(W& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

template <class W>
void write_plan(W& w, const Plan& plan) {
  std::set<std::string> groups;
  size_t blocked = 0;
  for (const auto& a : plan.actions) {
    groups.insert(a.group);
    if (a.blocked) ++blocked;
  }
  for (const auto& s : plan.skipped) groups.insert(s.group);
  for (const auto& [g, why] : plan.blocked_groups) groups.insert(g);

  w.StartObject();
  write_string(w, "apiVersion", kApiVersion);
  write_string(w, "desired_digest", plan.desired_digest);
  write_string(w, "observed_digest", plan.observed_digest);
  w.Key("summary");
  w.StartObject();
  w.Key("groups");
  w.Uint64(groups.size());
  w.Key("actions");
  w.Uint64(plan.actions.size());
  w.Key("blocked");
  w.Uint64(blocked);
  w.EndObject();
  w.Key("actions");
  w.StartArray();
  for (const auto& a : plan.actions) {
    w.StartObject();
    write_string(w, "group", a.group);
    write_string(w, "kind", to_string(a.kind));
    write_string(w, "stack", a.stack);
    if (!a.source.empty()) write_string(w, "source", a.source);
    if (a.kind == ActionKind::traffic_wait) {
      w.Key("wait_seconds");
      w.Int64(a.wait_ms / 1000);
    }
    write_string(w, "reason", a.reason);
    write_string(w, "guard", a.guard);
    if (a.destructive) {  // issue 17: what the step destroys, for review tools
      w.Key("destructive");
      w.Bool(true);
      write_string(w, "removes", a.removes);
    }
    write_string(w, "status", a.blocked ? "blocked" : "pending");
    if (a.blocked) write_string(w, "why_blocked", a.why_blocked);
    w.EndObject();
  }
  w.EndArray();
  w.Key("skipped");
  w.StartArray();
  for (const auto& s : plan.skipped) {
    w.StartObject();
    write_string(w, "group", s.group);
    write_string(w, "kind", to_string(s.kind));
    write_string(w, "stack", s.stack);
    write_string(w, "reason", s.reason);
    w.EndObject();
  }
  w.EndArray();
  if (!plan.blocked_groups.empty()) {  // written only when present: older plans read the same
    w.Key("blocked_groups");
    w.StartObject();
    for (const auto& [g, why] : plan.blocked_groups) {
      w.Key(g.data(), static_cast<rapidjson::SizeType>(g.size()));
      w.String(why.data(), static_cast<rapidjson::SizeType>(why.size()));
    }
    w.EndObject();
  }
  if (!plan.config_errors.empty()) {  // written only when present, as blocked_groups
    w.Key("config_errors");
    w.StartObject();
    for (const auto& [g, why] : plan.config_errors) {
      w.Key(g.data(), static_cast<rapidjson::SizeType>(g.size()));
      w.String(why.data(), static_cast<rapidjson::SizeType>(why.size()));
    }
    w.EndObject();
  }
  w.EndObject();
}

// Reads one object's members against a fixed list, reporting by JSON pointer.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  Error fail(const std::string& pointer, const std::string& what) const {
    return Err(file_ + ": " + (pointer.empty() ? "/" : pointer) + ": " + what);
  }

  // Checks that `obj` is an object with no members outside `allowed`.
  std::optional<Error> check_object(const rapidjson::Value& obj, const std::string& pointer,
                                    std::initializer_list<const char*> allowed) const {
    if (!obj.IsObject()) return fail(pointer, "expected an object");
    for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
      std::string name(it->name.GetString(), it->name.GetStringLength());
      bool known = false;
      for (const char* a : allowed) known = known || name == a;
      if (!known) return fail(pointer + "/" + name, "unknown member \"" + name + "\"");
    }
    return std::nullopt;
  }

  // Reads a string member; `optional` members may be absent (then "").
  std::optional<Error> string(const rapidjson::Value& obj, const std::string& pointer,
                              const char* key, std::string& out, bool optional = false) const {
    auto it = obj.FindMember(key);
    if (it == obj.MemberEnd()) {
      if (optional) return std::nullopt;
      return fail(pointer, std::string("missing member \"") + key + "\"");
    }
    if (!it->value.IsString()) return fail(pointer + "/" + key, "expected a string");
    out.assign(it->value.GetString(), it->value.GetStringLength());
    return std::nullopt;
  }

  std::optional<Error> count(const rapidjson::Value& obj, const std::string& pointer,
                             const char* key, uint64_t expected) const {
    auto it = obj.FindMember(key);
    if (it == obj.MemberEnd()) return fail(pointer, std::string("missing member \"") + key + "\"");
    if (!it->value.IsUint64()) return fail(pointer + "/" + key, "expected a non-negative integer");
    if (it->value.GetUint64() != expected)
      return fail(pointer + "/" + key, "says " + std::to_string(it->value.GetUint64()) +
                                           " but the plan lists " + std::to_string(expected) +
                                           " (was the file edited?)");
    return std::nullopt;
  }

  std::optional<Error> kind(const rapidjson::Value& obj, const std::string& pointer,
                            ActionKind& out) const {
    std::string name;
    if (auto e = string(obj, pointer, "kind", name)) return e;
    auto k = parse_action_kind(name);
    if (!k)
      return fail(pointer + "/kind",
                  "unknown action kind \"" + name +
                      "\" (expected maintenance.on, replication.wait, replication.stop, "
                      "database.promote, maintenance.off, traffic.switch, replication.start, "
                      "traffic.ttl, traffic.wait, traffic.pause, traffic.resume or "
                      "replication.bootstrap)");
    out = *k;
    return std::nullopt;
  }

 private:
  std::string file_;
};

}  // namespace

std::string plan_to_json(const Plan& plan, bool pretty) {
  rapidjson::StringBuffer buf;
  if (pretty) {
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
    w.SetIndent(' ', 2);
    write_plan(w, plan);
  } else {
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    write_plan(w, plan);
  }
  std::string out(buf.GetString(), buf.GetSize());
  if (pretty) out += '\n';
  return out;
}

Result<Plan> plan_from_json(const std::string& text, const std::string& file) {
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = kMaxPlanBytes;
  if (auto e = parse_json_input(text, doc, limits))
    return Err(file + ": offset " + std::to_string(e->offset) + ": not valid JSON: " + e->what);

  Reader r(file);
  Plan plan;
  if (auto e = r.check_object(doc, "",
                              {"apiVersion", "desired_digest", "observed_digest", "summary",
                               "actions", "skipped", "blocked_groups", "config_errors"}))
    return *e;
  std::string api;
  if (auto e = r.string(doc, "", "apiVersion", api)) return *e;
  if (api != kApiVersion)
    return r.fail("/apiVersion", "unsupported \"" + api + "\" (expected \"" + kApiVersion + "\")");
  if (auto e = r.string(doc, "", "desired_digest", plan.desired_digest)) return *e;
  if (auto e = r.string(doc, "", "observed_digest", plan.observed_digest)) return *e;

  auto actions = doc.FindMember("actions");
  if (actions == doc.MemberEnd()) return r.fail("", "missing member \"actions\"");
  if (!actions->value.IsArray()) return r.fail("/actions", "expected an array");
  size_t blocked = 0;
  std::set<std::string> groups;
  for (rapidjson::SizeType i = 0; i < actions->value.Size(); ++i) {
    const auto& v = actions->value[i];
    std::string p = "/actions/" + std::to_string(i);
    if (auto e = r.check_object(v, p,
                                {"group", "kind", "stack", "source", "wait_seconds", "reason",
                                 "guard", "destructive", "removes", "status", "why_blocked"}))
      return *e;
    Action a;
    std::string status;
    if (auto e = r.string(v, p, "group", a.group)) return *e;
    if (auto e = r.kind(v, p, a.kind)) return *e;
    if (auto e = r.string(v, p, "stack", a.stack)) return *e;
    if (auto e = r.string(v, p, "source", a.source, /*optional=*/true)) return *e;
    if (auto w = v.FindMember("wait_seconds"); w != v.MemberEnd()) {
      if (a.kind != ActionKind::traffic_wait || !w->value.IsInt64() || w->value.GetInt64() < 0 ||
          w->value.GetInt64() > 86400)
        return r.fail(p + "/wait_seconds",
                      "expected an integer from 0 to 86400, on a traffic.wait action only");
      a.wait_ms = w->value.GetInt64() * 1000;
    }
    if (auto e = r.string(v, p, "reason", a.reason)) return *e;
    if (auto e = r.string(v, p, "guard", a.guard)) return *e;
    if (auto d = v.FindMember("destructive"); d != v.MemberEnd()) {
      if (!d->value.IsBool() || !d->value.GetBool() || a.kind != ActionKind::replication_bootstrap)
        return r.fail(p + "/destructive", "expected true, on a replication.bootstrap action only");
      a.destructive = true;
      if (auto e = r.string(v, p, "removes", a.removes)) return *e;
    } else if (a.kind == ActionKind::replication_bootstrap) {
      return r.fail(p, "a replication.bootstrap action must say destructive: true and removes");
    } else if (v.HasMember("removes")) {
      return r.fail(p + "/removes", "only a destructive action has removes");
    }
    if (auto e = r.string(v, p, "status", status)) return *e;
    if (status == "blocked") {
      a.blocked = true;
      if (auto e = r.string(v, p, "why_blocked", a.why_blocked)) return *e;
      ++blocked;
    } else if (status == "pending") {
      if (v.HasMember("why_blocked"))
        return r.fail(p + "/why_blocked", "only a blocked action has why_blocked");
    } else {
      return r.fail(p + "/status",
                    "unknown status \"" + status + "\" (expected \"pending\" or \"blocked\")");
    }
    groups.insert(a.group);
    plan.actions.push_back(std::move(a));
  }

  auto skipped = doc.FindMember("skipped");
  if (skipped == doc.MemberEnd()) return r.fail("", "missing member \"skipped\"");
  if (!skipped->value.IsArray()) return r.fail("/skipped", "expected an array");
  for (rapidjson::SizeType i = 0; i < skipped->value.Size(); ++i) {
    const auto& v = skipped->value[i];
    std::string p = "/skipped/" + std::to_string(i);
    if (auto e = r.check_object(v, p, {"group", "kind", "stack", "reason"})) return *e;
    Skipped s;
    if (auto e = r.string(v, p, "group", s.group)) return *e;
    if (auto e = r.kind(v, p, s.kind)) return *e;
    if (auto e = r.string(v, p, "stack", s.stack)) return *e;
    if (auto e = r.string(v, p, "reason", s.reason)) return *e;
    groups.insert(s.group);
    plan.skipped.push_back(std::move(s));
  }

  if (auto bg = doc.FindMember("blocked_groups"); bg != doc.MemberEnd()) {
    if (!bg->value.IsObject()) return r.fail("/blocked_groups", "expected an object");
    for (auto m = bg->value.MemberBegin(); m != bg->value.MemberEnd(); ++m) {
      std::string g(m->name.GetString(), m->name.GetStringLength());
      if (!m->value.IsString()) return r.fail("/blocked_groups/" + g, "expected a string");
      plan.blocked_groups[g].assign(m->value.GetString(), m->value.GetStringLength());
      groups.insert(g);
    }
  }
  if (auto ce = doc.FindMember("config_errors"); ce != doc.MemberEnd()) {
    if (!ce->value.IsObject()) return r.fail("/config_errors", "expected an object");
    for (auto m = ce->value.MemberBegin(); m != ce->value.MemberEnd(); ++m) {
      std::string g(m->name.GetString(), m->name.GetStringLength());
      if (!m->value.IsString()) return r.fail("/config_errors/" + g, "expected a string");
      plan.config_errors[g].assign(m->value.GetString(), m->value.GetStringLength());
    }
  }

  auto summary = doc.FindMember("summary");
  if (summary == doc.MemberEnd()) return r.fail("", "missing member \"summary\"");
  if (auto e = r.check_object(summary->value, "/summary", {"groups", "actions", "blocked"}))
    return *e;
  if (auto e = r.count(summary->value, "/summary", "groups", groups.size())) return *e;
  if (auto e = r.count(summary->value, "/summary", "actions", plan.actions.size())) return *e;
  if (auto e = r.count(summary->value, "/summary", "blocked", blocked)) return *e;
  return plan;
}

}  // namespace stackflip
