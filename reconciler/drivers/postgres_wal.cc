#include "drivers/postgres_wal.h"

#include <charconv>

#include "core/model.h"

namespace stackflip {

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view skip_blanks(std::string_view s) {
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  return s;
}

// The next run of non-blank characters of `s`, consumed.
std::string_view next_field(std::string_view& s) {
  s = skip_blanks(s);
  size_t n = 0;
  while (n < s.size() && !blank(s[n])) ++n;
  std::string_view field = s.substr(0, n);
  s.remove_prefix(n);
  return field;
}

}  // namespace

uint64_t last_record_end(uint64_t insert_lsn, uint64_t block_size, uint64_t segment_size) {
  if (block_size == 0 || segment_size == 0) return insert_lsn;
  if (insert_lsn % segment_size == kWalLongPageHeader) return insert_lsn - kWalLongPageHeader;
  if (insert_lsn % block_size == kWalShortPageHeader) return insert_lsn - kWalShortPageHeader;
  return insert_lsn;
}

std::optional<int64_t> parse_timeline(std::string_view text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (v < 1 || v > int64_t{0xFFFFFFFF}) return std::nullopt;
  return v;
}

Result<std::vector<TimelineSwitch>> parse_timeline_history(std::string_view text) {
  std::vector<TimelineSwitch> out;
  int line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    line = skip_blanks(line);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = "timeline history line " + std::to_string(line_no);
    auto tli = parse_timeline(next_field(line));
    if (!tli) return Err(where + ": no timeline id");
    auto lsn = parse_lsn(std::string(next_field(line)));
    if (!lsn) return Err(where + ": no switchpoint (X/Y)");
    if (!out.empty() && *tli <= out.back().parent)
      return Err(where + ": timeline ids must increase (" + std::to_string(*tli) + " after " +
                 std::to_string(out.back().parent) + ")");
    out.push_back({*tli, *lsn});
  }
  return out;
}

Result<std::string> divergence(const TimelinePoint& mine, const TimelinePoint& source,
                               std::string_view source_history) {
  if (mine.timeline == source.timeline) return std::string();  // nothing forked
  auto history = parse_timeline_history(source_history);
  if (!history.ok()) return history.error();
  for (const TimelineSwitch& s : *history) {
    if (s.parent != mine.timeline) continue;
    if (!mine.lsn) return Err("cannot read positions to compare timelines");
    if (*mine.lsn <= s.switchpoint) return std::string();
    return mine.stack + " wrote WAL up to " + format_lsn(*mine.lsn) + " on timeline " +
           std::to_string(mine.timeline) + ", past " + format_lsn(s.switchpoint) + " where " +
           source.stack + "'s timeline " + std::to_string(source.timeline) + " forked from it";
  }
  return mine.stack + "'s timeline " + std::to_string(mine.timeline) +
         " is not in the history of " + source.stack + "'s timeline " +
         std::to_string(source.timeline);
}

}  // namespace stackflip
