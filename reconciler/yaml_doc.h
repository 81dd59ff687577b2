// yaml_doc.h — a YAML (or JSON) file as a RapidJSON document, plus where each
// value and key was written.
//
// The document is what the schema validator and the loader read; the marks
// let every later error name file:line:column of the offending key or value.
// Scalars follow the YAML 1.2 core schema: plain `true`/`false`, `null`/`~`,
// integers and floats become JSON booleans, null and numbers; quoted scalars
// stay strings (so `"60"` is a string and `off` is the string "off").
// Aliases are resolved (the alias's values carry the anchor's marks).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "diagnostics.h"
#include "model.h"
#include "result.h"

namespace stackflip {

struct YamlDocument {
  rapidjson::Document json;
  // JSON pointer (RFC 6901, "" is the root) -> mark of the value.
  std::map<std::string, Mark> marks;
  // JSON pointer of a mapping member -> mark of its key.
  std::map<std::string, Mark> key_marks;
  std::string file;

  // Mark of the value at `pointer`, else of its nearest ancestor that has one.
  Mark mark_of(const std::string& pointer) const;
  // Mark of the key of the member at `pointer`, else mark_of(pointer).
  Mark key_mark_of(const std::string& pointer) const;
};

// Appends one reference token to a JSON pointer, escaping '~' and '/'.
std::string pointer_append(const std::string& pointer, std::string_view token);
// The unescaped reference tokens of a JSON pointer ("" has none).
std::vector<std::string> pointer_tokens(const std::string& pointer);

// Everything parse_yaml found: `doc` is absent after a syntax error; duplicate
// keys leave it usable (the first occurrence wins) and are listed in `errors`.
struct YamlParse {
  std::optional<YamlDocument> doc;
  std::vector<Diagnostic> errors;
};
YamlParse parse_yaml(const std::string& file, const std::string& text);

// The document, or all diagnostics joined by '\n' (each via format_diagnostic).
Result<YamlDocument> parse_yaml_document(const std::string& file, const std::string& text);

}  // namespace stackflip
