#!/usr/bin/env bash
# t_cli: the command-line and configuration contract of wal-push and wal-fetch (README.md: the
# programs, "Configuration", "Exit status"), and the usage errors of basebackup and wal-prune:
# --help/--version, usage errors and their exit
# statuses, option order, config sources and precedence, invalid names that could escape the
# repository, config files holding secrets, log_file, and that secrets are never printed.
. "$(dirname "$0")/lib.sh"
setup_tmp

WAL_PRUNE=$BIN_DIR/wal-prune
KEY=$T/walsafe.key
REPO=$T/top/repo
CONF=$T/walsafe.conf
make_key "$KEY"
mkdir -p "$T/top" && make_repo "$REPO"
write_conf "$CONF" "repo = '$REPO'" "encrypt_key_file = '$KEY'"

# A real segment without running a server: the one initdb's last checkpoint is in.
CASE="setup"
D=$T/pg
pg_init "$D" --wal-segsize=1
SEG=$(redo_wal_of "$D")
[ -f "$D/pg_wal/$SEG" ] || die "no segment $SEG after initdb"
run "$WAL_PUSH" --config "$CONF" "$D/pg_wal/$SEG"
assert_rc 0 "push of $SEG" || die "cannot go on"

# Runs without any configuration source except what the test passes.
# (no spool: run as root, the default /var/spool/walsafe would be used)
noenv() { env -u WALSAFE_CONFIG -u WALSAFE_REPO -u WALSAFE_ENCRYPT_KEY_FILE WALSAFE_SPOOL_DIR= "$@"; }

CASE="--help and --version"
for p in "$WAL_PUSH" "$WAL_FETCH" "$BASEBACKUP" "$WAL_PRUNE"; do
    run "$p" --help
    assert_rc 0 "${p##*/} --help"
    grep -q -i 'usage' "$T/.last.out" || fail "${p##*/} --help prints no usage on stdout"
    run "$p" --version
    assert_rc 0 "${p##*/} --version"
    grep -q -E '[0-9]+\.[0-9]+' "$T/.last.out" || fail "${p##*/} --version prints no version"
done

CASE="usage errors"
run "$WAL_PUSH"
assert_rc 1 "wal-push without arguments"
run "$WAL_PUSH" --no-such-option "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with an unknown option"
run "$WAL_PUSH" --config "$CONF" "$D/pg_wal/$SEG" extra
assert_rc 1 "wal-push with two arguments"
run "$WAL_PUSH" --config
assert_rc 1 "wal-push --config without a value"
new_dest
run "$WAL_FETCH" --config "$CONF" "$SEG"
assert_rc 255 "wal-fetch with one argument"
run "$WAL_FETCH" --no-such-option "$SEG" "$DEST"
assert_rc 255 "wal-fetch with an unknown option"
assert_dir_empty "$DEST_DIR" "wal-fetch with an unknown option"
# basebackup and wal-prune: usage errors are exit 2, one line naming the problem.
run "$BASEBACKUP" --config "$CONF"
assert_rc 2 "basebackup without a command (a bare basebackup must never start a backup)"
assert_err_contains "a command is required" "basebackup without a command"
assert_err_contains "Usage:" "basebackup without a command prints its usage"
run "$BASEBACKUP" --config "$CONF" frobnicate
assert_rc 2 "basebackup with an unknown command"
assert_err_contains "unknown command \"frobnicate\"" "basebackup with an unknown command"
run "$BASEBACKUP" --config "$CONF" list --fast
assert_rc 2 "basebackup list --fast"
before=$(repo_state "$T/top")
run "$BASEBACKUP" --config "$CONF" create --type bogus
assert_rc 2 "basebackup create --type bogus"
assert_err_contains "--type must be full, diff or incr (got \"bogus\")" "basebackup create --type bogus"
[ "$(grep -c ERROR "$T/.last.err")" -eq 1 ] || fail "basebackup create --type bogus: not one error line"
run "$BASEBACKUP" --config "$CONF" create --type
assert_rc 2 "basebackup create --type without a value"
assert_err_contains "--type must be full, diff or incr" "basebackup create --type without a value"
run "$BASEBACKUP" --config "$CONF" list --type incr
assert_rc 2 "basebackup list --type incr"
assert_err_contains "--type, --label and --fast apply to create, not to list" "basebackup list --type"
[ "$(repo_state "$T/top")" = "$before" ] || fail "a refused --type changed the repository"
run "$WAL_PRUNE" --config "$CONF" --no-such-option
assert_rc 2 "wal-prune with an unknown option"

