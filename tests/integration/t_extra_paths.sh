#!/usr/bin/env bash
# t_extra_paths: configuration files stored with base backups (backup_extra_paths) and restored
# only on request (basebackup restore --extra-to DIR).
#   - the key file (encrypt_key_file) in the list, directly or under a listed directory, is
#     refused with a line saying why; a listed path that does not exist fails create with a
#     line naming it; nothing is listed after either;
#   - a directory (subdirectories, files of three owners and modes, a symbolic link inside that is
#     skipped with a warning) and a single file go into the backup: list --json shows each with
#     mode, owner, mtime, size and SHA-256; the same with backup_method stream;
#   - restore --extra-to a fresh directory (as root): every file under DIR/<its absolute path>
#     with its bytes, mode, owner and mtime, directories with theirs;
#   - refused: DIR in the data directory (--pgdata or pgdata; also through a link that leads
#     there), a non-empty DIR, a DIR reached
#     through another user's symbolic link (nothing written where it points), a damaged object;
#   - verify reads the extra object: damage is reported naming it;
#   - restore --pgdata P --extra-to DIR as postgres: the data directory and the extra paths of
#     the same backup, owners left to the restoring user.
# The repository is REPO_KIND (local, s3 or sftp; default local; t_extra_paths_s3 runs it on S3).
. "$(dirname "$0")/lib.sh"
setup_tmp

KEYS=$T/keys
KEY=$KEYS/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
ETC=$T/etc
CASE="set-up"
mkdir -p "$KEYS" && chown postgres: "$KEYS" || die "mkdir $KEYS"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1

# the extra paths: $ETC/app (a tree) and $ETC/hosts.extra (a file)
mkdir -p "$ETC/app/conf.d" || die "mkdir $ETC/app"
printf 'listen = 1\n' >"$ETC/app/app.conf"
printf 'secret = s3cr3t\n' >"$ETC/app/conf.d/10-local.conf"
head -c 300000 /dev/urandom >"$ETC/app/conf.d/blob"
: >"$ETC/app/conf.d/empty"
printf '127.0.0.2 db\n' >"$ETC/hosts.extra"
ln -s app.conf "$ETC/app/link"
chown root:postgres "$ETC/app/app.conf" && chmod 0640 "$ETC/app/app.conf"
chown postgres: "$ETC/app/conf.d/10-local.conf" && chmod 0600 "$ETC/app/conf.d/10-local.conf"
chown nobody:nogroup "$ETC/app/conf.d/blob" && chmod 0644 "$ETC/app/conf.d/blob"
chown postgres: "$ETC/app/conf.d" && chmod 2750 "$ETC/app/conf.d"
chmod 0755 "$ETC" "$ETC/app" && chmod 0604 "$ETC/hosts.extra"
touch -h -d '2021-02-03 04:05:06' "$ETC/app/app.conf" "$ETC/app/conf.d/blob" "$ETC/app"
touch -d '2020-01-02 03:04:05' "$ETC/app/conf.d"
EXTRA_FILES=(app/app.conf app/conf.d/10-local.conf app/conf.d/blob app/conf.d/empty hosts.extra)
EXTRA_DIRS=(app app/conf.d)

# listed: nothing of the cluster's backups
assert_no_backups() { # WHAT
    bb_list "$CONF" || return
    assert_eq "$(json_eval "$T/list.json" 'j.backups.length')" 0 "$1: backups listed"
}

CASE="the key file in backup_extra_paths"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" \
    "backup_extra_paths = '$ETC/app, $KEYS'"
bb --config "$CONF" create --fast
assert_rc 1 "create with the key's directory listed"
assert_err_one_line "create with the key's directory listed"
assert_err_contains "\"$KEYS\" is or holds the key file \"$KEY\"" "the refusal names both"
assert_err_contains "lost with them" "the refusal says why"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "backup_extra_paths = '$KEY'"
bb --config "$CONF" create --fast
assert_rc 1 "create with the key file listed"
assert_err_contains "is or holds the key file" "the key file itself"
assert_no_backups "after the refusals"

CASE="a listed path that does not exist"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" \
    "backup_extra_paths = '$ETC/app,$ETC/nope.conf'"
bb --config "$CONF" create --fast
assert_rc 1 "create with a missing path"
assert_err_one_line "create with a missing path"
assert_err_contains "\"$ETC/nope.conf\"" "the message names the missing path"
assert_no_backups "after the missing path"

CASE="create with extra paths (local)"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" \
    "backup_extra_paths = '$ETC/app, $ETC/hosts.extra'"
bb_create "$CONF"
ID=$BACKUP_ID
assert_err_contains "skipping \"$ETC/app/link\"" "the link inside is skipped with a warning"
bb_list "$CONF"
# extra_of ID PATH FIELD: a field of an extra record of backup ID in list.json
extra_of() {
    json_eval "$T/list.json" "((j.backups.find(b => b.id === '$1').extra || []).find(e => e.path === '$2') || {})['$3']"
}
assert_eq "$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID').extra.length")" 7 \
    "list --json: 5 files and 2 directories"
