# shellcheck shell=bash
# wal_pushahead.sh - MODE=pushahead of bench/wal.sh, sourced by it once the data set (the staged
# segments) and both tools' settings exist: a backlog of ready segments drained by the calls
# PostgreSQL's archiver makes, walsafe with push-ahead against pgBackRest's asynchronous
# archive-push.
#
# Environment (besides wal.sh's SEGMENTS, at least 200 here, SCALE and KEEP):
#   ROUNDS=N              drains per tool, rotating which tool goes first (default 3)
#   PUSHAHEAD_PARALLEL=N  walsafe's parallel for the push-ahead row and pgBackRest's process-max
#                         for its async row (default 2)
#   PUSHAHEAD_REPOS="local sftp s3"  also drain into an sftp:// repository (private sshd on
#                         127.0.0.1, repository directory on the same disk) and an s3://
#                         repository (the npm S3 test server on 127.0.0.1, data on the same disk):
#                         rows walsafe-pushahead-sftp / walsafe-serial-sftp and -s3, and the ratios
#                         of their drains to the local ones (default: local only)
#   PUSHAHEAD_TRICKLE=N   with sftp or s3 in PUSHAHEAD_REPOS, also N segments (default 40) made
#                         ready one at a time, TRICKLE_GAP seconds apart (default 0.2): method 4
#
# Method
#   1. The backlog: a data-directory look-alike ($DIR/pa: global/pg_control, pg_wal with hard
#      links to the staged segments) whose pg_wal/archive_status holds a .ready file per segment,
#      as after an archive outage or a burst of WAL. pgBackRest's async process finds its work
#      there too.
#   2. A drain is PostgreSQL's archiver over that backlog: the oldest .ready first, one call at a
#      time, `sh -c '<command> pg_wal/<segment>'` as postgres with the look-alike as working
#      directory, the .ready renamed to .done after exit 0 (a failed call is retried up to 3
#      times, as the archiver does, and makes the figures invalid). Every call is timed on its
#      own; nothing else runs between two calls but that rename and the timing, so background
#      work gets only the time PostgreSQL itself would leave it.
#      Rows:
#        walsafe-pushahead  parallel = PUSHAHEAD_PARALLEL: push-ahead on, spool on the same disk
#        pgbackrest-async   archive-async=y, process-max = PUSHAHEAD_PARALLEL, spool-path in $DIR
#        walsafe-serial     the same parallel with spool_dir = '': no push-ahead, one file per
#                           call on `parallel` zstd threads (what wal-push did before push-ahead;
#                           MODE=local measures the serial tools against each other)
#      Before each drain: a fresh repository (walsafe: an empty directory; pgBackRest: a copy of
#      the stanza made by wal.sh before anything was pushed, so no segment is ever a duplicate),
#      no spool, every .ready back, the previous drain's background process gone, sync, and a
#      read of the segments (the same page-cache-warm input for every drain).
#      After each drain: every segment must be in the repository (objects counted).
#   3. segments/s of a drain = segments / wall time from the first call's start to the last
#      call's end: the rate at which a backlog empties. The headline is each tool's median over
#      its drains and the ratio of the medians. Also shown: segments / summed call latency (the
#      measure of MODE=local, blind to work done between calls) and the machine's CPU seconds
#      during the drain (/proc/stat, every process, background ones included).
#   4. Trickle (the steady state: a segment completes now and then, no backlog): another
#      look-alike ($DIR/tr) with a postmaster.pid standing for a running postmaster (a network
#      repository's push-ahead process waits for new files only while that file stays; it is
#      removed after each trickle, which ends the process). Each segment in turn: TRICKLE_GAP
#      seconds of nothing, then its .ready is created and the archiver's call made at once, timed
#      from the .ready to the call's exit (what a lone segment costs PostgreSQL), .ready -> .done.
#      Rows walsafe-trickle-pa[-REPO] (push-ahead on) and walsafe-trickle-serial[-REPO]
#      (spool_dir = ''), each ROUNDS times with a fresh repository and spool; the figure is the
#      median call, and the ratios compare each network row with the local ones.

