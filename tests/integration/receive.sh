# shellcheck shell=bash
# receive.sh - wal-receive in the integration tests (sourced by t_receive*.sh after lib.sh and
# remote.sh). wal-receive runs as postgres through setpriv, which execs it: the PID the test holds
# is the receiver's own, so SIGTERM, SIGSTOP and SIGCONT reach it and its exit status is its own.
#
#   recv_primary KIND [LINE]...   remote_primary with a repository of KIND, the spool $SPOOL
#                              (postgres's, 0700) and $RCONF: the receiver's configuration
#                              (remote_conf: encrypted with $KEY, spool_dir $SPOOL, LINEs)
#   recv CONF ARG...           wal-receive --config CONF ARG... in the foreground, through run
#                              (RC, $T/.last.out, $T/.last.err)
#   recv_start LOG CONF [ARG]...   wal-receive in the background (bg_start: ended by its PID on
#                              every exit of the test); sets RECV_PID
#   recv_stop [LIMIT_S]        SIGTERM to RECV_PID, waits (default 30 s); sets RECV_RC (124: it
#                              did not exit and was killed)
#   one_line WHAT ERE          the last run exited 1 with one printable line on stderr matching
#                              ERE (extended)
#   recv_first_error WHAT LOG CONF ERE   a receiver that cannot stream (it logs the failure and
#                              retries after a backoff): started, stopped with SIGTERM once LOG
#                              holds an ERROR line (20 s at most); it must exit 0 (stopped by a
#                              signal) and LOG's first line must be an ERROR matching ERE
#   slot_active PORT SLOT      prints t when a walsender uses SLOT on the server on PORT
#   wait_slot_active PORT SLOT LIMIT_S   until slot_active is t; 1 (and fail) otherwise
#   wait_repo_file KEY LIMIT_S [PID]     until object KEY of the repository exists; 1 (and
#                              fail) after LIMIT_S s or when PID (the receiver) is gone
#   stream_chunks DIR SEG      the names of the streamed chunk objects of segment SEG under the
#                              repository files DIR (<cluster>/stream/<SEG>.<START>-<END>), sorted
#   stream_end DIR SEG         the END (decimal) of the contiguous cover from 0 of those chunks
#   wal_obj SEG                the repository file of WAL segment SEG of cluster main
#   fetch_cmp CONF SEG FILE WHAT   wal-fetch of SEG must give exactly FILE's bytes
#   recv_batch N               about 1 MiB of WAL (rows 4000 (N-1)+1 .. 4000 N of a table
#                              t (id int primary key, pad text)) in one transaction on the server
#                              on $PORT, then a segment switch; prints the segment closed
#   crash_primary [SNAP]       the receiver frozen (SIGSTOP RECV_PID), every process of the server
#                              of $PGD killed with SIGKILL (its postmaster stopped first: no new
#                              child), then the local repository ($T/repo) copied to SNAP if named:
#                              what the receiver had stored at the crash; sets KILL_AT (date +%s.%N)

WAL_RECEIVE=$BIN_DIR/wal-receive
[ -x "$WAL_RECEIVE" ] || die "no wal-receive in $BIN_DIR"
AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)

recv_primary() {
    local kind=$1
    shift
    RCONF=$T/receive.conf
    SPOOL=$T/spool
    remote_primary "$kind"
    mkdir -m 700 "$SPOOL" && chown postgres: "$SPOOL" || die "mkdir $SPOOL"
    remote_conf "$RCONF" "$PORT" "encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'" "$@"
}

recv() {
    local conf=$1
    shift
    run "${AS_PG[@]}" "$WAL_RECEIVE" --config "$conf" "$@"
}

recv_start() {
    local log=$1 conf=$2
    shift 2
    touch "$log" && chown postgres: "$log"
    bg_start "$log" "${AS_PG[@]}" "$WAL_RECEIVE" --config "$conf" "$@"
    RECV_PID=$BG_PID
}

recv_stop() {
    kill -TERM "$RECV_PID" 2>/dev/null
    kill -CONT "$RECV_PID" 2>/dev/null
    bg_wait "$RECV_PID" "${1:-30}"
    RECV_RC=$?
}

