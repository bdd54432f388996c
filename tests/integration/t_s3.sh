#!/usr/bin/env bash
# t_s3: walsafe against an S3-compatible server that verifies SigV4 (@20minutes/s3rver, see
# s3.sh), with the Debian awscli as an independent client and tests/tools/faultproxy in front of
# the server for network faults.
#   archive    PostgreSQL 15 archives real 16 MiB segments through wal-push into an encrypted
#              s3:// repository; each comes back byte-identical through wal-fetch
#   signature  a wrong secret: wal-push 1, wal-fetch 255, and the server's 403
#              SignatureDoesNotMatch in the message (so the server checks signatures at all)
#   awscli     the keys are <prefix>/main/identity and <prefix>/main/wal/<first16>/<segment>;
#              a multipart object (compress none, 5MB parts) has the size walsafe reports,
#              downloads whole with aws s3 cp, fetches byte-identical; no upload left open
#   faults     refused connections, resets and clean closes mid-upload and mid-download, a
#              stalled server, a corrupted stored object, a missing segment: never exit 0 with
#              wrong or short content, DEST_PATH absent on every failure, bounded time
#   bucket     a nonexistent bucket is 255 for wal-fetch, not "not in the archive"
#   upload id  an UploadId too long to send back is refused (it was read past its buffer)
#   listing    through faultproxy's listing modes (pages of 2 keys): a server that repeats one
#              continuation token, one that alternates between two, one that serves page 2
#              again and again with fresh tokens: basebackup list fails within seconds naming
#              the bucket and prefix (it looped forever before); a server that lists keys
#              outside the prefix (another cluster's WAL): they are skipped with one warning
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/s3.sh"
setup_tmp

# Servers started here are stopped by PID (s3.sh) before lib.sh's cleanup runs.
t_s3_exit() {
    local rc=$?
    fp_stop_all
    s3_stop_all
    (exit "$rc")
    cleanup
}
trap t_s3_exit EXIT

BUCKET=walsafe-test
KEY=$T/walsafe.key
PGD=$T/pg
SEGS_DIR=$T/segs
SEG_SIZE=16777216

CASE="setup"
command -v "$S3_AWS" >/dev/null || die "$S3_AWS is missing (apt-get install awscli)"
s3_start "$T/s3" "$BUCKET" 2>"$T/s3start.err" || die "could not start the S3 test server: $(cat "$T/s3start.err")"
note "S3 server pid $S3_PID on $S3_ENDPOINT, data in $S3_DATA"
make_key "$KEY"

# ---- the storage contract (tests/unit/test_storage.c) against the s3 driver ----
CASE="storage contract (s3)"
TEST_STORAGE=$(dirname "$BIN_DIR")/tests/test_storage
[ -x "$TEST_STORAGE" ] || die "no storage contract binary at $TEST_STORAGE (make builds it)"
run env WALSAFE_TEST_S3_ENDPOINT="$S3_ENDPOINT" WALSAFE_TEST_S3_BUCKET="$BUCKET" \
    WALSAFE_TEST_S3_KEY="$S3_ACCESS_KEY" WALSAFE_TEST_S3_SECRET="$S3_SECRET_KEY" "$TEST_STORAGE"
if [ "$RC" != 0 ]; then
    fail "test_storage against s3: exit status $RC"
    grep -E '^(FAIL|    )' "$T/.last.out" "$T/.last.err" | sed 's/^[^:]*://; s/^/      /' | head -40
fi
grep -q 'with the s3 driver' "$T/.last.err" && fail "contract failures with the s3 driver"
ls "$S3_DATA/$BUCKET" 2>/dev/null | grep -q '^unit-' || fail "the contract tests never reached the S3 server"
# remove_many's 1004 keys went as DeleteObjects batches of at most 1000: two requests.
assert_eq "$(grep -a -c '?delete= 200' "$S3_LOG")" 2 "DeleteObjects requests in the server log"
note "$(tail -1 "$T/.last.out" | sed 's|.*/||') (${ELAPSED_MS} ms)"