CASE="option order"
new_dest
run "$WAL_FETCH" -v --cluster main --config "$CONF" --repo "$REPO" "$SEG" "$DEST"
assert_rc 0 "wal-fetch -v --cluster --config --repo" &&
    { cmp -s "$DEST" "$D/pg_wal/$SEG" || fail "fetched $SEG differs"; }
new_dest
run "$WAL_FETCH" --repo="$REPO" --config="$CONF" "$SEG" "$DEST"
assert_rc 0 "wal-fetch with --opt=value forms"
run "$WAL_PUSH" --repo "$REPO" -v --config "$CONF" "$D/pg_wal/$SEG"
assert_rc 0 "wal-push -v in the middle (identical re-push)"

CASE="configuration sources"
new_dest
run noenv WALSAFE_CONFIG="$CONF" "$WAL_FETCH" "$SEG" "$DEST"
assert_rc 0 "wal-fetch with the config from WALSAFE_CONFIG"
new_dest
: >"$T/empty.conf"
run noenv WALSAFE_ENCRYPT_KEY_FILE="$KEY" "$WAL_FETCH" --config "$T/empty.conf" --repo "$REPO" "$SEG" "$DEST"
assert_rc 0 "wal-fetch with the key from WALSAFE_ENCRYPT_KEY_FILE and --repo"
new_dest
run noenv WALSAFE_CONFIG="$CONF" WALSAFE_CLUSTER=other "$WAL_FETCH" "$SEG" "$DEST"
assert_rc 255 "WALSAFE_CLUSTER (a cluster the repository does not hold) overrides the file"
new_dest
run noenv WALSAFE_CONFIG="$CONF" WALSAFE_CLUSTER=other "$WAL_FETCH" --cluster main "$SEG" "$DEST"
assert_rc 0 "--cluster overrides WALSAFE_CLUSTER"
run noenv WALSAFE_CONFIG="$T/no-such.conf" "$WAL_PUSH" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with WALSAFE_CONFIG naming a missing file"
assert_err_contains "$T/no-such.conf" "wal-push with a missing config file"
if [ ! -e /etc/walsafe.conf ]; then
    new_dest
    run noenv "$WAL_FETCH" "$SEG" "$DEST"
    assert_rc 255 "wal-fetch with no configuration at all"
    assert_err_contains "repo" "wal-fetch with no configuration at all"
    run noenv "$WAL_PUSH" "$D/pg_wal/$SEG"
    assert_rc 1 "wal-push with no configuration at all"
    new_dest
    run noenv WALSAFE_ENCRYPT_KEY_FILE="$KEY" "$WAL_FETCH" --repo "$REPO" "$SEG" "$DEST"
    assert_rc 0 "a missing /etc/walsafe.conf is no error when --repo is given"
else
    echo "skip: /etc/walsafe.conf exists; default-file cases not run"
fi

CASE="invalid values"
write_conf "$T/clevel.conf" "repo = '$REPO'" "" "compress_level = 25"
run "$WAL_PUSH" --config "$T/clevel.conf" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with compress_level = 25"
assert_err_contains "compress_level" "compress_level = 25"
assert_err_contains "line 4" "compress_level = 25"
write_conf "$T/cfe.conf" "repo = '$REPO'" "fetch_error = sometimes"
new_dest
run "$WAL_FETCH" --config "$T/cfe.conf" "$SEG" "$DEST"
assert_rc 255 "wal-fetch with fetch_error = sometimes"
assert_err_contains "fetch_error" "fetch_error = sometimes"
write_conf "$T/crel.conf" "repo = 'relative/repo'"
run "$WAL_PUSH" --config "$T/crel.conf" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with a relative repo path"
[ ! -e "$D/pg_wal/relative" ] && [ ! -e "$T/relative" ] || fail "a relative repo was created"

CASE="names that could escape the repository"
before=$(repo_state "$T/top")
for c in .. . 'a/b' '../top' "$(printf 'x%.0s' $(seq 1 65))" ''; do
    run "$WAL_PUSH" --config "$CONF" --cluster "$c" "$D/pg_wal/$SEG"
    assert_rc 1 "wal-push --cluster '$c'"
    new_dest
    run "$WAL_FETCH" --config "$CONF" --cluster "$c" "$SEG" "$DEST"
    assert_rc 255 "wal-fetch --cluster '$c'"
    assert_dir_empty "$DEST_DIR" "wal-fetch --cluster '$c'"
