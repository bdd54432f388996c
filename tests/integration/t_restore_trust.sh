#!/usr/bin/env bash
# t_restore_trust: `basebackup restore` writes only inside its targets, never through a link,
# and never with more rights than the target's owner; --force never empties a tablespace's
# original location that the data directory it replaces does not link to; the manifest's tablespace locations and modes are checked; the recovery
# settings are quoted as PostgreSQL reads them (docs/design/restore-safety.md). The restores run
# as root into directories postgres owns, while postgres (the attacker: it owns the target and
# can write the repository) plants what the review of issue #15 used:
#   - a target of postgres in root's group: the restore runs with postgres's own group;
#   - modes 6755 (file) and 1777 (directory) in the manifest: restored 0600 / 0700, also into a
#     root-owned target (no setuid root file, no world-writable directory);
#   - a root-owned target (no privilege drop) with a tablespace location from the manifest, a
#     root-only place holding a file "authorized_keys": refused, nothing created;
#   - a manifest whose tablespace location differs from the backup's tablespace_map (the
#     primary's tablespace): the restored tablespace_map names what the restore filled;
#   - a postgres-owned link at a --tablespace-map destination to a root-owned directory: refused,
#     the directory keeps its owner;
#   - recovery.signal, postgresql.auto.conf.walsafe and tablespace_map.walsafe planted as links
#     to a root-owned file while the restore runs: the file keeps its content and owner;
#   - postgresql.auto.conf replaced by a link to a root-only file while the restore runs: its
#     content ends up in no file of the restore;
#   - base/5 swapped for a link to a root-owned directory while the restore runs: nothing is
#     created in that directory;
#   - tablespace locations that are relative, "/", with "..", inside or around the data
#     directory, a duplicate or a system oid: refused, nothing created (not even in the cwd);
#   - malformed --tablespace-map options: usage errors; one into the data directory: refused;
#   - the primary's host, a new target without --tablespace-map: refused with a hint to
#     --tablespace-map, also with --force, also over an existing data directory whose pg_tblspc
#     link leads elsewhere; the primary's tablespace is untouched and the primary
#     still has every row after a restart; --force with a --tablespace-map destination holding
#     another cluster's PG_* directory: refused, untouched;
#   - a config path with a quote and --target-name with a backslash: the restored server starts,
#     shows the intended restore_command and stops at that restore point; a line break in
#     --target-name is a usage error (exit 2) naming the option.
. "$(dirname "$0")/lib.sh"
setup_tmp

MANIFESTCAT=${MANIFESTCAT:-$BIN_DIR/../tests/tools/manifestcat}
MANIFESTPUT=${MANIFESTPUT:-$BIN_DIR/../tests/tools/manifestput}
for tool in "$MANIFESTCAT" "$MANIFESTPUT"; do
    [ -x "$tool" ] || die "no ${tool##*/} at $tool (make <BUILD>/tests/tools/${tool##*/})"
done
CONF=$T/walsafe.conf
PGD=$T/primary
TS=$T/ts_one
ROWS_TS=3500
# Directories root owns, as /etc or /root would be: postgres may name them, never write there.
ROOTZONE=$T/rootzone
mkdir -m 755 "$ROOTZONE" || die "mkdir $ROOTZONE"
# Where postgres may put its links.
PGZONE=$T/pgzone
mkdir -m 700 "$PGZONE" && chown postgres: "$PGZONE" || die "mkdir $PGZONE"

CASE="repository"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "compress = none"

CASE="primary with a tablespace"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "compress = none"
mkdir -m 700 "$TS" && chown postgres: "$TS" || die "mkdir $TS"
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace failed"
TS_OID=$(sql "$PORT" "select oid from pg_tablespace where spcname = 'ts_one'") || die "psql failed"
sql "$PORT" "create table in_ts (id int primary key, pad text) tablespace ts_one;
             insert into in_ts select g, md5(g::text) from generate_series(1, $ROWS_TS) g" ||
    die "could not fill in_ts"
