#!/usr/bin/env bash
# t_standby: an archive-only standby (standby.signal, restore_command = wal-fetch) follows the
# primary through the repository. While the repository is unreachable, wal-fetch (fetch_error
# = auto) answers 1 because PostgreSQL runs it in a data directory holding standby.signal, so
# the standby keeps waiting instead of stopping, and the primary's failed archiving is retried;
# once the repository is back, nothing is missing and the standby catches up.
. "$(dirname "$0")/lib.sh"
setup_tmp

ROWS=3000
KEY=$T/walsafe.key
REPO=$T/repo
CONF=$T/walsafe.conf
PGD=$T/primary
SBY=$T/standby
make_key "$KEY"
make_repo "$REPO"
write_conf "$CONF" "repo = '$REPO'" "encrypt_key_file = '$KEY'"

CASE="primary and standby"
pg_init "$PGD" --wal-segsize=1
PORT=$(free_port)
pg_conf "$PGD" "$PORT" "archive_mode = on" "archive_command = '$WAL_PUSH --config $CONF %p'"
pg_start "$PGD"
sql "$PORT" "create table t (id int primary key, batch int not null)" || die "create table failed"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X none \
    -c fast -D "$SBY" >"$T/basebackup.log" 2>&1 ||
    { cat "$T/basebackup.log"; die "pg_basebackup failed"; }
SPORT=$(free_port)
while [ "$SPORT" = "$PORT" ]; do SPORT=$(free_port); done
pg_conf "$SBY" "$SPORT" \
    "archive_mode = off" \
    "archive_command = ''" \
    "restore_command = '$WAL_FETCH --config $CONF %f %p'" \
    "wal_retrieve_retry_interval = '200ms'"
touch "$SBY/standby.signal" && chown postgres: "$SBY/standby.signal"
pg_start "$SBY"

batch() { # N [nowait]: insert batch N on the primary, switch, wait until it is archived
    sql "$PORT" "insert into t select g, $1 from generate_series($((($1 - 1) * ROWS + 1)), $(($1 * ROWS))) g" ||
        die "insert of batch $1 failed"
    BATCH_LAST=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
    [ "${2:-}" = nowait ] && return 0
    wait_archived "$PORT" "$BATCH_LAST" 60 || { show_log "$PGD.log"; die "archiving of batch $1 failed"; }
}
wait_standby_rows() { # N WHAT
    local start n
    start=$(date +%s)
    while :; do
        n=$(sql "$SPORT" "select count(*) from t" 2>/dev/null)
        [ "$n" = "$1" ] && return 0
        if [ $(($(date +%s) - start)) -ge 60 ] || [ ! -f "$SBY/postmaster.pid" ]; then
            show_log "$SBY.log" 30
            fail "$2: the standby has ${n:-no answer} rows, expected $1"
            return 1
        fi
        sleep 0.2
    done
}

batch 1
wait_standby_rows "$ROWS" "after batch 1" || die "the standby does not follow the archive"

CASE="repository unreachable"
mv "$REPO" "$REPO.away" || die "could not move the repository away"
errs_before=$(grep -c 'could not access repository directory' "$SBY.log")
# The primary keeps writing: its archiving fails and must be retried later, losing nothing.
batch 2 nowait
OUTAGE_SEG=$BATCH_LAST
sleep 3
read -r failed last_archived < <(sql "$PORT" "select failed_count, coalesce(last_archived_wal, '') from pg_stat_archiver" | tr '|' ' ')
[ "$failed" -ge 1 ] || fail "the primary's archiving did not fail while the repository was away"
[[ "$last_archived" < "$OUTAGE_SEG" ]] || fail "$OUTAGE_SEG was reported archived while the repository was away"
[ ! -e "$REPO" ] || fail "wal-push re-created the missing repository root $REPO"
errs=$(($(grep -c 'could not access repository directory' "$SBY.log") - errs_before))
[ "$errs" -ge 2 ] ||
    { fail "the standby ran wal-fetch against the missing repository only $errs times"; show_log "$SBY.log" 20; }
pid=$(head -1 "$SBY/postmaster.pid" 2>/dev/null)
is_postmaster_of "$pid" "$SBY" || fail "the standby stopped while the repository was unreachable"
assert_eq "$(sql "$SPORT" "select pg_is_in_recovery()" 2>/dev/null)" t "standby still in recovery"
if grep -q -E 'FATAL|exit code 255' "$SBY.log"; then
    fail "the standby logged a fatal restore failure:"
    grep -E 'FATAL|exit code 255' "$SBY.log" | head -5 | sed 's/^/      /'
fi
mv "$REPO.away" "$REPO" || die "could not move the repository back"

CASE="repository back"
# A new segment switch wakes the archiver, which then archives the backlog in order.
batch 3
wait_standby_rows $((3 * ROWS)) "after the repository came back"
assert_eq "$(sql "$SPORT" "select string_agg(distinct batch::text, ',' order by batch::text) from t")" \
    "1,2,3" "batches on the standby"
# No gap: every segment from the first archived one to the last is in the repository.
first=$(find "$REPO/main/wal" -type f -name '00000001????????????????' -printf '%f\n' | sort | head -1)
n0=$(seg_num "$first" 1)
n1=$(seg_num "$BATCH_LAST" 1)
for ((n = n0; n <= n1; n++)); do
    name=$(seg_name 1 $n 1)
    [ -f "$REPO/main/wal/${name:0:16}/$name" ] || fail "segment $name is missing from the repository"
done
assert_no_temp_files "$REPO" "repository after the outage"

pg_stop "$SBY"
pg_stop "$PGD"
finish
