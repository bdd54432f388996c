#!/usr/bin/env bash
# t_standby_local: a local `basebackup create` (pgdata set) on a hot standby, a streaming replica
# of a primary started here, while pgbench writes on the primary. The primary archives into the
# repository (the standby's archive_mode is off: in recovery it would archive nothing unless
# `always`, and then the same segments twice). pg_backup_stop on a standby switches no WAL: the
# backup's last segment reaches the repository when the primary finishes it, so while create
# waits for its WAL the test switches WAL on the primary (in production: archive_timeout on the
# primary, or its own traffic). Then:
#   - the backup is complete, its backup_label says BACKUP FROM: standby;
#   - restored with --target-immediate it is consistent (pgbench's balances agree), and no page
#     of it is newer than the minimum recovery point of its pg_control (PostgreSQL ends the
#     recovery of a standby's backup there: pg_control must be copied after every data file);
#   - restored to the end of the archive it holds exactly the primary's data.
. "$(dirname "$0")/lib.sh"
setup_tmp

KEY=$T/walsafe.key
CONF=$T/walsafe.conf # the primary's archive_command
BCONF=$T/backup.conf # basebackup's, against the standby
PGD=$T/primary
SBY=$T/standby
CASE="primary and streaming standby"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X stream -R \
    -c fast -D "$SBY" >"$T/pg_basebackup.log" 2>&1 ||
    { cat "$T/pg_basebackup.log"; die "pg_basebackup failed"; }
SPORT=$(free_port)
while [ "$SPORT" = "$PORT" ]; do SPORT=$(free_port); done
pg_conf "$SBY" "$SPORT" "archive_mode = off" "archive_command = ''" "hot_standby = on"
pg_start "$SBY"
assert_eq "$(sql "$SPORT" "select pg_is_in_recovery()")" t "the standby is in recovery"
write_conf "$BCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "pgdata = '$SBY'" \
    "pg_conninfo = 'host=$SOCK port=$SPORT user=postgres dbname=postgres'" "timeout = 90"

# wait_replayed: until the standby has replayed what the primary has written so far.
wait_replayed() {
    local lsn start
    lsn=$(sql "$PORT" "select pg_current_wal_lsn()") || die "psql failed"
    start=$(date +%s)
    until [ "$(sql "$SPORT" "select pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do
        [ $(($(date +%s) - start)) -lt 60 ] || { show_log "$SBY.log"; die "the standby did not replay up to $lsn"; }
        sleep 0.2
    done
}

pgbench_run "$PORT" -i -q -s 2 || die "pgbench -i failed"
# A checkpoint to restart from: the standby's backup starts at a restartpoint.
sql "$PORT" "checkpoint" || die "checkpoint failed"
wait_replayed

CASE="create on the standby under load"
bg_start "$T/pgbench-bg.log" env PGOPTIONS="$PGBENCH_OPTIONS" "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" \
    -U postgres -n -c 2 -T 60 postgres
PGBENCH_PID=$BG_PID
sleep 1
bg_start "$T/create.out" runuser -u postgres -- "$BASEBACKUP" --config "$BCONF" create --fast \
    --label standby-local
CREATE_PID=$BG_PID
t0=$(date +%s)
# The backup's last segment is the primary's to finish: switch while create waits for it.
while kill -0 "$CREATE_PID" 2>/dev/null && [ $(($(date +%s) - t0)) -lt 90 ]; do
    sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
    sleep 0.5
done
bg_wait "$CREATE_PID" 5
rc=$?
assert_eq "$rc" 0 "basebackup create on the standby" || { cat "$T/create.out"; die "create failed"; }
BACKUP_ID=$(grep -E '^[0-9]{8}T[0-9]{6}Z$' "$T/create.out")
[ -n "$BACKUP_ID" ] || die "create printed no backup id: $(cat "$T/create.out")"
note "backup $BACKUP_ID taken on the standby in $(($(date +%s) - t0))s"
kill -0 "$PGBENCH_PID" 2>/dev/null || fail "pgbench ended before the backup did (not taken under load)"
kill -TERM "$PGBENCH_PID" 2>/dev/null
bg_wait "$PGBENCH_PID" 20 >/dev/null
WANT=$(pgbench_sums "$PORT") || die "checksums failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || die "archiving did not finish"
wait_replayed
pg_stop "$SBY"
pg_stop "$PGD"

CASE="list and verify"
if bb_list "$BCONF"; then
    assert_eq "$(backup_status "$BACKUP_ID")" complete "status of $BACKUP_ID"
fi
bb --config "$BCONF" verify "$BACKUP_ID"
assert_rc 0 "verify $BACKUP_ID"

# max_page_lsn DIR: the newest page LSN of the relation files of a data directory, as X/Y.
max_page_lsn() {
    node -e '
        const fs = require("fs"), path = require("path");
        let max = 0n;
        const rel = /^[0-9]+(_(fsm|vm))?(\.[0-9]+)?$/;
        function walk(d) {
            for (const e of fs.readdirSync(d, {withFileTypes: true})) {
                const p = path.join(d, e.name);
                if (e.isDirectory()) walk(p);
                else if (e.isFile() && rel.test(e.name)) {
                    const b = fs.readFileSync(p);
                    for (let o = 0; o + 8192 <= b.length; o += 8192) {
                        const lsn = (BigInt(b.readUInt32LE(o)) << 32n) | BigInt(b.readUInt32LE(o + 4));
                        if (lsn > max) max = lsn;
                    }
                }
            }
        }
        walk(path.join(process.argv[1], "base"));
        walk(path.join(process.argv[1], "global"));
        console.log((max >> 32n).toString(16).toUpperCase() + "/" + (max & 0xffffffffn).toString(16).toUpperCase());
    ' "$1"
}
lsn_num() { printf '%d\n' $(((16#${1%/*} << 32) | 16#${1#*/})); }

CASE="restore --target-immediate"
R1=$T/r_immediate
if bb_restore "$BCONF" "$R1" --backup "$BACKUP_ID" --target-immediate --target-action promote; then
    grep -qx 'BACKUP FROM: standby' "$R1/backup_label" ||
        fail "backup_label does not say BACKUP FROM: standby: $(cat "$R1/backup_label")"
    minrec=$("$PGBIN/pg_controldata" -D "$R1" | sed -n 's/^Minimum recovery ending location: *//p')
    newest=$(max_page_lsn "$R1")
    note "restored pg_control: minimum recovery point $minrec; newest page $newest"
    [ "$(lsn_num "$newest")" -le "$(lsn_num "$minrec")" ] ||
        fail "a page of the backup (LSN $newest) is newer than the minimum recovery point of its pg_control ($minrec): pg_control was not copied last"
    start_restored "$R1"
    if pg_wait_promoted "$RPORT" "$R1"; then
        assert_eq "$(sql "$RPORT" "select (select sum(abalance) from pgbench_accounts) = (select sum(tbalance) from pgbench_tellers)
                                   and (select sum(bbalance) from pgbench_branches) = (select coalesce(sum(delta), 0) from pgbench_history)")" \
            t "balances agree with pgbench_history"
    fi
    pg_stop "$R1"
fi

CASE="restore to the end of the archive"
R2=$T/r_end
if bb_restore "$BCONF" "$R2" --backup "$BACKUP_ID"; then
    start_restored "$R2"
    if pg_wait_promoted "$RPORT" "$R2"; then
        assert_eq "$(pgbench_sums "$RPORT")" "$WANT" "pgbench checksums of the restored copy"
    fi
    pg_stop "$R2"
fi

CASE="repository"
assert_repo_clean "repository"
finish
