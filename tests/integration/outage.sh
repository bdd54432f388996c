# outage.sh - the body of t_outage_s3.sh and t_outage_sftp.sh (sourced by them with REPO_KIND=s3
# or sftp; not a test by itself: a local repository has no server to lose): the repository's
# server goes away for OUTAGE_S seconds while pgbench writes and PostgreSQL archives with wal-push
# (push-ahead on: parallel = 2 and a spool directory; some archiver calls must be answered by it).
#   before   a base backup (basebackup create), then pgbench: the standard tpcb-like script and a
#            script that inserts one row per transaction with a sequence number; archive_timeout
#            = 1s, so a segment (1 MiB) is completed about every second
#   outage   the server (S3: s3rver; SFTP: sshd and its sessions) is stopped by its PID and,
#            OUTAGE_S seconds later, started again on the same port with the same data;
#            pg_stat_archiver.failed_count must rise before it is back
#   after    the archiver is woken (pg_reload_conf) and must catch up; pgbench goes on a few
#            seconds, stops, and a last switch is archived. Every WAL segment from the first to
#            the last switch is in the repository (no gap), the last is pg_stat_archiver's
#            last_archived_wal, every completed segment in pg_wal is archived, none is .ready
#   PITR     the backup is restored (basebackup restore, no target: to the end of the archive)
#            into a new directory and started: it must hold every row committed on the primary
#            (count and max of the sequence numbers, md5 of every pgbench table)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_tmp

case "${REPO_KIND:-}" in
s3 | sftp) ;;
*) die "outage.sh needs REPO_KIND=s3 or sftp (run t_outage_s3.sh or t_outage_sftp.sh)" ;;
esac

OUTAGE_S=${OUTAGE_S:-30}
RATE=200 # pgbench transactions per second, both scripts together
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
COPY=$T/copy
CASE="repository ($REPO_KIND)"
make_key "$KEY"
repo_setup "$REPO_KIND"
SETTINGS=("encrypt_key_file = '$KEY'" "parallel = 2" "spool_dir = '$T/spool'" "log_level = 'info'"
    "log_file = '$T/walsafe.log'")
write_conf "$CONF" "${REPO_CONF[@]}" "${SETTINGS[@]}"

CASE="primary"
pg_init "$PGD" --wal-segsize=1
PORT=$(free_port)
pg_conf "$PGD" "$PORT" "archive_mode = on" "archive_command = '$WAL_PUSH --config $CONF %p'" \
    "archive_timeout = '1s'" "checkpoint_timeout = '1h'" "max_wal_size = '1GB'"
pg_start "$PGD"
backup_conf "$CONF" "$PGD" "$PORT" "${SETTINGS[@]}"
pgbench_run "$PORT" -i -q -s 1 || die "pgbench -i failed"
sql "$PORT" "create table seq_log (n bigint primary key, pad text not null);
             create sequence seq_log_n" || die "create table failed"
echo "insert into seq_log values (nextval('seq_log_n'), repeat(md5(random()::text), 8));" \
    >"$T/seq.sql" && chmod 644 "$T/seq.sql" || die "could not write $T/seq.sql"
bb_create "$CONF" --label "before the outage"
ID=$BACKUP_ID

# archived_segments: the names of the WAL segments stored in the repository, sorted.
archived_segments() {
    local suffix=
    [ "$REPO_KIND" = s3 ] && suffix=._S3rver_object
    find "$REPO_FILES/main/wal" -type f -name "*$suffix" -printf '%f\n' |
        sed -n "s/^\([0-9A-F]\{24\}\)$suffix\$/\1/p" | LC_ALL=C sort
}
archiver() { sql "$PORT" "select $1 from pg_stat_archiver"; }

CASE="load"
bg_start "$T/pgbench-bg.log" env PGOPTIONS="$PGBENCH_OPTIONS" "$PGBIN/pgbench" -h "$SOCK" \
    -p "$PORT" -U postgres -n -c 2 -T 600 -R "$RATE" -b tpcb-like -f "$T/seq.sql" postgres
PGBENCH_PID=$BG_PID
sleep 5
kill -0 "$PGBENCH_PID" 2>/dev/null || { cat "$T/pgbench-bg.log"; die "pgbench did not keep running"; }
F0=$(archiver failed_count) || die "psql failed"
[ "$F0" = 0 ] || fail "failed_count is $F0 before the outage"
BEFORE=$(archiver last_archived_wal)
note "before the outage: last archived $BEFORE, $(sql "$PORT" "select count(*) from seq_log") rows"

CASE="outage"
t0=$(date +%s)
repo_server_stop
rose=
while [ $(($(date +%s) - t0)) -lt "$OUTAGE_S" ]; do
    if [ -z "$rose" ] && [ "$(archiver failed_count)" -gt "$F0" ]; then
        rose=$(($(date +%s) - t0))
    fi
    sleep 0.5
done
F1=$(archiver failed_count)
DURING=$(archiver last_archived_wal)
CURRENT=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())")
if [ -n "$rose" ]; then
    note "failed_count rose ${rose}s into the outage ($F0 -> $F1 after ${OUTAGE_S}s)"
