# backup_net.sh - the body of t_backup_s3.sh and t_backup_sftp.sh (sourced by them with
# REPO_KIND=s3 or sftp; not a test by itself, so run.sh does not run it against a local
# repository, which t_backup_*.sh cover): `basebackup` against a network repository, where
# every parallel worker opens its own storage handle (S3: its own curl handles; SFTP: its own
# SSH session).
#   create   a cluster archiving into the repository; a pgbench database (-s 2) plus a table of
#            incompressible rows (so one bundle stays larger than s3_part_size = 5MB after
#            zstd: on S3 bundles go up as multipart uploads); `create --fast --parallel 2`
#            prints the id; `list --json` shows it complete; `verify` exits 0
#   objects  an independent client lists <prefix>/main/backup/<ID>/: a manifest and bundles
#            data/000000.. (S3: /usr/bin/aws, sizes as the server stores them, the multipart
#            upload seen in the server's log; SFTP: OpenSSH's sftp with the test key)
#   restore  rows, a target time, more rows, switch and archive; `restore --target-time T
#            --target-action promote --parallel 2`; the copy, started on its own port with
#            archive_mode = off, holds exactly the rows before T and intact pgbench tables and
#            incompressible rows
#   as root  a restore run as root works (as postgres, who owns the target); without
#            sftp_identity_file, the default key is postgres's ~/.ssh one, the message says so
#   damage   one byte of the largest stored bundle inverted: `verify` exits 1 naming the bundle
#            or a file in it; `restore` into a fresh directory fails and leaves no
#            recovery.signal (the directory must not be started)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_tmp

case "${REPO_KIND:-}" in
s3 | sftp) ;;
*) die "backup_net.sh needs REPO_KIND=s3 or sftp (run t_backup_s3.sh or t_backup_sftp.sh)" ;;
esac

SCALE=2
BLOB_ROWS=12000 # 1 KiB of random bytes each: ~12 MiB that zstd cannot shrink
ROWS=2000
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
EXTRA=()
CASE="repository ($REPO_KIND)"
make_key "$KEY"
repo_setup "$REPO_KIND"
# The smallest part size the driver accepts: the bundle of the incompressible table is larger.
[ "$REPO_KIND" = s3 ] && EXTRA+=("s3_part_size = '5MB'")
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "${EXTRA[@]+"${EXTRA[@]}"}"
PART_SIZE=$((5 * 1024 * 1024))

CASE="primary"
archiving_cluster "$PGD" "$CONF" --wal-segsize=4
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "${EXTRA[@]+"${EXTRA[@]}"}"
t0=$(date +%s)
pgbench_run "$PORT" -i -q -s "$SCALE" || die "pgbench -i failed"
sql "$PORT" "create table blob (id int primary key, b bytea not null);
             insert into blob select g, (select decode(string_agg(md5(random()::text || i || g), ''), 'hex')
                                         from generate_series(1, 64) i)
             from generate_series(1, $BLOB_ROWS) g" || die "could not fill the table blob"
sql "$PORT" "create table t (id int primary key, batch int not null, pad text)" ||
    die "create table failed"
note "pgbench -i -s $SCALE and $BLOB_ROWS incompressible rows in $(($(date +%s) - t0))s"
blob_sum() { sql "$1" "select count(*) || ' ' || md5(string_agg(b, '' order by id)) from blob"; }
SUM_PGBENCH=$(pgbench_sums "$PORT") || die "checksums failed"
SUM_BLOB=$(blob_sum "$PORT") || die "checksum of blob failed"

CASE="create"
bb_create "$CONF" --parallel 2 --label "net-$REPO_KIND"
ID=$BACKUP_ID
if bb_list "$CONF"; then
    assert_eq "$(backup_status "$ID")" complete "status of $ID in list --json"
    assert_eq "$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID').label")" \
        "net-$REPO_KIND" "label of $ID"
    files=$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID').files")
    [ "${files:-0}" -gt 500 ] 2>/dev/null || fail "list --json says $ID has ${files:-no} files"
