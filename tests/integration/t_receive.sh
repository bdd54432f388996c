#!/usr/bin/env bash
# t_receive: wal-receive streams WAL into the repository, so a lost server loses seconds, not a
# segment (issue 19, docs/design/receive.md). One primary (1 MiB segments, TCP, scram, the role
# walsafe_repl with REPLICATION only, its password in a .pgpass file: remote.sh) archives with
# wal-push into an encrypted local repository while wal-receive (receive_flush_interval = 1s)
# streams into the same repository.
#   - slots: --create-slot (physical, WAL reserved), a duplicate --create-slot, --drop-slot, a
#     --drop-slot of a missing slot: each failure exit 1 and one line naming the slot; a receiver
#     started on a missing slot says so in its first line naming the slot (it retries, and exits 0
#     on SIGTERM);
#   - the identical-content rule in both directions: with the archiver stopped (SIGSTOP) the
#     receiver stores complete segments itself (byte-identical to pg_wal's) and wal-push, resumed,
#     accepts them; with the receiver stopped wal-push stores them first and the receiver,
#     resumed, accepts them; the archiver never fails;
#   - --status while streaming: the slot, a received position, no last error;
#   - pgbench -i -s 1, a base backup, then a client committing numbered rows (each commit's number
#     and time logged after its COMMIT) and pgbench at a low rate; the primary is killed with
#     SIGKILL (every process) and its data directory deleted. The repository is copied at that
#     instant, with the receiver frozen (SIGSTOP), so the restore sees only what the periodic
#     flushes stored; then the receiver gets SIGTERM and must exit 0 after flushing the rest.
#   - the backup restored from that copy with no target recovers to the end of the streamed WAL:
#     wal-fetch serves the partial segment (the server's log shows it restored, the repository
#     has no WAL object for it) and recovery ends normally; every row whose commit was logged
#     more than receive_flush_interval + 2 s (SLACK_S) before the kill is there; pgbench's
#     balances agree.
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
. "$(dirname "$0")/receive.sh"

FLUSH_S=1
# The check below allows the flush SLACK_S seconds past its interval: a loaded CI machine (the
# ASan pass, two tests at once on 2 cores) can delay a flush by more than a second.
SLACK_S=2
SNAP=$T/repo-at-kill
SNAPCONF=$T/snapshot.conf
RESTORED=$T/restored
recv_primary local "receive_flush_interval = ${FLUSH_S}s"

CASE="slots"
recv "$RCONF" --create-slot
assert_rc 0 "--create-slot"
assert_eq "$(sql "$PORT" "select slot_type || ' ' || (restart_lsn is not null)
                          from pg_replication_slots where slot_name = 'walsafe'")" "physical true" \
    "slot walsafe after --create-slot (physical, WAL reserved)"
recv "$RCONF" --create-slot
one_line "a duplicate --create-slot" '"?walsafe"?.*exist|exist.*"?walsafe'
recv "$RCONF" --drop-slot
assert_rc 0 "--drop-slot"
assert_eq "$(sql "$PORT" "select count(*) from pg_replication_slots")" 0 "slots after --drop-slot"
recv "$RCONF" --drop-slot
one_line "--drop-slot of a missing slot" 'walsafe'
recv_first_error "a receiver on a missing slot" "$T/receive-noslot.log" "$RCONF" 'walsafe'
recv "$RCONF" --create-slot
assert_rc 0 "--create-slot again" || die "could not create the slot"

CASE="streaming"
recv_start "$T/receive.log" "$RCONF" -v
wait_slot_active "$PORT" walsafe 20 || { cat "$T/receive.log"; die "the receiver does not stream"; }
pgbench_run "$PORT" -i -q -s 1 || die "pgbench -i failed"
sql "$PORT" "create table c (id int primary key, at timestamptz not null)" || die "create table c failed"

# switch: a row and a segment switch; prints the segment closed.
switch() {
    sql "$PORT" "insert into c values (-$1, now()); select pg_walfile_name(pg_switch_wal())"
}
pid_of() { sql "$PORT" "select pid from pg_stat_activity where backend_type = '$1'"; }

CASE="receiver first, then wal-push"
ARCH_PID=$(pid_of archiver)
[ -n "$ARCH_PID" ] || die "no archiver process"
kill -STOP "$ARCH_PID"
for i in 1 2; do SEG_B[i]=$(switch "$i") || die "switch failed"; done
for i in 1 2; do wait_repo_file "main/wal/${SEG_B[i]:0:16}/${SEG_B[i]}" 30 "$RECV_PID"; done
for i in 1 2; do fetch_cmp "$CONF" "${SEG_B[i]}" "$PGD/pg_wal/${SEG_B[i]}" "segment stored by the receiver"; done
kill -CONT "$ARCH_PID"
wait_archived "$PORT" "${SEG_B[2]}" 30
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 \
    "archiver failures (wal-push after the receiver)"

