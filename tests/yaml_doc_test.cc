// yaml_doc_test — parse_yaml builds its document from yaml-cpp events; these
// tests hold it to the behaviour of the YAML::Load + node-walk converter it
// replaced (kept below as the reference), value by value and mark by mark.
#include "config/yaml_doc.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "config/embedded_schema.h"
#include "config/schema_check.h"
#include "config/snapshot.h"
#include "util/digest.h"

using namespace stackflip;

namespace {

// ---------------------------------------------------------------- reference
struct LegacyDoc {
  rapidjson::Document json;
  std::map<std::string, Mark> marks, key_marks;
  std::string file;
};

constexpr int kMaxDepth = 64;

Mark to_mark(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return Mark{file, 0, 0};
  return Mark{file, m.line + 1, m.column + 1};
}
bool is_core_null(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}
std::optional<bool> core_bool(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_core_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!is_digit(s[i])) return false;
  return true;
}
bool is_core_float(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && is_digit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

class Converter {
 public:
  Converter(LegacyDoc& doc, std::vector<Diagnostic>& errors) : doc_(doc), errors_(errors) {}

  void convert(const YAML::Node& node, rapidjson::Value& out, const std::string& ptr, int depth) {
    doc_.marks.emplace(ptr, to_mark(doc_.file, node.Mark()));
    if (depth > kMaxDepth) {
      errors_.push_back({to_mark(doc_.file, node.Mark()), "nesting is too deep"});
      out.SetNull();
      return;
    }
    auto& alloc = doc_.json.GetAllocator();
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out.SetNull();
        return;
      case YAML::NodeType::Scalar:
        scalar(node, out);
        return;
      case YAML::NodeType::Sequence: {
        out.SetArray();
        size_t i = 0;
        for (const auto& item : node) {
          rapidjson::Value v;
          convert(item, v, ptr + "/" + std::to_string(i++), depth + 1);
          out.PushBack(v, alloc);
        }
        return;
      }
      case YAML::NodeType::Map: {
        out.SetObject();
        std::map<std::string, Mark> seen;
        for (const auto& kv : node) {
          const YAML::Node key = kv.first;  // copies: the iterator's pair is a temporary
          Mark key_mark = to_mark(doc_.file, key.Mark());
          if (!key.IsScalar()) {
            errors_.push_back({key_mark, "a mapping key must be a plain name"});
            continue;
          }
          const std::string name = key.Scalar();
          auto [first, inserted] = seen.emplace(name, key_mark);
          if (!inserted) {
            errors_.push_back({key_mark, "duplicate key '" + name + "' (first at line " +
                                             std::to_string(first->second.line) + ":" +
                                             std::to_string(first->second.column) + ")"});
            continue;
          }
          const std::string child = pointer_append(ptr, name);
          doc_.key_marks.emplace(child, key_mark);
          rapidjson::Value k(name.c_str(), static_cast<rapidjson::SizeType>(name.size()), alloc);
          rapidjson::Value v;
          convert(kv.second, v, child, depth + 1);
          // yaml-cpp marks an empty value at the next token (often the next
          // line); the key is where the operator has to look.
          if (kv.second.IsNull()) doc_.marks[child] = key_mark;
          out.AddMember(k, v, alloc);
        }
        return;
      }
    }
  }

 private:
  void scalar(const YAML::Node& node, rapidjson::Value& out) {
    const std::string& s = node.Scalar();
    // "?" is a plain (unquoted, untagged) scalar; anything else stays a string.
    if (node.Tag() == "?") {
      if (is_core_null(s)) {
        out.SetNull();
        return;
      }
      if (auto b = core_bool(s)) {
        out.SetBool(*b);
        return;
      }
      if (is_core_int(s)) {
        errno = 0;
        long long v = std::strtoll(s.c_str(), nullptr, 10);
        if (errno == 0) {
          out.SetInt64(v);
          return;
        }
        errno = 0;
        unsigned long long u = std::strtoull(s.c_str(), nullptr, 10);
        if (errno == 0 && s[0] != '-')
          out.SetUint64(u);
        else
          out.SetDouble(std::strtod(s.c_str(), nullptr));
        return;
      }
      if (is_core_float(s)) {
        out.SetDouble(std::strtod(s.c_str(), nullptr));
        return;
      }
    }
    out.SetString(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), doc_.json.GetAllocator());
  }

  LegacyDoc& doc_;
  std::vector<Diagnostic>& errors_;
};