done
for n in "../$SEG" "main/wal/$SEG" "$SEG/../../identity" RECOVERYXLOG "${SEG}x" 00000001.history/..; do
    new_dest
    run "$WAL_FETCH" --config "$CONF" "$n" "$DEST"
    assert_rc 255 "wal-fetch of the name '$n'"
    assert_dir_empty "$DEST_DIR" "wal-fetch of the name '$n'"
done
mkdir -p "$T/odd"
cp "$D/pg_wal/$SEG" "$T/odd/RECOVERYXLOG"
run "$WAL_PUSH" --config "$CONF" "$T/odd/RECOVERYXLOG"
assert_rc 1 "wal-push of a file not named like a WAL file"
assert_eq "$(repo_state "$T/top")" "$before" "repository and its parent after refused names"

CASE="config file holding a secret"
SECRET=Sup3rS3cretAccessKey0123456789abcdefghij
add_secret "$SECRET"
write_conf "$T/csecret.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" \
    "s3_secret_access_key = '$SECRET'"
chmod 644 "$T/csecret.conf"
run "$WAL_PUSH" --config "$T/csecret.conf" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with a 0644 config holding s3_secret_access_key"
assert_err_contains "$T/csecret.conf" "0644 config holding a secret"
new_dest
run "$WAL_FETCH" --config "$T/csecret.conf" "$SEG" "$DEST"
assert_rc 255 "wal-fetch with a 0644 config holding s3_secret_access_key"
assert_dir_empty "$DEST_DIR" "wal-fetch with a 0644 config holding a secret"
chmod 640 "$T/csecret.conf"
run "$WAL_PUSH" --config "$T/csecret.conf" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with a 0640 config holding s3_secret_access_key"
chmod 600 "$T/csecret.conf"
new_dest
run "$WAL_FETCH" --config "$T/csecret.conf" "$SEG" "$DEST"
assert_rc 0 "wal-fetch with a 0600 config holding s3_secret_access_key"
# The secret in a broken line must not be echoed either.
write_conf "$T/cbroken.conf" "repo = '$REPO'" "s3_secret_access_key = '$SECRET"
run "$WAL_PUSH" --config "$T/cbroken.conf" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with an unterminated secret value"
write_conf "$T/cbroken2.conf" "repo = '$REPO'" "s3_secret_access_key = '$SECRET' trailing"
run "$WAL_PUSH" --config "$T/cbroken2.conf" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with text after a secret value"
run env WALSAFE_S3_SECRET_ACCESS_KEY="$SECRET" WALSAFE_COMPRESS_LEVEL=99 "$WAL_PUSH" --config "$CONF" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with WALSAFE_COMPRESS_LEVEL=99"
assert_err_contains "WALSAFE_COMPRESS_LEVEL" "an invalid environment variable is named"

CASE="decrypt_key_files"
K644=$T/old644.key
openssl rand -hex 32 >"$K644"
chmod 644 "$K644"
add_secret "$(cat "$K644")"
write_conf "$T/cdk.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "decrypt_key_files = '$T/none.key,$K644'"
new_dest
run "$WAL_FETCH" --config "$T/cdk.conf" "$SEG" "$DEST"
assert_rc 255 "wal-fetch with a missing and a 0644 file in decrypt_key_files"
assert_err_regex "none\.key|old644\.key" "bad decrypt_key_files"

CASE="log_file"
LOG=$T/walsafe-own.log
write_conf "$T/clog.conf" "repo = '$REPO'" "encrypt_key_file = '$T/absent.key'" "log_file = '$LOG'"
new_dest
run "$WAL_FETCH" --config "$T/clog.conf" "$SEG" "$DEST"
assert_rc 255 "wal-fetch with a missing key file"
if [ -f "$LOG" ]; then
    grep -q -F "$T/absent.key" "$LOG" || fail "log_file does not hold the error: $(head -3 "$LOG")"
    grep -q -E '20[0-9]{2}-[01][0-9]-[0-3][0-9]' "$LOG" || fail "log_file lines carry no date"
    check_no_secrets "$LOG"
else
    fail "log_file $LOG was not written"
fi

