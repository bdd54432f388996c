# shellcheck shell=bash
# wal_module.sh - MODE=module of bench/wal.sh, sourced by it once the data set (the staged
# segments, real WAL of the stopped cluster in $PGDATA_DIR) and both tools' settings exist: the
# walsafe_archive module against archive_command = wal-push and pgBackRest's asynchronous
# archive-push, each driven by a real PostgreSQL 15 archiver.
#
# Environment (besides wal.sh's SEGMENTS, SCALE and KEEP):
#   ROUNDS=N           drains per row, rotating which row goes first (default 3)
#   MODULE_PARALLEL=N  walsafe's parallel (wal-push: push-ahead with a spool on the same disk; the
#                      module: push-ahead threads) and pgBackRest's process-max (default 2)
#   PUSHAHEAD_REPOS="local sftp s3"  the trickle's repository kinds (default: local only)
#   MODULE_TRICKLE=N   trickle segments per row (default 20), TRICKLE_GAP seconds apart (0.2)
#   MODULE_RSS=N       also the archiver's RSS over N 1 MiB segments through the module (default
#                      0: not measured; MODE=module-rss measures only that, default 2000)
#
# Method
#   1. Backlog: the cluster that made the WAL, stopped, gets a copy of the SEGMENTS staged
#      segments in pg_wal (its own WAL, so every tool's identity check passes) and starts with
#      the row's archiving settings; then a .ready file is made for each segment and a reload
#      (SIGHUP) wakes the archiver: from that reload to pg_stat_archiver.last_archived_wal = LAST
#      is the drain. Rows: wal-push (archive_command, push-ahead with parallel = MODULE_PARALLEL),
#      module (archive_library = walsafe_archive, the same walsafe configuration) and
#      pgbackrest-async (archive-async=y, process-max = MODULE_PARALLEL). Fresh repositories and
#      spools before each drain; every segment must be in the repository after it.
#      Figures: segments/s = SEGMENTS / drain time; archiver CPU = utime+stime of the archiver
#      and of the children it waited for (/proc/PID/stat; pgBackRest's async process and
#      walsafe's push-ahead process are not the archiver's children: see machine CPU); machine
#      CPU = busy ticks of /proc/stat over the drain, every process.
#   2. Trickle: the running cluster, one small transaction and pg_switch_wal() at a time,
#      TRICKLE_GAP apart, after one untimed segment (a changed archive_library restarts the
#      archiver, and the module loads its configuration with its first file); latency = pg_stat_archiver.last_archived_time - the switch's
#      clock_timestamp() (the server's own clock on both ends, no polling in the figure), per
#      repository kind, wal-push vs module; median per row.
#   3. RSS (MODULE_RSS > 0): a separate 1 MiB-segment cluster archiving through the module into a
#      local repository (parallel = MODULE_PARALLEL: push-ahead threads too); the archiver's VmRSS
#      after the first 50 segments, after N/2 and after N (flat: nothing kept per file).

MD_P=${MODULE_PARALLEL:-2}
MD_ROUNDS=${ROUNDS:-3}
MD_TRICKLE=${MODULE_TRICKLE:-20}
MD_GAP=${TRICKLE_GAP:-0.2}
MD_RSS=${MODULE_RSS:-0}
MD_ROWS=(wal-push module pgbackrest-async)
declare -gA MD_SET=() MD_SPS=() MD_CPU=() MD_MCPU=() MD_TR=()

md_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# md_proc_cpu PID: utime + stime + cutime + cstime of PID, ticks (0 when gone).
md_proc_cpu() {
    awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0
}

md_archiver_pid() {
    psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'"
}

# md_settings FILE LINE...: the archiving settings the cluster includes, written whole.
md_settings() {
    local f=$PGDATA_DIR/bench_archive.conf
    printf '%s\n' "$@" >"$f.new" && chown postgres: "$f.new" && mv -f "$f.new" "$f"
}

