#!/usr/bin/env bash
# t_max_rate: max_rate measured, and what create and restore print while they run.
# The data directory holds a file of 24 MB of random bytes (which do not compress: bytes stored
# are about the bytes read), so a backup stores about 28 MB; max_rate = 6MB.
#   - create (local, --progress, without --fast, stderr not a terminal): stdout is exactly the id;
#     stderr has the spread-checkpoint note, plain "progress:" lines whose figures grow, and one
#     summary line; bytes stored / elapsed is not above max_rate * 1.15, and the elapsed time is
#     at least bytes / max_rate * 0.85 (only the slow side is asserted with the machine's load in
#     mind: a loaded machine makes a run slower, never faster, so neither can fail falsely);
#   - create with backup_method stream (--no-progress): the same bounds for the bytes stored and
#     for the bytes read (the server sends at most max_rate: BASE_BACKUP's MAX_RATE), and stderr
#     is only the summary line;
#   - restore (--no-progress) of the local backup: bytes read / elapsed within the same bounds,
#     stderr only its summary line.
# Without the limit the same commands run at several times the rate here (a create of these
# 28 MB takes about 1 s), so the bounds fail when max_rate is not applied.
. "$(dirname "$0")/lib.sh"
setup_tmp

RATE=$((6 << 20))
CONF=$T/walsafe.conf
SCONF=$T/walsafe-stream.conf
PGD=$T/primary
CASE="set-up"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}"
archiving_cluster "$PGD" "$CONF"
backup_conf "$CONF" "$PGD" "$PORT" "max_rate = 6MB"
write_conf "$SCONF" "${REPO_CONF[@]}" "max_rate = 6MB" "backup_method = 'stream'" \
    "pg_conninfo = 'host=$SOCK port=$PORT user=postgres dbname=postgres'"
head -c $((24 << 20)) /dev/urandom >"$PGD/walsafe_it_random" && chown postgres: "$PGD/walsafe_it_random" ||
    die "could not write the random file"

# size_of ID FIELD: bytes (read) or stored_bytes of backup ID (list --json).
size_of() {
    bb_list "$CONF" >/dev/null || die "list failed"
    json_eval "$T/list.json" "j.backups.find(b => b.id === '$1').$2"
}

# check_rate WHAT BYTES MS: bytes per second not above RATE * 1.15, time not below
# BYTES / RATE * 0.85.
check_rate() {
    local what=$1 bytes=$2 ms=$3
    note "$what: $bytes bytes in $ms ms = $((bytes * 1000 / (ms > 0 ? ms : 1) / 1024)) kB/s (limit $((RATE / 1024)) kB/s)"
    [ "$bytes" -gt $((20 << 20)) ] || fail "$what: only $bytes bytes (expected about 28 MB)"
    [ $((bytes * 1000 * 100)) -le $((RATE * ms * 115)) ] ||
        fail "$what: $bytes bytes in $ms ms is above max_rate * 1.15"
    [ $((ms * RATE * 100)) -ge $((bytes * 1000 * 85)) ] ||
        fail "$what: $ms ms is less than 85 % of bytes / max_rate"
}

CASE="create (local) --progress without a terminal"
sql "$PORT" "checkpoint" >/dev/null || die "checkpoint failed" # the spread one then has little to do
bb --config "$CONF" create --progress
assert_rc 0 "create --progress" || die "create failed: $(last_err)"
ID=$(cat "$T/.last.out")
[[ "$ID" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || fail "stdout is not exactly the backup id: $(head -c 200 "$T/.last.out")"
MS=$ELAPSED_MS
cp "$T/.last.err" "$T/create.err"
grep -q -F "waiting for the checkpoint (spread, checkpoint_completion_target): --fast avoids the wait" \
    "$T/create.err" || fail "no note about the spread checkpoint: $(head -3 "$T/create.err")"
SUMMARY_ERE="^backup $ID complete: [0-9.]+ [kMG]?B read, [0-9.]+ [kMG]?B stored \([0-9]+%\), [0-9.]+ s, [0-9.]+ [kMG]?B/s$"
assert_eq "$(grep -c -E "$SUMMARY_ERE" "$T/create.err")" 1 "summary lines of create"
# the "done" figure of each progress line, in kB
grep '^progress: ' "$T/create.err" | sed -E 's/^progress: ([0-9.]+) ([kMG]?B) .*/\1 \2/' |
    awk '{ m = $2 == "B" ? 1/1024 : $2 == "kB" ? 1 : $2 == "MB" ? 1024 : 1048576; printf "%d\n", $1 * m }' \
        >"$T/progress.kb"
N=$(wc -l <"$T/progress.kb")
[ "$N" -ge 3 ] || fail "expected at least 3 progress lines in a run of ${MS} ms, got $N"
sort -n -c "$T/progress.kb" 2>/dev/null || fail "the progress figures decrease: $(tr '\n' ' ' <"$T/progress.kb")"
[ "$(head -1 "$T/progress.kb")" -lt "$(tail -1 "$T/progress.kb")" ] ||
    fail "the progress figures do not grow: $(tr '\n' ' ' <"$T/progress.kb")"
grep -q $'\r\|\e' "$T/create.err" && fail "terminal control characters in output that is not a terminal"
OTHER=$(grep -v -E -e '^progress: ' -e "$SUMMARY_ERE" -e '^waiting for the checkpoint' "$T/create.err")
[ -z "$OTHER" ] || fail "unexpected lines on stderr: $OTHER"
STORED=$(size_of "$ID" stored_bytes)
check_rate "create (local)" "$STORED" "$MS"

CASE="create (stream) --no-progress"
bb --config "$SCONF" create --fast --no-progress
assert_rc 0 "create (stream)" || die "create (stream) failed: $(last_err)"
SID=$(cat "$T/.last.out")
[[ "$SID" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || fail "stdout is not exactly the backup id: $(head -c 200 "$T/.last.out")"
MS=$ELAPSED_MS
assert_err_summary "create (stream) --no-progress"
check_rate "create (stream), stored" "$(size_of "$SID" stored_bytes)" "$MS"
# the server sends at most max_rate too (BASE_BACKUP's MAX_RATE): the bytes read obey it
check_rate "create (stream), read" "$(size_of "$SID" bytes)" "$MS"

CASE="restore --no-progress"
DEST=$T/restored
bb_restore "$CONF" "$DEST" --backup "$ID" --no-progress || die "restore failed"
MS=$ELAPSED_MS
assert_err_summary "restore --no-progress"
grep -q -E "^restore of backup $ID complete: [0-9.]+ [kMG]?B written, [0-9.]+ [kMG]?B read from the repository, " \
    "$T/.last.err" || fail "restore's summary line: $(last_err)"
cmp -s "$PGD/walsafe_it_random" "$DEST/walsafe_it_random" || fail "the restored random file differs"
check_rate "restore" "$STORED" "$MS"

CASE="options"
bb --config "$CONF" list --no-progress
assert_rc 2 "list --no-progress"
finish
