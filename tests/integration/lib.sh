# lib.sh - helpers shared by the integration tests (sourced by every t_*.sh).
#
# Rules every test follows through these helpers:
#   - all files live in one mktemp directory ($T), owned by postgres, removed on exit;
#   - PostgreSQL clusters come from tests/cluster.sh (pg_init, pg_conf, pg_start, pg_stop, ...):
#     a private socket directory inside $T ($SOCK), a private port and listen_addresses = ''; the
#     EXIT trap stops every server started with pg_start by the PID in its postmaster.pid
#     (pg_stop_all); nothing is ever killed by name;
#   - tmpfs mounts made with mount_tmpfs are unmounted by the trap.
# An assertion that fails prints "FAIL: <case>: <what>" with details and counts; `finish` exits
# non-zero if any failed. `die` stops the test at once (for broken preconditions).

set -u
set -o pipefail

# shellcheck source=../cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster.sh"
if [ -z "${BIN_DIR:-}" ] || [ ! -x "${BIN_DIR}/wal-push" ] || [ ! -x "${BIN_DIR}/wal-fetch" ]; then
    echo "FAIL: BIN_DIR (${BIN_DIR:-unset}) does not hold wal-push and wal-fetch"
    exit 1
fi
BIN_DIR=$(cd "$BIN_DIR" && pwd)
WAL_PUSH=$BIN_DIR/wal-push
WAL_FETCH=$BIN_DIR/wal-fetch

TEST_NAME=$(basename "$0" .sh)
FAILURES=0
CASE=""
T=""
SOCK=""
MOUNTS=()
SECRETS=() # strings that must never appear in any output (key file contents, passwords)
STOP_HOOKS=() # functions cleanup calls after the PostgreSQL servers (repo_setup's servers)

# ---- reporting ----

note() { echo "  $*"; }

fail() {
    echo "FAIL: ${CASE:+$CASE: }$*"
    FAILURES=$((FAILURES + 1))
}

# Fails and shows the last command's stderr (see run).
fail_cmd() {
    fail "$*"
    if [ -n "${T:-}" ] && [ -s "$T/.last.err" ]; then
        sed 's/^/      stderr: /' "$T/.last.err" | head -20
    fi
}

die() {
    echo "FAIL: ${CASE:+$CASE: }$* (test aborted)"
    FAILURES=$((FAILURES + 1))
    exit 1
}

finish() {
    if [ "$FAILURES" -gt 0 ]; then
        echo "$TEST_NAME: $FAILURES assertion(s) failed"
        exit 1
    fi
    exit 0
}

# ---- temp dir, cleanup ----

