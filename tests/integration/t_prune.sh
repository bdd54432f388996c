#!/usr/bin/env bash
# t_prune: wal-prune against a real PostgreSQL 15 archiving into a local repository.
#   - no policy: refused with one clear line, nothing touched;
#   - three backups with WAL between them, retain_full = 2: --dry-run (text and JSON) names
#     exactly what goes and changes nothing; the real run deletes the oldest backup and exactly
#     the WAL files before the second backup's start segment (its .backup file included), prints
#     one line per deleted backup plus a summary, leaves no empty directory; verify --all passes
#     and a restore of each kept backup to the end of the archive has every row;
#   - retain_time (no retain_full) keeps the backup that ended just before the window opened,
#     deletes the one before it;
#   - pins: a pinned backup survives a policy that would delete it; list shows the pin;
#   - a timeline whose history file is missing or damaged (finding 1 of the safety review):
#     exit 1 with one line naming it, nothing deleted, --dry-run and --json say the same;
#   - a prune that fails part-way (a backup directory it cannot write): the summary counts the
#     backups that are left; restore --backup of the half-deleted one says it is being deleted;
#   - --dry-run with a stale temp file present deletes nothing (the temp file stays);
#   - SIGKILL at many points of a prune that deletes three backups and their WAL: after every
#     kill no backup is listed complete that misses anything (verify --all passes), and the next
#     run finishes the job.
. "$(dirname "$0")/lib.sh"
setup_tmp

WAL_PRUNE=$BIN_DIR/wal-prune
[ -x "$WAL_PRUNE" ] || die "no wal-prune in $BIN_DIR"
ROWS=1000
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
WALDIR=$REPO_FILES/main/wal

# wp ARGS...: wal-prune --config CONF ARGS as postgres (as cron or systemd would run it).
wp() { run runuser -u postgres -- "$WAL_PRUNE" --config "$CONF" "$@"; }

insert_batch() { # BATCH
    sql "$PORT" "insert into t select g, $1 from generate_series(1, $ROWS) g" ||
        die "insert of batch $1 failed"
}
# wal_files: the names of every object under main/wal, sorted.
wal_files() { find "$WALDIR" -type f -printf '%f\n' | LC_ALL=C sort; }
# start_seg ID: the start segment number of a backup (from $T/list.json).
start_seg() { seg_num "$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$1').wal_start")" 1; }
# below SEGNO: the WAL file names (of wal_files) that belong to segments below SEGNO.
below() {
    local n
    while read -r n; do
        case "$n" in *.history) continue ;; esac
        [ "$(seg_num "$n" 1)" -lt "$1" ] && echo "$n"
    done
}
# restore_rows ID NAME: restores backup ID to the end of the archive, starts it; sets GOT to
# the number of rows of batches 1..4.
restore_rows() {
    local dir=$T/r_$2
    GOT=none
    bb_restore "$CONF" "$dir" --backup "$1" || return 1
    start_restored "$dir"
    pg_wait_promoted "$RPORT" "$dir" || return 1
    GOT=$(sql "$RPORT" "select count(*) from t where batch between 1 and 4")
    pg_stop "$dir"
}

CASE="primary and three backups"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
sql "$PORT" "create table t (id int, batch int not null)" || die "create table failed"
insert_batch 1
bb_create "$CONF" --label one
ID1=$BACKUP_ID
more_wal 4
insert_batch 2
bb_create "$CONF" --label two
ID2=$BACKUP_ID
more_wal 4
insert_batch 3
bb_create "$CONF" --label three
ID3=$BACKUP_ID
more_wal 3
insert_batch 4
more_wal 1
bb_list "$CONF" || die "list failed"
S2=$(start_seg "$ID2")
wal_files >"$T/wal.before"
below "$S2" <"$T/wal.before" >"$T/wal.expect_gone"
note "backups $ID1 $ID2 $ID3; ID2 starts at segment $S2; $(wc -l <"$T/wal.before") WAL files," \
    "$(wc -l <"$T/wal.expect_gone") of them before it"
grep -q '\.backup$' "$T/wal.expect_gone" || fail "no .backup file before the second backup (test set-up)"

CASE="no retention policy"
STATE=$(repo_state "$REPO_FILES")
wp
assert_rc 1 "wal-prune without retain_full or retain_time"
assert_err_one_line "the refusal"
assert_err_contains "retain_full" "the refusal"
assert_eq "$(repo_state "$REPO_FILES")" "$STATE" "repository after the refusal"

