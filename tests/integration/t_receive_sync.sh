#!/usr/bin/env bash
# t_receive_sync: receive_synchronous = on loses no committed transaction (issue 19 item 4,
# docs/design/receive.md). The receiver is the primary's synchronous standby
# (synchronous_standby_names = 'main', its application_name); receive_flush_interval is 10 s,
# so only the synchronous path can have stored the last commits in time. After a base backup,
# N single-row transactions commit one by one (each COMMIT returns only once the receiver
# reported those bytes flushed); right after the last one the receiver is frozen, the primary
# killed with SIGKILL (no checkpoint, no switch) and the repository copied. The backup restored
# from that copy with no target recovers (wal-fetch serves the streamed partial segment) and
# holds all N rows. The asynchronous mode is not checked for loss: what it loses depends on
# timing.
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
. "$(dirname "$0")/receive.sh"

N=20
SNAP=$T/repo-at-kill
SNAPCONF=$T/snapshot.conf
RESTORED=$T/restored
recv_primary local "receive_flush_interval = 10s" "receive_synchronous = on"

CASE="synchronous standby"
recv "$RCONF" --create-slot
assert_rc 0 "--create-slot" || die "could not create the slot"
recv_start "$T/receive.log" "$RCONF"
wait_slot_active "$PORT" walsafe 20 || { cat "$T/receive.log"; die "the receiver does not stream"; }
sql "$PORT" "alter system set synchronous_standby_names = 'main'" >/dev/null &&
    sql "$PORT" "select pg_reload_conf()" >/dev/null || die "could not set synchronous_standby_names"
start=$(date +%s)
until [ "$(sql "$PORT" "select string_agg(application_name || ' ' || sync_state, ',')
                        from pg_stat_replication")" = "main sync" ]; do
    [ $(($(date +%s) - start)) -lt 20 ] ||
        die "the receiver is not the synchronous standby: $(sql "$PORT" "select application_name, sync_state from pg_stat_replication")"
    sleep 0.1
done
sql "$PORT" "create table c (id int primary key)" || die "create table c failed"
bb_create "$CONF"

CASE="commits, then the crash"
for i in $(seq 1 "$N"); do
    sql "$PORT" "insert into c values ($i)" || die "insert $i failed"
done
crash_primary "$SNAP"
rm -rf "$PGD"
recv_stop 30
assert_eq "$RECV_RC" 0 "exit status of wal-receive after SIGTERM"

CASE="restore with no target"
write_conf "$SNAPCONF" "repo = '$SNAP'" "encrypt_key_file = '$KEY'"
bb_restore "$SNAPCONF" "$RESTORED" || die "restore failed"
start_restored "$RESTORED"
pg_wait_promoted "$RPORT" "$RESTORED" 60 || die "recovery did not end"
assert_eq "$(sql "$RPORT" "select count(*) || ' ' || coalesce(max(id), 0) from c")" "$N $N" \
    "rows committed before the kill (count, max id)"
pg_stop "$RESTORED"

CASE="repository"
assert_repo_clean "repository"
finish
