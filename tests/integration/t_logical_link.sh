#!/usr/bin/env bash
# t_logical_link: download links for logical backups (logicalbackup link), on the S3 test server
# (tests/integration/s3.sh, which checks SigV4 signatures and the expiry of presigned URLs).
#   - link ID --db shop --valid-for 1h prints one URL per object and the decode command; curl
#     fetches each without credentials; decoded with the key file alone it is byte for byte what
#     restore --to-file writes, and pg_restore --list reads it; the same for a directory-format
#     dump (several objects) and for the globals;
#   - a URL with its signature changed is refused (403), as is one whose time has passed
#     (--valid-for 1s);
#   - --valid-for more than 7 days, or no --valid-for, is a usage error (exit 2);
#   - a local repository answers that links need S3 (exit 1, one line).
. "$(dirname "$0")/lib.sh"
setup_tmp

LB=$BIN_DIR/logicalbackup
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
SPOOL=$T/spool
CASE="set-up"
make_key "$KEY"
repo_setup s3
mkdir -p "$SPOOL" && chown postgres: "$SPOOL" && chmod 700 "$SPOOL"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'"
sql "$PORT" "create database shop" || die "create database failed"
pg_psql "$PORT" -d shop -c "create table t as select g as id, md5(g::text) as pad from generate_series(1, 5000) g;
                            create table u as select g as id from generate_series(1, 100) g" ||
    die "create tables failed"

lb() { run runuser -u postgres -- "$LB" --config "$CONF" "$@"; }
create_id() { # ARGS...: a logicalbackup create that must succeed; prints its id
    lb create "$@" >&2
    assert_rc 0 "create $*" >&2 || die "create $* failed: $(last_err)"
    sed -n 's/^logical backup \([0-9TZ]*\) complete.*/\1/p' "$T/.last.out"
}
# fetch_all DIR: every URL of the last link output into DIR (named as the URL's path ends).
fetch_all() {
    local url name n=0
    mkdir -p "$1" && chown postgres: "$1"
    while read -r url; do
        name=${url%%\?*}
        name=${name##*/}
        runuser -u postgres -- curl -sS -f -o "$1/$name" "$url" ||
            { fail "curl of $name failed"; return 1; }
        n=$((n + 1))
    done < <(grep '^http' "$T/.last.out")
    [ "$n" -gt 0 ] || { fail "no URL in the output"; return 1; }
}
decode() { # IN OUT
    runuser -u postgres -- "$LB" decode --key-file "$KEY" <"$1" >"$2"
}

ID=$(create_id --db shop)
IDD=$(sleep 1 && create_id --db shop --jobs 2)
IDA=$(sleep 1 && create_id --all)
note "logical backups $ID (custom), $IDD (directory), $IDA (--all)"

CASE="links of a custom-format dump"
lb link "$ID" --db shop --valid-for 1h
assert_rc 0 "link --db shop --valid-for 1h"
assert_eq "$(grep -c '^http' "$T/.last.out")" 1 "URLs of a custom dump"
grep -q "logicalbackup decode --key-file '$KEY' < '000.dump' > 'shop.dump'" "$T/.last.out" ||
    fail_cmd "no decode command in the output"
grep -q "X-Amz-Expires=3600&" "$T/.last.out" || fail_cmd "not valid for 3600 s"
cp "$T/.last.out" "$T/links.txt"
fetch_all "$T/dl"
decode "$T/dl/000.dump" "$T/shop.dump" || fail "decode of the downloaded object failed"
lb restore "$ID" --db shop --to-file "$T/shop.ref.dump"
assert_rc 0 "restore --to-file"
cmp -s "$T/shop.dump" "$T/shop.ref.dump" || fail "the decoded download differs from restore --to-file"
"$PGBIN/pg_restore" --list "$T/shop.dump" | grep -q "TABLE DATA public t " ||
    fail "pg_restore --list does not read the decoded dump"

CASE="a tampered and an expired link"
url=$(grep '^http' "$T/links.txt")
bad=${url%?}$( [ "${url: -1}" = 0 ] && echo 1 || echo 0 )
code=$(curl -s -o /dev/null -w '%{http_code}' "$bad")
assert_eq "$code" 403 "a URL with another signature"
lb link "$ID" --db shop --valid-for 1s
assert_rc 0 "link --valid-for 1s"
url=$(grep '^http' "$T/.last.out")
sleep 2 # the link's second has passed
code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
assert_eq "$code" 403 "an expired URL"

CASE="links of a directory-format dump and of the globals"
lb link "$IDD" --db shop --valid-for 10m
assert_rc 0 "link of the directory dump"
[ "$(grep -c '^http' "$T/.last.out")" -gt 2 ] || fail "a directory dump has several objects: $(grep -c '^http' "$T/.last.out")"
fetch_all "$T/dld"
mkdir -p "$T/shop.d"
for f in "$T"/dld/*; do decode "$f" "$T/shop.d/${f##*/}" || fail "decode of ${f##*/} failed"; done
"$PGBIN/pg_restore" --list "$T/shop.d" | grep -q "TABLE DATA public u " ||
    fail "pg_restore --list does not read the decoded directory"
lb link "$IDA" --globals --valid-for 10m
assert_rc 0 "link --globals"
fetch_all "$T/dlg"
decode "$T/dlg/globals.sql" "$T/globals.sql" || fail "decode of the globals failed"
grep -q "CREATE ROLE postgres" "$T/globals.sql" || fail "the globals hold no CREATE ROLE"

CASE="refusals"
lb link "$ID" --db shop --valid-for 8d
assert_rc 2 "--valid-for 8d"
assert_err_contains "7d" "the refusal names the limit"
lb link "$ID" --db shop
assert_rc 2 "no --valid-for"
lb link "$ID" --db nosuchdb --valid-for 1h
assert_rc 1 "a database the backup does not hold"
assert_err_contains "nosuchdb" "the message names the database"
make_repo "$T/localrepo"
write_conf "$T/local.conf" "repo = '$T/localrepo'" "encrypt_key_file = '$KEY'"
run runuser -u postgres -- "$LB" --config "$T/local.conf" link "$ID" --db shop --valid-for 1h
assert_rc 1 "link on a local repository"
assert_err_one_line "link on a local repository"
assert_err_contains "links need an S3 repository" "the refusal"

finish
