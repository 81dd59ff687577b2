// embedded_schema.h — the JSON schemas of schema/, compiled into the binary.
#pragma once

#include <string_view>

namespace stackflip {

// The text of schema/<name>.schema.json ("stackflip", "observed"), or an
// empty view for an unknown name.
std::string_view embedded_schema(std::string_view name);

}  // namespace stackflip
