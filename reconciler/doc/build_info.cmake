# Run at every build (cmake -P): writes OUTPUT, the definition of
# build_commit() and build_date() (reconciler/build_info.h), from the Git
# checkout at SOURCE_DIR. The file is rewritten only when its content
# changes, so an unchanged commit recompiles nothing.
execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE commit RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
set(date "")
if(NOT rc EQUAL 0 OR NOT commit MATCHES "^[0-9a-f]+$")
  set(commit unknown)
else()
  # Tracked files changed since the commit: the binary is not that commit.
  execute_process(COMMAND git -C "${SOURCE_DIR}" status --porcelain --untracked-files=no
                  OUTPUT_VARIABLE changes ERROR_QUIET)
  if(NOT changes STREQUAL "")
    string(APPEND commit -dirty)
  endif()
  # The commit's date, not the build's: the same source makes the same man page.
  execute_process(COMMAND git -C "${SOURCE_DIR}" log -1 --format=%cs
                  OUTPUT_VARIABLE date OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
file(CONFIGURE OUTPUT "${OUTPUT}" CONTENT [=[
// Generated at build time by reconciler/doc/build_info.cmake. Do not edit.
#include "build_info.h"
namespace stackflip {
const char* build_commit() { return "@commit@"; }
const char* build_date() { return "@date@"; }
}  // namespace stackflip
]=] @ONLY)