one_line() {
    assert_rc 1 "$1" || return 1
    assert_err_one_line "$1"
    grep -q -E -- "$2" "$T/.last.err" || fail_cmd "$1: stderr does not match /$2/"
    LC_ALL=C grep -q '[^[:print:]]' "$T/.last.err" && fail "$1: its message holds unprintable bytes"
    note "$1: $(head -1 "$T/.last.err")"
}

recv_first_error() {
    local what=$1 log=$2 conf=$3 ere=$4 start first
    recv_start "$log" "$conf"
    start=$(date +%s)
    until grep -q 'ERROR' "$log"; do
        [ $(($(date +%s) - start)) -lt 20 ] && kill -0 "$RECV_PID" 2>/dev/null || break
        sleep 0.1
    done
    recv_stop
    check_no_secrets "$log"
    assert_eq "$RECV_RC" 0 "$what: exit status after SIGTERM"
    first=$(head -1 "$log")
    grep -q -E -- "ERROR.*($ere)" <<<"$first" || fail "$what: its first line does not match /$ere/: $first"
    note "$what: $first"
}

slot_active() {
    sql "$1" "select coalesce((select active from pg_replication_slots where slot_name = '$2'), false)" 2>/dev/null
}

wait_slot_active() {
    local port=$1 slot=$2 limit=$3 start
    start=$(date +%s)
    until [ "$(slot_active "$port" "$slot")" = t ]; do
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            fail "no walsender used slot $slot within ${limit}s"
            return 1
        fi
        sleep 0.1
    done
}

wait_repo_file() {
    local key=$1 limit=$2 pid=${3:-} start
    start=$(date +%s)
    until [ -f "$(repo_file "$key")" ]; do
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            fail "$key did not appear in the repository within ${limit}s"
            return 1
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            fail "the receiver (pid $pid) is gone and $key is not in the repository"
            return 1
        fi
        sleep 0.1
    done
}

stream_chunks() {
    find "$1" -path "*/stream/*" -type f -name "$2.*" -printf '%f\n' 2>/dev/null |
        sed 's/\._S3rver_object$//' | grep -E "^$2\.[0-9A-F]{8}-[0-9A-F]{8}$" | LC_ALL=C sort
}

stream_end() {
    local c s e end=0
    for c in $(stream_chunks "$1" "$2"); do
        s=$((16#${c:25:8})) e=$((16#${c:34:8}))
        [ "$s" -le "$end" ] && [ "$e" -gt "$end" ] && end=$e
    done
    echo "$end"
}

wal_obj() {
    repo_file "main/wal/${1:0:16}/$1"
}

fetch_cmp() {
    local conf=$1 seg=$2 file=$3 what=$4
    new_dest
    run "$WAL_FETCH" --config "$conf" "$seg" "$DEST"
    assert_rc 0 "wal-fetch $seg ($what)" || return 1
    cmp -s "$DEST" "$file" || { fail "$what: wal-fetch $seg differs from ${file}"; return 1; }
}

recv_batch() {
    sql "$PORT" "insert into t select g, repeat(md5(g::text), 4)
                 from generate_series($((($1 - 1) * 4000 + 1)), $(($1 * 4000))) g;
                 select pg_walfile_name(pg_switch_wal())"
}

crash_primary() {
    local snap=${1:-} pm
    pm=$(head -1 "$PGD/postmaster.pid")
    is_postmaster_of "$pm" "$PGD" || die "no postmaster for $PGD"
    KILL_AT=$(date +%s.%N)
    kill -STOP "$pm"
    kill -STOP "$RECV_PID"
    # shellcheck disable=SC2046 # the PIDs: words
    kill -KILL "$pm" $(ps -o pid= --ppid "$pm")
    for _ in $(seq 1 100); do kill -0 "$pm" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pm" 2>/dev/null && die "the postmaster survived SIGKILL"
    [ -z "$snap" ] || cp -a "$T/repo" "$snap" || die "could not copy the repository"
}