CASE="wal-push first, then the receiver"
kill -STOP "$RECV_PID"
for i in 1 2; do SEG_A[i]=$(switch $((i + 2))) || die "switch failed"; done
wait_archived "$PORT" "${SEG_A[2]}" 30
END_A=$(sql "$PORT" "select pg_current_wal_lsn()")
kill -CONT "$RECV_PID"
# The receiver, resumed, must take these segments (stored already, identical) and go on.
start=$(date +%s)
until [ "$(sql "$PORT" "select flush_lsn >= '$END_A' from pg_stat_replication
                        where pid = (select active_pid from pg_replication_slots
                                     where slot_name = 'walsafe')")" = t ]; do
    if [ $(($(date +%s) - start)) -ge 30 ] || ! kill -0 "$RECV_PID" 2>/dev/null; then
        fail "the resumed receiver did not report $END_A flushed within 30s"
        sed 's/^/      receiver: /' "$T/receive.log" | tail -10
        break
    fi
    sleep 0.1
done
left=$(find "$SPOOL" -type f -name '[0-9A-F]*' ! -name '*.*' -printf '%f ')
start=$(date +%s)
while [ -n "$left" ] && [ $(($(date +%s) - start)) -lt 30 ]; do
    sleep 0.1
    left=$(find "$SPOOL" -type f -name '[0-9A-F]*' ! -name '*.*' -printf '%f ')
done
assert_eq "$left" "" "complete segments left in the spool after the segments wal-push stored"
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "archiver failures"
if grep -q -E 'ERROR|FATAL|differ|conflict' "$T/receive.log"; then
    fail "the receiver reported errors while wal-push archived the same segments:"
    grep -E 'ERROR|FATAL|differ|conflict' "$T/receive.log" | head -5 | sed 's/^/      /'
fi

CASE="base backup"
bb_create "$CONF"

CASE="workload"
# The client's segment starts empty and the workload writes far less than 1 MiB in it, so the
# kill finds it partial and streamed for several seconds.
SEG=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
SEG=$(seg_name 1 $(($(seg_num "$SEG" 1) + 1)) 1)
bg_start "$T/pgbench-bg.log" env PGOPTIONS="$PGBENCH_OPTIONS" "$PGBIN/pgbench" -h "$SOCK" \
    -p "$PORT" -U postgres -n -c 1 -R 4 -T 60 postgres
# Each COMMIT is followed by a NOTICE "committed N EPOCH" sent as soon as it returned (the
# server flushes every notice to the client at once); psql writes notices to unbuffered stderr.
bg_start "$T/client.log" pg_psql "$PORT" -c "
    do \$\$ begin
        for i in 1..1000000 loop
            insert into c values (i, clock_timestamp());
            commit;
            raise notice 'committed % %', i, extract(epoch from clock_timestamp());
            perform pg_sleep(0.003);
        end loop;
    end \$\$"
CLIENT_PID=$BG_PID
first_commit() { sed -n 's/^NOTICE:  committed 1 \([0-9.]*\)$/\1/p' "$T/client.log"; }
start=$(date +%s)
until [ -n "$(first_commit)" ]; do
    [ $(($(date +%s) - start)) -lt 20 ] || { cat "$T/client.log"; die "the client committed nothing"; }
    kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$T/client.log"; die "the client stopped"; }
    sleep 0.1
done
# Six seconds of commits: the client's log must reach them (the kill is at its own time).
t1=$(first_commit)
sleep "$(awk -v t="$t1" -v now="$(date +%s.%N)" 'BEGIN { d = t + 6 - now; print (d > 0 ? d : 0) }')"
assert_eq "$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())")" "$SEG" \
    "the segment in progress (the client wrote less than a segment)"

CASE="--status while streaming"
recv "$RCONF" --status
if assert_rc 0 "--status"; then
    grep -q '^slot: walsafe' "$T/.last.out" || fail "--status does not name the slot: $(head -3 "$T/.last.out")"
    grep -q -E '^received: [0-9A-F]+/[0-9A-F]+' "$T/.last.out" ||
        fail "--status shows nothing received: $(grep '^received' "$T/.last.out")"
    assert_eq "$(sed -n 's/^last error: //p' "$T/.last.out")" none "last error in --status"
