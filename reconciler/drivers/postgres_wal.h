// postgres_wal.h — the WAL-position and timeline arithmetic of re-attaching
// a former primary, as pure functions of the values the server reports.
//
// A PostgreSQL timeline history file (pg_wal/0000000N.history) lists, one
// line each, "parentTLI<TAB>switchpoint<TAB>reason": where each ancestor
// timeline of N ended and its child began. A server on timeline T at WAL
// position P can follow a source on timeline N only when T is N, or T is an
// ancestor of N and P is not past the point where N's line forked from T.
// Otherwise it wrote WAL the source never saw: it has diverged and needs
// pg_rewind (or a new base backup).
//
// LSN text ("X/Y") is read and written by parse_lsn / format_lsn (model.h).
// Nothing here does I/O; malformed input is an Error, never an exception.
// Thread safety: all functions are pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace stackflip {

// WAL page header sizes (SizeOfXLogShortPHD / SizeOfXLogLongPHD); the long
// header starts each segment.
inline constexpr uint64_t kWalShortPageHeader = 24;
inline constexpr uint64_t kWalLongPageHeader = 40;
// PostgreSQL's defaults, used when the server does not say.
inline constexpr uint64_t kDefaultWalBlockSize = 8192;
inline constexpr uint64_t kDefaultWalSegmentSize = 16u << 20;

// The end of the last record before a primary's insert position
// `insert_lsn` (pg_current_wal_insert_lsn()). When the last record ends
// exactly at a page boundary, the insert position already points past the
// next page's header (40 bytes at the start of a segment, 24 elsewhere);
// the fork point a promoted standby records is the boundary itself. Any
// other position is returned unchanged, as is every position when
// `block_size` or `segment_size` is 0.
uint64_t last_record_end(uint64_t insert_lsn, uint64_t block_size, uint64_t segment_size);

// A timeline id as the server prints it (decimal, 1 .. 2^32-1); nullopt for
// anything else.
std::optional<int64_t> parse_timeline(std::string_view text);

struct TimelineSwitch {
  int64_t parent = 0;        // the ancestor timeline that ended
  uint64_t switchpoint = 0;  // where it ended: the child's first position
};

// The lines of a timeline history file, in file order. Blank lines and
// lines starting with '#' are skipped (as PostgreSQL does). Error, naming
// the line, when a line has no timeline id and LSN, or when the parent
// timelines are not strictly increasing.
Result<std::vector<TimelineSwitch>> parse_timeline_history(std::string_view text);

// One side of the comparison: a stack, its WAL position (nullopt when the
// server did not say) and its timeline.
struct TimelinePoint {
  std::string stack;
  std::optional<uint64_t> lsn;
  int64_t timeline = 0;
};

// Whether `mine` can follow `source`, whose timeline's history file is
// `source_history` (empty for timeline 1). Returns "" when it can (same
// timeline, or `mine`'s timeline is an ancestor and its position is at or
// before the fork point); otherwise a sentence for the operator saying how it
// diverged ("A wrote WAL up to 0/3000060 on timeline 1, past 0/3000028 where
// B's timeline 2 forked from it", or "A's timeline 3 is not in the history
// of B's timeline 2"). Error when the history is malformed, or names `mine`'s
// timeline but `mine`'s position is unknown.
Result<std::string> divergence(const TimelinePoint& mine, const TimelinePoint& source,
                               std::string_view source_history);

}  // namespace stackflip
