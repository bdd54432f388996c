#!/usr/bin/env bash
# Runs every tests/integration/t_*.sh against the programs in BIN_DIR and prints one line per
# test, then "integration: N passed, N failed". Exits non-zero if any test failed.
#
#   tests/integration/run.sh BIN_DIR [t_name ...]
#
# Needs root (PostgreSQL is run as the postgres user through runuser; one case mounts a tmpfs)
# and PostgreSQL 15 server binaries (PGBIN, default /usr/lib/postgresql/15/bin).
# KEEP_TMP=1 keeps each test's temp directory; IT_VERBOSE=1 shows every command's stderr.
# IT_PASS=asan (make check's ASan pass) leaves out the tests listed in release_pass_only when no
# test is named.
# IT_JOBS=N runs N tests at once (default 3 on this 2-core class of machine: the tests spend
# most of their time waiting on servers and timeouts; docs/design/testing.md, Suite time), and
# nothing they start can collide: PostgreSQL listens on a socket in the test's own directory
# (and, for the remote tests, on a port below the kernel's ephemeral range: tests/cluster.sh),
# s3rver and the fault proxy bind port 0, sshd retries a taken port.
# Each test's lines are printed whole when it ends, in the order the tests end; the longest
# start first (tests/integration/durations). IT_PG_TEMPLATES (set here) lets lib.sh's pg_init
# copy one initdb per set of options instead of running initdb for every cluster.
set -u

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BIN_DIR [t_name ...]" >&2
    exit 2
fi
BIN_DIR=$(cd "$1" && pwd)
shift
export BIN_DIR
export PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
# Hermetic: the caller's walsafe and libpq settings must not leak into the tests.
for v in $(compgen -e); do
    case "$v" in WALSAFE_*) unset "$v" ;; PG*) [ "$v" = PGBIN ] || unset "$v" ;; esac
done
# A sanitizer report must never pass as an ordinary exit status (1 is "not in the archive" for
# wal-fetch), also when this script is run without the Makefile's settings.
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=66:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:exitcode=66}
# Per-test time limit (seconds). Budget: `make check` (both integration runs) under 15 minutes.
TEST_TIMEOUT=${TEST_TIMEOUT:-120}

here=$(cd "$(dirname "$0")" && pwd)
passed=0
failed=0

problem=""
[ "$(id -u)" -eq 0 ] || problem="must run as root (servers run as postgres via runuser)"
id postgres >/dev/null 2>&1 || problem="no postgres user"
[ -x "$PGBIN/postgres" ] || problem="no PostgreSQL server binaries in $PGBIN"
[ -x "$BIN_DIR/wal-push" ] && [ -x "$BIN_DIR/wal-fetch" ] || problem="no wal-push/wal-fetch in $BIN_DIR"
if [ -n "$problem" ]; then
    echo "FAIL integration set-up: $problem"
    echo "integration: 0 passed, 1 failed"
    exit 1
fi
# The binaries are run by the postgres user, which may not reach the build tree (a CI clone
# under /root, say): run copies of bin/, tests/ and lib/ from a directory everyone can read.
SRC_BUILD=$(dirname "$BIN_DIR")
BUILD_NAME=$(basename "$SRC_BUILD")
RUN_BUILD=$(mktemp -d /tmp/walsafe-it-build.XXXXXX)
trap 'rm -rf "$RUN_BUILD"' EXIT
chmod 755 "$RUN_BUILD"
cp -a "$BIN_DIR" "$RUN_BUILD/bin"
[ -d "$SRC_BUILD/tests" ] && cp -a "$SRC_BUILD/tests" "$RUN_BUILD/tests"
[ -d "$SRC_BUILD/lib" ] && cp -a "$SRC_BUILD/lib" "$RUN_BUILD/lib" # the archive module
chmod -R a+rX "$RUN_BUILD"
BIN_DIR=$RUN_BUILD/bin
if ! runuser -u postgres -- test -x "$BIN_DIR/wal-push"; then
    echo "FAIL integration set-up: the postgres user cannot execute $BIN_DIR/wal-push"
    echo "integration: 0 passed, 1 failed"
    exit 1
fi

# Clusters of the same initdb options are copies of one initdb per run (lib.sh's pg_init).
export IT_PG_TEMPLATES=$RUN_BUILD/pg-templates
install -d -o postgres -g postgres -m 700 "$IT_PG_TEMPLATES"