# s3_conf FILE PREFIX ENDPOINT [extra lines...]: an encrypted repository in the test bucket.
s3_conf() {
    local f=$1 prefix=$2 ep=$3
    shift 3
    write_conf "$f" "repo = 's3://$BUCKET/$prefix'" "s3_endpoint = '$ep'" "s3_uri_style = 'path'" \
        "s3_access_key_id = '$S3_ACCESS_KEY'" "s3_secret_access_key = '$S3_SECRET_KEY'" \
        "encrypt_key_file = '$KEY'" "$@"
}

# key_of PREFIX SEGMENT: the object key of a WAL segment.
key_of() { echo "$1/main/wal/${2:0:16}/$2"; }

# A failed fetch leaves nothing at all in the destination directory.
assert_fetch_failed() { # EXPECTED_RC WHAT
    assert_rc "$1" "$2"
    assert_absent "$DEST" "$2: DEST_PATH"
    assert_dir_empty "$DEST_DIR" "$2: destination directory"
}

# ---- archive: PostgreSQL -> wal-push -> S3 ----------------------------------------------------
CASE="archive"
PREFIX=it/archive
CONF=$T/walsafe.conf
s3_conf "$CONF" "$PREFIX" "$S3_ENDPOINT" "timeout = 10" "retries = 3"
# 16 MiB segments: the multipart case needs a full-size real segment
archiving_cluster "$PGD" "$CONF"
first=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())") || die "psql failed"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"
# ~40 MB of WAL made of table rows (segments that fill up by themselves), then two switched
# segments that are mostly empty.
sql "$PORT" "insert into t select g, repeat(md5(g::text), 3) from generate_series(1, 200000) g" ||
    die "insert failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
for r in 1 2; do
    sql "$PORT" "insert into t select g, md5(g::text) from generate_series($((200000 + r * 1000)), $((200999 + r * 1000))) g" ||
        die "insert failed"
    last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
done
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
read -r archived failed < <(sql "$PORT" "select archived_count, failed_count from pg_stat_archiver" | tr '|' ' ')
assert_eq "$failed" 0 "pg_stat_archiver.failed_count" || show_log "$PGD.log"
# Stopped without a checkpoint: pg_wal's copies of the archived segments stay as they were.
pg_stop_immediate "$PGD"

n_first=$(seg_num "$first" 16)
n_last=$(seg_num "$last" 16)
SEGS=()
for ((n = n_first; n <= n_last; n++)); do SEGS+=("$(seg_name 1 "$n" 16)"); done
assert_eq "$archived" "${#SEGS[@]}" "segments archived ($first..$last)"
[ "${#SEGS[@]}" -ge 5 ] || die "only ${#SEGS[@]} segments were written; the test needs 5"
note "archived ${#SEGS[@]} segments $first..$last"
mkdir -p "$SEGS_DIR"
for s in "${SEGS[@]}"; do
    cp "$PGD/pg_wal/$s" "$SEGS_DIR/$s" || die "could not copy $s out of pg_wal"
done
compared=0
for s in "${SEGS[@]}"; do
    new_dest
    run "$WAL_FETCH" --config "$CONF" "$s" "$DEST"
    assert_rc 0 "wal-fetch $s" || continue
    if cmp -s "$DEST" "$SEGS_DIR/$s"; then
        compared=$((compared + 1))
    else
        fail "fetched $s differs from pg_wal/$s: $(cmp "$DEST" "$SEGS_DIR/$s" 2>&1)"
    fi
done
assert_eq "$compared" "${#SEGS[@]}" "segments fetched byte-identical"
if grep -q -E 'wal-push: (ERROR|FATAL)|archive command failed' "$PGD.log"; then
    fail "the server log reports archiving errors:"
    grep -E 'wal-push|archive command' "$PGD.log" | head -5 | sed 's/^/      /'
fi

# ---- signature: a wrong secret is refused by the server -----------------------------------
CASE="signature"
BAD_SECRET=wrong-secret-$(openssl rand -hex 8)
add_secret "$BAD_SECRET"
CONF_BAD=$T/bad-secret.conf
write_conf "$CONF_BAD" "repo = 's3://$BUCKET/$PREFIX'" "s3_endpoint = '$S3_ENDPOINT'" \
    "s3_uri_style = 'path'" "s3_access_key_id = '$S3_ACCESS_KEY'" \
    "s3_secret_access_key = '$BAD_SECRET'" "encrypt_key_file = '$KEY'" "retries = 2"
