#!/usr/bin/env bash
# coverage.sh BUILD [t_name...] - line coverage of common/ by the unit tests and the integration suite, per
# layer folder, then the files and functions with the most lines never run (`make coverage`:
# BUILD = build/coverage, built with --coverage -O0). Writes BUILD/coverage.info (lcov) and
# BUILD/coverage-html/. Exits non-zero when a test failed; the figures are printed anyway.
#
# Counts are written below a scratch directory (GCOV_PREFIX), never into the build tree: the
# programs PostgreSQL runs as postgres (archive_command, restore_command) count too. Every
# counter file is created there beforehand, mode 0666 in directories of mode 0777, so processes of
# root and postgres add to the same files (libgcov merges under a lock); then they are copied
# beside the .gcno files for lcov. A process that ends by _exit() writes its counts too
# (tests/gcov_exit.c, linked into the coverage build only): push-ahead's batch process, the
# detached prefetcher and restore's child count. One killed by a signal writes none.
#
# IT_JOBS (default 1), TEST_TIMEOUT (default 300: -O0 is slower) and the t_names (default: all)
# reach tests/integration/run.sh.
set -u
set -o pipefail

if [ $# -lt 1 ] || [ ! -d "$1/common" ]; then
    echo "usage: $0 BUILD [t_name...] (BUILD built with make COVERAGE=1)" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v lcov >/dev/null || { echo "coverage: lcov is missing (WALSAFE_COVERAGE=1 scripts/install-deps.sh)" >&2; exit 2; }

SCRATCH=$(mktemp -d /tmp/walsafe-coverage.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
chmod 755 "$SCRATCH"
COUNTS=$SCRATCH/counts
export GCOV_PREFIX=$COUNTS
GCOV_PREFIX_STRIP=$(printf '%s' "$BUILD" | tr -cd / | wc -c)
export GCOV_PREFIX_STRIP

# One empty counter file per .gcno, writable by everyone (libgcov treats an empty file as new).
find "$BUILD" -name '*.gcda' -delete
(cd "$BUILD" && find . -name '*.gcno') | while read -r f; do
    mkdir -p "$COUNTS/$(dirname "$f")" && : >"$COUNTS/${f%.gcno}.gcda"
done
find "$COUNTS" -type d -exec chmod 777 {} +
find "$COUNTS" -type f -exec chmod 666 {} +

rc=0
echo "coverage: unit tests"
"$ROOT/tests/unit/run.sh" "$BUILD"/tests/test_* | grep -E '^(FAIL|unit:)' || rc=1
echo "coverage: integration suite"
IT_JOBS=${IT_JOBS:-1} TEST_TIMEOUT=${TEST_TIMEOUT:-300} \
    "$ROOT/tests/integration/run.sh" "$BUILD/bin" "$@" | grep -E '^(FAIL|integration)' || rc=1

(cd "$COUNTS" && find . -name '*.gcda' -size +0) | while read -r f; do
    cp "$COUNTS/$f" "$BUILD/$f"
done
# lcov's messages go to a file, shown only when it fails (Debian 12's lcov 1.16 warns about its
# own Perl subroutines on every run). --initial: every line compiled, so a file no test reached
# counts as 0 %.
lcov_q() {
    lcov --quiet "$@" 2>"$SCRATCH/lcov.err" ||
        { cat "$SCRATCH/lcov.err" >&2; echo "coverage: lcov $1 failed" >&2; exit 1; }
}
lcov_q --capture --initial --directory "$BUILD/common" --output-file "$SCRATCH/zero.info"
lcov_q --capture --directory "$BUILD/common" --output-file "$SCRATCH/run.info"
lcov_q --add-tracefile "$SCRATCH/zero.info" --add-tracefile "$SCRATCH/run.info" \
    --output-file "$SCRATCH/all.info"
lcov_q --extract "$SCRATCH/all.info" "$ROOT/common/*" --output-file "$BUILD/coverage.info"
genhtml --quiet --output-directory "$BUILD/coverage-html" "$BUILD/coverage.info" >/dev/null 2>&1 ||
    echo "coverage: genhtml failed (the figures below are unaffected)" >&2

# Per folder of common/: instrumented lines (LF), lines run (LH).
printf '\nline coverage of common/ (%s, unit tests + integration suite)\n' "$(date -u +%Y-%m-%d)"
awk -v root="$ROOT/common/" '
    /^SF:/ { f = substr($0, 4); if (index(f, root) == 1) f = substr(f, length(root) + 1)
             dir = f; sub(/\/.*/, "", dir) }
    /^LF:/ { lf[dir] += substr($0, 4); tlf += substr($0, 4) }
    /^LH:/ { lh[dir] += substr($0, 4); tlh += substr($0, 4) }
    END {
        printf "%-10s %8s %8s %7s\n", "folder", "lines", "covered", "%"
        n = split("base io pg storage repo archive backup prune", order, " ")
        for (i = 1; i <= n; i++) { d = order[i]; seen[d] = 1
            if (lf[d]) printf "%-10s %8d %8d %6.1f%%\n", d, lf[d], lh[d], 100 * lh[d] / lf[d] }
        for (d in lf) if (!seen[d]) printf "%-10s %8d %8d %6.1f%%\n", d, lf[d], lh[d], 100 * lh[d] / lf[d]
        printf "%-10s %8d %8d %6.1f%%\n", "common/", tlf, tlh, tlf ? 100 * tlh / tlf : 0
    }' "$BUILD/coverage.info"

# Lines never run, by file and by function (a line belongs to the function that starts last
# before it).
awk -v root="$ROOT/common/" '
    /^SF:/ { f = substr($0, 4); if (index(f, root) == 1) f = substr(f, length(root) + 1) }
    /^FN:/ { split(substr($0, 4), a, ","); print f, a[1], 0, a[2] }
    /^DA:/ { split(substr($0, 4), a, ","); print f, a[1], 1, (a[2] > 0) }
' "$BUILD/coverage.info" | sort -k1,1 -k2,2n -k3,3n | awk '
    $1 != file { file = $1; fn = "(file scope)" }
    $3 == 0 { fn = $4; next }
    { key = file " " fn; lines[key]++; if (!$4) { miss[key]++; fmiss[file]++ } }
    END {
        for (k in miss) printf "F %d %d %s\n", miss[k], lines[k], k
        for (f in fmiss) printf "X %d %s\n", fmiss[f], f
    }' >"$SCRATCH/miss"
printf '\nfiles with the most lines never run\n'
grep '^X ' "$SCRATCH/miss" | sort -k2,2nr | head -12 | awk '{printf "  %5d  %s\n", $2, $3}'
printf '\nfunctions with the most lines never run (never run / lines)\n'
grep '^F ' "$SCRATCH/miss" | sort -k2,2nr | head -25 | awk '{printf "  %5d / %-5d %s %s\n", $2, $3, $4, $5}'
printf '\nper line: %s/coverage-html/index.html\n' "$BUILD"
exit $rc
