#!/usr/bin/env bash
# t_timeline: 16 MiB segments and a timeline switch, as in production after a PITR. A copy
# recovered to a point in time and promoted keeps archiving into the same repository (same
# system): its .history file and timeline-2 segments are archived. A second copy from the same base backup then recovers to the end of
# the archive, following the history file onto timeline 2.
# The repository is REPO_KIND (local, s3 or sftp; default local): t_timeline_s3.sh and
# t_timeline_sftp.sh run this scenario against the S3 and SFTP test servers (lib.sh: repo_setup);
# t_timeline_module.sh archives through the walsafe_archive module (lib.sh: archive_settings).
. "$(dirname "$0")/lib.sh"
setup_tmp

ROWS=2000
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
COPY=$T/copy
COPY2=$T/copy2
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
mapfile -t ARCHIVE < <(archive_settings "$CONF")
RESTORE="restore_command = '$WAL_FETCH --config $CONF %f %p'"

CASE="primary"
pg_init "$PGD" # default 16 MiB segments
PORT=$(free_port)
pg_conf "$PGD" "$PORT" "archive_mode = on" "${ARCHIVE[@]}"
pg_start "$PGD"
sql "$PORT" "create table t (id int primary key, batch int not null)" || die "create table failed"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X none \
    -c fast -D "$COPY" >"$T/basebackup.log" 2>&1 ||
    { cat "$T/basebackup.log"; die "pg_basebackup failed"; }
cp -a "$COPY" "$COPY2" || die "could not copy the base backup"

insert_batch() { # PORT BATCH
    sql "$1" "insert into t select g, $2 from generate_series($((($2 - 1) * ROWS + 1)), $(($2 * ROWS))) g" ||
        die "insert of batch $2 failed"
}
insert_batch "$PORT" 1
sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
insert_batch "$PORT" 2
sleep 1
TARGET=$(sql "$PORT" "select clock_timestamp()") || die "clock_timestamp failed"
sleep 1
insert_batch "$PORT" 3
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 90 || { show_log "$PGD.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "primary archiver failures"

# Compared while the primary runs: its shutdown checkpoint would recycle the segment.
CASE="fetch of a 16 MiB segment"
[ -f "$(repo_file "main/wal/${last:0:16}/$last")" ] || fail "$last is not in the repository"
new_dest
run "$WAL_FETCH" --config "$CONF" "$last" "$DEST"
assert_rc 0 "wal-fetch $last" &&
    { cmp -s "$DEST" "$PGD/pg_wal/$last" || fail "fetched $last differs from the primary's pg_wal"; }
assert_eq "$(stat -c %s "$DEST" 2>/dev/null)" $((16 * 1024 * 1024)) "size of the fetched segment"
pg_stop "$PGD"

CASE="PITR onto timeline 2, archiving on"
CPORT=$(free_port)
while [ "$CPORT" = "$PORT" ]; do CPORT=$(free_port); done
pg_conf "$COPY" "$CPORT" "archive_mode = on" "${ARCHIVE[@]}" "$RESTORE" \
    "recovery_target_time = '$TARGET'" "recovery_target_action = 'promote'"
touch "$COPY/recovery.signal" && chown postgres: "$COPY/recovery.signal"
pg_start "$COPY"

wait_promoted() { # PORT DIR
    local start r
    start=$(date +%s)
    while :; do
        r=$(sql "$1" "select pg_is_in_recovery()" 2>/dev/null)
        [ "$r" = "f" ] && return 0
        if [ $(($(date +%s) - start)) -ge 90 ] || [ ! -f "$2/postmaster.pid" ]; then
            show_log "$2.log" 40
            die "$2 did not finish recovery (pg_is_in_recovery: ${r:-no answer})"
        fi
        sleep 0.2
    done
}
wait_promoted "$CPORT" "$COPY"
assert_eq "$(sql "$CPORT" "select count(*) || ' ' || max(batch) from t")" "$((2 * ROWS)) 2" \
    "rows after PITR (count, newest batch)"
assert_eq "$(sql "$CPORT" "select timeline_id from pg_control_checkpoint()")" 2 "timeline after promotion"
insert_batch "$CPORT" 4
last2=$(sql "$CPORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
[ "${last2:0:8}" = "00000002" ] || fail "the promoted copy writes $last2, not timeline 2"
wait_archived "$CPORT" "$last2" 90 || show_log "$COPY.log"
assert_eq "$(sql "$CPORT" "select failed_count from pg_stat_archiver")" 0 "copy archiver failures"

[ -f "$(repo_file main/wal/00000002.history)" ] || fail "00000002.history was not archived"
new_dest
run "$WAL_FETCH" --config "$CONF" 00000002.history "$DEST"
assert_rc 0 "wal-fetch 00000002.history" &&
    { cmp -s "$DEST" "$COPY/pg_wal/00000002.history" || fail "fetched 00000002.history differs"; }
# (No .partial here: PostgreSQL archives the old timeline's last segment as .partial only when
# it did not come from the archive; t_bad_inputs pushes a .partial file directly.)
[ -f "$(repo_file "main/wal/${last2:0:16}/$last2")" ] || fail "timeline-2 segment $last2 not archived"
pg_stop "$COPY"

CASE="recovery to the end of the archive across timelines"
C2PORT=$(free_port)
while [ "$C2PORT" = "$PORT" ] || [ "$C2PORT" = "$CPORT" ]; do C2PORT=$(free_port); done
pg_conf "$COPY2" "$C2PORT" "archive_mode = off" "archive_command = ''" "$RESTORE" \
    "recovery_target_timeline = 'latest'"
touch "$COPY2/recovery.signal" && chown postgres: "$COPY2/recovery.signal"
pg_start "$COPY2"
wait_promoted "$C2PORT" "$COPY2"
assert_eq "$(sql "$C2PORT" "select string_agg(batch || ':' || n, ',' order by batch)
                            from (select batch, count(*) n from t group by batch) s")" \
    "1:$ROWS,2:$ROWS,4:$ROWS" "batches after recovery along timeline 2"
grep -q 'restored log file "00000002.history" from archive' "$COPY2.log" ||
    fail "00000002.history was not restored from the archive"
grep -q "restored log file \"$last2\" from archive" "$COPY2.log" ||
    fail "timeline-2 segment $last2 was not restored from the archive"
if grep -q -E 'wal-(fetch|push): (ERROR|FATAL)' "$COPY.log" "$COPY2.log"; then
    fail "walsafe reported errors:"
    grep -h -E 'wal-(fetch|push)' "$COPY.log" "$COPY2.log" | head -10 | sed 's/^/      /'
fi
pg_stop "$COPY2"

CASE="repository"
assert_repo_clean "repository"

finish
