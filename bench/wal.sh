#!/usr/bin/env bash
# walsafe WAL archiving benchmark: wal-push / wal-fetch against pgBackRest archive-push /
# archive-get, on the same real PostgreSQL 15 WAL segments, on the same disk.
#
# Usage: bench/wal.sh [BIN_DIR]        (make bench builds first and passes build/release/bin)
# Environment:
#   SEGMENTS=N   number of 16 MiB WAL segments to push and fetch (default 100)
#   SCALE=N      pgbench -i scale of the throwaway cluster (default 50)
#   WAL_GEN=update  makes the WAL with bulk UPDATEs and CHECKPOINTs instead of TPC-B (bench/lib.sh
#                make_wal: much faster to make; the data line names it)
#   KEEP=1       keep the temporary directory (printed at the end) instead of removing it
#   MODE=local   walsafe against a repository directory on the same disk (default); MODE=sftp
#                also runs walsafe against an sftp:// repository on a private sshd on loopback
#                (tests/integration/sshd.sh; same disk, same settings), interleaved with the
#                other tools, and adds its rows and the ratio sftp/local; MODE=prefetch
#                instead serves the segments in order through wal-fetch with prefetch against
#                pgBackRest's async archive-get (bench/wal_prefetch.sh: its method, ROUNDS and
#                PREFETCH_PARALLEL); MODE=pushahead instead drains a backlog of SEGMENTS (>= 200)
#                ready segments the way PostgreSQL's archiver does, wal-push with push-ahead
#                against pgBackRest's async archive-push (bench/wal_pushahead.sh: its method,
#                ROUNDS, PUSHAHEAD_PARALLEL and PUSHAHEAD_REPOS); MODE=module instead drains a
#                backlog of SEGMENTS through a real PostgreSQL archiver with the walsafe_archive
#                module, archive_command = wal-push and pgBackRest's async archive-push, and
#                times the trickle per repository kind (bench/wal_module.sh: its method);
#                MODE=module-rss only the archiver's RSS through the module (MODULE_RSS segments);
#                MODE=fetch runs the fetch phase alone, ROUNDS passes, with each call's CPU time
#                (bench/wal_fetch.sh)
#   WALSAFE_*    reach wal-push/wal-fetch unchanged (e.g. WALSAFE_PARALLEL=1)
#   BEFORE_BIN=DIR  (MODE=local or fetch) also runs the wal-push and wal-fetch of DIR (an earlier build) in
#                the same phases, interleaved, into a repository of their own: rows walsafe-before-*
#
# It prints figures; it asserts nothing about them. It exits non-zero only when the run itself
# broke (setup failed, or a push/fetch call failed, which makes the figures meaningless).
#
# Method
#   1. A throwaway cluster (private socket dir, listen_addresses = '') copies each completed
#      segment out with archive_command = 'cp'. pgbench -i -s SCALE loads it, a CHECKPOINT
#      follows, then pgbench (TPC-B) runs until SEGMENTS more segments are complete; those
#      segments (OLTP WAL with the full-page images that checkpoints cause) are the data set.
#   2. The cluster is stopped. A data-directory look-alike (copy of global/pg_control, pg_wal
#      holding the staged segments) is the working directory of every push, and another one
#      with an empty pg_wal that of every fetch, as the archiver and the startup process have.
#   3. Each phase runs as the postgres user (pgBackRest refuses root; walsafe gets the same
#      treatment) and calls the tool once per segment, serially, the way PostgreSQL does:
#      system("sh -c '<command>'") with cwd = data directory. Every call is timed on its own
#      (bash $EPOCHREALTIME, no fork) and wrapped in /usr/bin/time -f %M for its peak RSS.
#      Push phase: walsafe, pgBackRest and (as a reference) the zstd CLI, interleaved segment
#      by segment, taking turns going first; then the fetch phase likewise. Before each phase:
#      sync (so one phase's writeback does not land in the next) and a read of its inputs
#      (so all tools read the same page-cache-warm files).
#   4. segments/s = calls / sum of that tool's call latencies. Latencies are per call, in ms,
#      and include the fork/exec of time and sh (a few ms, the same for every tool).
#   Fetch rows: walsafe-fetch with parallel = 1 (one thread, no prefetch), walsafe-fetch-par with
#   parallel at its default (the CPU count: a segment's zstd frames decode on that many threads,
#   object format 3) and spool_dir = '' (no prefetch either), both one process per segment.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(cd "${1:-build/release/bin}" && pwd)
SEGMENTS=${SEGMENTS:-100}
SCALE=${SCALE:-50}
MODE=${MODE:-local}

