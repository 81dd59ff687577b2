// build_info.h — what the build knew of its source: the Git commit and its
// date. Defined in <build>/generated/build_info.cc, which
// reconciler/doc/build_info.cmake rewrites at every build when (and only
// when) they changed.
#pragma once

namespace stackflip {

// 12 hex digits of the commit, "-dirty" appended when the tree had
// uncommitted changes; "unknown" outside a Git checkout.
const char* build_commit();

// The commit's date, YYYY-MM-DD (the man page's date); "" when unknown.
const char* build_date();

}  // namespace stackflip
