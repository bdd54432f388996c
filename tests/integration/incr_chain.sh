# incr_chain.sh - the body of t_incr_chain.sh, t_incr_chain_s3.sh and t_incr_chain_sftp.sh
# (sourced with REPO_KIND local, s3 or sftp; not a test by itself): a chain of incremental
# backups on a real PostgreSQL 15 under pgbench, and the rules that keep a chain whole
# (issue 17 items 4, 6 and 8; docs/design/incremental.md).
#   chain     a full backup, then five `create --type incr`, pgbench -t between them; before each
#             one a snapshot of the pgbench tables (nothing writes while it is taken, which is
#             checked); list --json gives each its type and its reference (the one before), and
#             stored bytes under half the full backup's
#   restore   each incremental restored (--target-immediate: recovery to its end) into a new
#             directory, started: its tables equal the snapshot taken at its moment
#   verify    verify of the newest link and verify --all exit 0; a diff backup refers to the full
#   prune     with a second chain (full + incr): --retain-full 2 keeps everything (it counts full
#             backups); --retain-full 1 --dry-run plans to delete the whole first chain; with the
#             third incremental pinned, the dry run keeps it and the links below it, saying
#             "kept: referenced by <ID>", and the prune deletes only the links above it and the
#             diff; verify --all then passes
#   broken    the first incremental deleted from the repository: list shows the links above it
#             incomplete, restore of the pinned one fails naming it (no recovery.signal), and
#             verify fails naming it
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_tmp

WAL_PRUNE=$BIN_DIR/wal-prune
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
BACKUPS=$REPO_FILES/main/backup

CASE="primary"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "parallel = 2"
# fsync off: a throwaway cluster (as its restored copies)
sql "$PORT" "alter system set fsync = off" && sql "$PORT" "select pg_reload_conf()" >/dev/null ||
    die "fsync off"
pgbench_run "$PORT" -i -q -s 1 || die "pgbench -i failed"

CASE="chain"
bb_create "$CONF" --type full --label chain-full
FULL=$BACKUP_ID
IDS=() SUMS=()
prev=$FULL
for i in 1 2 3 4 5; do
    pgbench_run "$PORT" -n -c 2 -t $((10 * i)) || die "pgbench failed"
    SUMS[i]=$(pgbench_sums "$PORT") || die "checksums failed"
    bb_create "$CONF" --type incr --label "chain-$i"
    IDS[i]=$BACKUP_ID
    [ "$(pgbench_sums "$PORT")" = "${SUMS[i]}" ] || die "the tables changed while ${IDS[i]} was taken"
    if bb_list "$CONF"; then
        assert_eq "$(backup_field "${IDS[i]}" status)" complete "status of incremental $i"
        assert_eq "$(backup_field "${IDS[i]}" type)" incr "type of incremental $i"
        assert_eq "$(backup_field "${IDS[i]}" reference)" "$prev" "reference of incremental $i"
        # block level: a few hundred pgbench transactions change a small part of the pages
        full_bytes=$(backup_field "$FULL" stored_bytes) incr_bytes=$(backup_field "${IDS[i]}" stored_bytes)
        if ! [[ $incr_bytes =~ ^[0-9]+$ && $full_bytes =~ ^[0-9]+$ ]] ||
            [ $((incr_bytes * 2)) -ge "$full_bytes" ]; then
            fail "incremental $i stores $incr_bytes bytes, not under half the full backup's $full_bytes"
        fi
        note "incremental $i: $incr_bytes bytes stored (the full backup: $full_bytes)"
    fi
    prev=${IDS[i]}
done
assert_eq "$(printf '%s\n' "${SUMS[@]}" | sort -u | wc -l)" 5 "distinct snapshots"
assert_eq "$(backup_field "$FULL" type)" full "type of the full backup"

for i in 1 2 3 4 5; do
    CASE="restore of incremental $i"
    R=$T/r_$i
    bb_restore "$CONF" "$R" --backup "${IDS[i]}" --target-immediate --target-action promote || continue
    assert_eq "$(backup_label_of "$R")" "chain-$i" "backup_label of the restored copy"
    start_restored "$R" "fsync = off"
    if pg_wait_promoted "$RPORT" "$R"; then
        assert_eq "$(pgbench_sums "$RPORT")" "${SUMS[i]}" "pgbench tables against the snapshot of incremental $i"
    fi
    pg_stop "$R"
    rm -rf "$R"
done

CASE="verify"
bb --config "$CONF" verify "${IDS[5]}"
assert_rc 0 "verify of the fifth incremental"
bb --config "$CONF" verify --all
assert_rc 0 "verify --all"

CASE="diff"
pgbench_run "$PORT" -n -c 2 -t 50 || die "pgbench failed"
bb_create "$CONF" --type diff --label chain-diff
DIFF=$BACKUP_ID
if bb_list "$CONF"; then
    assert_eq "$(backup_field "$DIFF" type)" diff "type of the diff backup"
    assert_eq "$(backup_field "$DIFF" reference)" "$FULL" "reference of the diff backup"
fi