run "$WAL_PUSH" --config "$CONF_BAD" "$SEGS_DIR/${SEGS[0]}"
assert_rc 1 "wal-push with a wrong secret"
assert_err_regex '403' "wal-push with a wrong secret"
assert_err_contains 'SignatureDoesNotMatch' "wal-push with a wrong secret"
assert_err_one_line "wal-push with a wrong secret"
new_dest
run "$WAL_FETCH" --config "$CONF_BAD" "${SEGS[0]}" "$DEST"
assert_fetch_failed 255 "wal-fetch with a wrong secret"
assert_err_regex '403' "wal-fetch with a wrong secret"
assert_err_contains 'SignatureDoesNotMatch' "wal-fetch with a wrong secret"
assert_err_one_line "wal-fetch with a wrong secret"

# ---- awscli: keys and a multipart object, seen by an independent client --------------------
CASE="awscli keys"
keys=$(s3_aws s3api list-objects-v2 --bucket "$BUCKET" --prefix "$PREFIX/" \
    --query 'Contents[].Key' --output text 2>"$T/aws.err" | tr '\t' '\n' | LC_ALL=C sort)
[ -n "$keys" ] || fail "aws s3api list-objects-v2 listed nothing: $(cat "$T/aws.err")"
expected=$( (echo "$PREFIX/main/identity"; for s in "${SEGS[@]}"; do key_of "$PREFIX" "$s"; done) | LC_ALL=C sort)
if [ "$keys" != "$expected" ]; then
    fail "objects under $PREFIX/ differ from the expected keys:"
    diff <(echo "$expected") <(echo "$keys") | head -10 | sed 's/^/      /'
fi

CASE="awscli multipart"
MP_PREFIX=it/multipart
CONF_MP=$T/multipart.conf
s3_conf "$CONF_MP" "$MP_PREFIX" "$S3_ENDPOINT" "compress = 'none'" "s3_part_size = '5MB'" "parallel = 2"
MP_SEG=${SEGS[1]} # filled with table rows by the big insert
MP_KEY=$(key_of "$MP_PREFIX" "$MP_SEG")
run "$WAL_PUSH" --config "$CONF_MP" -v "$SEGS_DIR/$MP_SEG"
assert_rc 0 "wal-push $MP_SEG with 5MB parts"
stored=$(sed -n 's/.*(\([0-9][0-9]*\) bytes, \([0-9][0-9]*\) stored).*/\2/p' "$T/.last.err" | tail -1)
[ -n "$stored" ] || { stored=0; fail_cmd "wal-push -v did not report the stored size"; }
[ "$stored" -gt $((3 * 5 * 1048576)) ] || fail "stored size $stored is not above 3 parts of 5MB"
# s3rver logs each request as "... <path>?<query> <status> ..." (the method is not logged).
parts=$(grep -a -F "$MP_KEY?partNumber=" "$S3_LOG" | grep -c ' 200 ')
[ "$parts" -ge 4 ] || fail "the server saw $parts part uploads for $MP_KEY, expected at least 4"
head_len=$(s3_aws s3api head-object --bucket "$BUCKET" --key "$MP_KEY" --query ContentLength \
    --output text 2>"$T/aws.err")
assert_eq "$head_len" "$stored" "aws s3api head-object ContentLength vs the size wal-push reported"
rm -f "$T/mp.obj"
s3_aws s3 cp --no-progress "s3://$BUCKET/$MP_KEY" "$T/mp.obj" >"$T/aws.out" 2>"$T/aws.err" ||
    fail "aws s3 cp s3://$BUCKET/$MP_KEY failed: $(cat "$T/aws.err")"
assert_eq "$(stat -c %s "$T/mp.obj" 2>/dev/null)" "$stored" "size of the object downloaded by aws s3 cp"
cmp -s "$T/mp.obj" "$(s3_object_file "$BUCKET" "$MP_KEY")" ||
    fail "aws s3 cp gave other bytes than the server stores for $MP_KEY"
new_dest
run "$WAL_FETCH" --config "$CONF_MP" "$MP_SEG" "$DEST"
assert_rc 0 "wal-fetch of the multipart object" &&
    { cmp -s "$DEST" "$SEGS_DIR/$MP_SEG" || fail "multipart object fetched with other bytes than $MP_SEG"; }
