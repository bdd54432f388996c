# sshd.sh - a private OpenSSH server on 127.0.0.1 for SFTP tests and benchmarks (sourced).
#
#   . tests/integration/sshd.sh
#   trap 'sshd_stop_all' EXIT              # or chain it into the caller's own EXIT trap
#   SSHD_USERS=root SSHD_KEY_OWNER=postgres sshd_start "$T/sshd" || exit 1
#   repo="sftp://root@127.0.0.1:$SSHD_PORT$T/repo"
#   ... sftp_identity_file = '$SSHD_CLIENT_KEY', sftp_known_hosts = '$SSHD_KNOWN_HOSTS' ...
#   sshd_kill_sessions "$T/sshd"          # SIGKILL the per-connection processes, keep listening
#   sshd_stop "$T/sshd"; sshd_start "$T/sshd"   # down, then up again: same port, same host key
#
# sshd_start DIR [sshd_config line...] creates DIR (if needed) with
#   host_ed25519{,.pub}    the host key (kept across restarts)
#   client_ed25519{,.pub}  the client key, authorized for every user in SSHD_USERS
#   authorized_keys.USER   (the config says AuthorizedKeysFile DIR/authorized_keys.%u)
#   known_hosts            "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
#   sshd_config, sshd.pid, sshd.log, port
# Extra arguments are appended to sshd_config (e.g. "ClientAliveInterval 1"); on a restart they
# replace the previous extra lines. It sets SSHD_DIR SSHD_PORT SSHD_PID SSHD_CONFIG SSHD_LOG
# SSHD_HOST_KEY SSHD_CLIENT_KEY SSHD_KNOWN_HOSTS and SSHD_HOST_FP (the host key's SHA-256 as
# `ssh-keygen -l` prints it after "SHA256:"), and returns 0 once the server answers with its SSH
# banner, else non-zero with the reason on stderr (and nothing left running).
#   SSHD_USERS      login users to authorize (default: the current user). With UsePAM no, sshd
#                   refuses accounts whose password is locked ("!" in /etc/shadow, as Debian
#                   creates postgres) even for key logins: log in as root, or as a user with "*"
#   SSHD_KEY_OWNER  owner of the client key and known_hosts (default: the current user), so that
#                   programs run as that user (PostgreSQL's archive_command) can read them
#
# Servers are only ever stopped by the PID in their pid file or, if that file is gone, the PID
# recorded at start (either checked to be the sshd of that config), and sessions by the PIDs
# found below it in /proc; nothing is killed by name.
# Every started DIR is registered: sshd_stop_all (for EXIT traps) stops them all. The functions
# work under `set -euo pipefail` too (bench/wal.sh).

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
SSHD_STARTED=()
declare -gA SSHD_PIDS # DIR -> PID as started: stops work even if DIR/sshd.pid is gone

