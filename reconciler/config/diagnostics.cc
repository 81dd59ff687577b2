#include "config/diagnostics.h"

#include <algorithm>

namespace stackflip {

std::string format_diagnostic(const Diagnostic& d) {
  return escape_control(d.mark.file) + ":" + std::to_string(d.mark.line) + ":" +
         std::to_string(d.mark.column) + ": error: " + escape_control(d.message);
}

std::string format_diagnostics(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) {
    if (!out.empty()) out += '\n';
    out += format_diagnostic(d);
  }
  return out;
}

void sort_diagnostics(std::vector<Diagnostic>& ds) {
  std::stable_sort(ds.begin(), ds.end(), [](const Diagnostic& a, const Diagnostic& b) {
    if (a.mark.line != b.mark.line) return a.mark.line < b.mark.line;
    return a.mark.column < b.mark.column;
  });
}

}  // namespace stackflip
