#!/usr/bin/env bash
# t_status: basebackup status against a real PostgreSQL 15 archiving into a repository of
# REPO_KIND (local by default; t_status_sftp.sh: SFTP, whose listings carry no times).
#   - no backup yet: --max-backup-age 26h is CRITICAL (exit 2) and says so; without limits OK;
#   - healthy (a backup, WAL archived): OK (exit 0) with every limit; the text names the newest
#     backup and WAL; --json is one object with the same facts; the --prometheus file is
#     written atomically (no temp file left, mode 0644) and passes tests/tools/promcheck (and,
#     when promtool is installed, `promtool check metrics`; `promtool check rules` of
#     scripts/prometheus/walsafe-rules.yml);
#   - logical backups: --max-logical-age is CRITICAL without one, OK after logicalbackup create,
#     which the text and walsafe_logical_backups count;
#   - a replication slot is shown with its lag; a role without pg_monitor gets everything but the
#     .ready count, and a line naming the role to grant;
#   - a gap (one WAL object removed from the repository): reported by name, CRITICAL, counted
#     in walsafe_wal_gaps;
#   - archiving broken (archive_command's repository one that does not exist): the failed
#     count and the lag are shown, WARNING without limits, CRITICAL with --max-archive-lag 1;
#   - server stopped: one line says it was not reached, the repository part is still printed;
#     --max-archive-lag then gives UNKNOWN (3), as does a usage error of status;
#   - promcheck itself refuses broken exposition files (so that its passing means something).
. "$(dirname "$0")/lib.sh"
setup_tmp

PROMCHECK=$BIN_DIR/../tests/tools/promcheck
[ -x "$PROMCHECK" ] || die "no $PROMCHECK (make build/release/tests/tools/promcheck)"
CONF=$T/walsafe.conf
PGD=$T/primary
PROM_DIR=$T/textfile
mkdir -p "$PROM_DIR" && chown postgres: "$PROM_DIR"
PROM=$PROM_DIR/walsafe.prom
CASE="set-up (${REPO_KIND:-local})"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}"
# archive_command's own configuration: the same repository until "archiving broken" points it
# at one that does not exist (wal-push reads it at every call: no reload, no race)
ARCHIVE_CONF=$T/archive.conf
write_conf "$ARCHIVE_CONF" "${REPO_CONF[@]}"

st() { bb --config "$CONF" status "$@"; }
out_has() { # STRING WHAT
    grep -qF -- "$1" "$T/.last.out" ||
        fail "$2: output lacks \"$1\": $(head -c 1500 "$T/.last.out")"
}
prom_value() { # NAME_WITH_LABELS: the value of that sample in $PROM
    awk -v k="$1" '$1 == k { print $2 }' "$PROM"
}
prom_ok() { # WHAT: $PROM passes promcheck, and promtool check metrics when installed
    "$PROMCHECK" "$PROM" >"$T/promcheck.out" 2>&1 || fail "$1: promcheck: $(cat "$T/promcheck.out")"
    command -v promtool >/dev/null || return 0
    promtool check metrics <"$PROM" >"$T/promtool.out" 2>&1 ||
        fail "$1: promtool check metrics: $(cat "$T/promtool.out")"
}

archiving_cluster "$PGD" "$ARCHIVE_CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT"
sql "$PORT" "create table t (id int)" || die "create table failed"
more_wal 2

CASE="no backup"
st --max-backup-age 26h --prometheus "$PROM"
assert_rc 2 "status --max-backup-age without a backup"
out_has "CRITICAL: no complete backup in the repository" "no backup"
prom_ok "no backup"
assert_eq "$(prom_value 'walsafe_backup_newest_complete_timestamp_seconds{cluster="main"}')" 0 \
    "newest backup time without a backup"
st
assert_rc 0 "status without limits and without a backup"

CASE="healthy"
bb_create "$CONF"
more_wal 2
st --max-backup-age 26h --max-wal-age 1h --max-archive-lag 2 --prometheus "$PROM"
assert_rc 0 "status of a healthy set-up"
out_has "OK: no problem found" "healthy"
out_has "newest complete $BACKUP_ID (full)" "healthy"
out_has "WAL timeline 1: " "healthy"
out_has ", newest stored " "healthy"
out_has "archive lag: 0 segments" "healthy"
prom_ok "healthy"
if command -v promtool >/dev/null; then
    promtool check rules "$(dirname "$0")/../../scripts/prometheus/walsafe-rules.yml" \
        >"$T/promtool.out" 2>&1 || fail "promtool check rules: $(cat "$T/promtool.out")"
