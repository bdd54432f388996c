#!/usr/bin/env bash
# t_backup_kill: `basebackup create` killed with SIGKILL at 16 random moments (TRIALS) and 9
# aimed ones, spread over a whole run
# (connecting and pg_backup_start, the walk, copying the bundles, pg_backup_stop, the manifest,
# the wait for the backup's WAL), against a real PostgreSQL 15 archiving into a local repository.
# The moments are drawn from the measured duration of an uninterrupted create, one in each
# thirtieth of it (and a little past its end). After every kill:
#   - the killed backup is not listed complete unless its manifest was stored (a backup killed
#     in the wait for its WAL becomes complete when the archiver stores that WAL: SPEC's rule),
#     and never while bundles of it are only temp files;
#   - the killed session's server process ends (a non-exclusive backup ends with its session:
#     nothing is left in backup mode), and the next `basebackup create` succeeds.
# Then, deterministically, what a kill between two bundle renames leaves (a later bundle stored,
# bundle 0 not) under the id the next create would pick: that create takes another id and
# leaves the dead run's objects alone.
# At the end `verify --all` passes (every backup listed complete really is), and `wal-prune`, run
# with its clock two days ahead (faketime; abandoned backups go after 24 h), removes every backup
# that is not complete and every temp file, keeps every complete backup, and `verify --all`
# still passes.
. "$(dirname "$0")/lib.sh"
setup_tmp

TRIALS=${TRIALS:-16} # random kills; 9 aimed ones follow (TRIALS=100 for a long drill)
WAL_PRUNE=$BIN_DIR/wal-prune
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "spool_dir = ''"
BACKUPS=$REPO_FILES/main/backup

# archive_command: wal-push, a second late while $T/slow-archive exists (an archiver that is
# behind), so that an aimed kill can find a backup waiting for its WAL.
cat >"$T/archive.sh" <<EOF || die "could not write $T/archive.sh"
#!/bin/sh
[ -e "$T/slow-archive" ] && sleep 1
exec "$WAL_PUSH" --config "$CONF" "\$1"
EOF
chmod 755 "$T/archive.sh"
pg_init "$PGD" --wal-segsize=1
PORT=$(free_port)
pg_conf "$PGD" "$PORT" "archive_mode = on" "archive_command = '$T/archive.sh %p'" \
    "checkpoint_timeout = '1h'" "max_wal_size = '1GB'"
pg_start "$PGD"
# parallel = 2: two workers fill two bundles at once, so a kill can find a later bundle stored
# and an earlier one still a temp file.
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "spool_dir = ''" "parallel = 2"
sql "$PORT" "create table t (id int, pad text);
             insert into t select g, repeat(md5(g::text), 8) from generate_series(1, 5000) g" ||
    die "create table failed"

AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --) # execs CMD: a kill reaches it
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# fresh_second: returns once the clock is past the second of the newest backup id, sleeping
# until just after the next whole second if need be. A backup id is its start second and create
# waits a whole second when its id is taken: starting on a fresh second keeps that wait out of
# the measured runs and out of the kill moments.
fresh_second() {
    local id ms
    id=$(backup_dirs | tail -1)
    [ -n "$id" ] || return 0
    [ "$(date -u +%Y%m%dT%H%M%SZ)" \> "$id" ] && return 0
    # a directory that holds only temp files does not take its id
    [ -n "$(find "$BACKUPS/$id" -type f ! -name '.walsafe-tmp*' -print -quit)" ] || return 0
    ms=$((10#$(date +%N) / 1000000))
    sleep "$(printf '%d.%03d' $(((1020 - ms) / 1000)) $(((1020 - ms) % 1000)))"
}

# client_backends: server processes of client sessions other than the one asking.
client_backends() {
    sql "$PORT" "select count(*) from pg_stat_activity
                 where backend_type = 'client backend' and pid <> pg_backend_pid()"
}
# backup_dirs: the backup directories in the repository (also those holding only temp files).
backup_dirs() { find "$BACKUPS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | LC_ALL=C sort; }
has_temp() { [ -n "$(find "$1" -name '.walsafe-tmp*' -print -quit 2>/dev/null)" ]; }

CASE="uninterrupted create"
bb_create "$CONF" --label first # also the checkpoint after the table's load
DURS=() # durations of uninterrupted creates that did not wait for a fresh id (ms)
# timed_create LABEL: an uninterrupted create started on a fresh second; its duration is added
# to DURS unless it still waited for an id (its id is not its start second).
# The kill moments are drawn from the median of the last five, so that they follow the
# machine's speed as the drill goes on.
timed_create() {
    local t0
    fresh_second
    t0=$(now_ms)
    run "${AS_PG[@]}" "$BASEBACKUP" --config "$CONF" create --fast --label "$1"
    [ "$RC" = 0 ] && [ "$(cat "$T/.last.out")" = "$(date -u -d "@$((t0 / 1000))" +%Y%m%dT%H%M%SZ)" ] &&
        DURS+=($(($(now_ms) - t0)))
    return 0
}
recent_dur() {
    local n=${#DURS[@]} k
    k=$((n < 5 ? n : 5))
    printf '%s\n' "${DURS[@]:$((n - k))}" | sort -n | sed -n "$((k / 2 + 1))p"
}
for i in 1 2 3; do
    timed_create "measured-$i"
    assert_rc 0 "uninterrupted create $i" || die "create failed"
done
note "uninterrupted creates took ${DURS[*]} ms"
[ "$(recent_dur)" -lt 10000 ] || die "a create takes $(recent_dur) ms; the drill needs a fast one"

CASE="kills"
declare -A PHASES=()
# kill_trial NAME MS [LOG_LINE]: starts a create on a fresh second and kills it MS ms after its
# start or, with LOG_LINE, MS ms after its -v log shows LOG_LINE (polled); then checks what the
# kill left and runs an uninterrupted create. Sets PHASE to where the run was when killed.
kill_trial() {
    local name=$1 at=$2 line=${3:-} what before pid rc id n w t0
    what="$name (killed ${line:+$at ms after \"$line\", }at ${at} ms)"
    before=$(backup_dirs)
    fresh_second
    # no function or subshell in between: $! is basebackup itself
    "${AS_PG[@]}" "$BASEBACKUP" --config "$CONF" -v create --fast --label "$name" \
        >"$T/kill.out" 2>"$T/kill.err" &
    pid=$!
    t0=$(now_ms)
    if [ -n "$line" ]; then
        until grep -q -F -- "$line" "$T/kill.err" || ! kill -0 "$pid" 2>/dev/null; do
            [ $(($(now_ms) - t0)) -lt 20000 ] || break
            sleep 0.002
        done
        what="$name (killed $at ms after \"$line\", at $(($(now_ms) - t0 + at)) ms)"
    fi
    sleep "$(printf '%d.%03d' $((at / 1000)) $((at % 1000)))"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null # no "Killed" line from the shell
    rc=$?
    id=$(LC_ALL=C comm -13 <(echo "$before") <(backup_dirs) | head -1)
    # Where the run was: what it logged (stderr is unbuffered, -v) and what it stored.
    if [ "$rc" -eq 0 ]; then
        PHASE=finished
    elif [ "$rc" -ne 137 ]; then
        fail "$what: create exited $rc, not killed: $(head -3 "$T/kill.err")"
        PHASE=failed
    elif ! grep -q 'backup .* started at' "$T/kill.err"; then
        PHASE=connect/start
    elif [ -n "$id" ] && [ -e "$BACKUPS/$id/manifest" ]; then
        PHASE=wal-wait
    elif [ -z "$id" ] || has_temp "$BACKUPS/$id" || [ -z "$(find "$BACKUPS/$id" -type f)" ]; then
        PHASE=walk/copy
    else
        PHASE=stop/manifest # every bundle stored, no manifest yet
    fi
    PHASES[$PHASE]=$((${PHASES[$PHASE]:-0} + 1))
    what="$what, $PHASE"
    if [ -n "$id" ] && [ "$rc" -eq 137 ]; then
        bb --config "$CONF" list --json
        assert_rc 0 "list after $what" || return 1
        if [ "$(json_eval "$T/.last.out" "(j.backups.find(b => b.id === '$id') || {}).status")" = complete ]; then
            [ -e "$BACKUPS/$id/manifest" ] || fail "$what: $id is listed complete without a manifest"
            has_temp "$BACKUPS/$id" && fail "$what: $id is listed complete with bundles still temp files"
        fi
    fi
    # The killed session's server process ends with it, and with it the backup on the server.
    for w in $(seq 1 100); do
        n=$(client_backends)
        [ "$n" = 0 ] && break
        [ "$w" = 20 ] && sql "$PORT" "select pid, application_name, state, wait_event_type,
            wait_event, backend_start, left(query, 60) from pg_stat_activity
            where backend_type = 'client backend' and pid <> pg_backend_pid()" >"$T/sessions"
        sleep 0.1
    done
    if [ "$n" != 0 ]; then
        fail "$what: $n client session(s) still on the server 10 s after the kill; 8 s before:"
        sed 's/^/      /' "$T/sessions"
        grep -F -f <(cut -d'|' -f1 "$T/sessions" | sed 's/.*/[&]/') "$PGD.log" | tail -10 | sed 's/^/      /'
    fi
    timed_create "after-$name"
    assert_rc 0 "create after $what" || return 1
    grep -q -E '^[0-9]{8}T[0-9]{6}Z$' "$T/.last.out" || fail "create after $what printed no backup id"
}
# TRIALS kills, the i-th at a moment in the i-th TRIALS-th of the span: 1.2 times the recent
# duration of an uninterrupted create, but no longer than the earliest moment at which a create
# had already finished (kills after the end are not kills; such a trial is repeated).
kills=0 fin_min=1000000 i=0
while [ "$kills" -lt "$TRIALS" ] && [ "$i" -lt $((TRIALS + 10)) ]; do
    span=$(($(recent_dur) * 12 / 10))
    [ "$span" -le "$fin_min" ] || span=$fin_min
    at=$(((kills * span + RANDOM % span) / TRIALS))
    kill_trial "kill-$i" "$at" || break
    i=$((i + 1))
    if [ "$PHASE" = finished ]; then
        [ "$at" -ge "$fin_min" ] || fin_min=$at
    else
        kills=$((kills + 1))
    fi
done
summary=""
for p in connect/start walk/copy stop/manifest wal-wait finished failed; do
    summary+=" $p=${PHASES[$p]:-0}"
done
note "$i trials:$summary; uninterrupted creates took $(printf '%s\n' "${DURS[@]}" | sort -n |
    sed -n '1p;$p' | paste -sd-) ms"
# The kills must have covered the run: before the backup started on the server, while bundles
# were written, and in the wait for the WAL. On a busy machine the moments can miss a short
# phase: then up to three more kills aim at it by what the run logs.
for i in 1 2 3; do
    [ "${PHASES[connect/start]:-0}" -gt 0 ] && break
    kill_trial "kill-start-$i" 0 || break
done
for i in 1 2 3; do
    [ "${PHASES[walk/copy]:-0}" -gt 0 ] && break
    kill_trial "kill-copy-$i" $((RANDOM % 20)) "started at" || break
done
for i in 1 2 3; do
    [ "${PHASES[wal-wait]:-0}" -gt 0 ] && break
    touch "$T/slow-archive"
    kill_trial "kill-wal-$i" $((RANDOM % 200)) "waiting for its WAL" || break
    rm -f "$T/slow-archive"
done
rm -f "$T/slow-archive"
[ "${PHASES[connect/start]:-0}" -gt 0 ] || fail "no kill landed before the backup started on the server"
[ "${PHASES[walk/copy]:-0}" -gt 0 ] || fail "no kill landed while bundles were being written"
[ "${PHASES[wal-wait]:-0}" -gt 0 ] || fail "no kill landed after the manifest was stored"
[ "$summary" = "$(for p in connect/start walk/copy stop/manifest wal-wait finished failed; do
    printf ' %s=%s' "$p" "${PHASES[$p]:-0}"; done)" ] ||
    note "after aimed kills:$(for p in connect/start walk/copy stop/manifest wal-wait finished failed; do
        printf ' %s=%s' "$p" "${PHASES[$p]:-0}"; done)"

# A run killed between the renames of its bundles leaves a later bundle stored and bundle 0 not
# (the kills above hit that window only by chance). Plant that under the ids of this second and
# the next two: the next create must take another id, not fail on "already exists" nor delete
# the dead run's objects as its own.
CASE="a dead run's bundle under the next id"
src=$(find "$BACKUPS" -path '*/data/000001' -print -quit)
[ -n "$src" ] || die "no bundle 000001 to copy"
now=$(date +%s)
planted=()
for s in 0 1 2; do
    pl=$(date -u -d "@$((now + s))" +%Y%m%dT%H%M%SZ)
    [ -e "$BACKUPS/$pl" ] && continue
    install -d -o postgres -g postgres -m 700 "$BACKUPS/$pl" "$BACKUPS/$pl/data"
    install -o postgres -g postgres -m 600 "$src" "$BACKUPS/$pl/data/000001"
    planted+=("$pl")
done
bb --config "$CONF" create --fast --label after-planted
assert_rc 0 "create with a dead run's bundle 000001 under the ids of this second and the next two"
new_id=$(cat "$T/.last.out")
for p in "${planted[@]}"; do
    [ "$new_id" = "$p" ] && fail "create took id $p, which holds a dead run's bundle"
    cmp -s "$src" "$BACKUPS/$p/data/000001" || fail "the dead run's bundle of $p was changed or removed"
done

CASE="after the kills"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || die "archiving did not catch up"
bb --config "$CONF" verify --all
assert_rc 0 "verify --all after $TRIALS kills"
bb_list "$CONF" || die "list failed"
json_eval "$T/list.json" "j.backups.map(b => b.id + ' ' + b.status).join('\n')" >"$T/status.before"
grep ' complete$' "$T/status.before" >"$T/complete"
grep -v ' complete$' "$T/status.before" >"$T/not_complete"
note "$(wc -l <"$T/status.before") backups listed, $(wc -l <"$T/complete") complete;" \
    "not complete: $(cut -d' ' -f2 "$T/not_complete" | sort | uniq -c | tr -s ' \n' ' ')"
[ "$(wc -l <"$T/complete")" -ge $((TRIALS + 4)) ] ||
    fail "only $(wc -l <"$T/complete") complete backups (expected at least $((TRIALS + 4)))"
for p in "${planted[@]}"; do
    grep -q "^$p running$" "$T/status.before" || fail "the planted dead run $p is not listed as running"
done

# plan_of FILE ID: "action reasons" of backup ID in a wal-prune --json document.
plan_of() {
    json_eval "$1" "(b => b ? b.action + ' ' + b.reasons.join(',') : 'absent')(j.backups.find(b => b.id === '$2'))"
}

CASE="wal-prune now"
# retain_full keeps every complete backup; the age rule decides about the others: today they
# may still be written to (a live backup writes every few seconds), so they stay.
run runuser -u postgres -- "$WAL_PRUNE" --config "$CONF" --retain-full 1000 --dry-run --json
assert_rc 0 "wal-prune --dry-run"
cp "$T/.last.out" "$T/plan.now.json"
while read -r id st; do
    assert_eq "$(plan_of "$T/plan.now.json" "$id")" "keep recent" "plan for $id ($st) today"
done <"$T/not_complete"

CASE="wal-prune two days later"
if command -v faketime >/dev/null; then
    # Only the clock moves: NO_FAKE_STAT keeps the files' real modification times. In a
    # sanitizer build, ASan must accept faketime's library preloaded before its runtime.
    run runuser -u postgres -- env NO_FAKE_STAT=1 \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" faketime -f '+2d' \
        "$WAL_PRUNE" --config "$CONF" --retain-full 1000 --json
    assert_rc 0 "wal-prune with the clock two days ahead"
    cp "$T/.last.out" "$T/plan.later.json"
    while read -r id st; do
        assert_eq "$(plan_of "$T/plan.later.json" "$id")" "delete abandoned" "plan for $id ($st) two days later"
    done <"$T/not_complete"
    bb_list "$CONF" || die "list failed"
    json_eval "$T/list.json" "j.backups.map(b => b.id + ' ' + b.status).join('\n')" >"$T/status.after"
    assert_eq "$(cat "$T/status.after")" "$(cat "$T/complete")" \
        "backups listed after the prune (every complete one, nothing else)"
    # A run killed before any bundle was renamed left only temp files, which the prune removed;
    # their empty directories stay (the catalog never sees them). Nothing else may stay.
    LC_ALL=C comm -23 <(backup_dirs) <(cut -d' ' -f1 "$T/complete") >"$T/dirs.left"
    while read -r d; do
        [ -z "$(find "$BACKUPS/$d" -type f)" ] ||
            fail "backup directory $d, not a complete backup, still holds files after the prune:" \
                "$(find "$BACKUPS/$d" -type f -printf '%P ')"
    done <"$T/dirs.left"
    note "$(wc -l <"$T/dirs.left") empty directories of killed runs left"
    assert_no_temp_files "$REPO_FILES" "repository after the prune"
    bb --config "$CONF" verify --all
    assert_rc 0 "verify --all after the prune"
else
    echo "skip: wal-prune of the killed backups (no faketime: scripts/install-deps.sh installs it)"
fi
assert_repo_clean "repository at the end"
finish