# md_walsafe_conf NAME BASE REPO: walsafe configuration NAME from BASE with repository REPO, a
# spool in $DIR and parallel = MD_P.
md_walsafe_conf() {
    sed "s|^repo = .*|repo = '$3'|" "$2" >"$DIR/$1"
    printf "spool_dir = '%s'\nparallel = %s\n" "$DIR/md-spool" "$MD_P" >>"$DIR/$1"
    chown postgres: "$DIR/$1"
    chmod 600 "$DIR/$1"
}

md_quiet() { # pgBackRest's async process (watched by its command line, never killed)
    local deadline=$((SECONDS + 120))
    while pgrep -u postgres -f -- "--config=$DIR/pgbr/md.conf" >/dev/null; do
        [ $SECONDS -lt $deadline ] || die "pgBackRest's async archive-push did not end in 120s"
        sleep 0.2
    done
}

# md_drain ROW: one drain of the backlog (method 1); appends "wall_s archiver_ticks machine_ticks".
md_drain() {
    local row=$1 s t0 t1 c0 c1 pid pid0 a0 last stored
    md_quiet
    rm -rf "$DIR/md-repo" "$DIR/md-spool" "$DIR/pgbr/md-repo" "$DIR/pgbr/md-spool"
    mkdir -m 700 "$DIR/md-repo" "$DIR/md-spool"
    cp -a "$DIR/pgbr/md-template" "$DIR/pgbr/md-repo"
    mkdir -m 750 "$DIR/pgbr/md-spool"
    while read -r s; do cp "$DIR/push/pg_wal/$s" "$PGDATA_DIR/pg_wal/$s"; done <"$DIR/segments"
    chown -R postgres: "$DIR/md-repo" "$DIR/md-spool" "$DIR/pgbr/md-repo" "$DIR/pgbr/md-spool" \
        "$PGDATA_DIR/pg_wal"
    # The row's archiving from the start (a changed archive_library restarts the archiver only
    # when the postmaster gets to it, seconds later); nothing is ready yet.
    md_settings "${MD_SET[$row]}"
    pg_start "$PGDATA_DIR" "$DIR/postgres.log"
    until pid0=$(md_archiver_pid) && [ -n "$pid0" ]; do sleep 0.1; done
    psql_q -c "SELECT pg_stat_reset_shared('archiver')" >/dev/null
    sync
    cat "$DIR/push/pg_wal/"* >/dev/null
    while read -r s; do : >"$PGDATA_DIR/pg_wal/archive_status/$s.ready"; done <"$DIR/segments"
    chown -R postgres: "$PGDATA_DIR/pg_wal/archive_status"
    a0=$(md_proc_cpu "$pid0")
    c0=$(md_ticks)
    t0=$EPOCHREALTIME
    psql_q -c "SELECT pg_reload_conf()" >/dev/null # SIGHUP wakes the archiver: the drain starts
    while :; do
        last=$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        [[ -n $last && ! $last < $LAST ]] && break
        sleep 0.05
    done
    t1=$EPOCHREALTIME
    c1=$(md_ticks)
    pid=$(md_archiver_pid)
    [ "$pid" = "$pid0" ] || a0=0 # a new archiver (it restarted)
    echo "$(((${t1/./} - ${t0/./}) / 1000)) $(($(md_proc_cpu "$pid") - a0)) $((c1 - c0))" \
        >>"$DIR/results/md-$row"
    pg_stop "$PGDATA_DIR"
    case $row in
    pgbackrest-async) stored=$(find "$DIR/pgbr/md-repo/archive" -type f -name '0*-*' | wc -l) ;;
    *) stored=$(find "$DIR/md-repo" -type f -name '0*' | wc -l) ;;
    esac
    [ "$stored" -ge "$SEGMENTS" ] || die "$row: $stored of $SEGMENTS segments in the repository"
}