fi
CASE="verify"
bb --config "$CONF" verify "$ID"
assert_rc 0 "basebackup verify $ID"
note "verify of $ID: ${ELAPSED_MS} ms"
if [ "$REPO_KIND" = s3 ]; then
    # The same verify through tests/tools/faultproxy, which resets every connection 4 MB into
    # what the server sends: each cut read (the largest bundle is over 5 MB) resumes where it
    # stopped, on a new connection, and verify still exits 0.
    CASE="verify through resets"
    STOP_HOOKS+=(fp_stop_all)
    fp_start "$T/fp" "$S3_PORT" pass 2>"$T/fpstart.err" ||
        die "could not start faultproxy: $(cat "$T/fpstart.err")"
    CONF_FP=$T/walsafe-fp.conf
    sed "s|$S3_ENDPOINT|http://127.0.0.1:$FP_PORT|" "$CONF" >"$T/fp.conf.tmp" ||
        die "could not write $CONF_FP"
    write_conf "$CONF_FP" "$(cat "$T/fp.conf.tmp")"
    grep -q "127.0.0.1:$FP_PORT" "$CONF_FP" || die "$CONF_FP does not point at the proxy"
    fp_mode "$FP_DIR" reset-after-down 4000000
    bb --config "$CONF_FP" verify "$ID"
    assert_rc 0 "basebackup verify $ID with every connection reset after 4 MB"
    assert_err_regex "attempt [0-9]+ of [0-9]+, retrying" "verify resumed a cut read"
    note "verify through resets: $(grep -c retrying "$T/.last.err") resumed reads, ${ELAPSED_MS} ms"
    fp_stop "$FP_DIR"
fi

# ---- the stored objects, seen by an independent client ----
CASE="objects"
BPREFIX=main/backup/$ID
if [ "$REPO_KIND" = s3 ]; then
    KPREFIX=it/$TEST_NAME/$BPREFIX/
    s3_aws s3api list-objects-v2 --bucket "$S3_BUCKET" --prefix "$KPREFIX" \
        --query 'Contents[].[Key,Size]' --output text >"$T/objects.raw" 2>"$T/aws.err" ||
        fail "aws s3api list-objects-v2 failed: $(cat "$T/aws.err")"
    # "KEY<TAB>SIZE" -> "NAME SIZE", NAME relative to the backup's prefix
    sed "s|^$KPREFIX||; s|\t| |" "$T/objects.raw" | LC_ALL=C sort >"$T/objects"
else
    # OpenSSH's sftp with the test's client key and known_hosts (not libcurl/libssh2).
    printf 'ls -1 %s\nls -1 %s\nls -1 %s\n' "$REPO_FILES/$BPREFIX" "$REPO_FILES/$BPREFIX/data" \
        "$REPO_FILES/$BPREFIX/map" >"$T/sftp.batch"
    sftp -q -b "$T/sftp.batch" -i "$SSHD_CLIENT_KEY" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$SSHD_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -P "$SSHD_PORT" root@127.0.0.1 >"$T/sftp.out" 2>"$T/sftp.err" ||
        fail "sftp ls of the backup failed: $(cat "$T/sftp.err")"
    # sftp prints each name with the directory it listed; sizes from the server's file system.
    grep -v '^sftp>' "$T/sftp.out" | sed "s|^$REPO_FILES/$BPREFIX/||" | grep -v -E '^(data|map)$' |
        while read -r name; do
            [ -n "$name" ] && echo "$name $(stat -c %s "$REPO_FILES/$BPREFIX/$name" 2>/dev/null)"
        done | LC_ALL=C sort >"$T/objects"
    printf '%s\n' "$(ls -1 "$REPO_FILES/$BPREFIX/data" | sed 's|^|data/|')" \
        "$(ls -1 "$REPO_FILES/$BPREFIX/map" | sed 's|^|map/|')" \
        "$(ls -1 "$REPO_FILES/$BPREFIX" | grep -v -E '^(data|map)$')" |
        LC_ALL=C sort >"$T/objects.fs"
    assert_eq "$(cut -d' ' -f1 "$T/objects" | tr '\n' ' ')" "$(tr '\n' ' ' <"$T/objects.fs")" \
        "names sftp lists vs the server's file system"