note "multipart: $MP_SEG stored as $stored bytes in $parts parts"
if s3_aws s3api list-multipart-uploads --bucket "$BUCKET" --output text >"$T/aws.out" 2>"$T/aws.err"; then
    [ ! -s "$T/aws.out" ] || fail "multipart uploads left open: $(head -5 "$T/aws.out")"
else
    grep -q NotImplemented "$T/aws.err" ||
        fail "aws s3api list-multipart-uploads failed: $(cat "$T/aws.err")"
    echo "skip: list-multipart-uploads (s3rver: NotImplemented); checked its upload directory instead"
fi
# s3rver keeps each open upload in <bucket>/._S3rver_uploads/<id>/ and removes it on completion.
open_uploads=$(find "$S3_DATA/$BUCKET/._S3rver_uploads" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
assert_eq "$open_uploads" 0 "multipart uploads left in the server's upload directory"

# ---- faults through the proxy -----------------------------------------------------------------
# timeout = 3, retries = 2; compress none so that uploads and downloads are 16 MiB on the wire.
F_PREFIX=it/faults
CONF_F=$T/faults.conf      # one PUT per object (part size above the object size)
CONF_FMP=$T/faults-mp.conf # multipart, 5MB parts, 2 in flight
CONF_FS=$T/faults-stall.conf # as faults.conf with timeout = 1: a stall waits out every attempt
CASE="faults setup"
fp_start "$T/fp" "$S3_PORT" pass 2>"$T/fpstart.err" || die "could not start faultproxy: $(cat "$T/fpstart.err")"
FP_EP=http://127.0.0.1:$FP_PORT
s3_conf "$CONF_F" "$F_PREFIX" "$FP_EP" "timeout = 3" "retries = 2" "compress = 'none'" "s3_part_size = '32MB'"
s3_conf "$CONF_FMP" "$F_PREFIX" "$FP_EP" "timeout = 3" "retries = 2" "compress = 'none'" \
    "s3_part_size = '5MB'" "parallel = 2"
s3_conf "$CONF_FS" "$F_PREFIX" "$FP_EP" "timeout = 1" "retries = 2" "compress = 'none'" "s3_part_size = '32MB'"
SEG_A=${SEGS[0]} SEG_B=${SEGS[2]} SEG_C=${SEGS[3]} SEG_D=${SEGS[4]} SEG_E=${SEGS[5]}
FILE_A=$(s3_object_file "$BUCKET" "$(key_of "$F_PREFIX" "$SEG_A")")
FILE_B=$(s3_object_file "$BUCKET" "$(key_of "$F_PREFIX" "$SEG_B")")
FILE_C=$(s3_object_file "$BUCKET" "$(key_of "$F_PREFIX" "$SEG_C")")
run "$WAL_PUSH" --config "$CONF_F" "$SEGS_DIR/$SEG_A"
assert_rc 0 "wal-push $SEG_A through the proxy (pass)" || die "nothing works through the proxy"
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$SEG_A" "$DEST"
assert_rc 0 "wal-fetch $SEG_A through the proxy (pass)" &&
    { cmp -s "$DEST" "$SEGS_DIR/$SEG_A" || fail "$SEG_A fetched through the proxy differs"; }

# check_after_failed_push SEGMENT CONF WHAT: after a push that may have failed half-way, the
# segment is either fetched whole and identical, or not at all; never a short or wrong file.
check_after_failed_push() {
    local seg=$1 conf=$2 what=$3
    new_dest
    run "$WAL_FETCH" --config "$conf" "$seg" "$DEST"
    case $RC in
    0) cmp -s "$DEST" "$SEGS_DIR/$seg" ||
        fail "$what: wal-fetch exited 0 with other bytes than $seg ($(stat -c %s "$DEST") bytes)" ;;
    1 | 255) assert_absent "$DEST" "$what: DEST_PATH after wal-fetch exit $RC"
        assert_dir_empty "$DEST_DIR" "$what: destination directory after wal-fetch exit $RC" ;;
    *) fail_cmd "$what: wal-fetch exit status $RC (expected 0, 1 or 255)" ;;
    esac
    FETCH_RC=$RC
}