need_root pgBackRest
need_count SEGMENTS SCALE
[[ $MODE =~ ^(local|sftp|prefetch|pushahead|module|module-rss|fetch)$ ]] ||
    die "MODE must be local, sftp, prefetch, pushahead, module, module-rss or fetch (got '$MODE')"
[ "$MODE" != pushahead ] || [ "$SEGMENTS" -ge 200 ] || die "MODE=pushahead needs SEGMENTS >= 200"
PA_REPOS=${PUSHAHEAD_REPOS:-local}
[[ $MODE =~ ^(pushahead|module)$ ]] || PA_REPOS=local
for r in $PA_REPOS; do
    [[ $r =~ ^(local|sftp|s3)$ ]] || die "PUSHAHEAD_REPOS: local, sftp or s3 (got '$r')"
done
if [ "$MODE" = sftp ] || [[ " $PA_REPOS " == *" sftp "* ]]; then
    [ -x /usr/sbin/sshd ] || die "MODE=sftp needs openssh-server (/usr/sbin/sshd)"
    # shellcheck source=../tests/integration/sshd.sh
    . "$(cd "$(dirname "$0")/.." && pwd)/tests/integration/sshd.sh"
fi
if [[ " $PA_REPOS " == *" s3 "* ]]; then
    # shellcheck source=../tests/integration/s3.sh
    . "$(cd "$(dirname "$0")/.." && pwd)/tests/integration/s3.sh"
    s3_check_deps || die "the S3 test server cannot run (see above)"
fi
need_tools
if [ -n "${BEFORE_BIN:-}" ]; then
    [[ $MODE =~ ^(local|fetch)$ ]] || die "BEFORE_BIN works with MODE=local or fetch"
    BEFORE_BIN=$(cd "$BEFORE_BIN" && pwd)
    for f in wal-push wal-fetch; do [ -x "$BEFORE_BIN/$f" ] || die "missing $BEFORE_BIN/$f"; done
fi
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install -y pgbackrest)"

bench_tmpdir walsafe-bench
# The private sshd (MODE=sftp, PUSHAHEAD_REPOS with sftp) is stopped by the PID in its pid file and
# the S3 test server by the PID it recorded, never by name; PostgreSQL by the postmaster named in
# its postmaster.pid.
trap 'bench_cleanup sshd_stop_all s3_stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_layout pgbr/repo pgbr/log pgbr/lock pgbr/spool
if [ "$MODE" = module-rss ]; then # its own cluster: no data set needed
    # shellcheck source=wal_module.sh
    . "$(dirname "$0")/wal_module.sh"
    module_rss_bench
    bench_finish
    exit 0
fi

# ---- 1. real WAL ----------------------------------------------------------------------------
make_wal

# pgBackRest's stanza-create checks the running cluster.
PGBR_CONF=$DIR/pgbr/pgbackrest.conf
cat >"$PGBR_CONF" <<CONF
[global]
repo1-path=$DIR/pgbr/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(openssl rand -base64 48 | tr -d '\n')
compress-type=zst
compress-level=3
archive-async=n
log-level-console=warn
log-path=$DIR/pgbr/log
lock-path=$DIR/pgbr/lock
spool-path=$DIR/pgbr/spool

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$SOCK
pg1-port=$PORT
CONF
chown postgres: "$PGBR_CONF"
chmod 600 "$PGBR_CONF"
note "pgbackrest stanza-create"
as_pg pgbackrest --config="$PGBR_CONF" --stanza=bench stanza-create

stage_segments

# walsafe: encrypted, zstd level 3, same disk.
openssl rand -hex 32 >"$DIR/ws.key"
cat >"$DIR/walsafe.conf" <<CONF
repo = '$DIR/ws-repo'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
CONF
chown postgres: "$DIR/ws.key" "$DIR/walsafe.conf"
chmod 600 "$DIR/ws.key" "$DIR/walsafe.conf"