fi

CASE="kill"
crash_primary "$SNAP"
rm -rf "$PGD"
recv_stop 30
assert_eq "$RECV_RC" 0 "exit status of wal-receive after SIGTERM"
bg_wait "$CLIENT_PID" 10 >/dev/null
LOGGED=$(grep -c '^NOTICE:  committed ' "$T/client.log")
note "client: $LOGGED commits logged; the kill at $KILL_AT"

CASE="what was streamed"
SNAP_END=$(stream_end "$SNAP" "$SEG")
LIVE_END=$(stream_end "$T/repo" "$SEG")
note "$SEG: chunks $(stream_chunks "$SNAP" "$SEG" | wc -l) at the kill up to byte $SNAP_END," \
    "$(stream_chunks "$T/repo" "$SEG" | wc -l) after SIGTERM up to $LIVE_END"
[ "$SNAP_END" -gt 0 ] || fail "no streamed chunk of $SEG in the repository at the kill"
[ "$LIVE_END" -ge "$SNAP_END" ] || fail "the streamed cover of $SEG shrank after SIGTERM ($SNAP_END -> $LIVE_END)"
[ -e "$(wal_obj "$SEG")" ] && fail "$SEG is in the repository as a complete segment"
for d in "$SNAP" "$T/repo"; do
    other=$(find "$d" -path '*/stream/*' -type f ! -name "$SEG.*" -printf '%f\n' | head -3)
    [ -z "$other" ] || fail "chunks of other segments than $SEG in ${d##*/}: $other"
done

CASE="restore with no target"
write_conf "$SNAPCONF" "repo = '$SNAP'" "encrypt_key_file = '$KEY'"
bb_restore "$SNAPCONF" "$RESTORED" || die "restore failed"
start_restored "$RESTORED"
pg_wait_promoted "$RPORT" "$RESTORED" 60 || die "recovery did not end"
grep -q "restored log file \"$SEG\" from archive" "$RESTORED.log" ||
    { fail "the partial segment $SEG was not restored from the repository"; show_log "$RESTORED.log" 20; }
if grep -q -E 'wal-fetch: (ERROR|FATAL)' "$RESTORED.log"; then
    fail "wal-fetch reported errors during recovery:"
    grep -E 'wal-fetch' "$RESTORED.log" | head -5 | sed 's/^/      /'
fi

CASE="rows after recovery"
# need: the newest commit logged more than FLUSH_S + SLACK_S s before the kill (commits are in
# order).
read -r NEED LAST1 LAST2 < <(awk -v k="$KILL_AT" -v m=$((FLUSH_S + SLACK_S)) '
    /^NOTICE:  committed / { if ($4 < k - m) need = $3; if ($4 < k - 1) l1 = $3; l = $3 }
    END { print need + 0, l1 + 0, l + 0 }' "$T/client.log")
[ "$NEED" -ge 20 ] || die "only $NEED commits were logged more than $((FLUSH_S + SLACK_S))s before the kill"
assert_eq "$(sql "$RPORT" "select count(*) from c where id between 1 and $NEED")" "$NEED" \
    "rows 1..$NEED (logged committed more than $((FLUSH_S + SLACK_S))s before the kill)"
read -r HAVE MAXID < <(sql "$RPORT" "select count(*), coalesce(max(id), 0) from c where id > 0" | tr '|' ' ')
assert_eq "$HAVE" "$MAXID" "rows 1..max(id) without a gap"
note "rows: $NEED needed, $HAVE present (max id $MAXID); of the last $((FLUSH_S + SLACK_S))s before the kill" \
    "$((MAXID > NEED ? (MAXID < LAST2 ? MAXID : LAST2) - NEED : 0)) of $((LAST2 - NEED)) logged commits" \
    "present, of the last second $((MAXID > LAST1 ? (MAXID < LAST2 ? MAXID : LAST2) - LAST1 : 0)) of $((LAST2 - LAST1))"
assert_eq "$(sql "$RPORT" "select concat_ws(' ', (select count(*) > 0 from pgbench_history),
        (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history),
        (select sum(bbalance) from pgbench_branches) = (select sum(delta) from pgbench_history),
        (select sum(tbalance) from pgbench_tellers) = (select sum(delta) from pgbench_history))")" "t t t t" \
    "pgbench balances agree after recovery"
pg_stop "$RESTORED"

CASE="repository"
assert_repo_clean "repository"
finish
