#include "config/snapshot.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <mutex>

#include "config/diagnostics.h"
#include "config/embedded_schema.h"
#include "config/schema_check.h"
#include "config/yaml_doc.h"
#include "core/planner.h"
#include "util/digest.h"
#include "util/json_input.h"

namespace stackflip {

namespace rj = rapidjson;

namespace {

// Pointers hold key names from the input (a command's answer, too): escaped.
Error at(const std::string& where, const std::string& what) {
  return Err(escape_control((where.empty() ? std::string("/") : where) + ": " + what));
}

const rj::Value* member(const rj::Value& v, const char* key) {
  auto it = v.FindMember(key);
  return it == v.MemberEnd() ? nullptr : &it->value;
}

rj::Value str(const std::string& s, rj::Document::AllocatorType& a) {
  return rj::Value(s.c_str(), static_cast<rj::SizeType>(s.size()), a);
}

// The schema forbids unknown keys; the same holds for input that skipped it
// (a command driver's output).
std::optional<Error> unknown_key(const rj::Value& v, const std::string& where,
                                 std::initializer_list<const char*> known) {
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    bool ok = false;
    for (const char* k : known) ok |= m->name == k;
    if (!ok) return at(where + "/" + m->name.GetString(), "unknown field");
  }
  return std::nullopt;
}

Result<DatabaseObs> database_from_json(const rj::Value& v, const std::string& where) {
  if (!v.IsObject()) return at(where, "expected an object");
  if (auto e = unknown_key(v, where,
                           {"role", "upstream", "lsn", "timeline", "streaming", "system_id",
                            "started_at", "databases", "cannot_follow"}))
    return *e;
  DatabaseObs db;
  const rj::Value* role = member(v, "role");
  if (!role || !role->IsString())
    return at(where + "/role", "expected primary, replica or unknown");
  auto r = parse_role(role->GetString());
  if (!r) return at(where + "/role", "expected primary, replica or unknown");
  db.role = *r;
  if (const rj::Value* up = member(v, "upstream")) {
    if (up->IsString())
      db.upstream = up->GetString();
    else if (!up->IsNull())
      return at(where + "/upstream", "expected a stack name or null");
  }
  if (const rj::Value* l = member(v, "lsn")) {
    auto lsn = l->IsString() ? parse_lsn(l->GetString()) : std::nullopt;
    if (!lsn) return at(where + "/lsn", "expected an LSN like 0/3000060");
    db.lsn = lsn;
  }
  if (const rj::Value* t = member(v, "timeline")) {
    if (!t->IsInt64() || t->GetInt64() < 1)
      return at(where + "/timeline", "expected an integer >= 1");
    db.timeline = t->GetInt64();
  }
  if (const rj::Value* st = member(v, "streaming")) {
    if (!st->IsBool()) return at(where + "/streaming", "expected true or false");
    db.streaming = st->GetBool();
  }
  for (auto [key, field] : {std::pair{"system_id", &db.system_id}, {"started_at", &db.started_at}})
    if (const rj::Value* id = member(v, key)) {
      if (!id->IsString() || id->GetStringLength() == 0 || id->GetStringLength() > 64)
        return at(where + "/" + key, "expected a non-empty string of at most 64 characters");
      *field = id->GetString();
    }
  if (const rj::Value* ds = member(v, "databases")) {
    if (!ds->IsArray() || ds->Size() > DatabaseObs::kMaxDatabasesListed + 1)
      return at(where + "/databases", "expected a list of at most 17 {name, bytes}");
    for (rj::SizeType i = 0; i < ds->Size(); ++i) {
      const rj::Value& x = (*ds)[i];
      const std::string w = where + "/databases/" + std::to_string(i);
      const rj::Value* n = member(x, "name");
      const rj::Value* b = member(x, "bytes");
      if (!x.IsObject() || !n || !n->IsString() || n->GetStringLength() > 256 || !b ||
          !b->IsUint64())
        return at(w, "expected {\"name\": text of at most 256 bytes, \"bytes\": integer}");
      if (auto e = unknown_key(x, w, {"name", "bytes"})) return *e;
      db.databases.push_back({n->GetString(), b->GetUint64()});
    }
  }
  if (const rj::Value* c = member(v, "cannot_follow")) {
    if (!c->IsString() || c->GetStringLength() > 4096)
      return at(where + "/cannot_follow", "expected a string of at most 4096 bytes");
    db.cannot_follow = c->GetString();
  }
  return db;
}

// Lenient as before (the schema has checked the shape when it ran); records
// and per-address parts are bounded as the schema bounds them, and a part
// has no parts of its own.
TrafficObs traffic_from_json(const rj::Value& v, bool part = false) {
  TrafficObs t;
  if (const rj::Value* r = member(v, "reachable"); r && r->IsBool()) t.reachable = r->GetBool();
  if (const rj::Value* x = member(v, "target"); x && x->IsString()) t.target = x->GetString();
  if (const rj::Value* x = member(v, "ttl"); x && x->IsInt()) t.ttl = x->GetInt();
  if (const rj::Value* x = member(v, "paused"); x && x->IsBool()) t.paused = x->GetBool();
  if (const rj::Value* x = member(v, "content"); x && x->IsString()) t.content = x->GetString();
  if (const rj::Value* x = member(v, "error"); x && x->IsString()) t.error = x->GetString();
  if (const rj::Value* x = member(v, "config_error"); x && x->IsBool())
    t.config_error = x->GetBool();
  if (const rj::Value* x = member(v, "name"); x && x->IsString()) t.name = x->GetString();
  if (const rj::Value* x = member(v, "blocker"); x && x->IsString()) t.blocker = x->GetString();
  if (const rj::Value* x = member(v, "absent"); x && x->IsString()) {
    const std::string a = x->GetString();
    if (a == "record" || a == "zone") t.absent = a;  // the schema's enum; anything else: exists
  }
  if (const rj::Value* rs = member(v, "records"); rs && rs->IsArray())
    for (const auto& r : rs->GetArray()) {
      if (t.records.size() >= 1000) break;
      const rj::Value* c = member(r, "content");
      if (!c || !c->IsString()) continue;
      TrafficRecord rec;
      rec.content = c->GetString();
      if (const rj::Value* st = member(r, "stack"); st && st->IsString())
        rec.stack = st->GetString();
      if (const rj::Value* d = member(r, "disabled"); d && d->IsBool()) rec.disabled = d->GetBool();
      t.records.push_back(std::move(rec));
    }
  if (const rj::Value* ps = member(v, "addresses"); ps && ps->IsArray() && !part)
    for (const auto& p : ps->GetArray()) {
      if (t.parts.size() >= 64) break;
      if (p.IsObject()) t.parts.push_back(traffic_from_json(p, true));
    }
  return t;
}

}  // namespace