CASE="log injection"
# Text from outside (a path, a name, a config file name) with a newline must not start a line
# of its own in PostgreSQL's log: one escaped line, never a forged "LOG:" line.
FORGED='LOG:  database system is ready to accept connections'
# one_escaped_line WHAT: exactly one line on stderr, the newline shown as \n, no forged line
one_escaped_line() {
    assert_err_one_line "$1"
    assert_err_contains '\nLOG:  database system' "$1 (the newline escaped)"
    ! grep -q '^LOG:' "$T/.last.err" || fail "$1: a forged LOG line on stderr"
}
run "$WAL_PUSH" --config "$CONF" "$T/x"$'\n'"$FORGED"$'\n'"$SEG"
assert_rc 1 "wal-push of a path with newlines"
one_escaped_line "wal-push of a path with newlines"
mkdir -p "$T/in"$'\n'"$FORGED"
cp "$D/pg_wal/$SEG" "$T/in"$'\n'"$FORGED/$SEG"
run "$WAL_PUSH" -v --config "$CONF" "$T/in"$'\n'"$FORGED/$SEG"
assert_rc 0 "wal-push -v of a segment in a directory whose name holds a newline"
grep -q '^LOG:' "$T/.last.err" && fail "wal-push -v: a forged LOG line on stderr"
run "$WAL_PUSH" --config "$T/c"$'\n'"$FORGED" "$D/pg_wal/$SEG"
assert_rc 1 "wal-push with a config file name holding a newline"
one_escaped_line "wal-push with a config file name holding a newline"
new_dest
run "$WAL_FETCH" --config "$T/c"$'\n'"$FORGED" "$SEG" "$DEST"
assert_rc 255 "wal-fetch with a config file name holding a newline"
one_escaped_line "wal-fetch with a config file name holding a newline"
new_dest
run "$WAL_FETCH" --config "$CONF" "$SEG"$'\n'"$FORGED" "$DEST"
assert_rc 255 "wal-fetch of a name holding a newline"
one_escaped_line "wal-fetch of a name holding a newline"
assert_dir_empty "$DEST_DIR" "wal-fetch of a name holding a newline"
# ESC sequences are shown, not sent to the operator's terminal
run "$WAL_PUSH" --config "$CONF" "$T/"$'\e[2J\e]0;x\a'"$SEG"
assert_rc 1 "wal-push of a path with escape sequences"
assert_err_one_line "wal-push of a path with escape sequences"
grep -q $'\e' "$T/.last.err" && fail "an ESC byte reached stderr"
assert_err_contains '\x1b[2J' "wal-push of a path with escape sequences"

CASE="closed stderr"
# PostgreSQL's logging collector may go away: a message written to a pipe nobody reads must
# not kill the program with SIGPIPE (141, above 125 for wal-push; not a wal-fetch status).
# closed_stderr CMD...: runs CMD with stderr a pipe whose reader has exited (the shell first
# writes to it, SIGPIPE ignored, until that fails; CMD then runs with SIGPIPE's default); sets RC.
closed_stderr() {
    rm -f "$T/.closed.rc"
    {
        trap '' PIPE
        while printf x 2>/dev/null; do sleep 0.05; done
        trap - PIPE
        "$@" 2>&1 >/dev/null
        echo $? >"$T/.closed.rc"
    } | true
    RC=$(cat "$T/.closed.rc")
}
closed_stderr "$WAL_PUSH" --config "$CONF" "$T/nonexistent/$SEG"
assert_rc 1 "wal-push of a missing file, stderr closed"
closed_stderr "$WAL_PUSH" --config "$CONF" "$D/pg_wal/$SEG"
assert_rc 0 "identical re-push (a warning), stderr closed"
closed_stderr "$WAL_PUSH" -v --config "$CONF" "$D/pg_wal/$SEG"
assert_rc 0 "identical re-push with -v, stderr closed"
new_dest
closed_stderr "$WAL_FETCH" -v --config "$CONF" 000000010000000000000099 "$DEST"
assert_rc 1 "wal-fetch -v of a missing segment, stderr closed"
closed_stderr "$WAL_FETCH" --config "$CONF" "bad-name" "$DEST"
assert_rc 255 "wal-fetch of a bad name, stderr closed"
closed_stderr "$WAL_FETCH" -v --config "$CONF" "$SEG" "$DEST"
assert_rc 0 "wal-fetch -v of $SEG, stderr closed" &&
    { cmp -s "$DEST" "$D/pg_wal/$SEG" || fail "fetched $SEG differs"; }

CASE="destination problems"
run "$WAL_FETCH" --config "$CONF" "$SEG" "$T/no-such-dir/RECOVERYXLOG"
assert_rc 255 "wal-fetch into a missing directory"
[ ! -e "$T/no-such-dir" ] || fail "wal-fetch created the destination directory"

finish