# sshd_free_port: a TCP port on 127.0.0.1 nothing listens on (the bind can still race; sshd_start
# retries with another port when it does).
sshd_free_port() {
    local p i
    for i in $(seq 1 50); do
        p=$((22000 + RANDOM % 9000))
        if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# sshd_pid_of DIR: the PID in DIR/sshd.pid (or, if that file is gone, the one sshd_start
# recorded) if it is alive and is the sshd of DIR/sshd_config.
sshd_pid_of() {
    local dir=$1 pid
    pid=$(head -1 "$dir/sshd.pid" 2>/dev/null || true)
    _sshd_is_ours "$pid" "$dir" || pid=${SSHD_PIDS[$dir]:-}
    _sshd_is_ours "$pid" "$dir" && echo "$pid"
}

_sshd_is_ours() { # PID DIR
    [[ $1 =~ ^[0-9]+$ ]] && [ -r "/proc/$1/cmdline" ] && ! _sshd_is_zombie "$1" &&
        tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -F -- "$2/sshd_config"
}

_sshd_is_zombie() { # PID: true if it is a zombie (gone for our purposes)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat:0:1}" = Z ]
}

_sshd_alive() { [ -e "/proc/$1" ] && ! _sshd_is_zombie "$1"; }

# sshd_descendants PID: every process below PID (children first listed before their children).
sshd_descendants() {
    local pid=$1 c t
    for t in /proc/"$pid"/task/*/children; do
        [ -r "$t" ] || continue
        for c in $(cat "$t" 2>/dev/null); do
            echo "$c"
            sshd_descendants "$c"
        done
    done
}

# _sshd_wait_gone PID... : up to 5 s until none of them is alive; 1 if one still is.
_sshd_wait_gone() {
    local i p alive
    for i in $(seq 1 100); do
        alive=0
        for p in "$@"; do _sshd_alive "$p" && { alive=1; break; }; done
        [ $alive = 0 ] && return 0
        sleep 0.05
    done
    return 1
}

# sshd_kill_sessions [DIR]: SIGKILL every per-connection process of the server (all processes
# below the listener); the listener keeps accepting. Returns once they are gone.
sshd_kill_sessions() {
    local dir=${1:-$SSHD_DIR} pid kids
    pid=$(sshd_pid_of "$dir") || { echo "sshd_kill_sessions: no sshd running in $dir" >&2; return 1; }
    kids=$(sshd_descendants "$pid")
    [ -n "$kids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $kids 2>/dev/null || true
    # shellcheck disable=SC2086
    _sshd_wait_gone $kids
}

# sshd_stop [DIR]: stops the listener (SIGTERM, then SIGKILL) and SIGKILLs its sessions.
sshd_stop() {
    local dir=${1:-$SSHD_DIR} pid kids
    pid=$(sshd_pid_of "$dir") || return 0
    kids=$(sshd_descendants "$pid")
    # shellcheck disable=SC2086
    [ -z "$kids" ] || kill -KILL $kids 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    if ! _sshd_wait_gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        _sshd_wait_gone "$pid" || true
    fi
    # shellcheck disable=SC2086
    [ -z "$kids" ] || _sshd_wait_gone $kids || true
    rm -f "$dir/sshd.pid"
    unset "SSHD_PIDS[$dir]"
}

# sshd_stop_all: stops every server sshd_start started in this shell (for EXIT traps).
sshd_stop_all() {
    local d
    for d in "${SSHD_STARTED[@]+"${SSHD_STARTED[@]}"}"; do
        sshd_stop "$d"
    done
}

# sshd_banner PORT: true if 127.0.0.1:PORT answers with an SSH banner within 2 s.
sshd_banner() {
    local b
    b=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -c 8 <&3' _ "$1" 2>/dev/null)
    [ "${b:0:4}" = "SSH-" ]
}

_sshd_prepare() { # DIR: keys and known_hosts material that survive restarts
    local dir=$1 owner=${SSHD_KEY_OWNER:-$(id -un)} u
    mkdir -p "$dir" /run/sshd || return 1
    chmod 755 "$dir" # sshd reads authorized_keys.USER as USER
    if [ ! -f "$dir/host_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C walsafe-test-host -f "$dir/host_ed25519" || return 1
    fi
    if [ ! -f "$dir/client_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C walsafe-test-client -f "$dir/client_ed25519" || return 1
    fi
    chown "$owner" "$dir/client_ed25519" "$dir/client_ed25519.pub" && chmod 600 "$dir/client_ed25519" ||
        return 1
    for u in ${SSHD_USERS:-$(id -un)}; do
        cp "$dir/client_ed25519.pub" "$dir/authorized_keys.$u" && chmod 644 "$dir/authorized_keys.$u" ||
            return 1
    done
    SSHD_HOST_FP=$(ssh-keygen -l -E sha256 -f "$dir/host_ed25519.pub" | awk '{print $2}')
    SSHD_HOST_FP=${SSHD_HOST_FP#SHA256:}
    [ -n "$SSHD_HOST_FP" ]
}

_sshd_write_config() { # DIR PORT [extra lines...]
    local dir=$1 port=$2
    shift 2
    {
        echo "# private sshd for walsafe tests (tests/integration/sshd.sh)"
        echo "Port $port"
        echo "ListenAddress 127.0.0.1"
        echo "HostKey $dir/host_ed25519"
        echo "PidFile $dir/sshd.pid"
        echo "AuthorizedKeysFile $dir/authorized_keys.%u"
        echo "StrictModes no"
        echo "PermitRootLogin prohibit-password"
        echo "PubkeyAuthentication yes"
        echo "PasswordAuthentication no"
        echo "KbdInteractiveAuthentication no"
        echo "UsePAM no"
        echo "UseDNS no"
        echo "PrintMotd no"
        echo "X11Forwarding no"
        echo "AllowTcpForwarding no"
        echo "MaxStartups 100"
        echo "Subsystem sftp internal-sftp"
        printf '%s\n' "$@"
    } >"$dir/sshd_config"
}

# sshd_start DIR [sshd_config line...]: see the top of this file.
sshd_start() {
    local dir=$1 port pid attempt i d known=0
    shift
    dir=$(mkdir -p "$dir" && cd "$dir" && pwd) || { echo "sshd_start: cannot create $1" >&2; return 1; }
    if pid=$(sshd_pid_of "$dir"); then
        echo "sshd_start: an sshd (pid $pid) already runs in $dir" >&2
        return 1
    fi
    _sshd_prepare "$dir" || { echo "sshd_start: could not create keys in $dir" >&2; return 1; }
    for d in "${SSHD_STARTED[@]+"${SSHD_STARTED[@]}"}"; do [ "$d" = "$dir" ] && known=1; done
    [ $known = 1 ] || SSHD_STARTED+=("$dir")
    for attempt in 1 2 3 4 5; do
        # A restart keeps its port (clients and known_hosts name it); a first start picks one.
        if [ -s "$dir/port" ]; then
            port=$(cat "$dir/port")
        else
            port=$(sshd_free_port) || { echo "sshd_start: no free port" >&2; return 1; }
        fi
        _sshd_write_config "$dir" "$port" "$@" || return 1
        rm -f "$dir/sshd.pid"
        echo "--- sshd start $(date '+%F %T') port $port" >>"$dir/sshd.log"
        "$SSHD_BIN" -D -e -f "$dir/sshd_config" </dev/null >>"$dir/sshd.log" 2>&1 &
        pid=$!
        disown "$pid" 2>/dev/null # no job notices ("Killed") when a test kills it
        SSHD_PIDS[$dir]=$pid
        for i in $(seq 1 100); do
            if [ "$(head -1 "$dir/sshd.pid" 2>/dev/null)" = "$pid" ] && sshd_banner "$port"; then
                echo "$port" >"$dir/port"
                SSHD_DIR=$dir SSHD_PORT=$port SSHD_PID=$pid
                SSHD_CONFIG=$dir/sshd_config SSHD_LOG=$dir/sshd.log
                SSHD_HOST_KEY=$dir/host_ed25519 SSHD_CLIENT_KEY=$dir/client_ed25519
                SSHD_KNOWN_HOSTS=$dir/known_hosts
                echo "[127.0.0.1]:$port $(cut -d' ' -f1-2 "$dir/host_ed25519.pub")" >"$SSHD_KNOWN_HOSTS"
                chown "${SSHD_KEY_OWNER:-$(id -un)}" "$SSHD_KNOWN_HOSTS"
                return 0
            fi
            _sshd_alive "$pid" || break
            sleep 0.05
        done
        # Not up: stop what may run (by its PID), then try again, with a new port on a bind error.
        if _sshd_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            _sshd_wait_gone "$pid" || true
        fi
        if tail -5 "$dir/sshd.log" | grep -q -i -E 'bind|address already in use'; then
            [ -s "$dir/port" ] && { echo "sshd_start: port $port is taken" >&2; break; }
            continue
        fi
        break
    done
    echo "sshd_start: sshd did not start in $dir; its log:" >&2
    tail -20 "$dir/sshd.log" | sed 's/^/    /' >&2
    return 1
}
