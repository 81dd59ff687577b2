// diagnostics.h — one problem found in an input file, with where it is.
//
// The loader reports every problem it finds, each as a Diagnostic; callers
// print them with format_diagnostic() in the compiler style editors and CI
// logs understand ("file:line:col: error: message").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "util/strings.h"  // escape_control

namespace stackflip {

struct Diagnostic {
  Mark mark;  // 1-based line/column; 0 when the position is unknown
  std::string message;
};

// "file:line:col: error: message", with control characters escaped
// (escape_control): key names and values come from the input, and a raw ESC
// in them would drive the operator's terminal.
std::string format_diagnostic(const Diagnostic& d);

// All diagnostics formatted, one per line (no trailing newline).
std::string format_diagnostics(const std::vector<Diagnostic>& ds);

// Orders by file position (line, then column); keeps the order of equal marks.
void sort_diagnostics(std::vector<Diagnostic>& ds);

}  // namespace stackflip
