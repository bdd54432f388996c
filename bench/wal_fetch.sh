# shellcheck shell=bash
# wal_fetch.sh - MODE=fetch of bench/wal.sh, sourced by it once the data set (the staged segments)
# and the repositories' settings exist: the fetch phase alone, one process per segment, with
# each call's CPU time beside its latency (on a machine shared with other work the latency
# measures the queue for a core as much as the tool; CPU time does not).
#
# Environment (besides wal.sh's SEGMENTS, SCALE, KEEP, BEFORE_BIN):
#   ROUNDS=N   passes over the segments (default 3)
#
# Method
#   1. Every staged segment is archived first (not timed): wal-push (parallel = 1) into the
#      walsafe repository, pgBackRest archive-push into its own, and with BEFORE_BIN the earlier
#      build's wal-push into a third.
#   2. ROUNDS passes; in each, every segment is fetched by every tool, the tools interleaved and
#      taking turns going first, one call at a time as PostgreSQL's startup process does: as
#      postgres, cwd = the fetch data-directory look-alike, `sh -c`, DEST_PATH pg_wal/RECOVERYXLOG
#      removed before each call. Per call: latency (bash $EPOCHREALTIME), CPU time of the call
#      (user + system of its process tree, from bash's `time`, which includes /usr/bin/time and
#      sh: about 1 ms, the same for every tool), peak RSS (/usr/bin/time %M), and whether the
#      file is the segment (cmp). Before each pass: sync, and a read of the segments and the
#      repositories.
#   Rows: walsafe-fetch (parallel = 1: one thread), walsafe-fetch-par (the default parallel, the
#   CPU count: a segment's zstd frames decode on that many threads; spool_dir = '': no prefetch),
#   pgbackrest-get (archive-async = n), walsafe-before-fetch (BEFORE_BIN, parallel = 1).
#   3. Medians over all calls; ratios of the medians against pgbackrest-get.

FT_ROUNDS=${ROUNDS:-3}

