#!/usr/bin/env bash
# t_sftp: an SFTP repository on a private sshd (127.0.0.1, own host key and client key).
#   1. the storage contract binary (tests/unit/test_storage.c) runs every contract test against
#      the sftp driver too, plus its sftp-only tests (sessions killed between and during
#      requests, sessions dropped when idle, client key, host keys, pin);
#   2. PostgreSQL archives through wal-push into an encrypted sftp repository: no failure, every
#      archived segment comes back byte-identical through wal-fetch, modes 0600/0700, no temp
#      files; a segment not in the archive is exit 1;
#   3. an unknown or changed host key is refused (push 1, fetch 255) naming the key's SHA-256;
#      known_hosts is read as OpenSSH reads it: an entry for the plain host (port 22's) does not
#      vouch for this server on its own port, a @revoked key is refused naming the file, a
#      hashed entry (ssh-keygen -H) works, also when the file's first hashed entry is another
#      host's key of a type this server lacks; an identity file readable by others is refused;
#      a libcurl that ignores the host key options (older, or built on libssh) is refused;
#   4. sshd stopped: wal-push exits 1 within timeout x retries, wal-fetch 255 (1 with
#      standby.signal), nothing written; sshd hung (listener stopped): the same, bounded by the
#      timeout; sshd back on the same port and key: the push succeeds; pushed again, identical
#      content succeeds and different content is refused (SFTP's rename does not replace);
#   5. the connection killed in the middle of an upload (compress = none, 16 MiB): wal-push exits
#      1, nothing under the final name, wal-fetch says "not there" (never 0 with partial
#      content); the next push succeeds and fetches identical. With retries = 2 the same cut is
#      repaired by the retry.
# Servers are stopped by PID only (pid files, /proc), also when the test fails.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sshd.sh"
setup_tmp

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BG_PIDS=() # background wal-push processes of this test (stopped ones too)
on_exit() {
    local rc=$? p
    for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do
        kill -KILL "$p" 2>/dev/null
    done
    sshd_stop_all
    (exit $rc)
    cleanup
}
trap on_exit EXIT

SEG_MB=16
SEG_BYTES=$((SEG_MB * 1024 * 1024))
TIMEOUT=3
RETRIES=2

CASE="sshd"
# A second server with the same keys that drops idle sessions (after about 4 s; for the unit tests'
# idle case); started first, so that SSHD_* name the main server from here on.
IDLE_S=10 # at most; the drop takes about 4 s
export SSHD_USERS=root SSHD_KEY_OWNER=postgres
sshd_start "$T/sshd-idle" "ClientAliveInterval 1" "ClientAliveCountMax 1" ||
    die "could not start the idle-dropping sshd"
IDLE_PORT=$SSHD_PORT IDLE_PID=$SSHD_PID
mkdir -p "$T/sshd" && cp -p "$T/sshd-idle"/{host,client}_ed25519{,.pub} "$T/sshd/" ||
    die "could not copy the keys"
sshd_start "$T/sshd" || die "could not start sshd"
note "sshd pid $SSHD_PID on 127.0.0.1:$SSHD_PORT, host key SHA256:$SSHD_HOST_FP"
# The server logs in as root: accounts with a locked password ("!" in /etc/shadow, as Debian
# creates postgres) cannot log in at all with UsePAM no, not even with a key.
URL="sftp://root@127.0.0.1:$SSHD_PORT"

# ---- 1. the storage contract over sftp ----
CASE="storage contract (sftp)"
BUILD_DIR=$(dirname "$BIN_DIR")
TEST_STORAGE=$BUILD_DIR/tests/test_storage
case "$BUILD_DIR" in
"$ROOT"/*)
    # Always ask make: a stale binary would test old code. SANITIZE=1 for the asan build.
    san=""
    [[ $BUILD_DIR == */asan ]] && san="SANITIZE=1"
    # shellcheck disable=SC2086
    make -C "$ROOT" $san "${BUILD_DIR#"$ROOT"/}/tests/test_storage" >"$T/make.log" 2>&1 ||
        { tail -20 "$T/make.log"; die "could not build $TEST_STORAGE"; }
    ;;
