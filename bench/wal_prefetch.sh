# shellcheck shell=bash
# wal_prefetch.sh - MODE=prefetch of bench/wal.sh, sourced by it once the data set (the staged
# segments) and both repositories' settings exist: a run of archived segments served in order,
# the way PostgreSQL's startup process asks for them, by wal-fetch with prefetch against
# pgBackRest's asynchronous archive-get.
#
# Environment (besides wal.sh's SEGMENTS, SCALE, KEEP):
#   ROUNDS=N             runs per tool, rotating which tool goes first (default 3)
#   PREFETCH_PARALLEL=N  walsafe's parallel for the prefetch row and pgBackRest's process-max
#                        for its async row (default 2)
#
# Method
#   1. Both repositories receive every staged segment first (not timed): wal-push with
#      parallel = 1 (no push-ahead), pgBackRest archive-push synchronously.
#   2. Each round runs every tool once over the whole list, in order, one call at a time as the
#      startup process does: as postgres, cwd = the fetch data-directory look-alike, through
#      sh -c, each call timed on its own (timed_loop of lib.sh, which also compares every fetched
#      file with the segment). Rows:
#        walsafe-prefetch  parallel = PREFETCH_PARALLEL, spool_dir in $DIR (prefetch on)
#        pgbackrest-async  archive-async=y, archive-get-queue-max=1GiB,
#                          process-max = PREFETCH_PARALLEL, spool-path in $DIR
#        walsafe-serial    parallel = 1: no prefetch (the fetch phase of MODE=local), reference
#      Between two calls only that comparison (a cmp of 16 MiB, a few ms) gives the background
#      work time; a real recovery replays WAL in between and gives it more.
#      Before each run: the previous run's background process has exited and left no spool or
#      queue (walsafe: WALSAFE_PREFETCH_IDLE_TIMEOUT=2 so its prefetcher ends quickly); sync;
#      the segments and both repositories are read once (the same page-cache-warm inputs).
#   3. segments/s of a run = calls / summed call latency. The table pools the calls of every
#      round; the headline is each tool's median over the rounds of its runs' segments/s, and
#      the ratio of the medians. "CPU s" is the machine's whole CPU time (every process, the
#      background ones included) during a run, from /proc/stat.

PF_PARALLEL=${PREFETCH_PARALLEL:-2}
ROUNDS=${ROUNDS:-3}
PF_NAMES=(walsafe-prefetch pgbackrest-async walsafe-serial)
declare -gA PF_CMD=() PF_CPU=()

# cpu_ticks: the machine's busy CPU time so far (user nice system irq softirq steal), in ticks.
cpu_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# pf_push_all: every staged segment into both repositories (not timed).
pf_push_all() {
    note "prefetch: archive $SEGMENTS segments into both repositories (not timed)"
    # shellcheck disable=SC2016 # expanded by the postgres shell
    as_pg bash -c 'cd "$1" || exit 1
        while read -r s; do
            WALSAFE_PARALLEL=1 "$2" --config "$3" "pg_wal/$s" || exit 1
            pgbackrest --config="$4" --stanza=bench --pg1-path="$1" archive-push "pg_wal/$s" || exit 1
        done <"$5"' pf_push "$DIR/push" "$WAL_PUSH" "$DIR/walsafe.conf" "$PGBR_CONF" \
        "$DIR/segments" || die "archiving the data set failed"
}

# pf_quiet: waits until no background fetcher of an earlier run is left (walsafe's prefetcher
# removes its spool when it exits; pgBackRest's async archive-get is watched by its command
# line, never killed), then empties pgBackRest's queue.
pf_quiet() {
    local deadline=$((SECONDS + 90))
    while [ -n "$(find "$DIR/ws-spool" -mindepth 2 -maxdepth 2 -name 'prefetch-*' 2>/dev/null)" ] ||
        pgrep -u postgres -f -- "--config=$PGBR_CONF" >/dev/null; do
        [ $SECONDS -lt $deadline ] || die "a background fetcher of the previous run did not end in 90s"
        sleep 0.2
    done
    rm -rf "$DIR/pgbr/spool/archive"
}