CASE="refused"
fp_mode "$FP_DIR" refuse
run "$WAL_PUSH" --config "$CONF_F" "$SEGS_DIR/$SEG_B"
assert_rc 1 "wal-push while connections are refused"
[ "$ELAPSED_MS" -lt 6000 ] || fail "wal-push took ${ELAPSED_MS} ms to give up on refused connections"
note "refused: wal-push exit $RC after ${ELAPSED_MS} ms"
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$SEG_A" "$DEST"
assert_fetch_failed 255 "wal-fetch while connections are refused"
[ "$ELAPSED_MS" -lt 6000 ] || fail "wal-fetch took ${ELAPSED_MS} ms to give up on refused connections"
assert_absent "$FILE_B" "object of $SEG_B after a refused push"

CASE="reset mid-upload (one PUT)"
fp_mode "$FP_DIR" reset-after 200000
run "$WAL_PUSH" --config "$CONF_F" "$SEGS_DIR/$SEG_B"
push_rc=$RC
[ "$push_rc" = 0 ] || [ "$push_rc" = 1 ] || fail_cmd "wal-push exit status $push_rc, expected 0 or 1"
fp_mode "$FP_DIR" pass
check_after_failed_push "$SEG_B" "$CONF_F" "after a PUT reset mid-body"
[ "$push_rc" != 0 ] || [ "$FETCH_RC" = 0 ] || fail "wal-push exited 0 but wal-fetch exits $FETCH_RC"
left=$( [ -f "$FILE_B" ] && stat -c %s "$FILE_B" || echo none)
note "reset mid-upload (one PUT): wal-push exit $push_rc; wal-fetch exit $FETCH_RC; stored object: $left bytes"
# s3rver keeps what a cut PUT sent under the final key (AWS S3 never does). Say what a retry
# with a healthy network then does; a truncated object must not pass as archived.
run "$WAL_PUSH" --config "$CONF_F" "$SEGS_DIR/$SEG_B"
note "reset mid-upload (one PUT): wal-push again with no fault: exit $RC$( [ "$RC" = 0 ] || echo ": $(head -1 "$T/.last.err")")"
if [ "$RC" = 0 ]; then
    check_after_failed_push "$SEG_B" "$CONF_F" "re-push after a PUT reset mid-body"
    assert_eq "$FETCH_RC" 0 "wal-fetch after a successful re-push"
fi

