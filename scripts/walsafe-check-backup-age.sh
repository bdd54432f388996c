#!/bin/sh
# walsafe-check-backup-age.sh - monitoring check: is the newest complete backup recent enough?
#
#   walsafe-check-backup-age.sh [--config FILE] [--max-age HOURS]     (default 26 hours)
#
# Reads the repository alone (`basebackup list --json`), so it can run on any host that has the
# configuration, not only on the database server: what counts is what a restore would find.
# Prints one line and exits like a Nagios/Icinga plugin: 0 OK, 2 CRITICAL (no complete backup,
# or the newest ended more than HOURS ago), 3 UNKNOWN (the repository could not be read). Needs
# jq. Also reports the backups that are not complete (running, incomplete, interrupted deletes).
set -u
conf=${WALSAFE_CONFIG:-/etc/walsafe.conf}
max_hours=26
bin=${WALSAFE_BIN:-}
while [ $# -gt 0 ]; do
    case "$1" in
    --config) conf=$2; shift 2 ;;
    --max-age) max_hours=$2; shift 2 ;;
    *) echo "usage: $0 [--config FILE] [--max-age HOURS]" >&2; exit 3 ;;
    esac
done
command -v jq >/dev/null 2>&1 || { echo "UNKNOWN: jq is not installed"; exit 3; }
bb=${bin:+$bin/}basebackup
# stdout is the JSON document; stderr (warnings, or the error) is kept apart from it
errf=$(mktemp) || { echo "UNKNOWN: mktemp failed"; exit 3; }
trap 'rm -f "$errf"' EXIT
if ! out=$("$bb" --config "$conf" list --json 2>"$errf"); then
    echo "UNKNOWN: basebackup list failed: $(grep . "$errf" | tail -1)"
    exit 3
fi
newest=$(printf '%s' "$out" | jq -r '[.backups[] | select(.status == "complete")] | max_by(.stop_time) | if . == null then "" else .id + " " + .stop_time end') ||
    { echo "UNKNOWN: unexpected output from basebackup list --json"; exit 3; }
others=$(printf '%s' "$out" | jq -r '[.backups[] | select(.status != "complete") | .id + " " + .status] | join(", ")')
[ -n "$others" ] && others=" (not complete: $others)"
if [ -z "$newest" ]; then
    echo "CRITICAL: the repository holds no complete backup$others"
    exit 2
fi
id=${newest%% *}
stop=${newest#* }
age=$(($(date -u +%s) - $(date -u -d "$stop" +%s)))
ago="$((age / 3600)) h $((age % 3600 / 60)) min ago"
if [ "$age" -gt $((max_hours * 3600)) ]; then
    echo "CRITICAL: the newest complete backup, $id, ended $ago (limit ${max_hours} h)$others"
    exit 2
fi
echo "OK: the newest complete backup, $id, ended $ago$others"
exit 0