struct LegacyParse {
  std::optional<LegacyDoc> doc;
  std::vector<Diagnostic> errors;
};

LegacyParse legacy_parse(const std::string& file, const std::string& text) {
  LegacyParse out;
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    Mark m = to_mark(file, e.mark);
    if (m.line == 0) m = Mark{file, 1, 1};
    out.errors.push_back({m, e.msg});
    return out;
  }
  if (docs.size() > 1) {
    out.errors.push_back(
        {to_mark(file, docs[1].Mark()), "only one YAML document per file is allowed"});
    return out;
  }
  const YAML::Node root = docs.empty() ? YAML::Node() : docs[0];
  LegacyDoc doc;
  doc.file = file;
  try {
    Converter(doc, out.errors).convert(root, doc.json, "", 0);
  } catch (const YAML::Exception& e) {
    out.errors.push_back({to_mark(file, e.mark), e.msg});
    return out;
  }
  if (root.Type() == YAML::NodeType::Null || root.Mark().is_null())
    doc.marks[""] = Mark{file, 1, 1};
  out.doc = std::move(doc);
  return out;
}

// ---------------------------------------------------------------- comparison
std::string where(const Mark& m) { return std::to_string(m.line) + ":" + std::to_string(m.column); }

// Same types, values and member order ("" when equal, else where they differ).
std::string diff(const rapidjson::Value& a, const rapidjson::Value& b, const std::string& at) {
  if (a.GetType() != b.GetType()) return at + ": type";
  if (a.IsNumber()) {
    if (a.IsInt64() != b.IsInt64() || a.IsUint64() != b.IsUint64() || a.IsDouble() != b.IsDouble())
      return at + ": number kind";
    if (a.IsDouble()
            ? !(a.GetDouble() == b.GetDouble() ||
                (a.GetDouble() != a.GetDouble() && b.GetDouble() != b.GetDouble()))
            : (a.IsInt64() ? a.GetInt64() != b.GetInt64() : a.GetUint64() != b.GetUint64()))
      return at + ": number";
  }
  if (a.IsString() && std::string(a.GetString(), a.GetStringLength()) !=
                          std::string(b.GetString(), b.GetStringLength()))
    return at + ": string";
  if (a.IsArray()) {
    if (a.Size() != b.Size()) return at + ": size";
    for (rapidjson::SizeType i = 0; i < a.Size(); ++i)
      if (auto d = diff(a[i], b[i], at + "/" + std::to_string(i)); !d.empty()) return d;
  }
  if (a.IsObject()) {
    if (a.MemberCount() != b.MemberCount()) return at + ": member count";
    for (auto i = a.MemberBegin(), j = b.MemberBegin(); i != a.MemberEnd(); ++i, ++j) {
      std::string n = i->name.GetString();
      if (n != j->name.GetString()) return at + ": member name " + n;
      if (auto d = diff(i->value, j->value, at + "/" + n); !d.empty()) return d;
    }
  }
  return "";
}

std::string describe(const std::vector<Diagnostic>& errors) {
  std::string out;
  for (const auto& e : errors) out += format_diagnostic(e) + "\n";
  return out;
}