esac
[ -x "$TEST_STORAGE" ] || die "no storage contract binary at $TEST_STORAGE"
make_repo "$T/unit-repo"
cat "$SSHD_KNOWN_HOSTS" "$T/sshd-idle/known_hosts" >"$T/known_hosts.both" # main server first
run env WALSAFE_TEST_SFTP_REPO="$URL$T/unit-repo" WALSAFE_TEST_SFTP_IDENTITY="$SSHD_CLIENT_KEY" \
    WALSAFE_TEST_SFTP_KNOWN_HOSTS="$T/known_hosts.both" WALSAFE_TEST_SSHD_PID="$SSHD_PID" \
    WALSAFE_TEST_SFTP_IDLE_PORT="$IDLE_PORT" WALSAFE_TEST_SFTP_IDLE_S="$IDLE_S" \
    WALSAFE_TEST_SSHD_IDLE_PID="$IDLE_PID" "$TEST_STORAGE"
if [ "$RC" != 0 ]; then
    fail "test_storage against sftp: exit status $RC"
    grep -E '^(FAIL|    )' "$T/.last.out" "$T/.last.err" | sed 's/^[^:]*://; s/^/      /' | head -40
fi
grep -q 'skipped' "$T/.last.err" && fail "test_storage skipped sftp tests: $(grep skipped "$T/.last.err")"
note "$(tail -1 "$T/.last.out" | sed 's|.*/||') (${ELAPSED_MS} ms)"
[ "$(sshd_pid_of "$T/sshd")" = "$SSHD_PID" ] || die "the sshd listener did not survive the unit tests"
sshd_stop "$T/sshd-idle"

# ---- 2. PostgreSQL archives into an encrypted sftp repository ----
KEY=$T/walsafe.key
REPO=$T/repo
CONF=$T/walsafe.conf
make_key "$KEY"
make_repo "$REPO"
# sftp_conf FILE ["key = value"...]: the sftp repository with this test's keys; the arguments
# replace or add settings (a key set twice would draw a warning).
sftp_conf() {
    local f=$1 kv k out=()
    local -A set=([repo]="'$URL$REPO'" [encrypt_key_file]="'$KEY'"
        [sftp_identity_file]="'$SSHD_CLIENT_KEY'" [sftp_known_hosts]="'$SSHD_KNOWN_HOSTS'"
        [timeout]=$TIMEOUT [retries]=$RETRIES)
    shift
    for kv in "$@"; do set[${kv%% = *}]=${kv#* = }; done
    for k in "${!set[@]}"; do out+=("$k = ${set[$k]}"); done
    write_conf "$f" "${out[@]}"
}
sftp_conf "$CONF"

CASE="archiving over sftp"
PGD=$T/pg
archiving_cluster "$PGD" "$CONF" --wal-segsize=$SEG_MB
first=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())") || die "psql failed"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"
# Round 1 fills segments to their natural end; the later ones end at pg_switch_wal.
last=""
for rows in 150000 5000 5000; do
    sql "$PORT" "insert into t select g, repeat(md5(g::text), 2)
                 from generate_series(coalesce((select max(id) from t), 0) + 1,
                                      coalesce((select max(id) from t), 0) + $rows) g" ||
        die "insert failed"
    last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
done
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
read -r archived failed < <(sql "$PORT" "select archived_count, failed_count from pg_stat_archiver" |
    tr '|' ' ')
assert_eq "$failed" 0 "pg_stat_archiver.failed_count" || show_log "$PGD.log"
# A little WAL after the switch: the segment it goes to is never archived, the "new segment" of
# the cases below.
sql "$PORT" "insert into t select g, 'x' from generate_series(-100, -1) g" || die "insert failed"
NEW=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())")
pg_stop_immediate "$PGD" # pg_wal's copies are stable from here on
note "archived $archived segments $first..$last; unarchived $NEW"
[ "$NEW" != "$last" ] || die "no segment after $last"

