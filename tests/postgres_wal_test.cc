// The timeline and WAL-position arithmetic of re-attaching a former primary
// (drivers/postgres_wal.h), issue 12: pure, so tested here by tables.
#include "drivers/postgres_wal.h"

#include <catch2/catch.hpp>

#include "core/model.h"

using namespace stackflip;

namespace {
constexpr uint64_t kBlock = 8192;
constexpr uint64_t kSegment = 16u << 20;
uint64_t lsn(const char* text) { return parse_lsn(text).value(); }
}  // namespace

TEST_CASE(
    "issue 12: an insert position just past a segment's long page header means the boundary") {
  CHECK(last_record_end(kSegment + 40, kBlock, kSegment) == kSegment);
  CHECK(last_record_end(3 * kSegment + 40, kBlock, kSegment) == 3 * kSegment);
  CHECK(last_record_end(40, kBlock, kSegment) == 0);  // the very first segment
  CHECK(format_lsn(last_record_end(lsn("1/00000028"), kBlock, kSegment)) == "1/0");
}

TEST_CASE("issue 12: an insert position just past a page's short header means the boundary") {
  CHECK(last_record_end(kSegment + kBlock + 24, kBlock, kSegment) == kSegment + kBlock);
  CHECK(last_record_end(5 * kBlock + 24, kBlock, kSegment) == 5 * kBlock);
  // Not a segment start: 40 bytes into a later page is an ordinary position.
  CHECK(last_record_end(kSegment + kBlock + 40, kBlock, kSegment) == kSegment + kBlock + 40);
  // A segment's first page has the long header: 24 bytes into it is mid-header,
  // but the arithmetic (as the old driver's) treats it as a short one.
  CHECK(last_record_end(kSegment + 24, kBlock, kSegment) == kSegment);
}

TEST_CASE("issue 12: positions not just past a page header are the end of the last record") {
  for (uint64_t p :
       {uint64_t{0}, kSegment, kSegment + kBlock, kSegment + 41, kSegment + kBlock + 23,
        kSegment + kBlock + 25, lsn("0/3000060"), lsn("FFFFFFFF/FFFFFFFF")})
    CHECK(last_record_end(p, kBlock, kSegment) == p);
}

TEST_CASE("issue 12: page-header arithmetic follows the server's block and segment sizes") {
  const uint64_t block = 4096, segment = 1u << 20;
  CHECK(last_record_end(segment + 40, block, segment) == segment);
  CHECK(last_record_end(segment + block + 24, block, segment) == segment + block);
  CHECK(last_record_end(8192 + 24, block, segment) == 8192);
  // Unknown sizes (0): the position is taken as it is.
  CHECK(last_record_end(kSegment + 40, 0, kSegment) == kSegment + 40);
  CHECK(last_record_end(kSegment + 40, kBlock, 0) == kSegment + 40);
}

TEST_CASE(
    "issue 12: a timeline id is a decimal number from 1 to 2^32-1, anything else is refused") {
  CHECK(parse_timeline("1") == 1);
  CHECK(parse_timeline("42") == 42);
  CHECK(parse_timeline("4294967295") == 4294967295);
  for (const char* bad :
       {"", "0", "-1", "4294967296", "99999999999999999999999", "12a", " 1", "1 ", "0x10", "one"})
    CHECK_FALSE(parse_timeline(bad));
}

TEST_CASE("issue 12: a history file of several timelines lists each ancestor and where it ended") {
  // As PostgreSQL writes it for timeline 4, with a comment and a blank line.
  const char* history =
      "1\t0/3000060\tno recovery target specified\n"
      "\n"
      "# a comment\n"
      "2\t0/5000000\tat restore point \"before upgrade\"\n"
      "3\t1/A0\tno recovery target specified\r\n";
  auto h = parse_timeline_history(history);
  REQUIRE(h.ok());
  REQUIRE(h->size() == 3);
  CHECK((*h)[0].parent == 1);
  CHECK((*h)[0].switchpoint == lsn("0/3000060"));
  CHECK((*h)[1].parent == 2);
  CHECK((*h)[1].switchpoint == lsn("0/5000000"));
  CHECK((*h)[2].parent == 3);
  CHECK((*h)[2].switchpoint == lsn("1/A0"));
  CHECK(parse_timeline_history("").value().empty());
  CHECK(parse_timeline_history("1\t0/10").value().size() == 1);  // no reason, no newline
}

