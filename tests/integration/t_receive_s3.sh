#!/usr/bin/env bash
# t_receive_s3: the main wal-receive scenario on an S3 repository (issue 19 item 7); on an SFTP
# one with REPO_KIND=sftp (t_receive_sftp.sh sources this file). wal-receive
# (receive_flush_interval = 1s) streams a primary's WAL into an encrypted repository; a few
# commits, no switch; once the streamed chunks cover the server's flush position, the receiver is
# frozen and the primary killed with SIGKILL. wal-fetch of the partial segment (from the chunks
# in the repository, no WAL object of it there) gives exactly the bytes the server wrote up to
# the streamed end, zeros after it.
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
. "$(dirname "$0")/receive.sh"

recv_primary "${REPO_KIND:-s3}" "receive_flush_interval = 1s"

CASE="streaming"
recv "$RCONF" --create-slot
assert_rc 0 "--create-slot" || die "could not create the slot"
recv_start "$T/receive.log" "$RCONF"
wait_slot_active "$PORT" walsafe 20 || { cat "$T/receive.log"; die "the receiver does not stream"; }
sql "$PORT" "create table c (id int primary key)" || die "create table c failed"
for i in $(seq 1 10); do
    sql "$PORT" "insert into c values ($i)" || die "insert $i failed"
done
read -r SEG OFF < <(sql "$PORT" "select file_name, file_offset
                                 from pg_walfile_name_offset(pg_current_wal_flush_lsn())" | tr '|' ' ')
[ "$OFF" -gt 0 ] || die "the flush position is at a segment start: nothing to stream in $SEG"
start=$(date +%s)
until [ "$(stream_end "$REPO_FILES" "$SEG")" -ge "$OFF" ]; do
    if [ $(($(date +%s) - start)) -ge 30 ] || ! kill -0 "$RECV_PID" 2>/dev/null; then
        fail "the chunks of $SEG in the $REPO_KIND repository did not reach offset $OFF within 30s"
        sed 's/^/      receiver: /' "$T/receive.log" | tail -10
        break
    fi
    sleep 0.2
done

CASE="crash"
crash_primary
END=$(stream_end "$REPO_FILES" "$SEG")
note "$SEG: $(stream_chunks "$REPO_FILES" "$SEG" | wc -l) chunks up to byte $END (flush position $OFF)"
[ -e "$(wal_obj "$SEG")" ] && fail "$SEG is in the repository as a complete segment"
new_dest
run "$WAL_FETCH" --config "$CONF" "$SEG" "$DEST"
if assert_rc 0 "wal-fetch $SEG (the streamed partial)"; then
    assert_eq "$(stat -c %s "$DEST")" 1048576 "size of the served segment"
    cmp -s -n "$END" "$DEST" "$PGD/pg_wal/$SEG" || fail "wal-fetch $SEG differs from the server's bytes before $END"
    assert_eq "$(tail -c +$((END + 1)) "$DEST" | tr -d '\0' | wc -c)" 0 "non-zero bytes after the streamed end"
fi
recv_stop 30
assert_eq "$RECV_RC" 0 "exit status of wal-receive after SIGTERM"
rm -rf "$PGD"

CASE="repository"
assert_repo_clean "repository"
finish