fi
grep -q '^manifest [0-9]' "$T/objects" || fail "no manifest object under $BPREFIX: $(cat "$T/objects")"
# server_manifest: the server's backup_manifest, stored by a create with backup_method stream
bad=$(grep -v -E '^(claim|manifest|server_manifest|data/[0-9]{6}|map/[0-9]{6}) [0-9]+$' "$T/objects")
[ -z "$bad" ] || fail "unexpected objects under $BPREFIX: $(echo $bad)"
NB=$(grep -c '^data/' "$T/objects")
[ "$NB" -ge 2 ] || fail "$NB bundle(s) under $BPREFIX/data, expected one per worker at least (--parallel 2)"
want=$(for ((i = 0; i < NB; i++)); do printf 'data/%06d ' "$i"; done)
assert_eq "$(grep '^data/' "$T/objects" | cut -d' ' -f1 | tr '\n' ' ')" "$want" "bundle names"
# Block digests of the relation files (repo/blockmap.h): one map object per worker at least.
NM=$(grep -c '^map/' "$T/objects")
[ "$NM" -ge 1 ] || fail "no map object under $BPREFIX/map"
want=$(for ((i = 0; i < NM; i++)); do printf 'map/%06d ' "$i"; done)
assert_eq "$(grep '^map/' "$T/objects" | cut -d' ' -f1 | tr '\n' ' ')" "$want" "map object names"
read -r BIG BIG_SIZE < <(grep '^data/' "$T/objects" | sort -k2,2n | tail -1)
note "$NB bundles, the largest $BIG ($BIG_SIZE bytes); $(grep '^manifest' "$T/objects")"
if [ "$REPO_KIND" = s3 ]; then
    [ "${BIG_SIZE:-0}" -gt "$PART_SIZE" ] ||
        fail "no bundle is larger than s3_part_size (5MB): the largest is ${BIG_SIZE:-?} bytes"
    # The size the server stores and the listing agree; the bundle came as a multipart upload
    # (the server logs each part it stores).
    assert_eq "$(stat -c %s "$(repo_file "$BPREFIX/$BIG")" 2>/dev/null)" "$BIG_SIZE" \
        "size of $BIG in the server's data directory vs the listing"
    grep -q -F "/backup/$ID/$BIG?partNumber=2&uploadId=" "$S3_LOG" ||
        fail "the S3 server log shows no part 2 of a multipart upload of $BIG"
fi
assert_repo_clean "repository after create"

# ---- point-in-time restore ----
CASE="workload"
insert_batch() {
    sql "$PORT" "insert into t select g, $1, repeat(md5(g::text), 3)
                 from generate_series($((($1 - 1) * ROWS + 1)), $(($1 * ROWS))) g" ||
        die "insert of batch $1 failed"
}
insert_batch 1
sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
insert_batch 2
sleep 1
TARGET=$(sql "$PORT" "select clock_timestamp()") || die "clock_timestamp failed"
sleep 1
insert_batch 3
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "primary archiver failures"
note "target time $TARGET; archived up to $last"
pg_stop "$PGD"

CASE="restore --target-time"
R=$T/restored
bb_restore "$CONF" "$R" --target-time "$TARGET" --target-action promote --parallel 2
assert_eq "$(backup_label_of "$R")" "net-$REPO_KIND" "backup chosen for the target"
grep -q -E "^restore_command *= *'.*wal-fetch.*--config.*$CONF" "$R/postgresql.auto.conf" ||
    fail "postgresql.auto.conf has no restore_command with wal-fetch --config $CONF"
start_restored "$R"
if pg_wait_promoted "$RPORT" "$R" 60; then
    CASE="restored data"
    read -r count maxid maxbatch < <(sql "$RPORT" \
        "select count(*), coalesce(max(id), 0), coalesce(max(batch), 0) from t" | tr '|' ' ')
    assert_eq "$count" $((2 * ROWS)) "rows of t after recovery to $TARGET"
    assert_eq "$maxid" $((2 * ROWS)) "max(id) of t after recovery"
    assert_eq "$maxbatch" 2 "newest batch after recovery"
    assert_eq "$(sql "$RPORT" "select count(*) from t where pad = repeat(md5(id::text), 3)")" \
        $((2 * ROWS)) "rows of t with intact content"
    assert_eq "$(pgbench_sums "$RPORT")" "$SUM_PGBENCH" "pgbench tables after restore"
    assert_eq "$(blob_sum "$RPORT")" "$SUM_BLOB" "incompressible rows after restore"
    grep -q 'recovery stopping before commit of transaction' "$R.log" ||
        fail "the log does not show recovery stopping at the target time"
    if grep -q -E 'wal-fetch: (ERROR|FATAL)' "$R.log"; then
        fail "wal-fetch reported errors during recovery:"
        grep -E 'wal-fetch' "$R.log" | head -5 | sed 's/^/      /'
    fi
fi
pg_stop "$R"
# The promoted copy (timeline 2, archive_mode = off) wrote nothing into the repository.
[ -z "$(find "$REPO_FILES" -name '00000002*')" ] || fail "the restored copy archived into the repository"