TEST_CASE("issue 12: a malformed history file is an error naming the line, never a crash") {
  struct Case {
    const char* text;
    const char* error;
  };
  for (auto [text, error] : {
           Case{"x\t0/10\treason\n", "timeline history line 1: no timeline id"},
           Case{"1\t0/10\tr\n0\t0/20\tr\n", "timeline history line 2: no timeline id"},
           Case{"1\n", "timeline history line 1: no switchpoint (X/Y)"},
           Case{"1\t0-10\tr\n", "timeline history line 1: no switchpoint (X/Y)"},
           Case{"1\t123456789/0\tr\n", "timeline history line 1: no switchpoint (X/Y)"},
           Case{"1\t0/10\tr\n\n1\t0/20\tr\n",
                "timeline history line 3: timeline ids must increase (1 after 1)"},
           Case{"3\t0/10\tr\n2\t0/20\tr\n",
                "timeline history line 2: timeline ids must increase (2 after 3)"},
           Case{"99999999999\t0/10\n", "timeline history line 1: no timeline id"},
       }) {
    INFO(text);
    auto h = parse_timeline_history(text);
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().message == error);
  }
  // Binary garbage.
  std::string junk("\x00\xff\t/\n\x01/\x02", 8);
  CHECK_FALSE(parse_timeline_history(junk).ok());
}

TEST_CASE("issue 12: a former primary at or before the fork point can follow the new timeline") {
  const char* history = "1\t0/3000060\tno recovery target specified\n";
  const TimelinePoint source{"berlin", lsn("0/3001000"), 2};
  CHECK(divergence({"london", lsn("0/3000060"), 1}, source, history).value() == "");
  CHECK(divergence({"london", lsn("0/3000000"), 1}, source, history).value() == "");
  // Same timeline: nothing forked, whatever the positions.
  CHECK(divergence({"london", lsn("9/0"), 2}, source, history).value() == "");
  CHECK(divergence({"london", std::nullopt, 2}, source, "").value() == "");
}

TEST_CASE(
    "issue 12: a former primary that wrote past the fork point has diverged, and says where") {
  const char* history = "1\t0/3000060\tno recovery target specified\n";
  auto d = divergence({"london", lsn("0/3000061"), 1}, {"berlin", std::nullopt, 2}, history);
  REQUIRE(d.ok());
  CHECK(d.value() ==
        "london wrote WAL up to 0/3000061 on timeline 1, past 0/3000060 where berlin's timeline 2 "
        "forked from it");
}

TEST_CASE(
    "issue 12: with several timelines the fork point is the one where the former primary's line "
    "ended") {
  // berlin is on timeline 3: 1 ended at 0/3000060, 2 at 0/5000000.
  const char* history = "1\t0/3000060\tr\n2\t0/5000000\tr\n";
  const TimelinePoint source{"berlin", std::nullopt, 3};
  // On timeline 1 at 0/4000000: past 1's end, though before 2's.
  CHECK(divergence({"london", lsn("0/4000000"), 1}, source, history).value() ==
        "london wrote WAL up to 0/4000000 on timeline 1, past 0/3000060 where berlin's timeline 3 "
        "forked from it");
  // On timeline 2 at 0/4000000: before 2's end, so it can follow.
  CHECK(divergence({"london", lsn("0/4000000"), 2}, source, history).value() == "");
  CHECK(divergence({"london", lsn("0/5000001"), 2}, source, history).value() ==
        "london wrote WAL up to 0/5000001 on timeline 2, past 0/5000000 where berlin's timeline 3 "
        "forked from it");
}

TEST_CASE("issue 12: a timeline that is not in the source's history has diverged") {
  CHECK(
      divergence({"london", lsn("0/10"), 4}, {"berlin", std::nullopt, 3}, "1\t0/3\tr\n2\t0/5\tr\n")
          .value() == "london's timeline 4 is not in the history of berlin's timeline 3");
  // The source is on timeline 1: it has no history file.
  CHECK(divergence({"london", lsn("0/10"), 2}, {"berlin", std::nullopt, 1}, "").value() ==
        "london's timeline 2 is not in the history of berlin's timeline 1");
}

TEST_CASE("issue 12: an unknown position or a malformed history is an error, not a verdict") {
  auto no_lsn = divergence({"london", std::nullopt, 1}, {"berlin", std::nullopt, 2}, "1\t0/3\tr\n");
  REQUIRE_FALSE(no_lsn.ok());
  CHECK(no_lsn.error().message == "cannot read positions to compare timelines");
  auto bad = divergence({"london", lsn("0/10"), 1}, {"berlin", std::nullopt, 2}, "1\tgarbage\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "timeline history line 1: no switchpoint (X/Y)");
}