assert_eq "$(extra_of "$ID" "$ETC/app/app.conf" mode)" 0640 "app.conf's mode"
assert_eq "$(extra_of "$ID" "$ETC/app/app.conf" uid)" 0 "app.conf's owner"
assert_eq "$(extra_of "$ID" "$ETC/app/app.conf" gid)" "$(id -g postgres)" "app.conf's group"
assert_eq "$(extra_of "$ID" "$ETC/app/app.conf" mtime)" "$(date -u -d '2021-02-03 04:05:06' +%Y-%m-%dT%H:%M:%SZ)" "app.conf's mtime"
assert_eq "$(extra_of "$ID" "$ETC/app/conf.d/blob" size)" 300000 "blob's size"
assert_eq "$(extra_of "$ID" "$ETC/app/conf.d/blob" sha256)" "$(file_sha "$ETC/app/conf.d/blob")" "blob's SHA-256"
assert_eq "$(extra_of "$ID" "$ETC/app/conf.d" type)" dir "conf.d is a directory"
assert_eq "$(extra_of "$ID" "$ETC/app/conf.d" mode)" 2750 "conf.d's mode"
assert_eq "$(extra_of "$ID" "$ETC/app/link" type)" undefined "the link is not stored"
assert_eq "$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID').status")" complete "status"

CASE="create with extra paths (backup_method stream)"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "backup_method = 'stream'" \
    "backup_extra_paths = '$ETC/hosts.extra'"
bb_create "$CONF"
bb_list "$CONF"
assert_eq "$(extra_of "$BACKUP_ID" "$ETC/hosts.extra" sha256)" "$(file_sha "$ETC/hosts.extra")" "stream: hosts.extra stored"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"

# same_attrs SRC DST WHAT: same mode, owner, group and mtime (and bytes for a file)
same_attrs() {
    assert_eq "$(stat -c '%a %u %g %Y' "$2" 2>&1)" "$(stat -c '%a %u %g %Y' "$1")" "$3: mode owner group mtime"
    if [ -f "$1" ]; then cmp -s "$1" "$2" || fail "$3: content differs"; fi
}

CASE="restore --extra-to a fresh directory (root)"
X=$T/extra-out
run "$BASEBACKUP" --config "$CONF" restore --backup "$ID" --extra-to "$X"
assert_rc 0 "restore --extra-to"
assert_eq "$(grep -c 'extra file(s)' "$T/.last.out")" 1 "one summary line"
for f in "${EXTRA_FILES[@]}" "${EXTRA_DIRS[@]}"; do same_attrs "$ETC/$f" "$X$ETC/$f" "$f"; done
assert_absent "$X$ETC/app/link" "the skipped link"
[ "$(find "$X" -type f | wc -l)" = 5 ] || fail "restored files: $(find "$X" -type f | wc -l), expected 5"

CASE="refused targets"
run "$BASEBACKUP" --config "$CONF" restore --extra-to "$PGD/etc-copy"
assert_rc 1 "--extra-to in pgdata"
assert_err_contains "data directory" "the refusal names the data directory"
assert_absent "$PGD/etc-copy" "nothing made in the data directory"
run "$BASEBACKUP" --config "$CONF" restore --pgdata "$T/r1" --extra-to "$T/r1/x"
assert_rc 1 "--extra-to in --pgdata"
assert_absent "$T/r1" "nothing made for the refused restore"
ln -s "$PGD" "$T/pglink" # root's link (followed by root): it leads into the data directory
run "$BASEBACKUP" --config "$CONF" restore --extra-to "$T/pglink/etc-copy"
assert_rc 1 "--extra-to through a link into pgdata"
assert_err_contains "data directory" "the refusal names the data directory"
assert_absent "$PGD/etc-copy" "nothing made in the data directory through the link"
run "$BASEBACKUP" --config "$CONF" restore --extra-to "$X"
assert_rc 1 "--extra-to a non-empty directory"
assert_err_contains "is not empty" "non-empty"
mkdir -p "$T/elsewhere" && ln -s "$T/elsewhere" "$T/lnk" && chown -h postgres: "$T/lnk"
run "$BASEBACKUP" --config "$CONF" restore --extra-to "$T/lnk/x"
assert_rc 1 "--extra-to through postgres's symbolic link (run as root)"
assert_dir_empty "$T/elsewhere" "nothing written where the link points"

CASE="a damaged extra object"
cp -p "$(repo_file "main/backup/$ID/extra")" "$T/extra.saved"
flip_byte "$(repo_file "main/backup/$ID/extra")" 200
run "$BASEBACKUP" --config "$CONF" restore --backup "$ID" --extra-to "$T/dmg"
assert_rc 1 "restore of a damaged extra object"
assert_err_contains "backup $ID, extra paths" "the message names the object"
[ -z "$(find "$T/dmg" -type f -size +0 2>/dev/null)" ] || fail "damaged content restored"
bb --config "$CONF" verify "$ID"
assert_rc 1 "verify of a backup with a damaged extra object"
assert_err_contains "backup $ID, extra paths" "verify names the extra object"
cp -p "$T/extra.saved" "$(repo_file "main/backup/$ID/extra")"
bb --config "$CONF" verify "$ID"
assert_rc 0 "verify with the extra object repaired"

CASE="restore --pgdata and --extra-to as postgres"
mkdir -p "$T/both" && chown postgres: "$T/both"
bb --config "$CONF" restore --backup "$ID" --pgdata "$T/both/data" --extra-to "$T/both/etc"
assert_rc 0 "restore --pgdata --extra-to"
[ -f "$T/both/data/recovery.signal" ] || fail "the data directory was not restored"
grep -q "owners not restored" "$T/.last.out" || fail "the summary says owners were not restored"
cmp -s "$ETC/app/conf.d/blob" "$T/both/etc$ETC/app/conf.d/blob" || fail "blob differs"
assert_eq "$(stat -c '%U %a' "$T/both/etc$ETC/app/app.conf")" "postgres 640" "owner: the restoring user"
assert_eq "$(stat -c '%a' "$T/both/etc$ETC/app/conf.d")" 2750 "conf.d's mode"

finish