PA_PARALLEL=${PUSHAHEAD_PARALLEL:-2}
ROUNDS=${ROUNDS:-3}
PA_NAMES=(walsafe-pushahead pgbackrest-async walsafe-serial)
for r in $PA_REPOS; do
    [ "$r" = local ] || PA_NAMES+=("walsafe-pushahead-$r" "walsafe-serial-$r")
done
declare -gA PA_CMD=() PA_CPU=() PA_WALL=()
TR_N=${PUSHAHEAD_TRICKLE:-40}
TR_GAP=${TRICKLE_GAP:-0.2}
TR_NAMES=()
for r in $PA_REPOS; do
    [ "$r" = local ] || TR_NAMES+=("walsafe-trickle-pa-$r" "walsafe-trickle-serial-$r")
done
[ ${#TR_NAMES[@]} = 0 ] || TR_NAMES=(walsafe-trickle-pa walsafe-trickle-serial "${TR_NAMES[@]}")

# pa_cpu_ticks: the machine's busy CPU time so far (user nice system irq softirq steal), ticks.
pa_cpu_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# pa_drain CWD SEGMENT_LIST RESULT COMMAND_PREFIX: the archiver's calls over the backlog (run as
# postgres, handed over with declare -f). RESULT gets "segment exit_status latency_us - -" per call
# (the columns of lib.sh's stats)
# and RESULT.err the calls' stderr; RESULT.wall the drain's wall time in microseconds.
pa_drain() {
    local cwd=$1 list=$2 res=$3 prefix=$4 seg t0 t1 rc start
    cd "$cwd" || return 1
    : >"$res"
    start=$EPOCHREALTIME
    while read -r seg; do
        for _ in 1 2 3 4; do
            t0=$EPOCHREALTIME
            sh -c "$prefix pg_wal/$seg" 2>>"$res.err"
            rc=$?
            t1=$EPOCHREALTIME
            echo "$seg $rc $((${t1/./} - ${t0/./})) - -" >>"$res"
            [ $rc = 0 ] && break
        done
        [ $rc = 0 ] && mv "pg_wal/archive_status/$seg.ready" "pg_wal/archive_status/$seg.done"
    done <"$list"
    t1=$EPOCHREALTIME
    echo $((${t1/./} - ${start/./})) >"$res.wall"
}

# pa_trickle CWD SEGMENT_LIST RESULT COMMAND_PREFIX GAP: method 4's calls (run as postgres); RESULT
# as pa_drain's.
pa_trickle() {
    local cwd=$1 list=$2 res=$3 prefix=$4 gap=$5 seg t0 t1 rc
    cd "$cwd" || return 1
    : >"$res"
    while read -r seg; do
        sleep "$gap"
        t0=$EPOCHREALTIME
        : >"pg_wal/archive_status/$seg.ready"
        sh -c "$prefix pg_wal/$seg" 2>>"$res.err"
        rc=$?
        t1=$EPOCHREALTIME
        echo "$seg $rc $((${t1/./} - ${t0/./})) - -" >>"$res"
        [ $rc = 0 ] && mv "pg_wal/archive_status/$seg.ready" "pg_wal/archive_status/$seg.done"
    done <"$list"
}

# pa_quiet: waits until pgBackRest's async archive-push of an earlier drain has ended (watched by
# its command line, never killed) and so has every push-ahead batch process of walsafe (each
# holds its spool's pushing/.alive shared for its life).
pa_quiet() {
    local deadline=$((SECONDS + 120)) alive=$DIR/ws-pa-spool/main/pushing/.alive
    while pgrep -u postgres -f -- "--config=$DIR/pgbr/pa.conf" >/dev/null; do
        [ $SECONDS -lt $deadline ] || die "pgBackRest's async archive-push did not end in 120s"
        sleep 0.2
    done
    if [ -e "$alive" ]; then
        timeout 120 flock "$alive" true || die "a walsafe push-ahead batch did not end in 120s"
    fi
}

# pa_reset NAME: a fresh repository and spool for NAME's drain, every .ready back.
pa_reset() {
    local s
    rm -rf "$DIR/ws-pa-repo" "$DIR/ws-pa-spool" "$DIR/pgbr/pa-repo" "$DIR/pgbr/pa-spool" \
        "$DIR/ws-pa-sftp-repo" ${S3_DATA:+"$S3_DATA/walsafe-bench/pa"}
    mkdir -m 700 "$DIR/ws-pa-repo" "$DIR/ws-pa-spool" "$DIR/ws-pa-sftp-repo"
    cp -a "$DIR/pgbr/pa-template" "$DIR/pgbr/pa-repo"
    mkdir -m 750 "$DIR/pgbr/pa-spool"
    rm -rf "$DIR/pa/pg_wal/archive_status"
    mkdir "$DIR/pa/pg_wal/archive_status"
    while read -r s; do : >"$DIR/pa/pg_wal/archive_status/$s.ready"; done <"$DIR/segments"
    chown -R postgres: "$DIR/ws-pa-repo" "$DIR/ws-pa-spool" "$DIR/pgbr/pa-repo" \
        "$DIR/pgbr/pa-spool" "$DIR/pa" "$DIR/ws-pa-sftp-repo"
}

# pa_stored NAME: how many segments NAME's repository holds.
pa_stored() {
    case $1 in
    walsafe-*-sftp) find "$DIR/ws-pa-sftp-repo" -type f -name '0*' | wc -l ;;
    walsafe-*-s3) find "$S3_DATA/walsafe-bench/pa" -type f -name '0*._S3rver_object' | wc -l ;;
    walsafe-*) find "$DIR/ws-pa-repo" -type f -name '0*' | wc -l ;;
    pgbackrest-*) find "$DIR/pgbr/pa-repo/archive" -type f -name '0*-*' | wc -l ;;
    esac
}