CASE="reset mid-upload (multipart)"
fp_mode "$FP_DIR" reset-after 200000
run "$WAL_PUSH" --config "$CONF_FMP" "$SEGS_DIR/$SEG_C"
push_rc=$RC
[ "$push_rc" = 0 ] || [ "$push_rc" = 1 ] || fail_cmd "wal-push exit status $push_rc, expected 0 or 1"
# No part is visible under the final key before CompleteMultipartUpload.
[ "$push_rc" = 0 ] || assert_absent "$FILE_C" "object of $SEG_C after a failed multipart upload"
fp_mode "$FP_DIR" pass
check_after_failed_push "$SEG_C" "$CONF_FMP" "after a multipart upload reset mid-part"
[ "$push_rc" != 0 ] || [ "$FETCH_RC" = 0 ] || fail "wal-push exited 0 but wal-fetch exits $FETCH_RC"
open_uploads=$(find "$S3_DATA/$BUCKET/._S3rver_uploads" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
note "reset mid-upload (multipart): wal-push exit $push_rc; wal-fetch exit $FETCH_RC; uploads left open on the server: $open_uploads (s3rver does not implement AbortMultipartUpload)"
run "$WAL_PUSH" --config "$CONF_FMP" "$SEGS_DIR/$SEG_C"
assert_rc 0 "wal-push of $SEG_C again with no fault"
check_after_failed_push "$SEG_C" "$CONF_FMP" "re-push after a failed multipart upload"
assert_eq "$FETCH_RC" 0 "wal-fetch of $SEG_C after the re-push"

CASE="reset mid-download"
fp_mode "$FP_DIR" reset-after-down 300000
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$SEG_A" "$DEST"
assert_fetch_failed 255 "wal-fetch reset after 300000 bytes"

CASE="close mid-download"
fp_mode "$FP_DIR" close-after-down 300000
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$SEG_A" "$DEST"
assert_fetch_failed 255 "wal-fetch closed cleanly after 300000 bytes"

CASE="pass again"
fp_mode "$FP_DIR" pass
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$SEG_A" "$DEST"
assert_rc 0 "wal-fetch with the network healthy again" &&
    { cmp -s "$DEST" "$SEGS_DIR/$SEG_A" || fail "$SEG_A fetched after the faults differs"; }

CASE="keep-alive connection dropped"
# The proxy resets the connection as the client starts its fourth request on it: wal-push sends
# GET identity, HEAD (is it archived?), HEAD (still absent just before the commit), then the PUT
# on the reused connection. As when a server closes an idle
# keep-alive connection just as it is reused, the PUT must go out again on a new connection
# at once (libcurl does that if it can rewind the body), not fail the attempt.
fp_mode "$FP_DIR" reset-request 4
run "$WAL_PUSH" --config "$CONF_F" "$SEGS_DIR/$SEG_E"
assert_rc 0 "wal-push when the reused connection is dropped as the PUT starts"
assert_err_empty "wal-push when the reused connection is dropped as the PUT starts (no retry of the whole push)"
fp_mode "$FP_DIR" pass
check_after_failed_push "$SEG_E" "$CONF_F" "after a dropped keep-alive connection"
assert_eq "$FETCH_RC" 0 "wal-fetch of $SEG_E"

CASE="stall"
# No byte moves: each attempt ends after `timeout` seconds without progress (timeout = 1 here:
# the stall is waited out once per attempt).
limit_ms=$(((1 * 2 + 5) * 1000))
fp_mode "$FP_DIR" stall
new_dest
run "$WAL_FETCH" --config "$CONF_FS" "$SEG_A" "$DEST"
assert_fetch_failed 255 "wal-fetch from a stalled server"
[ "$ELAPSED_MS" -le "$limit_ms" ] || fail "wal-fetch from a stalled server took ${ELAPSED_MS} ms (limit ${limit_ms})"
[ "$ELAPSED_MS" -ge 1000 ] || fail "wal-fetch gave up on a stalled server after ${ELAPSED_MS} ms, before timeout = 1 s"
note "stall: wal-fetch exit $RC after ${ELAPSED_MS} ms"
run "$WAL_PUSH" --config "$CONF_FS" "$SEGS_DIR/$SEG_D"
assert_rc 1 "wal-push to a stalled server"
[ "$ELAPSED_MS" -le "$limit_ms" ] || fail "wal-push to a stalled server took ${ELAPSED_MS} ms (limit ${limit_ms})"
note "stall: wal-push exit $RC after ${ELAPSED_MS} ms"
fp_mode "$FP_DIR" pass

# ---- retries inside the storage layer ------------------------------------------------------
# basebackup and wal-prune rely on them (wal-push and wal-fetch repeat whole operations instead).
# tests/tools/storecat drives one put or get through the storage layer with retries = 4.
STORECAT=${BIN_DIR}/../tests/tools/storecat
[ -x "$STORECAT" ] || die "no storecat binary at $STORECAT"
CONF_R=$T/retry-mp.conf CONF_R1=$T/retry-one.conf
s3_conf "$CONF_R" "$F_PREFIX" "$FP_EP" "timeout = 3" "retries = 4" "s3_part_size = '5MB'" "parallel = 2"
s3_conf "$CONF_R1" "$F_PREFIX" "$FP_EP" "timeout = 3" "retries = 4" "s3_part_size = '32MB'"
BLOB=$T/blob
head -c $((30 * 1024 * 1024)) /dev/urandom >"$BLOB"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$BLOB.small"
# aws_same KEY FILE WHAT: the object under $F_PREFIX/KEY, downloaded by /usr/bin/aws, is FILE.
aws_same() {
    rm -f "$T/aws.out"
    s3_aws s3 cp --quiet "s3://$BUCKET/$F_PREFIX/$1" "$T/aws.out" 2>"$T/aws.err" ||
        { fail "$3: aws s3 cp of $1 failed: $(cat "$T/aws.err")"; return; }
    cmp -s "$T/aws.out" "$2" || fail "$3: $1 as aws downloads it differs from what was put"
}

CASE="storage retry: multipart parts cut"
# The first three connections are reset 3 MB into what the client sends. The small requests
# (start, HEAD, completion) fit; every part that goes out first is cut, at least two of them on
# a fresh connection, where libcurl does not resend by itself: only the driver's part retry
# (from the part's buffer, on a new connection) completes the upload.
uploads0=$(find "$S3_DATA/$BUCKET/._S3rver_uploads" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
fp_mode "$FP_DIR" reset-after 3000000 first 3
run "$STORECAT" "$CONF_R" put retry/multipart <"$BLOB"
assert_rc 0 "storecat put of 30 MB in 5 MB parts with the first three connections cut"
assert_err_regex "part [0-9]+, attempt 1 of 4, retrying" "a part is sent again"
fp_mode "$FP_DIR" pass
aws_same retry/multipart "$BLOB" "multipart upload with parts sent again"
open_uploads=$(find "$S3_DATA/$BUCKET/._S3rver_uploads" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
assert_eq "$((open_uploads - uploads0))" 0 "multipart uploads left open after parts were sent again"

CASE="storage retry: answer to a PUT lost"
# The server stores the PUT; its answer is cut after 100 bytes on the first connection. The
# outcome is unknown: the driver must find the object by a HEAD whose ETag is the MD5 of what it
# sent, and not send it again.
# (s3rver logs 'Stored object "KEY"' once per PUT it stores)
puts0=$(grep -a -c -F "Stored object \"$F_PREFIX/retry/one\"" "$S3_LOG")
fp_mode "$FP_DIR" reset-after-down 100 first 1
run "$STORECAT" "$CONF_R1" put --replace retry/one <"$BLOB.small"
assert_rc 0 "storecat put of 3 MB whose answer is lost"
assert_err_regex "attempt 1 of 4, retrying" "the lost answer is reported as a retry"
fp_mode "$FP_DIR" pass
assert_eq "$(($(grep -a -c -F "Stored object \"$F_PREFIX/retry/one\"" "$S3_LOG") - puts0))" 1 \
    "PUT requests of retry/one the server saw (verified by ETag, not sent twice)"
