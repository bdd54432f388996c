#!/usr/bin/env bash
# walsafe WAL streaming benchmark: wal-receive streaming into a local repository while PostgreSQL
# writes WAL as fast as it can (bulk INSERT ... generate_series), against pg_receivewal into a
# directory on the same disk under the same load (issue 19, item 8).
#
# Usage: bench/receive.sh [BIN_DIR]     (default build/release/bin: run make first)
# Environment:
#   SIZE_MB=N    MiB of WAL the server writes in each phase (default 2048)
#   PGRW=LIST    pg_receivewal's --compress methods, one phase each (default "lz4 gzip"): the
#                PostgreSQL 15 pg_receivewal says "compression with ZSTD is not yet supported",
#                so the issue's --compress=zstd comparison is made with its two methods
#   FLUSH=D      receive_flush_interval of wal-receive (default 10s, the default)
#   PARALLEL=N   parallel for wal-receive (default: not set, i.e. the number of CPUs; more than 1
#                gives each completed segment's zstd that many worker threads)
#   KEEP=1       keep the temporary directory (printed at the end) instead of removing it
#
# It prints figures and the issue's targets beside them; it asserts nothing about them. It exits
# non-zero only when the run itself broke (setup failed, a receiver died or did not receive
# everything).
#
# Method
#   1. A throwaway cluster (bench/lib.sh cluster_start: fsync off, synchronous_commit off,
#      archive_command 'true', max_wal_size 1GB, autovacuum off, 16 MiB segments), a table
#      bulk (id int, pad text) without index.
#   2. One phase per receiver, one after the other, each alone on the machine with its own
#      physical slot (created before, dropped after: only one slot holds WAL at a time):
#        wal-receive    --config (zstd 3 and AES-256-GCM as every object, local repository,
#                       spool in the run's directory)
#        pg_receivewal  -S SLOT -D DIR --compress=METHOD (per PGRW), --no-sync left off
#      The receiver runs as postgres under GNU time (user+sys CPU, peak RSS of the receiver).
#      Once its slot is active, one psql session inserts 200 000 rows per transaction (three
#      distinct md5 texts each, 96 bytes: WAL that compresses as hex text does, not as runs of
#      one byte; about 35 MiB of WAL per transaction) until the server has written SIZE_MB MiB since the
#      phase started, as fast as it can. Every 0.5 s pg_stat_replication gives the receiver's
#      lag: bytes between pg_current_wal_lsn() and sent_lsn (the backlog the walsender cannot
#      send because the receiver does not read) and write_lsn (what the receiver reported, every
#      10 s). After the load, the time until sent_lsn reaches the end ("catch-up"), then SIGTERM (wal-receive) or
#      SIGINT (pg_receivewal) and the exit status; the WAL it received is checked: wal-receive's
#      repository holds every segment of the phase but the last (wal-fetch of the first, middle
#      and last complete segment compared with pg_wal's, which the slot kept), pg_receivewal's
#      directory holds a file per segment.
#   3. Figures per phase: WAL MiB written, the server's WAL rate (MiB/s during the load), lag
#      (median and max over the load, MiB), catch-up seconds, CPU seconds per GiB of WAL, peak
#      RSS, bytes stored per byte of WAL; and the lag series (every 2 s) side by side.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(cd "${1:-build/release/bin}" && pwd)
SIZE_MB=${SIZE_MB:-2048}
read -r -a PGRW_METHODS <<<"${PGRW-lz4 gzip}"
FLUSH=${FLUSH:-10s}
PARALLEL=${PARALLEL:-}

need_root "wal-receive and pg_receivewal"
need_count SIZE_MB
need_tools wal-receive wal-push wal-fetch
[ -x "$PGBIN/pg_receivewal" ] || die "missing $PGBIN/pg_receivewal"

bench_tmpdir walsafe-bench-receive
trap 'bench_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_layout spool pgrw
WAL_RECEIVE=$DIR/bin/wal-receive

