#!/usr/bin/env bash
# walsafe S3 benchmark: wal-push / wal-fetch into a local S3-compatible server against the same
# programs into a local-directory repository, on the same real PostgreSQL 15 WAL segments.
#
# Usage: bench/s3.sh [BIN_DIR]         (default build/release/bin)
# Environment:
#   SEGMENTS=N   number of 16 MiB WAL segments to push and fetch (default 50)
#   SCALE=N      pgbench -i scale of the throwaway cluster (default 50)
#   MP_CALLS=N   calls of the multipart run (default 5)
#   KEEP=1       keep the temporary directory (printed at the end) instead of removing it
#   WALSAFE_*    reach wal-push/wal-fetch unchanged (e.g. WALSAFE_PARALLEL=1)
#
# It prints figures; it asserts nothing about them. It exits non-zero only when the run itself
# broke (setup failed, or a push/fetch call failed, which makes the figures meaningless).
#
# Method (that of bench/wal.sh, with the S3 server in place of pgBackRest)
#   1. A throwaway cluster copies each completed segment out with archive_command = 'cp';
#      pgbench -i -s SCALE, a CHECKPOINT, then pgbench (TPC-B) until SEGMENTS more segments are
#      complete: those are the data set.
#   2. The S3 server of the integration tests (tests/integration/s3.sh: @20minutes/s3rver, a
#      node process that verifies SigV4 and stores objects as plain files) runs on 127.0.0.1
#      with a fresh data directory on the same disk as the local repository. Both
#      repositories are encrypted, zstd level 3; only `repo` (and the s3_* keys) differ.
#   3. As the postgres user, each segment is pushed (then, in a second phase, fetched) once per
#      repository, one process per call via sh -c with cwd = a data-directory look-alike, the
#      two repositories interleaved segment by segment and taking turns going first. Every
#      call is timed on its own (bash $EPOCHREALTIME) and wrapped in /usr/bin/time -f %M for
#      its peak RSS. Before each phase: sync, and a read of its inputs (segments, and for
#      fetch both repositories' files) so both read page-cache-warm data.
#   4. segments/s = calls / sum of latencies; median and p90 per call in ms.
#   5. Multipart: MP_CALLS pushes of a segment with compress = none, s3_part_size = 5MB,
#      parallel = 2 (so a 16 MiB segment is 4 parts, 2 in flight); peak RSS against the bound
#      part_size x parallel + 32 MB.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:-build/release/bin}" && pwd)
SEGMENTS=${SEGMENTS:-50}
SCALE=${SCALE:-50}
MP_CALLS=${MP_CALLS:-5}
MP_PART_MB=5
MP_PARALLEL=2

need_root "the programs"
need_count SEGMENTS SCALE MP_CALLS
need_tools
# shellcheck source=../tests/integration/s3.sh
. "$ROOT/tests/integration/s3.sh"
s3_check_deps || die "the S3 test server cannot run (see above)"

bench_tmpdir walsafe-bench-s3
BUCKET=walsafe-bench
# The S3 server is stopped by the PID it recorded (nothing is killed by name), PostgreSQL by the
# postmaster named in its postmaster.pid.
trap 'bench_cleanup s3_stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# shellcheck disable=SC2119 # no directories beyond the common ones
bench_layout

# ---- 1. real WAL ----------------------------------------------------------------------------
make_wal
stage_segments

# ---- 2. the S3 server and the configurations ---------------------------------------------------
note "start the S3 test server"
s3_start "$DIR/s3" "$BUCKET" || die "could not start the S3 test server"
S3_VERSION=$(node -p "require('$ROOT/tests/s3/node_modules/@20minutes/s3rver/package.json').version")

openssl rand -hex 32 >"$DIR/ws.key"
common="cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3"
s3_keys="s3_endpoint = '$S3_ENDPOINT'
s3_uri_style = 'path'
s3_access_key_id = '$S3_ACCESS_KEY'
s3_secret_access_key = '$S3_SECRET_KEY'"
printf "repo = '%s'\n%s\n" "$DIR/ws-repo" "$common" >"$DIR/local.conf"
printf "repo = 's3://%s/bench'\n%s\n%s\n" "$BUCKET" "$common" "$s3_keys" >"$DIR/s3.conf"
printf "repo = 's3://%s/multipart'\n%s\n%s\ncompress = 'none'\ns3_part_size = '%dMB'\nparallel = %d\n" \
    "$BUCKET" "$common" "$s3_keys" "$MP_PART_MB" "$MP_PARALLEL" >"$DIR/s3-mp.conf"