void expect_same_as_reference(const std::string& text) {
  INFO("input:\n" << text);
  LegacyParse want = legacy_parse("t.yaml", text);
  YamlParse got = parse_yaml("t.yaml", text);
  CHECK(describe(got.errors) == describe(want.errors));
  REQUIRE(got.doc.has_value() == want.doc.has_value());
  if (!want.doc) return;
  CHECK(diff(got.doc->json, want.doc->json, "") == "");
  CHECK(got.doc->marks.size() == want.doc->marks.size());
  size_t keys = 0;
  for (const auto& e : got.doc->marks.entries()) {
    keys += e.key.known();
    CHECK(want.doc->marks.count(std::string(got.doc->marks.pointer(e))));
  }
  CHECK(keys == want.doc->key_marks.size());
  for (const auto& [p, m] : want.doc->marks) {
    INFO("mark of " << p);
    CHECK(where(got.doc->mark_of(p)) == where(m));
  }
  for (const auto& [p, m] : want.doc->key_marks) {
    INFO("key mark of " << p);
    CHECK(where(got.doc->key_mark_of(p)) == where(m));
  }
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> c = {
      "",
      "# only a comment\n",
      "---\n",
      "~\n",
      "null",
      "42",
      "\"quoted\"",
      "a: 1\n",
      "a:\n",
      "a:\nb: 2\n",
      "a: ~\nb: null\nc: NULL\nd: \"null\"\ne: ''\n",
      "a: 60\nb: \"60\"\nc: true\nd: 'true'\ne: ~\nf: off\ng: 1.5\nh: -3\ni: +7\nj: .5\nk: 1e3\nl: "
      "1.e-2\n",
      "big: 9223372036854775808\nbigger: 18446744073709551616\nneg: -9223372036854775809\n",
      "t: [True, FALSE, yes, No, 0x1A, 0o7, .inf, .nan, 1_000]\n",
      "tagged: !!int \"7\"\nstr: !!str 7\nempty_tag: !!str\nlocal: !x 1\nnull_tag: !!null ~\n",
      "a: 1\nb: {x: 1, x: 2}\na: 3\n",
      "a: {x: {y: 1, y: 2}}\na: {x: {y: 1, y: 2}}\n",
      "? [a, b]\n: 1\nc: 2\n",
      "? {k: v, k: w}\n: {d: 1, d: 2}\ne: 3\n",
      "~: 1\nnull: 2\n'': 3\n",
      "1: one\n1.0: two\ntrue: three\n",
      "\"a/b\": 1\n\"c~d\": 2\n\"~/~\": {x: 1}\n",
      "base: &b {x: 1, y: [1, 2]}\nother: *b\nthird: *b\n",
      "s: &s hello\nk: {*s : 1, *s : 2}\n",
      "n: &n\nm: *n\nk: {*n : 1}\n",
      "c: &c {a: 1}\nk: {*c : 1}\n",
      "d: &d {a: 1, a: 2}\ne: *d\n",
      "outer: &o {inner: &i [1, {x: 2}], again: *i, third: {y: *i}}\nuse: *o\n",
      "dup: 1\ndup: &late {z: 1}\nref: *late\n",
      "seq:\n  - a\n  -\n  - ~\n  - [1, [2, [3]]]\n  - {k: }\n",
      "- {a: 1}\n- {a: 1, a: 2}\n- *x\n",
      "a: &x 1\nb: &x 2\nc: *x\n",
      "a: 1\n---\nb: 2\n",
      "a: 1\n---\n",
      "a: 1\n...\n---\n- x\n---\n[\n",
      "a: [1, 2\n",
      "a: {b: 1\n",
      "a: b: c\n",
      "\ta: 1\n",
      "a:\n\t- 1\n",
      "a: 'unterminated\n",
      "{\"a\": [1, 2], \"b\": {\"c\": null}}",
      "{\"a\":1,\"a\":2}",
      "key: |\n  line one\n  line two\nother: >-\n  folded\n  text\n",
      "empty_map: {}\nempty_seq: []\nnested: {a: {}, b: []}\n",
      "merge: &m {a: 1}\nuse:\n  <<: *m\n  b: 2\n",
      "%YAML 1.2\n---\na: 1\n",
      "a: !!binary aGVsbG8=\n",
      "unicode: \"\\u00e9\\t\\\\\"\nkey é: 1\n",
      "a:\n  b:\n    c:\n      d:\n",
  };
  return c;
}

