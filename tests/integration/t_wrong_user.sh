#!/usr/bin/env bash
# t_wrong_user: who may write a repository (README, "Running as the right user"). basebackup
# create, keep and wal-prune run as root refuse with one line naming the user to run as (the
# owner of the local repository), and check says so in a FAILED line, then skips what needs it
# without waiting for a WAL switch; a user who does not own the repository is refused the same
# way. With --allow-root, root's create leaves every file in the repository owned by that owner.
# A backup directory that postgres may not read (root's, 0700) is listed as "unreadable" with a
# warning, and list, verify --all, wal-prune (which deletes nothing it may need) and restore of
# another backup go on. list --json and wal-prune --json report the same stored size for each
# backup. A config key misspelt gets check's FAILED "configuration valid" line with a "did you
# mean".
. "$(dirname "$0")/lib.sh"
setup_tmp

KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_full = 1"
bb_create "$CONF" --label first
ID1=$BACKUP_ID

# as_root ARGS...: basebackup ARGS as root (run captures it).
as_root() { run "$BASEBACKUP" --config "$CONF" "$@"; }

CASE="root is refused"
for cmd in "create --fast" "keep $ID1"; do
    # shellcheck disable=SC2086
    as_root $cmd
    assert_rc 1 "basebackup $cmd as root"
    assert_err_one_line "basebackup $cmd as root"
    assert_err_contains "must not run as root: the repository \"$T/repo\" belongs to user \"postgres\"; run it as that user" \
        "basebackup $cmd as root"
    assert_err_contains "--allow-root" "basebackup $cmd as root"
done
run "$BIN_DIR/wal-prune" --config "$CONF"
assert_rc 1 "wal-prune as root"
assert_err_one_line "wal-prune as root"
assert_err_contains "wal-prune must not run as root" "wal-prune as root"
[ -z "$(find "$T/repo" ! -user postgres)" ] || fail "root's refused runs left files: $(find "$T/repo" ! -user postgres)"

CASE="check as root"
as_root check
assert_rc 1 "check as root"
grep -q '^FAILED  basebackup runs as the repository.s owner: basebackup must not run as root' "$T/.last.out" ||
    fail "no FAILED line for the user: $(head -3 "$T/.last.out")"
grep -qx 'SKIPPED a forced WAL switch reaches the repository (needs: basebackup runs as the repository.s owner)' "$T/.last.out" ||
    fail "the WAL switch is not skipped: $(grep 'WAL switch' "$T/.last.out")"
[ "$(grep -c '^FAILED' "$T/.last.out")" -eq 1 ] || fail "more than one FAILED line: $(grep '^FAILED' "$T/.last.out")"

CASE="another user than the repository's owner"
cp "$CONF" "$T/nobody.conf" && chown nobody: "$T/nobody.conf" && chmod 600 "$T/nobody.conf"
chmod 711 "$T" # nobody may reach its config file, not read the rest
run runuser -u nobody -- "$BASEBACKUP" --config "$T/nobody.conf" create --fast
assert_rc 1 "create as nobody"
assert_err_one_line "create as nobody"
assert_err_contains "basebackup runs as user \"nobody\", but the repository \"$T/repo\" belongs to user \"postgres\": run it as postgres" \
    "create as nobody"
chmod 700 "$T"

CASE="--allow-root"
sql "$PORT" "create table t(x int); insert into t select generate_series(1, 1000)" || die "insert failed"
as_root create --fast --allow-root --label as-root
assert_rc 0 "create --allow-root as root"
ID2=$(cat "$T/.last.out")
bad=$(find "$T/repo" \( ! -user postgres -o ! -group postgres \) -printf '%u:%g %p\n')
[ -z "$bad" ] || fail "files of root's create not owned by postgres: $(echo "$bad" | head -5)"
[ -n "$(find "$T/repo" -path "*$ID2*" -type f)" ] || fail "no file of backup $ID2 in the repository"
run "$BIN_DIR/wal-prune" --config "$CONF" --allow-root --dry-run
assert_rc 0 "wal-prune --allow-root --dry-run as root"

CASE="list --json and wal-prune --json agree on stored sizes"
bb_create "$CONF" --label third
ID3=$BACKUP_ID
bb_list "$CONF" || die "list failed"
run runuser -u postgres -- "$BIN_DIR/wal-prune" --config "$CONF" --dry-run --json
assert_rc 0 "wal-prune --dry-run --json"
cp "$T/.last.out" "$T/plan.json"
for id in "$ID1" "$ID2" "$ID3"; do
    l=$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$id').stored_bytes")
    p=$(json_eval "$T/plan.json" "j.backups.find(b => b.id === '$id').stored_bytes")
    [[ "$l" =~ ^[0-9]+$ ]] && [ "$l" -gt 0 ] || fail "list --json: stored_bytes of $id is \"$l\""
    assert_eq "$p" "$l" "wal-prune --json's stored_bytes of $id against list --json's"