fi
assert_eq "$(stat -c %a "$PROM")" 644 "mode of the Prometheus file"
assert_eq "$(find "$PROM_DIR" -type f | wc -l)" 1 "files in the textfile directory (no temp left)"
assert_eq "$(prom_value 'walsafe_status_state{cluster="main"}')" 0 "walsafe_status_state"
assert_eq "$(prom_value 'walsafe_backups{cluster="main",status="complete"}')" 1 "complete backups"
assert_eq "$(prom_value 'walsafe_wal_gaps{cluster="main"}')" 0 "gaps"
archived=$(sql "$PORT" "select archived_count from pg_stat_archiver")
assert_eq "$(prom_value 'walsafe_archiver_archived_total{cluster="main"}')" "$archived" \
    "walsafe_archiver_archived_total against pg_stat_archiver"
st --json
assert_rc 0 "status --json"
cp "$T/.last.out" "$T/status.json"
assert_eq "$(json_eval "$T/status.json" 'j.state')" OK "JSON state"
assert_eq "$(json_eval "$T/status.json" 'j.repository.backups.newest_complete.id')" "$BACKUP_ID" \
    "JSON newest backup"
assert_eq "$(json_eval "$T/status.json" 'j.server.archive_lag.segments')" 0 "JSON archive lag"
assert_eq "$(json_eval "$T/status.json" 'j.repository.timelines[0].last')" \
    "$(sql "$PORT" "select last_archived_wal from pg_stat_archiver")" "JSON newest WAL"
assert_eq "$(wc -l <"$T/status.json")" 1 "JSON is one line, one object"

CASE="logical backups"
st --max-logical-age 26h
assert_rc 2 "status --max-logical-age without a logical backup"
out_has "no complete logical backup in the repository" "logical backups"
run runuser -u postgres -- "$BIN_DIR/logicalbackup" --config "$CONF" create --db postgres
assert_rc 0 "logicalbackup create" || die "logicalbackup create failed: $(last_err)"
LOGICAL_ID=$(grep -o "[0-9]\{8\}T[0-9]\{6\}Z" "$T/.last.out" | head -1)
st --max-logical-age 26h --max-backup-age 26h --prometheus "$PROM"
assert_rc 0 "status --max-logical-age with a logical backup"
out_has "logical backups: 1 complete, 0 incomplete, 0 invalid; newest complete $LOGICAL_ID" \
    "logical backups"
assert_eq "$(prom_value 'walsafe_logical_backups{cluster="main",status="complete"}')" 1 \
    "walsafe_logical_backups"
prom_ok "logical"

CASE="slot and a monitoring role"
sql "$PORT" "select pg_create_physical_replication_slot('walsafe', true)" >/dev/null ||
    die "could not create the slot"
st
assert_rc 0 "status with an inactive slot"
out_has 'replication slot "walsafe": inactive, wal_status reserved, ' "slot"
out_has " bytes behind" "slot"
sql "$PORT" "select pg_drop_replication_slot('walsafe')" >/dev/null || die "could not drop the slot"
sql "$PORT" "create role mon login" >/dev/null || die "could not create role mon"
MON_CONF=$T/mon.conf
write_conf "$MON_CONF" "${REPO_CONF[@]}" \
    "pg_conninfo = 'host=$SOCK port=$PORT user=mon dbname=postgres'"
bb --config "$MON_CONF" status
assert_rc 0 "status as a role without pg_monitor"
out_has ".ready files: permission denied for pg_ls_archive_statusdir(): grant the role pg_monitor" \
    "role without pg_monitor"
out_has "archive lag: 0 segments" "role without pg_monitor"
sql "$PORT" "grant pg_monitor to mon" >/dev/null || die "could not grant pg_monitor"
bb --config "$MON_CONF" status
out_has "; 0 .ready files" "role with pg_monitor"

CASE="gap"
more_wal 3
last=$(sql "$PORT" "select last_archived_wal from pg_stat_archiver")
gone=$(seg_name 1 $(($(seg_num "$last" 1) - 1)) 1)
obj=$(repo_file "main/wal/${gone:0:16}/$gone")
[ -f "$obj" ] || die "no object $gone in the repository ($obj)"
mv "$obj" "$T/$gone.aside"
st --prometheus "$PROM"
assert_rc 2 "status with a gap"
out_has "WAL gap on timeline 1: $gone to $gone are missing from the repository" "gap"
prom_ok "gap"
assert_eq "$(prom_value 'walsafe_wal_gaps{cluster="main"}')" 1 "walsafe_wal_gaps"
assert_eq "$(prom_value 'walsafe_wal_missing_segments{cluster="main"}')" 1 "missing segments"
st --json
gaps=$(json_eval "$T/.last.out" 'j.repository.gaps.map(g => g.first + "-" + g.needed).join()')
assert_eq "$gaps" "$gone-true" "JSON gaps"
mv "$T/$gone.aside" "$obj"
st
assert_rc 0 "status with the gap filled again"

