// loader.h — reads stackflip.yaml into a fully defaulted DesiredState.
//
// YAML (yaml_doc.h) → schema (schema_check.h) → semantic checks → DesiredState.
// Every problem found is reported, each at its file:line:column; a file with
// any error yields no DesiredState. Secret references are checked for form
// only, never resolved here. Thread-safe: no shared mutable state besides the
// compiled schema cache.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/diagnostics.h"
#include "core/model.h"

namespace stackflip {

struct LoadResult {
  std::optional<DesiredState> desired;  // present only when `errors` is empty
  std::vector<Diagnostic> errors;       // sorted by position
};

// A config larger than this is refused before it is parsed (a 10,000-group
// config is about 4 MB).
constexpr size_t kMaxConfigBytes = 16u << 20;

// `file` names the source in marks and DesiredState::source. When a host
// policy is installed (host_policy.h) the config is also checked against it.
LoadResult load_desired_text(const std::string& file, const std::string& text);

// Reads `path` (a regular file of at most kMaxConfigBytes); an unreadable
// file is one diagnostic at path:0:0.
LoadResult load_desired_file(const std::string& path);

// The default of provider setting `key` for providers of `type` ("" when it
// has none). Written once, in the loader's table: the loader fills them into
// every loaded provider, and a driver made from a ProviderConfig that was not
// loaded (a Cloud 66 stack's database view, tests) asks here.
std::string provider_default(const std::string& type, const std::string& key);

}  // namespace stackflip
