#include "config/schema_check.h"

#include <rapidjson/pointer.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <mutex>

namespace stackflip {

namespace {

constexpr int kMaxRepairsPerUnit = 32;

std::string to_string(const rapidjson::Pointer& p) {
  rapidjson::StringBuffer sb;
  p.Stringify(sb);
  return std::string(sb.GetString(), sb.GetSize());
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

// How a value is named in a message: 'ttl', or 'to' item 2. `in_list`:
// the value's parent is a list, so its last token is an index (a mapping key
// can be all digits too; a long one made stoi throw, found by the fuzzer).
std::string field_name(const std::string& pointer, bool in_list) {
  auto t = pointer_tokens(pointer);
  if (t.empty()) return "the top level";
  const std::string& last = t.back();
  size_t index = 0;
  auto [end, ec] = std::from_chars(last.data(), last.data() + last.size(), index);
  if (in_list && t.size() >= 2 && ec == std::errc() && end == last.data() + last.size())
    return "item " + std::to_string(index + 1) + " of '" + t[t.size() - 2] + "'";
  return "'" + last + "'";
}

const char* kind_of(const rapidjson::Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      return "nothing (null)";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "a boolean";
    case rapidjson::kObjectType:
      return "a mapping";
    case rapidjson::kArrayType:
      return "a list";
    case rapidjson::kStringType:
      return "a string";
    case rapidjson::kNumberType:
      return v.IsInt64() || v.IsUint64() ? "an integer" : "a number";
  }
  return "a value";
}

std::string type_phrase(const std::string& t) {
  if (t == "object") return "a mapping";
  if (t == "array") return "a list";
  if (t == "string") return "a string";
  if (t == "integer") return "an integer";
  if (t == "number") return "a number";
  if (t == "boolean") return "a boolean (true or false)";
  if (t == "null") return "nothing";
  return t;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// One unit: a subschema compiled on its own.
struct Unit {
  rapidjson::Document schema;
  std::unique_ptr<rapidjson::SchemaDocument> compiled;
};

struct SchemaSet {
  bool ok = false;
  std::string error;
  Unit root, provider, group, stack, traffic, replication;
};

void build_unit(Unit& u, const rapidjson::Document& full, const char* def,
                std::initializer_list<std::pair<const char*, const char*>> overrides) {
  auto& a = u.schema.GetAllocator();
  if (def) {
    u.schema.CopyFrom(full["definitions"][def], a);
    rapidjson::Value defs;
    defs.CopyFrom(full["definitions"], a);
    u.schema.AddMember("definitions", defs, a);
  } else {
    u.schema.CopyFrom(full, a);
  }
  for (const auto& [prop, json] : overrides) {
    rapidjson::Document o;
    o.Parse(json);
    u.schema["properties"][prop].CopyFrom(o, a);
  }
  u.compiled = std::make_unique<rapidjson::SchemaDocument>(u.schema);
}

std::shared_ptr<const SchemaSet> compile(std::string_view text) {
  auto set = std::make_shared<SchemaSet>();
  rapidjson::Document full;
  full.Parse(text.data(), text.size());
  if (full.HasParseError() || !full.IsObject() || !full.HasMember("definitions")) {
    set->error = "internal error: the stackflip schema does not parse";
    return set;
  }
  for (const char* d : {"provider", "group", "stack", "traffic", "replication"})
    if (!full["definitions"].HasMember(d)) {
      set->error = std::string("internal error: the schema lacks definitions/") + d;
      return set;
    }
  // Nested units are reduced to their shape; the examples are what a missing
  // required key is filled with while the rest of the unit is checked.
  build_unit(set->root, full, nullptr,
             {{"providers", R"({"type":"object","examples":[{}]})"},
              {"groups", R"({"type":"object","examples":[{}]})"}});
  build_unit(set->provider, full, "provider", {});
  build_unit(
      set->group, full, "group",
      {{"stacks", R"({"type":"object","minProperties":2,"examples":[{"a":{},"b":{}}]})"},
       {"traffic",
        R"({"type":["object","array"],"minItems":1,"maxItems":64,"items":{"type":"object"},"examples":[{}]})"},
       {"replication", R"({"type":["string","object"],"examples":["off"]})"}});
  build_unit(set->stack, full, "stack", {});
  build_unit(set->traffic, full, "traffic", {});
  build_unit(set->replication, full, "replication", {});
  set->ok = true;
  return set;
}

std::shared_ptr<const SchemaSet> schema_set(std::string_view text) {
  static std::mutex mu;
  static std::string cached_text;
  static std::shared_ptr<const SchemaSet> cached;
  std::lock_guard<std::mutex> lock(mu);
  if (!cached || cached_text != text) {
    cached = compile(text);
    cached_text = std::string(text);
  }
  return cached;
}

const rapidjson::Value* member(const rapidjson::Value* v, const char* name) {
  if (!v || !v->IsObject()) return nullptr;
  auto it = v->FindMember(name);
  return it == v->MemberEnd() ? nullptr : &it->value;
}

// The value at `pointer` ("" is the root) or nullptr.
rapidjson::Value* at(rapidjson::Value& root, const std::string& pointer) {
  if (pointer.empty()) return &root;
  return rapidjson::Pointer(pointer.c_str()).Get(root);
}

class UnitChecker {
 public:
  UnitChecker(const YamlDocument& doc, const Unit& unit, std::string base, SchemaCheck& out,
              const ExpectedKeys& expected_keys)
      : doc_(doc), unit_(unit), base_(std::move(base)), out_(out), expected_keys_(expected_keys) {}

  void run(const rapidjson::Value& value) {
    {
      rapidjson::SchemaValidator v(*unit_.compiled);
      if (value.Accept(v)) return;
    }
    out_.failed_units.insert(base_);
    work_.CopyFrom(value, work_.GetAllocator());
    for (int round = 0; round < kMaxRepairsPerUnit; ++round) {
      rapidjson::SchemaValidator v(*unit_.compiled);
      if (work_.Accept(v)) return;
      std::string keyword = v.GetInvalidSchemaKeyword();
      std::string rel = to_string(v.GetInvalidDocumentPointer());
      rapidjson::Pointer sp = v.GetInvalidSchemaPointer();
      const rapidjson::Value* schema = sp.Get(unit_.schema);
      if (!schema) schema = &unit_.schema;
      std::string schema_ptr = to_string(sp);
      if (!seen_.insert(keyword + " " + rel).second) return;  // a repair that did not help
      size_t before = out_.errors.size();
      bool repaired = report_and_repair(keyword, rel, *schema, schema_ptr);
      if (round == 0 && out_.errors.size() == before)  // never let a failed unit pass silently
        error(doc_.mark_of(full(rel)),
              "invalid " + describe_pointer(full(rel)) + " (schema keyword '" + keyword + "')");
      if (!repaired) return;
    }
  }

 private:
  void error(const Mark& m, std::string message) { out_.errors.push_back({m, std::move(message)}); }

  std::string full(const std::string& rel) const { return base_ + rel; }

  bool parent_is_list(const std::string& rel) {
    if (rel.empty()) return false;
    const rapidjson::Value* parent = at(work_, rel.substr(0, rel.rfind('/')));
    return parent && parent->IsArray();
  }

  // Removes the member holding `rel` (the nearest mapping member at or above
  // it), remembering it so a `required` error it causes is not reported.
  bool remove(const std::string& rel) {
    std::string p = rel;
    for (;;) {
      if (p.empty()) return false;
      size_t slash = p.rfind('/');
      std::string parent = p.substr(0, slash);
      rapidjson::Value* pv = at(work_, parent);
      if (pv && pv->IsObject()) {
        std::string key = pointer_tokens(p).back();
        pv->RemoveMember(key.c_str());
        removed_.insert(p);
        return true;
      }
      p = parent;
    }
  }

  const rapidjson::Value* resolve(const rapidjson::Value* s) const {
    for (int i = 0; s && i < 4; ++i) {
      const rapidjson::Value* ref = member(s, "$ref");
      if (!ref || !ref->IsString()) break;
      std::string r = ref->GetString();
      if (r.rfind("#", 0) != 0) break;
      s = rapidjson::Pointer(r.substr(1).c_str()).Get(unit_.schema);
    }
    return s;
  }

  const rapidjson::Value* example_of(const rapidjson::Value& schema, const std::string& key) const {
    const rapidjson::Value* prop = member(member(&schema, "properties"), key.c_str());
    for (const rapidjson::Value* s : {prop, resolve(prop)}) {
      const rapidjson::Value* ex = member(s, "examples");
      if (ex && ex->IsArray() && !ex->Empty()) return &(*ex)[0];
    }
    return nullptr;
  }

  // Reports the schema error `keyword` at `rel` as the operator should read
  // it, then repairs the working copy (fills a required key from the
  // schema's example, drops what is wrong) so validation can go on and find
  // the next error. False when it cannot repair: validation stops there.
  bool report_and_repair(const std::string& keyword, const std::string& rel,
                         const rapidjson::Value& schema, const std::string& schema_ptr) {
    rapidjson::Value* bad = at(work_, rel);
    if (!bad) return false;
    if (keyword == "required") return add_required(rel, schema, bad);
    if (keyword == "additionalProperties") return drop_unknown_keys(rel, schema);
    if (keyword == "uniqueItems") return report_repeated_item(rel, bad);
    if (keyword == "minProperties")
      report_too_few_entries(rel, schema, *bad);
    else
      report_bad_value(keyword, rel, schema, schema_ptr, bad);
    return remove(rel);
  }

  bool add_required(const std::string& rel, const rapidjson::Value& schema, rapidjson::Value* bad) {
    const std::string where = describe_pointer(full(rel));
    auto& alloc = work_.GetAllocator();
    const rapidjson::Value* req = member(&schema, "required");
    if (!req || !req->IsArray() || !bad->IsObject()) return false;
    for (const auto& r : req->GetArray()) {
      std::string key = r.GetString();
      if (bad->HasMember(key.c_str())) continue;
      if (!removed_.count(pointer_append(rel, key)))
        error(doc_.key_mark_of(full(rel)), "missing required key '" + key + "' in " + where);
      const rapidjson::Value* ex = example_of(schema, key);
      if (!ex) return false;
      rapidjson::Value k(key.c_str(), alloc), v;
      v.CopyFrom(*ex, alloc);
      bad->AddMember(k, v, alloc);
    }
    return true;
  }

  bool drop_unknown_keys(const std::string& rel, const rapidjson::Value& schema) {
    // RapidJSON points at the first unknown member; report all of them.
    std::string obj_rel = rel.substr(0, rel.rfind('/'));
    rapidjson::Value* obj = at(work_, obj_rel);
    const rapidjson::Value* props = member(&schema, "properties");
    if (!obj || !obj->IsObject()) return false;
    const std::string obj_where = describe_pointer(full(obj_rel));
    std::vector<std::string> expected, unknown;
    if (props && props->IsObject())
      for (const auto& m : props->GetObject()) expected.push_back(m.name.GetString());
    std::sort(expected.begin(), expected.end());
    for (const auto& m : obj->GetObject()) {
      std::string key = m.name.GetString();
      if (!std::binary_search(expected.begin(), expected.end(), key)) unknown.push_back(key);
    }
    if (unknown.empty()) return false;
    if (expected_keys_) expected = expected_keys_(full(obj_rel), expected);
    for (const auto& key : unknown) {
      error(doc_.key_mark_of(full(pointer_append(obj_rel, key))),
            "unknown key '" + key + "' in " + obj_where +
                " (expected one of: " + join(expected, ", ") + ")");
      obj->RemoveMember(key.c_str());
    }
    return true;
  }

  bool report_repeated_item(const std::string& rel, const rapidjson::Value* bad) {
    const Mark mark = doc_.mark_of(full(rel));
    // RapidJSON points at the array or (1.1.0) at the repeated item.
    std::string arr_rel = bad->IsArray() ? rel : rel.substr(0, rel.rfind('/'));
    rapidjson::Value* arr_v = at(work_, arr_rel);
    if (!arr_v || !arr_v->IsArray()) return remove(rel);
    const std::string arr_name = field_name(full(arr_rel), parent_is_list(arr_rel));
    auto arr = arr_v->GetArray();
    for (rapidjson::SizeType j = 1; j < arr.Size(); ++j)
      for (rapidjson::SizeType i = 0; i < j; ++i)
        if (arr[i] == arr[j]) {
          std::string item = arr[j].IsString() ? arr[j].GetString() : to_json(arr[j]);
          error(doc_.mark_of(full(arr_rel + "/" + std::to_string(j))),
                "'" + item + "' is listed twice in " + arr_name);
          return remove(arr_rel);
        }
    error(mark, arr_name + " lists an item twice");
    return remove(arr_rel);
  }

  void report_too_few_entries(const std::string& rel, const rapidjson::Value& schema,
                              const rapidjson::Value& bad) {
    const std::string name = field_name(full(rel), parent_is_list(rel));
    const rapidjson::Value* lim = member(&schema, "minProperties");
    std::string n = bad.IsObject() ? std::to_string(bad.MemberCount()) : "0";
    std::string parent = full(rel).substr(0, full(rel).rfind('/'));
    std::string last = pointer_tokens(rel).empty() ? "" : pointer_tokens(rel).back();
    std::string entries = last == "stacks" ? "stacks" : "entries in " + name;
    error(doc_.key_mark_of(full(rel)), describe_pointer(parent) + " needs at least " +
                                           (lim ? to_json(*lim) : "?") + " " + entries + ", has " +
                                           n);
  }

  // type, enum, pattern, bounds and the rest: one message at the value.
  void report_bad_value(const std::string& keyword, const std::string& rel,
                        const rapidjson::Value& schema, const std::string& schema_ptr,
                        const rapidjson::Value* bad) {
    const std::string where = describe_pointer(full(rel));
    const Mark mark = doc_.mark_of(full(rel));
    const std::string name = field_name(full(rel), parent_is_list(rel));
    if (keyword == "type") {
      std::vector<std::string> want;
      const rapidjson::Value* t = member(&schema, "type");
      if (t && t->IsString()) want.push_back(type_phrase(t->GetString()));
      if (t && t->IsArray())
        for (const auto& x : t->GetArray()) want.push_back(type_phrase(x.GetString()));
      std::string expected = join(want, " or ");
      if (rel.size() > 12 && rel.compare(rel.size() - 12, 12, "/replication") == 0)
        expected = "'off' or a mapping";
      if (rel.empty())
        error(mark, "expected " + expected + " for " + where + ", got " + kind_of(*bad));
      else
        error(mark, "expected " + expected + " for " + name + ", got " + kind_of(*bad));
    } else if (keyword == "enum") {
      std::vector<std::string> vals;
      const rapidjson::Value* e = member(&schema, "enum");
      if (e && e->IsArray())
        for (const auto& x : e->GetArray())
          vals.push_back(x.IsString() ? std::string(x.GetString()) : to_json(x));
      std::string got = bad->IsString() ? "'" + std::string(bad->GetString()) + "'" : kind_of(*bad);
      if (vals.size() == 1)
        error(mark, "expected '" + vals[0] + "' for " + name + ", got " + got);
      else
        error(mark, "expected one of " + join(vals, ", ") + " for " + name + ", got " + got);
    } else if (keyword == "pattern") {
      const rapidjson::Value* hint = member(&schema, "patternErrorMessage");
      std::string h =
          hint && hint->IsString() ? hint->GetString() : "does not match the expected form";
      if (schema_ptr.size() >= 19 &&
          schema_ptr.compare(schema_ptr.size() - 19, 19, "/definitions/secret") == 0)
        error(mark, "a literal secret in " + name + "; " + h);  // never echo the value
      else
        error(mark, "invalid " + name + " '" + std::string(bad->GetString()) + "': " + h);
    } else if (keyword == "minimum" || keyword == "maximum") {
      const rapidjson::Value* lim = member(&schema, keyword.c_str());
      std::string got = bad->IsNumber() ? to_json(*bad) : kind_of(*bad);
      error(mark, name + " must be " + (keyword == "minimum" ? "at least " : "at most ") +
                      (lim ? to_json(*lim) : "?") + ", got " + got);
    } else if (keyword == "minLength") {
      error(mark, name + " must not be empty");
    } else if (keyword == "minItems") {
      error(mark, name + " must not be an empty list");
    } else if (keyword == "maxItems" || keyword == "maxLength") {
      const rapidjson::Value* lim = member(&schema, keyword.c_str());
      std::string got = bad->IsArray()    ? std::to_string(bad->Size()) + " items"
                        : bad->IsString() ? std::to_string(bad->GetStringLength()) + " characters"
                                          : kind_of(*bad);
      error(mark, name + " may have at most " + (lim ? to_json(*lim) : "?") +
                      (keyword == "maxItems" ? " items" : " characters") + ", has " + got);
    } else {
      const rapidjson::Value* d = member(&schema, "description");
      error(mark,
            "invalid value for " + name +
                (d && d->IsString() ? std::string(" (") + d->GetString() + ")" : std::string()));
    }
  }

  const YamlDocument& doc_;
  const Unit& unit_;
  std::string base_;
  SchemaCheck& out_;
  const ExpectedKeys& expected_keys_;
  rapidjson::Document work_;
  std::set<std::string> removed_;
  std::set<std::string> seen_;  // keyword + pointer of each error handled
};

void check_names(const YamlDocument& doc, const rapidjson::Value& map, const std::string& ptr,
                 const char* what, SchemaCheck& out) {
  for (const auto& m : map.GetObject()) {
    std::string name = m.name.GetString();
    if (is_valid_name(name)) continue;
    std::string p = pointer_append(ptr, name);
    out.errors.push_back({doc.key_mark_of(p), std::string("invalid ") + what + " name '" + name +
                                                  "': use lowercase letters, digits, '_' and '-' "
                                                  "(at most 63 characters)"});
    out.failed_units.insert(p);
  }
}

}  // namespace

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

std::string describe_pointer(const std::string& pointer) {
  auto t = pointer_tokens(pointer);
  if (t.empty()) return "the top level";
  if (t[0] == "providers" && t.size() >= 2) {
    std::string p = "provider '" + t[1] + "'";
    return t.size() == 2 ? p : "'" + t.back() + "' of " + p;
  }
  if (t[0] == "groups" && t.size() >= 2) {
    std::string g = "group '" + t[1] + "'";
    if (t.size() == 2) return g;
    if (t[2] == "stacks" && t.size() >= 4) {
      std::string s = "stack '" + t[3] + "'";
      return t.size() == 4 ? s : "'" + t.back() + "' of " + s;
    }
    if (t.size() == 3) return "'" + t[2] + "' of " + g;
    if (t[2] == "traffic" && std::isdigit(static_cast<unsigned char>(t[3][0]))) {
      std::string n = "traffic #" + std::to_string(std::atoi(t[3].c_str()) + 1) + " of " + g;
      return t.size() == 4 ? n : "'" + t.back() + "' in " + n;
    }
    return "'" + t.back() + "' in " + t[2] + " of " + g;
  }
  return "'" + t.back() + "'";
}

SchemaCheck check_schema_units(const YamlDocument& doc, std::string_view schema_json,
                               const ExpectedKeys& expected_keys) {
  SchemaCheck out;
  auto set = schema_set(schema_json);
  if (!set->ok) {
    out.errors.push_back({doc.mark_of(""), set->error});
    out.failed_units.insert("");
    return out;
  }
  const rapidjson::Value& root = doc.json;
  UnitChecker(doc, set->root, "", out, expected_keys).run(root);
  if (!root.IsObject()) return out;

  const rapidjson::Value* providers = member(&root, "providers");
  if (providers && providers->IsObject()) {
    check_names(doc, *providers, "/providers", "provider", out);
    for (const auto& p : providers->GetObject())
      UnitChecker(doc, set->provider, pointer_append("/providers", p.name.GetString()), out,
                  expected_keys)
          .run(p.value);
  }
  const rapidjson::Value* groups = member(&root, "groups");
  if (!groups || !groups->IsObject()) return out;
  check_names(doc, *groups, "/groups", "group", out);
  for (const auto& g : groups->GetObject()) {
    const std::string gp = pointer_append("/groups", g.name.GetString());
    UnitChecker(doc, set->group, gp, out, expected_keys).run(g.value);
    if (!g.value.IsObject()) continue;
    if (const rapidjson::Value* stacks = member(&g.value, "stacks"); stacks && stacks->IsObject()) {
      check_names(doc, *stacks, gp + "/stacks", "stack", out);
      for (const auto& s : stacks->GetObject())
        UnitChecker(doc, set->stack, pointer_append(gp + "/stacks", s.name.GetString()), out,
                    expected_keys)
            .run(s.value);
    }
    if (const rapidjson::Value* traffic = member(&g.value, "traffic");
        traffic && traffic->IsObject()) {
      UnitChecker(doc, set->traffic, gp + "/traffic", out, expected_keys).run(*traffic);
    } else if (traffic && traffic->IsArray() && traffic->Size() <= 64) {
      rapidjson::SizeType i = 0;
      for (const auto& t : traffic->GetArray()) {
        const std::string tp = gp + "/traffic/" + std::to_string(i++);
        if (t.IsObject()) UnitChecker(doc, set->traffic, tp, out, expected_keys).run(t);
      }
    }
    if (const rapidjson::Value* repl = member(&g.value, "replication")) {
      const std::string rp = gp + "/replication";
      if (repl->IsObject()) {
        UnitChecker(doc, set->replication, rp, out, expected_keys).run(*repl);
      } else if (repl->IsString() && std::string(repl->GetString()) != "off") {
        out.errors.push_back(
            {doc.mark_of(rp), "expected 'off' or a mapping for 'replication', got '" +
                                  std::string(repl->GetString()) + "'"});
        out.failed_units.insert(rp);
      }
    }
  }
  return out;
}

std::vector<Diagnostic> check_against_schema(const YamlDocument& doc,
                                             std::string_view schema_json) {
  auto errors = check_schema_units(doc, schema_json).errors;
  sort_diagnostics(errors);
  return errors;
}

std::vector<Diagnostic> check_document(const YamlDocument& doc, std::string_view schema_json) {
  SchemaCheck out;
  rapidjson::Document full;
  full.Parse(schema_json.data(), schema_json.size());
  if (full.HasParseError() || !full.IsObject()) {
    out.errors.push_back({doc.mark_of(""), "internal error: the schema does not parse"});
    return out.errors;
  }
  Unit unit;
  build_unit(unit, full, nullptr, {});
  UnitChecker(doc, unit, "", out, nullptr).run(doc.json);
  sort_diagnostics(out.errors);
  return out.errors;
}

}  // namespace stackflip
