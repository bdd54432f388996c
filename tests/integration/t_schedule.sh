#!/usr/bin/env bash
# t_schedule: the scheduling examples of the classic plan run as written (README, "The classic
# plan"): every ExecStart= of scripts/systemd/walsafe-{logical,weekly,verify}.service, and every
# command of scripts/cron/walsafe-plan, with the programs of this build in place of
# /usr/local/bin and the test's configuration as WALSAFE_CONFIG, as postgres, against a real
# PostgreSQL 15 archiving into a local repository with the plan's 30-day policies. Each must
# exit 0, in the order a first week would run them, and leave what it promises: a complete
# logical backup of every database with the globals, a complete base backup, the *.ok stamps.
# The units' syntax is checked with systemd-analyze where it exists.
. "$(dirname "$0")/lib.sh"
setup_tmp

SCRIPTS=$(cd "$(dirname "$0")/../../scripts" && pwd)
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_time = 30d" \
    "retain_logical_time = 30d"
sql "$PORT" "create database shop" || die "create database failed"
# The units take base backups without --fast: a spread checkpoint of what create database
# dirtied would take minutes (checkpoint_timeout 1h); with nothing dirty it is immediate.
sql "$PORT" "checkpoint" || die "checkpoint failed"

# run_as_unit COMMAND_LINE WHAT: one command of a unit or of the crontab, as written but for the
# programs' directory, as postgres, with WALSAFE_CONFIG.
run_as_unit() {
    local cmd=${1//\/usr\/local\/bin\//$BIN_DIR\/}
    run runuser -u postgres -- env WALSAFE_CONFIG="$CONF" PATH="$BIN_DIR:/usr/bin:/bin" sh -c "$cmd"
    assert_rc 0 "$2: $1"
}

for unit in logical weekly verify; do
    CASE="systemd: walsafe-$unit.service"
    f=$SCRIPTS/systemd/walsafe-$unit.service
    [ -f "$f" ] && [ -f "${f%.service}.timer" ] || { fail "no $f or its timer"; continue; }
    n=0
    while IFS= read -r line; do
        run_as_unit "${line#ExecStart=}" "walsafe-$unit"
        n=$((n + 1))
    done < <(grep '^ExecStart=' "$f")
    [ "$n" -gt 0 ] || fail "$f has no ExecStart="
    grep -q '^User=postgres$' "$f" || fail "$f does not run as postgres"
    if command -v systemd-analyze >/dev/null; then
        cp "$f" "${f%.service}.timer" "$T/" && chmod 644 "$T/walsafe-$unit".*
        (cd "$T" && systemd-analyze verify "walsafe-$unit.timer") >"$T/analyze.out" 2>&1
        grep -v -E 'Command .* is not executable|No such file or directory' "$T/analyze.out" | grep -q . &&
            fail "systemd-analyze verify walsafe-$unit.timer: $(head -3 "$T/analyze.out")"
    fi
done
grep -q '^ExecStart=/usr/local/bin/basebackup create$' "$SCRIPTS/systemd/walsafe-weekly.service" ||
    fail "the weekly unit does not say basebackup create"

CASE="cron: walsafe-plan"
mkdir -p "$T/log" && chown postgres: "$T/log"
n=0
while IFS= read -r cmd; do
    cmd=${cmd//\/var\/log\/walsafe/$T\/log}
    run_as_unit "$cmd" "cron line $((n + 1))"
    n=$((n + 1))
done < <(sed -n "s/.*sh -c '\([^']*\)'.*/\1/p" "$SCRIPTS/cron/walsafe-plan")
assert_eq "$n" 3 "commands in scripts/cron/walsafe-plan"
for ok in logical weekly verify; do
    [ -f "$T/log/$ok.ok" ] || fail "cron: $ok.ok was not touched"
done

CASE="what the plan left"
run runuser -u postgres -- "$BIN_DIR/logicalbackup" --config "$CONF" list --json
cp "$T/.last.out" "$T/llist.json"
assert_eq "$(json_eval "$T/llist.json" "j.logical_backups.filter(b => b.status === 'complete' && b.globals).length")" 2 \
    "complete logical backups with the globals (systemd and cron)"
bb_list "$CONF"
assert_eq "$(json_eval "$T/list.json" "j.backups.filter(b => b.status === 'complete').length")" 2 \
    "complete base backups (systemd and cron)"

finish