done

CASE="a backup postgres may not read"
BDIR=$T/repo/main/backup/$ID2
[ -d "$BDIR" ] || die "no directory $BDIR"
chown root: "$BDIR" && chmod 700 "$BDIR"
before=$(repo_state "$T/repo/main/backup")
bb --config "$CONF" list
assert_rc 0 "list with an unreadable backup"
grep -E "^$ID2 +unreadable " "$T/.last.out" >/dev/null || fail "list does not show $ID2 as unreadable: $(grep "$ID2" "$T/.last.out")"
grep -E "^$ID3 +complete " "$T/.last.out" >/dev/null || fail "list does not show $ID3 as complete"
assert_err_contains "WARNING: backup $ID2 is unreadable" "list with an unreadable backup"
bb_list "$CONF" && assert_eq "$(backup_status "$ID2")" unreadable "list --json status of $ID2"
bb --config "$CONF" verify --all
assert_rc 1 "verify --all with an unreadable backup"
assert_err_contains "backup $ID2 is unreadable" "verify --all"
assert_err_contains "2 of 3 backup(s) and the WAL archive verified; 1 could not be read by this user" "verify --all"
run runuser -u postgres -- "$BIN_DIR/wal-prune" --config "$CONF" --retain-full 1
assert_rc 1 "wal-prune --retain-full 1 with an unreadable backup (held)"
assert_err_contains "backup $ID2 cannot be read by this user" "wal-prune with an unreadable backup"
# every backup stays (what $ID2 needs is unknown); WAL older than the oldest backup may go
assert_eq "$(repo_state "$T/repo/main/backup")" "$before" "the backups after wal-prune held by an unreadable backup"
bb_restore "$CONF" "$T/r3" --backup "$ID3" && assert_eq "$(backup_label_of "$T/r3")" third "restore --backup $ID3"
grep -qx "restored backup $ID3 (stopped [0-9T:-]*Z) into $T/r3" "$T/.last.out" ||
    fail "restore's summary does not name $ID3: $(head -2 "$T/.last.out")"
grep -q "^next: /usr/lib/postgresql/15/bin/pg_ctl -D $T/r3 -l $T/r3.log start\$" "$T/.last.out" ||
    fail "restore's summary has no next command: $(cat "$T/.last.out")"
grep -q "^note:" "$T/.last.out" && fail "a note about postgresql.conf, which the backup holds"
CASE="restore as root (not refused: it runs as the target's owner)"
install -d -o postgres -g postgres -m 700 "$T/r4"
as_root restore --pgdata "$T/r4" --backup "$ID3" --target-immediate
assert_rc 0 "restore as root"
grep -q "^recovery target: the end of the backup (--target-immediate), then pause (the default" "$T/.last.out" ||
    fail "no recovery target line with the default action: $(grep target "$T/.last.out")"
grep -q "^next: runuser -u postgres -- .*pg_ctl -D $T/r4 " "$T/.last.out" ||
    fail "the next command does not run as postgres: $(grep next "$T/.last.out")"
CASE="a backup postgres may not read"
bb --config "$CONF" restore --pgdata "$T/r2" --backup "$ID2"
assert_rc 1 "restore of the unreadable backup"
assert_err_contains "backup $ID2 is unreadable" "restore of the unreadable backup"
chown -R postgres: "$BDIR"
bb --config "$CONF" verify --all
assert_rc 0 "verify --all once $ID2 is readable again (wal-prune kept all it needs)"

CASE="a misspelt configuration key"
backup_conf "$T/typo.conf" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "retain_ful = 2"
bb --config "$T/typo.conf" check
assert_rc 1 "check with a misspelt key"
grep -q "^FAILED  configuration valid: configuration file \"$T/typo.conf\" line [0-9]*: unknown configuration key \"retain_ful\" (did you mean \"retain_full\"?)" "$T/.last.out" ||
    fail "no FAILED configuration line with the hint: $(head -2 "$T/.last.out")"
grep -qx 'SKIPPED a forced WAL switch reaches the repository (needs: configuration valid)' "$T/.last.out" ||
    fail "the WAL switch is not skipped after the config error"
grep -q '^OK' "$T/.last.out" && fail "check printed OK lines without a configuration: $(grep '^OK' "$T/.last.out")"

finish