# Enough data that a restore takes a while (the races below act during it): relation files in
# base/5, and a file sorted after postgresql.auto.conf, larger than a piece (its later pieces go
# into later bundles, restored after that file's with --parallel 1).
pgbench_run "$PORT" -i -q -s 4 || die "pgbench -i failed"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$PGD/zz_padding" && chown postgres: "$PGD/zz_padding" ||
    die "could not write $PGD/zz_padding"
bb_create "$CONF" --label trust
ID=$BACKUP_ID
# The primary's tablespace goes on after the backup (a restore over it would lose these rows).
# Then nothing of the server's own may change that directory while the restores below run (the
# state compared at the end): autovacuum off for the table, its hint bits and visibility map set
# by a VACUUM now, and its dirty pages written by the CHECKPOINT (an autovacuum under load wrote
# the table's _vm file in the middle of the test).
sql "$PORT" "insert into in_ts select g, md5(g::text) from generate_series($((ROWS_TS + 1)), $((2 * ROWS_TS))) g" &&
    sql "$PORT" "alter table in_ts set (autovacuum_enabled = off)" &&
    sql "$PORT" "vacuum (freeze, analyze) in_ts" &&
    sql "$PORT" "checkpoint" || die "could not write more rows into in_ts"
# (one statement per call: psql -c runs a string of statements as one transaction)
for q in "create table marker (id int)" "insert into marker select generate_series(1, 100)" \
    "select pg_create_restore_point('rp\\one')" "insert into marker select generate_series(101, 200)"; do
    sql "$PORT" "$q" >/dev/null || die "could not write the restore point ($q)"
done
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
TS_STATE=$(repo_state "$TS")
run "$MANIFESTCAT" "$CONF" "$ID"
assert_rc 0 "manifestcat $ID" || die "could not read the manifest of $ID"
cp "$T/.last.out" "$T/manifest.orig"
grep -q "^tablespace $TS_OID " "$T/manifest.orig" || die "the manifest has no tablespace $TS_OID"