Result<StackObs> stack_obs_from_json(const rj::Value& v, const std::string& where) {
  if (!v.IsObject()) return at(where, "expected an object");
  if (auto e = unknown_key(v, where,
                           {"reachable", "maintenance", "error", "config_error", "health_error",
                            "attach_by_hand", "database", "bootstrap_phase"}))
    return *e;
  StackObs s;
  const rj::Value* r = member(v, "reachable");
  if (!r || !r->IsBool()) return at(where + "/reachable", "expected true or false");
  s.reachable = r->GetBool();
  if (const rj::Value* m = member(v, "maintenance")) {
    if (!m->IsBool()) return at(where + "/maintenance", "expected true or false");
    s.maintenance = m->GetBool();
  }
  if (const rj::Value* e = member(v, "error")) {
    if (!e->IsString()) return at(where + "/error", "expected a string");
    s.error = e->GetString();
  }
  if (const rj::Value* c = member(v, "config_error")) {
    if (!c->IsBool()) return at(where + "/config_error", "expected true or false");
    s.config_error = c->GetBool();
  }
  if (const rj::Value* h = member(v, "health_error")) {
    if (!h->IsString()) return at(where + "/health_error", "expected a string");
    s.health_error = h->GetString();
  }
  if (const rj::Value* h = member(v, "attach_by_hand")) {
    if (!h->IsString() || h->GetStringLength() > 4096)
      return at(where + "/attach_by_hand", "expected a string of at most 4096 characters");
    s.attach_by_hand = h->GetString();
  }
  if (const rj::Value* b = member(v, "bootstrap_phase")) {
    if (!b->IsString() || b->GetStringLength() == 0 || b->GetStringLength() > 64)
      return at(where + "/bootstrap_phase", "expected a phase such as \"copy\"");
    s.bootstrap_phase = b->GetString();
  }
  if (const rj::Value* d = member(v, "database")) {
    auto db = database_from_json(*d, where + "/database");
    if (!db.ok()) return db.error();
    s.database = *db;
  }
  return s;
}

