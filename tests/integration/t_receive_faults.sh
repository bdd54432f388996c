#!/usr/bin/env bash
# t_receive_faults: wal-receive under bad input and faults (issue 19, item 6), then a timeline
# switch (item 7). The primary (1 MiB segments, TCP, scram, .pgpass: remote.sh) does not archive:
# every WAL object in the repository is the receiver's, and each is compared byte for byte with
# the server's pg_wal (checkpoint_timeout 1h and the slot keep every segment there).
#   - a role without REPLICATION: --create-slot exits 1 with one line; a receiver says so in its
#     first line (it retries, and exits 0 on SIGTERM);
#   - the connection cut mid-message (tests/tools/faultproxy closes it after 300 kB from the
#     server, on the first two connections): the receiver reconnects (the server logs each
#     connection) and every segment it stores is identical to pg_wal's;
#   - the repository unreachable (its root chmod 000) while 4 segments are written, with
#     receive_spool_segments = 2: the spool holds no more than 2 complete segments and the
#     server's flush position stays behind (the slot keeps the WAL), the receiver says so; once
#     the repository is back every segment is stored, identical;
#   - a server of another system identifier (a second cluster) than the repository's cluster:
#     exit 1, one line, the repository unchanged;
#   - SIGTERM: exit 0;
#   - a timeline switch: a streaming standby of the primary is promoted after a clean shutdown
#     of the primary and the receiver is pointed at it: 00000002.history and the timeline-2
#     segments are stored identical to the new primary's.
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
. "$(dirname "$0")/receive.sh"
. "$(dirname "$0")/s3.sh" # fp_start, fp_stop_all (the fault proxy)
STOP_HOOKS+=(fp_stop_all)

KEY=$T/walsafe.key
PGD=$T/primary
SBY=$T/standby
OTHER=$T/other
SPOOL=$T/spool
make_key "$KEY"
repo_setup local
mkdir -m 700 "$SPOOL" && chown postgres: "$SPOOL" || die "mkdir $SPOOL"
remote_cluster "$PGD" - --wal-segsize=1
remote_roles "$PORT"
write_pgpass "$PGPASSFILE" "127.0.0.1:*:*:walsafe_repl:$REPL_PW" "127.0.0.1:*:*:walsafe_norepl:$NOREPL_PW"
pg_psql "$PORT" -c "alter system set log_connections = on" -c "select pg_reload_conf()" >/dev/null ||
    die "could not set log_connections"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X stream -R \
    -c fast -D "$SBY" >"$T/pg_basebackup.out" 2>&1 ||
    { cat "$T/pg_basebackup.out"; die "pg_basebackup of the primary failed"; }
SPORT=$(free_port)
while [ "$SPORT" = "$PORT" ]; do SPORT=$(free_port); done
remote_settings "$SBY" "$SPORT" "hot_standby = on"
pg_start "$SBY"
RECV_SETTINGS=("encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'" "receive_flush_interval = 1s"
    "receive_spool_segments = 2")
RCONF=$T/receive.conf
remote_conf "$RCONF" "$PORT" "${RECV_SETTINGS[@]}"

# same_as_pg_wal DIR WHAT [GLOB]: every WAL object of the repository (whose name matches GLOB) is
# identical to DIR/pg_wal's file.
same_as_pg_wal() {
    local seg n=0
    for seg in $(find "$T/repo/main/wal" -type f -name "${3:-[0-9A-F]*}" -printf '%f\n' | LC_ALL=C sort); do
        [ -f "$1/pg_wal/$seg" ] || { fail "$2: $seg is in the repository but not in pg_wal"; continue; }
        fetch_cmp "$RCONF" "$seg" "$1/pg_wal/$seg" "$2" && n=$((n + 1))
    done
    note "$2: $n objects identical to pg_wal's"
}

CASE="role without REPLICATION"
NCONF=$T/norepl.conf
write_conf "$NCONF" "${REPO_CONF[@]}" "${RECV_SETTINGS[@]}" \
    "pg_conninfo = 'host=127.0.0.1 port=$PORT user=walsafe_norepl dbname=postgres'"
recv "$NCONF" --create-slot
one_line "--create-slot as a role without REPLICATION" 'REPLICATION|replication'
recv_first_error "a receiver as a role without REPLICATION" "$T/receive-norepl.log" "$NCONF" \
    'REPLICATION|replication'
assert_eq "$(find "$T/repo" -type f | wc -l)" 0 "files in the repository"

CASE="connection cut mid-message"
recv "$RCONF" --create-slot
assert_rc 0 "--create-slot" || die "could not create the slot"
fp_start "$T/fp" "$PORT" close-after-down 300000 first 2 2>"$T/fpstart.err" ||
    die "could not start faultproxy: $(cat "$T/fpstart.err")"
