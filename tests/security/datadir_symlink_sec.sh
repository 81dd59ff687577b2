#!/usr/bin/env bash
# Security (issue 10, items 11 and 12): stackflip runs as root, the data
# directories belong to the postgres user, who can plant a symbolic link at
# any name in them. Re-attaching a former primary must not let that user
# write, truncate, chown or read a root file through such a link:
#   A. built-in re-attach (no control_command): standby.signal -> a root-owned
#      canary. Old code: ofstream + chown by path truncated the canary and gave
#      it to postgres.
#   B. built-in rewind: stolen.conf -> a root-only secret. Old code: read as
#      root before pg_rewind and written back into the data directory.
#   C. the harness's control command (scripts/pg-control.sh), re-attach with
#      standby.signal -> the canary. Old code: stopped the server, then failed
#      without saying why (touch as the owner was denied), server left down.
#   D. pg-control.sh rewind with stolen.conf -> the secret. Old code: cp -p as
#      root copied the secret into the data directory.
#   E. item 12: everything stackflip writes is 0600/0700 (state store, its
#      lock, the Git cache, a saved plan).
# After each case the canary is unchanged (content, owner, mode, mtime) and
# the re-attach either worked or failed with an error naming the link while
# the server kept running.
# Usage (CTest): bash tests/security/datadir_symlink_sec.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/../e2e/lib.sh"
[[ $EUID -eq 0 ]] || { echo "SKIP: needs root (the attack is on root's file operations)"; exit 77; }
e2e_start "$@"

as_pg() { runuser -u postgres -- "$@"; }
export PATH=$PG_BIN:$PATH  # the built-in re-attach finds pg_ctl and pg_rewind in PATH

ATTACK=$DIR/root-only
mkdir -m 0755 "$ATTACK"
SECRET_TEXT="SECRET-$RANDOM$RANDOM$RANDOM"
SECRET=$ATTACK/secret
printf '%s\n' "$SECRET_TEXT" >"$SECRET"
chmod 0600 "$SECRET"
canary_sig() { stat -c '%u:%g:%a:%s:%Y' "$CANARY"; sha256sum <"$CANARY"; }
# A fresh root-owned canary for each case, so that each case fails or passes
# on its own.
new_canary() {
  CANARY=$(mktemp "$ATTACK/canary.XXXXXX")
  printf 'canary %s\n' "$RANDOM$RANDOM" >"$CANARY"
  chmod 0644 "$CANARY"
  touch -d '2020-01-01 00:00:00' "$CANARY"
  CANARY_SIG=$(canary_sig)
}

grep -v control_command "$CONFIG" >"$DIR/nocc.yaml"
grep -v control_command "$DIR/standby-active.yaml" >"$DIR/nocc-standby.yaml"