void stack_obs_to_json(const StackObs& s, rj::Value& out, rj::Document::AllocatorType& a) {
  out.SetObject();
  out.AddMember("reachable", s.reachable, a);
  if (s.maintenance) out.AddMember("maintenance", *s.maintenance, a);
  if (!s.error.empty()) out.AddMember("error", str(s.error, a), a);
  if (s.config_error) out.AddMember("config_error", true, a);
  if (!s.health_error.empty()) out.AddMember("health_error", str(s.health_error, a), a);
  if (!s.attach_by_hand.empty()) out.AddMember("attach_by_hand", str(s.attach_by_hand, a), a);
  if (s.database) {
    rj::Value db(rj::kObjectType);
    db.AddMember("role", rj::StringRef(to_string(s.database->role)), a);
    rj::Value up;
    if (s.database->upstream) up = str(*s.database->upstream, a);
    db.AddMember("upstream", up, a);
    if (s.database->lsn) db.AddMember("lsn", str(format_lsn(*s.database->lsn), a), a);
    if (s.database->timeline)
      db.AddMember("timeline", static_cast<int64_t>(*s.database->timeline), a);
    if (s.database->streaming) db.AddMember("streaming", *s.database->streaming, a);
    if (s.database->system_id) db.AddMember("system_id", str(*s.database->system_id, a), a);
    if (s.database->started_at) db.AddMember("started_at", str(*s.database->started_at, a), a);
    if (!s.database->databases.empty()) {
      rj::Value list(rj::kArrayType);
      for (const auto& x : s.database->databases) {
        rj::Value one(rj::kObjectType);
        one.AddMember("name", str(x.name, a), a);
        one.AddMember("bytes", static_cast<uint64_t>(x.bytes), a);
        list.PushBack(one, a);
      }
      db.AddMember("databases", list, a);
    }
    if (s.database->cannot_follow)
      db.AddMember("cannot_follow", str(*s.database->cannot_follow, a), a);
    out.AddMember("database", db, a);
  }
  if (s.bootstrap_phase) out.AddMember("bootstrap_phase", str(*s.bootstrap_phase, a), a);
}

