#include "config/failover_edit.h"

#include <algorithm>
#include <vector>

#include "config/loader.h"
#include "config/yaml_doc.h"

namespace stackflip {

namespace {

// Byte offset of 1-based (line, column) in `text`, or npos.
size_t offset_of(const std::string& text, int line, int column) {
  if (line < 1 || column < 1) return std::string::npos;
  size_t at = 0;
  for (int l = 1; l < line; ++l) {
    at = text.find('\n', at);
    if (at == std::string::npos) return std::string::npos;
    ++at;
  }
  const size_t eol = std::min(text.find('\n', at), text.size());
  const size_t off = at + static_cast<size_t>(column - 1);
  return off <= eol ? off : std::string::npos;
}

// The end of the scalar starting at `at`: a quoted one ends after its
// closing quote, a plain one before " #", a flow indicator or the line's end
// (trailing blanks not included).
size_t scalar_end(const std::string& text, size_t at) {
  const size_t eol = std::min(text.find('\n', at), text.size());
  if (at < eol && (text[at] == '"' || text[at] == '\'')) {
    for (size_t i = at + 1; i < eol; ++i) {
      if (text[at] == '"' && text[i] == '\\') {
        ++i;
        continue;
      }
      if (text[i] == text[at]) {
        if (text[at] == '\'' && i + 1 < eol && text[i + 1] == '\'') {
          ++i;
          continue;
        }
        return i + 1;
      }
    }
    return std::string::npos;  // a quoted scalar over several lines: not ours to edit
  }
  size_t end = at;
  while (end < eol && text[end] != ',' && text[end] != '}' && text[end] != ']' &&
         !(text[end] == '#' && end > at && (text[end - 1] == ' ' || text[end - 1] == '\t')))
    ++end;
  while (end > at && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r'))
    --end;
  return end;
}

struct Edit {
  size_t at, len;
  std::string with;
};

}  // namespace

Result<std::string> edit_failover(const std::string& file, const std::string& text,
                                  const std::string& group, const std::string& new_active,
                                  bool allow_data_loss) {
  auto doc = parse_yaml_document(file, text);
  if (!doc.ok()) return doc.error();
  const std::string gp = pointer_append("/groups", group);
  const auto* groups = doc->json.IsObject() && doc->json.HasMember("groups")
                           ? &doc->json["groups"]
                           : nullptr;
  if (!groups || !groups->IsObject() || !groups->HasMember(group.c_str()) ||
      !(*groups)[group.c_str()].IsObject())
    return Err(file + ": no group '" + group + "' to edit");
  const auto& g = (*groups)[group.c_str()];

  const auto* active = doc->marks.find(gp + "/active");
  if (!active || !active->value.known() || !g.HasMember("active"))
    return Err(file + ": group '" + group + "' has no active: to edit");
  std::vector<Edit> edits;
  auto replace_value = [&](const MarkTable::Entry& e, const std::string& with) -> Status {
    const size_t at = offset_of(text, e.value.line, e.value.column);
    const size_t end = at == std::string::npos ? at : scalar_end(text, at);
    if (end == std::string::npos || end <= at)
      return Err(file + ":" + std::to_string(e.value.line) + ":" + std::to_string(e.value.column) +
                 ": cannot find the value to change");
    edits.push_back({at, end - at, with});
    return Status::Ok();
  };
  if (Status s = replace_value(*active, new_active); !s.ok()) return s.error();

  const auto* adl = doc->marks.find(gp + "/allow_data_loss");
  if (allow_data_loss && adl && adl->value.known()) {
    if (Status s = replace_value(*adl, "true"); !s.ok()) return s.error();
  } else if (allow_data_loss) {
    // A new line under `active:`, indented like it: only in a block mapping
    // whose `active:` line holds nothing else.
    const size_t key = offset_of(text, active->key.line, active->key.column);
    const size_t bol = key == std::string::npos ? key : text.rfind('\n', key) + 1;  // npos+1 = 0
    const size_t eol = text.find('\n', key == std::string::npos ? 0 : key);
    const std::string indent = key == std::string::npos ? "" : text.substr(bol, key - bol);
    const size_t value_end = scalar_end(text, offset_of(text, active->value.line, active->value.column));
    std::string rest = value_end == std::string::npos || eol == std::string::npos
                           ? ""
                           : text.substr(value_end, eol - value_end);
    const bool block = key != std::string::npos && eol != std::string::npos &&
                       indent.find_first_not_of(" ") == std::string::npos &&
                       rest.find_first_of(",}]") == std::string::npos;
    if (!block)
      return Err(file + ":" + std::to_string(active->key.line) +
                 ": group '" + group + "' is not written as a block mapping with `active:` on a "
                 "line of its own; add `allow_data_loss: true` by hand");
    edits.push_back({eol + 1, 0, indent + "allow_data_loss: true\n"});
  }

  std::string out = text;
  std::sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.at > b.at; });
  for (const Edit& e : edits) out.replace(e.at, e.len, e.with);

  // The edited text must be the same document with exactly these changes.
  auto again = parse_yaml_document(file, out);
  if (!again.ok()) return Err(file + ": the edited text does not parse: " + again.error().message);
  rapidjson::Document want;
  want.CopyFrom(doc->json, want.GetAllocator());
  auto& wg = want["groups"][group.c_str()];
  wg["active"].SetString(new_active.c_str(), static_cast<rapidjson::SizeType>(new_active.size()),
                         want.GetAllocator());
  if (allow_data_loss) {
    if (wg.HasMember("allow_data_loss"))
      wg["allow_data_loss"].SetBool(true);
    else
      wg.AddMember("allow_data_loss", true, want.GetAllocator());
  }
  if (!(again->json == want))
    return Err(file + ": editing group '" + group + "' would change more than `active:`" +
               (allow_data_loss ? " and `allow_data_loss:`" : "") + "; make the commit by hand");
  LoadResult loaded = load_desired_text(file, out);
  if (!loaded.desired)
    return Err(file + ": the edited config does not load: " +
               (loaded.errors.empty() ? std::string("?") : format_diagnostic(loaded.errors.front())));
  return out;
}

}  // namespace stackflip