CASE="archiving broken"
write_conf "$ARCHIVE_CONF.new" "repo = '$T/no-such-repo'"
mv -f "$ARCHIVE_CONF.new" "$ARCHIVE_CONF" || die "could not point archive_command elsewhere"
for i in 1 2 3; do
    sql "$PORT" "insert into t values ($i)" >/dev/null || die "insert failed"
    sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
done
for _ in $(seq 1 100); do
    [ "$(sql "$PORT" "select failed_count > 0 from pg_stat_archiver")" = t ] && break
    sleep 0.1
done
failed=$(sql "$PORT" "select failed_count from pg_stat_archiver")
[ "$failed" -gt 0 ] || die "the archiver did not fail (failed_count $failed)"
st --prometheus "$PROM"
assert_rc 1 "status while archiving fails, without limits (WARNING)"
out_has "WARNING: the archiver's latest attempt failed" "archiving broken"
out_has ", failed $(sql "$PORT" "select failed_count from pg_stat_archiver")" "failed count"
out_has "archive lag: 3 segments" "archiving broken"
prom_ok "broken"
assert_eq "$(prom_value 'walsafe_archive_lag_segments{cluster="main"}')" 3 \
    "walsafe_archive_lag_segments"
st --max-archive-lag 1
assert_rc 2 "status --max-archive-lag 1 while archiving fails"
out_has "archive lag 3 segments" "archiving broken"
out_has "more than 1 (--max-archive-lag)" "archiving broken"

CASE="server stopped"
pg_stop "$PGD"
st --prometheus "$PROM"
assert_rc 0 "status with the server down, without limits"
prom_ok "server stopped"
assert_eq "$(prom_value 'walsafe_server_up{cluster="main"}')" 0 "walsafe_server_up"
out_has "server: not reached: could not connect to the database server" "server stopped"
out_has "newest complete $BACKUP_ID" "server stopped"
[ "$(grep -c '^server:' "$T/.last.out")" = 1 ] || fail "server stopped: not one server line"
st --max-archive-lag 4
assert_rc 3 "status --max-archive-lag with the server down (UNKNOWN)"
st --max-backup-age yesterday
assert_rc 3 "status with a bad duration (UNKNOWN)"
assert_err_contains "--max-backup-age needs a duration" "bad duration"

CASE="promcheck refuses"
bad_prom() { # WHAT EXPECTED-MESSAGE LINE...
    local what=$1 msg=$2
    shift 2
    printf '%s\n' "$@" >"$T/bad.prom"
    if "$PROMCHECK" "$T/bad.prom" >"$T/promcheck.out" 2>&1; then
        fail "promcheck passed $what"
    else
        grep -qF -- "$msg" "$T/promcheck.out" ||
            fail "promcheck on $what: $(cat "$T/promcheck.out")"
    fi
}
bad_prom "a sample before TYPE" "before its TYPE line" 'a_b 1'
bad_prom "two TYPE lines" "second TYPE line" '# HELP a x' '# TYPE a gauge' '# TYPE a gauge' 'a 1'
bad_prom "a counter without _total" "must end in _total" '# HELP a x' '# TYPE a counter' 'a 1'
bad_prom "a bad escape" "invalid escape" '# HELP a x' '# TYPE a gauge' 'a{c="\x"} 1'
bad_prom "a value that is no float" "is not a float" '# HELP a x' '# TYPE a gauge' 'a 0x10'
bad_prom "a timestamp" "refuses timestamps" '# HELP a x' '# TYPE a gauge' 'a 1 1700000000000'
bad_prom "a repeated sample" "twice" '# HELP a x' '# TYPE a gauge' 'a{x="1",y="2"} 1' \
    'a{y="2",x="1"} 2'
bad_prom "split samples" "not together" '# HELP a x' '# TYPE a gauge' '# HELP b x' \
    '# TYPE b gauge' 'a 1' 'b 1' 'a{x="1"} 1'

finish