chown postgres: "$DIR/ws.key" "$DIR"/*.conf
chmod 600 "$DIR/ws.key" "$DIR"/*.conf

# ---- 3. timed phases --------------------------------------------------------------------------
run_phase() { # CWD MODE SEGMENT_LIST NAME PREFIX [NAME PREFIX]...
    local cwd=$1 mode=$2 list=$3
    shift 3
    phase_prepare "$mode" "$list" $(($# / 2)) "$DIR/ws-repo" "$S3_DATA"
    phase_time "$cwd" "$mode" "$list" "$@"
}

run_phase "$DIR/push" push "$DIR/segments" \
    local-push "$WAL_PUSH --config $DIR/local.conf" \
    s3-push "$WAL_PUSH --config $DIR/s3.conf"
run_phase "$DIR/fetch" fetch "$DIR/segments" \
    local-fetch "$WAL_FETCH --config $DIR/local.conf" \
    s3-fetch "$WAL_FETCH --config $DIR/s3.conf"
head -n "$MP_CALLS" "$DIR/segments" >"$DIR/segments-mp"
run_phase "$DIR/push" push "$DIR/segments-mp" \
    s3-multipart-push "$WAL_PUSH --config $DIR/s3-mp.conf"

# ---- 4. figures -------------------------------------------------------------------------------
printf '\n'
printf 'walsafe S3 benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
print_machine "both repositories and the segments"
printf 'versions: %s (source tree %s at start); S3 server @20minutes/s3rver %s on node %s; %s\n' \
    "$("$WAL_PUSH" --version)" "$BUILD_REV" "$S3_VERSION" "$(node --version)" "$("$PGBIN/postgres" --version)"
print_data
printf 'settings: both repositories encrypted, zstd level 3, walsafe parallel = %s, s3_part_size default;\n' \
    "${WALSAFE_PARALLEL:-default}"
printf '          one process per segment via sh -c, cwd = data directory, as postgres; serial, repositories interleaved;\n'
printf '          S3 over http://127.0.0.1 (SigV4 signed and verified); the server (node) shares the %s CPUs\n' "$(nproc)"
LABEL[s3-multipart-push]="s3-push multipart"
print_table 19 local-push s3-push local-fetch s3-fetch s3-multipart-push
printf 'ratio s3/local (<1: S3 slower)   segments/s: push %s, fetch %s;   1/median: push %s, fetch %s\n' \
    "$(ratio "${SPS[s3-push]}" "${SPS[local-push]}")" "$(ratio "${SPS[s3-fetch]}" "${SPS[local-fetch]}")" \
    "$(ratio "${MPS[s3-push]}" "${MPS[local-push]}")" "$(ratio "${MPS[s3-fetch]}" "${MPS[local-fetch]}")"
printf 'peak RSS s3/local: push %s, fetch %s\n' \
    "$(ratio "${RSS[s3-push]}" "${RSS[local-push]}")" "$(ratio "${RSS[s3-fetch]}" "${RSS[local-fetch]}")"

bound_kb=$(((MP_PART_MB * MP_PARALLEL + 32) * 1024))
mp_parts=$(grep -a -F "multipart/main/wal/" "$S3_LOG" | grep -c -F "?partNumber=" || true)
printf '\nmultipart: %d pushes of a 16 MiB segment, compress = none, s3_part_size = %dMB, parallel = %d (%d part uploads seen by the server)\n' \
    "$MP_CALLS" "$MP_PART_MB" "$MP_PARALLEL" "$mp_parts"
printf '  peak RSS %s KB; bound part_size x parallel + 32 MB = %d KB (%s)\n' "${RSS[s3-multipart-push]}" \
    "$bound_kb" "$([ "${RSS[s3-multipart-push]}" -le "$bound_kb" ] && echo within || echo ABOVE)"

raw=$((SEGMENTS * 16777216))
local_bytes=$(find "$DIR/ws-repo" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
s3_bytes=$(find "$S3_DATA/$BUCKET/bench" -name '*._S3rver_object' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
printf '\nstored bytes (WAL in: %d bytes): local %d (%d files), S3 %d (%d objects)\n' "$raw" \
    "$local_bytes" "$(find "$DIR/ws-repo" -type f | wc -l)" "$s3_bytes" \
    "$(find "$S3_DATA/$BUCKET/bench" -name '*._S3rver_object' | wc -l)"

print_stderr local-push s3-push local-fetch s3-fetch s3-multipart-push
bench_finish