aws_same retry/one "$BLOB.small" "PUT verified after a lost answer"

CASE="storage retry: download cut again and again"
# Every connection is reset 8 MB into the answer: each try resumes where the last one was cut
# (a try that made progress does not count against retries).
fp_mode "$FP_DIR" reset-after-down 8000000
run "$STORECAT" "$CONF_R" get retry/multipart
assert_rc 0 "storecat get of 30 MB cut every 8 MB"
cmp -s "$T/.last.out" "$BLOB" ||
    fail "the resumed download differs from the object ($(stat -c %s "$T/.last.out") bytes)"
[ "$(grep -c 'retrying' "$T/.last.err")" -ge 3 ] || fail "fewer than 3 resumed tries: $(cat "$T/.last.err")"
CASE="storage retry: download that makes no progress"
fp_mode "$FP_DIR" reset-after-down 100
run "$STORECAT" "$CONF_R" get retry/multipart
assert_rc 1 "storecat get when every answer is cut after 100 bytes"
assert_err_contains "retry/multipart" "the error names the key"
[ "$(grep -c 'retrying' "$T/.last.err")" = 3 ] || fail "not 3 retries before giving up: $(cat "$T/.last.err")"
fp_mode "$FP_DIR" pass

CASE="storage: an UploadId too long to send back"
# The UploadId of a CreateMultipartUpload answer goes back URL-encoded in every later request
# of the upload. One whose encoding does not fit (here 400 '+', 1200 bytes encoded) was used
# unterminated: a read past the end of a stack buffer (AddressSanitizer: stack-buffer-overflow).
fp_mode "$FP_DIR" upload-id 400
run "$STORECAT" "$CONF_R" put uploadid/long <"$BLOB"
assert_rc 1 "storecat put in parts when the UploadId is 400 '+'"
assert_err_contains "S3 gave no valid UploadId" "the error says why"
fp_mode "$FP_DIR" pass

# ---- listings: repeated tokens, pages served again, keys outside the prefix --------------------
# The proxy rewrites ListObjectsV2 requests (pages of 2 keys), so the requests go unsigned (the
# server accepts anonymous requests). The repository is the archive case's: identity + WAL.
CONF_L=$T/list.conf
write_conf "$CONF_L" "repo = 's3://$BUCKET/$PREFIX'" "s3_endpoint = '$FP_EP'" \
    "s3_uri_style = 'path'" "encrypt_key_file = '$KEY'" "timeout = 5" "retries = 2"
