#!/usr/bin/env bash
# Runs every unit-test binary given as an argument and prints the total as "N passed, N failed".
set -u
passed=0 failed=0 bad=()
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    echo "$out" | grep -E '^(FAIL|    )' || true
    p=$(echo "$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' | tail -1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ $rc -ne 0 ]; then
        bad+=("$t")
        [ "${f:-0}" -eq 0 ] && { failed=$((failed + 1)); echo "$out" | tail -20; }
    fi
    echo "$(basename "$t"): ${p:-0} passed, ${f:-0} failed"
done
echo "unit: $passed passed, $failed failed"
[ ${#bad[@]} -eq 0 ]