CASE="--dry-run, retain_full = 2"
wp --retain-full 2 --dry-run
assert_rc 0 "wal-prune --dry-run"
grep -q "^would delete backup $ID1 " "$T/.last.out" || fail_cmd "the dry run does not name $ID1"
grep -q -E "^would delete backup ($ID2|$ID3) " "$T/.last.out" && fail "the dry run would delete a kept backup"
grep -q "^would keep backup $ID2 " "$T/.last.out" || fail "the dry run does not say $ID2 is kept"
grep -q "^summary: would delete 1 backup(s)" "$T/.last.out" || fail "no dry-run summary: $(cat "$T/.last.out")"
wp --retain-full 2 --dry-run --json
assert_rc 0 "wal-prune --dry-run --json"
cp "$T/.last.out" "$T/plan.json"
assert_eq "$(json_eval "$T/plan.json" "j.backups.filter(b => b.action === 'delete').map(b => b.id).join(',')")" \
    "$ID1" "backups the JSON plan deletes"
assert_eq "$(json_eval "$T/plan.json" "j.backups.find(b => b.id === '$ID2').reasons.join(',')")" \
    "retain_full" "reasons for keeping $ID2"
json_eval "$T/plan.json" "j.wal.delete.join('\n')" | LC_ALL=C sort >"$T/wal.plan"
assert_eq "$(cat "$T/wal.plan")" "$(cat "$T/wal.expect_gone")" "WAL files in the JSON plan"
assert_eq "$(json_eval "$T/plan.json" "String(j.dry_run)")" true "dry_run in the JSON"
assert_eq "$(repo_state "$REPO_FILES")" "$STATE" "repository after the dry runs"

CASE="retain_full = 2"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_full = 2"
# temp files of killed uploads: one two days old (goes), one fresh (may be a live upload: stays)
mkdir -p "$WALDIR/0000000100000000" && chown postgres: "$WALDIR/0000000100000000"
OLD_TMP=$WALDIR/0000000100000000/.walsafe-tmp.0000000100000000000000FF.4242.0123456789ab
NEW_TMP=$WALDIR/0000000100000000/.walsafe-tmp.0000000100000000000000FE.4243.0123456789ab
for f in "$OLD_TMP" "$NEW_TMP"; do
    head -c 1000 /dev/zero >"$f" && chown postgres: "$f" && chmod 600 "$f"
done
touch -d '2 days ago' "$OLD_TMP"
STATE=$(repo_state "$REPO_FILES")
wp --dry-run
assert_rc 0 "wal-prune --dry-run with a stale temp file"
[ -f "$OLD_TMP" ] || fail "the dry run removed a stale temp file"
grep -q "^summary: would delete 1 backup(s) .* and 1 temp file(s) of killed uploads" "$T/.last.out" ||
    fail "the dry run does not count the stale temp file: $(tail -1 "$T/.last.out")"
assert_eq "$(repo_state "$REPO_FILES")" "$STATE" "repository after a dry run with temp files"
wp
assert_rc 0 "wal-prune"
assert_err_empty "wal-prune"
assert_absent "$OLD_TMP" "a temp file two days old"
[ -f "$NEW_TMP" ] || fail "a fresh temp file was removed"
rm -f "$NEW_TMP"
assert_eq "$(grep -c . "$T/.last.out")" 2 "lines printed without a terminal (one per backup, a summary)"
grep -q "^deleted backup $ID1 (complete, started .*): older than the 2 newest complete full backups" \
    "$T/.last.out" || fail_cmd "no line for the deleted backup: $(cat "$T/.last.out")"
grep -q -E "^summary: deleted 1 backup\(s\) \([0-9.]+ [kMG]?B\), $(wc -l <"$T/wal.expect_gone") WAL file\(s\) and 1 temp file\(s\) of killed uploads .*freed" \
    "$T/.last.out" || fail "unexpected summary: $(tail -1 "$T/.last.out")"
