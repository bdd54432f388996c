#!/usr/bin/env bash
# t_archive_module: PostgreSQL 15 archives through the walsafe_archive module (archive_library,
# loaded from the build by its absolute path; walsafe.config names the configuration):
#   - local drill: every archived segment comes back byte-identical through wal-fetch, the
#     configuration was loaded once for all of them, and basebackup check accepts the set-up;
#   - walsafe.config naming a missing file, then a file with an unknown key: one WARNING naming
#     the file per attempt, nothing archived; once the file is right (no reload: the module sees
#     the file change) the waiting segments are archived;
#   - then the same drill on S3 and on SFTP (walsafe.config switched by a reload), the
#     configuration loaded once per repository.
# PITR and timeline switches through the module: t_pitr_module.sh, t_timeline_module.sh.
. "$(dirname "$0")/lib.sh"
setup_tmp

ARCHIVE_VIA=module
SEG_MB=1
ROWS=3000
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
BAD=$T/bad.conf
PGD=$T/pg
make_key "$KEY"
make_repo "$T/local"
write_conf "$CONF" "repo = '$T/local'" "encrypt_key_file = '$KEY'"

CASE="setup"
archiving_cluster "$PGD" "$CONF" --wal-segsize=$SEG_MB
assert_eq "$(sql "$PORT" "show archive_library")" "$WALSAFE_MODULE" "archive_library"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"
ROUND=0

# workload N: N rounds of WAL, each ended by a switch; FIRST and LAST are the segments the first
# and the last switch completed.
workload() {
    local i
    FIRST=""
    for ((i = 0; i < $1; i++)); do
        ROUND=$((ROUND + 1))
        sql "$PORT" "insert into t select g, repeat(md5(g::text), 3)
                     from generate_series($(((ROUND - 1) * ROWS + 1)), $((ROUND * ROWS))) g" ||
            die "insert failed"
        LAST=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
        FIRST=${FIRST:-$LAST}
    done
}

# fetch_compare CONF: segments FIRST..LAST come back byte-identical through wal-fetch.
fetch_compare() {
    local n name compared=0
    for ((n = $(seg_num "$FIRST" $SEG_MB); n <= $(seg_num "$LAST" $SEG_MB); n++)); do
        name=$(seg_name 1 $n $SEG_MB)
        new_dest
        run "$WAL_FETCH" --config "$1" "$name" "$DEST"
        assert_rc 0 "wal-fetch $name" || continue
        cmp -s "$DEST" "$PGD/pg_wal/$name" || fail "fetched $name differs from pg_wal/$name"
        compared=$((compared + 1))
    done
    note "$compared segments fetched and compared"
    [ "$compared" -ge 3 ] || fail "only $compared segments compared"
}

# loads_of FILE: how many times the module logged loading FILE.
loads_of() {
    grep -c -F "walsafe_archive: configuration loaded from \"$1\"" "$PGD.log"
}

# use_config FILE: walsafe.config = FILE, reloaded; the archiver has taken it once its backend
# reports it (the archiver handles the reload before its next file; a second's pause for the
# postmaster to pass the signal on).
use_config() {
    sql "$PORT" "alter system set walsafe.config = '$1'" >/dev/null &&
        sql "$PORT" "select pg_reload_conf()" >/dev/null || die "could not set walsafe.config"
    sleep 1
}

CASE="local drill"
workload 4
wait_archived "$PORT" "$LAST" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "failed_count"
fetch_compare "$CONF"
assert_eq "$(loads_of "$CONF")" 1 "configuration loads for $(sql "$PORT" \
    "select archived_count from pg_stat_archiver") archived files"
if grep -q "wal-push" "$PGD.log"; then fail "wal-push ran: $(grep -m1 wal-push "$PGD.log")"; fi

CASE="basebackup check"
backup_conf "$T/check.conf" "$PGD" "$PORT" "repo = '$T/local'" "encrypt_key_file = '$KEY'"
bb --config "$T/check.conf" check
assert_rc 0 "basebackup check with the module"
grep -q "^OK      archive_library is walsafe_archive: archive_library = '$WALSAFE_MODULE'" \
    "$T/.last.out" || fail "no OK line for archive_library: $(cat "$T/.last.out")"
grep -q "^OK      a forced WAL switch reaches the repository" "$T/.last.out" ||
    fail "the forced WAL switch was not checked: $(cat "$T/.last.out")"

CASE="configuration that cannot be loaded"
use_config "$BAD"
before=$(sql "$PORT" "select archived_count from pg_stat_archiver")
workload 1
# After three failed attempts the archiver waits (60 s) for a new file or a reload.
for ((i = 0; i < 150; i++)); do
    grep -q "failed too many times" "$PGD.log" && break
    sleep 0.2
done
read -r failed last_failed < <(sql "$PORT" \
    "select failed_count, last_failed_wal from pg_stat_archiver" | tr '|' ' ')
warnings=$(grep -c "WARNING: .*configuration file \"$BAD\"" "$PGD.log")
note "$failed failed attempts, $warnings warnings; last failed $last_failed"
[ "$failed" -ge 1 ] || fail "no failed attempt with a missing configuration"
assert_eq "$warnings" "$failed" "WARNING lines naming $BAD vs failed attempts"
grep "WARNING: .*$BAD" "$PGD.log" | head -1 | grep -q "could not archive WAL file \"pg_wal/$last_failed\"" ||
    fail "the WARNING does not name the WAL file: $(grep -m1 "WARNING: .*$BAD" "$PGD.log")"
assert_eq "$(sql "$PORT" "select archived_count from pg_stat_archiver")" "$before" \
    "files archived with a missing configuration"
[ ! -e "$T/local/main/wal/${last_failed:0:16}/$last_failed" ] || fail "$last_failed was archived"

write_conf "$BAD" "repo = '$T/local'" "encrypt_key_file = '$KEY'" "no_such_key = 1"
workload 1 # a new file wakes the archiver
for ((i = 0; i < 100; i++)); do
    grep -q "WARNING: .*no_such_key" "$PGD.log" && break
    sleep 0.2
done
grep -q "WARNING: .*no_such_key" "$PGD.log" || fail "no WARNING naming the unknown key"
assert_eq "$(sql "$PORT" "select archived_count from pg_stat_archiver")" "$before" \
    "files archived with an invalid configuration"

write_conf "$BAD" "repo = '$T/local'" "encrypt_key_file = '$KEY'"
workload 1
wait_archived "$PORT" "$LAST" 60 || show_log "$PGD.log"
assert_eq "$(loads_of "$BAD")" 1 "loads of the repaired configuration"
new_dest
run "$WAL_FETCH" --config "$CONF" "$last_failed" "$DEST"
assert_rc 0 "wal-fetch of $last_failed, archived once the configuration was right"

for kind in s3 sftp; do
    CASE="$kind drill"
    repo_setup "$kind"
    write_conf "$T/$kind.conf" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
    use_config "$T/$kind.conf"
    workload 3
    wait_archived "$PORT" "$LAST" 60 || { show_log "$PGD.log"; die "archiving to $kind did not finish"; }
    fetch_compare "$T/$kind.conf"
    assert_eq "$(loads_of "$T/$kind.conf")" 1 "configuration loads for the $kind repository"
done
finish