Result<ObservedState> snapshot_from_json(const rj::Value& doc) {
  if (!doc.IsObject()) return at("", "expected an object");
  ObservedState obs;
  if (const rj::Value* t = member(doc, "observed_at"); t && t->IsString())
    obs.observed_at = t->GetString();
  const rj::Value* groups = member(doc, "groups");
  if (!groups || !groups->IsObject()) return at("/groups", "expected an object of groups");
  for (auto g = groups->MemberBegin(); g != groups->MemberEnd(); ++g) {
    std::string gname = g->name.GetString(), where = "/groups/" + gname;
    if (!g->value.IsObject()) return at(where, "expected an object");
    GroupObs go;
    const rj::Value* stacks = member(g->value, "stacks");
    if (!stacks || !stacks->IsObject())
      return at(where + "/stacks", "expected an object of stacks");
    for (auto s = stacks->MemberBegin(); s != stacks->MemberEnd(); ++s) {
      auto so = stack_obs_from_json(s->value, where + "/stacks/" + s->name.GetString());
      if (!so.ok()) return so.error();
      go.stacks[s->name.GetString()] = *so;
    }
    if (const rj::Value* t = member(g->value, "traffic"); t && t->IsObject())
      go.traffic = traffic_from_json(*t);
    obs.groups[gname] = std::move(go);
  }
  return obs;
}