# restore_root ARGS...: basebackup restore as root (RC, last_err).
restore_root() { run "$BASEBACKUP" --config "$CONF" restore "$@"; }
# pg_dir DIR: an empty directory owned by postgres.
pg_dir() { mkdir -m 700 "$1" && chown postgres: "$1" || die "mkdir $1"; }
# craft SED_SCRIPT: the backup's manifest, edited; restore_manifest puts the original back.
craft() {
    sed -e "$1" "$T/manifest.orig" >"$T/manifest.new" || die "sed failed"
    cmp -s "$T/manifest.orig" "$T/manifest.new" && die "craft: '$1' changed nothing"
    run "$MANIFESTPUT" "$CONF" "$ID" <"$T/manifest.new"
    assert_rc 0 "manifestput ($1)" || die "could not store a crafted manifest"
    chown -R postgres: "$REPO_FILES"
}
restore_manifest() {
    run "$MANIFESTPUT" "$CONF" "$ID" <"$T/manifest.orig"
    assert_rc 0 "manifestput (original)" || die "could not put the manifest back"
    chown -R postgres: "$REPO_FILES"
}
# no_special_modes DIR WHAT: nothing under DIR is setuid, setgid, sticky or open to others.
no_special_modes() {
    local bad
    bad=$(find "$1" ! -type l -perm /7007 -printf '%m %P\n' | head -5)
    [ -z "$bad" ] || fail "$2: modes PostgreSQL never uses: $(echo $bad)"
}
# wait_for PATH PID LIMIT_S: until PATH exists (the restore PID has got that far); 1 when PID
# ended first or after LIMIT_S seconds.
wait_for() {
    local i
    for i in $(seq 1 $(($3 * 200))); do
        [ -e "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.005
    done
    return 1
}
# attacker SCRIPT: runs SCRIPT as postgres in the background (bash, $R set), looping until
# $T/stop exists (at most 60 s); stop_attacker ends it.
attacker() {
    rm -f "$T/stop"
    bg_start "$T/attacker.log" setpriv --reuid=postgres --regid=postgres --init-groups \
        env R="$R" STOP="$T/stop" bash -c "for i in \$(seq 1 12000); do [ -e \"\$STOP\" ] && exit 0; $1; sleep 0.005; done"
    ATTACKER=$BG_PID
}
stop_attacker() {
    touch "$T/stop"
    bg_wait "$ATTACKER" 10 >/dev/null
}

CASE="modes from the manifest"
craft "s#^file PG_VERSION [0-7]* #file PG_VERSION 6755 #; s#^dir [0-7]* base\$#dir 1777 base#"
grep -q "^dir 1777 base$" "$T/manifest.new" || die "craft: no dir line for base"
for owner in postgres root; do
    if [ $owner = postgres ]; then zone=$T; else zone=$ROOTZONE; fi
    R=$zone/r_modes
    restore_root --pgdata "$R" --tablespace-map "$TS=$zone/ts_modes"
    if assert_rc 0 "restore as root into a target of $owner"; then
        assert_eq "$(stat -c '%U %a' "$R/PG_VERSION")" "$owner 600" "PG_VERSION (6755 in the manifest)"
        assert_eq "$(stat -c '%U %a' "$R/base")" "$owner 700" "base (1777 in the manifest)"
        no_special_modes "$R" "restore into a target of $owner"
    fi
done
restore_manifest

CASE="the group the restore runs with"
# A target of postgres in root's group (mkdir + chown postgres, as admins do): the restore runs
# with postgres's own group, never with the directory's (root's).
R=$T/r_group
mkdir -m 700 "$R" && chown postgres:root "$R" || die "mkdir $R"
restore_root --pgdata "$R" --tablespace-map "$TS=$PGZONE/ts_group"
if assert_rc 0 "restore as root into a target of postgres:root"; then
    PGGROUP=$(id -gn postgres)
    assert_eq "$(stat -c '%U:%G' "$R/PG_VERSION")" "postgres:$PGGROUP" "owner and group of a restored file"
    assert_eq "$(stat -c '%U:%G' "$PGZONE/ts_group")" "postgres:$PGGROUP" "owner and group of the tablespace directory"
    # (the data directory itself keeps the group it was given)
    bad=$(find "$R" "$PGZONE/ts_group" -mindepth 1 -gid 0 | head -3)
    [ -z "$bad" ] || fail "files of root's group in the restore: $(echo $bad)"
fi

CASE="a link at a --tablespace-map destination"
mkdir -m 755 "$ROOTZONE/tsdir" || die "mkdir"
runuser -u postgres -- ln -s "$ROOTZONE/tsdir" "$PGZONE/tslink" || die "ln -s"
pg_dir "$T/r_maplink"
restore_root --pgdata "$T/r_maplink" --tablespace-map "$TS=$PGZONE/tslink"
assert_rc 1 "restore with a tablespace mapped onto a link to root's directory" &&
    assert_err_regex 'belongs to user 0|not followed' "restore onto a link to root's directory"
assert_eq "$(stat -c '%U %a' "$ROOTZONE/tsdir")" "root 755" "owner and mode of the link's target"
assert_dir_empty "$ROOTZONE/tsdir" "the link's target"
[ -e "$T/r_maplink/recovery.signal" ] && fail "the refused restore left recovery.signal"

CASE="links planted at the files restore writes last"
printf 'canary-original\n' >"$ROOTZONE/canary" && chmod 644 "$ROOTZONE/canary" || die "canary"
R=$T/r_links
pg_dir "$R"
bg_start "$T/restore.log" "$BASEBACKUP" --config "$CONF" restore --pgdata "$R" \
    --tablespace-map "$TS=$PGZONE/ts_links"
RESTORE=$BG_PID
wait_for "$R/base" "$RESTORE" 30 || fail "the restore did not create base/: $(tail -1 "$T/restore.log")"
attacker "for n in recovery.signal postgresql.auto.conf.walsafe tablespace_map.walsafe; do ln -s $ROOTZONE/canary \"\$R/\$n\" 2>/dev/null; done"
bg_wait "$RESTORE" 60
rc=$?
stop_attacker
note "restore with planted links: exit $rc ($(grep -v '^$' "$T/restore.log" | tail -1))"
assert_eq "$(cat "$ROOTZONE/canary")" "canary-original" "content of root's file the links point to"
assert_eq "$(stat -c '%U %a' "$ROOTZONE/canary")" "root 644" "owner and mode of root's file"
if [ "$rc" -eq 0 ]; then
    for f in recovery.signal postgresql.auto.conf; do
        [ -f "$R/$f" ] && [ ! -L "$R/$f" ] || fail "$f is not a regular file after the restore"
    done
fi

CASE="postgresql.auto.conf swapped for a link to a root-only file"
SECRET="root-only-$RANDOM$RANDOM"
printf '%s\n' "$SECRET" >"$ROOTZONE/secret" && chmod 600 "$ROOTZONE/secret" || die "secret"
R=$T/r_secret
pg_dir "$R"
bg_start "$T/restore.log" "$BASEBACKUP" --config "$CONF" restore --pgdata "$R" \
    --tablespace-map "$TS=$PGZONE/ts_secret" --parallel 1
RESTORE=$BG_PID
wait_for "$R/base" "$RESTORE" 30 || fail "the restore did not create base/: $(tail -1 "$T/restore.log")"
# (once: a second swap would remove what the restore wrote)
attacker "[ -f \"\$R/postgresql.auto.conf\" ] && [ ! -L \"\$R/postgresql.auto.conf\" ] && ln -sf $ROOTZONE/secret \"\$R/postgresql.auto.conf\" && exit 0"
bg_wait "$RESTORE" 60
rc=$?
stop_attacker
note "restore with postgresql.auto.conf swapped: exit $rc ($(grep -v '^$' "$T/restore.log" | tail -1))"
found=$(grep -rlF -- "$SECRET" "$R" "$ROOTZONE/canary" 2>/dev/null)
[ -z "$found" ] || fail "the root-only content was copied into: $found"
assert_eq "$(stat -c '%U %a' "$ROOTZONE/secret")" "root 600" "owner and mode of the root-only file"

CASE="base/5 swapped for a link while the restore runs"
mkdir -m 755 "$ROOTZONE/elsewhere" || die "mkdir"
R=$T/r_swap
pg_dir "$R"
bg_start "$T/restore.log" "$BASEBACKUP" --config "$CONF" restore --pgdata "$R" \
    --tablespace-map "$TS=$PGZONE/ts_swap"
RESTORE=$BG_PID
wait_for "$R/base" "$RESTORE" 30 || fail "the restore did not create base/: $(tail -1 "$T/restore.log")"
attacker "if [ -d \"\$R/base/5\" ] && [ ! -L \"\$R/base/5\" ]; then mv \"\$R/base/5\" \"\$R/base/5.moved\" && ln -s $ROOTZONE/elsewhere \"\$R/base/5\" && exit 0; fi"
bg_wait "$RESTORE" 60
rc=$?
stop_attacker
note "restore with base/5 swapped: exit $rc ($(grep -v '^$' "$T/restore.log" | tail -1))"
[ -L "$R/base/5" ] || fail "the attacker did not get to swap base/5 (the case proves nothing)"
assert_dir_empty "$ROOTZONE/elsewhere" "root's directory that base/5 was pointed at"
assert_eq "$(stat -c '%U %a' "$ROOTZONE/elsewhere")" "root 755" "owner and mode of root's directory"

CASE="a root-owned target: tablespace locations from the manifest"
# Root restoring into a directory of its own (no privilege drop): the manifest (postgres writes
# the repository) names a missing root-only place as a tablespace and puts a file there, as an
# attacker would with /root/.ssh/authorized_keys. Refused, nothing created: as root, every
# tablespace directory must be named with --tablespace-map.
enc() { printf '%s' "$1" | sed 's/%/%25/g; s/ /%20/g'; }
craft "s#^tablespace $TS_OID .*#tablespace $TS_OID $(enc "$ROOTZONE/sshdir")#;
       0,/^file pg_tblspc\/$TS_OID\/[^ ]* /s##file pg_tblspc/$TS_OID/authorized_keys #"
grep -q "^file pg_tblspc/$TS_OID/authorized_keys " "$T/manifest.new" || die "craft: no authorized_keys"
restore_root --pgdata "$ROOTZONE/r_rootts"
assert_rc 1 "restore as root into a root-owned target, tablespace location from the manifest" &&
    assert_err_contains "--tablespace-map $ROOTZONE/sshdir=DIR" "restore as root, tablespace location from the manifest"
assert_absent "$ROOTZONE/sshdir" "the manifest's tablespace location (root-owned target)"
assert_absent "$ROOTZONE/r_rootts" "the refused root-owned target"
restore_manifest

CASE="tablespace_map from the backup"
# PostgreSQL relinks pg_tblspc from tablespace_map when it starts: a manifest whose location
# differs from the backup's tablespace_map (which names the primary's tablespace) must not give
# the restored server the primary's tablespace. The restore writes tablespace_map from what it
# checked and filled.
craft "s#^tablespace $TS_OID .*#tablespace $TS_OID $(enc "$PGZONE/ts_moved")#"
R=$T/r_tsmap
pg_dir "$R"
restore_root --pgdata "$R"
if assert_rc 0 "restore of a manifest whose tablespace location differs from tablespace_map"; then
    assert_eq "$(cat "$R/tablespace_map")" "$TS_OID $PGZONE/ts_moved" "tablespace_map of the restore"
    assert_eq "$(readlink "$R/pg_tblspc/$TS_OID")" "$PGZONE/ts_moved" "the tablespace link"
fi
restore_manifest

CASE="tablespace locations from the manifest"
mkdir -m 700 "$T/cwd" && chown postgres: "$T/cwd" || die "mkdir cwd"
n=0
# bad_location SED PATTERN WHAT: the restore (run from $T/cwd) is refused with PATTERN
# in its message and creates nothing.
bad_location() {
    local sedscript=$1 pattern=$2 what=$3 dir
    n=$((n + 1))
    dir=$T/r_loc$n
    craft "$sedscript"
    cd "$T/cwd" || die "cd $T/cwd"
    run "$BASEBACKUP" --config "$CONF" restore --pgdata "$dir"
    cd - >/dev/null || die "cd -"
    assert_rc 1 "$what" && assert_err_regex "$pattern" "$what"
    assert_absent "$dir" "$what: the target"
    assert_dir_empty "$T/cwd" "$what: the working directory"
}
bad_location "s#^tablespace $TS_OID .*#tablespace $TS_OID ts_rel#" 'not an absolute normalised path' "a relative location"
bad_location "s#^tablespace $TS_OID .*#tablespace $TS_OID /#" 'not an absolute normalised path' "location /"
bad_location "s#^tablespace $TS_OID .*#tablespace $TS_OID $(enc "$T")/x/../ts_two#" 'not an absolute normalised path' "a location with .."
bad_location "s#^tablespace $TS_OID .*#tablespace $TS_OID $(enc "$T")/r_loc4/pg_ts#" 'must lie apart' "a location inside the data directory"
bad_location "s#^tablespace $TS_OID .*#tablespace $TS_OID $(enc "$T")#" 'must lie apart' "a location holding the data directory"
bad_location "s#^tablespace $TS_OID \(.*\)#tablespace $TS_OID \1\ntablespace $TS_OID \1.b#" 'listed twice' "a tablespace oid twice"
bad_location "s#^tablespace $TS_OID #tablespace 1663 #" 'not a user tablespace' "the oid of pg_default"
restore_manifest
for map in "$TS=$T/a/../b" "$TS=relative" "$TS=/" "$TS/=$T/x"; do
    bb --config "$CONF" restore --pgdata "$T/r_badmap" --tablespace-map "$map"
    assert_rc 2 "--tablespace-map $map" && assert_err_contains "--tablespace-map" "--tablespace-map $map"
done
bb --config "$CONF" restore --pgdata "$T/r_badmap" --tablespace-map "$TS=$T/r_badmap/ts"
assert_rc 1 "--tablespace-map into the data directory" && assert_err_regex 'must lie apart' "--tablespace-map into the data directory"
assert_absent "$T/r_badmap" "target of refused --tablespace-map options"

CASE="the primary's host, no --tablespace-map"
for force in "" --force; do
    restore_root --pgdata "$T/r_same" $force
    assert_rc 1 "restore ${force:-without --force} onto the primary's tablespace" &&
        assert_err_contains "--tablespace-map $TS=NEWDIR" "restore ${force:-without --force} onto the primary's tablespace"
    grep -q -- "add --force" "$T/.last.err" && fail "the message suggests --force: $(last_err)"
    [ -e "$T/r_same/recovery.signal" ] && fail "the refused restore left recovery.signal"
done
bb --config "$CONF" restore --pgdata "$T/r_same2" --force
assert_rc 1 "restore --force as postgres onto the primary's tablespace"
# --force over an existing data directory whose pg_tblspc link leads elsewhere: the primary's
# tablespace is not that directory's, so it is refused too, and nothing is removed.
R=$T/r_old
pg_dir "$R"
runuser -u postgres -- bash -c "mkdir -p '$R/pg_tblspc' '$PGZONE/old_ts' && echo old >'$R/PG_VERSION' &&
    ln -s '$PGZONE/old_ts' '$R/pg_tblspc/$TS_OID'" || die "could not make $R"
restore_root --pgdata "$R" --force
assert_rc 1 "restore --force over a data directory that links elsewhere, onto the primary's tablespace" &&
    assert_err_contains "--tablespace-map $TS=NEWDIR" "restore --force over a data directory that links elsewhere"
assert_eq "$(cat "$R/PG_VERSION")" old "the data directory of a refused --force"
# A --tablespace-map destination that holds another cluster's tablespace (no link of the target
# points to it): not emptied by --force either.
OTHER=$PGZONE/other_ts
mkdir -p "$OTHER/PG_15_202209061/5" && echo "other cluster" >"$OTHER/PG_15_202209061/5/16500" &&
    chown -R postgres: "$OTHER" || die "could not make $OTHER"
OTHER_STATE=$(repo_state "$OTHER")
pg_dir "$T/r_other"
restore_root --pgdata "$T/r_other" --tablespace-map "$TS=$OTHER" --force
assert_rc 1 "restore --force onto another cluster's tablespace" &&
    assert_err_contains "another cluster" "restore --force onto another cluster's tablespace"
assert_eq "$(repo_state "$OTHER")" "$OTHER_STATE" "another cluster's tablespace directory"
assert_eq "$(repo_state "$TS")" "$TS_STATE" "the primary's tablespace directory"
pg_stop "$PGD"
pg_start "$PGD"
assert_eq "$(sql "$PORT" "select count(*) from in_ts")" "$((2 * ROWS_TS))" "rows of the primary's table in the tablespace after a restart"

CASE="settings PostgreSQL must read back"
QDIR="$T/it's here"
mkdir -m 700 "$QDIR" && cp -p "$CONF" "$QDIR/walsafe.conf" && chown -R postgres: "$QDIR" || die "mkdir $QDIR"
bb --config "$CONF" restore --pgdata "$T/r_newline" --target-name $'rp\none'
assert_rc 2 "--target-name with a line break" && assert_err_contains "--target-name" "--target-name with a line break"
assert_absent "$T/r_newline" "target of --target-name with a line break"
R=$T/r_quoted
run "$BASEBACKUP" --config "$QDIR/walsafe.conf" restore --pgdata "$R" --target-name 'rp\one' \
    --tablespace-map "$TS=$PGZONE/ts_quoted" --target-action promote
if assert_rc 0 "restore with a quote in the config path and a backslash in the target name"; then
    start_restored "$R"
    if pg_wait_promoted "$RPORT" "$R" 60; then
        assert_eq "$(sql "$RPORT" "select count(*) from marker")" 100 "rows at restore point 'rp\\one'"
        assert_eq "$(sql "$RPORT" "show recovery_target_name")" 'rp\one' "recovery_target_name read back"
        got=$(sql "$RPORT" "show restore_command")
        case "$got" in
        *"/it'\\''s here/walsafe.conf"*) ;;
        *) fail "restore_command read back as: $got" ;;
        esac
        grep -q "recovery stopping at restore point \"rp.one\"" "$R.log" ||
            fail "the log does not show recovery stopping at the restore point"
    fi
    pg_stop "$R"
fi


finish
