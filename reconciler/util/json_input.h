// json_input.h — the one way to read JSON that came from outside the process:
// snapshots, plan files, provider answers (PowerDNS, Cloud 66, command
// drivers).
//
// RapidJSON's default reader recurses once per nesting level, so 200,000 `[`
// overflow the stack; its DOM is also destroyed, copied, written and
// validated recursively. parse_json_input therefore reads with the iterative
// parser (kParseIterativeFlag: its stack is on the heap) AND refuses a
// document nested deeper than `max_depth` while it is being read, before any
// tree exists: whatever is built from the result has bounded depth. The size
// is checked before reading.
//
// Limits, chosen for what stackflip reads: a snapshot nests 6 levels
// (groups/NAME/stacks/NAME/database/role), a plan file 3, a PowerDNS zone 4, a
// Cloud 66 envelope 4 to 5. kMaxJsonDepth = 64 leaves ten times the room and
// is the same limit the YAML reader (yaml_doc.h) applies to configs. Sizes: a
// 10,000-group snapshot is about 3 MiB; callers pick a cap above what they
// expect (drivers' transports are capped too: http_client.h,
// subprocess.h).
//
// Pure function; safe to call from any thread.
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace stackflip {

constexpr int kMaxJsonDepth = 64;
constexpr size_t kDefaultMaxJsonBytes = size_t{8} << 20;  // 8 MiB

struct JsonLimits {
  size_t max_bytes = kDefaultMaxJsonBytes;
  int max_depth = kMaxJsonDepth;  // containers inside containers; 1 = flat object/array
  bool trailing_commas = false;   // accept `[1, 2,]` (snapshots, which people edit)
};

struct JsonInputError {
  size_t offset = 0;  // byte offset into the text where reading stopped
  std::string what;   // e.g. "nesting deeper than 64 levels", "Invalid value."
  // "offset N: what"
  std::string message() const;
};

// Parses `text` into `doc` (replacing what it held). Returns nothing on
// success; on failure `doc` is left null and the error says where and why.
std::optional<JsonInputError> parse_json_input(std::string_view text, rapidjson::Document& doc,
                                               const JsonLimits& limits = {});

// "N bytes" / "8 MiB", for messages about caps.
std::string format_byte_size(size_t bytes);

}  // namespace stackflip