WAL_PREFIX="$PREFIX/main/wal/"
# list_json MODE: basebackup list --json through the proxy in MODE, bounded by `timeout 30`
# (before the fix a listing that does not end ran until killed: exit 124).
list_json() {
    fp_mode "$FP_DIR" "$@"
    run timeout 30 "$BASEBACKUP" --config "$CONF_L" list --json
    fp_mode "$FP_DIR" pass
}

CASE="listing in pages of 2"
list_json list-widen 0
assert_rc 0 "basebackup list through pages of 2 keys"
cp "$T/.last.out" "$T/list-paged.json"
assert_eq "$(json_eval "$T/list-paged.json" 'j.wal.last')" "$last" "last WAL segment listed"
assert_eq "$(json_eval "$T/list-paged.json" 'j.wal.first')" "$first" "first WAL segment listed"
assert_err_empty "basebackup list through pages of 2 keys"

for mode in "list-repeat-token 1" "list-repeat-token 2" "list-replay-page"; do
    CASE="listing: $mode"
    list_json $mode
    assert_rc 1 "basebackup list from a server in $mode (124: it did not end)"
    [ "$ELAPSED_MS" -lt 15000 ] || fail "the listing took ${ELAPSED_MS} ms to fail"
    assert_err_contains "does not end" "basebackup list from a server in $mode"
    assert_err_contains "\"$WAL_PREFIX\" in bucket \"$BUCKET\"" "the error names prefix and bucket"
    assert_err_one_line "basebackup list from a server in $mode"
    note "$mode: exit $RC after ${ELAPSED_MS} ms: $(head -c 200 "$T/.last.err")"
done

CASE="listing: keys outside the prefix"
# Another cluster's WAL beside this one's: a server that answers for a wider prefix than asked
# must not put its segments into this cluster's catalog (nor hand them to wal-prune).
printf 'not ours' >"$T/other.obj"
run "$STORECAT" "$CONF_L" put other/wal/0000000100000000/0000000100000000000000FF <"$T/other.obj"
assert_rc 0 "storecat put of another cluster's segment"
list_json list-widen 2
assert_rc 0 "basebackup list from a server that lists a wider prefix"
cp "$T/.last.out" "$T/list-wide.json"
assert_eq "$(json_eval "$T/list-wide.json" 'j.wal.last')" "$last" "last WAL segment listed"
assert_eq "$(grep -c 'outside that prefix' "$T/.last.err")" 2 \
    "warnings about keys outside the prefix (one per listing: WAL and backups)"
assert_err_contains "\"$WAL_PREFIX\" in bucket \"$BUCKET\"" "the warning names prefix and bucket"

CASE="corrupt object"
[ -f "$FILE_A" ] || die "no stored object file $FILE_A"
flip_byte "$FILE_A" $(($(stat -c %s "$FILE_A") / 2))
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$SEG_A" "$DEST"
assert_fetch_failed 255 "wal-fetch of an object with one flipped byte"
assert_err_regex "$SEG_A" "wal-fetch of a corrupt object names the file"

CASE="missing segment"
MISSING=$(seg_name 1 $((n_last + 100)) 16)
new_dest
run "$WAL_FETCH" --config "$CONF_F" "$MISSING" "$DEST"
assert_fetch_failed 1 "wal-fetch of a segment that was never archived"

# ---- bucket ---------------------------------------------------------------------------------
CASE="nonexistent bucket"
CONF_NB=$T/no-bucket.conf
write_conf "$CONF_NB" "repo = 's3://no-such-bucket-$(openssl rand -hex 4)/x'" \
    "s3_endpoint = '$S3_ENDPOINT'" "s3_uri_style = 'path'" "s3_access_key_id = '$S3_ACCESS_KEY'" \
    "s3_secret_access_key = '$S3_SECRET_KEY'" "encrypt_key_file = '$KEY'" "retries = 2"
new_dest
run "$WAL_FETCH" --config "$CONF_NB" "$SEG_A" "$DEST"
assert_fetch_failed 255 "wal-fetch from a nonexistent bucket"
assert_err_contains NoSuchBucket "wal-fetch from a nonexistent bucket"

finish