skipped=()
if [ $# -gt 0 ]; then
    tests=()
    for n in "$@"; do tests+=("$here/${n%.sh}.sh"); done
else
    tests=()
    for t in "$here"/t_*.sh; do
        n=$(basename "$t" .sh)
        # IT_PASS=asan (make check's ASan pass): not the tests listed in release_pass_only
        if [ "${IT_PASS:-}" = asan ] &&
            awk -v n="$n" '$1 == n { f = 1 } END { exit !f }' "$here/release_pass_only"; then
            skipped+=("$n")
        else
            tests+=("$t")
        fi
    done
fi
# Longest first (by tests/integration/durations; 30 s for a test not listed there), so that the
# slots end together instead of one long test running alone at the end.
mapfile -t tests < <(for t in "${tests[@]}"; do
    n=$(basename "$t" .sh)
    secs=$(awk -v n="$n" '$1 == n { print $2; exit }' "$here/durations" 2>/dev/null)
    echo "${secs:-30} $t"
done | sort -k1,1nr -k2,2 | cut -d' ' -f2-)

IT_JOBS=${IT_JOBS:-3}
case $IT_JOBS in '' | *[!0-9]* | 0) echo "run.sh: IT_JOBS must be a positive number, got '$IT_JOBS'" >&2; exit 2 ;; esac
RESULTS=$(mktemp -d /tmp/walsafe-it-results.XXXXXX)
trap 'rm -rf "$RUN_BUILD" "$RESULTS"' EXIT

# run_one T N: runs test T; its report goes to $RESULTS/N.out, its verdict to $RESULTS/N.rc.
run_one() {
    local t=$1 n=$2 name log start rc secs
    name=$(basename "$t" .sh)
    log=$RESULTS/$n.log
    start=$(date +%s)
    timeout -k 20 "$TEST_TIMEOUT" bash "$t" >"$log" 2>&1 </dev/null
    rc=$?
    secs=$(($(date +%s) - start))
    if [ $rc -eq 0 ] && ! grep -q '^FAIL' "$log"; then
        {
            echo "ok   $name (${secs}s)"
            grep -i '^skip' "$log" | sed 's/^/     /'
        } >"$RESULTS/$n.out"
        echo 0 >"$RESULTS/$n.rc"
    else
        [ $rc -eq 124 ] && echo "     (timed out after ${TEST_TIMEOUT}s)" >>"$log"
        {
            echo "FAIL $name (${secs}s, exit $rc)"
            sed 's/^/     /' "$log"
        } >"$RESULTS/$n.out"
        echo 1 >"$RESULTS/$n.rc"
    fi
}

# report N: prints test N's lines once it has ended and counts it.
report() {
    cat "$RESULTS/$1.out"
    if [ "$(cat "$RESULTS/$1.rc")" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# `make check` leaves the machine as it found it: nothing may appear, change or go where an
# installation of walsafe keeps its things (the default spool /var/spool/walsafe, /etc/walsafe*,
# /var/lib/walsafe*, stamps in root's or postgres's home), nor a PostgreSQL cluster configuration
# be left in /etc/postgresql (t_debian_restore registers clusters there and drops them). Each path
# with its modification
# time; directories by name only (one that gained and lost an entry is unchanged). Not all of /etc
# and /var/lib: on a shared machine apt and other users change them, and pg_dropcluster rewrites
# /etc/apt/apt.conf.d/01autoremove-postgresql with the same content.
machine_state() {
    find /var/spool/walsafe* /etc/walsafe* /var/lib/walsafe* /etc/postgresql /root/.walsafe* \
        /var/lib/postgresql/.walsafe* \
        \( -type d -printf '%p/\n' \) -o -printf '%p %T@\n' 2>/dev/null | LC_ALL=C sort
}
state_before=$(machine_state)
suite_start=$(date +%s)
declare -A running=() # pid -> test number
n=0
for t in "${tests[@]}"; do
    while [ ${#running[@]} -ge "$IT_JOBS" ]; do
        wait -n
        for pid in "${!running[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                wait "$pid"
                report "${running[$pid]}"
                unset "running[$pid]"
            fi
        done
    done
    n=$((n + 1))
    run_one "$t" "$n" &
    running[$!]=$n
done
for pid in "${!running[@]}"; do
    wait "$pid"
    report "${running[$pid]}"
done
state_after=$(machine_state)
if [ "$state_after" != "$state_before" ]; then
    echo "FAIL machine state: the suite changed these (> new or changed, < gone or changed):"
    diff <(echo "$state_before") <(echo "$state_after") | sed -n 's/^\([<>]\) /     \1 /p'
    failed=$((failed + 1))
fi
[ ${#skipped[@]} -eq 0 ] ||
    echo "not in this pass (IT_PASS=asan; tests/integration/release_pass_only): ${skipped[*]}"
echo "integration ($BUILD_NAME/bin, $(($(date +%s) - suite_start))s)"
echo "integration: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