else
    fail "pg_stat_archiver.failed_count did not rise during a ${OUTAGE_S}s outage ($F0 -> $F1)"
fi
note "during the outage: last archived $DURING (before: $BEFORE), WAL now at $CURRENT," \
    "last failed $(archiver last_failed_wal)"
kill -0 "$PGBENCH_PID" 2>/dev/null || fail "pgbench stopped during the outage"

CASE="recovery"
repo_server_restart
t1=$(date +%s)
sql "$PORT" "select pg_reload_conf()" >/dev/null # wakes the archiver from its 60 s sleep
# the backlog: everything completed before the server came back
wait_archived "$PORT" "$CURRENT" 90 || { show_log "$PGD.log" 30; die "the archiver did not catch up"; }
note "the backlog up to $CURRENT was archived $(($(date +%s) - t1))s after the server came back"
sleep 3
kill -TERM "$PGBENCH_PID" 2>/dev/null
bg_wait "$PGBENCH_PID" 20 >/dev/null
EXPECT_SEQ=$(sql "$PORT" "select count(*) || ' ' || max(n) from seq_log") || die "psql failed"
EXPECT_SUMS=$(pgbench_sums "$PORT") || die "checksums failed"
LAST=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$LAST" 60 || { show_log "$PGD.log" 30; die "archiving did not finish"; }
note "load stopped: $EXPECT_SEQ (rows, max n) in seq_log; last switch $LAST;" \
    "archiver: $(archiver "failed_count || ' failed, ' || archived_count || ' archived'")"

CASE="archive"
archived_segments >"$T/archived"
FIRST=$(head -1 "$T/archived")
LAST_STORED=$(tail -1 "$T/archived")
assert_eq "$LAST_STORED" "$LAST" "the newest segment in the repository"
assert_eq "$(archiver last_archived_wal)" "$LAST" "pg_stat_archiver.last_archived_wal"
# no gap: every segment number from the first to the last
first_n=$(seg_num "$FIRST" 1)
last_n=$(seg_num "$LAST" 1)
for n in $(seq "$first_n" "$last_n"); do seg_name 1 "$n" 1; done >"$T/expected"
missing=$(LC_ALL=C comm -23 "$T/expected" "$T/archived")
[ -z "$missing" ] || fail "segments missing from the repository between $FIRST and $LAST: $(echo $missing)"
note "$(wc -l <"$T/archived") segments archived, $FIRST .. $LAST"
bb_list "$CONF" || die "list failed"
start=$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID').wal_start")
[[ "$start" =~ ^[0-9A-F]{24}$ ]] || fail "list --json gives the backup no wal_start: $start"
[[ ! "$start" < "$FIRST" ]] || fail "the backup starts at $start, before the first archived segment $FIRST"
# pg_wal: every completed segment up to the last switch is archived, none waits
(cd "$PGD/pg_wal" && ls | grep -E '^[0-9A-F]{24}$' | LC_ALL=C sort) >"$T/pg_wal"
# (compared as strings: awk takes a name of decimal digits for a number, and a double cannot tell
# ...0040 from ...0041, so the current segment after the last switch was counted as unarchived)
unarchived=$(LC_ALL=C comm -23 <(awk -v l="$LAST" '($0 "") <= (l "")' "$T/pg_wal") "$T/archived")
[ -z "$unarchived" ] || fail "segments in pg_wal but not in the repository: $(echo $unarchived)"
ready=$(ls "$PGD/pg_wal/archive_status" | grep '\.ready$')
[ -z "$ready" ] || fail "segments still .ready in pg_wal/archive_status: $(echo $ready)"
# push-ahead took part: calls of the archiver answered from its records (walsafe.log, info)
ahead=$(grep -c 'was archived ahead by an earlier call' "$T/walsafe.log")
[ "$ahead" -gt 0 ] || fail "no archiver call was answered by push-ahead (walsafe.log)"
note "$ahead archiver calls answered by push-ahead"
pg_stop "$PGD"

CASE="PITR to the end of the archive"
bb_restore "$CONF" "$COPY" || die "restore failed"
t2=$(date +%s)
start_restored "$COPY"
pg_wait_promoted "$RPORT" "$COPY" 90 || die "the restored copy did not recover"
note "recovered to the end of the archive in $(($(date +%s) - t2))s" \
    "($(grep -c 'restored log file ".*" from archive' "$COPY.log") WAL files restored)"
assert_eq "$(sql "$RPORT" "select count(*) || ' ' || max(n) from seq_log")" "$EXPECT_SEQ" \
    "seq_log (rows, max n) after recovery"
assert_eq "$(pgbench_sums "$RPORT")" "$EXPECT_SUMS" "pgbench tables after recovery"
pg_stop "$COPY"
# Uploads cut by the outage: S3 must have none left open; on SFTP a cut upload leaves its temp
# file (wal-prune removes it a day later), never a partial object under a final name.
if [ "$REPO_KIND" = s3 ]; then
    assert_repo_clean "repository at the end"
else
    note "$(find "$REPO_FILES" -name '.walsafe-tmp*' | wc -l) temp files of cut uploads in the repository"
fi
finish