# BEFORE_BIN: an earlier build with the same settings, its own repository and private copies.
BEFORE_CMDS_PUSH=() BEFORE_CMDS_FETCH=() BEFORE_NAMES=()
if [ -n "${BEFORE_BIN:-}" ]; then
    mkdir -m 700 "$DIR/ws-repo-before" "$DIR/bin-before"
    cp "$BEFORE_BIN/wal-push" "$BEFORE_BIN/wal-fetch" "$DIR/bin-before/"
    sed "s#^repo = .*#repo = '$DIR/ws-repo-before'#" "$DIR/walsafe.conf" >"$DIR/walsafe-before.conf"
    chown -R postgres: "$DIR/ws-repo-before" "$DIR/bin-before" "$DIR/walsafe-before.conf"
    chmod 600 "$DIR/walsafe-before.conf"
    BEFORE_NAMES=(walsafe-before-push walsafe-before-fetch)
    BEFORE_CMDS_PUSH=(walsafe-before-push "$DIR/bin-before/wal-push --config $DIR/walsafe-before.conf")
    BEFORE_CMDS_FETCH=(walsafe-before-fetch "WALSAFE_PARALLEL=1 $DIR/bin-before/wal-fetch --config $DIR/walsafe-before.conf")
fi

# walsafe over SFTP: the same settings, the repository a directory of the same disk, served by a
# private sshd on 127.0.0.1 (login as root: Debian locks the postgres account's password, and
# sshd without PAM refuses locked accounts even for keys; the key files belong to postgres, who
# runs the tools).
SFTP_CMDS_PUSH=() SFTP_CMDS_FETCH=() SFTP_NAMES=()
if [ "$MODE" = sftp ] || [[ " $PA_REPOS " == *" sftp "* ]]; then
    note "start a private sshd on 127.0.0.1"
    SSHD_USERS=root SSHD_KEY_OWNER=postgres sshd_start "$DIR/sshd" || die "could not start sshd"
    mkdir -m 700 "$DIR/ws-sftp-repo"
    cat >"$DIR/walsafe-sftp.conf" <<CONF
repo = 'sftp://root@127.0.0.1:$SSHD_PORT$DIR/ws-sftp-repo'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
sftp_identity_file = '$SSHD_CLIENT_KEY'
sftp_known_hosts = '$SSHD_KNOWN_HOSTS'
CONF
    chown postgres: "$DIR/walsafe-sftp.conf"
    chmod 600 "$DIR/walsafe-sftp.conf"
    if [ "$MODE" = sftp ]; then SFTP_NAMES=(walsafe-sftp-push walsafe-sftp-fetch); fi
    SFTP_CMDS_PUSH=(walsafe-sftp-push "$WAL_PUSH --config $DIR/walsafe-sftp.conf")
    SFTP_CMDS_FETCH=(walsafe-sftp-fetch "WALSAFE_PARALLEL=1 $WAL_FETCH --config $DIR/walsafe-sftp.conf")
fi

# walsafe over S3 (PUSHAHEAD_REPOS with s3): the npm test server on 127.0.0.1, its data on the
# same disk.
if [[ " $PA_REPOS " == *" s3 "* ]]; then
    note "start the S3 test server on 127.0.0.1"
    s3_start "$DIR/s3" walsafe-bench >/dev/null || die "could not start the S3 test server"
    cat >"$DIR/walsafe-s3.conf" <<CONF
repo = 's3://walsafe-bench/pa'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
s3_endpoint = '$S3_ENDPOINT'
s3_uri_style = 'path'
s3_access_key_id = '$S3_ACCESS_KEY'
s3_secret_access_key = '$S3_SECRET_KEY'
CONF
    chown postgres: "$DIR/walsafe-s3.conf"
    chmod 600 "$DIR/walsafe-s3.conf"
fi

if [ "$MODE" = prefetch ]; then
    # shellcheck source=wal_prefetch.sh
    . "$(dirname "$0")/wal_prefetch.sh"
    prefetch_bench
    bench_finish
    exit 0
fi
if [ "$MODE" = module ]; then
    # shellcheck source=wal_module.sh
    . "$(dirname "$0")/wal_module.sh"
    module_bench
    bench_finish
    exit 0
fi
if [ "$MODE" = fetch ]; then
    # shellcheck source=wal_fetch.sh
    . "$(dirname "$0")/wal_fetch.sh"
    fetch_bench
    bench_finish
    exit 0