canary_unchanged() { # LABEL
  check_eq "$1: canary unchanged (owner, mode, size, mtime, content)" "$CANARY_SIG" "$(canary_sig)"
}
no_secret_in() { # LABEL DATA_DIR
  local hits; hits=$(grep -rlF "$SECRET_TEXT" "$2" 2>/dev/null)
  check_eq "$1: the root-only secret was not copied into the data directory" "" "$hits"
  local foreign; foreign=$(find "$2" ! -user postgres 2>/dev/null | head -n 5)
  check_eq "$1: every file in the data directory belongs to postgres" "" "$foreign"
}
# A planted standby.signal: the re-attach works without touching the canary,
# or it is refused with an error naming the link and the server keeps running
# (fenced). Then the link is removed and the next apply re-attaches.
signal_case() { # LABEL CONFIG OLD_HOST OLD_DATA NEW_HOST
  local label=$1 config=$2 old=$3 data=$4 new=$5 rc
  echo "--- $label"
  new_canary
  as_pg ln -s "$CANARY" "$data/standby.signal"
  "$SF" apply -c "$config" --auto-approve >"$DIR/apply.txt" 2>&1
  rc=$?
  canary_unchanged "$label"
  if ((rc == 0)); then
    check "$label: re-attached anyway: $old streams from $new" poll 10 streaming_from "$old" "$new"
  else
    sed -n '/standby.signal/p' "$DIR/apply.txt" | head -n 3
    check "$label: the error names the planted link" grep -q "standby.signal is a symbolic link" "$DIR/apply.txt"
    check_eq "$label: $old was left running, fenced" on "$(maintenance_of "$old")"
    check_eq "$label: DNS answers the new primary" "$new" "$(dns_answer)"
    as_pg rm -f "$data/standby.signal"
    "$SF" apply -c "$config" --auto-approve >"$DIR/apply2.txt" 2>&1
    check_eq "$label: with the link removed, apply exits 0" 0 $?
    check "$label: $old streams from $new" poll 10 streaming_from "$old" "$new"
  fi
  canary_unchanged "$label (after the re-attach)"
}
# A planted stolen.conf -> secret in the data directory of the old primary,
# which has written WAL after the promotion (hook after step 6: the new
# primary's promotion), so the re-attach runs pg_rewind.
rewind_case() { # LABEL CONFIG OLD_HOST OLD_DATA NEW_HOST
  local label=$1 config=$2 old=$3 data=$4 new=$5
  echo "--- $label"
  new_canary
  as_pg ln -s "$SECRET" "$data/stolen.conf"
  as_pg ln -s "$CANARY" "$data/canary.conf"
  apply_hooked "$config" 6 sql "$old" CHECKPOINT
  check_eq "$label: apply exits 0" 0 $?
  check "$label: the re-attach ran pg_rewind" grep -q "running pg_rewind" "$DIR/apply.txt"
  check "$label: $old streams from $new" poll 10 streaming_from "$old" "$new"
  no_secret_in "$label" "$data"
  canary_unchanged "$label"
  as_pg rm -f "$data/stolen.conf" "$data/canary.conf"
}

signal_case "A. built-in re-attach, standby.signal -> canary" "$DIR/nocc-standby.yaml" 127.0.0.1 "$PG1_DATA" 127.0.0.2
rewind_case "B. built-in pg_rewind, stolen.conf -> secret" "$DIR/nocc.yaml" 127.0.0.2 "$PG2_DATA" 127.0.0.1
signal_case "C. pg-control.sh re-attach, standby.signal -> canary" "$DIR/standby-active.yaml" 127.0.0.1 "$PG1_DATA" 127.0.0.2
rewind_case "D. pg-control.sh pg_rewind, stolen.conf -> secret" "$CONFIG" 127.0.0.2 "$PG2_DATA" 127.0.0.1

echo "--- E. modes of what stackflip writes"
"$SF" plan -c "$CONFIG" --out "$DIR/saved-plan.json" >/dev/null
check_eq "E: a saved plan is 0600" 600 "$(stat -c %a "$DIR/saved-plan.json" 2>/dev/null)"
REPO=$DIR/repo
git init -q -b main "$REPO"
cp "$CONFIG" "$REPO/stackflip.yaml"
git -C "$REPO" add stackflip.yaml
git -C "$REPO" -c user.email=ops@example.test -c user.name=Ops -c commit.gpgsign=false commit -q -m config
"$SF" reconcile --repo "file://$REPO" >"$DIR/reconcile.txt" 2>&1
check_eq "E: reconcile exits 0" 0 $?
check_eq "E: state.db is 0600" 600 "$(stat -c %a "$STACKFLIP_STATE_DIR/state.db" 2>/dev/null)"
check_eq "E: the state lock is 0600" 600 "$(stat -c %a "$STACKFLIP_STATE_DIR/state.db.lock" 2>/dev/null)"
check_eq "E: the state folder is 0700" 700 "$(stat -c %a "$STACKFLIP_STATE_DIR" 2>/dev/null)"
cache_files=$(find "$STACKFLIP_STATE_DIR" -mindepth 2 | wc -l)
check "E: a Git cache was written ($cache_files entries under the state folder)" test "$cache_files" -gt 0
open_to_others=$(find "$STACKFLIP_STATE_DIR" -perm /077 | head -n 5)
check_eq "E: nothing under the state folder (store, lock, Git cache) is open to group or others" "" "$open_to_others"

e2e_finish