wal_files >"$T/wal.after"
LC_ALL=C comm -23 "$T/wal.before" "$T/wal.after" >"$T/wal.gone"
assert_eq "$(cat "$T/wal.gone")" "$(cat "$T/wal.expect_gone")" "the WAL files that are gone"
LC_ALL=C comm -13 "$T/wal.before" "$T/wal.after" | grep -q . && fail "WAL files appeared during the prune"
assert_absent "$REPO_FILES/main/backup/$ID1" "the deleted backup's directory"
if bb_list "$CONF"; then
    assert_eq "$(backup_status "$ID1")" absent "status of $ID1"
    assert_eq "$(backup_status "$ID2")" complete "status of $ID2"
    assert_eq "$(backup_status "$ID3")" complete "status of $ID3"
fi
bb --config "$CONF" verify --all
assert_rc 0 "verify --all after the prune"
assert_repo_clean "repository after the prune"
wp
assert_rc 0 "a second wal-prune"
grep -q "^summary: deleted 0 backup(s) (0 B), 0 WAL file(s)" "$T/.last.out" ||
    fail "the second run did something: $(cat "$T/.last.out")"

CASE="restore each kept backup to the end of the archive"
restore_rows "$ID2" two
assert_eq "$GOT" $((4 * ROWS)) "rows restored from $ID2"
restore_rows "$ID3" three
assert_eq "$GOT" $((4 * ROWS)) "rows restored from $ID3"

CASE="retain_time keeps the backup just before the window"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
bb_list "$CONF" || die "list failed"
STOP3=$(date -u -d "$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID3').stop_time")" +%s)
sleep 4
insert_batch 5
bb_create "$CONF" --label four
ID4=$BACKUP_ID
more_wal 2
bb_list "$CONF" || die "list failed"
S3=$(start_seg "$ID3")
wal_files >"$T/wal.before"
below "$S3" <"$T/wal.before" >"$T/wal.expect_gone"
# The window opens a second after ID3 ended (and at least 3 s before ID4 ended).
WINDOW=$(($(date +%s) - STOP3 - 1))
wp --retain-time "${WINDOW}s" --json
assert_rc 0 "wal-prune --retain-time ${WINDOW}s"
cp "$T/.last.out" "$T/result.json"
assert_eq "$(json_eval "$T/result.json" "j.backups.filter(b => b.deleted).map(b => b.id).join(',')")" \
    "$ID2" "backups deleted by retain_time"
assert_eq "$(json_eval "$T/result.json" "j.backups.find(b => b.id === '$ID3').reasons.join(',')")" \
    "retain_time_base" "why $ID3 is kept"
assert_eq "$(json_eval "$T/result.json" "j.backups.find(b => b.id === '$ID4').reasons.join(',')")" \
    "newest,retain_time" "why $ID4 is kept"
assert_eq "$(json_eval "$T/result.json" "String(j.error)")" null "error in the JSON result"
wal_files >"$T/wal.after"
LC_ALL=C comm -23 "$T/wal.before" "$T/wal.after" >"$T/wal.gone"
assert_eq "$(cat "$T/wal.gone")" "$(cat "$T/wal.expect_gone")" "the WAL files that are gone"

CASE="pin"
bb --config "$CONF" keep "$ID3"
assert_rc 0 "basebackup keep $ID3"
bb_list "$CONF" && assert_eq "$(json_eval "$T/list.json" "String(j.backups.find(b => b.id === '$ID3').pinned)")" \
    true "pinned in list --json"
bb --config "$CONF" list
grep -E "^$ID3 +complete +full +- +yes " "$T/.last.out" >/dev/null || fail_cmd "the text list does not show the pin"
wp --retain-full 1
assert_rc 0 "wal-prune --retain-full 1 with a pin"
bb_list "$CONF" && assert_eq "$(backup_status "$ID3")" complete "the pinned backup"
bb --config "$CONF" keep --unset "$ID3"
assert_rc 0 "basebackup keep --unset $ID3"
bb_list "$CONF" && assert_eq "$(json_eval "$T/list.json" "String(j.backups.find(b => b.id === '$ID3').pinned)")" \
    false "pinned after --unset"

