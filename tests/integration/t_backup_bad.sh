#!/usr/bin/env bash
# t_backup_bad: what `basebackup` must refuse or report.
#   - check: only OK lines and exit 0 on a good set-up; a FAILED line and exit 1 when
#     archive_command does not call wal-push;
#   - a tampered bundle, a missing bundle, a damaged manifest: verify exits 1 naming the
#     bundle / file / manifest, restore fails and leaves nothing that could be started;
#   - restore into a non-empty directory without --force is refused and leaves it untouched;
#     with --force it proceeds;
#   - a target time before the first backup is refused;
#   - a backup whose WAL is missing from the repository, or whose WAL never arrives (broken
#     archive_command: create fails within `timeout`), or that has no manifest (died), is not
#     listed as complete and not restored; restore without --backup takes an older complete one;
#   - an unreachable server and a wrong password fail create with a message about connecting,
#     and the password never appears in any output.
# The repository is REPO_KIND (local, s3 or sftp; default local).
. "$(dirname "$0")/lib.sh"
setup_tmp

ROWS=3000
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"

CASE="primary"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
sql "$PORT" "create table t (id int primary key, batch int not null, pad text)" || die "create table failed"
insert_batch() { # BATCH
    sql "$PORT" "insert into t select g, $1, repeat(md5(g::text), 4)
                 from generate_series($((($1 - 1) * ROWS + 1)), $(($1 * ROWS))) g" ||
        die "insert of batch $1 failed"
}
switch_archived() {
    local last
    last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
    wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving of $last did not finish"; }
}
insert_batch 1

# out_and_err: what the last command printed, stdout then stderr.
out_and_err() { cat "$T/.last.out" "$T/.last.err"; }

# assert_check_ok WHAT: the last check exited 0 and printed only OK lines.
assert_check_ok() {
    assert_rc 0 "$1"
    if [ ! -s "$T/.last.out" ] || grep -q -v -E '^OK( |$)' "$T/.last.out"; then
        fail "$1 printed other lines than OK lines:"
        out_and_err | head -20 | sed 's/^/      /'
    fi
}

# Nothing archived yet (no WAL segment filled): a correct set-up all the same.
CASE="check on a good set-up, nothing archived yet"
[ -z "$(find "$REPO_FILES" -type f)" ] || note "(the repository already holds: $(cd "$REPO_FILES" && find . -type f | head -3))"
bb --config "$CONF" check
assert_check_ok "basebackup check before the first archived WAL file"

CASE="check on a good set-up"
switch_archived
bb --config "$CONF" check
assert_check_ok "basebackup check"
note "check: $(grep -c . "$T/.last.out") OK line(s)"

sleep 1
EARLY=$(sql "$PORT" "select clock_timestamp()") || die "psql failed"
sleep 1
CASE="backup"
bb_create "$CONF" --label bad-one
ID1=$BACKUP_ID
insert_batch 2
switch_archived

CASE="verify a good backup"
bb --config "$CONF" verify "$ID1"
assert_rc 0 "verify $ID1"
bb --config "$CONF" verify
assert_rc 0 "verify (newest complete backup)"

CASE="target before the first backup"
for ts in "$EARLY" "2001-02-03 04:05:06+00"; do
    bb --config "$CONF" restore --pgdata "$T/r_early" --target-time "$ts"
    assert_rc 1 "restore --target-time '$ts' (before $ID1)" &&
        assert_err_regex 'backup|before' "restore --target-time '$ts'"
    [ -e "$T/r_early/recovery.signal" ] && fail "restore to '$ts' left a startable $T/r_early"
done

# refused_restore WHAT ARGS...: restore into a new directory must fail and leave nothing that
# PostgreSQL could start.
RSEQ=0
refused_restore() {
    local what=$1 dir
    shift
    RSEQ=$((RSEQ + 1))
    dir=$T/refused.$RSEQ
    bb --config "$CONF" restore --pgdata "$dir" "$@"
    if [ "$RC" -eq 0 ]; then
        fail "$what: restore $* succeeded"
    else
        assert_rc 1 "$what: restore $*"
    fi
    [ -e "$dir/recovery.signal" ] && fail "$what: the failed restore left a startable $dir (recovery.signal)"
    [ -e "$dir/global/pg_control" ] && [ -e "$dir/backup_label" ] && [ -e "$dir/postgresql.auto.conf" ] &&
        grep -q restore_command "$dir/postgresql.auto.conf" &&
        fail "$what: the failed restore left a complete-looking $dir"
    return 0
}

