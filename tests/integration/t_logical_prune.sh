#!/usr/bin/env bash
# t_logical_prune: wal-prune's retention of logical backups (retain_logical, retain_logical_time),
# apart from the physical policies. One logical backup is made now with logicalbackup create and
# copied to ids 10, 5 and 2 days old (tests/tools/logicalbackdate: what create would have written
# then); a base backup and its WAL stand beside them.
#   - --dry-run by count: names what would go and what stays, with reasons, and changes nothing;
#     --json has them under "logical" (the physical part empty: no physical policy is set);
#   - a pinned old backup (logicalbackup keep) survives retention by time; by time (3d) the one
#     outside the window goes, the base backup and every WAL file stay;
#   - by count (1) after the pin is removed: all but the newest go, their objects with them;
#   - with retain_full set too, one run plans both (JSON: backups and logical).
. "$(dirname "$0")/lib.sh"
setup_tmp

LB=$BIN_DIR/logicalbackup
WAL_PRUNE=$BIN_DIR/wal-prune
BACKDATE=${BACKDATE:-$BIN_DIR/../tests/tools/logicalbackdate}
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
sql "$PORT" "create database shop" || die "create database failed"
pg_psql "$PORT" -d shop -c "create table t as select g as id, md5(g::text) as pad from generate_series(1, 2000) g" ||
    die "create table failed"

lb() { run runuser -u postgres -- "$LB" --config "$CONF" "$@"; }
wp() { run runuser -u postgres -- "$WAL_PRUNE" --config "$CONF" "$@"; }
logical_ids() { # complete logical backups, oldest first, from list --json
    lb list --json >&2 # (IT_VERBOSE: the command line not in the result)
    assert_rc 0 "logicalbackup list --json" || return
    cp "$T/.last.out" "$T/llist.json"
    json_eval "$T/llist.json" "j.logical_backups.filter(b => b.status === 'complete').map(b => b.id).join(' ')"
}
WALDIR=$REPO_FILES/main/wal
wal_files() { find "$WALDIR" -type f -printf '%f\n' | LC_ALL=C sort; }

bb_create "$CONF"
PHYS=$BACKUP_ID
lb create --db shop --label now
assert_rc 0 "logicalbackup create" || die "logicalbackup create failed: $(last_err)"
L0=$(sed -n 's/^logical backup \([0-9TZ]*\) complete.*/\1/p' "$T/.last.out")
[[ "$L0" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || die "create printed no id: $(cat "$T/.last.out")"
now=$(date -u +%s)
days_ago() { date -u -d "@$((now - $1 * 86400))" +%Y%m%dT%H%M%SZ; }
L10=$(days_ago 10)
L5=$(days_ago 5)
L2=$(days_ago 2)
for id in "$L10" "$L5" "$L2"; do
    run runuser -u postgres -- "$BACKDATE" "$CONF" "$L0" "$id"
    assert_rc 0 "logicalbackdate $id" || die "could not backdate: $(last_err)"
done
assert_eq "$(logical_ids)" "$L10 $L5 $L2 $L0" "four complete logical backups"
wal_files >"$T/wal.before"

CASE="--dry-run, retain_logical = 2"
STATE=$(repo_state "$REPO_FILES")
wp --retain-logical 2 --dry-run
assert_rc 0 "wal-prune --retain-logical 2 --dry-run"
for id in "$L10" "$L5"; do
    grep -q "^would delete logical backup $id (complete, .*): kept by no policy$" "$T/.last.out" ||
        fail_cmd "the dry run does not name $id"
done
grep -q "^would keep logical backup $L2 .*retain_logical" "$T/.last.out" || fail_cmd "$L2 kept by count"
grep -q "^would keep logical backup $L0 .*newest complete" "$T/.last.out" || fail_cmd "$L0 kept as newest"
grep -q "^logical: would delete 2 logical backup(s)" "$T/.last.out" || fail_cmd "no logical summary"
# (a logical backup started in the same second as the base backup has its id: not that one)
grep -v "logical backup $PHYS" "$T/.last.out" | grep -q "backup $PHYS" &&
    fail "the base backup is part of a logical-only plan"
wp --retain-logical 2 --dry-run --json
assert_rc 0 "wal-prune --dry-run --json"
cp "$T/.last.out" "$T/plan.json"
assert_eq "$(json_eval "$T/plan.json" "j.logical.backups.filter(b => b.action === 'delete').map(b => b.id).join(' ')")" \
    "$L10 $L5" "logical backups the JSON plan deletes"
assert_eq "$(json_eval "$T/plan.json" "j.logical.backups.find(b => b.id === '$L0').reasons.join(',')")" \
    "newest,retain_logical" "reasons for $L0"
assert_eq "$(json_eval "$T/plan.json" "j.logical.retain_logical")" 2 "retain_logical in the JSON"
assert_eq "$(json_eval "$T/plan.json" "JSON.stringify([j.backups, j.wal])")" '[[],null]' "no physical part"
assert_eq "$(repo_state "$REPO_FILES")" "$STATE" "repository after the dry runs"

CASE="retain_logical_time = 3d, one pinned"
lb keep "$L10"
assert_rc 0 "logicalbackup keep $L10"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_logical_time = 3d"
wp
assert_rc 0 "wal-prune with retain_logical_time"
grep -q "^deleted logical backup $L5 " "$T/.last.out" || fail_cmd "$L5 not reported deleted"
assert_eq "$(logical_ids)" "$L10 $L2 $L0" "logical backups after retention by time"
assert_absent "$REPO_FILES/main/logical/$L5" "the objects of $L5"
bb_list "$CONF"
assert_eq "$(backup_status "$PHYS")" complete "the base backup after a logical prune"
assert_eq "$(wal_files)" "$(cat "$T/wal.before")" "WAL after a logical prune"

CASE="retain_logical = 1, pin removed"
lb keep "$L10" --unset
assert_rc 0 "logicalbackup keep --unset"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_logical = 1"
wp --json
assert_rc 0 "wal-prune --json with retain_logical = 1"
cp "$T/.last.out" "$T/run.json"
assert_eq "$(json_eval "$T/run.json" "j.logical.backups.filter(b => b.deleted).map(b => b.id).join(' ')")" \
    "$L10 $L2" "deleted in the JSON"
assert_eq "$(json_eval "$T/run.json" "j.logical.summary.backups_deleted")" 2 "summary"
assert_eq "$(logical_ids)" "$L0" "logical backups after retention by count"
for id in "$L10" "$L2"; do assert_absent "$REPO_FILES/main/logical/$id" "the objects of $id"; done

CASE="physical and logical policies in one run"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_full = 1" "retain_logical = 1"
wp --dry-run --json
assert_rc 0 "wal-prune --dry-run --json, both kinds"
cp "$T/.last.out" "$T/both.json"
assert_eq "$(json_eval "$T/both.json" "j.backups.map(b => b.id + ':' + b.action).join(' ')")" "$PHYS:keep" "physical part"
assert_eq "$(json_eval "$T/both.json" "j.logical.backups.map(b => b.id + ':' + b.action).join(' ')")" "$L0:keep" "logical part"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
wp --dry-run
assert_rc 1 "wal-prune without any policy"
assert_err_contains "retain_logical" "the refusal names the logical keys"

finish
