#include "yaml_doc.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace stackflip {

namespace {

constexpr int kMaxDepth = 64;  // also stops alias cycles

// Aliases are expanded into copies, so a few lines of nested aliases
// ("billion laughs": each level lists the previous one ten times) would expand
// to 10^9 values. Without aliases a file has fewer values than bytes, so this
// budget only stops alias bombs, not large files.
size_t value_budget(const std::string& text) { return 2 * text.size() + 10000; }

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

// [-+]?[0-9]+
bool is_core_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!is_digit(s[i])) return false;
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
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
  Converter(YamlDocument& doc, std::vector<Diagnostic>& errors, size_t budget)
      : doc_(doc), errors_(errors), budget_(budget) {}

  void convert(const YAML::Node& node, rapidjson::Value& out, const std::string& ptr, int depth) {
    if (budget_ == 0) {  // reported once, at the value that ran out
      out.SetNull();
      return;
    }
    if (--budget_ == 0) {
      errors_.push_back({to_mark(doc_.file, node.Mark()),
                         "aliases expand to too many values; the file is not loaded"});
      out.SetNull();
      return;
    }
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

  bool exhausted() const { return budget_ == 0; }

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
        if (errno == 0 && s[0] != '-') out.SetUint64(u);
        else out.SetDouble(std::strtod(s.c_str(), nullptr));
        return;
      }
      if (is_core_float(s)) {
        out.SetDouble(std::strtod(s.c_str(), nullptr));
        return;
      }
    }
    out.SetString(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), doc_.json.GetAllocator());
  }

  YamlDocument& doc_;
  std::vector<Diagnostic>& errors_;
  size_t budget_;  // values still allowed (value_budget)
};

}  // namespace

std::string pointer_append(const std::string& pointer, std::string_view token) {
  std::string out = pointer;
  out += '/';
  for (char c : token) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

std::vector<std::string> pointer_tokens(const std::string& pointer) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < pointer.size()) {
    size_t next = pointer.find('/', i + 1);
    std::string raw = pointer.substr(i + 1, next == std::string::npos ? std::string::npos : next - i - 1);
    std::string tok;
    for (size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] == '~' && k + 1 < raw.size()) {
        tok += raw[k + 1] == '1' ? '/' : '~';
        ++k;
      } else {
        tok += raw[k];
      }
    }
    tokens.push_back(tok);
    if (next == std::string::npos) break;
    i = next;
  }
  return tokens;
}

Mark YamlDocument::mark_of(const std::string& pointer) const {
  std::string p = pointer;
  for (;;) {
    auto it = marks.find(p);
    if (it != marks.end()) return it->second;
    if (p.empty()) return Mark{file, 1, 1};
    size_t slash = p.rfind('/');
    p.erase(slash == std::string::npos ? 0 : slash);
  }
}

Mark YamlDocument::key_mark_of(const std::string& pointer) const {
  auto it = key_marks.find(pointer);
  return it != key_marks.end() ? it->second : mark_of(pointer);
}

namespace {

// A second document can only begin after a line starting with "---" or "...".
bool has_document_marker(const std::string& text) {
  for (size_t i = 0; i + 3 <= text.size(); i = text.find('\n', i) == std::string::npos ? text.size() : text.find('\n', i) + 1) {
    if (text.compare(i, 3, "---") != 0 && text.compare(i, 3, "...") != 0) continue;
    if (i + 3 == text.size() || std::strchr(" \t\r\n", text[i + 3])) return true;
  }
  return false;
}

// Records where the first node of each document is; parses, builds nothing.
class DocumentMarks : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> first_nodes;
  void OnDocumentStart(const YAML::Mark&) override { in_doc_ = false; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t, const std::string&) override { node(m); }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& m) {
    if (!in_doc_) first_nodes.push_back(m), in_doc_ = true;
  }
  bool in_doc_ = false;
};

}  // namespace

YamlParse parse_yaml(const std::string& file, const std::string& text) {
  YamlParse out;
  // Not YAML::LoadAll: yaml-cpp 0.7's never returns on some invalid input (a
  // stray ',' where a document starts): its parser stops advancing and LoadAll
  // keeps collecting empty documents. Load takes the first document; a second
  // one is looked for, at most two documents deep, only when a line could
  // start one.
  YAML::Node root;
  try {
    root = YAML::Load(text);
    if (has_document_marker(text)) {
      std::istringstream in(text);
      YAML::Parser parser(in);
      DocumentMarks marks;
      for (int n = 0; n < 2 && parser.HandleNextDocument(marks); ++n) {
      }
      if (marks.first_nodes.size() > 1) {
        out.errors.push_back({to_mark(file, marks.first_nodes[1]), "only one YAML document per file is allowed"});
        return out;
      }
    }
  } catch (const YAML::Exception& e) {
    Mark m = to_mark(file, e.mark);
    if (m.line == 0) m = Mark{file, 1, 1};
    out.errors.push_back({m, e.msg});
    return out;
  }
  YamlDocument doc;
  doc.file = file;
  try {
    Converter converter(doc, out.errors, value_budget(text));
    converter.convert(root, doc.json, "", 0);
    if (converter.exhausted()) return out;  // a partial document would only add noise
  } catch (const YAML::Exception& e) {
    out.errors.push_back({to_mark(file, e.mark), e.msg});
    return out;
  }
  if (root.Type() == YAML::NodeType::Null || root.Mark().is_null()) doc.marks[""] = Mark{file, 1, 1};
  out.doc = std::move(doc);
  return out;
}

Result<YamlDocument> parse_yaml_document(const std::string& file, const std::string& text) {
  YamlParse p = parse_yaml(file, text);
  if (!p.errors.empty() || !p.doc) {
    sort_diagnostics(p.errors);
    return Err(format_diagnostics(p.errors));
  }
  return std::move(*p.doc);
}

}  // namespace stackflip