namespace {

template <typename W>
void write_str(W& w, const std::string& s) {
  w.String(s.data(), static_cast<rj::SizeType>(s.size()));
}

// One traffic object: the group's combination, or one address of it.
template <typename W>
void write_traffic(W& w, const TrafficObs& t) {
  w.StartObject();
  if (!t.name.empty()) {
    w.Key("name");
    write_str(w, t.name);
  }
  if (!t.reachable) {
    w.Key("reachable");
    w.Bool(false);
  }
  w.Key("target");
  if (t.target)
    write_str(w, *t.target);
  else
    w.Null();
  if (t.ttl) {
    w.Key("ttl");
    w.Int(*t.ttl);
  }
  if (t.paused) {
    w.Key("paused");
    w.Bool(*t.paused);
  }
  if (!t.content.empty()) {
    w.Key("content");
    write_str(w, t.content);
  }
  if (!t.error.empty()) {
    w.Key("error");
    write_str(w, t.error);
  }
  if (t.config_error) {
    w.Key("config_error");
    w.Bool(true);
  }
  if (!t.blocker.empty()) {
    w.Key("blocker");
    write_str(w, t.blocker);
  }
  if (!t.absent.empty()) {
    w.Key("absent");
    write_str(w, t.absent);
  }
  if (!t.records.empty()) {
    w.Key("records");
    w.StartArray();
    for (const TrafficRecord& r : t.records) {
      w.StartObject();
      w.Key("content");
      write_str(w, r.content);
      w.Key("stack");
      if (r.stack)
        write_str(w, *r.stack);
      else
        w.Null();
      if (r.disabled) {
        w.Key("disabled");
        w.Bool(true);
      }
      w.EndObject();
    }
    w.EndArray();
  }
  if (t.parts.size() > 1) {  // one address: the combination says it all
    w.Key("addresses");
    w.StartArray();
    for (const TrafficObs& p : t.parts) write_traffic(w, p);
    w.EndArray();
  }
  w.EndObject();
}

// The same member order and values as stack_obs_to_json; `lsn` false leaves
// the position out.
template <typename W>
void write_stack(W& w, const StackObs& s, bool lsn) {
  w.StartObject();
  w.Key("reachable");
  w.Bool(s.reachable);
  if (s.maintenance) {
    w.Key("maintenance");
    w.Bool(*s.maintenance);
  }
  if (!s.error.empty()) {
    w.Key("error");
    write_str(w, s.error);
  }
  if (s.config_error) {
    w.Key("config_error");
    w.Bool(true);
  }
  if (!s.health_error.empty()) {
    w.Key("health_error");
    write_str(w, s.health_error);
  }
  if (!s.attach_by_hand.empty()) {
    w.Key("attach_by_hand");
    write_str(w, s.attach_by_hand);
  }
  if (s.database) {
    w.Key("database");
    w.StartObject();
    w.Key("role");
    w.String(to_string(s.database->role));
    w.Key("upstream");
    if (s.database->upstream)
      write_str(w, *s.database->upstream);
    else
      w.Null();
    if (lsn && s.database->lsn) {
      w.Key("lsn");
      write_str(w, format_lsn(*s.database->lsn));
    }
    if (s.database->timeline) {
      w.Key("timeline");
      w.Int64(static_cast<int64_t>(*s.database->timeline));
    }
    // Which server answered (issue 11). Part of the digest: a restarted
    // server is another observation.
    if (s.database->system_id) {
      w.Key("system_id");
      write_str(w, *s.database->system_id);
    }
    if (s.database->started_at) {
      w.Key("started_at");
      write_str(w, *s.database->started_at);
    }
    // Issue 17. Sizes change with every write, like positions: out of the
    // digest with them.
    if (lsn && !s.database->databases.empty()) {
      w.Key("databases");
      w.StartArray();
      for (const auto& x : s.database->databases) {
        w.StartObject();
        w.Key("name");
        write_str(w, x.name);
        w.Key("bytes");
        w.Uint64(x.bytes);
        w.EndObject();
      }
      w.EndArray();
    }
    if (s.database->cannot_follow) {
      w.Key("cannot_follow");
      write_str(w, *s.database->cannot_follow);
    }
    w.EndObject();
  }
  if (s.bootstrap_phase) {
    w.Key("bootstrap_phase");
    write_str(w, *s.bootstrap_phase);
  }
  w.EndObject();
}

// `volatile_fields` are observed_at and LSNs: they change with every write and
// are left out of the digest (apply re-checks positions in its guards).
// Written straight to the writer: for 10,000 groups a DOM in between cost
// more than the planning itself.
template <typename W>
void write_snapshot(W& w, const ObservedState& obs, bool volatile_fields) {
  w.StartObject();
  w.Key("apiVersion");
  w.String("stackflip/v1");
  if (volatile_fields && !obs.observed_at.empty()) {
    w.Key("observed_at");
    write_str(w, obs.observed_at);
  }
  w.Key("groups");
  w.StartObject();
  for (const auto& [gname, g] : obs.groups) {
    write_str(w, gname);
    w.StartObject();
    w.Key("stacks");
    w.StartObject();
    for (const auto& [sname, s] : g.stacks) {
      write_str(w, sname);
      write_stack(w, s, volatile_fields);
    }
    w.EndObject();
    w.Key("traffic");
    write_traffic(w, g.traffic);
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
}

std::string to_text(const ObservedState& obs, bool volatile_fields, bool pretty) {
  rj::StringBuffer buf;
  if (pretty) {
    rj::PrettyWriter<rj::StringBuffer> w(buf);
    w.SetIndent(' ', 2);
    write_snapshot(w, obs, volatile_fields);
  } else {
    rj::Writer<rj::StringBuffer> w(buf);
    write_snapshot(w, obs, volatile_fields);
  }
  std::string out;
  out.reserve(buf.GetSize() + 1);
  out.append(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}
}  // namespace

std::string snapshot_to_json(const ObservedState& obs, bool pretty) {
  return to_text(obs, true, pretty);
}

std::string observed_digest(const ObservedState& obs) {
  return sha256_hex(to_text(obs, false, false));
}

Plan make_plan_with_digest(const DesiredState& desired, const ObservedState& observed) {
  Plan plan = make_plan(desired, observed);
  plan.observed_digest = observed_digest(observed);
  return plan;
}

namespace {

// The observed schema, compiled once. RapidJSON 1.1.0's pattern matcher keeps
// its state in the compiled schema, so validations take turns.
struct ObservedSchema {
  rj::Document doc;
  std::unique_ptr<rj::SchemaDocument> compiled;
  std::mutex mu;
  ObservedSchema() {
    std::string_view text = embedded_schema("observed");
    doc.Parse(text.data(), text.size());
    if (!doc.HasParseError() && doc.IsObject())
      compiled = std::make_unique<rj::SchemaDocument>(doc);
  }
};

ObservedSchema& observed_schema() {
  static ObservedSchema schema;
  return schema;
}

// True when some object has a member name twice: the YAML reading reports
// those, RapidJSON keeps both. Iterative (an explicit stack of values still
// to visit), so the check itself has no depth to overflow.
bool has_duplicate_keys(const rj::Value& root) {
  std::vector<const rj::Value*> todo{&root};
  std::vector<std::string_view> names;
  while (!todo.empty()) {
    const rj::Value& v = *todo.back();
    todo.pop_back();
    if (v.IsArray()) {
      for (const auto& x : v.GetArray()) todo.push_back(&x);
      continue;
    }
    if (!v.IsObject()) continue;
    names.clear();
    for (const auto& m : v.GetObject()) {
      names.emplace_back(m.name.GetString(), m.name.GetStringLength());
      todo.push_back(&m.value);
    }
    std::sort(names.begin(), names.end());
    if (std::adjacent_find(names.begin(), names.end()) != names.end()) return true;
  }
  return false;
}

// "name:line:col: error: message" for a byte offset into `text`.
Error syntax_error(const std::string& name, const std::string& text, size_t offset,
                   const char* message) {
  offset = std::min(offset, text.size());
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i)
    if (text[i] == '\n') ++line, line_start = i + 1;
  return Err(format_diagnostic(
      Diagnostic{Mark{name, line, static_cast<int>(offset - line_start) + 1}, message}));
}

// The reading with marks: yaml-cpp, the unit checker of schema_check.h.
// Slow, but it names file:line:col for every problem.
Result<ObservedState> parse_snapshot_with_marks(const std::string& name, const std::string& text) {
  auto doc = parse_yaml_document(name, text);
  if (!doc.ok()) return doc.error();
  std::vector<Diagnostic> errors = check_document(*doc, embedded_schema("observed"));
  if (!errors.empty()) return Err(format_diagnostics(errors));
  auto obs = snapshot_from_json(doc->json);
  if (!obs.ok()) {
    // The schema let it through, so this is a cross-field problem; point at
    // the nearest mark of the pointer the message starts with.
    const std::string& m = obs.error().message;
    std::string pointer = m.substr(0, m.find(':'));
    return Err(format_diagnostic(Diagnostic{doc->mark_of(pointer), m.substr(m.find(':') + 2)}));
  }
  return obs;
}

}  // namespace

// Snapshots are JSON: RapidJSON reads them, the compiled observed schema
// validates them, and only a document with a problem is read again the slow
// way (parse_snapshot_with_marks) so that every error has its position.
Result<ObservedState> parse_snapshot(const std::string& name, const std::string& text) {
  size_t bom = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  rj::Document doc;
  JsonLimits limits;
  limits.max_bytes = kMaxSnapshotBytes;
  limits.trailing_commas = true;
  if (auto e = parse_json_input(std::string_view(text).substr(bom), doc, limits))
    return syntax_error(name, text, e->offset + bom, e->what.c_str());
  ObservedSchema& schema = observed_schema();
  bool valid = false;
  if (schema.compiled && !has_duplicate_keys(doc)) {
    std::lock_guard<std::mutex> lock(schema.mu);
    rj::SchemaValidator validator(*schema.compiled);
    valid = doc.Accept(validator);
  }
  if (valid) {
    auto obs = snapshot_from_json(doc);
    if (obs.ok()) return obs;
  }
  return parse_snapshot_with_marks(name, text);
}

Result<ObservedState> read_snapshot(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Err(path + ":1:1: error: cannot read the snapshot file");
  // One byte past the cap is enough for parse_snapshot to refuse it; a
  // snapshot named /dev/zero must not fill the memory first.
  std::string text;
  char chunk[1 << 16];
  while (text.size() <= kMaxSnapshotBytes && in.read(chunk, sizeof chunk).gcount() > 0)
    text.append(chunk, static_cast<size_t>(in.gcount()));
  if (in.bad()) return Err(path + ":1:1: error: cannot read the snapshot file");
  return parse_snapshot(path, text);
}

}  // namespace stackflip