pushahead_bench() {
    local r i name v s stored
    need_count ROUNDS PA_PARALLEL
    [ "$SEGMENTS" -ge 200 ] || die "MODE=pushahead needs SEGMENTS >= 200 (got $SEGMENTS)"
    # The backlog's data directory look-alike.
    mkdir -p "$DIR/pa/global" "$DIR/pa/pg_wal"
    cp "$DIR/push/global/pg_control" "$DIR/pa/global/"
    while read -r s; do ln "$DIR/push/pg_wal/$s" "$DIR/pa/pg_wal/$s"; done <"$DIR/segments"
    # pgBackRest: the stanza as wal.sh created it (nothing pushed yet), the same cipher pass.
    cp -a "$DIR/pgbr/repo" "$DIR/pgbr/pa-template"
    {
        sed -n '/^\[global\]/,/^\[bench\]/p' "$PGBR_CONF" |
            grep -v -E '^(\[bench\]$|(repo1-path|archive-async|spool-path)=)'
        printf 'repo1-path=%s\narchive-async=y\nprocess-max=%s\nspool-path=%s\n\n[bench]\n' \
            "$DIR/pgbr/pa-repo" "$PA_PARALLEL" "$DIR/pgbr/pa-spool"
        printf 'pg1-path=%s\n' "$DIR/pa"
    } >"$DIR/pgbr/pa.conf"
    for v in pushahead serial; do
        cp "$DIR/walsafe.conf" "$DIR/walsafe-pa-$v.conf"
        sed -i "s|^repo = .*|repo = '$DIR/ws-pa-repo'|" "$DIR/walsafe-pa-$v.conf"
        printf "spool_dir = '%s'\nparallel = %s\n" \
            "$([ $v = pushahead ] && echo "$DIR/ws-pa-spool")" "$PA_PARALLEL" >>"$DIR/walsafe-pa-$v.conf"
    done
    chown postgres: "$DIR/pgbr/pa.conf" "$DIR"/walsafe-pa-*.conf
    chmod 600 "$DIR/pgbr/pa.conf" "$DIR"/walsafe-pa-*.conf
    for r in $PA_REPOS; do
        [ "$r" != local ] || continue
        for v in pushahead serial; do
            if [ "$r" = sftp ]; then
                sed "s|^repo = .*|repo = 'sftp://root@127.0.0.1:$SSHD_PORT$DIR/ws-pa-sftp-repo'|" \
                    "$DIR/walsafe-sftp.conf" >"$DIR/walsafe-pa-$v-$r.conf"
            else
                cp "$DIR/walsafe-s3.conf" "$DIR/walsafe-pa-$v-$r.conf"
            fi
            printf "spool_dir = '%s'\nparallel = %s\n" \
                "$([ $v = pushahead ] && echo "$DIR/ws-pa-spool")" "$PA_PARALLEL" >>"$DIR/walsafe-pa-$v-$r.conf"
            chown postgres: "$DIR/walsafe-pa-$v-$r.conf"
            chmod 600 "$DIR/walsafe-pa-$v-$r.conf"
            PA_CMD[walsafe-$v-$r]="$WAL_PUSH --config $DIR/walsafe-pa-$v-$r.conf"
        done
    done
    PA_CMD[walsafe-pushahead]="$WAL_PUSH --config $DIR/walsafe-pa-pushahead.conf"
    PA_CMD[pgbackrest-async]="pgbackrest --config=$DIR/pgbr/pa.conf --stanza=bench archive-push"
    PA_CMD[walsafe-serial]="$WAL_PUSH --config $DIR/walsafe-pa-serial.conf"
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((i = 0; i < ${#PA_NAMES[@]}; i++)); do
            name=${PA_NAMES[(i + r - 1) % ${#PA_NAMES[@]}]}
            pa_quiet
            pa_reset "$name"
            note "pushahead: round $r of $ROUNDS, $name, a backlog of $SEGMENTS ready segments"
            sync
            cat "$DIR"/push/pg_wal/* >/dev/null
            v=$(pa_cpu_ticks)
            as_pg bash -c "$(declare -f pa_drain); pa_drain \"\$@\"" pa_drain \
                "$DIR/pa" "$DIR/segments" "$DIR/results/$name.$r" "${PA_CMD[$name]}"
            PA_CPU[$name.$r]=$(awk -v t=$(($(pa_cpu_ticks) - v)) -v hz="$(getconf CLK_TCK)" \
                'BEGIN {printf "%.1f", t / hz}')
            PA_WALL[$name.$r]=$(cat "$DIR/results/$name.$r.wall")
            pa_quiet
            stored=$(pa_stored "$name")
            if [ "$stored" != "$SEGMENTS" ]; then
                echo "bench: $name, round $r: $stored of $SEGMENTS segments in the repository" >&2
                BAD=1
            fi
        done
    done
    for name in "${PA_NAMES[@]}"; do
        : >"$DIR/results/$name"
        : >"$DIR/results/$name.err"
        for ((r = 1; r <= ROUNDS; r++)); do
            cat "$DIR/results/$name.$r" >>"$DIR/results/$name"
            cat "$DIR/results/$name.$r.err" >>"$DIR/results/$name.err" 2>/dev/null || true
        done
    done
    pa_report
    [ ${#TR_NAMES[@]} = 0 ] || trickle_bench
}

# trickle_bench: method 4, after the drains (their configurations and commands).
trickle_bench() {
    local r i name s stored
    local -A cmd=()
    need_count TR_N
    [ "$TR_N" -le "$SEGMENTS" ] || die "PUSHAHEAD_TRICKLE ($TR_N) exceeds SEGMENTS ($SEGMENTS)"
    mkdir -p "$DIR/tr/global" "$DIR/tr/pg_wal"
    cp "$DIR/push/global/pg_control" "$DIR/tr/global/"
    head -n "$TR_N" "$DIR/segments" >"$DIR/tr-segments"
    while read -r s; do ln "$DIR/push/pg_wal/$s" "$DIR/tr/pg_wal/$s"; done <"$DIR/tr-segments"
    for name in "${TR_NAMES[@]}"; do
        case $name in
        walsafe-trickle-pa) cmd[$name]=${PA_CMD[walsafe-pushahead]} ;;
        walsafe-trickle-serial) cmd[$name]=${PA_CMD[walsafe-serial]} ;;
        walsafe-trickle-pa-*) cmd[$name]=${PA_CMD[walsafe-pushahead-${name##*-}]} ;;
        walsafe-trickle-serial-*) cmd[$name]=${PA_CMD[walsafe-serial-${name##*-}]} ;;
        esac
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((i = 0; i < ${#TR_NAMES[@]}; i++)); do
            name=${TR_NAMES[(i + r - 1) % ${#TR_NAMES[@]}]}
            pa_quiet
            pa_reset "$name"
            rm -rf "$DIR/tr/pg_wal/archive_status"
            mkdir "$DIR/tr/pg_wal/archive_status"
            echo "$$" >"$DIR/tr/postmaster.pid"
            chown -R postgres: "$DIR/tr"
            note "pushahead: trickle round $r of $ROUNDS, $name, $TR_N segments ${TR_GAP}s apart"
            sync
            cat "$DIR"/tr/pg_wal/0* >/dev/null
            as_pg bash -c "$(declare -f pa_trickle); pa_trickle \"\$@\"" pa_trickle \
                "$DIR/tr" "$DIR/tr-segments" "$DIR/results/$name.$r" "${cmd[$name]}" "$TR_GAP"
            rm -f "$DIR/tr/postmaster.pid"
            pa_quiet
            stored=$(pa_stored "$name")
            if [ "$stored" != "$TR_N" ]; then
                echo "bench: $name, round $r: $stored of $TR_N segments in the repository" >&2
                BAD=1
            fi
        done
    done
    for name in "${TR_NAMES[@]}"; do
        : >"$DIR/results/$name"
        : >"$DIR/results/$name.err"
        for ((r = 1; r <= ROUNDS; r++)); do
            cat "$DIR/results/$name.$r" >>"$DIR/results/$name"
            cat "$DIR/results/$name.$r.err" >>"$DIR/results/$name.err" 2>/dev/null || true
        done
    done
    tr_report
}

tr_report() {
    local name calls failed sps med p90 max r
    local -A MED=()
    printf '\ntrickle: %s segments made ready one at a time, %ss apart, each call timed from its .ready to its exit;\n' "$TR_N" "$TR_GAP"
    printf '         %s rounds, a fresh repository and spool per round; -pa: push-ahead on (parallel = %s), -serial: spool_dir = '"''"'\n' "$ROUNDS" "$PA_PARALLEL"
    printf '\n%-30s %6s %6s %11s %9s %9s %12s\n' tool calls failed "median ms" "p90 ms" "max ms" "per latency"
    for name in "${TR_NAMES[@]}"; do
        read -r calls failed sps med p90 max _ <<<"$(stats "$DIR/results/$name")"
        [ "$failed" = 0 ] || BAD=1
        MED[$name]=$med
        printf '%-30s %6s %6s %11s %9s %9s %12s\n' "$name" "$calls" "$failed" "$med" "$p90" "$max" "$sps"
    done
    printf '\nper segment (median call) against a local directory (>1: slower):\n'
    for r in $PA_REPOS; do
        [ "$r" != local ] || continue
        printf '  %s: push-ahead %s (against local push-ahead %s), serial %s (against local serial)\n' "$r" \
            "$(ratio "${MED[walsafe-trickle-pa-$r]}" "${MED[walsafe-trickle-serial]}")" \
            "$(ratio "${MED[walsafe-trickle-pa-$r]}" "${MED[walsafe-trickle-pa]}")" \
            "$(ratio "${MED[walsafe-trickle-serial-$r]}" "${MED[walsafe-trickle-serial]}")"
    done
    print_stderr "${TR_NAMES[@]}"
}

# pa_median VALUE...: the median of the numbers.
pa_median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
        printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

pa_report() {
    local name r sps calls failed lat
    local -A MED=() MEDL=()
    local -a w l
    printf '\n'
    printf 'walsafe WAL push-ahead benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    print_machine "repos, spools and segments"
    printf 'versions: %s (source tree %s at start); %s; %s\n' "$("$WAL_PUSH" --version)" \
        "$BUILD_REV" "$(pgbackrest version)" "$("$PGBIN/postgres" --version)"
    print_data
    printf 'settings: both zstd level 3 and encrypted (walsafe: its cipher, key file; pgBackRest: aes-256-cbc, pass);\n'
    printf '          a backlog of %s .ready segments drained as the archiver does: one call at a time, oldest first,\n' "$SEGMENTS"
    printf '          via sh -c, cwd = data directory, as postgres, .ready -> .done after each 0; %s rounds,\n' "$ROUNDS"
    printf '          each tool alone in its drain, the order rotating per round, a fresh repository per drain;\n'
    printf '          walsafe-pushahead: parallel = %s (push-ahead on); walsafe-serial: the same, spool_dir = '"''"' (push-ahead off);\n' "$PA_PARALLEL"
    printf '          pgbackrest-async: archive-async=y, process-max=%s, file log at info\n' "$PA_PARALLEL"
    printf '\n%-24s %6s %6s %14s %14s %11s %11s %11s\n' tool calls failed "segments/s" "(wall, range)" \
        "per latency" "median ms" "CPU s"
    for name in "${PA_NAMES[@]}"; do
        w=() l=()
        for ((r = 1; r <= ROUNDS; r++)); do
            w+=("$(awk -v n="$SEGMENTS" -v us="${PA_WALL[$name.$r]}" 'BEGIN {printf "%.2f", n / (us / 1e6)}')")
            read -r _ _ sps _ <<<"$(stats "$DIR/results/$name.$r")"
            l+=("$sps")
        done
        MED[$name]=$(pa_median "${w[@]}")
        MEDL[$name]=$(pa_median "${l[@]}")
        read -r calls failed _ lat _ <<<"$(stats "$DIR/results/$name")"
        # shellcheck disable=SC2034 # BAD: read by bench_finish (lib.sh)
        [ "$failed" = 0 ] || BAD=1
        printf '%-24s %6s %6s %14s %14s %11s %11s %11s\n' "$name" "$calls" "$failed" "${MED[$name]}" \
            "$(printf '%s\n' "${w[@]}" | sort -g | sed -n '1p;$p' | paste -sd- -)" "${MEDL[$name]}" "$lat" \
            "$(for ((r = 1; r <= ROUNDS; r++)); do echo "${PA_CPU[$name.$r]}"; done | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')"
    done
    printf '\nsegments/s = segments / wall time of the drain, median over the rounds (range: slowest-fastest drain);\n'
    printf 'per latency = segments / summed call latency (median over rounds); median ms = median call; CPU s = median\n'
    printf 'machine CPU time of a drain (all processes). calls > segments: retried failures.\n'
    printf '\nper round, segments/s by wall time (machine CPU s)\n%-6s' round
    for name in "${PA_NAMES[@]}"; do printf ' %24s' "$name"; done
    printf '\n'
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '%-6s' "$r"
        for name in "${PA_NAMES[@]}"; do
            printf ' %24s' "$(awk -v n="$SEGMENTS" -v us="${PA_WALL[$name.$r]}" 'BEGIN {printf "%.2f", n / (us / 1e6)}') (${PA_CPU[$name.$r]} s)"
        done
        printf '\n'
    done
    printf '\nratio of medians (>1: walsafe faster): walsafe-pushahead/pgbackrest-async %s (per latency %s);' \
        "$(ratio "${MED[walsafe-pushahead]}" "${MED[pgbackrest-async]}")" \
        "$(ratio "${MEDL[walsafe-pushahead]}" "${MEDL[pgbackrest-async]}")"
    printf ' walsafe-pushahead/walsafe-serial %s\n' \
        "$(ratio "${MED[walsafe-pushahead]}" "${MED[walsafe-serial]}")"
    for r in $PA_REPOS; do
        [ "$r" != local ] || continue
        printf 'per segment, %s against local (>1: %s slower): push-ahead %s, serial %s; %s push-ahead/serial %s\n' \
            "$r" "$r" "$(ratio "${MED[walsafe-pushahead]}" "${MED[walsafe-pushahead-$r]}")" \
            "$(ratio "${MED[walsafe-serial]}" "${MED[walsafe-serial-$r]}")" "$r" \
            "$(ratio "${MED[walsafe-pushahead-$r]}" "${MED[walsafe-serial-$r]}")"
    done
    print_stderr "${PA_NAMES[@]}"
}