# fetch_loop CWD LIST RESULT_DIR ROUND NAME PREFIX [NAME PREFIX]... (as postgres): one call per
# segment and tool, appending "segment rc latency_us cpu_ms rss_kb identical" to RESULT_DIR/NAME.
fetch_loop() {
    local cwd=$1 list=$2 res=$3 round=$4 seg t0 t1 rc cpu rss same i=0 j k out TIMEFORMAT='%3U %3S'
    local -a names=() prefixes=()
    shift 4
    while [ $# -ge 2 ]; do names+=("$1"); prefixes+=("$2"); shift 2; done
    cd "$cwd" || return 1
    while read -r seg; do
        for ((j = 0; j < ${#names[@]}; j++)); do
            k=$(((i + j + round) % ${#names[@]}))
            out=$res/${names[k]}
            rm -f pg_wal/RECOVERYXLOG
            t0=$EPOCHREALTIME
            cpu=$({ time /usr/bin/time -f %M -o "$out.rss" \
                sh -c "${prefixes[k]} $seg pg_wal/RECOVERYXLOG" 2>>"$out.err"; } 2>&1)
            rc=$?
            t1=$EPOCHREALTIME
            rss=$(tail -n 1 "$out.rss")
            [[ $rss =~ ^[0-9]+$ ]] || rss=-
            same=0
            if [ $rc = 0 ] && cmp -s pg_wal/RECOVERYXLOG "$DIR/push/pg_wal/$seg"; then same=1; fi
            echo "$seg $rc $((${t1/./} - ${t0/./})) $(awk -v u="${cpu% *}" -v s="${cpu#* }" \
                'BEGIN {printf "%.1f", (u + s) * 1000}') $rss $same" >>"$out"
        done
        i=$((i + 1))
    done <"$list"
    rm -f pg_wal/RECOVERYXLOG "$res"/*.rss
}

# ft_push_all: every staged segment into each repository (not timed).
ft_push_all() {
    note "fetch: archive $SEGMENTS segments into every repository (not timed)"
    # shellcheck disable=SC2016 # expanded by the postgres shell
    as_pg bash -c 'cd "$1" || exit 1
        while read -r s; do
            WALSAFE_PARALLEL=1 "$2" --config "$3" "pg_wal/$s" || exit 1
            pgbackrest --config="$4" --stanza=bench --pg1-path="$1" archive-push "pg_wal/$s" || exit 1
            if [ -n "$6" ]; then WALSAFE_PARALLEL=1 "$6" --config "$7" "pg_wal/$s" || exit 1; fi
        done <"$5"' ft_push "$DIR/push" "$WAL_PUSH" "$DIR/walsafe.conf" "$PGBR_CONF" \
        "$DIR/segments" "${BEFORE_BIN:+$DIR/bin-before/wal-push}" "$DIR/walsafe-before.conf" ||
        die "archiving the data set failed"
}

# median_col FILE COLUMN [SCALE]: the median of a column of FILE (divided by SCALE).
median_col() {
    awk -v c="$2" -v d="${3:-1}" '{print $c / d}' "$1" | sort -g | awk '{v[NR] = $1} END {
        printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ft_stats FILE -> "calls failed median_ms p90_ms median_cpu_ms peak_rss_kb identical"
ft_stats() {
    local p90
    p90=$(awk '{print $3 / 1000}' "$1" | sort -g | awk '{v[NR] = $1} END {
        k = int(0.9 * NR); if (k < 0.9 * NR) k++; printf "%.1f", v[k] }')
    awk -v med="$(median_col "$1" 3 1000)" -v p90="$p90" -v cpu="$(median_col "$1" 4)" '
        { n++; if ($2 != 0) failed++; if ($6 == 1) same++; if ($5 != "-" && $5 + 0 > rss) rss = $5 + 0 }
        END { printf "%d %d %s %s %s %s %d/%d\n", n, failed + 0, med, p90, cpu, rss ? rss : "-", same + 0, n }' "$1"
}

fetch_bench() {
    local r name calls failed med p90 cpu rss ident
    local -a cmds=()
    declare -A MEDW=() MEDC=()
    need_count FT_ROUNDS
    FT_NAMES=(walsafe-fetch walsafe-fetch-par pgbackrest-get)
    cmds=(walsafe-fetch "WALSAFE_PARALLEL=1 $WAL_FETCH --config $DIR/walsafe.conf"
        walsafe-fetch-par "WALSAFE_SPOOL_DIR= $WAL_FETCH --config $DIR/walsafe.conf"
        pgbackrest-get "pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$DIR/fetch archive-get")
    if [ -n "${BEFORE_BIN:-}" ]; then
        FT_NAMES+=(walsafe-before-fetch)
        cmds+=(walsafe-before-fetch "WALSAFE_PARALLEL=1 $DIR/bin-before/wal-fetch --config $DIR/walsafe-before.conf")
    fi
    ft_push_all
    for ((r = 1; r <= FT_ROUNDS; r++)); do
        note "fetch: pass $r of $FT_ROUNDS, ${#FT_NAMES[@]} tools interleaved, $SEGMENTS calls each"
        sync
        cat "$DIR"/push/pg_wal/* >/dev/null
        warm_read "$DIR/ws-repo" "$DIR/pgbr/repo" ${BEFORE_BIN:+"$DIR/ws-repo-before"}
        as_pg bash -c "DIR='$DIR'; $(declare -f fetch_loop); fetch_loop \"\$@\"" fetch_loop \
            "$DIR/fetch" "$DIR/segments" "$DIR/results" "$r" "${cmds[@]}"
    done

    printf '\nwalsafe WAL fetch benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    print_machine "repos and segments"
    printf 'versions: %s (source tree %s at start); %s; %s\n' "$("$WAL_FETCH" --version)" \
        "$BUILD_REV" "$(pgbackrest version)" "$("$PGBIN/postgres" --version)"
    print_data
    printf 'settings: both zstd level 3 and encrypted; one process per segment via sh -c, as postgres, cwd = data\n'
    printf '          directory; %s passes, tools interleaved; walsafe-fetch-par: %s threads, spool_dir empty\n' \
        "$FT_ROUNDS" "$(nproc)"
    [ -z "${BEFORE_BIN:-}" ] || printf 'before: walsafe-before-fetch = %s, its own repository\n' "$BEFORE_BIN"
    printf '\n%-21s %6s %6s %10s %8s %14s %12s %9s\n' tool calls failed "median ms" "p90 ms" \
        "median CPU ms" "peak RSS KB" identical
    for name in "${FT_NAMES[@]}"; do
        read -r calls failed med p90 cpu rss ident <<<"$(ft_stats "$DIR/results/$name")"
        MEDW[$name]=$med MEDC[$name]=$cpu
        printf '%-21s %6s %6s %10s %8s %14s %12s %9s\n' "$name" "$calls" "$failed" "$med" "$p90" \
            "$cpu" "$rss" "$ident"
        # shellcheck disable=SC2034 # read by bench_finish
        [ "$failed" = 0 ] || BAD=1
    done
    printf '\nratio pgBackRest/walsafe of the medians (>1: walsafe faster)   latency, CPU:\n'
    for name in "${FT_NAMES[@]}"; do
        [ "$name" != pgbackrest-get ] || continue
        printf '  %-21s %s, %s\n' "$name" "$(ratio "${MEDW[pgbackrest-get]}" "${MEDW[$name]}")" \
            "$(ratio "${MEDC[pgbackrest-get]}" "${MEDC[$name]}")"
    done
    print_stderr "${FT_NAMES[@]}"
}