CASE="fetch over sftp"
n_first=$(seg_num "$first" $SEG_MB)
n_last=$(seg_num "$last" $SEG_MB)
[ $((n_last - n_first + 1)) -ge 4 ] || fail "only $((n_last - n_first + 1)) segments; expected at least 4"
assert_eq "$(find "$REPO/main/wal" -type f | grep -c .)" "$archived" "objects vs archived_count"
compared=0
for ((n = n_first; n <= n_last; n++)); do
    name=$(seg_name 1 $n $SEG_MB)
    new_dest
    run "$WAL_FETCH" --config "$CONF" "$name" "$DEST"
    assert_rc 0 "wal-fetch $name" || continue
    if cmp -s "$DEST" "$PGD/pg_wal/$name"; then
        compared=$((compared + 1))
    else
        fail "fetched $name differs from pg_wal/$name: $(cmp "$DEST" "$PGD/pg_wal/$name" 2>&1)"
    fi
done
assert_eq "$compared" "$archived" "segments fetched over sftp and byte-identical"
new_dest
run "$WAL_FETCH" --config "$CONF" "$NEW" "$DEST"
assert_rc 1 "wal-fetch of $NEW, which is not in the archive"
assert_absent "$DEST" "destination of a missing segment"

CASE="repository written over sftp"
bad=$(find "$REPO" \( -type d ! -perm 700 \) -o \( -type f ! -perm 600 \) -printf '%m %p\n')
[ -z "$bad" ] || fail "modes other than 0700 (directories) / 0600 (files): $bad"
assert_no_temp_files "$REPO" "repository after archiving"
grep -l -a -F "$(echo -n 1 | md5sum | cut -c1-32)" "$REPO"/main/wal/*/* >/dev/null &&
    fail "an object holds table content in the clear"

# ---- 3. host keys ----
CASE="encrypted client key"
# an ed25519 key under a passphrase, authorized next to the plain one
ssh-keygen -q -t ed25519 -N 'correct horse' -C walsafe-enc -f "$T/enc_key" </dev/null >/dev/null ||
    die "ssh-keygen failed"
cat "$T/enc_key.pub" >>"$SSHD_DIR/authorized_keys.root"
chown postgres "$T/enc_key"
sftp_conf "$T/enc.conf" "sftp_identity_file = '$T/enc_key'"
new_dest
run "$WAL_FETCH" --config "$T/enc.conf" "$(seg_name 1 "$n_first" $SEG_MB)" "$DEST"
assert_rc 255 "wal-fetch with an encrypted key and no passphrase"
grep -q 'WALSAFE_SFTP_PASSPHRASE' "$T/.last.err" || fail "no passphrase hint: $(head -2 "$T/.last.err")"
new_dest
run env WALSAFE_SFTP_PASSPHRASE='correct horse' "$WAL_FETCH" --config "$T/enc.conf" \
    "$(seg_name 1 "$n_first" $SEG_MB)" "$DEST"
assert_rc 0 "wal-fetch with the passphrase in WALSAFE_SFTP_PASSPHRASE"
printf 'correct horse\n' >"$T/passphrase"
chmod 600 "$T/passphrase"
new_dest
run env WALSAFE_SFTP_PASSPHRASE_FILE="$T/passphrase" "$WAL_FETCH" --config "$T/enc.conf" \
    "$(seg_name 1 "$n_first" $SEG_MB)" "$DEST"
assert_rc 0 "wal-fetch with the passphrase in WALSAFE_SFTP_PASSPHRASE_FILE"
grep -q 'correct horse' "$T/.last.err" "$T/.last.out" && fail "the passphrase was printed"
chmod 644 "$T/passphrase"
new_dest
run env WALSAFE_SFTP_PASSPHRASE_FILE="$T/passphrase" "$WAL_FETCH" --config "$T/enc.conf" \
    "$(seg_name 1 "$n_first" $SEG_MB)" "$DEST"
assert_rc 255 "wal-fetch with a passphrase file of mode 0644"
grep -q 'group or others' "$T/.last.err" || fail "mode 0644 not named: $(head -2 "$T/.last.err")"

CASE="unknown host key"
: >"$T/known_hosts.empty" && chown postgres: "$T/known_hosts.empty"
sftp_conf "$T/unknown.conf" "sftp_known_hosts = '$T/known_hosts.empty'"
before=$(repo_state "$REPO")
run "$WAL_PUSH" --config "$T/unknown.conf" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push to a server whose host key is not in known_hosts"
assert_err_contains "SHA256:$SSHD_HOST_FP" "the refusal names the presented key"
assert_err_one_line "wal-push refused host key"
new_dest
run "$WAL_FETCH" --config "$T/unknown.conf" "$last" "$DEST"
assert_rc 255 "wal-fetch from a server with an unknown host key (never 1: recovery must stop)"
assert_err_contains "SHA256:$SSHD_HOST_FP" "wal-fetch names the presented key"
assert_absent "$DEST" "destination after a refused host key"

CASE="changed host key"
ssh-keygen -q -t ed25519 -N '' -f "$T/other_host_key" || die "ssh-keygen failed"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1-2 "$T/other_host_key.pub")" >"$T/known_hosts.changed"
chown postgres: "$T/known_hosts.changed"
sftp_conf "$T/changed.conf" "sftp_known_hosts = '$T/known_hosts.changed'"
run "$WAL_PUSH" --config "$T/changed.conf" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push to a server whose host key changed"
assert_err_contains "SHA256:$SSHD_HOST_FP" "the refusal names the presented key"
assert_err_regex "changed" "the refusal says the key changed"
assert_eq "$(repo_state "$REPO")" "$before" "repository after refused host keys"

CASE="known_hosts entry without the port"
# "127.0.0.1 KEY" is what ssh writes for port 22; this server listens on another port.
echo "127.0.0.1 $(cut -d' ' -f1-2 "$SSHD_HOST_KEY.pub")" >"$T/known_hosts.noport"
chown postgres: "$T/known_hosts.noport"
sftp_conf "$T/noport.conf" "sftp_known_hosts = '$T/known_hosts.noport'"
run "$WAL_PUSH" --config "$T/noport.conf" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push with the server's key listed for port 22 only"
assert_err_contains "unknown host key SHA256:$SSHD_HOST_FP" "the refusal names the presented key"
assert_err_contains "[127.0.0.1]:$SSHD_PORT" "the refusal names the entry it needs"

CASE="revoked host key"
{ cat "$SSHD_KNOWN_HOSTS"; echo "@revoked * $(cut -d' ' -f1-2 "$SSHD_HOST_KEY.pub")"; } \
    >"$T/known_hosts.revoked"
chown postgres: "$T/known_hosts.revoked"
sftp_conf "$T/revoked.conf" "sftp_known_hosts = '$T/known_hosts.revoked'"
run "$WAL_PUSH" --config "$T/revoked.conf" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push to a server whose host key is @revoked"
assert_err_contains "SHA256:$SSHD_HOST_FP, which $T/known_hosts.revoked marks @revoked (line 2)" \
    "the refusal names the key, the file and the line"
assert_err_one_line "wal-push refused a revoked host key"
new_dest
run "$WAL_FETCH" --config "$T/revoked.conf" "$last" "$DEST"
assert_rc 255 "wal-fetch from a server whose host key is @revoked"
assert_absent "$DEST" "destination after a revoked host key"
assert_eq "$(repo_state "$REPO")" "$before" "repository after refused host keys"

CASE="hashed known_hosts"
cp "$SSHD_KNOWN_HOSTS" "$T/known_hosts.hashed" &&
    ssh-keygen -q -H -f "$T/known_hosts.hashed" >/dev/null 2>&1 ||
    die "ssh-keygen -H failed"
grep -q '^|1|' "$T/known_hosts.hashed" || die "ssh-keygen -H wrote no hashed entry"
chown postgres: "$T/known_hosts.hashed"
sftp_conf "$T/hashed.conf" "sftp_known_hosts = '$T/known_hosts.hashed'"
new_dest
run "$WAL_FETCH" --config "$T/hashed.conf" "$last" "$DEST"
assert_rc 0 "wal-fetch with the server's entry hashed" &&
    { cmp -s "$DEST" "$PGD/pg_wal/$last" || fail "fetched $last differs"; }

CASE="identity file readable by others"
cp "$SSHD_CLIENT_KEY" "$T/open_key" && chown postgres: "$T/open_key" && chmod 644 "$T/open_key" ||
    die "could not copy the client key"
sftp_conf "$T/openkey.conf" "sftp_identity_file = '$T/open_key'"
run "$WAL_PUSH" --config "$T/openkey.conf" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push with an identity file of mode 0644"
assert_err_contains "permissions 0644 for sftp_identity_file \"$T/open_key\" are too open" \
    "the refusal names the mode and the file"
chmod 600 "$T/open_key"
new_dest
run "$WAL_FETCH" --config "$T/openkey.conf" "$last" "$DEST"
assert_rc 0 "wal-fetch with the same identity file at mode 0600"

CASE="host key pin"
sftp_conf "$T/pin.conf" "sftp_known_hosts = '$T/no-such-file'" "sftp_host_key_sha256 = 'SHA256:$SSHD_HOST_FP'"
new_dest
run "$WAL_FETCH" --config "$T/pin.conf" "$last" "$DEST"
assert_rc 0 "wal-fetch with the right sftp_host_key_sha256 and no known_hosts" &&
    { cmp -s "$DEST" "$PGD/pg_wal/$last" || fail "fetched $last differs"; }
fp=$(ssh-keygen -l -E sha256 -f "$T/other_host_key.pub" | awk '{print $2}')
sftp_conf "$T/pin-wrong.conf" "sftp_host_key_sha256 = '$fp'"
run "$WAL_PUSH" --config "$T/pin-wrong.conf" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push with a wrong sftp_host_key_sha256"
assert_err_contains "sftp_host_key_sha256" "the refusal names the pin"

CASE="libcurl without the host key options"
# A libcurl older than 7.84 (7.80 for the pin), or one built on libssh, answers
# CURLE_UNKNOWN_OPTION to CURLOPT_SSH_HOSTKEYFUNCTION and CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256 and
# goes on without them: with a pin and no known_hosts it accepted any host key. The stand-in
# libcurl (tests/shim) answers so and passes everything else on to the real one.
SHIM_DIR=$BUILD_DIR/tests/shim
case "$BUILD_DIR" in
"$ROOT"/*)
    make -C "$ROOT" "${SHIM_DIR#"$ROOT"/}/libcurl.so.4" >"$T/make.log" 2>&1 ||
        { tail -20 "$T/make.log"; die "could not build the libcurl stand-in"; }
    ;;
esac
REAL_CURL=$(ldconfig -p | awk '$1 == "libcurl.so.4" && /x86-64/ {print $NF; exit}')
[ -f "$SHIM_DIR/libcurl.so.4" ] && [ -f "$REAL_CURL" ] || die "no libcurl stand-in or real libcurl"
new_dest
run env LD_LIBRARY_PATH="$SHIM_DIR" WALSAFE_TEST_REAL_LIBCURL="$REAL_CURL" \
    "$WAL_FETCH" --config "$T/pin-wrong.conf" "$last" "$DEST"
assert_rc 255 "wal-fetch with a wrong pin through a libcurl without the pin option"
assert_absent "$DEST" "destination with a wrong pin through a libcurl without the pin option"
assert_err_contains "cannot check the server's host key against sftp_host_key_sha256" \
    "the refusal says why"
run env LD_LIBRARY_PATH="$SHIM_DIR" WALSAFE_TEST_REAL_LIBCURL="$REAL_CURL" \
    "$WAL_PUSH" --config "$CONF" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push through a libcurl without the host key callback"
assert_err_contains "cannot check the server's host key as walsafe checks it" "the refusal says why"
assert_eq "$(repo_state "$REPO")" "$before" "repository after pushes through that libcurl"

# ---- 4. server down, server hung, server back ----
CASE="sshd stopped"
sshd_stop "$T/sshd"
sshd_pid_of "$T/sshd" >/dev/null && die "sshd still runs"
limit=$((TIMEOUT * RETRIES * 1000))
run "$WAL_PUSH" --config "$CONF" "$PGD/pg_wal/$NEW"
assert_rc 1 "wal-push with sshd stopped"
[ "$ELAPSED_MS" -le "$limit" ] || fail "wal-push took ${ELAPSED_MS} ms with sshd stopped (limit ${limit} ms)"
note "wal-push with sshd stopped: exit $RC after ${ELAPSED_MS} ms"
new_dest
run "$WAL_FETCH" --config "$CONF" "$last" "$DEST"
assert_rc 255 "wal-fetch with sshd stopped (archive recovery must stop, not end)"
assert_absent "$DEST" "destination with sshd stopped"
[ "$ELAPSED_MS" -le "$limit" ] || fail "wal-fetch took ${ELAPSED_MS} ms with sshd stopped (limit ${limit} ms)"
mkdir -p "$T/standby" && touch "$T/standby/standby.signal"
new_dest
cd "$T/standby" || die "cd"
run "$WAL_FETCH" --config "$CONF" "$last" "$DEST"
cd - >/dev/null || die "cd"
assert_rc 1 "wal-fetch with sshd stopped, standby.signal in the working directory"
assert_absent "$DEST" "destination with sshd stopped (standby)"
assert_eq "$(repo_state "$REPO")" "$before" "repository while sshd was down"

CASE="sshd back on the same port and host key"
old_port=$SSHD_PORT
sshd_start "$T/sshd" || die "could not restart sshd"
assert_eq "$SSHD_PORT" "$old_port" "port after the restart"
run "$WAL_PUSH" --config "$CONF" "$PGD/pg_wal/$NEW"
assert_rc 0 "wal-push after sshd came back"
new_dest
run "$WAL_FETCH" --config "$CONF" "$NEW" "$DEST"
assert_rc 0 "wal-fetch of $NEW" && { cmp -s "$DEST" "$PGD/pg_wal/$NEW" || fail "fetched $NEW differs"; }

CASE="no replace over sftp"
# wal-push uploads first and learns of an existing object when SFTP's rename refuses to replace
# it: identical content is success, different content is refused, the stored copy stays.
stored=$(file_sha "$REPO/main/wal/${NEW:0:16}/$NEW")
run "$WAL_PUSH" --config "$CONF" "$PGD/pg_wal/$NEW"
assert_rc 0 "wal-push of $NEW again, identical"
assert_err_regex "already archived" "the identical copy is reported"
mkdir -p "$T/other/pg_wal" && cp "$PGD/pg_wal/$NEW" "$T/other/pg_wal/$NEW" || die "cp"
flip_byte "$T/other/pg_wal/$NEW" $((SEG_BYTES / 2))
run "$WAL_PUSH" --config "$CONF" "$T/other/pg_wal/$NEW"
assert_rc 1 "wal-push of a different $NEW"
assert_err_regex "different content" "the refusal says why"
assert_eq "$(file_sha "$REPO/main/wal/${NEW:0:16}/$NEW")" "$stored" "the stored copy of $NEW"
assert_no_temp_files "$REPO" "after pushes that found an existing object"

CASE="sshd hung"
# The listener stopped (SIGSTOP by PID): connections are accepted by the kernel, then nothing.
# Only the timeout can end the wait: each attempt is bounded by it (plus the backoff between).
# timeout = 1 here: every attempt waits it out.
sftp_conf "$T/hung.conf" "timeout = 1"
limit=$((1 * RETRIES * 1000))
kill -STOP "$SSHD_PID"
run "$WAL_FETCH" --config "$T/hung.conf" "$NEW" "$DEST.hung"
kill -CONT "$SSHD_PID"
assert_rc 255 "wal-fetch with a hung sshd"
assert_absent "$DEST.hung" "destination with a hung sshd"
[ "$ELAPSED_MS" -le $((limit + 2000)) ] ||
    fail "wal-fetch took ${ELAPSED_MS} ms with a hung sshd (limit $((limit + 2000)) ms)"
note "wal-fetch with a hung sshd: exit $RC after ${ELAPSED_MS} ms"

# ---- 5. the connection cut in the middle of an upload ----
# push_cut CLUSTER CONF SEGMENT: starts wal-push in the background, stops it (SIGSTOP, by PID) as
# soon as its temp file exists, kills the sshd session processes, lets it go on. Sets RC, CUT_AT
# (bytes in the temp file when cut) and CUT_LOG; 1 if the push ended before it could be cut.
push_cut() {
    local cluster=$1 conf=$2 seg=$3 pid dir i tmp=""
    dir=$REPO/$cluster/wal/${seg:0:16}
    CUT_LOG=$T/cut.$cluster.err
    "$WAL_PUSH" --config "$conf" "$PGD/pg_wal/$seg" 2>"$CUT_LOG" &
    pid=$!
    BG_PIDS+=("$pid")
    i=$((SECONDS + 10))
    while [ $SECONDS -lt $i ]; do # no sleep: an upload over loopback takes well under a second
        tmp=$(compgen -G "$dir/.walsafe-tmp.*") && break
        [ -e "/proc/$pid" ] || break
    done
    # the middle: at least 1 MiB on the server
    while [ -n "$tmp" ] && [ -e "/proc/$pid" ] && [ $SECONDS -lt $i ] &&
        [ "$(stat -c %s "$tmp" 2>/dev/null || echo 0)" -lt 1048576 ]; do :; done
    kill -STOP "$pid" 2>/dev/null
    CUT_AT=$(stat -c %s "$tmp" 2>/dev/null || echo 0)
    sshd_kill_sessions "$T/sshd"
    kill -CONT "$pid" 2>/dev/null
    wait "$pid"
    RC=$?
    BG_PIDS=() # reaped: its PID may belong to another process from now on
    [ -n "$tmp" ] && [ "$CUT_AT" -ge 1048576 ] && [ "$CUT_AT" -lt "$SEG_BYTES" ]
}

CASE="upload cut, retries = 1"
# A segment full of real WAL, stored without compression: 16 MiB go over the wire.
CUT_SEG=$(seg_name 1 $((n_first + 1)) $SEG_MB)
sftp_conf "$T/cut.conf" "cluster = 'cut'" "compress = none" "retries = 1"
cut=0
for attempt in 1 2 3; do
    if push_cut cut "$T/cut.conf" "$CUT_SEG"; then
        cut=1
        break
    fi
    note "attempt $attempt: the push ended (exit $RC) before it could be cut; again"
    find "$REPO/cut" -type f -delete 2>/dev/null
done
[ $cut = 1 ] || die "could not cut an upload in the middle"
note "upload cut after $CUT_AT of $SEG_BYTES bytes"
assert_eq "$RC" 1 "wal-push whose connection was killed mid-upload"
[ "$(grep -c . "$CUT_LOG")" -ge 1 ] || fail "wal-push said nothing about the cut upload"
obj=$REPO/cut/wal/${CUT_SEG:0:16}/$CUT_SEG
assert_absent "$obj" "final name after a cut upload"
left=$(find "$REPO/cut" -type f ! -name '.walsafe-tmp.*' ! -name identity -printf '%p\n')
[ -z "$left" ] || fail "files other than temp files after the cut upload: $left"
new_dest
run "$WAL_FETCH" --config "$T/cut.conf" "$CUT_SEG" "$DEST"
assert_rc 1 "wal-fetch of the segment whose upload was cut (not there; never partial content)"
assert_absent "$DEST" "destination of the cut segment"
run "$WAL_PUSH" --config "$T/cut.conf" "$PGD/pg_wal/$CUT_SEG"
assert_rc 0 "wal-push again after the cut"
new_dest
run "$WAL_FETCH" --config "$T/cut.conf" "$CUT_SEG" "$DEST"
assert_rc 0 "wal-fetch after the second push" &&
    { cmp -s "$DEST" "$PGD/pg_wal/$CUT_SEG" || fail "fetched $CUT_SEG differs from pg_wal"; }
[ "$(stat -c %s "$obj" 2>/dev/null || echo 0)" -gt "$SEG_BYTES" ] ||
    fail "the object of $CUT_SEG is not an uncompressed 16 MiB segment"
assert_no_temp_files "$REPO/cut" "after the second push (the failed one cleaned up after itself)"

CASE="upload cut, retries = 2"
sftp_conf "$T/cut2.conf" "cluster = 'cut2'" "compress = none" "retries = 2"
if push_cut cut2 "$T/cut2.conf" "$CUT_SEG"; then
    note "upload cut after $CUT_AT of $SEG_BYTES bytes"
    if [ "$RC" != 0 ]; then
        fail "wal-push with retries = 2 whose first upload was cut: exit $RC, expected 0"
        sed 's/^/      stderr: /' "$CUT_LOG" | head -5
    fi
    grep -q -i 'retrying' "$CUT_LOG" || fail "no retry was logged: $(head -3 "$CUT_LOG")"
    new_dest
    run "$WAL_FETCH" --config "$T/cut2.conf" "$CUT_SEG" "$DEST"
    assert_rc 0 "wal-fetch of the repaired push" &&
        { cmp -s "$DEST" "$PGD/pg_wal/$CUT_SEG" || fail "fetched $CUT_SEG differs from pg_wal"; }
    assert_no_temp_files "$REPO/cut2" "after the repaired push"
else
    note "skip: the push ended (exit $RC) before it could be cut"
fi

CASE="sshd"
[ "$(sshd_pid_of "$T/sshd")" = "$SSHD_PID" ] || fail "the sshd listener died during the test"
MAIN_SSHD_PID=$SSHD_PID

CASE="hashed known_hosts, server with several host key types"
# libcurl asks the server for the key type of the first known_hosts entry it takes for this
# host, and takes any hashed entry: here another host's RSA key, which this server does not
# have (the handshake failed). walsafe gives libcurl this host's entries only. The server also
# has an ECDSA key, which libssh2 would ask for first without any entry.
mkdir -p "$T/sshd-multi" && cp -p "$T/sshd"/{host,client}_ed25519{,.pub} "$T/sshd-multi/" ||
    die "could not copy the keys"
ssh-keygen -q -t ecdsa -N '' -f "$T/sshd-multi/host_ecdsa" </dev/null >/dev/null ||
    die "ssh-keygen failed"
ssh-keygen -q -t rsa -b 2048 -N '' -f "$T/other_rsa" </dev/null >/dev/null || die "ssh-keygen failed"
sshd_start "$T/sshd-multi" "HostKey $T/sshd-multi/host_ecdsa" || die "could not start sshd"
{
    echo "other.example $(cut -d' ' -f1-2 "$T/other_rsa.pub")"
    echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1-2 "$T/sshd-multi/host_ed25519.pub")"
} >"$T/known_hosts.multi"
ssh-keygen -q -H -f "$T/known_hosts.multi" >/dev/null 2>&1 || die "ssh-keygen -H failed"
chown postgres: "$T/known_hosts.multi"
sftp_conf "$T/multi.conf" "repo = 'sftp://root@127.0.0.1:$SSHD_PORT$REPO'" \
    "sftp_known_hosts = '$T/known_hosts.multi'"
new_dest
run "$WAL_FETCH" --config "$T/multi.conf" "$last" "$DEST"
assert_rc 0 "wal-fetch with a hashed known_hosts whose first entry is another host's RSA key" &&
    { cmp -s "$DEST" "$PGD/pg_wal/$last" || fail "fetched $last differs"; }
sshd_stop "$T/sshd-multi"
SSHD_PID=$MAIN_SSHD_PID
grep -E 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' "$T"/cut.*.err &&
    fail "sanitizer report from a background wal-push"
finish