# md_trickle ROW KIND: method 2 on the running cluster; the latencies (ms) to results/md-tr-ROW-KIND.
md_trickle() {
    local row=$1 kind=$2 i out=$DIR/results/md-tr-$1-$2
    md_settings "${MD_SET[$row - $kind]}"
    psql_q -c "SELECT pg_reload_conf()" >/dev/null
    # One untimed segment first: the archiver restarted for a changed archive_library, and the
    # module's first file loads the configuration.
    md_trickle_one -1 >/dev/null
    : >"$out"
    for ((i = 0; i < MD_TRICKLE; i++)); do
        sleep "$MD_GAP"
        md_trickle_one "$i" >>"$out"
    done
}

# md_trickle_one I: one row, one switch, waits until that segment is archived; prints the latency.
md_trickle_one() {
    local seg t_switch lat
    IFS='|' read -r seg t_switch < <(psql_q -c "INSERT INTO md_trickle VALUES ($1)" \
        -c "SELECT pg_walfile_name(pg_switch_wal()), extract(epoch from clock_timestamp())")
    while :; do
        lat=$(psql_q -c "SELECT CASE WHEN last_archived_wal >= '$seg' THEN
            round(((extract(epoch from last_archived_time) - $t_switch) * 1000)::numeric, 1)
            END FROM pg_stat_archiver")
        [ -n "$lat" ] && break
        sleep 0.02
    done
    echo "$lat"
}

# md_rss N: method 3; prints the line of figures.
md_rss() {
    local n=$1 d=$DIR/rss-pg port pid done_n k next samples hwm
    port=$(free_port)
    pg_init "$d" --wal-segsize=1
    mkdir -m 700 "$DIR/rss-repo" && chown postgres: "$DIR/rss-repo"
    openssl rand -hex 32 >"$DIR/rss.key"
    printf "repo = '%s'\nencrypt_key_file = '%s'\ncompress_level = 3\nparallel = %s\n" \
        "$DIR/rss-repo" "$DIR/rss.key" "$MD_P" >"$DIR/walsafe-rss.conf"
    chown postgres: "$DIR/rss.key" "$DIR/walsafe-rss.conf"
    chmod 600 "$DIR/rss.key" "$DIR/walsafe-rss.conf"
    pg_conf "$d" "$port" "archive_mode = on" "archive_library = '$DIR/lib/walsafe_archive'" \
        "walsafe.config = '$DIR/walsafe-rss.conf'" "fsync = off" "max_wal_size = 256MB"
    pg_start "$d" "$DIR/rss-pg.log"
    pg_psql "$port" -c "CREATE TABLE r (i int)" >/dev/null
    md_rss_to() { # N: segments switched and archived until N are archived, each with a row in it
        local have
        pg_psql "$port" -c "DO \$\$ BEGIN FOR i IN 1..$(($1 - done_n)) LOOP
            INSERT INTO r VALUES (i); PERFORM pg_switch_wal(); END LOOP; END \$\$" >/dev/null
        while have=$(pg_psql "$port" -c "SELECT archived_count FROM pg_stat_archiver") &&
            [ "$have" -lt "$1" ]; do
            sleep 0.5
        done
        done_n=$1
        samples+="${samples:+, }$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") KB after $have"
    }
    pg_psql "$port" -c "DO \$\$ BEGIN FOR i IN 1..50 LOOP INSERT INTO r VALUES (i);
        PERFORM pg_switch_wal(); END LOOP; END \$\$" >/dev/null
    while [ "$(pg_psql "$port" -c "SELECT archived_count FROM pg_stat_archiver")" -lt 50 ]; do sleep 0.5; done
    pid=$(pg_psql "$port" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")
    samples="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") KB after 50"
    done_n=50
    for k in 1 2 3 4; do
        next=$((n * k / 4))
        [ "$next" -gt "$done_n" ] && md_rss_to "$next"
    done
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    printf 'archiver RSS through the module (pid %s, parallel = %s, %s x 1 MiB segments): %s (peak %s KB)\n' \
        "$pid" "$MD_P" "$n" "$samples" "$hwm"
    pg_stop "$d"
}