fi
if [ "$MODE" = pushahead ]; then
    # shellcheck source=wal_pushahead.sh
    . "$(dirname "$0")/wal_pushahead.sh"
    pushahead_bench
    bench_finish
    exit 0
fi

# ---- 2. timed phases --------------------------------------------------------------------------
run_phase() { # CWD MODE NAME PREFIX [NAME PREFIX]...
    local cwd=$1 mode=$2
    shift 2
    phase_prepare "$mode" "$DIR/segments" $(($# / 2)) \
        "$DIR/ws-repo" "$DIR/pgbr/repo" ${SFTP_NAMES[0]:+"$DIR/ws-sftp-repo"} \
        ${BEFORE_NAMES[0]:+"$DIR/ws-repo-before"}
    phase_time "$cwd" "$mode" "$DIR/segments" "$@"
}

# Reference, not a tool under test: the zstd CLI at the same level on the same segment, with the
# same sh/time wrapping: no checksum, no encryption, no file written.
run_phase "$DIR/push" push \
    walsafe-push "$WAL_PUSH --config $DIR/walsafe.conf" \
    pgbackrest-push "pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$DIR/push archive-push" \
    zstd-cli "zstd -3 -q -c >/dev/null" \
    "${SFTP_CMDS_PUSH[@]}" "${BEFORE_CMDS_PUSH[@]}"
# One wal-fetch call per segment on its own, like archive-get without async: parallel = 1, or
# spool_dir = '' with the default parallel, keeps prefetch (which MODE=prefetch measures) out of
# this phase.
run_phase "$DIR/fetch" fetch \
    walsafe-fetch "WALSAFE_PARALLEL=1 $WAL_FETCH --config $DIR/walsafe.conf" \
    walsafe-fetch-par "WALSAFE_SPOOL_DIR= $WAL_FETCH --config $DIR/walsafe.conf" \
    pgbackrest-get "pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$DIR/fetch archive-get" \
    "${SFTP_CMDS_FETCH[@]}" "${BEFORE_CMDS_FETCH[@]}"

# ---- 3. figures -------------------------------------------------------------------------------
printf '\n'
printf 'walsafe WAL archiving benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
print_machine "repos and segments"
printf 'versions: %s (source tree %s at start); %s; %s; %s\n' "$("$WAL_PUSH" --version)" "$BUILD_REV" "$(pgbackrest version)" \
    "$("$PGBIN/postgres" --version)" "$(zstd --version | sed 's/^\*\*\* //; s/, by.*//')"
print_data
printf 'settings: both zstd level 3 and encrypted (walsafe: its cipher, key file; pgBackRest: aes-256-cbc, pass);\n'
printf '          one process per segment via sh -c, cwd = data directory, as postgres; serial, tools interleaved;\n'
printf '          walsafe parallel = %s (walsafe-fetch: 1; walsafe-fetch-par: %s threads, spool_dir empty; no prefetch, see MODE=prefetch);\n' \
    "${WALSAFE_PARALLEL:-default}" "${WALSAFE_PARALLEL:-$(nproc)}"
printf '          pgBackRest process-max = 1, archive-async = n, file log at info\n'
if [ -n "${BEFORE_BIN:-}" ]; then
    printf 'before: walsafe-before-* = %s (%s), the same settings, its own repository\n' \
        "$BEFORE_BIN" "$("$DIR/bin-before/wal-push" --version)"
fi
if [ "$MODE" = sftp ]; then
    printf 'sftp: walsafe-sftp-* = the same walsafe settings against sftp://root@127.0.0.1:%s (private sshd,\n' "$SSHD_PORT"
    printf '      %s, %s), the repository on the same disk; one SSH session per call\n' \
        "$(ssh -V 2>&1 | cut -d, -f1)" "$(curl --version | grep -o 'libssh2/[0-9.]*' || echo 'libssh2 ?')"
fi
PW=17 # width of the phase column; walsafe-sftp-fetch needs one more
[ "$MODE" = sftp ] && PW=18
[ -n "${BEFORE_BIN:-}" ] && PW=20
LABEL[zstd-cli]="(ref) zstd -3"
print_table "$PW" walsafe-push pgbackrest-push walsafe-fetch walsafe-fetch-par pgbackrest-get zstd-cli \
    "${SFTP_NAMES[@]}" "${BEFORE_NAMES[@]}"
printf 'ratio walsafe/pgBackRest (>1: walsafe faster)   segments/s: push %s, fetch %s;   1/median: push %s, fetch %s\n' \
    "$(ratio "${SPS[walsafe-push]}" "${SPS[pgbackrest-push]}")" \
    "$(ratio "${SPS[walsafe-fetch]}" "${SPS[pgbackrest-get]}")" \
    "$(ratio "${MPS[walsafe-push]}" "${MPS[pgbackrest-push]}")" \
    "$(ratio "${MPS[walsafe-fetch]}" "${MPS[pgbackrest-get]}")"
printf 'ratio walsafe-fetch-par/pgBackRest   segments/s: %s;   1/median: %s\n' \
    "$(ratio "${SPS[walsafe-fetch-par]}" "${SPS[pgbackrest-get]}")" \
    "$(ratio "${MPS[walsafe-fetch-par]}" "${MPS[pgbackrest-get]}")"
if [ -n "${BEFORE_BIN:-}" ]; then
    printf 'ratio after/before (>1: this build faster)   1/median: push %s, fetch %s;   segments/s: push %s, fetch %s\n' \
        "$(ratio "${MPS[walsafe-push]}" "${MPS[walsafe-before-push]}")" \
        "$(ratio "${MPS[walsafe-fetch]}" "${MPS[walsafe-before-fetch]}")" \
        "$(ratio "${SPS[walsafe-push]}" "${SPS[walsafe-before-push]}")" \
        "$(ratio "${SPS[walsafe-fetch]}" "${SPS[walsafe-before-fetch]}")"
    printf 'ratio walsafe-before-fetch/pgBackRest   1/median: %s\n' \
        "$(ratio "${MPS[walsafe-before-fetch]}" "${MPS[pgbackrest-get]}")"
fi
if [ "$MODE" = sftp ]; then
    # time per segment over SFTP divided by time per segment to the local directory
    printf 'ratio walsafe sftp/local, time per segment (>1: sftp slower)   mean: push %s, fetch %s;   median: push %s, fetch %s\n' \
        "$(ratio "${SPS[walsafe-push]}" "${SPS[walsafe-sftp-push]}")" \
        "$(ratio "${SPS[walsafe-fetch]}" "${SPS[walsafe-sftp-fetch]}")" \
        "$(ratio "${MPS[walsafe-push]}" "${MPS[walsafe-sftp-push]}")" \
        "$(ratio "${MPS[walsafe-fetch]}" "${MPS[walsafe-sftp-fetch]}")"
fi

raw=$((SEGMENTS * 16777216))
ws_bytes=$(du -sb "$DIR/ws-repo" | cut -f1)
br_bytes=$(du -sb "$DIR/pgbr/repo" | cut -f1)
printf '\nstored bytes (whole repository, apparent size; WAL in: %d bytes)\n' "$raw"
printf '  walsafe     %12d  (%.1f%% of the WAL, %d files)\n' "$ws_bytes" \
    "$(awk -v s="$ws_bytes" -v r="$raw" 'BEGIN {print 100 * s / r}')" "$(find "$DIR/ws-repo" -type f | wc -l)"
printf '  pgBackRest  %12d  (%.1f%% of the WAL, %d files)\n' "$br_bytes" \
    "$(awk -v s="$br_bytes" -v r="$raw" 'BEGIN {print 100 * s / r}')" "$(find "$DIR/pgbr/repo" -type f | wc -l)"
if [ "$MODE" = sftp ]; then
    sf_bytes=$(du -sb "$DIR/ws-sftp-repo" | cut -f1)
    printf '  walsafe-sftp %11d  (%.1f%% of the WAL, %d files)\n' "$sf_bytes" \
        "$(awk -v s="$sf_bytes" -v r="$raw" 'BEGIN {print 100 * s / r}')" "$(find "$DIR/ws-sftp-repo" -type f | wc -l)"
fi

print_stderr walsafe-push pgbackrest-push walsafe-fetch walsafe-fetch-par pgbackrest-get "${SFTP_NAMES[@]}" \
    "${BEFORE_NAMES[@]}"
bench_finish