prefetch_bench() {
    local r i name v
    need_count ROUNDS PF_PARALLEL
    mkdir -m 700 "$DIR/ws-spool"
    chown postgres: "$DIR/ws-spool"
    for v in prefetch serial; do
        cp "$DIR/walsafe.conf" "$DIR/walsafe-$v.conf"
        printf "spool_dir = '%s'\nparallel = %s\n" "$DIR/ws-spool" \
            "$([ $v = prefetch ] && echo "$PF_PARALLEL" || echo 1)" >>"$DIR/walsafe-$v.conf"
        chown postgres: "$DIR/walsafe-$v.conf"
        chmod 600 "$DIR/walsafe-$v.conf"
    done
    PF_CMD[walsafe-prefetch]="$WAL_FETCH --config $DIR/walsafe-prefetch.conf"
    PF_CMD[pgbackrest-async]="pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$DIR/fetch --archive-async=y --archive-get-queue-max=1GiB --process-max=$PF_PARALLEL archive-get"
    PF_CMD[walsafe-serial]="$WAL_FETCH --config $DIR/walsafe-serial.conf"
    pf_push_all
    export WALSAFE_PREFETCH_IDLE_TIMEOUT=2
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((i = 0; i < ${#PF_NAMES[@]}; i++)); do
            name=${PF_NAMES[(i + r - 1) % ${#PF_NAMES[@]}]}
            pf_quiet
            note "prefetch: round $r of $ROUNDS, $name, $SEGMENTS calls"
            sync
            cat "$DIR"/push/pg_wal/* >/dev/null
            warm_read "$DIR/ws-repo" "$DIR/pgbr/repo"
            v=$(cpu_ticks)
            phase_time "$DIR/fetch" fetch "$DIR/segments" "$name.$r" "${PF_CMD[$name]}"
            PF_CPU[$name.$r]=$(awk -v t=$(($(cpu_ticks) - v)) -v hz="$(getconf CLK_TCK)" \
                'BEGIN {printf "%.1f", t / hz}')
        done
    done
    pf_quiet
    for name in "${PF_NAMES[@]}"; do
        cat "$DIR/results/$name".[0-9]* >"$DIR/results/$name"
        cat "$DIR/results/$name".[0-9]*.err >"$DIR/results/$name.err" 2>/dev/null || true
    done
    pf_report
}

# median VALUE...: the median of the numbers.
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
        printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

pf_report() {
    local name r line sps
    declare -A MED=()
    printf '\n'
    printf 'walsafe WAL prefetch benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    print_machine "repos, spools and segments"
    printf 'versions: %s (source tree %s at start); %s; %s\n' "$("$WAL_FETCH" --version)" \
        "$BUILD_REV" "$(pgbackrest version)" "$("$PGBIN/postgres" --version)"
    print_data
    printf 'settings: both zstd level 3 and encrypted (walsafe: its cipher, key file; pgBackRest: aes-256-cbc, pass);\n'
    printf '          one call per segment, in order, via sh -c, cwd = data directory, as postgres; %s rounds,\n' "$ROUNDS"
    printf '          each tool alone in its run, the order rotating per round;\n'
    printf '          walsafe-prefetch: parallel = %s (prefetch on, spool on the same disk); walsafe-serial: parallel = 1;\n' "$PF_PARALLEL"
    printf '          pgbackrest-async: archive-async=y, archive-get-queue-max=1GiB, process-max=%s, file log at info\n' "$PF_PARALLEL"
    print_table 17 "${PF_NAMES[@]}"
    printf 'peak RSS is that of the foreground call; the background prefetcher / async process is not in it\n'
    printf '\nper round, segments/s (machine CPU s for the run, all processes)\n'
    printf '%-6s' round
    for name in "${PF_NAMES[@]}"; do printf ' %24s' "$name"; done
    printf '\n'
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '%-6s' "$r"
        for name in "${PF_NAMES[@]}"; do
            read -r _ _ sps _ <<<"$(stats "$DIR/results/$name.$r")"
            printf ' %24s' "$sps (${PF_CPU[$name.$r]} s)"
        done
        printf '\n'
    done
    printf '%-6s' median
    for name in "${PF_NAMES[@]}"; do
        line=()
        for ((r = 1; r <= ROUNDS; r++)); do
            read -r _ _ sps _ <<<"$(stats "$DIR/results/$name.$r")"
            line+=("$sps")
        done
        MED[$name]=$(median "${line[@]}")
        printf ' %24s' "${MED[$name]}"
    done
    printf '\n\nratio of medians (>1: walsafe faster): walsafe-prefetch/pgbackrest-async %s;' \
        "$(ratio "${MED[walsafe-prefetch]}" "${MED[pgbackrest-async]}")"
    printf ' walsafe-prefetch/walsafe-serial %s\n' \
        "$(ratio "${MED[walsafe-prefetch]}" "${MED[walsafe-serial]}")"
    print_stderr "${PF_NAMES[@]}"
}