cleanup() {
    local rc=$? d m
    trap - EXIT INT TERM
    pg_stop_all
    for d in "${STOP_HOOKS[@]+"${STOP_HOOKS[@]}"}"; do
        "$d"
    done
    for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do
        mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }
    done
    # Sanitizer reports in server logs (from programs PostgreSQL ran for us) fail the test.
    if [ -n "$T" ] && [ -d "$T" ]; then
        if grep -l -E 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' \
            "$T"/*.log >/dev/null 2>&1; then
            echo "FAIL: sanitizer report in a server log:"
            grep -h -B2 -A10 -E 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' \
                "$T"/*.log | head -40 | sed 's/^/      /'
            rc=1
        fi
        local before=$FAILURES
        check_no_secrets "$T"/*.log
        [ "$FAILURES" -eq "$before" ] || rc=1
        if [ -n "${KEEP_TMP:-}" ]; then
            echo "  (kept $T)"
        else
            rm -rf "$T"
        fi
    fi
    [ "$rc" -eq 0 ] && [ "$FAILURES" -gt 0 ] && rc=1
    exit "$rc"
}

setup_tmp() {
    T=$(mktemp -d /tmp/walsafe-it.XXXXXX) || { echo "FAIL: mktemp"; exit 1; }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    chown postgres: "$T" || die "could not chown $T to postgres"
    chmod 700 "$T"
    SOCK=$T/sock
    mkdir "$SOCK" && chown postgres: "$SOCK" || die "could not create socket dir"
}

# ---- walsafe set-up ----

# make_key FILE: a fresh 256-bit key, 0600, owned by postgres.
make_key() {
    (umask 077 && openssl rand -hex 32 >"$1") || die "openssl rand failed"
    chown postgres: "$1"
    chmod 600 "$1"
    add_secret "$(cat "$1")"
}

# add_secret STRING: STRING, and for a hex key also each half of it, must never be printed.
add_secret() {
    SECRETS+=("$1")
    if [ ${#1} -ge 32 ]; then
        SECRETS+=("${1:0:16}" "${1:$((${#1} - 16))}")
    fi
}

# make_repo DIR: an empty repository root (it must exist before the first wal-push).
make_repo() {
    mkdir -p "$1" && chown postgres: "$1" && chmod 700 "$1" || die "could not create repo $1"
}

# write_conf FILE LINE...: a walsafe configuration file readable by postgres.
write_conf() {
    local f=$1 l
    local spool=("spool_dir = ''")
    shift
    # A test never uses the default spool (/var/spool/walsafe): push-ahead and prefetch are off
    # unless the test names a spool_dir of its own, in $T.
    for l in "$@"; do case "$l" in spool_dir*) spool=() ;; esac; done
    printf '%s\n' "# walsafe test configuration" "$@" "${spool[@]+"${spool[@]}"}" >"$f" || die "could not write $f"
    chown postgres: "$f"
    chmod 600 "$f"
}

# ---- repositories on every backend ----
# A scenario that takes its repository from repo_setup runs unchanged against a local directory,
# an S3 bucket (s3.sh's server, which verifies SigV4) or an SFTP server (sshd.sh's private sshd);
# thin wrappers (t_pitr_s3.sh ...) set REPO_KIND and source the scenario.
#
# repo_setup KIND: a fresh, empty repository of KIND (local, s3 or sftp) for this test. For s3
# and sftp it first starts the server on 127.0.0.1 with its files in $T (registered before it
# starts, stopped by its PID from cleanup, also when the test fails). Sets
#   REPO_KIND   KIND
#   REPO_CONF   (array) the configuration lines that name and reach the repository: repo, and
#               s3_endpoint, s3_uri_style, s3_access_key_id, s3_secret_access_key (s3) or
#               sftp_identity_file, sftp_known_hosts (sftp). With write_conf the file is 0600 and
#               owned by postgres, which reads it in archive_command / restore_command; the sftp
#               client key and known_hosts are owned by postgres too.
#   REPO_FILES  the directory in which the repository's objects are plain files: the repository
#               itself (local; sftp, whose server is this machine) or its prefix in the S3
#               server's data directory (s3). For checks and damage only; the programs use
#               REPO_CONF.
# repo_file KEY: the file that holds object KEY (e.g. main/wal/00000002.history) in REPO_FILES.
repo_setup() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    REPO_KIND=$1
    case "$REPO_KIND" in
    local)
        make_repo "$T/repo"
        REPO_FILES=$T/repo
        REPO_CONF=("repo = '$T/repo'")
        ;;
    s3)
        # shellcheck source=s3.sh
        . "$here/s3.sh"
        STOP_HOOKS+=(s3_stop_all)
        s3_start "$T/s3" walsafe-test 2>"$T/s3start.err" ||
            die "could not start the S3 test server: $(cat "$T/s3start.err")"
        note "S3 server pid $S3_PID on $S3_ENDPOINT"
        REPO_FILES=$S3_DATA/$S3_BUCKET/it/$TEST_NAME
        REPO_CONF=("repo = 's3://$S3_BUCKET/it/$TEST_NAME'" "s3_endpoint = '$S3_ENDPOINT'"
            "s3_uri_style = 'path'" "s3_access_key_id = '$S3_ACCESS_KEY'"
            "s3_secret_access_key = '$S3_SECRET_KEY'")
        ;;
    sftp)
        # shellcheck source=sshd.sh
        . "$here/sshd.sh"
        STOP_HOOKS+=(sshd_stop_all)
        # Log in as root: with UsePAM no, sshd refuses postgres (locked password) even with a key.
        # The client key and known_hosts belong to postgres, who runs archive_command.
        SSHD_USERS=root SSHD_KEY_OWNER=postgres sshd_start "$T/sshd" 2>"$T/sshdstart.err" ||
            die "could not start sshd: $(cat "$T/sshdstart.err")"
        note "sshd pid $SSHD_PID on 127.0.0.1:$SSHD_PORT"
        make_repo "$T/repo"
        REPO_FILES=$T/repo
        REPO_CONF=("repo = 'sftp://root@127.0.0.1:$SSHD_PORT$T/repo'"
            "sftp_identity_file = '$SSHD_CLIENT_KEY'" "sftp_known_hosts = '$SSHD_KNOWN_HOSTS'")
        ;;
    *) die "repo_setup: unknown repository kind '$REPO_KIND' (local, s3 or sftp)" ;;
    esac
}

repo_file() {
    if [ "$REPO_KIND" = s3 ]; then
        echo "$REPO_FILES/$1._S3rver_object"
    else
        echo "$REPO_FILES/$1"
    fi
}

# assert_repo_clean WHAT: no temp object is left in the repository, and what the backend stores
# is private: modes 0700 (directories) / 0600 (files) where objects are files of ours (local,
# sftp); no multipart upload left open on the S3 server (object files there are the server's).
assert_repo_clean() {
    local bad
    [ -d "$REPO_FILES" ] || { fail "$1: no repository at $REPO_FILES"; return 1; }
    assert_no_temp_files "$REPO_FILES" "$1"
    if [ "$REPO_KIND" = s3 ]; then
        bad=$(find "$S3_DATA/$S3_BUCKET/._S3rver_uploads" -mindepth 1 -maxdepth 1 2>/dev/null)
        [ -z "$bad" ] || fail "$1: multipart uploads left open on the S3 server: $(echo $bad)"
    else
        bad=$(find "$REPO_FILES" \( \( -type d ! -perm 700 \) -o \( -type f ! -perm 600 \) \) \
            -printf '%m %p\n')
        [ -z "$bad" ] || fail "$1: wrong modes: $bad"
    fi
}

# repo_server_stop: stops the server of a network repository of repo_setup (s3: the S3 server;
# sftp: sshd and its sessions), by its PID, abruptly as in an outage. repo_server_restart: starts
# it again on the same port with the same data (objects, host key, authorized keys), so that
# REPO_CONF still reaches it. Both die on a local repository, which has no server.
repo_server_stop() {
    case "$REPO_KIND" in
    s3) s3_stop "$S3_DIR" ;;
    sftp) sshd_stop "$SSHD_DIR" ;;
    *) die "repo_server_stop: a $REPO_KIND repository has no server" ;;
    esac
}

repo_server_restart() {
    case "$REPO_KIND" in
    s3) s3_restart "$S3_DIR" 2>"$T/s3start.err" ||
        die "could not restart the S3 test server: $(cat "$T/s3start.err")" ;;
    sftp) SSHD_USERS=root SSHD_KEY_OWNER=postgres sshd_start "$SSHD_DIR" 2>"$T/sshdstart.err" ||
        die "could not restart sshd: $(cat "$T/sshdstart.err")" ;;
    *) die "repo_server_restart: a $REPO_KIND repository has no server" ;;
    esac
}

# ---- running the programs ----

# run CMD...: runs a command with stdout/stderr captured in $T/.last.out / $T/.last.err;
# sets RC and ELAPSED_MS. A sanitizer report on stderr is a failure by itself.
run() {
    local t0 t1
    t0=${EPOCHREALTIME//[!0-9]/} # microseconds, without a fork (run is called thousands of times)
    "$@" >"$T/.last.out" 2>"$T/.last.err"
    RC=$?
    t1=${EPOCHREALTIME//[!0-9]/}
    ELAPSED_MS=$(((10#$t1 - 10#$t0) / 1000))
    if [ -n "${IT_VERBOSE:-}" ]; then
        echo "  [${CASE}] rc=$RC ${ELAPSED_MS}ms: ${*##*/}"
        sed 's/^/      | /' "$T/.last.err"
    fi
    if grep -q -E 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' "$T/.last.err"; then
        fail_cmd "sanitizer report from: $*"
    fi
    check_no_secrets "$T/.last.out" "$T/.last.err"
    return 0
}

