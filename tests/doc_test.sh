#!/usr/bin/env bash
# The man page and the bash completion against what the binary's --help says
# (issue 18): every command and option --help lists is in the page and
# completes, the option values complete as --help names them, the page
# renders without a warning and has the sections a man page needs, and every
# environment variable the code reads is in its ENVIRONMENT section. Both
# files are generated from the command table (reconciler/doc/docgen.cc);
# this test is what keeps the generator honest.
#
# usage: doc_test.sh STACKFLIP MAN_PAGE COMPLETION RECONCILER_DIR
set -uo pipefail
SF=$1 MAN=$2 COMPLETION=$3 SRC=$4
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then pass; else fail "$name"; fi; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-doc.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --help, parsed: the subcommands, and per help page its options and
# positionals with their type ("-c,--config FILE REQUIRED" -> -c --config).
subcommands() { "$SF" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && NF {print $1}'; }
options_of() { # [SUB]: every option name, one per line
  "$SF" "$@" --help | sed -n '/^Options:/,/^$/p' | awk 'NR > 1 && $1 ~ /^-/ {print $1}' | tr ',' '\n'
}
positionals_of() { "$SF" "$@" --help | sed -n '/^Positionals:/,/^$/p' | awk 'NR > 1 && NF {print $1}'; }
type_of() { # SUB OPTION: the type --help shows after the option's names
  "$SF" "$1" --help | awk -v o="$2" '$1 ~ /^-/ { n = split($1, a, ","); for (i = 1; i <= n; i++) if (a[i] == o) print $2 }'
}

mapfile -t SUBS < <(subcommands)
check "--help lists the subcommands" test "${#SUBS[@]}" -ge 9

# ---- the man page -------------------------------------------------------
# The roff source with \- as -, and one command's block of it.
plain=$TMP/page
sed 's/\\-/-/g; s/\\f[BIRP]//g' "$MAN" >"$plain"
block() { awk -v s=".SS \"$1\"" '$0 == s {on = 1; next} on && /^\.S[SH] / {exit} on' "$plain"; }
section() { awk -v s=".SH $1" '$0 == s {on = 1; next} on && /^\.SH / {exit} on' "$plain"; }
has_word() { grep -qE -- "(^|[^-[:alnum:]])$1([^-[:alnum:]]|\$)"; }

for s in NAME SYNOPSIS DESCRIPTION COMMANDS '"GLOBAL OPTIONS"' '"EXIT STATUS"' ENVIRONMENT FILES '"SEE ALSO"'; do
  check "man: section $s" grep -qx ".SH $s" "$MAN"
done
mapfile -t MAN_SUBS < <(sed -n 's/^\.SS "\(.*\)"$/\1/p' "$MAN")
check_eq_lists() { [[ "$1" == "$2" ]] || { echo "  expected: $1"; echo "  got:      $2"; return 1; }; }
check "man: one COMMANDS subsection per subcommand, in --help's order" \
  check_eq_lists "${SUBS[*]}" "${MAN_SUBS[*]}"
for sub in "${SUBS[@]}"; do
  check "man: $sub in SYNOPSIS" bash -c "sed -n '/^\.SH SYNOPSIS/,/^\.SH DESC/p' '$plain' | grep -q '^stackflip $sub\\b'"
  while read -r opt; do
    [[ $opt == -h || $opt == --help ]] && continue
    check "man: $sub $opt" has_word "$opt" < <(block "$sub")
  done < <(options_of "$sub")
  while read -r pos; do
    check "man: $sub positional $pos" has_word "$pos" < <(block "$sub")
  done < <(positionals_of "$sub")
done
while read -r opt; do
  check "man: global $opt" has_word "$opt" < <(section '"GLOBAL OPTIONS"')
done < <(options_of)
for code in 0 1 2 3; do
  check "man: exit status $code" bash -c "sed -n '/^\.SH \"EXIT STATUS\"/,/^\.SH ENV/p' '$MAN' | grep -qx '.B $code'"
done
# Every variable the code reads: a new getenv() needs its line in the page.
mapfile -t VARS < <(grep -rhoE 'getenv\("[A-Z_]+"\)' "$SRC" | sed 's/getenv("\(.*\)")/\1/' | sort -u)
check "the code reads environment variables" test "${#VARS[@]}" -ge 5
for v in "${VARS[@]}"; do
  check "man: ENVIRONMENT has $v" has_word "$v" < <(section ENVIRONMENT)
done
# Renders without a warning, as lintian checks it (man --warnings).
warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$MAN" 2>&1 >/dev/null)
check "man: renders without warnings${warnings:+: $warnings}" test -z "$warnings"
check "man: the version" grep -q "\"stackflip $("$SF" --version | awk '{print $2}')\"" "$MAN"

# ---- the completion -----------------------------------------------------
check "completion: bash -n" bash -n "$COMPLETION"
touch "$TMP/stackflip.yaml" "$TMP/state.db"
mkdir "$TMP/statedir"
# complete WORDS...: what pressing TAB after the last word offers (an empty
# last word: after a space), one per line, sorted.
complete_words() {
  bash --norc --noprofile -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _stackflip stackflip "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}"' _ "$COMPLETION" "$@" | sort
}
offers() { # WORD WORDS...: TAB after WORDS offers WORD
  local want=$1; shift
  complete_words "$@" | grep -qxF -- "$want" || { echo "  stackflip ${*:2} <TAB> did not offer $want"; return 1; }
}
check "completion: registered for stackflip" \
  bash --norc --noprofile -c "source '$COMPLETION'; complete -p stackflip | grep -q -- '-F _stackflip'"
for sub in "${SUBS[@]}"; do
  check "completion: stackflip <TAB> offers $sub" offers "$sub" stackflip ""
  check "completion: stackflip ${sub:0:2}<TAB> offers $sub" offers "$sub" stackflip "${sub:0:2}"
  while read -r opt; do
    check "completion: stackflip $sub -<TAB> offers $opt" offers "$opt" stackflip "$sub" -
    type=$(type_of "$sub" "$opt")
    case $type in
      FILE) check "completion: $sub $opt completes a file" offers "$TMP/stackflip.yaml" stackflip "$sub" "$opt" "$TMP/st" ;;
      DIR) check "completion: $sub $opt completes a folder" offers "$TMP/statedir" stackflip "$sub" "$opt" "$TMP/st" ;;
      *':{'*'}')
        for choice in $(sed 's/.*:{\(.*\)}/\1/' <<<"$type" | tr ',' ' '); do
          check "completion: $sub $opt offers $choice" offers "$choice" stackflip "$sub" "$opt" ""
        done ;;
    esac
  done < <(options_of "$sub")
  if [[ -n $(positionals_of "$sub") ]]; then
    check "completion: stackflip $sub completes its file argument" offers "$TMP/stackflip.yaml" stackflip "$sub" "$TMP/st"
  fi
done
while read -r opt; do
  check "completion: stackflip <TAB> offers global $opt" offers "$opt" stackflip ""
done < <(options_of)
check "completion: --host-config completes a file" offers "$TMP/stackflip.yaml" stackflip --host-config "$TMP/st"
check "completion: after a global option, the commands" offers plan stackflip --host-config "$TMP/stackflip.yaml" ""
check "completion: a value that is not a path offers no file" test -z "$(complete_words stackflip run --repo "$TMP/st")"
check "completion: an unknown option offers nothing" test -z "$(complete_words stackflip plan --no-such "$TMP/st")"

echo "$passed passed, $failed failed"
((failed == 0))