std::string deep(int n, bool maps) {
  std::string s;
  for (int i = 0; i < n; ++i) s += maps ? "{k: " : "[";
  s += "x";
  for (int i = 0; i < n; ++i) s += maps ? "}" : "]";
  return s + "\n";
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("parse_yaml matches the node-tree converter on tricky inputs") {
  for (const auto& text : corpus()) expect_same_as_reference(text);
}

TEST_CASE("parse_yaml matches the node-tree converter at and beyond the nesting limit") {
  for (int n : {63, 64, 65, 66, 80})
    for (bool maps : {true, false}) expect_same_as_reference(deep(n, maps));
  expect_same_as_reference("a: &a " + deep(60, false) + "b: [[[[[[[[*a]]]]]]]]\n");
  expect_same_as_reference("a: &a {x: " + deep(63, true) + "}\nb: {c: {d: *a}}\n");
}

TEST_CASE(
    "parse_yaml matches the node-tree converter on the examples and on damaged copies of them") {
  const std::string dir = std::string(STACKFLIP_SOURCE_DIR) + "/examples/";
  std::vector<std::string> bases;
  for (const char* name : {"selfhosted.yaml", "cloud66.yaml", "command.yaml"})
    bases.push_back(read(dir + name));
  for (const auto& b : bases) expect_same_as_reference(b);
  std::mt19937 rng(20261126);
  const std::string pieces[] = {" ",  "\n", ":",      "- ",   "{",     "}",     "[",  "]",
                                ",",  "\"", "'",      "#",    "~",     "\t",    "  ", "&a ",
                                "*a", "? ", "!!str ", "null", "---\n", "x: 1\n"};
  for (int round = 0; round < 400; ++round) {
    std::string t = bases[rng() % bases.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % (t.size() + 1);
      switch (rng() % 4) {
        case 0:
          t.insert(at, pieces[rng() % std::size(pieces)]);
          break;
        case 1:
          if (at < t.size()) t.erase(at, 1 + rng() % 8);
          break;
        case 2: {  // repeat a line (duplicate keys)
          size_t s = t.rfind('\n', at == 0 ? 0 : at - 1);
          s = s == std::string::npos ? 0 : s + 1;
          size_t n = t.find('\n', s);
          if (n != std::string::npos) t.insert(s, t.substr(s, n - s + 1));
          break;
        }
        default:
          if (at < t.size()) t[at] = pieces[rng() % std::size(pieces)][0];
      }
    }
    // The reference walks alias cycles until its depth limit, one branch at
    // a time: exponential; leave those inputs out.
    if (t.find("&a") != std::string::npos && t.find("*a") != std::string::npos) continue;
    expect_same_as_reference(t);
  }
}

TEST_CASE("an alias inside its own anchor is reported, not expanded forever") {
  YamlParse p = parse_yaml("c.yaml", "a: &a [1, *a, *a]\n");
  REQUIRE_FALSE(p.errors.empty());
  CHECK(format_diagnostic(p.errors[0]) == "c.yaml:1:4: error: nesting is too deep");
}

TEST_CASE("marks fall back to the nearest ancestor and key marks to value marks") {
  auto doc = parse_yaml_document("m.yaml", "a:\n  b: [1, {c: 2}]\n");
  REQUIRE(doc.ok());
  CHECK(where(doc->mark_of("/a/b/1/c")) == "2:14");
  CHECK(where(doc->key_mark_of("/a/b/1/c")) == "2:11");
  CHECK(where(doc->mark_of("/a/b/1/zz/y")) == "2:10");
  CHECK(where(doc->key_mark_of("/a/b/0")) == "2:7");
  CHECK(where(doc->key_mark_of("/a")) == "1:1");
  CHECK(where(doc->mark_of("/a")) == "2:3");
  CHECK(where(doc->mark_of("")) == "1:1");
  CHECK(doc->mark_of("/a").file == "m.yaml");
}

// ---------------------------------------------------------------- snapshots
namespace {

// How parse_snapshot read every snapshot before it had a JSON fast path.
Result<ObservedState> snapshot_the_slow_way(const std::string& name, const std::string& text) {
  auto doc = parse_yaml_document(name, text);
  if (!doc.ok()) return doc.error();
  std::vector<Diagnostic> errors = check_document(*doc, embedded_schema("observed"));
  if (!errors.empty()) return Err(format_diagnostics(errors));
  auto obs = snapshot_from_json(doc->json);
  if (!obs.ok()) {
    const std::string& m = obs.error().message;
    std::string pointer = m.substr(0, m.find(':'));
    return Err(format_diagnostic(Diagnostic{doc->mark_of(pointer), m.substr(m.find(':') + 2)}));
  }
  return obs;
}

std::string outcome(const Result<ObservedState>& r) {
  return r.ok() ? snapshot_to_json(*r) : r.error().message;
}

const std::string kSnapshot =
    "{\"apiVersion\": \"stackflip/v1\", \"observed_at\": \"2026-11-26T18:00:00Z\",\n"
    " \"groups\": {\"shop\": {\n"
    "   \"stacks\": {\n"
    "     \"primary\": {\"reachable\": true, \"maintenance\": false,\n"
    "                 \"database\": {\"role\": \"primary\", \"upstream\": null, \"lsn\": "
    "\"0/3000060\", \"timeline\": 1}},\n"
    "     \"standby\": {\"reachable\": true, \"maintenance\": true,\n"
    "                 \"database\": {\"role\": \"replica\", \"upstream\": \"primary\", \"lsn\": "
    "\"0/3000060\", \"timeline\": 1}}},\n"
    "   \"traffic\": {\"target\": \"primary\", \"ttl\": 60}}}}\n";

std::string snap_edit(const std::string& find, const std::string& replace) {
  std::string t = kSnapshot;
  auto pos = t.find(find);
  REQUIRE(pos != std::string::npos);
  return t.replace(pos, find.size(), replace);
}

}  // namespace

TEST_CASE("snapshots read through the JSON fast path as they did through YAML") {
  const std::string dir = std::string(STACKFLIP_SOURCE_DIR) + "/examples/snapshots/";
  std::vector<std::string> texts = {kSnapshot};
  for (const char* name : {"drift.json", "planned-switch.json", "returned-primary.json",
                           "steady.json", "unplanned-failover.json"})
    texts.push_back(read(dir + name));
  for (const auto& t : texts) {
    INFO(t);
    auto got = parse_snapshot("s.json", t);
    REQUIRE(got.ok());
    CHECK(outcome(got) == outcome(snapshot_the_slow_way("s.json", t)));
  }
}

TEST_CASE("a snapshot the schema or the converter rejects keeps its positioned errors") {
  for (const std::string& t : {
           snap_edit("\"role\": \"primary\"", "\"role\": \"leader\""),
           snap_edit("\"timeline\": 1}},\n     \"standby\"",
                     "\"timeline\": 0}},\n     \"standby\""),
           snap_edit("\"ttl\": 60", "\"ttl\": 60, \"colour\": \"blue\""),
           snap_edit("\"reachable\": true, \"maintenance\": true", "\"maintenance\": true"),
           snap_edit("\"lsn\": \"0/3000060\", \"timeline\": 1}}}",
                     "\"lsn\": \"nope\", \"timeline\": 1}}}"),
           snap_edit("\"apiVersion\": \"stackflip/v1\"", "\"apiVersion\": \"stackflip/v2\""),
           snap_edit("\"ttl\": 60", "\"ttl\": 60, \"ttl\": 30"),
           std::string("[]"),
           std::string(
               "{\"apiVersion\": \"stackflip/v1\", \"groups\": {\"g\": {\"stacks\": {\"a\": "
               "{\"reachable\": true, "
               "\"database\": {\"role\": \"replica\", \"timeline\": 1.5}}}, \"traffic\": {}}}}"),
       }) {
    INFO(t);
    auto got = parse_snapshot("bad.json", t);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().message == snapshot_the_slow_way("bad.json", t).error().message);
    CHECK(got.error().message.rfind("bad.json:", 0) == 0);
  }
}