FCONF=$T/receive-fp.conf
remote_conf "$FCONF" "$FP_PORT" "${RECV_SETTINGS[@]}"
conns() { grep -c 'replication connection authorized: user=walsafe_repl' "$PGD.log"; }
C0=$(conns)
recv_start "$T/receive-fp.log" "$FCONF"
for i in 1 2 3; do LAST=$(recv_batch "$i") || die "batch $i failed"; done
wait_repo_file "main/wal/${LAST:0:16}/$LAST" 60 "$RECV_PID" || sed 's/^/      receiver: /' "$T/receive-fp.log"
n=$(($(conns) - C0))
[ "$n" -ge 3 ] || fail "the receiver made $n replication connections through the proxy (2 cut, expected >= 3)"
note "$n replication connections through the proxy; receiver said: $(head -2 "$T/receive-fp.log" | tr '\n' '|')"
same_as_pg_wal "$PGD" "after the cuts"
recv_stop
assert_eq "$RECV_RC" 0 "exit status after SIGTERM"
fp_stop "$FP_DIR"

CASE="repository unreachable"
recv_start "$T/receive.log" "$RCONF"
wait_slot_active "$PORT" walsafe 20
chmod 000 "$T/repo"
for i in 4 5 6 7; do LAST=$(recv_batch "$i") || die "batch $i failed"; done
complete_in_spool() { find "$SPOOL" -type f -name '[0-9A-F]*' ! -name '*.*' | wc -l; }
start=$(date +%s)
until [ "$(complete_in_spool)" -ge 2 ]; do
    [ $(($(date +%s) - start)) -lt 30 ] || { fail "the spool never held 2 complete segments"; break; }
    sleep 0.1
done
sleep 1 # the bound must hold: nothing more may arrive
assert_eq "$(complete_in_spool)" 2 "complete segments in the spool at the bound (receive_spool_segments = 2)"
assert_eq "$(sql "$PORT" "select flush_lsn < pg_current_wal_lsn() from pg_stat_replication
                          where pid = (select active_pid from pg_replication_slots
                                       where slot_name = 'walsafe')")" t \
    "the receiver's flush position stays behind while the repository is unreachable"
assert_eq "$(sql "$PORT" "select count(*) from pg_replication_slots where slot_name = 'walsafe'
                          and restart_lsn < pg_current_wal_lsn()")" 1 "the slot keeps the WAL"
grep -q -E 'repo|permission|denied' "$T/receive.log" ||
    fail "the receiver did not say that the repository is unreachable: $(head -3 "$T/receive.log")"
note "the receiver said: $(grep -m1 . "$T/receive.log")"
chmod 700 "$T/repo"
wait_repo_file "main/wal/${LAST:0:16}/$LAST" 60 "$RECV_PID" || sed 's/^/      receiver: /' "$T/receive.log"
same_as_pg_wal "$PGD" "after the outage"
assert_no_temp_files "$T/repo" "repository after the outage"
recv_stop
assert_eq "$RECV_RC" 0 "exit status after SIGTERM"

CASE="another system identifier"
pg_init "$OTHER"
OPORT=$(free_port)
while [ "$OPORT" = "$PORT" ] || [ "$OPORT" = "$SPORT" ]; do OPORT=$(free_port); done
remote_settings "$OTHER" "$OPORT"
remote_hba "$OTHER"
pg_start "$OTHER"
remote_roles "$OPORT"
OCONF=$T/other.conf
remote_conf "$OCONF" "$OPORT" "${RECV_SETTINGS[@]}"
before=$(repo_state "$T/repo")
recv "$OCONF" --create-slot # refused or not: the receiver must refuse the server
run timeout 20 "${AS_PG[@]}" "$WAL_RECEIVE" --config "$OCONF"
one_line "a receiver on a server of another system" 'system identifier|database system'
assert_eq "$(repo_state "$T/repo")" "$before" "the repository after the other server was refused"
pg_stop "$OTHER"

CASE="timeline switch"
pg_stop "$PGD" # clean: the standby has every byte of timeline 1
sql "$SPORT" "select pg_promote()" >/dev/null || die "promotion failed"
PORT=$SPORT
TCONF=$T/receive-tl2.conf
remote_conf "$TCONF" "$SPORT" "${RECV_SETTINGS[@]}"
recv "$TCONF" --create-slot
assert_rc 0 "--create-slot on the promoted standby"
recv_start "$T/receive-tl2.log" "$TCONF"
LAST=$(recv_batch 8) || die "batch 8 failed"
[ "${LAST:0:8}" = 00000002 ] || fail "the promoted standby wrote $LAST, not timeline 2"
wait_repo_file main/wal/00000002.history 30 "$RECV_PID" &&
    fetch_cmp "$TCONF" 00000002.history "$SBY/pg_wal/00000002.history" "timeline history"
wait_repo_file "main/wal/${LAST:0:16}/$LAST" 30 "$RECV_PID" || sed 's/^/      receiver: /' "$T/receive-tl2.log"
RCONF=$TCONF same_as_pg_wal "$SBY" "timeline 2" '00000002[0-9A-F]*'
n=$(find "$T/repo/main/wal" -type f -name '00000002[0-9A-F]*' | wc -l)
[ "$n" -ge 1 ] || fail "no timeline-2 segment in the repository"
recv_stop
assert_eq "$RECV_RC" 0 "exit status after SIGTERM"
pg_stop "$SBY"
assert_repo_clean "repository"
finish
