#!/usr/bin/env bash
# t_receive_spool_full: wal-receive with its spool on a full file system (issue 19, item 6). The
# spool_dir is on a 3 MiB tmpfs that the test mounts under its temp dir (unmounted by cleanup,
# also on failure); the primary (1 MiB segments, TCP, scram, .pgpass: remote.sh) does not
# archive, so every WAL object is the receiver's. Once the receiver streams, a filler file takes
# every free byte of the tmpfs and 3 segments of WAL are written:
#   - the receiver says so in one error naming the spool (no space left), at most one warning
#     that the status file of the spool cannot be written, nothing else and nothing twice;
#   - it acknowledges nothing it does not hold: sampled for 3 s, the slot's restart_lsn does not
#     pass the end of what the repository holds (complete segments, then the streamed chunks of
#     the next one) and stays behind the server's WAL (the slot keeps it);
#   - the filler removed, it continues: every segment written is stored identical to pg_wal's,
#     and the segment in progress is streamed as chunks that wal-fetch serves as the server's
#     bytes.
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
. "$(dirname "$0")/receive.sh"

MB=1048576
FS=$T/spoolfs
KEY=$T/walsafe.key
PGD=$T/primary
make_key "$KEY"
repo_setup local
remote_cluster "$PGD" - --wal-segsize=1
remote_roles "$PORT"
write_pgpass "$PGPASSFILE" "127.0.0.1:*:*:walsafe_repl:$REPL_PW"
CASE="spool file system"
mkdir -m 700 "$FS" || die "mkdir $FS"
mount -t tmpfs -o size=3m,mode=0755 tmpfs "$FS" 2>"$T/mount.err" ||
    die "could not mount a tmpfs at $FS: $(cat "$T/mount.err")"
MOUNTS+=("$FS")
SPOOL=$FS/spool
mkdir -m 700 "$SPOOL" && chown postgres: "$SPOOL" || die "mkdir $SPOOL"
RCONF=$T/receive.conf
remote_conf "$RCONF" "$PORT" "encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'" \
    "receive_flush_interval = 1s"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"

# repo_end: the LSN (decimal) up to which the repository holds timeline 1: after its newest
# segment, the contiguous cover of the next one's chunks.
repo_end() {
    local last n
    last=$(find "$T/repo/main/wal" -type f -name '00000001[0-9A-F]*' -printf '%f\n' | LC_ALL=C sort | tail -1)
    [ -n "$last" ] || { echo 0; return; }
    n=$(($(seg_num "$last" 1) + 1))
    echo $((n * MB + $(stream_end "$T/repo" "$(seg_name 1 "$n" 1)")))
}
restart_lsn() { sql "$PORT" "select (restart_lsn - '0/0')::bigint from pg_replication_slots where slot_name = 'walsafe'"; }
current_lsn() { sql "$PORT" "select (pg_current_wal_lsn() - '0/0')::bigint"; }

CASE="streaming"
recv "$RCONF" --create-slot
assert_rc 0 "--create-slot" || die "could not create the slot"
recv_start "$T/receive.log" "$RCONF"
wait_slot_active "$PORT" walsafe 20 || { cat "$T/receive.log"; die "the receiver does not stream"; }
SEGS[1]=$(recv_batch 1) || die "batch 1 failed"
wait_repo_file "main/wal/${SEGS[1]:0:16}/${SEGS[1]}" 30 "$RECV_PID" || die "the receiver stores nothing"
# the segment leaves the spool after its object is stored: the filler must not get its space
start=$(date +%s)
while [ -e "$SPOOL/main/receive/${SEGS[1]}" ]; do
    [ $(($(date +%s) - start)) -lt 20 ] || die "${SEGS[1]} stays in the spool"
    sleep 0.1
done

CASE="spool full"
dd if=/dev/zero of="$FS/filler" bs=64k 2>/dev/null
[ "$(df --output=avail -B1 "$FS" | tail -1)" -lt 65536 ] || die "the filler left space on $FS"
for i in 2 3 4; do SEGS[i]=$(recv_batch "$i") || die "batch $i failed"; done
start=$(date +%s)
until grep -q -i 'space' "$T/receive.log"; do
    [ $(($(date +%s) - start)) -lt 20 ] && kill -0 "$RECV_PID" 2>/dev/null || break
    sleep 0.2
done
# Retries while full, for 3 s: each must keep to what is durable and say nothing new. The
# repository is reachable, so a flush stores its chunk before it is reported: the slot may not
# pass what the repository holds (sampled after the slot: the repository's end only grows).
for _ in $(seq 1 6); do
    R=$(restart_lsn) E=$(repo_end) C=$(current_lsn)
    [ "$R" -le "$E" ] || fail "the slot's restart_lsn ($R) passed the end of what the repository holds ($E)"
    [ "$R" -lt "$C" ] || fail "the slot's restart_lsn ($R) is not behind the server's WAL ($C): it does not keep it"
    sleep 0.5
done
note "slot restart_lsn $R, repository end $E, server $C"
kill -0 "$RECV_PID" 2>/dev/null || fail "the receiver exited on a full spool"
errors=$(grep -E 'ERROR|FATAL' "$T/receive.log")
assert_eq "$(grep -c . <<<"$errors")" 1 "errors on a full spool (each said once)"
grep -q -F "$SPOOL" <<<"$errors" && grep -q 'No space left' <<<"$errors" ||
    fail "the error does not name the spool and its lack of space: $errors"
note "the receiver said: $errors"
# Besides it, at most the status file of the spool, once; nothing said twice.
others=$(grep -v -E 'ERROR|FATAL' "$T/receive.log" | grep -v -F 'could not write the status file')
[ -z "$others" ] || fail "other lines on a full spool: $(head -3 <<<"$others")"
[ "$(grep -c -F 'could not write the status file' "$T/receive.log")" -le 1 ] ||
    fail "the status file's failure said more than once: $(grep -m3 -F 'status file' "$T/receive.log")"

CASE="space again"
rm -f "$FS/filler"
for i in 2 3 4; do
    wait_repo_file "main/wal/${SEGS[i]:0:16}/${SEGS[i]}" 40 "$RECV_PID" || { sed 's/^/      receiver: /' "$T/receive.log" | tail; break; }
done
for i in 1 2 3 4; do
    fetch_cmp "$RCONF" "${SEGS[i]}" "$PGD/pg_wal/${SEGS[i]}" "segment ${SEGS[i]}"
done
for i in $(seq 1 10); do sql "$PORT" "insert into t values (-$i, 'x')" || die "insert failed"; done
read -r SEG OFF < <(sql "$PORT" "select file_name, file_offset
                                 from pg_walfile_name_offset(pg_current_wal_flush_lsn())" | tr '|' ' ')
start=$(date +%s)
until [ "$(stream_end "$T/repo" "$SEG")" -ge "$OFF" ]; do
    if [ $(($(date +%s) - start)) -ge 30 ] || ! kill -0 "$RECV_PID" 2>/dev/null; then
        fail "the chunks of $SEG did not reach offset $OFF within 30s"
        break
    fi
    sleep 0.2
done
new_dest
run "$WAL_FETCH" --config "$RCONF" "$SEG" "$DEST"
assert_rc 0 "wal-fetch $SEG (the streamed partial)" &&
    { cmp -s -n "$OFF" "$DEST" "$PGD/pg_wal/$SEG" || fail "wal-fetch $SEG differs from the server's bytes before $OFF"; }
recv_stop 30
assert_eq "$RECV_RC" 0 "exit status of wal-receive after SIGTERM"

CASE="repository"
assert_repo_clean "repository"
finish
