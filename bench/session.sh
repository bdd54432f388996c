#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# session.sh - the archive module's per-file latency without PostgreSQL: zero-filled 16 MiB
# segments (a trickle's segments are mostly zeros) pushed one at a time through one archiving
# session (tests/tools/sessionpush: archive/session.h, as the walsafe_archive module pushes),
# into a local repository and an sftp:// one on a private sshd on 127.0.0.1.
#
#   bench/session.sh SESSIONPUSH [SESSIONPUSH...]
#       e.g. bench/session.sh build/release/tests/tools/sessionpush /tmp/old/sessionpush
#
# Environment: FILES=N files per run (default 21; the first, which opens the repository and
# records the identity, is not counted), GAP_MS=N between files (default 200, as the trickle of
# bench/wal_module.sh: an idle session answers slower than a busy one), ROUNDS=N runs per tool
# and repository (default 5), the tools' order rotating from round to round; KEEP=1 keeps the
# work directory.
#
# Method: each run starts a new session on a new repository (same key, zstd level 3, encrypted,
# parallel = 2 as bench/wal_module.sh's module rows), times each ws_archive_session_push; the
# figure is the median over every counted file of every round, per tool and repository kind,
# and sftp - local (what the SFTP driver adds per file). Needs root only for the sshd.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=../tests/integration/sshd.sh
. "$(dirname "$0")/../tests/integration/sshd.sh"

[ $# -ge 1 ] || die "usage: bench/session.sh SESSIONPUSH [SESSIONPUSH...]"
FILES=${FILES:-21}
ROUNDS=${ROUNDS:-5}
GAP_MS=${GAP_MS:-200}
need_count FILES ROUNDS
[[ $GAP_MS =~ ^[0-9]+$ ]] || die "GAP_MS must be a number of milliseconds (got '$GAP_MS')"
need_root "nothing else"
for t in "$@"; do [ -x "$t" ] || die "not an executable: $t"; done
[ -x /usr/sbin/sshd ] || die "needs openssh-server (/usr/sbin/sshd)"

bench_tmpdir walsafe-session
trap 'bench_cleanup sshd_stop_all' EXIT
note "start a private sshd on 127.0.0.1"
SSHD_USERS=root sshd_start "$DIR/sshd" || die "could not start sshd"
mkdir -p "$DIR/seg"
openssl rand -hex 32 >"$DIR/ws.key"
chmod 600 "$DIR/ws.key"

# conf KIND REPO: the configuration of one run.
conf() {
    cat >"$DIR/$1.conf" <<CONF
repo = '$2'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
parallel = 2
sftp_identity_file = '$SSHD_CLIENT_KEY'
sftp_known_hosts = '$SSHD_KNOWN_HOSTS'
CONF
    chmod 600 "$DIR/$1.conf"
}
conf local "$DIR/repo"
conf sftp "sftp://root@127.0.0.1:$SSHD_PORT$DIR/repo"

tools=("$@")
for r in $(seq 1 "$ROUNDS"); do
    n=${#tools[@]}
    for i in $(seq 0 $((n - 1))); do
        k=$(((i + r) % n))
        for kind in local sftp; do
            rm -rf "$DIR/repo"
            mkdir -m 700 "$DIR/repo"
            note "round $r: tool $k, $kind"
            "${tools[$k]}" "$DIR/$kind.conf" "$DIR/seg" "$FILES" 1 "$GAP_MS" |
                awk 'NR > 1 && $1 == "push" {print $3}' >>"$DIR/ms.$k.$kind"
        done
    done
done

printf 'load: %s\n' "$(uptime)"
printf 'per-file latency, median ms over %s files x %s rounds, %s ms apart (16 MiB zeros, zstd 3,\nencrypted)\n' \
    "$((FILES - 1))" "$ROUNDS" "$GAP_MS"
printf '%-50s %8s %8s %12s\n' tool local sftp sftp-local
for k in "${!tools[@]}"; do
    l=$(median_of "$DIR/ms.$k.local")
    s=$(median_of "$DIR/ms.$k.sftp")
    printf '%-50s %8.2f %8.2f %12.2f\n' "${tools[$k]}" "$l" "$s" "$(echo "$s - $l" | bc -l)"
done