CASE="a timeline whose history cannot be read"
# WAL of timeline 2 (as a stray promoted copy would archive it) without its history file: which
# backups can restore along it is unknown, so nothing may go by retention (exit 1, one line)
TL2_DIR=$WALDIR/0000000200000000
TL2_SEG=$TL2_DIR/000000020000000000000030
mkdir -p "$TL2_DIR" && head -c 1000 /dev/zero >"$TL2_SEG" && chown -R postgres: "$TL2_DIR"
STATE=$(repo_state "$REPO_FILES")
wp --retain-full 1
assert_rc 1 "wal-prune with timeline 2's history missing"
assert_err_one_line "the refusal to delete by retention"
assert_err_contains "00000002.history: not in the repository" "the refusal"
assert_err_contains "wal-push" "the refusal"
assert_eq "$(repo_state "$REPO_FILES")" "$STATE" "repository after the held run"
grep -q "^summary: deleted 0 backup(s)" "$T/.last.out" || fail "unexpected summary: $(cat "$T/.last.out")"
# damaged (not a walsafe object): the same
head -c 100 /dev/urandom >"$WALDIR/00000002.history" && chown postgres: "$WALDIR/00000002.history"
STATE=$(repo_state "$REPO_FILES")
wp --retain-full 1 --dry-run
assert_rc 1 "wal-prune --dry-run with timeline 2's history damaged"
assert_err_one_line "the refusal (dry run)"
assert_err_contains "00000002.history" "the refusal (dry run)"
grep -q "^would keep backup $ID3 .*the policy would delete it" "$T/.last.out" ||
    fail_cmd "the dry run does not say why $ID3 stays: $(cat "$T/.last.out")"
wp --retain-full 1 --json
assert_rc 1 "wal-prune --json with timeline 2's history damaged"
cp "$T/.last.out" "$T/held.json"
assert_eq "$(json_eval "$T/held.json" "j.backups.find(b => b.id === '$ID3').reasons.join(',')")" \
    "held" "why $ID3 is kept"
assert_eq "$(json_eval "$T/held.json" "j.backups.filter(b => b.action === 'delete').length")" 0 \
    "backups the held plan deletes"
assert_eq "$(json_eval "$T/held.json" "j.wal.timelines.map(t => t.timeline + ':' + t.rule).join(',')")" \
    "1:reached,2:lineage_unknown" "timelines in the JSON"
json_eval "$T/held.json" "j.hold" | grep -q "00000002.history" || fail "no hold in the JSON"
json_eval "$T/held.json" "j.error" | grep -q "00000002.history" || fail "no error in the JSON"
assert_eq "$(repo_state "$REPO_FILES")" "$STATE" "repository after the held runs"
rm -rf "$TL2_DIR" "$WALDIR/00000002.history"

CASE="SIGKILL part-way"
insert_batch 6
more_wal 20
bb_create "$CONF" --label five
ID5=$BACKUP_ID
more_wal 20
bb_create "$CONF" --label six
ID6=$BACKUP_ID
more_wal 2

CASE="a prune that fails part-way"
# ID4's directory cannot be written: ID3 goes, ID4 fails after its tombstone; the summary
# counts the 3 backups that are left (ID4, being deleted, ID5, ID6)
MODE4=$(stat -c %a "$REPO_FILES/main/backup/$ID4")
chmod 555 "$REPO_FILES/main/backup/$ID4"
wp --retain-full 1
chmod "$MODE4" "$REPO_FILES/main/backup/$ID4"
assert_rc 1 "wal-prune with $ID4 not writable"
assert_err_contains "$ID4" "the failure"
grep -q "^deleted backup $ID3 " "$T/.last.out" || fail_cmd "no line for $ID3: $(cat "$T/.last.out")"
grep -q "^summary: deleted 1 backup(s) .*; kept 3 backup(s)" "$T/.last.out" ||
    fail "unexpected summary: $(tail -1 "$T/.last.out")"
