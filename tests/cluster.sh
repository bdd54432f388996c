# shellcheck shell=bash
# cluster.sh - throwaway PostgreSQL 15 clusters, for the integration tests
# (tests/integration/lib.sh) and the benchmarks (bench/lib.sh), which source it.
#
# The sourcing script sets SOCK (the socket directory, which postgres can write to) and defines
# die MESSAGE (stop at once); it may define fail MESSAGE (counted, the run goes on), which
# pg_stop reports through when there is one. PGBIN defaults to PostgreSQL 15's.
#
# What every cluster made here can rely on:
#   - initdb and the server run as the postgres user; authentication is trust, superuser postgres;
#   - the server listens only on its socket in $SOCK (listen_addresses = ''), on its own port;
#   - pg_start registers the data directory in SERVERS before it starts the server, and
#     pg_stop_all (the caller's EXIT trap) stops each registered server by the PID in its
#     postmaster.pid, only once that PID is checked to be the postmaster of that directory;
#     nothing is ever stopped or killed by name.
#
#   free_port                         a port no server listens on (TCP, or a socket file)
#   pg_init DIR [INITDB_OPTION]...    initdb, or the suite's copy of one (lib.sh pg_init_template)
#   pg_conf DIR PORT [SETTING]...     the settings above, then the SETTINGs ("name = value")
#   pg_start [--no-wait] DIR [LOG]    register and start (LOG default DIR.log); waits until it
#                                     accepts connections unless --no-wait
#   pg_running DIR                    true while the postmaster of DIR runs
#   pg_stop DIR                       fast (clean) shutdown; on failure: immediate, and fail/die
#   pg_stop_immediate DIR             immediate shutdown, then SIGKILL of that PID if needed
#   pg_stop_all                       pg_stop_immediate of every registered server
#   pg_psql PORT [PSQL_ARG]...        psql on database postgres: unaligned, tuples only, quiet,
#                                     stopping at the first error
#   is_postmaster_of PID DIR          true when PID is the postmaster of DIR

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SERVERS=()

# A port for a test's server (12000-19999): below the kernel's ephemeral range (32768-60999
# on Debian), where an outgoing connection of another test (a client of an S3 server, the fault
# proxy) can hold it as its local port and make the server's bind fail; and no socket of any state
# uses it now.
free_port() {
    local p _
    for _ in $(seq 1 50); do
        p=$((12000 + RANDOM % 8000))
        if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q . &&
            [ ! -e "$SOCK/.s.PGSQL.$p" ] && [ ! -e "/var/run/postgresql/.s.PGSQL.$p" ] &&
            [ ! -e "/tmp/.s.PGSQL.$p" ]; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

pg_init() {
    local d=$1
    shift
    # the integration suite's copies of one initdb per run (tests/integration/lib.sh)
    if [ -n "${IT_PG_TEMPLATES:-}" ] && [ -d "$IT_PG_TEMPLATES" ] &&
        declare -F pg_init_template >/dev/null && pg_init_template "$d" "$@"; then
        return 0
    fi
    runuser -u postgres -- "$PGBIN/initdb" -D "$d" -A trust -U postgres --no-sync \
        --no-instructions "$@" >"$d.initdb.log" 2>&1 ||
        { cat "$d.initdb.log"; die "initdb $d failed"; }
}

pg_conf() {
    local d=$1 port=$2
    shift 2
    {
        echo "# throwaway cluster settings (tests/cluster.sh)"
        echo "port = $port"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$SOCK'"
        echo "wal_level = replica"
        echo "max_wal_senders = 4"
        echo "log_line_prefix = '%m [%p] '"
        printf '%s\n' "$@"
    } >>"$d/postgresql.conf" || die "could not write $d/postgresql.conf"
}

pg_start() {
    local wait=(-w -t 60) d log s=
    if [ "$1" = --no-wait ]; then
        wait=(-W)
        shift
    fi
    d=$1 log=${2:-$1.log}
    for s in "${SERVERS[@]+"${SERVERS[@]}"}"; do [ "$s" != "$d" ] || break; done
    [ "$s" = "$d" ] || SERVERS+=("$d")
    touch "$log" && chown postgres: "$log"
    if ! runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -l "$log" "${wait[@]}" start \
        >"$d.pg_ctl.log" 2>&1; then
        echo "--- $log (tail) ---"
        tail -30 "$log"
        die "could not start server in $d"
    fi
}

is_postmaster_of() {
    local pid=$1 d=$2
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$d"* ]]
}

pg_running() {
    [ -f "$1/postmaster.pid" ] && is_postmaster_of "$(head -1 "$1/postmaster.pid" 2>/dev/null)" "$1"
}

pg_stop_immediate() {
    local d=$1 pid _
    [ -f "$d/postmaster.pid" ] || return 0
    pid=$(head -1 "$d/postmaster.pid" 2>/dev/null)
    is_postmaster_of "$pid" "$d" || return 0
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w -t 20 stop >/dev/null 2>&1 || :
    for _ in $(seq 1 100); do
        is_postmaster_of "$pid" "$d" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || :
    for _ in $(seq 1 50); do
        is_postmaster_of "$pid" "$d" || return 0
        sleep 0.1
    done
}

pg_stop() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null 2>&1 && return 0
    pg_stop_immediate "$1"
    if declare -F fail >/dev/null; then
        fail "clean shutdown of $1 failed"
    else
        die "clean shutdown of $1 failed"
    fi
    return 1
}

pg_stop_all() {
    local d
    for d in "${SERVERS[@]+"${SERVERS[@]}"}"; do
        pg_stop_immediate "$d"
    done
}

pg_psql() {
    local port=$1
    shift
    "$PGBIN/psql" -h "$SOCK" -p "$port" -U postgres -d postgres -X -A -t -q -v ON_ERROR_STOP=1 "$@"
}