# ---- run as root ----
# Root's restore reads the repository as the target's owner (postgres), with postgres's HOME:
# with the repository settings postgres uses, it works; without sftp_identity_file and
# sftp_known_hosts, the defaults are postgres's ~/.ssh files (those restore_command's wal-fetch
# will use), never root's, and the message says as whom the repository was opened.
CASE="restore as root"
R3=$T/restored_root
run "$BASEBACKUP" --config "$CONF" restore --pgdata "$R3" --parallel 2
assert_rc 0 "restore as root into a new directory in postgres's $T" &&
    assert_eq "$(stat -c %U "$R3/PG_VERSION")" postgres "owner of what a restore run as root writes"
if [ "$REPO_KIND" = sftp ]; then
    PGHOME=$(getent passwd postgres | cut -d: -f6)
    grep -v -E '^sftp_(identity_file|known_hosts) ' "$CONF" >"$T/home.conf.tmp" ||
        die "could not write $T/home.conf.tmp"
    write_conf "$T/walsafe-home.conf" "$(cat "$T/home.conf.tmp")"
    if [ -e "$PGHOME/.ssh/id_ed25519" ]; then
        note "(postgres has $PGHOME/.ssh/id_ed25519: the default identity file is not tested)"
    else
        HOME=/root run "$BASEBACKUP" --config "$T/walsafe-home.conf" restore --pgdata "$T/restored_home"
        assert_rc 1 "restore as root from sftp without sftp_identity_file, postgres having no key" &&
            assert_err_contains "\"$PGHOME/.ssh/id_ed25519\"" "the default identity file of a restore run as root" &&
            assert_err_contains 'as user "postgres"' "the message of a restore run as root"
        assert_absent "$T/restored_home" "a restore that could not open the repository"
    fi
fi

# ---- a damaged bundle ----
CASE="damaged bundle"
OBJ=$(repo_file "$BPREFIX/$BIG")
[ -f "$OBJ" ] || die "no stored file for $BPREFIX/$BIG at $OBJ"
flip_byte "$OBJ" $(($(stat -c %s "$OBJ") / 2))
bb --config "$CONF" verify "$ID"
assert_rc 1 "verify with one byte of $BIG inverted"
# The bundle by its number, or a file of it by name.
assert_err_regex "${BIG#data/}|file \"" "verify names the damaged bundle or a file in it"
R2=$T/restored2
bb --config "$CONF" restore --pgdata "$R2" --parallel 2
if [ "$RC" = 0 ]; then
    fail_cmd "restore from a backup with a damaged bundle exited 0"
else
    assert_rc 1 "restore from a backup with a damaged bundle"
    assert_err_regex "${BIG#data/}|file \"" "the restore error names the bundle or a file in it"
fi
assert_absent "$R2/recovery.signal" "a failed restore"

# ---- retention ----
CASE="wal-prune"
pg_start "$PGD"
bb_create "$CONF" --label "net2-$REPO_KIND"
ID2=$BACKUP_ID
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
pg_stop "$PGD"
wal_objects() { find "$REPO_FILES/main/wal" -type f -name '0000000*' ! -name '*.history*' | wc -l; }
before=$(wal_objects)
deletes0=0
[ "$REPO_KIND" = s3 ] && deletes0=$(grep -a -c '?delete= 200' "$S3_LOG")
run runuser -u postgres -- "$BIN_DIR/wal-prune" --config "$CONF" --retain-full 1
assert_rc 0 "wal-prune --retain-full 1"
after=$(wal_objects)
[ "$after" -lt "$before" ] || fail "wal-prune removed no WAL file ($before before, $after after)"
if bb_list "$CONF"; then
    assert_eq "$(json_eval "$T/list.json" "j.backups.map(b => b.id).join(' ')")" "$ID2" \
        "backups after wal-prune --retain-full 1"
fi
[ -z "$(find "$REPO_FILES/$BPREFIX" -type f 2>/dev/null)" ] || fail "objects of $ID are left after wal-prune"
bb --config "$CONF" verify "$ID2"
assert_rc 0 "basebackup verify $ID2 after wal-prune"
if [ "$REPO_KIND" = s3 ]; then
    # the bundles of $ID and the WAL files: batches, one DeleteObjects request each
    deletes=$(($(grep -a -c '?delete= 200' "$S3_LOG") - deletes0))
    [ "$deletes" -ge 2 ] && [ "$deletes" -le 4 ] ||
        fail "$deletes DeleteObjects requests for one backup's bundles and $((before - after)) WAL files"
fi
note "wal-prune: backup $ID and $((before - after)) of $before WAL files deleted"
assert_repo_clean "repository at the end"
finish
