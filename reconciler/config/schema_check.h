// schema_check.h — validates a YamlDocument against schema/stackflip.schema.json
// and reports every problem, not only the first.
//
// RapidJSON 1.1.0's SchemaValidator stops at the first error and says only
// which keyword failed where. So the document is checked in units — the top
// level, each provider, group, stack, traffic and replication mapping —
// each against its `definitions/...` subschema (with nested units reduced
// to "a mapping"). Inside a unit, after an error the offending member is
// removed from a working copy (or a missing one filled from the schema's
// `examples`) and the unit is validated again, a bounded number of times;
// follow-on errors caused by that repair are not reported. Keyword and
// pointers are turned into messages from the schema (property names, enum
// values, `patternErrorMessage`), each at the mark of the key or value.
//
// Names of providers, groups and stacks (the keys of those maps) are checked
// here too, with the pattern of `definitions/name`.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/diagnostics.h"
#include "config/yaml_doc.h"

namespace stackflip {

std::vector<Diagnostic> check_against_schema(const YamlDocument& doc, std::string_view schema_json);

struct SchemaCheck {
  std::vector<Diagnostic> errors;
  // JSON pointers of the units (e.g. "/groups/shop/stacks/primary") that had
  // at least one error; later checks skip them.
  std::set<std::string> failed_units;
};
// Narrows the keys an "unknown key" message offers for the mapping at
// `pointer` (e.g. to those of a stack's provider type); gets the schema's
// list, returns the list to show.
using ExpectedKeys = std::function<std::vector<std::string>(const std::string& pointer,
                                                            std::vector<std::string> keys)>;

// check_against_schema, also naming the failed units. A schema that does not
// parse is a programming error: reported as one diagnostic at the root.
SchemaCheck check_schema_units(const YamlDocument& doc, std::string_view schema_json,
                               const ExpectedKeys& expected_keys = nullptr);

// Validates the whole document against another schema (e.g. the observed
// snapshot's) as one unit, with the same repair-and-revalidate reporting.
std::vector<Diagnostic> check_document(const YamlDocument& doc, std::string_view schema_json);

// "stack 'primary'", "traffic of group 'shop'", "the top level", ... for a
// JSON pointer into a stackflip document; used to phrase messages.
std::string describe_pointer(const std::string& pointer);

// True when `name` fits definitions/name: ^[a-z0-9][a-z0-9_-]{0,62}$.
bool is_valid_name(std::string_view name);

}  // namespace stackflip