# check_no_secrets FILE...: none of SECRETS (nor its upper-case form) appears in the files.
# One grep for all of them (it runs after every command); the slow loop names the culprits.
check_no_secrets() {
    local sec f files=() pats=()
    for f in "$@"; do [ -f "$f" ] && files+=("$f"); done
    for sec in "${SECRETS[@]+"${SECRETS[@]}"}"; do pats+=(-e "$sec"); done
    [ ${#files[@]} -gt 0 ] && [ ${#pats[@]} -gt 0 ] || return 0
    grep -q -i -F "${pats[@]}" -- "${files[@]}" 2>/dev/null || return 0
    for sec in "${SECRETS[@]}"; do
        for f in "$@"; do
            [ -f "$f" ] || continue
            if grep -q -i -F -- "$sec" "$f"; then
                fail "a secret (${sec:0:4}...) appears in ${f##*/}"
            fi
        done
    done
}

last_err() { cat "$T/.last.err"; }

# Assertions about the last run.
assert_rc() { # EXPECTED WHAT
    if [ "$RC" != "$1" ]; then
        fail_cmd "$2: exit status $RC, expected $1"
        return 1
    fi
    return 0
}

assert_err_contains() { # STRING WHAT  (fixed string, case-sensitive)
    if ! grep -q -F -- "$1" "$T/.last.err"; then
        fail_cmd "$2: stderr does not mention \"$1\""
        return 1
    fi
    return 0
}

assert_err_regex() { # ERE WHAT (case-insensitive)
    if ! grep -q -i -E -- "$1" "$T/.last.err"; then
        fail_cmd "$2: stderr does not match /$1/"
        return 1
    fi
    return 0
}

# Exactly one non-empty line on stderr (an error must be one clear line).
assert_err_one_line() { # WHAT
    local n
    n=$(grep -c . "$T/.last.err")
    if [ "$n" -ne 1 ]; then
        fail_cmd "$1: expected exactly one line on stderr, got $n"
        return 1
    fi
    return 0
}

assert_err_empty() { # WHAT
    if [ -s "$T/.last.err" ]; then
        fail_cmd "$1: expected nothing on stderr"
        return 1
    fi
    return 0
}

# The one line a successful create or restore ends with, and nothing else (stdout aside).
assert_err_summary() { # WHAT
    assert_err_one_line "$1" || return 1
    if ! grep -q -E '^(backup|restore of backup) [0-9]{8}T[0-9]{6}Z complete: .*, [0-9.]+ s, [0-9.]+ [kMGTP]?B/s$' \
        "$T/.last.err"; then
        fail_cmd "$1: stderr is not the summary line"
        return 1
    fi
    return 0
}

assert_eq() { # ACTUAL EXPECTED WHAT
    if [ "$1" != "$2" ]; then
        fail "$3: got \"$1\", expected \"$2\""
        return 1
    fi
    return 0
}

assert_absent() { # PATH WHAT
    if [ -e "$1" ] || [ -L "$1" ]; then
        fail "$2: $1 exists but must not"
        return 1
    fi
    return 0
}

# The directory holds nothing at all (no file, no temp file).
assert_dir_empty() { # DIR WHAT
    local c
    c=$(ls -A "$1" 2>&1)
    if [ -n "$c" ]; then
        fail "$2: directory $1 is not empty: $(echo $c)"
        return 1
    fi
    return 0
}

# No walsafe temp file anywhere under DIR.
assert_no_temp_files() { # DIR WHAT
    local c
    c=$(find "$1" \( -name '.walsafe-tmp*' -o -name '*.walsafe.*' \) -print 2>/dev/null)
    if [ -n "$c" ]; then
        fail "$2: temp files left under $1: $(echo $c)"
        return 1
    fi
    return 0
}

# A fresh empty directory and a DEST_PATH inside it, as PostgreSQL's pg_wal/RECOVERYXLOG.
DEST_SEQ=0
new_dest() {
    DEST_SEQ=$((DEST_SEQ + 1))
    DEST_DIR=$T/dest.$DEST_SEQ
    mkdir -p "$DEST_DIR" || die "mkdir $DEST_DIR"
    DEST=$DEST_DIR/RECOVERYXLOG
}

# repo_state DIR: one digest of every path, mode and content under DIR.
repo_state() {
    (cd "$1" && find . \( -type f -printf '%p %m %s\n' \) -o -printf '%p %m\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-64
}

file_sha() { sha256sum "$1" | cut -c1-64; }

# flip_byte FILE OFFSET: inverts every bit of one byte in place.
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' \n')
    [ -n "$b" ] || die "flip_byte: $1 has no byte at offset $2"
    # shellcheck disable=SC2059
    printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ---- WAL names ----

# seg_num NAME SEG_MB -> segment number (decimal); seg_name TLI SEGNO SEG_MB -> name.
seg_num() {
    local per=$((4096 / $2))
    echo $(((16#${1:8:8}) * per + (16#${1:16:8})))
}
seg_name() {
    local per=$((4096 / $3))
    printf '%08X%08X%08X\n' "$1" $(($2 / per)) $(($2 % per))
}

# ---- PostgreSQL ----

# archive_settings CONFIG: the postgresql.conf lines, one per output line, that archive every
# WAL file through walsafe with CONFIG: archive_command = 'wal-push --config CONFIG %p', or with
# ARCHIVE_VIA=module the walsafe_archive module, loaded from the build beside BIN_DIR
# (WALSAFE_MODULE, an absolute path: nothing is installed into the server's pkglibdir).
WALSAFE_MODULE=$(cd "$BIN_DIR/.." && pwd)/lib/walsafe_archive
archive_settings() {
    if [ "${ARCHIVE_VIA:-command}" = module ]; then
        [ -f "$WALSAFE_MODULE.so" ] || die "no archive module at $WALSAFE_MODULE.so (make module)"
        printf '%s\n' "archive_library = '$WALSAFE_MODULE'" "walsafe.config = '$1'"
    else
        printf '%s\n' "archive_command = '$WAL_PUSH --config $1 %p'"
    fi
}

# archiving_cluster PGDATA CONFIG [initdb options...]: initdb, archive every WAL file with
# CONFIG as archive_settings says (no timed checkpoints, room for WAL), start; sets PORT.
archiving_cluster() {
    local pgd=$1 conf=$2 arch
    shift 2
    pg_init "$pgd" "$@"
    PORT=$(free_port)
    mapfile -t arch < <(archive_settings "$conf")
    pg_conf "$pgd" "$PORT" \
        "archive_mode = on" \
        "${arch[@]}" \
        "checkpoint_timeout = '1h'" \
        "max_wal_size = '1GB'"
    pg_start "$pgd"
}

# pg_init_template DIR [INITDB_OPTION]...: tests/cluster.sh's pg_init calls it first when run.sh
# provides IT_PG_TEMPLATES (a directory for the run). With options that are only --wal-segsize=N
# and --data-checksums, DIR becomes a copy of a cluster initdb made once per run with the same
# options, given a system identifier of its own by tests/tools/pgsysid (in global/pg_control and
# the WAL's long page headers), and it returns 0; with other options it returns 1 and pg_init
# runs initdb. The copy (its files of the copy's time) is what initdb would have made, apart from
# times recorded inside pg_control and the catalogs. initdb costs about 1 s of CPU per cluster;
# the copy and the rewrite a fraction of that.
PGSYSID=${PGSYSID:-${BIN_DIR:+$BIN_DIR/../tests/tools/pgsysid}}
pg_init_template() {
    local d=$1 o key tpl
    shift
    for o in "$@"; do
        [[ "$o" =~ ^(--wal-segsize=[0-9]+|--data-checksums)$ ]] || return 1
    done
    [ -x "$PGSYSID" ] || die "pg_init: no pgsysid at '$PGSYSID' (make <BUILD>/tests/tools/pgsysid)"
    [ -z "$(ls -A "$d" 2>/dev/null)" ] || die "pg_init: $d is not empty"
    key=$(printf '%s\n' "$@" | LC_ALL=C sort | tr -d '\n-' | tr '=' '_')
    tpl=$IT_PG_TEMPLATES/initdb${key:+_$key}
    (
        flock 9 || exit 1
        [ -f "$tpl.done" ] && exit 0
        rm -rf "$tpl"
        runuser -u postgres -- "$PGBIN/initdb" -D "$tpl" -A trust -U postgres --no-sync \
            --no-instructions "$@" >"$tpl.initdb.log" 2>&1 && touch "$tpl.done"
    ) 9>"$tpl.lock" || { cat "$tpl.initdb.log" 2>/dev/null; die "initdb of the template $tpl failed"; }
    [ -f "$tpl.done" ] || { cat "$tpl.initdb.log"; die "initdb of the template $tpl failed"; }
    mkdir -p "$d" && cp -R --preserve=mode,ownership "$tpl/." "$d/" &&
        chown postgres: "$d" && chmod 700 "$d" ||
        die "could not copy the template $tpl to $d"
    { echo "(a copy of $tpl, made by:)"; cat "$tpl.initdb.log"; } >"$d.initdb.log"
    "$PGSYSID" "$d" >/dev/null || die "could not give $d a system identifier of its own"
}

# sql PORT QUERY: one query, unaligned tuples-only output; non-zero on error.
sql() {
    pg_psql "$1" -c "$2"
}

sysid_of() {
    "$PGBIN/pg_controldata" -D "$1" | sed -n 's/^Database system identifier: *//p'
}

redo_wal_of() {
    "$PGBIN/pg_controldata" -D "$1" | sed -n "s/^Latest checkpoint's REDO WAL file: *//p"
}

# wait_archived PORT SEGNAME TIMEOUT_S: until pg_stat_archiver.last_archived_wal >= SEGNAME.
wait_archived() {
    local port=$1 want=$2 limit=$3 start last
    start=$(date +%s)
    while :; do
        last=$(sql "$port" "select coalesce(last_archived_wal, '') from pg_stat_archiver")
        if [ -n "$last" ] && [[ ! "$last" < "$want" ]]; then
            return 0
        fi
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            fail "archiving did not reach $want within ${limit}s (last archived: ${last:-none}," \
                "archiver: $(sql "$port" "select failed_count, last_failed_wal from pg_stat_archiver"))"
            return 1
        fi
        sleep 0.2
    done
}

# more_wal N: N more segments of the server on $PORT (a WAL record and a switch each), then
# waits until its archiver reports the last of them as archived (dies showing $PGD's log if not
# within 60 s).
more_wal() {
    local i last
    for i in $(seq 1 "$1"); do
        last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal()) from (select \
            pg_logical_emit_message(false, 'walsafe-test', 'more_wal')) m") ||
            die "pg_switch_wal failed"
    done
    wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving of $last did not finish"; }
}

# show_log FILE [N]: the tail of a server log, indented (for failure reports).
show_log() {
    echo "    --- ${1##*/} (last ${2:-25} lines) ---"
    tail -"${2:-25}" "$1" | sed 's/^/    /'
}

# ---- background jobs ----
# bg_start LOG CMD...: runs CMD in the background (stdout/stderr to LOG), registered so that
# cleanup ends it by its PID if it is still running; sets BG_PID.
BG_PIDS=()
bg_start() {
    local log=$1
    shift
    "$@" </dev/null >"$log" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
    [ ${#BG_PIDS[@]} -eq 1 ] && STOP_HOOKS=(bg_stop_all "${STOP_HOOKS[@]+"${STOP_HOOKS[@]}"}")
    return 0
}

# bg_wait PID LIMIT_S: waits for a job of bg_start; its exit status, or 124 (and the job is
# ended) when it is still running after LIMIT_S seconds.
bg_wait() {
    local pid=$1 limit=$2 start
    start=$(date +%s)
    while kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ]; do
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 124
        fi
        sleep 0.2
    done
    wait "$pid"
}

# Ends every job of bg_start that still runs (by its PID: only children of this shell).
bg_stop_all() {
    local p
    for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do
        kill -0 "$p" 2>/dev/null || continue
        kill -TERM "$p" 2>/dev/null
        sleep 0.2
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
}

# ---- base backups (basebackup) ----
BASEBACKUP=$BIN_DIR/basebackup

# backup_conf FILE PGDATA PORT [LINE...]: a configuration for basebackup (and wal-push /
# wal-fetch) of the server on PORT whose data directory is PGDATA, in the repository of
# repo_setup (REPO_CONF).
backup_conf() {
    local f=$1 pgd=$2 port=$3
    shift 3
    # Written beside and renamed: a running archiver's wal-push may be reading FILE.
    write_conf "$f.new" "${REPO_CONF[@]}" \
        "pg_conninfo = 'host=$SOCK port=$port user=postgres dbname=postgres'" \
        "pgdata = '$pgd'" "$@"
    mv -f "$f.new" "$f" || die "could not rename $f.new"
}

# bb ARGS...: basebackup ARGS, run as postgres (as PostgreSQL runs), through run (RC, last_err,
# $T/.last.out).
bb() {
    run runuser -u postgres -- "$BASEBACKUP" "$@"
}

# bb_create CONF [ARGS...]: `basebackup --config CONF create --fast ARGS`, which must succeed and
# print exactly one backup id on stdout; sets BACKUP_ID. Dies otherwise.
bb_create() {
    local conf=$1 t0
    shift
    t0=$(date +%s)
    bb --config "$conf" create --fast "$@"
    assert_rc 0 "basebackup create" || die "basebackup create failed"
    BACKUP_ID=$(cat "$T/.last.out")
    [[ "$BACKUP_ID" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] ||
        die "basebackup create printed \"$(head -c 200 "$T/.last.out")\", not one backup id"
    note "backup $BACKUP_ID created in $(($(date +%s) - t0))s"
}

# bb_list CONF: `list --json` into $T/list.json; fails (and returns 1) unless it exits 0 with a
# valid JSON document.
bb_list() {
    bb --config "$1" list --json
    assert_rc 0 "basebackup list --json" || return 1
    cp "$T/.last.out" "$T/list.json"
    json_eval "$T/list.json" 'typeof j.backups' >/dev/null ||
        { fail "basebackup list --json printed no valid JSON: $(head -c 300 "$T/list.json")"; return 1; }
}

# json_eval FILE EXPR: prints the JavaScript expression EXPR evaluated with j = FILE's JSON
# (strings bare, everything else as JSON), by node (which the S3 test server needs anyway).
# If the file is not JSON or EXPR throws: prints "<json_eval: error>" (so that no comparison
# passes by accident) and returns 1.
json_eval() {
    node -e '
        const fs = require("fs");
        try {
            const j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
            const v = eval(process.argv[2]);
            console.log(typeof v === "string" ? v : JSON.stringify(v));
        } catch (e) {
            console.log("<json_eval: " + String(e.message).split("\n")[0] + ">");
            process.exit(1);
        }' "$1" "$2"
}

# backup_status ID: the status of backup ID in $T/list.json (bb_list), or "absent".
backup_status() {
    json_eval "$T/list.json" \
        "(j.backups.find(b => b.id === '$1') || {status: 'absent'}).status"
}

# backup_label_of DIR: the LABEL line of the backup_label in a restored data directory.
backup_label_of() {
    sed -n 's/^LABEL: //p' "$1/backup_label" 2>/dev/null
}

# bb_restore CONF DIR [ARGS...]: `restore --pgdata DIR ARGS`, which must succeed and leave a data
# directory with recovery.signal; fails (returns 1) otherwise.
bb_restore() {
    local conf=$1 dir=$2 t0
    shift 2
    t0=$(date +%s)
    bb --config "$conf" restore --pgdata "$dir" "$@"
    assert_rc 0 "basebackup restore --pgdata ${dir##*/} $*" || return 1
    [ -f "$dir/PG_VERSION" ] || { fail "restore into $dir left no PG_VERSION"; return 1; }
    [ -f "$dir/recovery.signal" ] || { fail "restore into $dir wrote no recovery.signal"; return 1; }
    note "restored into ${dir##*/} in $(($(date +%s) - t0))s ($*)"
}

# start_restored DIR [LINE...]: starts a restored data directory on a port of its own (sets
# RPORT) with the private socket directory; archive_mode = off unless LINEs say otherwise (a
# restored copy must never archive into the repository by accident). The settings go into
# postgresql.conf (the copy's own, from the backup), after the primary's.
start_restored() {
    local d=$1
    shift
    RPORT=$(free_port)
    pg_conf "$d" "$RPORT" "archive_mode = off" "archive_command = ''" "$@"
    pg_start "$d"
}

# pg_wait_promoted PORT DIR [LIMIT_S]: until the server has left recovery; 1 (and its log shown)
# if it has not within LIMIT_S seconds (default 90) or its postmaster is gone.
pg_wait_promoted() {
    local port=$1 d=$2 limit=${3:-90} start r
    start=$(date +%s)
    while :; do
        r=$(sql "$port" "select pg_is_in_recovery()" 2>/dev/null)
        [ "$r" = "f" ] && return 0
        if [ $(($(date +%s) - start)) -ge "$limit" ] || [ ! -f "$d/postmaster.pid" ]; then
            fail "${d##*/} did not finish recovery within ${limit}s (pg_is_in_recovery: ${r:-no answer})"
            show_log "$d.log" 30
            return 1
        fi
        sleep 0.2
    done
}

# pg_wait_paused PORT DIR [LIMIT_S]: until recovery has paused at its target.
pg_wait_paused() {
    local port=$1 d=$2 limit=${3:-90} start r
    start=$(date +%s)
    while :; do
        r=$(sql "$port" "select pg_get_wal_replay_pause_state()" 2>/dev/null)
        [ "$r" = "paused" ] && return 0
        if [ $(($(date +%s) - start)) -ge "$limit" ] || [ ! -f "$d/postmaster.pid" ]; then
            fail "${d##*/} did not pause at its recovery target within ${limit}s (state: ${r:-no answer})"
            show_log "$d.log" 30
            return 1
        fi
        sleep 0.2
    done
}

# pgbench_run PORT ARGS...: PostgreSQL's pgbench against database postgres of the server on
# PORT, output in $T/pgbench.log; non-zero (and the log shown) if it fails. Its sessions use
# synchronous_commit = off (speed; the WAL and its order are the same). In the background:
# bg_start LOG env PGOPTIONS="$PGBENCH_OPTIONS" "$PGBIN/pgbench" -h "$SOCK" -p PORT -U postgres ARGS... postgres
PGBENCH_OPTIONS="-c synchronous_commit=off"
pgbench_run() {
    local port=$1
    shift
    PGOPTIONS=$PGBENCH_OPTIONS "$PGBIN/pgbench" -h "$SOCK" -p "$port" -U postgres "$@" postgres \
        >"$T/pgbench.log" 2>&1 ||
        { sed 's/^/      pgbench: /' "$T/pgbench.log" | tail -10; return 1; }
}

# pgbench_sums PORT: one md5 per pgbench table, over every row in a fixed order.
pgbench_sums() {
    sql "$1" "select concat_ws(' ',
        (select md5(coalesce(string_agg(t::text, ',' order by aid), '')) from pgbench_accounts t),
        (select md5(coalesce(string_agg(t::text, ',' order by bid), '')) from pgbench_branches t),
        (select md5(coalesce(string_agg(t::text, ',' order by tid), '')) from pgbench_tellers t),
        (select md5(coalesce(string_agg(t::text, ',' order by t::text), '')) from pgbench_history t),
        (select count(*) from pgbench_history))"
}

# ---- comparing clusters (incremental backups, delta restore) ----

# table_sums PORT: one line per permanent table of every database that accepts connections
# (templates left out): "DB.SCHEMA.TABLE ROWS MD5" over every row in a fixed order, sorted.
# Unlogged tables are left out (a restored copy has them empty: see unlogged_tables).
table_sums() {
    local port=$1 db
    for db in $(pg_psql "$port" -c "select datname from pg_database
                                    where datallowconn and not datistemplate order by 1"); do
        "$PGBIN/psql" -h "$SOCK" -p "$port" -U postgres -d "$db" -X -A -t -q -v ON_ERROR_STOP=1 -c "
            select current_database() || '.' || n.nspname || '.' || c.relname || ' ' ||
                   (xpath('/row/s/text()', query_to_xml(format(
                       'select count(*) || '' '' || md5(coalesce(string_agg(t::text, '','' order by t::text), '''')) as s from %s t',
                       c.oid::regclass), false, true, '')))[1]::text
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'm') and c.relpersistence = 'p'
              and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
            order by 1" || return 1
    done
}

# unlogged_tables PORT DB: "TABLE ROWS" of every unlogged table of DB, sorted.
unlogged_tables() {
    "$PGBIN/psql" -h "$SOCK" -p "$1" -U postgres -d "$2" -X -A -t -q -v ON_ERROR_STOP=1 -F ' ' -c "
        select c.relname, (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %s',
                           c.oid::regclass), false, true, '')))[1]::text
        from pg_class c where c.relkind = 'r' and c.relpersistence = 'u' order by 1"
}

# amcheck PORT WHAT: pg_amcheck of every database of the server on PORT (heap and btree, with
# heapallindexed; the amcheck extension installed where missing); fails naming WHAT and showing
# its report unless it finds nothing.
amcheck() {
    if ! "$PGBIN/pg_amcheck" -h "$SOCK" -p "$1" -U postgres --all --install-missing \
        --heapallindexed >"$T/amcheck.out" 2>&1; then
        fail "$2: pg_amcheck reports corruption or failed:"
        head -20 "$T/amcheck.out" | sed 's/^/      /'
        return 1
    fi
}

# backup_field ID FIELD: a field of backup ID in $T/list.json (bb_list), "absent" without one.
backup_field() {
    json_eval "$T/list.json" "(b => b && '$2' in b ? b['$2'] : 'absent')(j.backups.find(b => b.id === '$1'))"
}