CASE="prune"
pgbench_run "$PORT" -n -c 2 -t 50 || die "pgbench failed"
bb_create "$CONF" --type full --label second-full
FULL2=$BACKUP_ID
pgbench_run "$PORT" -n -c 2 -t 50 || die "pgbench failed"
bb_create "$CONF" --type incr --label second-incr
INCR2=$BACKUP_ID
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || die "archiving did not catch up"
pg_stop "$PGD"
ALL=("$FULL" "${IDS[@]}" "$DIFF" "$FULL2" "$INCR2")

# plan FILE ID: the action wal-prune --json planned for backup ID.
plan() { json_eval "$1" "(j.backups.find(b => b.id === '$2') || {action: 'absent'}).action"; }
prune() { run runuser -u postgres -- "$WAL_PRUNE" --config "$CONF" "$@"; }

prune --retain-full 2 --dry-run --json
assert_rc 0 "wal-prune --retain-full 2 --dry-run"
cp "$T/.last.out" "$T/plan2.json"
for id in "${ALL[@]}"; do
    assert_eq "$(plan "$T/plan2.json" "$id")" keep "--retain-full 2 (two full backups): plan for $id"
done
prune --retain-full 1 --dry-run --json
assert_rc 0 "wal-prune --retain-full 1 --dry-run"
cp "$T/.last.out" "$T/plan1.json"
for id in "$FULL" "${IDS[@]}" "$DIFF"; do
    assert_eq "$(plan "$T/plan1.json" "$id")" delete "--retain-full 1: plan for $id (first chain)"
done
for id in "$FULL2" "$INCR2"; do
    assert_eq "$(plan "$T/plan1.json" "$id")" keep "--retain-full 1: plan for $id (second chain)"
done

bb --config "$CONF" keep "${IDS[3]}"
assert_rc 0 "keep ${IDS[3]}"
prune --retain-full 1 --dry-run
assert_rc 0 "wal-prune --retain-full 1 --dry-run with incremental 3 pinned"
cat "$T/.last.out" "$T/.last.err" >"$T/dry.txt"
for pair in "${IDS[2]} ${IDS[3]}" "${IDS[1]} ${IDS[2]}" "$FULL ${IDS[1]}"; do
    grep -q -E "${pair% *}.*kept: referenced by ${pair#* }" "$T/dry.txt" ||
        fail "the dry run does not say ${pair% *} is \"kept: referenced by ${pair#* }\":" \
            "$(grep "${pair% *}" "$T/dry.txt")"
done
prune --retain-full 1 --dry-run --json
cp "$T/.last.out" "$T/plan3.json"
KEPT=("$FULL" "${IDS[1]}" "${IDS[2]}" "${IDS[3]}" "$FULL2" "$INCR2")
GONE=("${IDS[4]}" "${IDS[5]}" "$DIFF")
for id in "${KEPT[@]}"; do assert_eq "$(plan "$T/plan3.json" "$id")" keep "pinned chain: plan for $id"; done
for id in "${GONE[@]}"; do assert_eq "$(plan "$T/plan3.json" "$id")" delete "pinned chain: plan for $id"; done
prune --retain-full 1
assert_rc 0 "wal-prune --retain-full 1 with incremental 3 pinned"
if bb_list "$CONF"; then
    for id in "${KEPT[@]}"; do assert_eq "$(backup_status "$id")" complete "after the prune: $id"; done
    for id in "${GONE[@]}"; do assert_eq "$(backup_status "$id")" absent "after the prune: $id"; done
fi
bb --config "$CONF" verify --all
assert_rc 0 "verify --all after the prune"

CASE="broken chain"
[ -d "$BACKUPS/${IDS[1]}" ] || die "no directory $BACKUPS/${IDS[1]}"
rm -rf "${BACKUPS:?}/${IDS[1]}"
if bb_list "$CONF"; then
    assert_eq "$(backup_status "$FULL")" complete "the full backup below the missing link"
    for i in 2 3; do
        assert_eq "$(backup_status "${IDS[i]}")" incomplete "incremental $i above the missing link"
    done
    assert_eq "$(backup_status "$INCR2")" complete "the second chain"
fi
bb --config "$CONF" list
assert_rc 0 "list (text)"
grep "${IDS[3]}" "$T/.last.out" | grep -q incomplete ||
    fail "list does not show ${IDS[3]} incomplete: $(grep "${IDS[3]}" "$T/.last.out")"
bb --config "$CONF" restore --pgdata "$T/r_broken" --backup "${IDS[3]}"
assert_rc 1 "restore of ${IDS[3]}, whose chain misses ${IDS[1]}"
assert_err_contains "${IDS[1]}" "restore of ${IDS[3]}"
assert_err_one_line "restore of ${IDS[3]}"
assert_absent "$T/r_broken/recovery.signal" "restore of a broken chain"
bb --config "$CONF" verify "${IDS[3]}"
assert_rc 1 "verify of ${IDS[3]}, whose chain misses ${IDS[1]}"
assert_err_contains "${IDS[1]}" "verify of ${IDS[3]}"
assert_repo_clean "repository"
finish