# The largest bundle of backup ID1 (most likely to hold table data).
bundle_dir=$(repo_file "main/backup/$ID1/data/x")
bundle_dir=${bundle_dir%/*}
BUNDLE=$(ls -S "$bundle_dir" | head -1)
[ -n "$BUNDLE" ] || die "backup $ID1 has no bundle under $bundle_dir"
BUNDLE_FILE=$bundle_dir/$BUNDLE
BUNDLE_NAME=${BUNDLE%%._S3rver_object}
note "bundles of $ID1: $(ls "$bundle_dir" | tr '\n' ' ')"

CASE="tampered bundle"
cp -p "$BUNDLE_FILE" "$T/bundle.orig" || die "could not save $BUNDLE_FILE"
flip_byte "$BUNDLE_FILE" $(($(stat -c %s "$BUNDLE_FILE") / 2))
bb --config "$CONF" verify "$ID1"
assert_rc 1 "verify of a backup with a tampered bundle"
out_and_err | grep -q -E "$BUNDLE_NAME|data/" ||
    { fail "verify does not name the tampered bundle $BUNDLE_NAME:"; out_and_err | head -5 | sed 's/^/      /'; }
bb --config "$CONF" verify --all
assert_rc 1 "verify --all with a tampered bundle"
refused_restore "tampered bundle" --backup "$ID1"
refused_restore "tampered bundle, latest"
cp -p "$T/bundle.orig" "$BUNDLE_FILE"
bb --config "$CONF" verify "$ID1"
assert_rc 0 "verify after the bundle is repaired"

CASE="missing bundle"
mv "$BUNDLE_FILE" "$T/bundle.away" || die "could not move $BUNDLE_FILE"
bb --config "$CONF" verify "$ID1"
assert_rc 1 "verify of a backup with a missing bundle"
out_and_err | grep -q -E "$BUNDLE_NAME" ||
    { fail "verify does not name the missing bundle $BUNDLE_NAME:"; out_and_err | head -5 | sed 's/^/      /'; }
refused_restore "missing bundle" --backup "$ID1"
mv "$T/bundle.away" "$BUNDLE_FILE"

CASE="damaged manifest"
MANIFEST=$(repo_file "main/backup/$ID1/manifest")
cp -p "$MANIFEST" "$T/manifest.orig" || die "no manifest $MANIFEST"
flip_byte "$MANIFEST" $(($(stat -c %s "$MANIFEST") / 2))
if bb_list "$CONF"; then
    st=$(backup_status "$ID1")
    [ "$st" = complete ] && fail "a backup with a damaged manifest is listed as complete"
fi
bb --config "$CONF" verify "$ID1"
assert_rc 1 "verify of a backup with a damaged manifest" &&
    assert_err_regex 'manifest' "verify of a backup with a damaged manifest"
refused_restore "damaged manifest" --backup "$ID1"
cp -p "$T/manifest.orig" "$MANIFEST"

CASE="non-empty target directory"
OCC=$T/occupied
mkdir -p "$OCC/sub" && echo "precious" >"$OCC/keep.txt" && echo x >"$OCC/sub/y" &&
    chown -R postgres: "$OCC" && chmod 700 "$OCC" || die "could not set up $OCC"
OCC_STATE=$(repo_state "$OCC")
bb --config "$CONF" restore --pgdata "$OCC"
assert_rc 1 "restore into a non-empty directory without --force" &&
    assert_err_regex 'empty|--force' "restore into a non-empty directory"
assert_eq "$(repo_state "$OCC")" "$OCC_STATE" "content of the refused non-empty directory"
bb_restore "$CONF" "$OCC" --force &&
    assert_eq "$(backup_label_of "$OCC")" bad-one "backup restored with --force"
bb --config "$CONF" restore --pgdata "$T/r_noid" --backup 20000101T000000Z
assert_rc 1 "restore of a backup id that does not exist" &&
    assert_err_contains 20000101T000000Z "restore of a backup id that does not exist"

CASE="backup without a manifest (died)"
DEAD=20000101T000000Z
dead_dir=$(repo_file "main/backup/$DEAD/data/$BUNDLE_NAME")
mkdir -p "${dead_dir%/*}" && cp -p "$BUNDLE_FILE" "$dead_dir" || die "could not fake a dead backup"
chown -R --reference="$bundle_dir" "$(repo_file "main/backup/$DEAD")"
if bb_list "$CONF"; then
    st=$(backup_status "$DEAD")
    [ "$st" = complete ] && fail "a backup without a manifest is listed as complete"
    [ "$st" = absent ] && fail "a backup without a manifest is not listed at all (expected running/failed)"
fi
refused_restore "backup without a manifest" --backup "$DEAD"
rm -rf "$(repo_file "main/backup/$DEAD")"

CASE="WAL of a backup missing from the repository"
bb_create "$CONF" --label bad-two --no-progress
ID2=$BACKUP_ID
# The id on stdout (bb_create checked), no progress output, only the summary line.
assert_err_summary "create --no-progress"
insert_batch 3
switch_archived
bb_list "$CONF" || die "list failed"
START_LSN=$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID2').start_lsn")
START_SEG=$(sql "$PORT" "select pg_walfile_name('$START_LSN')") || die "no segment for start_lsn '$START_LSN'"
SEG_FILE=$(repo_file "main/wal/${START_SEG:0:16}/$START_SEG")
[ -f "$SEG_FILE" ] || die "no object for $START_SEG, the start segment of $ID2"
mv "$SEG_FILE" "$T/seg.away" || die "could not move $SEG_FILE"
if bb_list "$CONF"; then
    assert_eq "$(backup_status "$ID1")" complete "status of $ID1 (its WAL is all there)"
    st=$(backup_status "$ID2")
    [ "$st" = complete ] && fail "$ID2, whose WAL $START_SEG is missing, is listed as complete"
    [ "$st" = absent ] && fail "$ID2 is not listed at all"
fi
bb --config "$CONF" verify "$ID2"
assert_rc 1 "verify of a backup with missing WAL" &&
    { out_and_err | grep -q "$START_SEG" || fail "verify does not name the missing WAL file $START_SEG"; }
refused_restore "missing WAL" --backup "$ID2"
bb_restore "$CONF" "$T/r_latest" &&
    assert_eq "$(backup_label_of "$T/r_latest")" bad-one "restore without --backup skips the incomplete backup"
mv "$T/seg.away" "$SEG_FILE"
bb_list "$CONF" && assert_eq "$(backup_status "$ID2")" complete "status of $ID2 once its WAL is back"

CASE="archive_command not calling wal-push"
sql "$PORT" "alter system set archive_command = '/bin/false'" && sql "$PORT" "select pg_reload_conf()" >/dev/null ||
    die "could not change archive_command"
sleep 0.5
# timeout = 5: check waits that long for its forced WAL switch to be archived.
CONF5=$T/walsafe-timeout.conf
backup_conf "$CONF5" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "timeout = 5"
bb --config "$CONF5" check
assert_rc 1 "check with archive_command = '/bin/false'"
[ "$ELAPSED_MS" -lt 40000 ] || fail "check took ${ELAPSED_MS} ms with timeout = 5"
grep -q '^FAILED' "$T/.last.out" ||
    { fail "check printed no FAILED line:"; out_and_err | head -10 | sed 's/^/      /'; }
grep '^FAILED' "$T/.last.out" | grep -q -i 'archive_command' ||
    fail "no FAILED line names archive_command: $(grep '^FAILED' "$T/.last.out")"

CASE="WAL never arrives (create times out)"
insert_batch 4
bb --config "$CONF5" create --fast --label never-archived
assert_rc 1 "create while archive_command fails"
[ "$ELAPSED_MS" -lt 40000 ] || fail "create took ${ELAPSED_MS} ms with timeout = 5"
[ -s "$T/.last.out" ] && fail "the failed create printed on stdout: $(head -c 200 "$T/.last.out")"
assert_err_regex 'WAL|archiv' "create while archive_command fails"
note "create failed after ${ELAPSED_MS} ms: $(head -1 "$T/.last.err")"
if bb_list "$CONF"; then
    n=$(json_eval "$T/list.json" "j.backups.filter(b => b.label === 'never-archived' && b.status === 'complete').length")
    assert_eq "$n" 0 "complete backups labelled never-archived"
    ID3=$(json_eval "$T/list.json" "(j.backups.find(b => b.label === 'never-archived') || {id: ''}).id")
    if [ -n "$ID3" ]; then
        refused_restore "WAL never archived" --backup "$ID3"
    else
        note "the failed create left no backup in the list"
    fi
fi
rm -rf "$T"/refused.*
sql "$PORT" "alter system reset archive_command" && sql "$PORT" "select pg_reload_conf()" >/dev/null ||
    die "could not restore archive_command"

CASE="unreachable server"
DEADPORT=$(free_port)
while [ "$DEADPORT" = "$PORT" ]; do DEADPORT=$(free_port); done
backup_conf "$T/walsafe-dead.conf" "$PGD" "$DEADPORT" "encrypt_key_file = '$KEY'"
bb --config "$T/walsafe-dead.conf" create --fast
assert_rc 1 "create against a server that is not running" &&
    assert_err_regex 'connect' "create against a server that is not running"
[ -s "$T/.last.out" ] && fail "the failed create printed on stdout"

CASE="wrong password"
PW_RIGHT="Right-pw-$RANDOM$RANDOM"
PW_WRONG="Wrong-pw-$RANDOM$RANDOM"
add_secret "$PW_RIGHT"
add_secret "$PW_WRONG"
sql "$PORT" "create role walsafe_pw login superuser password '$PW_RIGHT'" >/dev/null || die "create role failed"
{ echo "local all walsafe_pw scram-sha-256"; cat "$PGD/pg_hba.conf"; } >"$PGD/pg_hba.conf.new" &&
    mv "$PGD/pg_hba.conf.new" "$PGD/pg_hba.conf" && chown postgres: "$PGD/pg_hba.conf" ||
    die "could not change pg_hba.conf"
sql "$PORT" "select pg_reload_conf()" >/dev/null || die "reload failed"
sleep 0.5
PWCONF=$T/walsafe-pw.conf
write_conf "$PWCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "pgdata = '$PGD'" \
    "pg_conninfo = 'host=$SOCK port=$PORT user=walsafe_pw dbname=postgres password=$PW_WRONG'"
bb --config "$PWCONF" create --fast
assert_rc 1 "create with a wrong password" &&
    assert_err_regex 'connect' "create with a wrong password"
assert_err_regex 'password' "create with a wrong password"
[ -s "$T/.last.out" ] && fail "the failed create printed on stdout"
rm -f "$PWCONF"

CASE="repository"
assert_repo_clean "repository"
finish
