#!/usr/bin/env bash
# Runs libFuzzer harnesses (tests/fuzz/fuzz_<name>.c, built by `make fuzz-build`) and prints one
# line per harness: its runs, executions per second and new coverage.
#
#   tests/fuzz/run.sh check SECONDS BIN...   each harness SECONDS on a COPY of its seed corpus
#                                            tests/fuzz/corpus/<name>/ (never grows the committed
#                                            corpus); fails on any crash, leak, timeout or OOM
#   tests/fuzz/run.sh long SECONDS BIN...    each harness SECONDS (0: until stopped) on the work
#                                            corpus build/fuzz/corpus/<name>/, seeded from the
#                                            committed one; what it finds stays there
#
# A crashing input is kept as build/fuzz/crashes/<name>-<file> and its reproduction printed:
# fix the bug, add a unit test, and commit the input to tests/fuzz/corpus/<name>/. To adopt seeds
# a long run found, minimise them into the committed corpus:
#   build/fuzz/tests/fuzz/fuzz_<name> -merge=1 tests/fuzz/corpus/<name> build/fuzz/corpus/<name>
# tests/fuzz/<name>.dict, when present, is passed as the dictionary. FUZZ_JOBS (default 2, one
# per core here) harnesses run at once; their lines are printed in the order of the arguments.
set -u

if [ $# -lt 2 ] || { [ "$1" != check ] && [ "$1" != long ]; }; then
    echo "usage: $0 check|long SECONDS BIN..." >&2
    exit 2
fi
mode=$1
secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
crashes=$root/build/fuzz/crashes
mkdir -p "$crashes"
failed=0
# Leaks are failures too; the sanitizers of a harness must not be silenced by the environment.
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

run_one() { # BIN: its line(s) on stdout; status 1 if it failed
    local bin=$1 name seeds work corpus args start rc took runs speed cov art
    bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
    name=$(basename "$bin")
    name=${name#fuzz_}
    seeds=$here/corpus/$name
    [ -d "$seeds" ] || { echo "FAIL fuzz_$name: no seed corpus $seeds"; return 1; }
    work=$(mktemp -d /tmp/walsafe-fuzz.XXXXXX)
    if [ "$mode" = check ]; then
        corpus=$work/corpus
        cp -r "$seeds" "$corpus"
    else
        corpus=$root/build/fuzz/corpus/$name
        mkdir -p "$corpus"
        cp -n "$seeds"/* "$corpus"/ 2>/dev/null
    fi
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536
          -print_final_stats=1 -artifact_prefix="$work/")
    [ -f "$here/$name.dict" ] && args+=(-dict="$here/$name.dict")
    start=$(date +%s)
    (cd "$work" && "$bin" "${args[@]}" "$corpus") >"$work/log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
    art=$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'slow-unit-*' \) | head -1)
    if [ $rc -ne 0 ] || [ -n "$art" ]; then
        echo "FAIL fuzz_$name (${took}s, exit $rc)"
        grep -E 'ERROR|SUMMARY|runtime error|==[0-9]+==' "$work/log" | head -20 | sed 's/^/     /'
        if [ -n "$art" ]; then
            cp "$art" "$crashes/$name-$(basename "$art")"
            echo "     input kept as $crashes/$name-$(basename "$art"); reproduce:"
            echo "     $bin $crashes/$name-$(basename "$art")"
        else
            tail -20 "$work/log" | sed 's/^/     /'
        fi
    else
        echo "ok   fuzz_$name (${took}s): ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-cov: ?}," \
             "corpus $(find "$corpus" -type f | wc -l) files"
    fi
    rm -rf "$work"
    [ $rc -eq 0 ] && [ -z "$art" ]
}

jobs=${FUZZ_JOBS:-2}
results=$(mktemp -d /tmp/walsafe-fuzz-results.XXXXXX)
i=0
for bin in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    i=$((i + 1))
    (run_one "$bin" >"$results/$i.out" 2>&1; echo $? >"$results/$i.rc") &
done
wait
for n in $(seq 1 "$i"); do
    cat "$results/$n.out"
    [ "$(cat "$results/$n.rc" 2>/dev/null)" = 0 ] || failed=$((failed + 1))
done
rm -rf "$results"
echo "fuzz ($mode): $(($# - failed)) passed, $failed failed"
[ $failed -eq 0 ]