TEST_CASE(
    "a snapshot that is not JSON is reported with RapidJSON's message at its line and column") {
  auto r = parse_snapshot("x.json", "{\"apiVersion\": \"stackflip/v1\",\n \"groups\": {\"g\" {}}}");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "x.json:2:17: error: Missing a colon after a name of object member.");
  auto empty = parse_snapshot("e.json", "");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message == "e.json:1:1: error: The document is empty.");
  auto bom = parse_snapshot("b.json", "\xEF\xBB\xBF" + kSnapshot);
  CHECK(bom.ok());
}

namespace {
namespace rj = rapidjson;
rj::Value str(const std::string& s, rj::Document::AllocatorType& a) {
  return rj::Value(s.c_str(), static_cast<rj::SizeType>(s.size()), a);
}
// The DOM-based writer that snapshot_to_json and observed_digest replaced.
void old_write_snapshot(const ObservedState& obs, bool volatile_fields, rj::Document& doc) {
  auto& a = doc.GetAllocator();
  doc.SetObject();
  doc.AddMember("apiVersion", "stackflip/v1", a);
  if (volatile_fields && !obs.observed_at.empty())
    doc.AddMember("observed_at", str(obs.observed_at, a), a);
  rj::Value groups(rj::kObjectType);
  for (const auto& [gname, g] : obs.groups) {
    rj::Value stacks(rj::kObjectType);
    for (const auto& [sname, s] : g.stacks) {
      rj::Value sv;
      StackObs copy = s;
      if (!volatile_fields && copy.database) copy.database->lsn.reset();
      stack_obs_to_json(copy, sv, a);
      stacks.AddMember(str(sname, a), sv, a);
    }
    rj::Value t(rj::kObjectType);
    if (!g.traffic.reachable) t.AddMember("reachable", false, a);
    rj::Value target;
    if (g.traffic.target) target = str(*g.traffic.target, a);
    t.AddMember("target", target, a);
    if (g.traffic.ttl) t.AddMember("ttl", *g.traffic.ttl, a);
    if (!g.traffic.content.empty()) t.AddMember("content", str(g.traffic.content, a), a);
    if (!g.traffic.error.empty()) t.AddMember("error", str(g.traffic.error, a), a);
    rj::Value gv(rj::kObjectType);
    gv.AddMember("stacks", stacks, a);
    gv.AddMember("traffic", t, a);
    groups.AddMember(str(gname, a), gv, a);
  }
  doc.AddMember("groups", groups, a);
}

std::string old_to_text(const rj::Document& doc, bool pretty) {
  rj::StringBuffer buf;
  if (pretty) {
    rj::PrettyWriter<rj::StringBuffer> w(buf);
    w.SetIndent(' ', 2);
    doc.Accept(w);
  } else {
    rj::Writer<rj::StringBuffer> w(buf);
    doc.Accept(w);
  }
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

}  // namespace

TEST_CASE("snapshot text and observed digest are byte for byte what the DOM writer produced") {
  const std::string dir = std::string(STACKFLIP_SOURCE_DIR) + "/examples/snapshots/";
  std::vector<ObservedState> states;
  for (const char* name : {"drift.json", "planned-switch.json", "returned-primary.json",
                           "steady.json", "unplanned-failover.json"}) {
    auto r = parse_snapshot(name, read(dir + name));
    REQUIRE(r.ok());
    states.push_back(*r);
  }
  ObservedState odd = states[0];
  GroupObs& g = odd.groups.begin()->second;
  g.traffic.reachable = false;
  g.traffic.target.reset();
  g.traffic.ttl.reset();
  g.traffic.content = "10.0.0.9";
  g.traffic.error = "timeout \"x\"\n";
  StackObs& s = g.stacks.begin()->second;
  s.maintenance.reset();
  s.error = std::string("nul\0inside", 10);
  s.database.reset();
  odd.observed_at.clear();
  states.push_back(odd);
  for (const auto& o : states) {
    for (bool pretty : {false, true}) {
      rj::Document doc;
      old_write_snapshot(o, true, doc);
      CHECK(snapshot_to_json(o, pretty) == old_to_text(doc, pretty));
    }
    rj::Document doc;
    old_write_snapshot(o, false, doc);
    CHECK(observed_digest(o) == sha256_hex(old_to_text(doc, false)));
  }
}

TEST_CASE("alias bombs are refused, not expanded (found by fuzzing)") {
  std::string y = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c)
    y += std::string(1, c) + ": &" + c + " [*" + char(c - 1) + ", *" + char(c - 1) + ", *" +
         char(c - 1) + ", *" + char(c - 1) + ", *" + char(c - 1) + ", *" + char(c - 1) + ", *" +
         char(c - 1) + ", *" + char(c - 1) + ", *" + char(c - 1) + ", *" + char(c - 1) + "]\n";
  YamlParse p = parse_yaml("bomb.yaml", y);
  REQUIRE_FALSE(p.errors.empty());
  CHECK(p.errors[0].message.find("aliases expand to too many values") != std::string::npos);
}

TEST_CASE("a stray comma where a document starts ends, with an error (found by fuzzing)") {
  YamlParse p = parse_yaml("comma.yaml", "a: 1\n---\n,\n");
  CHECK_FALSE(p.errors.empty());
}