bb_list "$CONF" && assert_eq "$(backup_status "$ID4")" deleting "status of $ID4"
bb --config "$CONF" restore --pgdata "$T/r_deleting" --backup "$ID4"
assert_rc 1 "restore --backup of a backup being deleted"
assert_err_contains "backup $ID4 is being deleted" "restore of $ID4"
grep -q "WAL file  is" "$T/.last.err" && fail "restore names an empty WAL file"
CASE="SIGKILL part-way"
bb_list "$CONF" || die "list failed"
S6=$(start_seg "$ID6")
wal_files >"$T/wal.before"
below "$S6" <"$T/wal.before" >"$T/wal.expect_gone"
NB=$(json_eval "$T/list.json" "String(j.backups.length)")
NW=$(wc -l <"$T/wal.before")
note "$NB backups, $NW WAL files; a full run deletes $((NB - 1)) backups and $(wc -l <"$T/wal.expect_gone") WAL files"
LAST=$(repo_state "$REPO_FILES")
kills=0 midway=0 finished=0
for i in $(seq 0 150); do
    # setpriv execs wal-prune itself (runuser would stay in between), so the kill reaches it
    setpriv --reuid=postgres --regid=postgres --init-groups "$WAL_PRUNE" --config "$CONF" \
        --retain-full 1 >"$T/kill.out" 2>"$T/kill.err" &
    pid=$!
    sleep "$(printf '0.%03d' $((i * 2)))"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null # no "Killed" line from the shell
    rc=$?
    if [ "$rc" -eq 0 ]; then
        finished=1
        break
    fi
    [ "$rc" -eq 137 ] || { fail "wal-prune exited $rc, not killed: $(cat "$T/kill.err")"; break; }
    kills=$((kills + 1))
    NOW_STATE=$(repo_state "$REPO_FILES")
    [ "$NOW_STATE" = "$LAST" ] && continue
    LAST=$NOW_STATE
    bb_list "$CONF" || break
    nb=$(json_eval "$T/list.json" "String(j.backups.length)")
    nw=$(wal_files | wc -l)
    if [ "$nb" -gt 1 ] || [ "$nw" -gt $((NW - $(wc -l <"$T/wal.expect_gone"))) ]; then
        midway=$((midway + 1))
    fi
    bb --config "$CONF" verify --all
    assert_rc 0 "verify --all after a kill at $((i * 2)) ms ($nb backups, $nw WAL files left)" || break
done
note "$kills kills, $midway of them part-way; a run finished: $finished"
[ "$midway" -gt 0 ] || fail "no kill landed part-way through the prune"
wp --retain-full 1
assert_rc 0 "wal-prune after the kills"
if bb_list "$CONF"; then
    assert_eq "$(json_eval "$T/list.json" "j.backups.map(b => b.id + ':' + b.status).join(',')")" \
        "$ID6:complete" "backups after the prune finished"
fi
wal_files >"$T/wal.after"
LC_ALL=C comm -23 "$T/wal.before" "$T/wal.after" >"$T/wal.gone"
assert_eq "$(cat "$T/wal.gone")" "$(cat "$T/wal.expect_gone")" "the WAL files that are gone"
assert_eq "$(find "$REPO_FILES/main/backup" -mindepth 1 -maxdepth 1 | wc -l)" 1 \
    "backup directories left"
bb --config "$CONF" verify --all
assert_rc 0 "verify --all at the end"
assert_repo_clean "repository at the end"

CASE="monitoring check (scripts/walsafe-check-backup-age.sh)"
if command -v jq >/dev/null; then
    CHECK=$T/walsafe-check-backup-age.sh
    install -m 755 "$(dirname "$0")/../../scripts/walsafe-check-backup-age.sh" "$CHECK"
    sleep 1
    run runuser -u postgres -- env WALSAFE_BIN="$BIN_DIR" "$CHECK" --config "$CONF"
    assert_rc 0 "the check with a fresh backup"
    # (minutes, not 0: on a loaded machine the cases above can take more than one)
    grep -Eq "^OK: the newest complete backup, $ID6, ended 0 h [0-9]+ min ago$" "$T/.last.out" ||
        fail_cmd "unexpected check output: $(cat "$T/.last.out")"
    run runuser -u postgres -- env WALSAFE_BIN="$BIN_DIR" "$CHECK" --config "$CONF" --max-age 0
    assert_rc 2 "the check with --max-age 0"
    grep -q "^CRITICAL: the newest complete backup, $ID6, ended" "$T/.last.out" ||
        fail_cmd "unexpected check output: $(cat "$T/.last.out")"
    # warnings on basebackup's stderr must not reach jq
    mkdir -p "$T/warnbin"
    printf '#!/bin/sh\necho "basebackup: WARNING: a warning" >&2\nexec "%s/basebackup" "$@"\n' \
        "$BIN_DIR" >"$T/warnbin/basebackup"
    chmod 755 "$T/warnbin" "$T/warnbin/basebackup"
    run runuser -u postgres -- env WALSAFE_BIN="$T/warnbin" "$CHECK" --config "$CONF"
    assert_rc 0 "the check when basebackup list warns"
    grep -q "^OK: the newest complete backup, $ID6, ended" "$T/.last.out" ||
        fail_cmd "unexpected check output with a warning: $(cat "$T/.last.out")"
else
    echo "skip: monitoring check (no jq)"
fi
finish
