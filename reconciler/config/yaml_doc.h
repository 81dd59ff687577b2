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

#include <rapidjson/document.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/diagnostics.h"
#include "core/model.h"
#include "util/result.h"

namespace stackflip {

// Where each value (and each mapping member's key) of a document was written:
// line/column pairs keyed by JSON pointer, the pointers stored back to back in
// one string with an open-addressing index over them. A 10,000-group config
// has ~170,000 pointers; a std::map of Marks (each with its own file name)
// cost ~50 MB there, this ~10 MB.
class MarkTable {
 public:
  // Reserves room for the pointers of a text of `text_size` bytes (a guess:
  // pages that stay unused are never touched, so cost no memory).
  void reserve_for(size_t text_size);
  // Adds `pointer` (which must not be in the table yet); returns its slot.
  size_t add(std::string_view pointer);
  void set_value(size_t slot, int line, int column) { entries_[slot].value = {line, column}; }
  void set_key(size_t slot, int line, int column) { entries_[slot].key = {line, column}; }
  // Builds the index; call once after the last add(), before find().
  void seal();

  struct Pos {
    int line = -1, column = -1;  // -1: not recorded
    bool known() const { return line >= 0; }
  };
  struct Entry {
    uint32_t offset, length;
    Pos value, key;
  };
  const Entry* find(std::string_view pointer) const;
  size_t size() const { return entries_.size(); }
  std::string_view pointer(const Entry& e) const {
    return std::string_view(arena_).substr(e.offset, e.length);
  }
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::string arena_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> index_;  // entry number + 1; 0 is an empty slot
};

struct YamlDocument {
  rapidjson::Document json;
  // JSON pointer (RFC 6901, "" is the root) -> marks of the value and, for a
  // mapping member, of its key. Read through mark_of / key_mark_of.
  MarkTable marks;
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