# ---- 1. the configuration and the cluster ------------------------------------------------------
openssl rand -hex 32 >"$DIR/ws.key"
CONF=$DIR/receive.conf
printf '%s\n' "repo = '$DIR/ws-repo'" "encrypt_key_file = '$DIR/ws.key'" "spool_dir = '$DIR/spool'" \
    "receive_flush_interval = $FLUSH" "slot_name = 'bench_walsafe'" \
    "pg_conninfo = 'host=$SOCK port=$PORT user=postgres dbname=postgres'" \
    ${PARALLEL:+"parallel = $PARALLEL"} >"$CONF"
chown postgres: "$DIR/ws.key" "$CONF"
chmod 600 "$DIR/ws.key" "$CONF"
chmod 700 "$DIR/spool"
cluster_start "true" "autovacuum = off"
psql_q -c "CREATE TABLE bulk (id int, pad text)" >/dev/null

# ---- 2. the phases -----------------------------------------------------------------------------
# lsn_bytes LSN: the LSN as a byte position.
lsn_bytes() { psql_q -c "SELECT '$1'::pg_lsn - '0/0'"; }

# sample_lag SLOT OUT: every 0.5 s "seconds sent_lag_bytes write_lag_bytes" of the walsender that
# uses SLOT, appended to OUT, until killed.
sample_lag() {
    local t0=$EPOCHREALTIME line
    while :; do
        line=$(psql_q -F ' ' -c "SELECT pg_current_wal_lsn() - sent_lsn, pg_current_wal_lsn() - write_lsn
            FROM pg_stat_replication WHERE pid = (SELECT active_pid FROM pg_replication_slots
                                                  WHERE slot_name = '$1')" 2>/dev/null) || true
        [ -z "$line" ] || awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$line" \
            'BEGIN {printf "%.1f %s\n", b - a, l}' >>"$2"
        sleep 0.5
    done
}

# phase NAME SLOT COMMAND...: the receiver COMMAND (as postgres, under GNU time) streaming from
# SLOT while the load writes SIZE_MB MiB of WAL; results in $DIR/results/NAME.*.
phase() {
    local name=$1 slot=$2 res=$DIR/results/$1 tpid rpid sampler start_lsn end_lsn t0 t1 t2 i rc sig
    shift 2
    note "phase $name: $*"
    sync
    start_lsn=$(psql_q -c "SELECT pg_current_wal_lsn()")
    (cd "$DIR" && exec "$TIME" -f '%U %S %M' -o "$res.time" setpriv --reuid=postgres --regid=postgres \
        --init-groups -- "$@") \
        >"$res.out" 2>"$res.err" &
    tpid=$!
    rpid=
    for i in $(seq 1 200); do
        [ "$(psql_q -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'")" = t ] && break
        kill -0 "$tpid" 2>/dev/null || { cat "$res.err" >&2; die "$name exited before it streamed"; }
        sleep 0.05
    done
    rpid=$(pgrep -P "$tpid" || true) # time -> the receiver (setpriv execs it)
    [ -n "$rpid" ] || die "$name: no receiver process under $tpid"
    sample_lag "$slot" "$res.lag" &
    sampler=$!
    t0=$EPOCHREALTIME
    psql_q -c "DO \$\$ BEGIN
        WHILE pg_current_wal_lsn() - '$start_lsn' < $SIZE_MB::numeric * 1048576 LOOP
            INSERT INTO bulk SELECT g, md5(g::text) || md5((-g)::text) || md5((7 * g)::text)
                FROM generate_series(1, 200000) g;
            COMMIT;
        END LOOP; END \$\$" >/dev/null
    t1=$EPOCHREALTIME
    end_lsn=$(psql_q -c "SELECT pg_current_wal_lsn()")
    until [ "$(psql_q -c "SELECT sent_lsn >= '$end_lsn' FROM pg_stat_replication WHERE pid =
                (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot')")" = t ]; do
        kill -0 "$rpid" 2>/dev/null || die "$name died during the catch-up (see $res.err; KEEP=1)"
        sleep 0.05
    done
    t2=$EPOCHREALTIME
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    kill "-$STOP_SIGNAL" "$rpid"
    wait "$tpid" || true
    rc=$(sed -n 's/^Command exited with non-zero status //p' "$res.time")
    sig=$(sed -n 's/^Command terminated by signal //p' "$res.time")
    [ -z "$sig" ] || rc=$((128 + sig))
    echo "$(lsn_bytes "$start_lsn") $(lsn_bytes "$end_lsn") $t0 $t1 $t2 $(tail -n 1 "$res.time") ${rc:-0}" >"$res"
    PHASE_START[$name]=$start_lsn PHASE_END[$name]=$end_lsn
}
declare -A PHASE_START=() PHASE_END=() STORED=()

note "phase wal-receive: slot bench_walsafe"
as_pg "$WAL_RECEIVE" --config "$CONF" --create-slot >/dev/null
STOP_SIGNAL=TERM phase wal-receive bench_walsafe "$WAL_RECEIVE" --config "$CONF"
# The repository: every complete segment of the phase; three compared with pg_wal's.
first=$(psql_q -c "SELECT pg_walfile_name('${PHASE_START[wal-receive]}')")
last=$(psql_q -c "SELECT pg_walfile_name('${PHASE_END[wal-receive]}'::pg_lsn - 16777216)")
n_first=$((16#${first:8:8} * 256 + 16#${first:16:8}))
n_last=$((16#${last:8:8} * 256 + 16#${last:16:8}))
missing=0 compared=0
for ((n = n_first; n <= n_last; n++)); do
    seg=$(printf '%s%08X%08X' "${first:0:8}" $((n / 256)) $((n % 256)))
    [ -f "$DIR/ws-repo/main/wal/${seg:0:16}/$seg" ] || missing=$((missing + 1))
done
[ "$missing" = 0 ] || die "wal-receive: $missing of $((n_last - n_first + 1)) segments missing in the repository"
for n in "$n_first" $(((n_first + n_last) / 2)) "$n_last"; do
    seg=$(printf '%s%08X%08X' "${first:0:8}" $((n / 256)) $((n % 256)))
    [ -f "$PGDATA_DIR/pg_wal/$seg" ] || continue # removed by a checkpoint once the slot let it go
    compared=$((compared + 1))
    rm -f "$DIR/fetch/pg_wal/RECOVERYXLOG"
    (cd "$DIR/fetch" && as_pg "$WAL_FETCH" --config "$CONF" "$seg" pg_wal/RECOVERYXLOG) ||
        die "wal-fetch $seg failed"
    cmp -s "$DIR/fetch/pg_wal/RECOVERYXLOG" "$PGDATA_DIR/pg_wal/$seg" || die "$seg in the repository differs from pg_wal's"
done
note "wal-receive: $((n_last - n_first + 1)) segments in the repository, $compared compared with pg_wal's"
STORED[wal-receive]=$(du -sb "$DIR/ws-repo" | cut -f1)
as_pg "$WAL_RECEIVE" --config "$CONF" --drop-slot >/dev/null

for m in "${PGRW_METHODS[@]}"; do
    name=pg_receivewal-$m
    mkdir -p "$DIR/pgrw/$m" && chown postgres: "$DIR/pgrw/$m"
    as_pg "$PGBIN/pg_receivewal" -h "$SOCK" -p "$PORT" -U postgres -S bench_pgrw --create-slot
    STOP_SIGNAL=INT phase "$name" bench_pgrw "$PGBIN/pg_receivewal" -h "$SOCK" -p "$PORT" -U postgres \
        -S bench_pgrw -D "$DIR/pgrw/$m" --compress="$m"
    n=$(find "$DIR/pgrw/$m" -type f | wc -l)
    want=$(($(lsn_bytes "${PHASE_END[$name]}") / 16777216 - $(lsn_bytes "${PHASE_START[$name]}") / 16777216 + 1))
    [ "$n" -ge "$want" ] || die "$name: $n files for $want segments"
    STORED[$name]=$(du -sb "$DIR/pgrw/$m" | cut -f1)
    psql_q -c "SELECT pg_drop_replication_slot('bench_pgrw')" >/dev/null
done
pg_stop "$PGDATA_DIR"

# ---- 3. figures --------------------------------------------------------------------------------
NAMES=(wal-receive "${PGRW_METHODS[@]/#/pg_receivewal-}")
printf '\nwalsafe WAL streaming benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
print_machine "server's pg_wal, the spool, the repository and pg_receivewal's directory"
printf 'versions: %s (source tree %s at start); %s\n' "$("$WAL_RECEIVE" --version)" "$BUILD_REV" \
    "$("$PGBIN/postgres" --version)"
printf 'method: each receiver alone with its own slot while one session bulk-inserts %d MiB of WAL\n' "$SIZE_MB"
printf '        as fast as the server can (fsync off); lag sampled every 0.5 s from pg_stat_replication\n'
printf 'settings: wal-receive zstd 3, encrypted, receive_flush_interval %s, parallel %s, local repository;\n' \
    "$FLUSH" "${PARALLEL:-$(nproc) (default)}"
printf '          pg_receivewal --compress=METHOD (PostgreSQL 15 has no zstd for it)\n'
printf '\n%-20s %8s %8s %15s %15s %9s %10s %8s %8s %6s\n' receiver "WAL MiB" "MiB/s" \
    "sent lag MiB" "write lag MiB" "catch-up" "CPU s/GiB" "RSS MB" "stored" exit
printf '%-20s %8s %8s %15s %15s %9s %10s %8s %8s %6s\n' "" "" "(load)" "median/max" "median/max" "s" "" "" "/WAL" ""
for name in "${NAMES[@]}"; do
    read -r b0 b1 t0 t1 t2 user sys rss rc <"$DIR/results/$name"
    lag() { # column of the .lag file -> "median/max" in MiB
        cut -d' ' -f"$1" "$DIR/results/$name.lag" | sort -n | awk '{v[NR] = $1}
            END {if (!NR) {print "-"; exit} printf "%.1f/%.1f", v[int((NR + 1) / 2)] / 1048576, v[NR] / 1048576}'
    }
    awk -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v u="$user" -v s="$sys" -v r="$rss" \
        -v st="${STORED[$name]}" -v n="$name" -v wl="$(lag 2)" -v fl="$(lag 3)" -v rc="$rc" 'BEGIN {
        w = b1 - b0
        printf "%-20s %8.0f %8.1f %15s %15s %9.2f %10.2f %8.1f %8.3f %6s\n", n, w / 1048576,
               w / 1048576 / (t1 - t0), wl, fl, t2 - t1, (u + s) / (w / 1073741824), r / 1024, st / w, rc
    }'
    [ "$rc" = 0 ] || BAD=1
done
printf '\nCPU: user+sys of the receiver over the phase; RSS: its peak; stored/WAL: bytes on disk (the\n'
printf 'repository, or the directory) per byte of WAL written in the phase. sent lag: WAL written but\n'
printf 'not yet sent (the walsender waits for the receiver once the socket buffers are full: the\n'
printf 'backlog a receiver that cannot keep up builds); write lag: WAL not yet reported received, which\n'
printf 'both report only every 10 s (status interval; wal-receive also after each flush);\n'
printf 'catch-up: seconds from the end of the load until everything was sent.\n'
printf '\nlag series (s: sent lag MiB / write lag MiB, every 2 s of each phase):\n'
for name in "${NAMES[@]}"; do
    printf '  %-20s' "$name"
    awk '{k = int($1 / 2); if (!(k in seen)) {seen[k] = 1; printf " %d:%.0f/%.0f", k * 2, $2 / 1048576, $3 / 1048576}}
         END {print ""}' "$DIR/results/$name.lag"
done
read -r b0 b1 _ _ _ user sys rss _ <"$DIR/results/wal-receive"
printf '\nwal-receive against the targets of issue 19 (figures, not a verdict):\n'
printf '  peak RSS                            %s MB  (target <= 32)\n' "$(awk -v r="$rss" 'BEGIN {printf "%.1f", r / 1024}')"
for m in "${PGRW_METHODS[@]}"; do
    read -r c0 c1 _ _ _ cu cs _ _ <"$DIR/results/pg_receivewal-$m"
    printf '  CPU per GiB / pg_receivewal %-5s  %s\n' "$m" \
        "$(awk -v u="$user" -v s="$sys" -v b="$((b1 - b0))" -v cu="$cu" -v cs="$cs" \
            -v c="$((c1 - c0))" 'BEGIN {printf "%.2f", ((u + s) / b) / ((cu + cs) / c)}')"
done
stderr_of "${NAMES[@]}"
bench_finish "a receiver failed (see above)"