# MODE=module-rss: method 3 alone (MODULE_RSS segments, default 2000).
module_rss_bench() {
    local line
    MD_RSS=${MODULE_RSS:-2000}
    need_count MD_RSS
    mkdir -p "$DIR/lib" && cp "$BIN/../lib/walsafe_archive.so" "$DIR/lib/" && chown -R postgres: "$DIR/lib"
    line=$(md_rss "$MD_RSS")
    printf '\nwalsafe archive module: archiver RSS (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    print_machine "the cluster and the repository"
    printf '%s\n' "$line"
}

module_bench() {
    local r i row kind rss_line=""
    need_count MD_ROUNDS MD_P MD_TRICKLE
    [ -f "$BIN/../lib/walsafe_archive.so" ] || die "no $BIN/../lib/walsafe_archive.so (make module)"
    mkdir -p "$DIR/lib" && cp "$BIN/../lib/walsafe_archive.so" "$DIR/lib/" && chown -R postgres: "$DIR/lib"
    cp -a "$DIR/pgbr/repo" "$DIR/pgbr/md-template"
    {
        sed -n '/^\[global\]/,/^\[bench\]/p' "$PGBR_CONF" |
            grep -v -E '^(\[bench\]$|(repo1-path|archive-async|spool-path)=)'
        printf 'repo1-path=%s\narchive-async=y\nprocess-max=%s\nspool-path=%s\n\n[bench]\n' \
            "$DIR/pgbr/md-repo" "$MD_P" "$DIR/pgbr/md-spool"
        printf 'pg1-path=%s\npg1-socket-path=%s\npg1-port=%s\n' "$PGDATA_DIR" "$SOCK" "$PORT"
    } >"$DIR/pgbr/md.conf"
    chown postgres: "$DIR/pgbr/md.conf" && chmod 600 "$DIR/pgbr/md.conf"
    md_walsafe_conf walsafe-md.conf "$DIR/walsafe.conf" "$DIR/md-repo"
    echo "include_if_exists = 'bench_archive.conf'" >>"$PGDATA_DIR/postgresql.conf"
    # A backlog's drain writes no WAL: no checkpoint may recycle a segment meanwhile.
    echo "checkpoint_timeout = '1h'" >>"$PGDATA_DIR/postgresql.conf"
    MD_SET[wal-push]="archive_command = '$WAL_PUSH --config $DIR/walsafe-md.conf %p'"
    MD_SET[module]="archive_library = '$DIR/lib/walsafe_archive'
walsafe.config = '$DIR/walsafe-md.conf'"
    MD_SET[pgbackrest-async]="archive_command = 'pgbackrest --config=$DIR/pgbr/md.conf --stanza=bench archive-push %p'"
    for ((r = 1; r <= MD_ROUNDS; r++)); do
        for ((i = 0; i < ${#MD_ROWS[@]}; i++)); do
            row=${MD_ROWS[(i + r - 1) % ${#MD_ROWS[@]}]}
            note "drain $r/$MD_ROUNDS: $row ($SEGMENTS segments)"
            md_drain "$row"
        done
    done

    # Trickle: the cluster running, its archiving switched per row.
    rm -rf "$DIR/md-repo" "$DIR/md-spool" && mkdir -m 700 "$DIR/md-repo" "$DIR/md-spool"
    chown postgres: "$DIR/md-repo" "$DIR/md-spool"
    md_settings "archive_command = ''"
    pg_start "$PGDATA_DIR" "$DIR/postgres.log"
    psql_q -c "CREATE TABLE md_trickle (i int)" >/dev/null
    for kind in $PA_REPOS; do
        case $kind in
        local) md_walsafe_conf "walsafe-tr-$kind.conf" "$DIR/walsafe.conf" "$DIR/md-repo" ;;
        sftp) md_walsafe_conf "walsafe-tr-$kind.conf" "$DIR/walsafe-sftp.conf" \
            "sftp://root@127.0.0.1:$SSHD_PORT$DIR/md-repo" ;;
        s3) md_walsafe_conf "walsafe-tr-$kind.conf" "$DIR/walsafe-s3.conf" "s3://walsafe-bench/md" ;;
        esac
        MD_SET[wal-push - $kind]="archive_library = ''
archive_command = '$WAL_PUSH --config $DIR/walsafe-tr-$kind.conf %p'"
        MD_SET[module - $kind]="archive_library = '$DIR/lib/walsafe_archive'
walsafe.config = '$DIR/walsafe-tr-$kind.conf'"
        for row in wal-push module; do
            note "trickle: $row, $kind repository ($MD_TRICKLE segments)"
            md_trickle "$row" "$kind"
            MD_TR[$row-$kind]=$(median_of "$DIR/results/md-tr-$row-$kind")
        done
    done
    pg_stop "$PGDATA_DIR"
    [ "$MD_RSS" -gt 0 ] && rss_line=$(md_rss "$MD_RSS")

    printf '\nwalsafe archive module benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    print_machine "the cluster, the repositories and the spools"
    printf 'versions: %s (source tree %s at start); %s; %s\n' "$("$WAL_PUSH" --version)" "$BUILD_REV" \
        "$(pgbackrest version)" "$("$PGBIN/postgres" --version)"
    print_data
    printf 'settings: both zstd level 3 and encrypted; walsafe parallel = %s (wal-push: push-ahead, spool on the same disk;\n' "$MD_P"
    printf '          module: push-ahead threads), pgBackRest archive-async=y process-max = %s; a real PostgreSQL archiver\n' "$MD_P"
    printf '\nbacklog drain (%s segments, %s rounds; median of the rounds)\n' "$SEGMENTS" "$MD_ROUNDS"
    printf '%-18s %10s %12s %16s %16s\n' row segments/s "drain s" "archiver CPU s" "machine CPU s"
    for row in "${MD_ROWS[@]}"; do
        read -r MD_SPS[$row] wall MD_CPU[$row] MD_MCPU[$row] < <(awk -v n="$SEGMENTS" -v hz="$(getconf CLK_TCK)" '
            { w[NR] = $1; a[NR] = $2; m[NR] = $3 }
            function med(x, k,   i, j, t) {
                for (i = 2; i <= k; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
                return (k % 2) ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2 }
            END { mw = med(w, NR); printf "%.2f %.2f %.2f %.2f\n", n / (mw / 1000), mw / 1000, med(a, NR) / hz, med(m, NR) / hz }' \
            "$DIR/results/md-$row")
        printf '%-18s %10s %12s %16s %16s\n' "$row" "${MD_SPS[$row]}" "$wall" "${MD_CPU[$row]}" "${MD_MCPU[$row]}"
    done
    printf 'ratio module/pgbackrest-async (segments/s): %s;  module/wal-push: %s\n' \
        "$(ratio "${MD_SPS[module]}" "${MD_SPS[pgbackrest-async]}")" \
        "$(ratio "${MD_SPS[module]}" "${MD_SPS[wal-push]}")"
    printf '\ntrickle (%s segments per row, %ss apart): median ms from pg_switch_wal() to archived\n' "$MD_TRICKLE" "$MD_GAP"
    for kind in $PA_REPOS; do
        printf '  %-6s wal-push %8s   module %8s   module/wal-push %s\n' "$kind" \
            "${MD_TR[wal-push-$kind]}" "${MD_TR[module-$kind]}" \
            "$(ratio "${MD_TR[module-$kind]}" "${MD_TR[wal-push-$kind]}")"
    done
    [ -z "$rss_line" ] || printf '\n%s\n' "$rss_line"
}
